"""Signed webhooks: a JSON POST on every job state change (and throttled progress), retried with backoff.

Each request carries

    Content-Type: application/json
    X-ReelForge-Event: <event type, e.g. job.succeeded>
    X-ReelForge-Timestamp: <unix seconds>
    X-ReelForge-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>

Verifying a delivery on the receiving side (copy this; it needs only the standard library):

    import hashlib, hmac, time

    def verify(secret: str, timestamp: str, body: bytes, header: str, tolerance_s: int = 300) -> bool:
        try:
            ts = int(timestamp)
        except ValueError:
            return False
        if abs(time.time() - ts) > tolerance_s:        # refuse replays of old deliveries
            return False
        mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(mac, part.strip()[3:])
                   for part in header.split(",") if part.strip().startswith("v1="))

    # e.g. in Flask:  verify(SECRET, request.headers["X-ReelForge-Timestamp"], request.get_data(),
    #                        request.headers["X-ReelForge-Signature"])

Use the raw request body, before any JSON parsing: re-serialised JSON will not match. The secret is
REELFORGE_WEBHOOK_SECRET (or the one generated into data_dir/webhook_secret). The same event can arrive
twice (a retry after a lost answer), so receivers should be idempotent on (job id, event type).

Delivery: `send()` only queues; background threads deliver. Events of one job are delivered one at a
time, in the order they were sent, so a job's terminal event always arrives after its earlier events;
different jobs are delivered in parallel, so one slow receiver does not hold back everyone else.
Connection errors, 408, 425, 429 and 5xx answers are retried (0.5 s, 1 s, 2 s, 4 s ... up to
`max_attempts`; a 429's Retry-After is honoured up to `backoff_max_s`); other answers are final.
Progress events of a job are dropped when one was accepted less than `progress_interval_s` ago, after
the job's terminal event, and, while being retried, once a newer event of the job is waiting.

Durability: with an outbox (the job store's `webhook_outbox` table), a terminal event is written there
before it is queued, claimed by this sender for `claim_s`, and marked done when it was delivered or given
up on. If the process dies first, the claim runs out and any ReelForge process with a sender (API or
worker) sends it: each sender looks for such rows every `recover_every_s` and at start. A sender that
shuts down with terminal events still undelivered gives up its claims, so the next one sends them at
once. Progress events are not kept: a newer state replaces them anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import httpx

from reelforge.config import Settings
from reelforge.errors import UrlNotAllowed
from reelforge.storage.pinned import send_pinned
from reelforge.storage.urlguard import check_resolved_host

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
PROGRESS_KIND = "progress"
TERMINAL_KINDS = frozenset({"succeeded", "failed", "cancelled", "timed_out", "terminal"})
USER_AGENT = "ReelForge-webhook/1"
_REMEMBERED_JOBS = 10_000  # bound on per-job throttle state kept in memory

RecordAttempt = Callable[[str, dict[str, Any]], None]
Guard = Callable[[str], list[str]]
OUTBOX_KEEP_S = 7 * 86400.0  # finished outbox rows are pruned after this (attempts keep the history)


class Outbox(Protocol):
    """Where terminal events wait until delivered (jobs/store_webhooks.py WebhooksStore implements it)."""

    def outbox_add(self, job_id: str, url: str, event_type: str, kind: str, body: bytes, claim_s: float) -> int: ...

    def outbox_done(self, item_id: int, outcome: str) -> None: ...

    def outbox_release(self, item_ids: Iterable[int]) -> None: ...

    def outbox_claim_stale(self, claim_s: float, limit: int = 100) -> list[dict[str, Any]]: ...

    def outbox_prune(self, older_than_s: float) -> int: ...


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of f"{timestamp}." + body with `secret`."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: int | str, body: bytes, header: str, tolerance_s: int = 300,
           *, now: float | None = None) -> bool:
    """True when `header` ("v1=<hex>", possibly several, comma-separated) signs `body` at `timestamp`
    and the timestamp is within `tolerance_s` of now."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    expected = sign(secret, ts, body)
    candidates = [p.strip()[3:] for p in header.split(",") if p.strip().startswith("v1=")]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def signed_headers(secret: str, body: bytes, event_type: str, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-ReelForge-Event": event_type,
        "X-ReelForge-Timestamp": str(ts),
        "X-ReelForge-Signature": f"v1={sign(secret, ts, body)}",
    }


@dataclass(frozen=True)
class Delivery:
    job_id: str
    url: str
    event_type: str
    body: bytes
    kind: str
    outbox_id: int | None = None


