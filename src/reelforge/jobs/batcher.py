"""Group commit for job submissions: one writer thread inserts whatever has queued up in one transaction.

Under many concurrent clients, SQLite serialises writers and each commit has a fixed cost; batching
turns N commits into one while adding no delay when the API is idle (a lone submit is written at once).
Submissions with an idempotency key take the one-by-one path (they may resolve to an existing job).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from reelforge.jobs.store_jobs import JobRecord, JobsStore

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


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _fail(fut: asyncio.Future[Any], exc: BaseException) -> None:
    if not fut.done():
        fut.set_exception(exc)
