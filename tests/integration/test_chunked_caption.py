"""Chunked `caption` end to end on the embedded service (docs/CHUNKED.md): a 3-minute video with a tone,
captioned in three child jobs and joined, against the same caption in one job — same frames, keyframes
only on the 2 s grid, the same sound packets, a cue that spans a join burned on both sides of it; the same
job again takes every chunk from the step cache.

Small picture (160x90 at 5 fps) so the 3 minutes burn in seconds on a shared 2-core machine."""

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
from tests.integration.service import Service, wait_job

FPS, SIZE, TOTAL = 5, (160, 90), 180
# a cue across each join (60 s and 120 s: frames 300 and 600 with three chunks), one well inside a chunk
SRT = """1
00:00:01,000 --> 00:00:05,000
Hello there

2
00:00:58,000 --> 00:01:03,000
Across the first join

3
00:01:59,000 --> 00:02:01,600
Across the second
"""


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("chunked_caption") / "data", REELFORGE_WORKERS="2").start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "talk.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=s=160x90:r={FPS}:d={TOTAL}",
                    "-f", "lavfi", "-i", f"sine=f=440:d={TOTAL}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "37", "-c:a", "aac", "-shortest", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def video_id(svc: Service, source: Path) -> str:
    with svc.client() as c, source.open("rb") as fh:
        return str(c.post("/v1/files", params={"filename": source.name}, content=fh).json()["id"])


def submit(c: httpx.Client, video: str, **extra: Any) -> str:
    res = c.post("/v1/jobs", json={"op": "caption", "params": {"input": video, "subtitles_text": SRT, **extra}})
    assert res.status_code in (200, 201, 202), res.text
    return str(res.json()["id"])


def download(c: httpx.Client, job: dict[str, Any], dest: Path) -> Path:
    dest.write_bytes(c.get(f"/v1/jobs/{job['id']}/outputs/video").content)
    return dest


