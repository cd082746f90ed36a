"""Signed webhooks against a real HTTP receiver on loopback: signatures, retries, order, throttling."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reelforge.config import Settings
from reelforge.jobs.webhooks import WebhookSender, sign, standard_secret, verify

SECRET = "whsec-test-secret"


@dataclass
class Received:
    event: str
    timestamp: str
    signature: str
    content_type: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 0  # what the receiver answered
    at: float = 0.0

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A loopback webhook endpoint; `answer(received, nth_request_for_this_event)` picks the status."""

    port: int
    answer: Callable[[Received, int], int] = lambda _r, _n: 204
    retry_after: str = "0"  # sent with 429 and 503 answers
    got: list[Received] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def delivered(self) -> list[Received]:
        """Requests that were answered 2xx, in arrival order."""
        with self.lock:
            return [r for r in self.got if 200 <= r.status < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Receiver(port=server.server_address[1])

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            got = Received(event=self.headers.get("X-ReelForge-Event", ""),
                           timestamp=self.headers.get("X-ReelForge-Timestamp", ""),
                           signature=self.headers.get("X-ReelForge-Signature", ""),
                           content_type=self.headers.get("Content-Type", ""), body=body,
                           headers=dict(self.headers.items()), at=time.monotonic())
            key = f"{got.json.get('job_id')}/{got.event}"
            with state.lock:
                state.counts[key] = state.counts.get(key, 0) + 1
                nth = state.counts[key]
            status = state.answer(got, nth)
            got.status = status
            with state.lock:
                state.got.append(got)
            self.send_response(status)
            if status in (429, 503):
                self.send_header("Retry-After", state.retry_after)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server.RequestHandlerClass = Handler
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class Attempts:
    rows: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def __call__(self, job_id: str, attempt: dict[str, Any]) -> None:
        self.rows.append((job_id, attempt))

    def for_event(self, event: str) -> list[dict[str, Any]]:
        return [a for _j, a in self.rows if a["event"] == event]


@pytest.fixture
def local_settings(settings: Settings) -> Settings:
    return settings.replace(fetch_allow_private=True, webhook_secret=SECRET)


def make_sender(settings: Settings, attempts: Attempts, **kw: Any) -> WebhookSender:
    kw.setdefault("schedule", [0.01] * 4)
    kw.setdefault("jitter", 0)
    return WebhookSender(settings, attempts, **kw)


def standard_verify(secret: str, got: Received) -> dict[str, Any]:
    """What a receiver built on the `standardwebhooks` library does with the request (raises if not ours)."""
    from standardwebhooks.webhooks import Webhook

    return Webhook(standard_secret(secret)).verify(got.body, got.headers)


def event(job_id: str, kind: str, **extra: Any) -> dict[str, Any]:
    return {"type": f"job.{kind}", "job_id": job_id, **extra}


def test_sign_and_verify_recipe() -> None:
    body = b'{"type":"job.succeeded"}'
    mac = sign(SECRET, 1_700_000_000, body)
    assert len(mac) == 64
    assert verify(SECRET, 1_700_000_000, body, f"v1={mac}", now=1_700_000_100)
    assert verify(SECRET, "1700000000", body, f"v1=deadbeef, v1={mac}", now=1_700_000_100)  # rotation
    assert not verify(SECRET, 1_700_000_000, body + b" ", f"v1={mac}", now=1_700_000_100)
    assert not verify("other", 1_700_000_000, body, f"v1={mac}", now=1_700_000_100)
    assert not verify(SECRET, 1_700_000_000, body, f"v1={mac}", now=1_700_000_301)  # too old: replay
    assert not verify(SECRET, "soon", body, f"v1={mac}")
    assert not verify(SECRET, 1_700_000_000, body, mac, now=1_700_000_000)  # no scheme prefix


def test_delivery_is_signed(local_settings: Settings, receiver: Receiver) -> None:
    attempts = Attempts()
    sender = make_sender(local_settings, attempts)
    payload = event("job-1", "succeeded", result={"outputs": {"video": "https://cdn/x.mp4"}}, note="ünï")
    assert sender.send("job-1", receiver.url, payload, kind="succeeded")
    assert sender.close(timeout=10)
    [got] = receiver.got
    assert got.event == "job.succeeded" and got.content_type == "application/json"
    assert got.signature.startswith("v1=")
    assert verify(SECRET, got.timestamp, got.body, got.signature)
    assert got.json == {"id": got.headers["webhook-id"], **payload}
    assert got.headers["webhook-id"].startswith("evt_")
    assert got.headers["webhook-signature"].startswith("v1,")
    assert standard_verify(SECRET, got) == got.json
    assert got.headers["webhook-timestamp"] == got.timestamp
    assert attempts.rows == [("job-1", {"event": "job.succeeded", "url": receiver.url, "attempt": 1,
                                        "status_code": 204, "at": attempts.rows[0][1]["at"]})]
    assert abs(attempts.rows[0][1]["at"] - time.time()) < 60  # unix seconds, as the job store keeps them


def test_retries_after_server_errors_then_succeeds(local_settings: Settings, receiver: Receiver) -> None:
    receiver.answer = lambda _r, nth: 500 if nth <= 2 else (429 if nth == 3 else 200)
    attempts = Attempts()
    sender = make_sender(local_settings, attempts)
    sender.send("job-2", receiver.url, event("job-2", "failed", error={"code": "x"}), kind="failed")
    assert sender.close(timeout=20)
    rows = attempts.for_event("job.failed")
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4]
    assert [r["status_code"] for r in rows] == [500, 500, 429, 200]
    assert len({r.body for r in receiver.got}) == 1  # the same body every time...
    assert all(verify(SECRET, r.timestamp, r.body, r.signature) for r in receiver.got)  # ...each signed
    assert len({r.headers["webhook-id"] for r in receiver.got}) == 1  # one event id across its retries
    assert all(standard_verify(SECRET, r) for r in receiver.got)


