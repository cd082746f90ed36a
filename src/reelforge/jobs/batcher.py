"""Group commit for job submissions: one writer thread inserts whatever has queued up in one transaction.

Under many concurrent clients, SQLite serialises writers and each commit has a fixed cost; batching
turns N commits into one while adding no delay when the API is idle (a lone submit is written at once).
Submissions with an idempotency key take the one-by-one path (they may resolve to an existing job).

Status reads (GET /v1/jobs/{id}, the route clients poll) are batched the same way by StatusReader: one
reader thread answers whatever reads have queued up with one `SELECT ... WHERE id IN (...)` (and one for
the webhook attempts of those that have a webhook), and wakes the event loop once per batch. Per read, a
thread-pool hop costs the event loop a queue put, a condition notify and a GIL hand-off, and the worker a
pool checkout and a query; under a few hundred polling clients that was most of a status read's cost.
A lone read is still read at once (no waiting for a batch to fill).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from reelforge.jobs.store_jobs import JobRecord, JobsStore
from reelforge.jobs.store_webhooks import WebhooksStore

log = logging.getLogger("reelforge.batcher")


class SubmitBatcher:
    def __init__(self, store: JobsStore, on_created: Callable[[JobRecord], None], max_batch: int = 256) -> None:
        self.store = store
        self.on_created = on_created  # hands a new job to the executor, from this thread
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="reelforge-submit-writer", daemon=True)
        self._thread.start()

    async def create(self, values: dict[str, Any]) -> tuple[JobRecord, bool]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[JobRecord, bool]] = loop.create_future()
        self._queue.put((values, loop, fut))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            plain = [b for b in batch if b[0].get("idempotency_key") is None]
            keyed = [b for b in batch if b[0].get("idempotency_key") is not None]
            if plain:
                try:
                    records = self.store.insert_jobs([v for v, _, _ in plain])
                    for (_, loop, fut), rec in zip(plain, records, strict=True):
                        loop.call_soon_threadsafe(_resolve, fut, (rec, True))
                    for rec in records:
                        self._hand_over(rec)
                except Exception as exc:
                    for _, loop, fut in plain:
                        loop.call_soon_threadsafe(_fail, fut, exc)
            for values, loop, fut in keyed:
                try:
                    rec, created = self.store.insert_job(values)
                    loop.call_soon_threadsafe(_resolve, fut, (rec, created))
                    if created:
                        self._hand_over(rec)
                except Exception as exc:
                    loop.call_soon_threadsafe(_fail, fut, exc)

    def _hand_over(self, job: JobRecord) -> None:
        try:
            self.on_created(job)
        except Exception:  # the job is stored and queued; the executor's reclaim/restart path still finds it
            log.exception("could not hand job %s to the executor", job.id)


class StatusReader:
    """Batched job reads for the event loop: `await reader.get(tenant, job_id)` is the job and, when it has a
    webhook, its delivery attempts (None for the attempts otherwise), or (None, None) when there is no such
    job for this tenant (tenant None: any), exactly as JobsStore.get_job + WebhooksStore.webhook_attempts."""

    def __init__(self, jobs: JobsStore, webhooks: WebhooksStore, max_batch: int = 256) -> None:
        self.jobs = jobs
        self.webhooks = webhooks
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # lists of reads, None to stop
        self._pending: dict[asyncio.AbstractEventLoop, list[Any]] = {}  # touched on each loop's thread only
        self._thread = threading.Thread(target=self._run, name="reelforge-status-reader", daemon=True)
        self._thread.start()

    async def get(self, tenant: str | None, job_id: str) -> tuple[JobRecord | None, list[dict[str, Any]] | None]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[tuple[JobRecord | None, list[dict[str, Any]] | None]] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            # the reads of one turn of the event loop go to the reader thread together, in one put (each put
            # that wakes the reader costs the loop a GIL hand-off)
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((tenant, job_id, loop, fut))
        return await fut

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue.put(self._pending.pop(loop))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = list(item)
            while len(batch) < self.max_batch:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.extend(nxt)
            for start in range(0, len(batch), self.max_batch):
                self._answer(batch[start:start + self.max_batch])

    def _answer(self, batch: list[Any]) -> None:
        """Read one batch and settle its futures: the job if it exists and is the asking tenant's."""
        done: dict[Any, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
        try:
            found = self.jobs.get_jobs(job_id for _, job_id, _, _ in batch)
            visible = [(tenant, job_id, loop, fut, job if job is not None and (tenant is None or job.tenant == tenant)
                        else None) for tenant, job_id, loop, fut in batch for job in (found.get(job_id),)]
            hooked = {job.id for *_, job in visible if job is not None and job.webhook_url}
            attempts = self.webhooks.webhook_attempts_for(hooked) if hooked else {}
            for _, job_id, loop, fut, job in visible:
                if job is None:
                    value: Any = (None, None)
                else:
                    value = (job, attempts.get(job_id, []) if job.webhook_url else None)
                done.setdefault(loop, []).append((fut, value, None))
        except Exception as exc:
            done = {}
            for _, _, loop, fut in batch:
                done.setdefault(loop, []).append((fut, None, exc))
        for loop, results in done.items():
            with contextlib.suppress(RuntimeError):  # RuntimeError: that loop has closed, nobody is waiting
                loop.call_soon_threadsafe(_settle, results)  # one wake-up of the loop per batch


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in results:
        if exc is not None:
            _fail(fut, exc)
        else:
            _resolve(fut, value)


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
