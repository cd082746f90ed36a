"""Chunked `build` (docs/CHUNKED.md, "build"): a ~59 s narrated build with music and burned captions,
composed in three child jobs (plus one for the sound) from the files its parent stored for them, and joined,
against the same build in one job — same frames, keyframes only on the 2 s grid, the same sound, the same
subtitle files; the same build again from the step cache; a soft-caption build is not chunked. And windows
of a compose with a talking head and a background longer than the narration (the seeked inputs) against
the unchunked compose's frames.

Small picture (320x180 at 10 fps) and espeak's voice, so the whole build takes seconds on a shared 2-core
machine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.chunked_media import compare, gray_frames
from tests.integration.service import Service, download, wait_job

FPS, SIZE = 10, (320, 180)
SENTENCE = ("The quick brown fox jumps over the lazy dog while the narrator keeps on talking about the weather "
            "and the long road home.")
SCRIPT = " ".join([SENTENCE] * 9)  # about 59 s of espeak


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("chunked_build") / "data", REELFORGE_WORKERS="2",
                      REELFORGE_CHUNK_THRESHOLD_S="20", REELFORGE_CHUNK_MIN_S="5",
                      REELFORGE_WHISPER_MODEL="packaged:tiny.en").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def media_ids(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A 3.3 s background clip (looped ping-pong under the narration) and 7 s of music (looped, ducked)."""
    folder = tmp_path_factory.mktemp("media")
    background, music = folder / "background.mp4", folder / "music.mp3"
    run = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i"]
    subprocess.run([*run, "testsrc2=s=192x108:r=25:d=3.3", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(background)], check=True)
    subprocess.run([*run, "sine=f=220:d=7", "-c:a", "libmp3lame", str(music)], check=True)
    ids = {}
    with svc.client() as c:
        for name, path in (("background", background), ("music", music)):
            with path.open("rb") as fh:
                ids[name] = str(c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"])
    return ids


def submit(c: httpx.Client, media: dict[str, str], **extra: Any) -> str:
    params = {"script": SCRIPT, "voice": {"engine": "espeak", "sentence_pause_s": 0.2},
              "backgrounds": [media["background"]], "music": media["music"], "size": f"{SIZE[0]}x{SIZE[1]}",
              "fps": FPS, "quality": "draft", **extra}
    res = c.post("/v1/jobs", json={"op": "build", "params": params})
    assert res.status_code in (200, 201, 202), res.text
    return str(res.json()["id"])


def test_a_chunked_build_is_the_unchunked_build(svc: Service, media_ids: dict[str, str], tmp_path: Path) -> None:
    with svc.client() as c:
        ref = wait_job(c, submit(c, media_ids, chunks=1), timeout=600)  # also caches the narration
        assert ref["status"] == "succeeded", ref
        chunked = wait_job(c, submit(c, media_ids, chunks=3), timeout=600)
        assert chunked["status"] == "succeeded", chunked
        again = wait_job(c, submit(c, media_ids, chunks=3), timeout=600)  # every chunk from the step cache
        assert again["status"] == "succeeded", again
        cached = [bool(c.get(f"/v1/jobs/{cid}").json()["notes"].get("chunk_cached"))
                  for cid in again["notes"]["fork"]["children"]]
        soft = wait_job(c, submit(c, media_ids, chunks=3, captions="soft"), timeout=600)
        assert soft["status"] == "succeeded", soft
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in chunked["notes"]["fork"]["children"]]
        paths = {name: download(c, job, "video", tmp_path / f"{name}.mp4")
                 for name, job in (("ref", ref), ("chunked", chunked))}
        srt = {name: download(c, job, "srt", tmp_path / f"{name}.srt").read_text()
               for name, job in (("ref", ref), ("chunked", chunked))}
        ass = [download(c, job, "ass", tmp_path / f"{job['id']}.ass").read_text() for job in (ref, chunked)]
    # the parent forked three picture chunks and the sound, composed from the files it stored for them
    assert "fork" not in ref["notes"] and ref["result"]["data"].get("chunks") is None
    assert len(children) == 4 and chunked["result"]["data"]["chunks"] == 3
    assert all(ch["op"] == "build" and ch["status"] == "succeeded" and ch["notes"]["parent"] == chunked["id"]
               for ch in children), children
    assert [ch["params"]["chunk"].get("sound", False) for ch in children] == [False, False, False, True]
    assert set(chunked["notes"]["fork"]["outputs"]) == {"narration", "background", "ass", "srt"}
    compose = children[0]["params"]["compose"]
    assert compose["narration"] == f"job://{chunked['id']}/narration" and compose["ass"] == f"job://{chunked['id']}/ass"
    starts = [ch["params"]["chunk"]["start_frame"] for ch in children[:3]]
    assert starts[0] == 0 and all(s % (2 * FPS) == 0 for s in starts)
    # the same outputs and data as the unchunked build
    data, ref_data = chunked["result"]["data"], ref["result"]["data"]
    assert set(chunked["result"]["outputs"]) == set(ref["result"]["outputs"]) == {"video", "srt", "ass"}
    for key in ("duration_s", "frames", "video", "captions", "size", "fps", "final_step"):
        assert data[key] == ref_data[key], key
    assert set(data["steps"]) == set(ref_data["steps"])
    assert srt["ref"] == srt["chunked"] and ass[0] == ass[1]
    assert cached == [True, True, True, True]
    # the same video: frames, keyframes on the 2 s grid only, pictures, sound
    total = ref_data["duration_s"] * FPS
    assert total > 40 * FPS  # longer than the threshold, with room for three chunks
    m = compare(paths["ref"], paths["chunked"], joins=starts[1:], size=SIZE)
    assert m["frames"][0] == m["frames"][1] and abs(m["frames"][0] - total) <= 1, m["frames"]
    assert m["monotonic"]
    assert m["keyframes"] == m["keyframes_ref"] == list(range(0, m["frames"][0], 2 * FPS))
    assert min(m["join_psnr"].values()) > 40, m["join_psnr"]
    assert m["min_psnr"] == 99.0, m["min_psnr"]  # in fact every frame is identical (constant QP: docs/CHUNKED.md)
    assert m["samples"][0] == m["samples"][1] and m["audio_max_diff"] == 0.0, m  # the same samples
    # captions were burned across the joins: the picture differs from the soft build's (no burn) there
    plain = gray_frames(download(httpx.Client(base_url=svc.url), soft, "video", tmp_path / "soft.mp4"), *SIZE)
    burned = gray_frames(paths["chunked"], *SIZE)
    shown = [int((np.abs(burned[k].astype(int) - plain[k].astype(int)) > 64).sum()) > 20 for k in range(len(plain))]
    assert sum(shown) > len(plain) // 2 and all(shown[j - 1] and shown[j] for j in starts[1:])
    # soft captions: the picture is stream-copied, nothing to chunk
    assert "fork" not in soft["notes"] and soft["result"]["data"].get("chunks") is None
    assert soft["result"]["data"]["video"] == "copy"