def audio_packets(path: Path) -> list[tuple[str, str, str]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "packet=pts,duration,size", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return [(p["pts"], p["duration"], p["size"]) for p in json.loads(out)["packets"]]


def caption_pixels(captioned: np.ndarray, plain: np.ndarray) -> int:
    """Pixels of the lower third that the burn changed by more than encoding noise does (the cue's white
    letters and black outline over the test pattern)."""
    lower = slice(SIZE[1] * 2 // 3, SIZE[1])
    return int((np.abs(captioned[lower].astype(int) - plain[lower].astype(int)) > 96).sum())


def test_chunked_caption_is_seamless(svc: Service, video_id: str, source: Path, tmp_path: Path) -> None:
    with svc.client() as c:
        ref_id, chunked_id = submit(c, video_id, chunks=1), submit(c, video_id, chunks=3)
        ref, chunked = wait_job(c, ref_id, timeout=300), wait_job(c, chunked_id, timeout=300)
        assert ref["status"] == "succeeded", ref
        assert chunked["status"] == "succeeded", chunked
        assert "fork" not in ref["notes"] and ref["result"]["data"].get("chunks") is None
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in chunked["notes"]["fork"]["children"]]
        assert len(children) == 3 and chunked["result"]["data"]["chunks"] == 3
        assert all(ch["op"] == "caption" and ch["status"] == "succeeded" and ch["attempts"] == 1
                   for ch in children), children
        assert [ch["params"]["chunk"]["start_frame"] for ch in children] == [0, 300, 600]
        assert all(ch["notes"]["parent"] == chunked_id and ch["queue"] == chunked["queue"] for ch in children)
        assert chunked["progress"] == 1.0
        ref_path, chunked_path = download(c, ref, tmp_path / "ref.mp4"), download(c, chunked, tmp_path / "chunked.mp4")
        # the same job again: every chunk is the one burned before (step cache), the join the same video
        again = wait_job(c, submit(c, video_id, chunks=3), timeout=300)
        assert again["status"] == "succeeded", again
        cached = [bool(c.get(f"/v1/jobs/{cid}").json()["notes"].get("chunk_cached"))
                  for cid in again["notes"]["fork"]["children"]]
        again_path = download(c, again, tmp_path / "again.mp4")
    m = compare(ref_path, chunked_path, joins=[300, 600], size=SIZE)
    assert m["frames"] == (TOTAL * FPS, TOTAL * FPS)
    assert m["monotonic"]
    assert m["keyframes"] == m["keyframes_ref"] == list(range(0, TOTAL * FPS, 2 * FPS))  # joins at 300, 600
    assert min(m["join_psnr"].values()) > 40, m["join_psnr"]
    assert m["min_psnr"] == 99.0  # in fact every frame is identical (constant QP: docs/CHUNKED.md)
    assert m["samples"][0] == m["samples"][1] and m["audio_max_diff"] == 0.0, m
    assert audio_packets(chunked_path) == audio_packets(ref_path) == audio_packets(source)  # copied, not encoded
    # the cue across the first join is burned on both sides of it, and nothing is burned where no cue is
    frames, plain = gray_frames(chunked_path, *SIZE), gray_frames(source, *SIZE)
    shown = {k: caption_pixels(frames[k], plain[k]) for k in (298, 299, 300, 301, 598, 601)}
    assert min(shown.values()) > 20, shown  # 33-36 pixels where a cue shows, 0 where none does
    assert caption_pixels(frames[50], plain[50]) < 5  # at 10 s: no cue
    assert caption_pixels(frames[310], plain[310]) > 20 and caption_pixels(frames[320], plain[320]) < 5  # ends 63 s
    assert cached == [True, True, True]
    assert np.array_equal(gray_frames(again_path, *SIZE), frames)


@pytest.mark.parametrize("container", ["ts", "mkv"])
def test_a_chunk_is_the_same_frames_of_an_input_that_starts_late(container: str, source: Path,
                                                                 tmp_path: Path) -> None:
    """Inputs whose timestamps start at 3.3 s or later (MPEG-TS read from its start, Matroska seeked): a
    chunk's frames (picked on the clock the unchunked caption sees) are exactly the unchunked caption's
    frames of its window, cues included."""
    from fractions import Fraction

    from reelforge.media.codecs import chunkable_x264_args
    from reelforge.ops.caption import SEEKABLE_DEMUXERS, caption_args, chunk_args
    from reelforge.pipelines.render_plan import Window

    late = tmp_path / f"late.{container}"
    run = ["ffmpeg", "-v", "error", "-y"]
    subprocess.run([*run, "-t", "80", "-i", str(source), "-c", "copy", "-output_ts_offset", "3.3", str(late)],
                   check=True)
    start = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=start_time", "-of", "json",
                                       str(late)], capture_output=True, text=True, check=True).stdout)
    assert float(start["format"]["start_time"]) > 3
    subs = tmp_path / "captions.ass"
    subprocess.run([*run, "-i", "-", str(subs)], input=SRT.encode(), check=True)
    fonts, enc = Path("/usr/share/fonts/truetype/dejavu"), chunkable_x264_args("standard", 10, 1)
    whole, piece = tmp_path / "whole.mp4", tmp_path / "piece.mp4"
    subprocess.run([*run, *caption_args(late, subs, fonts, whole, enc, False)], check=True)
    seek = container == "mkv"
    assert ({"ts": "mpegts", "mkv": "matroska"}[container] in SEEKABLE_DEMUXERS) == seek
    args = chunk_args(late, subs, fonts, piece, Window(290, 320), Fraction(FPS), enc, seek=seek)
    assert ("-ss" in args) == seek
    subprocess.run([*run, *args], check=True)
    frames, chunk = gray_frames(whole, *SIZE), gray_frames(piece, *SIZE)
    assert len(chunk) == 30 and np.array_equal(chunk, frames[290:320])
    assert caption_pixels(chunk[10], gray_frames(late, *SIZE)[300]) > 20  # the cue at 58-63 s is in it
