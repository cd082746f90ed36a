"""Chunked rendering's pure parts and its fork-join in job control (docs/CHUNKED.md), without ffmpeg runs:
windows cut on keyframes, a window's plan and the sound-only plan, the chunk count, and the parent's
settling on the job store (SQLite and PostgreSQL)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelforge.config import Settings
from reelforge.engine.control import JobStatus
from reelforge.jobs.control import DatabaseControl
from reelforge.jobs.store import Stores
from reelforge.jobs.store_jobs import FORK_OWNER
from reelforge.media.codecs import chunkable_x264_args
from reelforge.media.probe import MediaInfo, StreamInfo
from reelforge.ops.chunking import chunk_count
from reelforge.ops.context import OpContext
from reelforge.pipelines.chunk_split import chunk_windows
from reelforge.pipelines.render_plan import Window, frame_count, plan_render
from reelforge.pipelines.timeline import RenderParams
from reelforge.refs import job_output_ref, parse_ref


def test_windows_are_cut_on_keyframes_and_the_last_runs_to_the_end() -> None:
    assert chunk_windows(900, 3, 10) == [Window(0, 300), Window(300, 600), Window(600, None)]
    assert [w.start_frame % 50 for w in chunk_windows(3001, 4, 50)] == [0, 0, 0, 0]
    assert chunk_windows(25, 8, 10) == [Window(0, 10), Window(10, 20), Window(20, None)]  # no more than GOPs
    assert frame_count(180, 5) == 900 and frame_count(10.01, 25) == 251


def test_the_first_window_is_shorter_by_the_work_its_worker_does_after_it() -> None:
    # 120 s at 25 fps in 2 chunks; the sound is worth 120 frames and goes to the first worker free:
    # 1450 + 120 against 1550, even to within a keyframe interval
    assert chunk_windows(3000, 2, 50, first_lighter=120) == [Window(0, 1450), Window(1450, None)]
    three = chunk_windows(3000, 3, 50, first_lighter=300)
    assert [w.start_frame for w in three] == [0, 800, 1900]  # 800 + 300 against 1100 and 1100
    assert chunk_windows(30, 2, 10, first_lighter=500) == [Window(0, 10), Window(10, None)]  # never empty
    assert chunk_windows(3000, 2, 50, first_lighter=0) == [Window(0, 1500), Window(1500, None)]


def _params(**extra: Any) -> RenderParams:
    return RenderParams.model_validate({"timeline": {"duration": 90, "background": "#000000", "tracks": [
        {"clips": [{"asset": {"type": "text", "text": "early"}, "start": 1, "length": 5},
                   {"asset": {"type": "text", "text": "late"}, "start": 70, "length": 5}]}],
        "soundtrack": {"src": "music.mp3"}}, "output": {"size": "160x90", "fps": 10}, **extra})


def _media(tmp_path: Path) -> dict[str, MediaInfo]:
    audio = StreamInfo(index=0, kind="audio", codec="mp3", sample_rate=48000, channels=2)
    return {"music.mp3": MediaInfo(path=str(tmp_path / "music.mp3"), format_name="mp3", duration_s=30,
                                   size_bytes=1, bit_rate=None, streams=(audio,))}


def test_a_window_keeps_the_clock_and_leaves_out_clips_it_does_not_show(tmp_path: Path) -> None:
    plan = plan_render(_params(), _media(tmp_path), out=tmp_path / "c.mp4", workdir=tmp_path,
                       window=Window(600, None), video_args=chunkable_x264_args("standard", 20, 1))
    graph = plan.args[plan.args.index("-filter_complex") + 1]
    assert "trim=start_frame=600," in graph and "setpts=PTS-STARTPTS[vout]" in graph
    assert [p.name for p in plan.text_files] == ["text_0_1.txt"]  # the clip at 1-6 s is not in it
    assert "[aout]" not in plan.args and "-t" not in plan.args and not plan.has_audio
    assert "-qp" in plan.args and "-crf" not in plan.args
    sound = plan_render(_params(), _media(tmp_path), out=tmp_path / "a.m4a", workdir=tmp_path, audio_only=True)
    assert "[aout]" in sound.args and "[vout]" not in sound.args and "aac" in sound.args


MP4 = "mov,mp4,m4a,3gp,3g2,mj2"


def _info(tmp_path: Path, name: str, fmt: str, codec: str, *kinds: str) -> MediaInfo:
    streams = tuple(StreamInfo(index=i, kind=k, codec=codec if k == "video" else "aac",
                               width=1920 if k == "video" else None, height=1080 if k == "video" else None,
                               sample_rate=48000 if k == "audio" else None) for i, k in enumerate(kinds))
    return MediaInfo(path=str(tmp_path / name), format_name=fmt, duration_s=30, size_bytes=1, bit_rate=None,
                     streams=streams)


def test_the_sound_only_plan_opens_only_what_carries_sound(tmp_path: Path) -> None:
    """The join's sound pass: a looped image left open (unmapped) kept ffmpeg 5.1 reading it forever after
    the AAC was written (a chunked 1080p render's join never finished). Pictures are not inputs of it."""
    media = {**_media(tmp_path), "photo.png": _info(tmp_path, "photo.png", "png_pipe", "png", "video"),
             "talk.mp4": _info(tmp_path, "talk.mp4", MP4, "h264", "video", "audio"),
             "silent.mp4": _info(tmp_path, "silent.mp4", MP4, "h264", "video"),
             "muted.mp4": _info(tmp_path, "muted.mp4", MP4, "h264", "video", "audio")}
    params = _params()
    params = RenderParams.model_validate({**params.model_dump(mode="json"), "timeline": {
        **params.timeline.model_dump(mode="json"), "tracks": [{"clips": [
            {"asset": {"type": "image", "src": "photo.png"}, "start": 0, "length": 20},
            {"asset": {"type": "video", "src": "talk.mp4"}, "start": 20, "length": 20},
            {"asset": {"type": "video", "src": "silent.mp4"}, "start": 40, "length": 20},
            {"asset": {"type": "video", "src": "muted.mp4", "volume": 0}, "start": 60, "length": 20}]}]}})
    sound = plan_render(params, media, out=tmp_path / "a.m4a", workdir=tmp_path, audio_only=True)
    args = sound.args[:sound.args.index("-filter_complex")]
    opened = [Path(args[i + 1]).name for i, a in enumerate(args) if a == "-i"]
    assert opened == ["talk.mp4", "music.mp3"]
    assert args[:2] == ["-vn", "-ss"] and "-loop" not in args  # the clip's picture stream is switched off
    graph = sound.args[sound.args.index("-filter_complex") + 1]
    assert "[0:a]" in graph and "[1:a]" in graph and ":v]" not in graph and sound.has_audio
    picture = plan_render(params, media, out=tmp_path / "v.mp4", workdir=tmp_path)  # the unchunked render
    assert [Path(picture.args[i + 1]).name for i, a in enumerate(picture.args) if a == "-i"] == [
        "photo.png", "talk.mp4", "silent.mp4", "muted.mp4", "music.mp3"]
    assert "-vn" not in picture.args


def test_the_chunk_count(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "d")
    ctx = OpContext.for_test(tmp_path, settings, can_fork=True, workers=8)
    assert chunk_count(_params().chunks, ctx, 90) == 6  # 90 s / the 15 s minimum
    assert chunk_count(_params(chunks=2).chunks, ctx, 90) == 2
    assert chunk_count(_params().chunks, OpContext.for_test(tmp_path, settings, can_fork=True), 90) == 1  # embedded
    assert chunk_count(_params(chunks=4).chunks, OpContext.for_test(tmp_path, settings), 90) == 1  # cannot fork


def test_job_output_refs_are_not_client_refs() -> None:
    assert parse_ref(job_output_ref("job_1", "chunk")).kind == "job"
    with pytest.raises(ValueError):
        RenderParams.model_validate({"timeline": {"tracks": [{"clips": [
            {"asset": {"type": "video", "src": "job://job_1/chunk"}, "start": 0, "length": 1}]}]}},
            context={"source": "api"})


@pytest.fixture(params=["sqlite", "postgresql"])
def control(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[DatabaseControl]:
    from reelforge.jobs.webhooks import WebhookSender
    from reelforge.storage.local import LocalStorage
    from tests.integration.pg import temp_database

    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite"
               else stack.enter_context(temp_database()))
        settings = Settings(data_dir=tmp_path / "d")
        stores = Stores.open(url, migrate=True)
        sender = WebhookSender(settings, stores.webhooks.record_webhook_attempt)
        yield DatabaseControl(settings, stores, LocalStorage(tmp_path / "s"), sender)
        sender.close(timeout=1)
        stores.dispose()


def _forked(control: DatabaseControl, n: int = 2) -> tuple[Any, list[str], list[Any]]:
    rec, _ = control.jobs.create_job(tenant="t", op="render", params={}, queue="cpu", timeout_s=60, max_attempts=2)
    parent = control.claim(rec.id, "w1")
    assert parent is not None
    sent: list[Any] = []
    control.on_queued(sent.append)
    kids = control.fork(parent, "w1", [{"op": "render", "params": {"i": i}, "weight": 1} for i in range(n)], {"s": 1})
    return parent, kids, sent


def test_a_parent_is_queued_again_when_every_child_succeeded(control: DatabaseControl) -> None:
    parent, kids, sent = _forked(control)
    waiting = control.jobs.get_job(parent.id)
    assert waiting is not None and waiting.lease_owner == FORK_OWNER and waiting.lease_expires_at is None
    assert [j.id for j in sent] == kids and control.claim(parent.id, "w2") is None
    assert control.jobs.reclaim_expired() == []
    for i, kid in enumerate(kids):
        child = control.claim(kid, f"c{i}")
        assert child is not None and child.parent == parent.id
        control.progress(child, f"c{i}", 0.5, "rendering chunk")
        assert control.jobs.get_job(parent.id).progress == pytest.approx(0.05 + 0.9 * (i + 0.5) / 2, abs=0.01)
        control.finish(child, f"c{i}", JobStatus.SUCCEEDED,
                       result={"outputs": {"chunk": {"key": f"jobs/{kid}/chunk.mp4"}}, "data": {}})
    assert sent[-1].id == parent.id
    again = control.claim(parent.id, "w3")
    assert again is not None and again.attempts == 1 and again.resumed is not None
    refs = [ch["outputs"]["chunk"] for ch in again.resumed["children"]]
    assert refs == [job_output_ref(k, "chunk") for k in kids]
    assert again.files[refs[0]].key == f"jobs/{kids[0]}/chunk.mp4" and again.resumed["state"] == {"s": 1}


def test_a_failed_chunk_fails_the_parent_and_cancels_the_others(control: DatabaseControl) -> None:
    parent, kids, _ = _forked(control, 3)
    first = control.claim(kids[0], "c0")
    assert first is not None
    control.finish(first, "c0", JobStatus.FAILED, error={"code": "ffmpeg_failed", "message": "boom"})
    done = control.jobs.get_job(parent.id)
    assert done.status == JobStatus.FAILED and done.error["chunk"] == kids[0] and done.error["code"] == "ffmpeg_failed"
    assert [control.jobs.get_job(k).status for k in kids[1:]] == [JobStatus.CANCELLED] * 2


def test_a_fork_shares_its_stored_files_with_the_children_that_name_them(control: DatabaseControl) -> None:
    """A chunked build's parent stores files for its children (Fork.outputs): a child gets, in its `files`,
    those of its parent's that its params name as `job://<parent>/<name>`, no others; the resumed parent
    gets them all, with their refs in `resumed["outputs"]`."""
    rec, _ = control.jobs.create_job(tenant="t", op="build", params={}, queue="cpu", timeout_s=60, max_attempts=2)
    parent = control.claim(rec.id, "w1")
    assert parent is not None
    stored = {name: {"key": f"jobs/{rec.id}/fork/{name}.bin", "size": 1} for name in ("narration", "head")}
    narration, head = job_output_ref(rec.id, "narration"), job_output_ref(rec.id, "head")
    kids = control.fork(parent, "w1", [
        {"op": "build", "params": {"compose": {"narration": narration}}, "weight": 1},
        {"op": "build", "params": {"other": job_output_ref("job_else", "narration")}, "weight": 1}], {},
        outputs=stored)
    first, second = control.claim(kids[0], "c0"), control.claim(kids[1], "c1")
    assert first is not None and second is not None
    assert set(first.files) == {narration} and first.files[narration].key == stored["narration"]["key"]
    assert second.files == {}  # another job's ref is never resolved
    for i, child in enumerate((first, second)):
        control.finish(child, f"c{i}", JobStatus.SUCCEEDED, result={"outputs": {}, "data": {}})
    again = control.claim(parent.id, "w2")
    assert again is not None and again.resumed is not None
    assert again.resumed["outputs"] == {"narration": narration, "head": head}
    assert again.files[head].key == stored["head"]["key"] and again.files[narration].key == stored["narration"]["key"]


def test_a_forks_files_are_stored_by_their_names_apart_from_the_outputs(tmp_path: Path) -> None:
    """Two fork files fetched under the same file name (a narration and a background both uploaded as
    clip.mp4) are stored apart, by output name, under jobs/<parent>/fork/."""
    from types import SimpleNamespace

    from reelforge.engine.control import ClaimedJob
    from reelforge.engine.runner import Runner
    from reelforge.storage.local import LocalStorage

    storage = LocalStorage(tmp_path / "s")
    runner = Runner(SimpleNamespace(settings=Settings(data_dir=tmp_path / "d"), control=None, storage=storage))  # type: ignore[arg-type]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a" / "clip.mp4").write_bytes(b"narration")
    (tmp_path / "b" / "clip.mp4").write_bytes(b"background")
    job = ClaimedJob(id="job_1", op="build", params={}, tenant="t", queue="cpu", priority=0, attempts=1,
                     max_attempts=2, timeout_s=60)
    stored = runner._store_outputs(job, {"narration": str(tmp_path / "a" / "clip.mp4"),
                                         "background": str(tmp_path / "b" / "clip.mp4")}, folder="fork/")
    assert stored["narration"]["key"] == "jobs/job_1/fork/narration.mp4"
    assert stored["background"]["key"] == "jobs/job_1/fork/background.mp4"
    assert storage.get_file(stored["narration"]["key"], tmp_path / "n.mp4").read_bytes() == b"narration"
