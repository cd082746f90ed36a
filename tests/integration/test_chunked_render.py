"""Chunked rendering end to end on the embedded service (docs/CHUNKED.md): a 3-minute timeline with captions,
music and transitions across the joins, rendered in three child jobs and joined, against the same render in
one job; an edit in the last minute re-encodes only the last chunk; cancelling the parent cancels every child.

Small picture (160x90 at 5 fps) so the 3 minutes render in seconds on a shared 2-core machine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chunked_media import compare, make_sources, timeline
from tests.integration.service import Service, wait_job

FPS, SIZE = 5, (160, 90)


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("chunked") / "data", REELFORGE_WORKERS="2").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def sources(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    files = make_sources(tmp_path_factory.mktemp("media"))
    ids = {}
    with svc.client() as c:
        for name, path in files.items():
            with path.open("rb") as fh:
                ids[name] = c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"]
    return ids


def submit(c: httpx.Client, params: dict[str, Any]) -> str:
    res = c.post("/v1/jobs", json={"op": "render", "params": params})
    assert res.status_code in (200, 201, 202), res.text
    return str(res.json()["id"])


def download(c: httpx.Client, job: dict[str, Any], dest: Path) -> Path:
    dest.write_bytes(c.get(f"/v1/jobs/{job['id']}/outputs/render").content)
    return dest


def test_chunked_render_is_seamless_and_edits_reencode_one_chunk(svc: Service, sources: dict[str, str],
                                                                 tmp_path: Path) -> None:
    with svc.client() as c:
        ref_id = submit(c, timeline(sources, fps=FPS, size="160x90", chunks=1))
        chunked_id = submit(c, timeline(sources, fps=FPS, size="160x90", chunks=3))
        ref, chunked = wait_job(c, ref_id, timeout=300), wait_job(c, chunked_id, timeout=300)
        assert ref["status"] == "succeeded", ref
        assert chunked["status"] == "succeeded", chunked
        assert "fork" not in ref["notes"] and ref["result"]["data"].get("chunks") is None
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in chunked["notes"]["fork"]["children"]]
        # three picture chunks, then the sound (the whole length, mixed and encoded once) beside them
        assert len(children) == 4 and chunked["result"]["data"]["chunks"] == 3
        assert [set(ch["result"]["outputs"]) for ch in children] == [{"chunk"}] * 3 + [{"sound"}]
        assert all(ch["status"] == "succeeded" and ch["attempts"] == 1 for ch in children), children
        assert all(ch["notes"]["parent"] == chunked_id and ch["queue"] == chunked["queue"] for ch in children)
        assert chunked["progress"] == 1.0
        m = compare(download(c, ref, tmp_path / "ref.mp4"), download(c, chunked, tmp_path / "chunked.mp4"),
                    joins=[300, 600], size=SIZE)
        # an edit in the last minute (caption words after 126 s): only the last chunk is encoded again
        edited_id = submit(c, timeline(sources, fps=FPS, size="160x90", chunks=3, caption_word="x"))
        edited = wait_job(c, edited_id, timeout=300)
        assert edited["status"] == "succeeded", edited
        cached = [bool(c.get(f"/v1/jobs/{cid}").json()["notes"].get("chunk_cached"))
                  for cid in edited["notes"]["fork"]["children"]]
    assert m["frames"] == (900, 900)
    assert m["monotonic"]
    assert m["keyframes"] == m["keyframes_ref"] == list(range(0, 900, 10))  # a GOP of 2 s; joins at 300, 600
    assert min(m["join_psnr"].values()) > 40, m["join_psnr"]
    assert m["min_psnr"] == 99.0  # in fact every frame is identical (constant QP: docs/CHUNKED.md)
    assert m["samples"][0] == m["samples"][1] and m["audio_max_diff"] < 1e-3, m
    assert cached == [True, True, False, True]  # the sound did not change either


def test_a_chunked_render_with_a_large_image_joins_and_ends(svc: Service, sources: dict[str, str],
                                                            tmp_path: Path) -> None:
    """The join's sound pass used to open every picture input too: with a ~2 MB 1080p PNG looped (unmapped)
    ffmpeg 5.1 wrote the AAC, then never exited. Now it reads only what is heard; the video is whole."""
    photo = tmp_path / "photo.png"  # random grey: ~2 MB of PNG (the hang needed more than ~0.5 MB)
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "nullsrc=s=1920x1080,geq=random(1)*255",
                    "-frames:v", "1", "-pix_fmt", "gray", str(photo)], check=True)
    assert photo.stat().st_size > 1_000_000
    total = 64  # over the 60 s chunking threshold; two chunks of 32 s (the minimum is 15 s)
    with svc.client() as c:
        with photo.open("rb") as fh:
            photo_id = c.post("/v1/files", params={"filename": "photo.png"}, content=fh).json()["id"]
        params = {"timeline": {"duration": total, "background": "#203040",
                               "soundtrack": {"src": sources["music"], "loop": True},
                               "tracks": [{"clips": [
                                   {"asset": {"type": "video", "src": sources["clip"]}, "start": 0, "length": 20},
                                   {"asset": {"type": "image", "src": photo_id}, "start": 20, "length": 24},
                                   {"asset": {"type": "video", "src": sources["clip"]}, "start": 44,
                                    "length": 20}]}]},
                  "output": {"format": "mp4", "size": "160x90", "fps": FPS}, "chunks": 2}
        # the work: 320 frames at 160x90 (the PNG decoded for 120 of them), 64 s of sound; a few seconds
        # each here, so 120 s is ample (the bug never ends)
        job = wait_job(c, submit(c, params), timeout=120)
        assert job["status"] == "succeeded", job
        assert job["result"]["data"]["chunks"] == 2
        out = download(c, job, tmp_path / "joined.mp4")
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "format=duration:stream=codec_type,codec_name,nb_read_frames,duration", "-of", "json", str(out)],
        capture_output=True, text=True, check=True).stdout)
    streams = {s["codec_type"]: s for s in probe["streams"]}
    assert sorted(streams) == ["audio", "video"] and len(probe["streams"]) == 2
    assert streams["video"]["codec_name"] == "h264" and int(streams["video"]["nb_read_frames"]) == total * FPS
    assert streams["audio"]["codec_name"] == "aac" and abs(float(streams["audio"]["duration"]) - total) < 0.05
    assert abs(float(probe["format"]["duration"]) - total) < 0.05


def test_cancelling_the_parent_cancels_every_child(svc: Service, sources: dict[str, str]) -> None:
    with svc.client() as c:
        # a slower picture so the chunks are still running when the cancel comes
        job_id = submit(c, timeline(sources, total=90, fps=25, size="1280x720", chunks=4))
        deadline = wait_job(c, job_id, timeout=120, until={"running"})
        for _ in range(300):
            job = c.get(f"/v1/jobs/{job_id}").json()
            kids = (job["notes"].get("fork") or {}).get("children") or []
            if kids and any(c.get(f"/v1/jobs/{k}").json()["status"] == "running" for k in kids):
                break
            assert job["status"] == "running", job
            import time
            time.sleep(0.2)
        assert deadline and kids
        assert c.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        done = wait_job(c, job_id, timeout=60)
        children = [wait_job(c, k, timeout=60) for k in kids]
    assert done["status"] == "cancelled", done
    assert [ch["status"] for ch in children] == ["cancelled"] * len(kids), children
