"""Webhooks as an integrator receives them: a receiver built on the `standardwebhooks` library verifies
every request, and a receiver that is down for "10 minutes" (the default schedule shortened 300 times:
0.017 s, 1 s, 6 s, 24 s ... for 5 s, 5 min, 30 min, 2 h ...; down for 2 s = 10 min) across a service
restart still gets the job's terminal event, then an operator's replay (API and CLI) sends it again."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.integration.service import Service, wait_job
from tests.metrics_check import check_exposition

SECRET = "whsec_" + "aG9va3MtdGVzdC1zZWNyZXQtMzItYnl0ZXMtbG9uZyEh"
DEFAULT_SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]
SCALE = 300  # 10 minutes -> 2 s
WORDS = [{"text": "Hello", "start": 0.0, "end": 0.4}, {"text": "world", "start": 0.45, "end": 0.9}]


@dataclass
class Receiver:
    url: str = ""
    down_until: float = 0.0  # monotonic: answers 503 before this
    events: list[dict[str, Any]] = field(default_factory=list)  # verified deliveries it accepted
    refused: list[str] = field(default_factory=list)  # requests whose verification failed
    tries: list[tuple[float, str]] = field(default_factory=list)  # (when, event type) of every request

    def accepted(self, job_id: str) -> list[tuple[str, str]]:
        return [(e["type"], e["_webhook_id"]) for e in self.events if e["job_id"] == job_id]

    def wait(self, job_id: str, kind: str, count: int = 1, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for t, _ in self.accepted(job_id) if t == kind) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{count} x {kind} not received: {self.events} refused={self.refused}")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Webhook(SECRET)
    state = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = dict(self.headers.items())
            try:
                event = hook.verify(body, headers)
            except WebhookVerificationError as exc:
                state.refused.append(str(exc))
                self._answer(400)
                return
            state.tries.append((time.monotonic(), event["type"]))
            if time.monotonic() < state.down_until:
                self._answer(503)
                return
            event["_webhook_id"] = headers["webhook-id"]
            state.events.append(event)
            self._answer(204)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server.RequestHandlerClass = Handler
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def service(tmp_path, **env: str) -> Service:
    return Service(tmp_path / "data", REELFORGE_WORKERS="1", REELFORGE_WEBHOOK_SECRET=SECRET,
                   REELFORGE_FETCH_ALLOW_PRIVATE="true", REELFORGE_WEBHOOK_RETRY_JITTER="0",
                   REELFORGE_WEBHOOK_RETRY_SCHEDULE=json.dumps([s / SCALE for s in DEFAULT_SCHEDULE]), **env)


def test_standard_webhooks_and_a_receiver_down_for_10_minutes_across_a_restart(tmp_path, receiver: Receiver):
    svc = service(tmp_path).start()
    try:
        with svc.client() as c:
            # 1. every event verifies with standardwebhooks, has its own id, and says its status
            job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 2.5, "marker": "hooks"},
                                           "webhook_url": receiver.url}).json()
            assert wait_job(c, job["id"], timeout=60)["status"] == "succeeded"
            receiver.wait(job["id"], "job.succeeded")
            events = [e for e in receiver.events if e["job_id"] == job["id"]]
            types = [e["type"] for e in events]
            assert types[0] == "job.running" and types[-1] == "job.succeeded" and "job.progress" in types, types
            assert all(e["status"] == ("succeeded" if e["type"] == "job.succeeded" else "running") for e in events)
            ids = [e["_webhook_id"] for e in events]
            assert len(set(ids)) == len(ids) and all(e["id"] == e["_webhook_id"] for e in events)

            # 2. the receiver goes down; a job ends; its terminal event is refused three times
            receiver.down_until = time.monotonic() + 3600
            receiver.tries.clear()
            job = c.post("/v1/jobs", json={"op": "subtitles", "params": {"words": WORDS},
                                           "webhook_url": receiver.url}).json()
            assert wait_job(c, job["id"], timeout=60)["status"] == "succeeded"
        deadline = time.monotonic() + 20  # tried at once and after 0.017 s and 1 s (= 5 s, 5 min): refused
        while sum(1 for _, t in receiver.tries if t == "job.succeeded") < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        down_at = receiver.tries[0][0]
        assert [t for _, t in receiver.tries].count("job.succeeded") == 3
    finally:
        svc.stop()  # 3. the service restarts while the event waits for its 6 s (30 min) retry
    receiver.down_until = down_at + 2.0  # back after "10 minutes"
    svc.start()
    try:
        receiver.wait(job["id"], "job.succeeded", timeout=30)
        tries = [when for when, t in receiver.tries if t == "job.succeeded"]
        assert len(tries) == 4 and tries[-1] - tries[0] >= 6.5  # the 4th try, on schedule (5 s + 5 min + 30 min)
        assert receiver.refused == []
        [(_kind, first_id)] = [a for a in receiver.accepted(job["id"]) if a[0] == "job.succeeded"]
        with svc.client() as c:
            attempts = c.get(f"/v1/jobs/{job['id']}").json()["webhook_attempts"]
            assert [a["status_code"] for a in attempts if a["event"] == "job.succeeded"] == [503, 503, 503, 204]
            # 4. an operator replays the job's events: API, then CLI; the same event id each time
            resp = c.post(f"/v1/jobs/{job['id']}/webhooks/replay")
            assert resp.status_code == 202 and resp.json()["replayed"] >= 1, resp.text
            receiver.wait(job["id"], "job.succeeded", count=2)
            cli = svc.cli("webhooks", "replay", job["id"])
            assert cli.returncode == 0, cli.stderr
            receiver.wait(job["id"], "job.succeeded", count=3)
            assert c.post("/v1/jobs/job_doesnotexist/webhooks/replay").status_code == 404
            # the API's metrics, valid per promtool: webhook outcomes, HTTP requests by route, queue waits
            samples = check_exposition(c.get("/metrics").text)
        got = {(lb["event"], lb["status"]): v for lb, v in samples["reelforge_webhook_deliveries_total"]}
        assert got[("job.succeeded", "delivered")] >= 3  # the recovered try and two replays (this process)
        assert any(lb == {"route": "/v1/jobs/{job_id}/webhooks/replay", "method": "POST", "status": "202"}
                   for lb, _ in samples["reelforge_http_requests_total"])
        assert ({"op": "subtitles", "status": "succeeded"}, 1.0) in samples["reelforge_jobs"]
        secret = svc.cli("webhooks", "secret")
        assert secret.returncode == 0 and secret.stdout.strip() == SECRET
    finally:
        svc.stop()
    assert {i for k, i in receiver.accepted(job["id"]) if k == "job.succeeded"} == {first_id}
    assert receiver.refused == []