def test_gives_up_after_max_attempts_and_on_final_statuses(local_settings: Settings,
                                                           receiver: Receiver) -> None:
    receiver.answer = lambda r, _n: 503 if r.json["job_id"] == "down" else 410
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, schedule=[0.01, 0.01])
    sender.send("down", receiver.url, event("down", "succeeded"), kind="succeeded")
    sender.send("gone", receiver.url, event("gone", "succeeded"), kind="succeeded")
    assert sender.close(timeout=20)
    assert [a["status_code"] for j, a in attempts.rows if j == "down"] == [503, 503, 503]
    assert [a["status_code"] for j, a in attempts.rows if j == "gone"] == [410]  # 4xx: not retried


def test_connection_errors_are_retried_and_recorded(local_settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/hook"  # nobody listens once closed
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, schedule=[0.01, 0.01])
    sender.send("job-3", url, event("job-3", "succeeded"), kind="succeeded")
    assert sender.close(timeout=20)
    assert [a["attempt"] for _j, a in attempts.rows] == [1, 2, 3]
    assert all("ConnectError" in a["error"] and "status_code" not in a for _j, a in attempts.rows)


def test_private_urls_are_refused_without_a_request(settings: Settings, receiver: Receiver) -> None:
    attempts = Attempts()
    sender = make_sender(settings.replace(webhook_secret=SECRET), attempts)
    sender.send("job-4", receiver.url, event("job-4", "succeeded"), kind="succeeded")
    sender.send("job-4b", "http://169.254.169.254/latest/meta-data/", event("job-4b", "failed"), kind="failed")
    assert sender.close(timeout=10)
    assert receiver.got == []
    assert [a["attempt"] for _j, a in attempts.rows] == [1, 1]  # refused once, never retried
    assert all(a["error"].startswith("url_not_allowed") for _j, a in attempts.rows)


def test_malformed_urls_are_recorded_not_retried(local_settings: Settings) -> None:
    attempts = Attempts()
    sender = make_sender(local_settings, attempts)
    sender.send("job-9", "http://example.com:99999/hook", event("job-9", "failed"), kind="failed")
    sender.send("job-9", "ftp://example.com/hook", event("job-9", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)
    assert [a["attempt"] for _j, a in attempts.rows] == [1, 1]
    assert attempts.rows[0][1]["error"].startswith("invalid_url")
    assert attempts.rows[1][1]["error"].startswith("url_not_allowed")


def test_progress_is_throttled_and_terminal_comes_last(local_settings: Settings, receiver: Receiver) -> None:
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, progress_interval_s=3600)
    accepted = [sender.send("job-5", receiver.url, event("job-5", "running"), kind="running")]
    accepted += [sender.send("job-5", receiver.url, event("job-5", "progress", progress=i / 10), kind="progress")
                 for i in range(1, 6)]
    accepted.append(sender.send("job-5", receiver.url, event("job-5", "succeeded"), kind="succeeded"))
    accepted.append(sender.send("job-5", receiver.url, event("job-5", "progress", progress=1.0), kind="progress"))
    assert sender.close(timeout=10)
    assert accepted == [True, True, False, False, False, False, True, False]
    assert [(r.event, r.json.get("progress")) for r in receiver.got] == [
        ("job.running", None), ("job.progress", 0.1), ("job.succeeded", None)]