def test_a_window_with_a_talking_head_and_a_seeked_background_is_the_unchunked_compose(tmp_path: Path) -> None:
    """The compose's inputs in a window keep their clock: a looped VP9-alpha head (15 fps under a 10 fps
    output) and a background longer than the narration (seeked), with burned captions; each chunk is the
    unchunked compose's frames of its window, and the joined chunks the whole."""
    from reelforge.config import Settings
    from reelforge.media.codecs import chunkable_x264_args
    from reelforge.ops.build import lookup_op
    from reelforge.ops.build_compose import ComposeStepParams, compose_inputs
    from reelforge.ops.context import OpContext
    from reelforge.pipelines.chunk_split import chunk_windows
    from reelforge.pipelines.compose_plan import HeadLayout, MusicMix, plan_compose

    run, total = ["ffmpeg", "-v", "error", "-y"], 30
    background, voice, head, ass = (tmp_path / n for n in ("bg.mp4", "voice.wav", "head.webm", "c.ass"))
    subprocess.run([*run, "-f", "lavfi", "-i", f"testsrc2=s=320x180:r={FPS}:d={total + 10}", "-c:v", "libx264",
                    "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(background)], check=True)
    subprocess.run([*run, "-f", "lavfi", "-i", f"sine=frequency=300:duration={total}:sample_rate=48000", str(voice)],
                   check=True)
    subprocess.run([*run, "-f", "lavfi", "-i", "testsrc=s=120x120:r=15:d=2.7", "-vf", "format=yuva420p",
                    "-c:v", "libvpx-vp9", "-b:v", "200k", str(head)], check=True)
    cues = "".join(f"Dialogue: 0,0:00:{i:02d}.00,0:00:{i + 1:02d}.50,Default,Cue {i}\n" for i in range(0, total, 2))
    ass.write_text("[Script Info]\nPlayResX: 320\nPlayResY: 180\n\n[V4+ Styles]\nFormat: Name, Fontname, Fontsize, "
                   "PrimaryColour, Alignment\nStyle: Default,DejaVu Sans,20,&H00FFFFFF,2\n\n[Events]\nFormat: Layer, "
                   "Start, End, Style, Text\n" + cues)
    settings = Settings(data_dir=tmp_path / "data", compute={"chunk_threshold_s": 10, "chunk_min_s": 5})
    compose = lookup_op("build.compose")
    params = compose.params_model.model_validate({
        "background": str(background), "narration": str(voice), "head": str(head), "ass": str(ass),
        "captions": "burn", "size": "320x180", "fps": FPS, "quality": "draft"})
    assert isinstance(params, ComposeStepParams)
    whole = compose.run(params, OpContext.for_test(tmp_path / "whole", settings))
    frames = gray_frames(Path(whole.outputs["video"]), *SIZE)
    assert len(frames) == total * FPS
    inputs = compose_inputs(params, OpContext.for_test(tmp_path / "chunks", settings))
    enc = chunkable_x264_args("draft", 2 * FPS, settings.compute.threads_per_job)
    for i, window in enumerate(chunk_windows(total * FPS, 3, 2 * FPS)):
        piece = tmp_path / f"chunk{i}.mp4"
        args = plan_compose(inputs, piece, size=SIZE, fps=FPS, mode="burn", head=HeadLayout(), music=MusicMix(),
                            video_args=enc, window=window).args
        assert ("-ss" in args) == (window.start_frame > FPS)  # the background is longer than the narration
        subprocess.run([*run, *args], check=True)
        chunk = gray_frames(piece, *SIZE)
        end = window.end_frame or total * FPS
        assert len(chunk) == end - window.start_frame
        assert np.array_equal(chunk, frames[window.start_frame:end]), i
    keyframes = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "frame=key_frame", "-of", "json",
         str(whole.outputs["video"])], capture_output=True, text=True, check=True).stdout)["frames"]
    assert [i for i, f in enumerate(keyframes) if f["key_frame"]] == list(range(0, total * FPS, 2 * FPS))
