"""Chunked img2vid end to end on the embedded service (docs/CHUNKED.md): six stills of different lengths as
Ken Burns clips, joined, rendered by three child jobs (two images each, balanced by duration) and joined by
the parent, against the same video in one job; with a transition (the parent's xfade over the children's
clips); an edit to one image re-renders only its chunk; cancelling the parent cancels every child.

Tiny picture (160x90 at 5 fps) and a chunk threshold of 10 s (chunks of at least 3 s) so it runs in seconds."""

from __future__ import annotations

import itertools
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chunked_media import gray_frames, psnr, video_frames
from tests.integration.service import Service, download, wait_job

FPS, SIZE = 5, (160, 90)
SECONDS = [3, 5, 4, 4, 6, 2]  # 24 s; thirds at 8 and 16 s: chunks of images 0-1, 2-3, 4-5
EFFECTS = ["zoom_in", "pan_left", "zoom_out", "pan_up", "pan_right", "zoom_in"]
PICTURES = ["testsrc2", "mandelbrot", "smptehdbars", "rgbtestsrc", "testsrc", "gradients=seed=7"]
CLIP_STARTS = [sum(SECONDS[:i]) * FPS for i in range(len(SECONDS))]  # 0, 15, 40, 60, 80, 110
JOINS = [CLIP_STARTS[2], CLIP_STARTS[4]]  # where the chunks meet: frames 40 and 80


def make_still(picture: str, dest: Path) -> Path:
    size = f"{':' if '=' in picture else '='}s=320x180"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", picture + size, "-frames:v", "1", str(dest)],
                   check=True)
    return dest


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("chunked_img2vid") / "data", REELFORGE_WORKERS="2",
                      REELFORGE_CHUNK_THRESHOLD_S="10", REELFORGE_CHUNK_MIN_S="3").start()
    yield service
    service.stop()


