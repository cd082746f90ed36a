"""The scale-out path for real: API + Celery workers on the Redis at 127.0.0.1:6379, jobs in PostgreSQL."""

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

from tests.integration.pg import temp_database
from tests.integration.service import Service, parent_pid, pids_with, stop_group, wait_job

pytestmark = pytest.mark.services
REDIS_DB = 11


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    with temp_database() as db_url:
        svc = Service(tmp_path_factory.mktemp("celery") / "data", REELFORGE_EXECUTOR="celery",
                      REELFORGE_DATABASE_URL=db_url,
                      REELFORGE_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}")
        svc.start()
        yield svc
        svc.stop()
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


@contextlib.contextmanager
def worker(svc: Service, queues: str = "cpu,gpu", *args: str,
           env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    log = (svc.data_dir.parent / f"worker-{uuid.uuid4().hex[:6]}.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "reelforge.cli", "worker", "--queues", queues,
                             "--concurrency", "1", *args], env={**svc.env, **(env or {})}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc, 15)


def upload(client, path: Path) -> str:
    with path.open("rb") as fh:
        return client.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"]


def test_health_sees_postgres_and_redis(stack: Service):
    with stack.client() as c:
        body = c.get("/health").json()
    assert body["status"] == "ok", body
    assert body["checks"]["executor"]["executor"] == "celery"


def test_probe_end_to_end_on_celery_and_postgres(stack: Service, make_video):
    with stack.client() as c, worker(stack):
        fid = upload(c, make_video(duration=1.5))
        job = c.post("/v1/jobs", json={"op": "probe", "params": {"input": fid}}).json()
        done = wait_job(c, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert abs(done["result"]["data"]["duration_s"] - 1.5) < 0.1
    assert done["result"]["outputs"]["probe"]["size"] > 0


def test_cancel_reaches_a_remote_worker(stack: Service):
    marker = f"ccancel{uuid.uuid4().hex[:6]}"
    with stack.client() as c, worker(stack):
        job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 60, "marker": marker}}).json()
        deadline = time.monotonic() + 60
        while not pids_with(f"comment={marker}") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids_with(f"comment={marker}")
        t0 = time.monotonic()
        c.post(f"/v1/jobs/{job['id']}/cancel")
        done = wait_job(c, job["id"], timeout=10)
        while pids_with(f"comment={marker}") and time.monotonic() - t0 < 5:
            time.sleep(0.05)
        assert done["status"] == "cancelled"
        assert not pids_with(f"comment={marker}")
        assert time.monotonic() - t0 < 2.5


def test_worker_killed_mid_job_is_retried_by_another_worker(stack: Service):
    marker = f"ckill{uuid.uuid4().hex[:6]}"
    with stack.client() as c:
        with worker(stack) as first:
            job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 4, "marker": marker}}).json()
            deadline = time.monotonic() + 60
            while not pids_with(f"comment={marker}") and time.monotonic() < deadline:
                time.sleep(0.05)
            host = parent_pid(pids_with(f"comment={marker}")[0])
            os.killpg(first.pid, signal.SIGKILL)  # the worker dies without a word...
            os.killpg(host, signal.SIGKILL)  # ...and so does the job host it had spawned
            first.wait()
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "running"
        with worker(stack):
            done = wait_job(c, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2


def test_sigterm_to_a_worker_mid_job_gives_the_attempt_back(stack: Service):
    """A graceful worker stop (SIGTERM, as at a deploy) stops the running job and sends it back to the
    queue without spending an attempt; the next worker runs it to the end."""
    marker = f"cterm{uuid.uuid4().hex[:6]}"
    with stack.client() as c:
        with worker(stack) as first:
            job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 6, "marker": marker}}).json()
            deadline = time.monotonic() + 60
            while not pids_with(f"comment={marker}") and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pids_with(f"comment={marker}")
            assert c.get(f"/v1/jobs/{job['id']}").json()["attempts"] == 1
            os.killpg(first.pid, signal.SIGTERM)
            first.wait(timeout=30)
        queued = c.get(f"/v1/jobs/{job['id']}").json()
        assert queued["status"] == "queued" and queued["attempts"] == 0, queued
        assert not pids_with(f"comment={marker}")
        with worker(stack):
            done = wait_job(c, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 1, done
