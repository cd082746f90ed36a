"""Signed webhooks: a JSON POST on every job state change (and throttled progress), retried for hours.

Each request carries the Standard Webhooks headers (https://www.standardwebhooks.com; verify with any of
its libraries, e.g. Python's `standardwebhooks`) and, for receivers written before them, ReelForge's own:

    Content-Type: application/json
    webhook-id: <the event's id, evt_...; the same on every retry and replay: dedupe on it>
    webhook-timestamp: <unix seconds of this attempt>
    webhook-signature: v1,<base64 HMAC-SHA256(key, f"{id}.{timestamp}." + raw body)>  (space-separated when
                       two secrets sign during a rotation)
    X-ReelForge-Event: <event type, e.g. job.succeeded>
    X-ReelForge-Timestamp: <the same unix seconds>
    X-ReelForge-Signature: v1=<hex HMAC-SHA256(secret, f"{timestamp}." + raw body)>  (comma-separated)

The Standard Webhooks key is the secret's base64 part when it is written `whsec_<base64>` (the form
generated into data_dir/webhook_secret), else the secret's UTF-8 bytes; `standard_secret()` (and
`reelforge webhooks secret`) gives the `whsec_` form to hand to receivers. The legacy signature keys on the
secret string exactly as configured. Rotation: set `webhook_secret_previous` to the old secret and
`webhook_secret` to the new one; every request is signed with both until the previous one is removed.

Receiving (Python, `pip install standardwebhooks`):

    from standardwebhooks.webhooks import Webhook, WebhookVerificationError

    hook = Webhook("whsec_...")                   # `reelforge webhooks secret`
    event = hook.verify(raw_body, headers)        # raises WebhookVerificationError when not ours / too old

Use the raw request body, before any JSON parsing: re-serialised JSON will not match. The same event can
arrive twice (a retry after a lost answer, a replay): dedupe on `webhook-id` (also the body's `id`).

Delivery: `send()` only queues; background threads deliver. A job's events go one at a time, in the order
they were sent; different jobs in parallel, so one slow receiver does not hold back everyone else.
Connection errors, 408, 425, 429 and 5xx answers are retried after each wait of `schedule` (settings
`webhook_retry_schedule`, default 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h), each spread by +-`jitter`,
and never sooner than a Retry-After (seconds or an HTTP date) asks; other answers are final. While an
event waits for its retry, its job's later events wait behind it, except that a waiting non-terminal
event (job.running, job.progress) gives way as soon as a newer event of its job is sent: receivers get
the newest state rather than a backlog. Progress events are dropped when one was accepted less than
`progress_interval_s` ago and after the job's terminal event.

Durability: with an outbox (the job store's `webhook_outbox` table), job.running and terminal events are
written there before they are queued, held by this sender (`claimed_until`), and marked done when
delivered, given up on or superseded. While one waits for a retry its row is held until the retry time
plus `claim_s`; a sender that shuts down lets its rows go at their retry time, so the next process (API
or worker) carries on the schedule where it stopped, from the attempts counted in the row; if the process
dies instead, its rows are taken once their hold runs out. Every sender looks for such rows every
`recover_every_s` and at start. Progress events are not kept: a newer state replaces them anyway.
`replay()` puts a job's kept events back (an operator's `POST /v1/jobs/{id}/webhooks/replay`).
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import json
import logging
import random
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Protocol

import httpx

from reelforge.config import Settings
from reelforge.engine.metrics import WEBHOOK_ATTEMPTS, WEBHOOK_DELIVERIES, WEBHOOK_PENDING, WEBHOOK_REQUEST_SECONDS
from reelforge.errors import UrlNotAllowed
from reelforge.storage.pinned import send_pinned
from reelforge.storage.urlguard import check_resolved_host

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
PROGRESS_KIND = "progress"
TERMINAL_KINDS = frozenset({"succeeded", "failed", "cancelled", "timed_out", "terminal"})
USER_AGENT = "ReelForge-webhook/1"
SECRET_PREFIX = "whsec_"
_REMEMBERED_JOBS = 10_000  # bound on per-job throttle state kept in memory

RecordAttempt = Callable[[str, dict[str, Any]], None]
Guard = Callable[[str], list[str]]
OUTBOX_KEEP_S = 7 * 86400.0  # finished outbox rows are pruned after this (attempts keep the history)


class Outbox(Protocol):
    """Where state events wait until delivered (jobs/store_webhooks.py WebhooksStore implements it)."""

    def outbox_add(self, job_id: str, url: str, event_type: str, kind: str, body: bytes, claim_s: float) -> int: ...

    def outbox_done(self, item_id: int, outcome: str) -> None: ...

    def outbox_defer(self, item_id: int, attempts: int, until: float) -> None: ...

    def outbox_release(self, item_ids: Iterable[int]) -> None: ...

    def outbox_claim_stale(self, claim_s: float, limit: int = 100) -> list[dict[str, Any]]: ...

    def outbox_replay(self, job_id: str) -> int: ...

    def outbox_prune(self, older_than_s: float) -> int: ...


# ---- signatures
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Legacy X-ReelForge-Signature: hex HMAC-SHA256 of f"{timestamp}." + body with `secret`."""
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