def test_each_jobs_events_arrive_in_order_despite_retries(local_settings: Settings,
                                                          receiver: Receiver) -> None:
    # Every job's terminal event fails twice; it is retried and still arrives after the job's earlier events.
    receiver.answer = lambda r, nth: 502 if r.event == "job.succeeded" and nth <= 2 else 200
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, progress_interval_s=0, workers=3)
    jobs = [f"job-{i}" for i in range(6)]
    for job in jobs:
        sender.send(job, receiver.url, event(job, "running"), kind="running")
    for step in range(3):
        for job in jobs:
            sender.send(job, receiver.url, event(job, "progress", progress=step / 3), kind="progress")
    for job in jobs:
        sender.send(job, receiver.url, event(job, "succeeded"), kind="succeeded")
    assert sender.close(timeout=30)
    for job in jobs:
        seen = [(r.event, r.json.get("progress")) for r in receiver.delivered() if r.json["job_id"] == job]
        assert seen == [("job.running", None), ("job.progress", 0.0), ("job.progress", 1 / 3),
                        ("job.progress", 2 / 3), ("job.succeeded", None)]
        assert receiver.counts[f"{job}/job.succeeded"] == 3


def test_a_waiting_running_event_gives_way_to_the_terminal_one(local_settings: Settings,
                                                               receiver: Receiver) -> None:
    receiver.answer = lambda r, _nth: 503 if r.event == "job.running" else 200
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, schedule=[30])
    sender.send("job-r", receiver.url, event("job-r", "running"), kind="running")
    deadline = time.monotonic() + 10
    while not attempts.rows and time.monotonic() < deadline:  # tried once, now waiting 30 s for its retry
        time.sleep(0.02)
    sender.send("job-r", receiver.url, event("job-r", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)  # nothing left waiting: the running event was superseded
    assert [(a["event"], a["status_code"]) for a in attempts.for_event("job.running")] == [("job.running", 503)]
    assert [r.event for r in receiver.delivered()] == ["job.succeeded"]


def test_retry_after_is_honoured(local_settings: Settings, receiver: Receiver) -> None:
    receiver.answer = lambda _r, nth: 503 if nth == 1 else 204
    receiver.retry_after = "1"
    sender = make_sender(local_settings, Attempts(), schedule=[0.01])
    sender.send("job-ra", receiver.url, event("job-ra", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)
    first, second = receiver.got
    assert second.at - first.at >= 0.95  # the receiver's 1 s, not the schedule's 10 ms


def test_the_schedule_is_jittered_and_spent(local_settings: Settings) -> None:
    sender = make_sender(local_settings, Attempts(), schedule=[5, 300, 1800], jitter=0.2)
    try:
        waits = [sender._delay(1, None) for _ in range(200)]
        assert all(4.0 <= w <= 6.0 for w in waits) and len(set(waits)) > 100  # type: ignore[operator]
        assert 240 <= sender._delay(2, None) <= 360  # type: ignore[operator]
        assert sender._delay(4, None) is None  # three retries, then given up
        assert sender._delay(1, 600.0) == 600.0  # Retry-After asks for longer: honoured
        assert sender._delay(1, 10**6) == 1800.0  # ... up to the longest wait of the schedule
    finally:
        sender.close(timeout=1)


def test_rotation_signs_with_both_secrets(local_settings: Settings, receiver: Receiver) -> None:
    new = "whsec_" + "bmV3LXNlY3JldC1ieXRlcy0wMTIzNDU2Nzg5YWJjZGVm"
    sender = make_sender(local_settings, Attempts(), secret=new, previous_secret=SECRET)
    sender.send("job-rot", receiver.url, event("job-rot", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)
    [got] = receiver.got
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    assert standard_verify(new, got) and standard_verify(SECRET, got)  # receivers on either secret accept it
    assert verify(new, got.timestamp, got.body, got.signature) and verify(SECRET, got.timestamp, got.body,
                                                                          got.signature)
    from standardwebhooks.webhooks import WebhookVerificationError

    with pytest.raises(WebhookVerificationError):
        standard_verify("whsec_b3RoZXI=", got)


def test_a_failing_progress_event_gives_way_to_newer_events(local_settings: Settings,
                                                            receiver: Receiver) -> None:
    terminal_queued = threading.Event()

    def answer(got: Received, _nth: int) -> int:
        if got.event == "job.progress":
            terminal_queued.wait(10)  # hold the first attempt until the terminal event is waiting
            return 500
        return 200

    receiver.answer = answer
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, schedule=[30])
    sender.send("job-6", receiver.url, event("job-6", "progress", progress=0.5), kind="progress")
    sender.send("job-6", receiver.url, event("job-6", "succeeded"), kind="succeeded")
    terminal_queued.set()
    assert sender.close(timeout=10)
    assert [a["status_code"] for a in attempts.for_event("job.progress")] == [500]  # not retried
    assert [a["status_code"] for a in attempts.for_event("job.succeeded")] == [200]


def test_close_stops_accepting_and_a_failing_recorder_does_not_stop_delivery(
        local_settings: Settings, receiver: Receiver) -> None:
    def broken_recorder(_job: str, _attempt: dict[str, Any]) -> None:
        raise RuntimeError("store down")

    sender = WebhookSender(local_settings, broken_recorder, schedule=[0.01])
    assert sender.send("job-7", receiver.url, event("job-7", "running"), kind="running")
    assert sender.send("job-7", receiver.url, event("job-7", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)
    assert [r.event for r in receiver.got] == ["job.running", "job.succeeded"]
    assert not sender.send("job-7", receiver.url, event("job-7", "failed"), kind="failed")


def test_generated_secret_is_used_when_none_is_configured(tmp_path: Path, receiver: Receiver) -> None:
    settings = Settings(data_dir=tmp_path / "d", workers=1, fetch_allow_private=True)
    sender = make_sender(settings, Attempts())
    sender.send("job-8", receiver.url, event("job-8", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)
    secret = (tmp_path / "d" / "webhook_secret").read_text().strip()
    [got] = receiver.got
    assert verify(secret, got.timestamp, got.body, got.signature)
    assert abs(int(got.timestamp) - time.time()) < 300


# ---- outbox: terminal events survive the sender's process


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """The real job store: SQLite (the default install) and PostgreSQL (scale-out) on 127.0.0.1."""
    import contextlib

    from reelforge.jobs.store import Database, WebhooksStore
    from tests.integration.pg import temp_database

    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite"
               else stack.enter_context(temp_database()))
        db = Database(url)
        db.migrate()
        yield WebhooksStore(db)
        db.dispose()


def outbox_pending(store: Any) -> list[Any]:
    return [row for row in outbox_rows(store) if row.done_at is None]


def outbox_rows(store: Any) -> list[Any]:
    from sqlalchemy import select

    from reelforge.jobs.models import WebhookOutboxRow

    with store.session() as s:
        return list(s.scalars(select(WebhookOutboxRow).order_by(WebhookOutboxRow.id)))


def test_state_events_are_kept_in_the_outbox_until_delivered(local_settings: Settings, receiver: Receiver,
                                                                store: Any) -> None:
    sender = make_sender(local_settings, Attempts(), outbox=store)
    sender.send("job-o1", receiver.url, event("job-o1", "running"), kind="running")
    sender.send("job-o1", receiver.url, event("job-o1", "succeeded"), kind="succeeded")
    assert sender.close(timeout=10)
    assert [r.event for r in receiver.delivered()] == ["job.running", "job.succeeded"]
    rows = outbox_rows(store)  # the state events are kept (progress events are not)
    assert [(r.job_id, r.event_type, r.outcome) for r in rows] == [("job-o1", "job.running", "delivered"),
                                                                   ("job-o1", "job.succeeded", "delivered")]
    assert all(r.done_at is not None for r in rows) and outbox_pending(store) == []


def test_a_killed_senders_terminal_event_is_sent_by_the_next_process(
        local_settings: Settings, receiver: Receiver, store: Any, tmp_path: Path) -> None:
    """The process that finished a job dies (SIGKILL) before its webhook got through: another process's
    sender finds the event in the outbox once the dead one's claim runs out, and delivers it."""
    import os
    import signal
    import subprocess
    import sys

    def answer(_got: Received, nth: int) -> int:
        if nth == 1:
            time.sleep(3)  # the first process's request hangs until that process is killed
        return 204

    receiver.answer = answer
    script = f"""
import time
from reelforge.config import Settings
from reelforge.jobs.store import Database, WebhooksStore
from reelforge.jobs.webhooks import WebhookSender
settings = Settings(data_dir={str(tmp_path / 'child')!r}, fetch_allow_private=True, webhook_secret={SECRET!r})
store = WebhooksStore(Database({store.engine.url.render_as_string(hide_password=False)!r}))
sender = WebhookSender(settings, store.record_webhook_attempt, outbox=store, claim_s=1.0)
sender.send("job-o2", {receiver.url!r}, {{"type": "job.succeeded", "job_id": "job-o2"}}, kind="succeeded")
print("sent", flush=True)
time.sleep(60)
"""
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sent"
        deadline = time.monotonic() + 10
        while not receiver.counts and time.monotonic() < deadline:  # its request is in flight (hanging)
            time.sleep(0.05)
        assert receiver.counts.get("job-o2/job.succeeded") == 1
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    [pending] = outbox_pending(store)
    assert pending.job_id == "job-o2"
    sender = make_sender(local_settings, Attempts(), outbox=store, recover_every_s=0.2)
    deadline = time.monotonic() + 10
    while not receiver.delivered() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sender.close(timeout=10)
    assert receiver.counts["job-o2/job.succeeded"] == 2  # the killed process's try, then the new sender's
    got = receiver.delivered()[0]  # (the hung first request may also be answered later, to nobody)
    assert got.event == "job.succeeded" and verify(SECRET, got.timestamp, got.body, got.signature)
    assert outbox_pending(store) == [] and outbox_rows(store)[0].outcome == "delivered"


def test_a_closing_sender_hands_undelivered_events_to_the_next_one(local_settings: Settings, receiver: Receiver,
                                                                   store: Any) -> None:
    receiver.answer = lambda _got, _nth: 503  # the receiver is down while the first process stops
    sender = make_sender(local_settings, Attempts(), outbox=store, schedule=[0.2] * 50)
    sender.send("job-o3", receiver.url, event("job-o3", "failed"), kind="failed")
    time.sleep(0.3)
    assert not sender.close(timeout=0.2)  # still retrying: not drained
    [pending] = outbox_pending(store)
    # let go at its retry time (no waiting for a hold to run out), its attempts counted for the next sender
    assert pending.claimed_until < time.time() + 0.5 and pending.attempts >= 1
    receiver.answer = lambda _got, _nth: 204
    # the next process starts once that retry time has come (its start-up pass takes only events that are due)
    time.sleep(max(0.0, pending.claimed_until - time.time()) + 0.05)
    nxt = make_sender(local_settings, Attempts(), outbox=store, recover_every_s=3600)
    deadline = time.monotonic() + 10  # its start-up pass takes the event (no 30 s wait, no claim to expire)
    while not receiver.delivered() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert nxt.close(timeout=10)
    assert [r.event for r in receiver.delivered()] == ["job.failed"]
    assert outbox_rows(store)[0].outcome == "delivered"


def test_replay_sends_a_jobs_kept_events_again(local_settings: Settings, receiver: Receiver, store: Any) -> None:
    sender = make_sender(local_settings, Attempts(), outbox=store)
    sender.send("job-rp", receiver.url, event("job-rp", "running"), kind="running")
    sender.send("job-rp", receiver.url, event("job-rp", "succeeded"), kind="succeeded")
    deadline = time.monotonic() + 10
    while (len(receiver.delivered()) < 2 or outbox_pending(store)) and time.monotonic() < deadline:
        time.sleep(0.02)  # delivered, and marked so (just after the receiver answered)
    first = [(r.event, r.headers["webhook-id"]) for r in receiver.delivered()]
    assert sender.replay("job-rp") == 2
    assert sender.close(timeout=10)
    assert [(r.event, r.headers["webhook-id"]) for r in receiver.delivered()] == first + first  # same ids
    assert all(row.outcome == "delivered" for row in outbox_rows(store))


def test_close_does_not_wait_for_a_retry_hours_away(local_settings: Settings, receiver: Receiver,
                                                    store: Any) -> None:
    receiver.answer = lambda _got, _nth: 503
    attempts = Attempts()
    sender = make_sender(local_settings, attempts, outbox=store, schedule=[3600])
    sender.send("job-h", receiver.url, event("job-h", "succeeded"), kind="succeeded")
    deadline = time.monotonic() + 10
    while not attempts.rows and time.monotonic() < deadline:
        time.sleep(0.02)
    started = time.monotonic()
    assert not sender.close(timeout=5)
    assert time.monotonic() - started < 2
    [pending] = outbox_pending(store)  # left for whoever runs in an hour
    assert pending.attempts == 1 and 3000 < pending.claimed_until - time.time() <= 3600
