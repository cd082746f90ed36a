"""The RunPod REST client against a local fake of RunPod's documented serverless API (loopback HTTP server).

The fake keeps real state: jobs move IN_QUEUE -> IN_PROGRESS (with progress_update output) -> a terminal
status as they are polled; it checks the Bearer key, answers 429 with Retry-After and 5xx when told to.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reelforge.engine.runpod import (
    RunPodAuthError,
    RunPodClient,
    RunPodNotFound,
    RunPodUnavailable,
)

KEY = "rp_test_key"
ENDPOINT = "ep123"


@dataclass
class FakeRunPod:
    url: str = ""
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail_next: list[int] = field(default_factory=list)  # status codes to answer before serving normally
    retry_after: str = "1"
    requests: list[tuple[str, str]] = field(default_factory=list)

    def step(self, job: dict[str, Any]) -> None:
        """One poll's worth of progress for a job that is not finished."""
        if job["status"] in ("COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"):
            return
        job["polls"] += 1
        mode = job["input"].get("mode", "ok")
        if job["polls"] == 1:
            job["status"] = "IN_PROGRESS"
            job["output"] = {"progress": 0.5, "stage": "encoding"}
            job["delayTime"] = 1500
        elif mode == "fail":
            job.update(status="FAILED", error="handler raised: bad params", output=None, executionTime=300)
        elif mode == "timeout":
            job.update(status="TIMED_OUT", output=None, executionTime=600000)
        elif mode == "slow":
            job["output"] = {"progress": min(0.9, 0.5 + 0.1 * job["polls"])}
        else:
            job.update(status="COMPLETED", output={"ok": True, "echo": job["input"]}, executionTime=2500)


@pytest.fixture
def fake() -> Iterator[FakeRunPod]:
    state = FakeRunPod()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def route(self, method: str) -> None:
            state.requests.append((method, self.path))
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                return self.answer(401, {"error": "Unauthorized"})
            if state.fail_next:
                code = state.fail_next.pop(0)
                return self.answer(code, {"error": "busy"}, {"Retry-After": state.retry_after} if code == 429 else {})
            prefix = f"/v2/{ENDPOINT}"
            if not self.path.startswith(prefix + "/"):
                return self.answer(404, {"error": "endpoint not found"})
            parts = self.path[len(prefix) + 1:].split("/")
            if method == "POST" and parts == ["run"]:
                job_id = f"{uuid.uuid4()}-u1"
                state.jobs[job_id] = {"id": job_id, "status": "IN_QUEUE", "input": body["input"], "polls": 0,
                                      "policy": body.get("policy")}
                return self.answer(200, {"id": job_id, "status": "IN_QUEUE"})
            if parts == ["health"]:
                active = [j for j in state.jobs.values() if j["status"] in ("IN_QUEUE", "IN_PROGRESS")]
                return self.answer(200, {"jobs": {"inQueue": sum(j["status"] == "IN_QUEUE" for j in active),
                                                  "inProgress": sum(j["status"] == "IN_PROGRESS" for j in active)},
                                         "workers": {"idle": 1, "running": 0}})
            if method == "POST" and parts == ["purge-queue"]:
                queued = [k for k, j in state.jobs.items() if j["status"] == "IN_QUEUE"]
                for k in queued:
                    state.jobs[k]["status"] = "CANCELLED"
                return self.answer(200, {"removed": len(queued), "status": "completed"})
            if len(parts) == 2 and parts[1] in state.jobs:
                job = state.jobs[parts[1]]
                if parts[0] == "status":
                    state.step(job)
                elif parts[0] == "cancel" and method == "POST":
                    if job["status"] in ("IN_QUEUE", "IN_PROGRESS"):
                        job["status"] = "CANCELLED"
                else:
                    return self.answer(404, {"error": "not found"})
                shown = {k: v for k, v in job.items() if k not in ("input", "polls", "policy")}
                return self.answer(200, shown)
            return self.answer(404, {"error": "job not found"})

        def do_GET(self) -> None:
            self.route("GET")

        def do_POST(self) -> None:
            self.route("POST")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v2"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def client(fake: FakeRunPod, key: str = KEY, slept: list[float] | None = None, **kw: Any) -> RunPodClient:
    waits = slept if slept is not None else []
    return RunPodClient(ENDPOINT, key, base_url=fake.url, sleep=waits.append, **kw)


def test_a_job_goes_from_queue_to_progress_to_completed(fake: FakeRunPod) -> None:
    rp = client(fake)
    started = rp.run({"op": "probe", "mode": "ok"}, execution_timeout_s=120, ttl_s=600)
    assert started.status == "IN_QUEUE" and not started.terminal
    assert next(iter(fake.jobs.values()))["policy"] == {"executionTimeout": 120000, "ttl": 600000}
    assert rp.health()["jobs"]["inQueue"] == 1
    running = rp.status(started.id)
    assert running.status == "IN_PROGRESS" and running.progress == 0.5 and running.delay_s == 1.5
    done = rp.status(started.id)
    assert done.status == "COMPLETED" and done.terminal and done.progress is None
    assert done.output == {"ok": True, "echo": {"op": "probe", "mode": "ok"}} and done.execution_s == 2.5


def test_failed_and_timed_out_jobs_are_reported_as_such(fake: FakeRunPod) -> None:
    rp = client(fake)
    failed = rp.run({"mode": "fail"})
    rp.status(failed.id)
    end = rp.status(failed.id)
    assert end.status == "FAILED" and end.error == "handler raised: bad params"
    slow = rp.run({"mode": "timeout"})
    rp.status(slow.id)
    assert rp.status(slow.id).status == "TIMED_OUT"


def test_cancel_and_purge(fake: FakeRunPod) -> None:
    rp = client(fake)
    job = rp.run({"mode": "slow"})
    assert rp.status(job.id).status == "IN_PROGRESS"
    assert rp.cancel(job.id).status == "CANCELLED"
    assert rp.status(job.id).status == "CANCELLED"  # stays cancelled
    rp.run({"mode": "ok"})
    rp.run({"mode": "ok"})
    assert rp.purge_queue() == 2


def test_429_waits_for_retry_after_and_5xx_backs_off(fake: FakeRunPod) -> None:
    slept: list[float] = []
    rp = client(fake, slept=slept, backoff_s=0.25)
    fake.fail_next = [429, 503, 502]
    fake.retry_after = "2"
    job = rp.run({"mode": "ok"})
    assert job.status == "IN_QUEUE"
    assert slept == [2.0, 0.5, 1.0]  # Retry-After as given, then exponential backoff for the 5xx
    assert fake.requests.count(("POST", f"/v2/{ENDPOINT}/run")) == 4


def test_what_remains_after_the_retries_is_unavailable(fake: FakeRunPod) -> None:
    rp = client(fake, retries=2)
    fake.fail_next = [500, 500, 500]
    with pytest.raises(RunPodUnavailable, match="3 tries"):
        rp.run({"mode": "ok"})
    down = RunPodClient(ENDPOINT, KEY, base_url="http://127.0.0.1:1/v2", retries=1, sleep=lambda _s: None,
                        timeout_s=2)
    with pytest.raises(RunPodUnavailable):
        down.health()


def test_a_refused_key_and_unknown_jobs_are_not_retried(fake: FakeRunPod) -> None:
    rp = client(fake, key="wrong")
    with pytest.raises(RunPodAuthError):
        rp.run({"mode": "ok"})
    assert len(fake.requests) == 1
    with pytest.raises(RunPodNotFound):
        client(fake).status("no-such-job")