def upload(c: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        return str(c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"])


@pytest.fixture(scope="module")
def stills(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    folder = tmp_path_factory.mktemp("stills")
    with svc.client() as c:
        return [upload(c, make_still(p, folder / f"still{i}.png")) for i, p in enumerate(PICTURES)]


def params(stills: list[str], chunks: int, **extra: Any) -> dict[str, Any]:
    images = [{"image": s, "duration_s": d, "effect": e} for s, d, e in zip(stills, SECONDS, EFFECTS, strict=True)]
    return {"images": images, "size": "160x90", "fps": FPS, "join": True, "quality": "draft", "chunks": chunks,
            **extra}


def submit(c: httpx.Client, body: dict[str, Any]) -> str:
    res = c.post("/v1/jobs", json={"op": "img2vid", "params": body})
    assert res.status_code in (200, 201, 202), res.text
    return str(res.json()["id"])


def children_of(c: httpx.Client, job: dict[str, Any]) -> list[dict[str, Any]]:
    return [c.get(f"/v1/jobs/{cid}").json() for cid in job["notes"]["fork"]["children"]]


def measure(reference: Path, chunked: Path) -> dict[str, Any]:
    fr, fc = video_frames(reference), video_frames(chunked)
    a, b = gray_frames(reference, *SIZE), gray_frames(chunked, *SIZE)
    times = [float(f["pts_time"]) for f in fc]
    return {"frames": (len(fr), len(fc), len(a), len(b)),
            "keyframes_ref": [i for i, f in enumerate(fr) if f["key_frame"]],
            "keyframes": [i for i, f in enumerate(fc) if f["key_frame"]],
            "monotonic": all(x < y for x, y in itertools.pairwise(times)),
            "end_s": (float(fr[-1]["pts_time"]), times[-1]),
            "join_psnr": {j: min(psnr(a[k], b[k]) for k in range(j - 3, j + 3)) for j in JOINS},
            "min_psnr": min(psnr(x, y) for x, y in zip(a, b, strict=True))}


def test_chunked_img2vid_is_the_unchunked_video_and_an_edit_rerenders_one_chunk(
        svc: Service, stills: list[str], tmp_path: Path) -> None:
    with svc.client() as c:
        ref_id, chunked_id = submit(c, params(stills, 1)), submit(c, params(stills, 3))
        ref, chunked = wait_job(c, ref_id, timeout=180), wait_job(c, chunked_id, timeout=180)
        assert ref["status"] == "succeeded", ref
        assert chunked["status"] == "succeeded", chunked
        assert "fork" not in ref["notes"] and "chunks" not in ref["result"]["data"]
        children = children_of(c, chunked)
        assert [ch["status"] for ch in children] == ["succeeded"] * 3, children
        assert all(ch["notes"]["parent"] == chunked_id and ch["op"] == "img2vid" for ch in children)
        assert all(ch["queue"] == chunked["queue"] and ch["attempts"] == 1 for ch in children)
        groups = [(ch["params"]["chunk"]["first"], ch["params"]["chunk"]["end"]) for ch in children]
        assert groups == [(0, 2), (2, 4), (4, 6)]
        assert all(sorted(ch["result"]["outputs"]) == ["chunk"] for ch in children)
        data, ref_data = chunked["result"]["data"], ref["result"]["data"]
        assert data["chunks"] == 3 and set(data) - {"chunks"} == set(ref_data)
        assert data["duration_s"] == ref_data["duration_s"] == 24.0 and data["clips"] == 6
        assert sorted(chunked["result"]["outputs"]) == sorted(ref["result"]["outputs"]) == ["video"]
        assert chunked["progress"] == 1.0
        m = measure(download(c, ref, "video", tmp_path / "ref.mp4"),
                    download(c, chunked, "video", tmp_path / "chunked.mp4"))

        # the fifth image edited: only the last chunk (images 4 and 5) is rendered again
        edited_stills = [*stills[:4], upload(c, make_still("smptebars", tmp_path / "edited.png")), stills[5]]
        edited = wait_job(c, submit(c, params(edited_stills, 3)), timeout=180)
        assert edited["status"] == "succeeded", edited
        cached = [bool(ch["notes"].get("chunk_cached")) for ch in children_of(c, edited)]
        edited_frames = gray_frames(download(c, edited, "video", tmp_path / "edited.mp4"), *SIZE)
    assert m["frames"] == (120, 120, 120, 120), m
    assert m["monotonic"] and abs(m["end_s"][0] - m["end_s"][1]) < 1e-6, m
    assert m["keyframes"] == m["keyframes_ref"], m  # each clip is its own encode: a keyframe at its start
    assert set(CLIP_STARTS) <= set(m["keyframes"]), m
    assert min(m["join_psnr"].values()) > 40, m
    assert m["min_psnr"] == 99.0, m  # in fact every frame is identical: the same clips, joined by copy
    assert cached == [True, True, False]
    ref_frames = gray_frames(tmp_path / "ref.mp4", *SIZE)
    assert len(edited_frames) == 120
    assert min(psnr(x, y) for x, y in zip(ref_frames[:80], edited_frames[:80], strict=True)) == 99.0
    assert psnr(ref_frames[90], edited_frames[90]) < 30  # the new picture is in the video


def test_chunked_img2vid_with_a_transition_joins_the_childrens_clips(svc: Service, stills: list[str],
                                                                     tmp_path: Path) -> None:
    extra = {"transition": "fade", "transition_s": 0.6, "keep_clips": True}  # 3 frames per transition
    with svc.client() as c:
        ref = wait_job(c, submit(c, params(stills, 1, **extra)), timeout=180)
        chunked = wait_job(c, submit(c, params(stills, 3, **extra)), timeout=180)
        assert ref["status"] == "succeeded", ref
        assert chunked["status"] == "succeeded", chunked
        children = children_of(c, chunked)
        assert [sorted(ch["result"]["outputs"]) for ch in children] == [
            ["clip_001", "clip_002"], ["clip_003", "clip_004"], ["clip_005", "clip_006"]]
        names = [f"clip_{i:03d}" for i in range(1, 7)]
        assert sorted(chunked["result"]["outputs"]) == sorted(ref["result"]["outputs"]) == [*names, "video"]
        data, ref_data = chunked["result"]["data"], ref["result"]["data"]
        assert data["chunks"] == 3 and set(data) - {"chunks"} == set(ref_data)
        assert data["duration_s"] == ref_data["duration_s"] == pytest.approx(24 - 5 * 0.6)
        m = measure(download(c, ref, "video", tmp_path / "ref.mp4"),
                    download(c, chunked, "video", tmp_path / "chunked.mp4"))
        clip_frames = [len(gray_frames(download(c, chunked, n, tmp_path / f"{n}.mp4"), *SIZE)) for n in names]
    assert clip_frames == [s * FPS for s in SECONDS]
    assert m["frames"] == (105, 105, 105, 105), m  # 120 frames less 3 for each of the 5 transitions
    assert m["monotonic"] and m["keyframes"] == m["keyframes_ref"], m
    assert m["min_psnr"] == 99.0, m  # the same xfade over the same clips


def test_chunked_img2vid_keeping_the_clips_joins_them_by_copy(svc: Service, stills: list[str],
                                                                tmp_path: Path) -> None:
    with svc.client() as c:
        job = wait_job(c, submit(c, params(stills, 2, keep_clips=True)), timeout=180)
        assert job["status"] == "succeeded", job
        children = children_of(c, job)
        assert [sorted(ch["result"]["outputs"]) for ch in children] == [
            ["clip_001", "clip_002", "clip_003"], ["clip_004", "clip_005", "clip_006"]]  # 12 s each
        assert sorted(job["result"]["outputs"]) == [*(f"clip_{i:03d}" for i in range(1, 7)), "video"]
        video = download(c, job, "video", tmp_path / "video.mp4")
        last = gray_frames(download(c, job, "clip_006", tmp_path / "clip_006.mp4"), *SIZE)
    frames = gray_frames(video, *SIZE)
    assert len(frames) == 120 and job["result"]["data"]["chunks"] == 2
    assert min(psnr(x, y) for x, y in zip(frames[110:], last, strict=True)) == 99.0  # the clip, copied


def test_cancelling_the_parent_cancels_every_child(svc: Service, stills: list[str]) -> None:
    # a slower picture so the chunks are still rendering when the cancel comes
    body = {**params(stills, 3), "size": "1280x720", "fps": 25, "quality": "standard"}
    body["images"] = [{**img, "duration_s": 12} for img in body["images"]]
    with svc.client() as c:
        job_id = submit(c, body)
        wait_job(c, job_id, timeout=120, until={"running"})
        kids: list[str] = []
        for _ in range(300):
            job = c.get(f"/v1/jobs/{job_id}").json()
            kids = (job["notes"].get("fork") or {}).get("children") or []
            if kids and any(c.get(f"/v1/jobs/{k}").json()["status"] == "running" for k in kids):
                break
            assert job["status"] == "running", job
            time.sleep(0.2)
        assert kids
        assert c.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
        done = wait_job(c, job_id, timeout=60)
        children = [wait_job(c, k, timeout=60) for k in kids]
    assert done["status"] == "cancelled", done
    assert [ch["status"] for ch in children] == ["cancelled"] * len(kids), children
