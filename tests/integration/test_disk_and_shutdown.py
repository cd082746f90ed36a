"""A full data disk and a graceful restart, on the real service (uvicorn + SQLite + local executor in a
subprocess): a job that does not fit, or fills the disk while it runs, fails once with `disk_full` and
the service stays up; SIGTERM while a job runs never spends one of its attempts."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.service import Service, parent_pid, pids_with, wait_job

MB = 1024 * 1024
PLUGINS = "tests.plugins.slow_ops,tests.plugins.disk_ops"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 40 MB tmpfs to hold the service's whole data dir (job store included)."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(mnt)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root / CAP_SYS_ADMIN): {made.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _ballast(path: Path, leave_free: int) -> None:
    free = os.statvfs(path).f_bavail * os.statvfs(path).f_frsize
    with (path / "ballast.bin").open("wb") as fh:
        fh.truncate(0)
        fh.write(b"\1" * max(0, free - leave_free))


def test_job_that_does_not_fit_or_fills_the_disk_fails_once_with_disk_full(small_disk: Path):
    svc = Service(small_disk / "data", REELFORGE_PLUGINS=PLUGINS, REELFORGE_WORKERS="1",
                  REELFORGE_DISK_RESERVE_BYTES=str(4 * MB), REELFORGE_DISK_LOW_BYTES=str(30 * MB))
    svc.log = small_disk.parent / "serve.log"  # not on the small disk
    svc.start()
    try:
        with svc.client() as c:
            # 1. refused before any work: 10 MB free, the job asks for 10 s of output (>= 16 MB + 30 MB)
            _ballast(small_disk, 10 * MB)
            health = c.get("/health")
            assert health.status_code == 200 and health.json()["status"] == "degraded"
            assert health.json()["disk"]["low"] is True and health.json()["disk"]["free_bytes"] < 12 * MB
            job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 10}}).json()
            done = wait_job(c, job["id"], timeout=60)
            assert done["status"] == "failed" and done["error"]["code"] == "disk_full", done
            assert "free" in done["error"]["message"] and done["attempts"] == 1
            (small_disk / "ballast.bin").unlink()

            # 2. ENOSPC in the middle of the job (ffmpeg's stderr / a Python write / the job store's own
            # writes): failed once, not retried, the job's space given back
            for writer in ("ffmpeg", "python"):
                job = c.post("/v1/jobs", json={"op": "test_fill", "params": {"megabytes": 80,
                                                                             "writer": writer}}).json()
                done = wait_job(c, job["id"], timeout=90)
                assert done["status"] == "failed" and done["error"]["code"] == "disk_full", done
                assert done["attempts"] == 1, done
                time.sleep(1.5)  # a retry or a reclaim would show by now (lease 3 s, reclaim every 1.5 s)
                again = c.get(f"/v1/jobs/{job['id']}").json()
                assert again["status"] == "failed" and again["attempts"] == 1, again
                assert not (small_disk / "data" / "work" / job["id"]).exists()

            # 3. the service stayed healthy: it answers, has its space back, and runs the next job
            health = c.get("/health")
            assert health.status_code == 200 and health.json()["checks"]["executor"]["threads_alive"] >= 2
            assert health.json()["disk"]["free_bytes"] > 30 * MB
            ok = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.5}}).json()
            assert wait_job(c, ok["id"], timeout=60)["status"] == "succeeded"
    finally:
        svc.stop()


def _start_slow(c: httpx.Client, seconds: float) -> tuple[str, str]:
    marker = f"term-{uuid.uuid4().hex[:8]}"
    job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": seconds, "marker": marker}}).json()
    deadline = time.monotonic() + 60
    while not pids_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with(marker), "the slow job's ffmpeg did not start"
    assert c.get(f"/v1/jobs/{job['id']}").json()["attempts"] == 1
    return job["id"], marker


def _load(url: str, job_id: str, stop: threading.Event) -> None:
    """Status polling while the service shuts down (the issue saw the lost attempt "under load")."""
    with httpx.Client(base_url=url, timeout=2) as c:
        while not stop.is_set():
            try:
                c.get(f"/v1/jobs/{job_id}")
            except httpx.HTTPError:
                time.sleep(0.05)


def _follow(url: str, job_id: str, stop: threading.Event) -> None:
    """A client following the job's progress stream: an open request keeps uvicorn draining connections
    (up to its 10 s graceful timeout) before the app's own shutdown code runs."""
    try:
        with httpx.stream("GET", f"{url}/v1/jobs/{job_id}/events", timeout=30) as resp:
            for _ in resp.iter_lines():
                if stop.is_set():
                    return
    except httpx.HTTPError:
        pass


@pytest.mark.parametrize("how", ["service", "every-process", "killed-after-term"])
def test_sigterm_during_a_long_job_never_spends_an_attempt(tmp_path: Path, how: str):
    """service: SIGTERM to the service (docker stop, Ctrl-C); every-process: SIGTERM to the job host and
    its ffmpeg too, at the same moment (systemd's control-group stop); killed-after-term: the supervisor
    SIGKILLs the service 2 s after its SIGTERM, while uvicorn still drains an open progress stream."""
    data = tmp_path / "data"
    svc = Service(data, REELFORGE_WORKERS="1").start()
    stop = threading.Event()
    try:
        with svc.client() as c:
            job_id, marker = _start_slow(c, 12)
            load = [threading.Thread(target=fn, args=(svc.url, job_id, stop), daemon=True)
                    for fn in (_load, _load, _load, _follow)]
            for t in load:
                t.start()
            time.sleep(0.5)
            assert svc.proc is not None
            if how == "every-process":
                ffmpeg = pids_with(marker)
                host = parent_pid(ffmpeg[0])
                os.killpg(svc.proc.pid, signal.SIGTERM)
                for pid in (host, *ffmpeg):
                    os.kill(pid, signal.SIGTERM)
            elif how == "killed-after-term":
                os.killpg(svc.proc.pid, signal.SIGTERM)
                time.sleep(2)  # a supervisor with a short stop timeout
                os.killpg(svc.proc.pid, signal.SIGKILL)
            if how == "service":
                svc.stop()
            else:
                svc.proc.wait(timeout=30)
                svc.proc = None
            stop.set()
        deadline = time.monotonic() + 10
        while pids_with(marker) and time.monotonic() < deadline:  # no orphaned ffmpeg keeps running
            time.sleep(0.2)
        assert not pids_with(marker)

        svc = Service(data, REELFORGE_WORKERS="1").start()
        with svc.client() as c:
            done = wait_job(c, job_id, timeout=120)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1, done  # the interrupted run was given back
        assert "interrupted_by_shutdown" not in done["notes"]
    finally:
        stop.set()
        svc.stop()