class WebhookSender:
    def __init__(self, settings: Settings, record_attempt: RecordAttempt, *, max_attempts: int = 5,
                 backoff_base_s: float = 0.5, backoff_max_s: float = 30.0, progress_interval_s: float = 2.0,
                 timeout_s: float = 10.0, workers: int = 4, secret: str | None = None,
                 guard: Guard | None = None, transport: httpx.BaseTransport | None = None,
                 outbox: Outbox | None = None, claim_s: float = 300.0, recover_every_s: float = 30.0) -> None:
        self.max_attempts = max(1, max_attempts)
        self._outbox = outbox
        self.claim_s = claim_s  # longer than one event's retries take (5 attempts: about a minute)
        self.recover_every_s = recover_every_s
        self._claimed: set[int] = set()  # outbox rows this sender holds and has not finished
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.progress_interval_s = progress_interval_s
        self._record_attempt = record_attempt
        self._secret = secret if secret is not None else settings.resolved_webhook_secret()
        self._guard = guard or partial(check_resolved_host, allow_private=settings.limits.fetch_allow_private)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s), follow_redirects=False,
                                    trust_env=False, transport=transport)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._pending: dict[str, deque[Delivery]] = {}  # per job, in send order; present = scheduled
        self._ready: deque[str] = deque()  # jobs with pending events and no worker on them
        self._wake = threading.Condition(self._lock)
        self._in_flight = 0
        self._last_progress: OrderedDict[str, float] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._threads = [threading.Thread(target=self._work, name=f"webhooks-{i}", daemon=True)
                         for i in range(max(1, workers))]
        for thread in self._threads:
            thread.start()
        if outbox is not None:
            self._threads.append(threading.Thread(target=self._recover_loop, name="webhooks-outbox", daemon=True))
            self._threads[-1].start()

    # ---- producer side
    def send(self, job_id: str, url: str, event: dict[str, Any], *, kind: str) -> bool:
        """Queue `event` for `url`; returns False when it was dropped (throttled progress, closed)."""
        event_type = str(event.get("type") or kind)
        body = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str).encode()
        now = time.monotonic()
        terminal = _is_terminal(kind, event)
        with self._lock:
            if self._closed:
                return False
            if kind == PROGRESS_KIND:
                if job_id in self._finished:
                    return False
                last = self._last_progress.get(job_id)
                if last is not None and now - last < self.progress_interval_s:
                    return False
                self._remember(self._last_progress, job_id, now)
            elif terminal:
                self._remember(self._finished, job_id, None)
                self._last_progress.pop(job_id, None)
            else:
                self._finished.pop(job_id, None)  # e.g. a job retried after a failure runs again
        outbox_id = self._keep(job_id, url, event_type, kind, body) if terminal else None
        with self._lock:
            self._enqueue(Delivery(job_id=job_id, url=url, event_type=event_type, body=body, kind=kind,
                                   outbox_id=outbox_id))
        return True

    def _keep(self, job_id: str, url: str, event_type: str, kind: str, body: bytes) -> int | None:
        """Write a terminal event to the outbox (claimed by this sender); None without one or on error."""
        if self._outbox is None:
            return None
        try:
            item_id = self._outbox.outbox_add(job_id, url, event_type, kind, body, self.claim_s)
        except Exception:  # the store being down must not stop the delivery itself
            log.exception("could not keep the webhook event of job %s in the outbox", job_id)
            return None
        with self._lock:
            self._claimed.add(item_id)
        return item_id

    def _enqueue(self, delivery: Delivery) -> None:
        """Queue behind the job's earlier events (caller holds the lock)."""
        queue = self._pending.get(delivery.job_id)
        if queue is None:
            self._pending[delivery.job_id] = deque([delivery])
            self._ready.append(delivery.job_id)
            self._wake.notify()
        else:
            queue.append(delivery)  # a worker owns this job or it is already scheduled

    @staticmethod
    def _remember(table: OrderedDict[str, Any], job_id: str, value: Any) -> None:
        table[job_id] = value
        table.move_to_end(job_id)
        while len(table) > _REMEMBERED_JOBS:
            table.popitem(last=False)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting events, deliver what is queued for up to `timeout` s, then stop the threads.

        Returns True when everything queued was delivered (or given up on after its retries)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            while self._pending or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            drained = not self._pending and not self._in_flight
            self._stop.set()
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        self._client.close()
        with self._lock:
            unsent, self._claimed = list(self._claimed), set()
        if unsent and self._outbox is not None:
            try:
                self._outbox.outbox_release(unsent)  # the next process sends them without waiting
            except Exception:
                log.exception("could not release %d webhook outbox claims", len(unsent))
        return drained

    # ---- outbox recovery
    def _recover_loop(self) -> None:
        next_prune = 0.0
        while True:
            self.recover_once()
            if time.monotonic() >= next_prune:
                next_prune = time.monotonic() + 3600
                try:
                    assert self._outbox is not None
                    self._outbox.outbox_prune(OUTBOX_KEEP_S)
                except Exception:
                    log.exception("could not prune the webhook outbox")
            if self._stop.wait(self.recover_every_s):
                return

    def recover_once(self) -> int:
        """Queue the outbox's events whose sender's claim ran out; returns how many."""
        if self._outbox is None:
            return 0
        try:
            items = self._outbox.outbox_claim_stale(self.claim_s)
        except Exception:
            log.exception("could not read the webhook outbox")
            return 0
        with self._lock:
            if self._closed:
                ids = [item["id"] for item in items]
            else:
                ids = []
                for item in items:
                    self._claimed.add(item["id"])
                    self._remember(self._finished, item["job_id"], None)
                    self._enqueue(Delivery(job_id=item["job_id"], url=item["url"], event_type=item["event_type"],
                                           body=item["body"], kind=item["kind"], outbox_id=item["id"]))
        if ids:
            self._outbox.outbox_release(ids)
        if items:
            log.info("re-sending %d webhook event(s) whose sender stopped before delivering", len(items))
        return len(items)

    # ---- worker side
    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._ready and not self._stop.is_set():
                    self._wake.wait()
                if self._stop.is_set():
                    return
                job_id = self._ready.popleft()
                self._in_flight += 1
            try:
                self._drain_job(job_id)
            finally:
                with self._lock:
                    self._in_flight -= 1
                    self._idle.notify_all()

    def _drain_job(self, job_id: str) -> None:
        """Deliver a job's events in order; this thread owns the job until its queue is empty."""
        while not self._stop.is_set():
            with self._lock:
                queue = self._pending.get(job_id)
                if not queue:
                    self._pending.pop(job_id, None)
                    return
                delivery = queue.popleft()
            outcome = "failed"
            try:
                outcome = self._deliver(delivery)
            except Exception:  # never let one bad event kill a delivery thread
                log.exception("webhook delivery for job %s failed unexpectedly", job_id)
            if delivery.outbox_id is not None and outcome != "stopped":
                self._finish(delivery.outbox_id, outcome)
        with self._lock:
            self._pending.pop(job_id, None)

    def _finish(self, item_id: int, outcome: str) -> None:
        assert self._outbox is not None
        try:
            self._outbox.outbox_done(item_id, outcome)
        except Exception:  # left claimed: after the claim runs out it is sent again (receivers dedupe)
            log.exception("could not mark webhook outbox row %s done", item_id)
            return
        with self._lock:
            self._claimed.discard(item_id)

    def _superseded(self, delivery: Delivery) -> bool:
        if delivery.kind != PROGRESS_KIND:
            return False
        with self._lock:
            return bool(self._pending.get(delivery.job_id))

    def _deliver(self, delivery: Delivery) -> str:
        """Send with retries: "delivered" (a 2xx/3xx answer), "failed" (a final error or out of attempts)
        or "stopped" (the sender closed between attempts)."""
        for attempt in range(1, self.max_attempts + 1):
            retry_after: float | None = None
            record: dict[str, Any] = {"event": delivery.event_type, "url": delivery.url, "attempt": attempt,
                                      "at": time.time()}
            retry = False
            try:
                addrs = self._guard(delivery.url)
                headers = signed_headers(self._secret, delivery.body, delivery.event_type)
                response = send_pinned(self._client, "POST", delivery.url, addrs, headers=headers,
                                       content=delivery.body)
                response.close()  # the answer's body is not ours to read (and could be huge)
                record["status_code"] = response.status_code
                retry = response.status_code in RETRY_STATUSES
                if response.status_code == 429:
                    retry_after = _retry_after(response.headers.get("retry-after"))
            except UrlNotAllowed as exc:
                record["error"] = f"{exc.code}: {exc.message}"
                retry = exc.code == "host_unresolvable"  # DNS hiccups pass; a private address does not
            except httpx.HTTPError as exc:
                record["error"] = f"{type(exc).__name__}: {exc}"[:300]
                retry = True
            except (httpx.InvalidURL, ValueError) as exc:  # a URL the guard or httpx cannot parse
                record["error"] = f"invalid_url: {exc}"[:300]
            self._record(delivery.job_id, record)
            if not retry or attempt == self.max_attempts or self._superseded(delivery):
                return "delivered" if record.get("status_code", 600) < 400 else "failed"
            delay = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
            if retry_after is not None:
                delay = min(self.backoff_max_s, max(delay, retry_after))
            if self._stop.wait(delay):
                return "stopped"
            if self._superseded(delivery):
                return "failed"
        return "failed"

    def _record(self, job_id: str, record: dict[str, Any]) -> None:
        try:
            self._record_attempt(job_id, record)
        except Exception:  # the job store being briefly unavailable must not stop deliveries
            log.exception("could not record webhook attempt for job %s", job_id)


def _is_terminal(kind: str, event: dict[str, Any]) -> bool:
    """`kind` "succeeded" / "job.succeeded", or an event whose status is terminal."""
    return kind.rsplit(".", 1)[-1] in TERMINAL_KINDS or str(event.get("status", "")) in TERMINAL_KINDS


def _retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # the HTTP-date form is rare for 429; plain backoff applies
