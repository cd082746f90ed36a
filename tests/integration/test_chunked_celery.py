"""Chunked rendering on real Celery workers (Redis broker, PostgreSQL job store; docs/CHUNKED.md): the chunk
count comes from the workers' concurrency, and a worker killed with SIGKILL while it holds a chunk costs
only that chunk a second attempt; a chunked build's children read the files their parent stored for them."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.chunked_media import make_sources, timeline
from tests.integration.pg import temp_database
from tests.integration.service import Service, parent_pid, pids_with, stop_group, wait_job

pytestmark = pytest.mark.services
REDIS_DB = 13  # this module's own database on the shared Redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    with temp_database() as db_url:
        svc = Service(tmp_path_factory.mktemp("chunked-celery") / "data", REELFORGE_EXECUTOR="celery",
                      REELFORGE_DATABASE_URL=db_url, REELFORGE_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
                      REELFORGE_WORKER_QUEUES="cpu")
        svc.start()
        yield svc
        svc.stop()
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


@contextlib.contextmanager
def worker(svc: Service, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    log = (svc.data_dir.parent / f"worker-{uuid.uuid4().hex[:6]}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "reelforge.cli", "worker", "--queues", "cpu", "--concurrency", "1",
                             "--name", f"chunk-{uuid.uuid4().hex[:6]}@%h"],
                            env={**svc.env, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc, 15)


def test_a_worker_killed_mid_chunk_costs_only_that_chunk_a_retry(stack: Service, tmp_path: Path) -> None:
    files = make_sources(tmp_path / "media")
    with stack.client() as c, worker(stack) as first, worker(stack) as second:
        ids = {}
        for name, path in files.items():
            with path.open("rb") as fh:
                ids[name] = c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"]
        time.sleep(3)  # both workers up (the chunk count is asked of the live workers)
        res = c.post("/v1/jobs", json={"op": "render", "params": timeline(ids, total=90, fps=10, size="320x180")})
        job_id = res.json()["id"]
        kids: list[str] = []
        deadline = time.monotonic() + 120
        victim = None
        while time.monotonic() < deadline and victim is None:
            job = c.get(f"/v1/jobs/{job_id}").json()
            assert job["status"] in ("queued", "running"), job
            kids = (job["notes"].get("fork") or {}).get("children") or []
            for kid in kids[:2]:  # a picture chunk (the third child is the sound)
                found = pids_with(kid)
                if found:
                    victim = (kid, found[0])
                    break
            time.sleep(0.1)
        assert victim is not None, "no chunk started"
        assert len(kids) == 3  # two workers, one thread each: two picture chunks, then the sound
        kid, ffmpeg_pid = victim
        host = parent_pid(ffmpeg_pid)
        holder = first if parent_pid(host) == first.pid else second
        os.killpg(holder.pid, signal.SIGKILL)  # the worker dies without a word...
        with contextlib.suppress(ProcessLookupError):
            os.killpg(host, signal.SIGKILL)  # ...and so does the job host it had spawned
        holder.wait()
        done = wait_job(c, job_id, timeout=300)
        children = {k: c.get(f"/v1/jobs/{k}").json() for k in kids}
    assert done["status"] == "succeeded", done
    assert children[kid]["attempts"] == 2, children[kid]
    assert all(ch["attempts"] == 1 for k, ch in children.items() if k != kid), children
    assert all(ch["status"] == "succeeded" for ch in children.values())
    assert done["result"]["data"]["chunks"] == 2


def test_a_build_is_composed_in_chunks_by_the_workers(stack: Service, tmp_path: Path) -> None:
    """No `chunks`: two workers of one thread -> two windows and the sound, each child in a worker process
    of its own attempt, reading the narration, background and captions the parent stored (job:// refs)."""
    from tests.integration.test_chunked_build import SCRIPT

    clip = tmp_path / "background.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=192x108:r=25:d=3.3", "-c:v",
                    "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    env = {"REELFORGE_CHUNK_THRESHOLD_S": "20", "REELFORGE_CHUNK_MIN_S": "5",
           "REELFORGE_WHISPER_MODEL": "packaged:tiny.en"}
    with stack.client() as c, worker(stack, **env), worker(stack, **env):
        with clip.open("rb") as fh:
            bg = c.post("/v1/files", params={"filename": clip.name}, content=fh).json()["id"]
        time.sleep(3)  # both workers up (the chunk count is asked of the live workers)
        res = c.post("/v1/jobs", json={"op": "build", "params": {
            "script": SCRIPT, "voice": {"engine": "espeak", "sentence_pause_s": 0.2}, "backgrounds": [bg],
            "size": "320x180", "fps": 10, "quality": "draft"}})
        done = wait_job(c, res.json()["id"], timeout=600)
        children = [c.get(f"/v1/jobs/{k}").json() for k in (done["notes"].get("fork") or {}).get("children", [])]
        video = c.get(f"/v1/jobs/{done['id']}/outputs/video").content
    assert done["status"] == "succeeded", done
    assert done["result"]["data"]["chunks"] == 2 and len(children) == 3
    assert all(ch["status"] == "succeeded" and ch["params"]["compose"]["narration"] == f"job://{done['id']}/narration"
               for ch in children), children
    path = tmp_path / "build.mp4"
    path.write_bytes(video)
    frames = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                             "stream=nb_read_frames", "-of", "csv=p=0", str(path)],
                            capture_output=True, text=True, check=True).stdout.strip()
    assert abs(int(frames) - done["result"]["data"]["duration_s"] * 10) <= 1