def standard_key(secret: str) -> bytes:
    """The Standard Webhooks signing key of a secret: the base64 part of `whsec_<base64>`, else its bytes."""
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret[len(SECRET_PREFIX):] + "==")
        except ValueError:
            pass
    return secret.encode()


def standard_secret(secret: str) -> str:
    """The `whsec_...` form of a secret, to give to a Standard Webhooks receiver."""
    return secret if secret.startswith(SECRET_PREFIX) else SECRET_PREFIX + base64.b64encode(secret.encode()).decode()


def standard_sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, f"{msg_id}.{timestamp}." + body)>` (Standard Webhooks)."""
    mac = hmac.new(standard_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signed_headers(secrets: str | Sequence[str], body: bytes, event_type: str, event_id: str,
                   timestamp: int | None = None) -> dict[str, str]:
    """Both header sets for one attempt; with several secrets (a rotation), one signature per secret."""
    keys = [secrets] if isinstance(secrets, str) else [s for s in secrets if s]
    ts = int(time.time()) if timestamp is None else timestamp
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": str(ts),
        "webhook-signature": " ".join(standard_sign(k, event_id, ts, body) for k in keys),
        "X-ReelForge-Event": event_type,
        "X-ReelForge-Timestamp": str(ts),
        "X-ReelForge-Signature": ",".join(f"v1={sign(k, ts, body)}" for k in keys),
    }


def new_event_id() -> str:
    return f"evt_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class Delivery:
    job_id: str
    url: str
    event_type: str
    body: bytes
    kind: str
    event_id: str = ""
    outbox_id: int | None = None
    attempts: int = 0  # attempts made so far (across processes, for outbox rows)

    @property
    def terminal(self) -> bool:
        return self.kind.rsplit(".", 1)[-1] in TERMINAL_KINDS


@dataclass
class _Parked:
    due: float  # monotonic
    due_wall: float
    generation: int


class WebhookSender:
    def __init__(self, settings: Settings, record_attempt: RecordAttempt, *,
                 schedule: Sequence[float] | None = None, jitter: float | None = None,
                 progress_interval_s: float = 2.0, timeout_s: float | None = None, workers: int = 4,
                 secret: str | None = None, previous_secret: str | None = None, guard: Guard | None = None,
                 transport: httpx.BaseTransport | None = None, outbox: Outbox | None = None,
                 claim_s: float = 300.0, recover_every_s: float = 30.0) -> None:
        hooks = settings.webhooks
        self.schedule = list(hooks.retry_schedule if schedule is None else schedule)
        self.jitter = hooks.retry_jitter if jitter is None else jitter
        self.retry_after_max_s = max([*self.schedule, 1.0])
        self._outbox = outbox
        self.claim_s = claim_s
        self.recover_every_s = recover_every_s
        self.progress_interval_s = progress_interval_s
        self._record_attempt = record_attempt
        current = secret if secret is not None else settings.resolved_webhook_secret()
        previous = (previous_secret if previous_secret is not None
                    else settings.security.webhook_secret_previous.get_secret_value())
        self._secrets = [s for s in (current, previous) if s]
        self._guard = guard or partial(check_resolved_host, allow_private=settings.limits.fetch_allow_private)
        self._client = httpx.Client(timeout=httpx.Timeout(timeout_s or hooks.timeout_s), follow_redirects=False,
                                    trust_env=False, transport=transport)
        self._random = random.Random()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._closed = False
        self._pending: dict[str, deque[Delivery]] = {}  # per job, in send order; present = scheduled
        self._ready: deque[str] = deque()  # jobs with pending events and no worker on them
        self._wake = threading.Condition(self._lock)
        self._timer = threading.Condition(self._lock)  # wakes the timer thread (a new, earlier retry)
        self._parked: dict[str, _Parked] = {}  # jobs whose first event waits for its retry time
        self._heap: list[tuple[float, int, str]] = []  # (due, generation, job) of parked jobs
        self._generation = 0
        self._held: set[int] = set()  # outbox rows this sender holds and has not finished
        self._in_flight = 0
        self._last_progress: OrderedDict[str, float] = OrderedDict()
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._threads = [threading.Thread(target=self._work, name=f"webhooks-{i}", daemon=True)
                         for i in range(max(1, workers))]
        self._threads.append(threading.Thread(target=self._timer_loop, name="webhooks-timer", daemon=True))
        for thread in self._threads:
            thread.start()

    # ---- producer side
    def send(self, job_id: str, url: str, event: dict[str, Any], *, kind: str) -> bool:
        """Queue `event` for `url`; returns False when it was dropped (throttled progress, closed). The event
        gets an `id` (evt_...) unless it has one: the webhook-id of every attempt and replay."""
        event_type = str(event.get("type") or kind)
        event_id = str(event.get("id") or new_event_id())
        body = json.dumps({"id": event_id, **event}, separators=(",", ":"), ensure_ascii=False,
                          default=str).encode()
        now = time.monotonic()
        terminal = _is_terminal(kind, event)
        kind = "terminal" if terminal and kind.rsplit(".", 1)[-1] not in TERMINAL_KINDS else kind
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
        outbox_id = self._keep(job_id, url, event_type, kind, body) if kind != PROGRESS_KIND else None
        self._enqueue(Delivery(job_id=job_id, url=url, event_type=event_type, body=body, kind=kind,
                               event_id=event_id, outbox_id=outbox_id))
        return True

    def replay(self, job_id: str) -> int:
        """Send every kept event of the job again (its retry schedule from the start); how many."""
        if self._outbox is None:
            return 0
        count = self._outbox.outbox_replay(job_id)
        if count:
            self.recover_once()
        return count

    def _keep(self, job_id: str, url: str, event_type: str, kind: str, body: bytes) -> int | None:
        """Write a state event to the outbox (held by this sender); None without one or on error."""
        if self._outbox is None:
            return None
        try:
            item_id = self._outbox.outbox_add(job_id, url, event_type, kind, body, self.claim_s)
        except Exception:  # the store being down must not stop the delivery itself
            log.exception("could not keep the webhook event of job %s in the outbox", job_id)
            return None
        with self._lock:
            self._held.add(item_id)
        return item_id

    def _enqueue(self, delivery: Delivery) -> None:
        """Queue behind the job's earlier events; a parked non-terminal head gives way to it."""
        superseded: Delivery | None = None
        with self._lock:
            queue = self._pending.get(delivery.job_id)
            if queue is None:
                self._pending[delivery.job_id] = deque([delivery])
                self._make_ready(delivery.job_id)
            else:
                queue.append(delivery)  # a worker owns this job, it is scheduled, or it is parked
                if delivery.job_id in self._parked and not queue[0].terminal:
                    superseded = queue.popleft()
                    del self._parked[delivery.job_id]
                    self._make_ready(delivery.job_id)
            self._gauge()
        if superseded is not None:
            self._conclude(superseded, "superseded")

    def _make_ready(self, job_id: str) -> None:
        self._ready.append(job_id)
        self._wake.notify()

    def _gauge(self) -> None:
        WEBHOOK_PENDING.set(sum(len(q) for q in self._pending.values()))

    @staticmethod
    def _remember(table: OrderedDict[str, Any], job_id: str, value: Any) -> None:
        table[job_id] = value
        table.move_to_end(job_id)
        while len(table) > _REMEMBERED_JOBS:
            table.popitem(last=False)

    def close(self, timeout: float = 10.0) -> bool:
        """Stop accepting events, deliver what is queued (retries whose time comes included) for up to
        `timeout` s, then stop the threads and let the outbox rows still held go to the next process (at
        their retry time).

        Returns True when everything queued was delivered (or given up on after its retries)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._closed = True
            while self._in_flight or any(job not in self._parked or self._parked[job].due < deadline
                                         for job in self._pending):  # a retry due hours later is not awaited
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(min(left, 0.1))
            drained = not self._pending and not self._in_flight
            self._stop.set()
            self._wake.notify_all()
            self._timer.notify_all()
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()) + 1.0)
        self._client.close()
        with self._lock:
            held, self._held = set(self._held), set()
            later: dict[int, tuple[int, float]] = {}
            for job_id, queue in self._pending.items():
                parked = self._parked.get(job_id)
                head = queue[0] if queue else None
                if parked is not None and head is not None and head.outbox_id is not None and head.outbox_id in held:
                    later[head.outbox_id] = (head.attempts, parked.due_wall)
        if self._outbox is not None and held:
            try:
                for item_id, (attempts, due) in later.items():
                    self._outbox.outbox_defer(item_id, attempts, due)  # taken by the next one at its time
                self._outbox.outbox_release(held - set(later))  # the next process sends them at once
            except Exception:
                log.exception("could not release %d webhook outbox rows", len(held))
        return drained

    # ---- timer: parked jobs whose retry time came, the outbox
    def _timer_loop(self) -> None:
        next_recover = 0.0
        next_prune = time.monotonic() + 60
        while True:
            now = time.monotonic()
            if self._outbox is not None and now >= next_recover:
                self.recover_once()
                next_recover = time.monotonic() + self.recover_every_s
            if self._outbox is not None and now >= next_prune:
                next_prune = now + 3600
                try:
                    self._outbox.outbox_prune(OUTBOX_KEEP_S)
                except Exception:
                    log.exception("could not prune the webhook outbox")
            with self._lock:
                now = time.monotonic()
                while self._heap and self._heap[0][0] <= now:
                    _due, generation, job_id = heapq.heappop(self._heap)
                    parked = self._parked.get(job_id)
                    if parked is not None and parked.generation == generation:
                        del self._parked[job_id]
                        self._make_ready(job_id)
                if self._stop.is_set():
                    return
                until = next_recover if self._outbox is not None else now + 3600
                if self._heap:
                    until = min(until, self._heap[0][0])
                self._timer.wait(max(0.005, until - now))
                if self._stop.is_set():
                    return

    def recover_once(self) -> int:
        """Queue the outbox's events that no live sender holds (their hold ran out or was let go: a stopped
        or dead sender's, a replay's); returns how many."""
        if self._outbox is None:
            return 0
        try:
            items = self._outbox.outbox_claim_stale(self.claim_s)
        except Exception:
            log.exception("could not read the webhook outbox")
            return 0
        fresh: list[Delivery] = []
        with self._lock:
            if self._closed:
                ids = [item["id"] for item in items]
            else:
                ids = []
                for item in items:
                    if item["id"] in self._held:  # ours already (a replay of a parked one): due now
                        self._unpark_item(item["job_id"], item["id"])
                        continue
                    self._held.add(item["id"])
                    if item["kind"].rsplit(".", 1)[-1] in TERMINAL_KINDS:
                        self._remember(self._finished, item["job_id"], None)
                    fresh.append(Delivery(job_id=item["job_id"], url=item["url"], event_type=item["event_type"],
                                          body=item["body"], kind=item["kind"], event_id=_event_id(item),
                                          outbox_id=item["id"], attempts=int(item.get("attempts") or 0)))
        for delivery in fresh:
            self._enqueue(delivery)
        if ids:
            self._outbox.outbox_release(ids)
        if fresh:
            log.info("sending %d webhook event(s) from the outbox (a stopped sender's, or replayed)", len(fresh))
        return len(items)

    def _unpark_item(self, job_id: str, item_id: int) -> None:
        queue = self._pending.get(job_id)
        if job_id in self._parked and queue and queue[0].outbox_id == item_id:
            del self._parked[job_id]
            queue[0] = replace(queue[0], attempts=0)
            self._make_ready(job_id)

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
        """Deliver a job's events in order; this thread owns the job until its queue is empty or its first
        event waits for a retry (parked)."""
        while not self._stop.is_set():
            with self._lock:
                queue = self._pending.get(job_id)
                if not queue:
                    self._pending.pop(job_id, None)
                    self._gauge()
                    return
                delivery = queue[0]
            try:
                outcome, delay = self._attempt(delivery)
            except Exception:  # never let one bad event kill a delivery thread
                log.exception("webhook delivery for job %s failed unexpectedly", job_id)
                outcome, delay = "failed", None
            delivery = replace(delivery, attempts=delivery.attempts + 1)
            with self._lock:
                queue = self._pending[job_id]
                queue.popleft()
                if outcome == "retry" and (queue and not delivery.terminal):
                    outcome = "superseded"  # a newer event of the job is waiting: it goes instead
                elif outcome == "retry" and not self._stop.is_set():
                    assert delay is not None
                    queue.appendleft(delivery)
                    self._park(job_id, delay)
                    break
                elif outcome == "retry":
                    queue.appendleft(delivery)
                    break
            self._conclude(delivery, outcome)
        else:
            return
        if delivery.outbox_id is not None and self._outbox is not None and delay is not None:
            try:
                self._outbox.outbox_defer(delivery.outbox_id, delivery.attempts, time.time() + delay + self.claim_s)
            except Exception:  # its old hold runs out sooner: another sender may retry it early (receivers dedupe)
                log.exception("could not note the webhook retry of job %s", job_id)

    def _park(self, job_id: str, delay: float) -> None:
        """The job's first event waits `delay` s (caller holds the lock)."""
        self._generation += 1
        due = time.monotonic() + delay
        self._parked[job_id] = _Parked(due, time.time() + delay, self._generation)
        heapq.heappush(self._heap, (due, self._generation, job_id))
        self._timer.notify()

    def _conclude(self, delivery: Delivery, outcome: str) -> None:
        WEBHOOK_DELIVERIES.labels(event=delivery.event_type, status=outcome).inc()
        if delivery.outbox_id is None or self._outbox is None:
            return
        try:
            self._outbox.outbox_done(delivery.outbox_id, outcome)
        except Exception:  # left held: after the hold runs out it is sent again (receivers dedupe)
            log.exception("could not mark webhook outbox row %s done", delivery.outbox_id)
            return
        with self._lock:
            self._held.discard(delivery.outbox_id)

    def _delay(self, attempts_done: int, retry_after: float | None) -> float | None:
        """Seconds before the next try after `attempts_done` tries, or None when the schedule is spent."""
        if attempts_done > len(self.schedule):
            return None
        base = self.schedule[attempts_done - 1]
        delay = base * (1 + self._random.uniform(-self.jitter, self.jitter)) if self.jitter else base
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_after_max_s))
        return max(0.0, delay)

    def _attempt(self, delivery: Delivery) -> tuple[str, float | None]:
        """One try: ("delivered" | "failed", None) when final, ("retry", seconds) to try again."""
        attempt = delivery.attempts + 1
        retry_after: float | None = None
        record: dict[str, Any] = {"event": delivery.event_type, "url": delivery.url, "attempt": attempt,
                                  "at": time.time()}
        retry = False
        started = time.monotonic()
        try:
            addrs = self._guard(delivery.url)
            headers = signed_headers(self._secrets, delivery.body, delivery.event_type,
                                     delivery.event_id or new_event_id())
            response = send_pinned(self._client, "POST", delivery.url, addrs, headers=headers,
                                   content=delivery.body)
            response.close()  # the answer's body is not ours to read (and could be huge)
            record["status_code"] = response.status_code
            retry = response.status_code in RETRY_STATUSES
            if retry:
                retry_after = _retry_after(response.headers.get("retry-after"))
        except UrlNotAllowed as exc:
            record["error"] = f"{exc.code}: {exc.message}"
            retry = exc.code == "host_unresolvable"  # DNS hiccups pass; a private address does not
        except httpx.HTTPError as exc:
            record["error"] = f"{type(exc).__name__}: {exc}"[:300]
            retry = True
        except (httpx.InvalidURL, ValueError) as exc:  # a URL the guard or httpx cannot parse
            record["error"] = f"invalid_url: {exc}"[:300]
        WEBHOOK_REQUEST_SECONDS.observe(time.monotonic() - started)
        self._record(delivery.job_id, record)
        delay = self._delay(attempt, retry_after) if retry else None
        if delay is not None:
            WEBHOOK_ATTEMPTS.labels(event=delivery.event_type, status="retrying").inc()
            return "retry", delay
        outcome = "delivered" if record.get("status_code", 600) < 400 else "failed"
        WEBHOOK_ATTEMPTS.labels(event=delivery.event_type, status=outcome).inc()
        return outcome, None

    def _record(self, job_id: str, record: dict[str, Any]) -> None:
        try:
            self._record_attempt(job_id, record)
        except Exception:  # the job store being briefly unavailable must not stop deliveries
            log.exception("could not record webhook attempt for job %s", job_id)


def _is_terminal(kind: str, event: dict[str, Any]) -> bool:
    """`kind` "succeeded" / "job.succeeded", or an event whose status is terminal."""
    return kind.rsplit(".", 1)[-1] in TERMINAL_KINDS or str(event.get("status", "")) in TERMINAL_KINDS


def _event_id(item: dict[str, Any]) -> str:
    try:
        found = json.loads(item["body"]).get("id")
    except (ValueError, AttributeError):
        found = None
    return str(found) if found else f"evt_outbox_{item['id']}"  # rows written before events had ids


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return None
