"""The job-control seam: the runner gives a job host everything, so a host with no database runs jobs.

Real parts throughout: a SQLite job database on the parent side (DatabaseControl), local storage, a spawned
job host, ffmpeg, and a loopback webhook receiver. The host is made from settings whose database URL points
at nothing (a closed port on 127.0.0.1), and the URL is not even handed to the host process; the host
then reports that no database module was ever imported in it.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reelforge.config import Settings
from reelforge.engine.control import ClaimedJob, JobStatus, StorageRef
from reelforge.engine.host import JobHost, host_settings_data
from reelforge.engine.runner import Runner
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.services import JobServices
from reelforge.jobs.store import JobRecord
from reelforge.ops.registry import load_plugins
from tests.webhook_receiver import Hooks, webhook_receiver

NO_DATABASE = "postgresql://nobody@127.0.0.1:1/absent"  # port 1: nothing listens, a connect would fail


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    with webhook_receiver() as receiver:
        yield receiver


@dataclass
class Parent:
    """The side that holds the database: services, the job service, and a job host without a database."""

    services: JobServices
    service: JobService
    host: JobHost
    host_settings: Settings


class NoExecutor:
    def submit(self, job: JobRecord) -> None:  # the test claims and runs jobs itself
        pass

    def cancel(self, job_id: str) -> None:
        pass


@pytest.fixture
def parent(tmp_path: Path) -> Iterator[Parent]:
    settings = Settings(data_dir=tmp_path / "data", fetch_allow_private=True, plugins="tests.plugins.slow_ops",
                        heartbeat_s=0.5, lease_ttl_s=5)
    load_plugins(settings.service.plugins)  # as create_app does: the parent validates test ops' params too
    services = JobServices.create(settings)
    service = services.job_service(NoExecutor())
    host_settings = settings.replace(database_url=NO_DATABASE)
    host = JobHost(host_settings)
    yield Parent(services, service, host, host_settings)
    host.close()
    services.close()


def upload(parent: Parent, path: Path, tenant: str) -> str:
    from reelforge.jobs.store import new_file_id

    file_id = new_file_id()
    key = f"uploads/{tenant}/{file_id}{path.suffix}"
    obj = parent.services.storage.put_file(path, key, "video/mp4")
    parent.services.stores.files.create_file(tenant=tenant, filename=path.name, content_type="video/mp4",
                                             size=obj.size, sha256=obj.sha256, storage_key=key, file_id=file_id)
    return file_id


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def run(parent: Parent, job_id: str) -> JobStatus:
    control = parent.services.control
    claimed = control.claim(job_id, "worker-1")
    assert claimed is not None
    return Runner(parent.services.engine).run_claimed(claimed, parent.host, "worker-1")


def test_a_job_host_with_no_database_runs_a_job_end_to_end(parent: Parent, hooks: Hooks,
                                                          make_video: Callable[..., Path]) -> None:
    assert parent.host_settings.service.database_url.get_secret_value() == NO_DATABASE
    assert host_settings_data(parent.host_settings)["service"]["database_url"] == ""  # not even handed over
    file_id = upload(parent, make_video(duration=1.0, size="320x240", fps=25), "t1")
    job, _ = parent.service.submit("t1", JobCreate(op="loop", params={"input": file_id, "duration_s": 2.5,
                                                                       "mode": "forward"}, webhook_url=hooks.url))

    claimed = parent.services.control.claim(job.id, "worker-1")
    assert claimed is not None
    key = parent.services.stores.files.get_file(file_id, "t1").storage_key  # type: ignore[union-attr]
    assert claimed.files == {file_id: StorageRef(key, None)}  # resolved at claim time, for this tenant
    payload = claimed.host_payload("/w")
    assert payload["files"] == {file_id: {"key": key, "url": None}}
    status = Runner(parent.services.engine).run_claimed(claimed, parent.host, "worker-1")

    done = parent.service.get("t1", job.id)
    assert status == JobStatus.SUCCEEDED and done.status == JobStatus.SUCCEEDED, done.error
    meta = done.result["outputs"]["video"]  # type: ignore[index]
    local = parent.services.storage.local_path(meta["key"])
    assert local is not None
    info = ffprobe(local)
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    assert len(video) == 1 and (video[0]["width"], video[0]["height"]) == (320, 240)
    assert abs(float(info["format"]["duration"]) - 2.5) < 0.1

    # the webhook events came from the control side: running on claim, the terminal one on finish
    final = hooks.wait_for("job.succeeded", job.id)
    assert final["result"]["outputs"]["video"]["key"] == meta["key"]
    assert hooks.types(job.id)[0] == "job.running"

    # and the host really holds no database code: the same host process reports what it has loaded
    facts, _ = parent.service.submit("t1", JobCreate(op="test_host_facts", params={}))
    assert run(parent, facts.id) == JobStatus.SUCCEEDED
    data = parent.service.get("t1", facts.id).result["data"]  # type: ignore[index]
    assert data["database_modules"] == []
    # media work runs niced (compute.job_nice, default 10), so it yields the CPU to the API process
    assert data["nice"] == min(19, os.nice(0) + parent.host_settings.compute.job_nice)


def test_claim_resolves_only_the_tenants_own_files(parent: Parent, make_video: Callable[..., Path]) -> None:
    theirs = upload(parent, make_video(duration=1.0, name="theirs.mp4"), "t2")
    # written straight to the store, past the service's submit check, to see what the claim does
    job, _ = parent.services.stores.jobs.create_job(tenant="t1", op="probe", params={"input": theirs},
                                                    queue="cpu", timeout_s=60, max_attempts=1)
    claimed = parent.services.control.claim(job.id, "worker-1")
    assert isinstance(claimed, ClaimedJob) and claimed.files == {}
    assert Runner(parent.services.engine).run_claimed(claimed, parent.host, "worker-1") == JobStatus.FAILED
    failed = parent.service.get("t1", job.id)
    assert failed.error is not None and failed.error["code"] == "input_not_found"


def test_a_job_out_of_attempts_tells_its_webhook(parent: Parent, hooks: Hooks) -> None:
    job, _ = parent.service.submit("t1", JobCreate(op="test_slow", params={"seconds": 1}, webhook_url=hooks.url))
    control = parent.services.control
    claimed = control.claim(job.id, "worker-1")
    assert claimed is not None
    for _ in range(claimed.max_attempts - 1):
        assert control.release(claimed, "worker-1", {"code": "worker_lost", "message": "gone."}) == JobStatus.QUEUED
        claimed = control.claim(job.id, "worker-1")
        assert claimed is not None
    assert control.release(claimed, "worker-1", {"code": "worker_lost", "message": "gone."}) == JobStatus.FAILED
    event = hooks.wait_for("job.failed", job.id)
    assert event["error"]["code"] == "worker_lost" and "Gave up" in event["error"]["message"]


@pytest.mark.parametrize("case", ["plain-failure", "host-killed"])
def test_a_failure_is_the_jobs_own_while_a_reclaimer_watches(tmp_path: Path, case: str) -> None:
    """plain-failure: a processing failure is not held to watch for a shutdown (runner.SHUTDOWN_GRACE_S) and
    ends the job with its own error. host-killed: a host that died *is* held (a signal may mean the service is
    stopping), and the job's lease is renewed meanwhile. Either way, with a lease shorter than the hold and a
    reclaimer sweeping expired leases all the while, the job is never taken for a lost worker."""
    import signal
    import threading

    settings = Settings(data_dir=tmp_path / "data", plugins="tests.plugins.slow_ops", heartbeat_s=0.2,
                        lease_ttl_s=1.5)
    load_plugins(settings.service.plugins)
    services = JobServices.create(settings)
    host = JobHost(settings.replace(database_url=NO_DATABASE))
    stop = threading.Event()

    def reclaim() -> None:
        while not stop.wait(0.1):
            services.stores.jobs.reclaim_expired()

    def kill_host_when_running() -> None:
        while not stop.wait(0.1):
            job_row = service.get("t1", job.id)
            if job_row.progress and host._proc is not None and host._proc.pid:
                os.kill(host._proc.pid, signal.SIGKILL)
                return

    sweeper = threading.Thread(target=reclaim, daemon=True)
    try:
        service = services.job_service(NoExecutor())
        params: dict[str, Any] = ({"key": "plain", "fail_times": 1} if case == "plain-failure"
                                  else {"seconds": 30})
        job, _ = service.submit("t1", JobCreate(op="test_flaky" if case == "plain-failure" else "test_slow",
                                                params=params))
        claimed = services.control.claim(job.id, "worker-1")
        assert claimed is not None
        sweeper.start()
        if case == "host-killed":
            threading.Thread(target=kill_host_when_running, daemon=True).start()
        status = Runner(services.engine).run_claimed(claimed, host, "worker-1")
        stop.set()
        sweeper.join()
        done = service.get("t1", job.id)
        assert done.attempts == 1
        if case == "plain-failure":
            assert status == JobStatus.FAILED and done.status == JobStatus.FAILED
            assert done.error is not None and done.error["code"] == "processing_failed", done.error
        else:  # released by its own runner, as a crash: queued again for its next attempt
            assert status == JobStatus.QUEUED and done.status == JobStatus.QUEUED
            lost = done.notes["last_worker_error"]
            assert lost["code"] == "worker_lost" and "died" in lost["message"], lost
    finally:
        stop.set()
        host.close()
        services.close()
