"""Group commit for job submissions, batched status reads: one thread each answers whatever has queued up.

Both follow one pattern (_LoopBatched): a request from the event loop is a future; the requests of one turn
of the loop go to the thread together in one queue put (each put that wakes the thread costs the loop a
GIL hand-off); the thread takes everything queued, answers it with one query (or one transaction), and
wakes each loop once per batch to settle its futures. A lone request is answered at once (no waiting for a
batch to fill). Per request, a thread-pool hop instead costs the loop a queue put, a condition notify and a
GIL hand-off, and the worker a pool checkout and a query; under a few hundred concurrent clients that was
most of a request's cost, and a pool of 40 threads all running store calls starved the event loop of the
GIL (each of its own GIL releases, e.g. a syscall, then waits behind them).

SubmitBatcher (POST /v1/jobs): SQLite serialises writers and each commit has a fixed cost, so N inserts
become one transaction. The uploaded files the jobs name are checked in the same batch, one query per
tenant, before the insert (a job naming a file that is not its tenant's gets `input_not_found`, as
JobService.check_files answers). A future is resolved only after the transaction committed: a 2xx submit
is on disk. Submissions with an idempotency key are inserted one by one (they may resolve to an existing
job, or conflict).

StatusReader (GET /v1/jobs/{id}): one `SELECT ... WHERE id IN (...)` per batch, plus one for the webhook
attempts of the jobs that have a webhook.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from reelforge.errors import InputError
from reelforge.jobs.store_files import FilesStore
from reelforge.jobs.store_jobs import JobRecord, JobsStore
from reelforge.jobs.store_webhooks import WebhooksStore

log = logging.getLogger("reelforge.batcher")
Req = TypeVar("Req")
Outcome = tuple[Any, BaseException | None]  # (value, None) or (None, the exception to raise)
_Entry = tuple[Any, asyncio.AbstractEventLoop, "asyncio.Future[Any]"]


class _LoopBatched(Generic[Req]):
    """Requests from event loops answered in batches on one thread (see the module docstring)."""

    def __init__(self, name: str, max_batch: int) -> None:
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[list[_Entry] | None] = queue.SimpleQueue()  # lists of requests, None: stop
        self._pending: dict[asyncio.AbstractEventLoop, list[_Entry]] = {}  # touched on each loop's thread only
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def _ask(self, request: Req) -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        pending = self._pending.get(loop)
        if pending is None:
            pending = self._pending[loop] = []
            loop.call_soon(self._flush, loop)
        pending.append((request, loop, fut))
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
                chunk = batch[start:start + self.max_batch]
                try:
                    outcomes = self._answer([request for request, _, _ in chunk])
                except Exception as exc:
                    outcomes = [(None, exc)] * len(chunk)
                _settle_all(chunk, outcomes)
                self._after(outcomes)

    def _answer(self, requests: list[Req]) -> list[Outcome]:
        """Per request, in order: its value or its exception."""
        raise NotImplementedError

    def _after(self, outcomes: list[Outcome]) -> None:
        """Work after the answers are on their way back (e.g. handing new jobs over)."""


def _settle_all(chunk: Sequence[_Entry], outcomes: Sequence[Outcome]) -> None:
    done: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for (_, loop, fut), (value, exc) in zip(chunk, outcomes, strict=True):
        done.setdefault(loop, []).append((fut, value, exc))
    for loop, results in done.items():
        with contextlib.suppress(RuntimeError):  # RuntimeError: that loop has closed, nobody is waiting
            loop.call_soon_threadsafe(_settle, results)  # one wake-up of the loop per batch


# a submission: the row's values (JobsStore.new_job_values), its tenant and the uploaded file ids it names
SubmitRequest = tuple[dict[str, Any], str, Sequence[str]]


class SubmitBatcher(_LoopBatched[SubmitRequest]):
    def __init__(self, store: JobsStore, on_created: Callable[[JobRecord], None], *, files: FilesStore,
                 max_batch: int = 256) -> None:
        self.store = store
        self.files = files
        self.on_created = on_created  # hands a new job to the executor, from this thread
        super().__init__("reelforge-submit-writer", max_batch)

    async def create(self, values: dict[str, Any], tenant: str,
                     file_ids: Sequence[str] = ()) -> tuple[JobRecord, bool]:
        """Insert the job (after checking that its files are the tenant's); (job, created) once committed."""
        result: tuple[JobRecord, bool] = await self._ask((values, tenant, tuple(file_ids)))
        return result

    def _answer(self, requests: list[SubmitRequest]) -> list[Outcome]:
        outcomes: list[Outcome] = [(None, None)] * len(requests)
        checked = self._check_files(requests, outcomes)
        plain = [i for i in checked if requests[i][0].get("idempotency_key") is None]
        keyed = [i for i in checked if requests[i][0].get("idempotency_key") is not None]
        if plain:
            try:
                records = self.store.insert_jobs([requests[i][0] for i in plain])  # one transaction, committed
                for i, rec in zip(plain, records, strict=True):
                    outcomes[i] = ((rec, True), None)
            except Exception as exc:
                for i in plain:
                    outcomes[i] = (None, exc)
        for i in keyed:
            try:
                outcomes[i] = (self.store.insert_job(requests[i][0]), None)
            except Exception as exc:
                outcomes[i] = (None, exc)
        return outcomes

    def _check_files(self, requests: list[SubmitRequest], outcomes: list[Outcome]) -> list[int]:
        """The requests whose files are all their tenant's (one query per tenant); the others get their error."""
        wanted: dict[str, list[str]] = {}
        for _, tenant, file_ids in requests:
            if file_ids:
                wanted.setdefault(tenant, []).extend(file_ids)
        owned: dict[str, Any] = {}
        for tenant, ids in wanted.items():
            try:
                owned[tenant] = self.files.storage_keys(ids, tenant)
            except Exception as exc:
                owned[tenant] = exc
        ok = []
        for i, (_, tenant, file_ids) in enumerate(requests):
            if not file_ids:
                ok.append(i)
                continue
            found = owned[tenant]
            if isinstance(found, Exception):
                outcomes[i] = (None, found)
                continue
            missing = next((f for f in file_ids if f not in found), None)
            if missing is None:
                ok.append(i)
            else:
                outcomes[i] = (None, missing_file(missing))
        return ok

    def _after(self, outcomes: list[Outcome]) -> None:
        for value, exc in outcomes:
            if exc is None and value[1]:  # created: the executor may run it
                self._hand_over(value[0])

    def _hand_over(self, job: JobRecord) -> None:
        try:
            self.on_created(job)
        except Exception:  # the job is stored and queued; the executor's reclaim/restart path still finds it
            log.exception("could not hand job %s to the executor", job.id)


def missing_file(file_id: str) -> InputError:
    """A job names an uploaded file that is not there for its tenant (another tenant's reads as missing)."""
    return InputError(f"No uploaded file {file_id!r}.", code="input_not_found")


class StatusReader(_LoopBatched[tuple[str | None, str]]):
    """Batched job reads for the event loop: `await reader.get(tenant, job_id)` is the job and, when it has a
    webhook, its delivery attempts (None for the attempts otherwise), or (None, None) when there is no such
    job for this tenant (tenant None: any), exactly as JobsStore.get_job + WebhooksStore.webhook_attempts."""

    def __init__(self, jobs: JobsStore, webhooks: WebhooksStore, max_batch: int = 256) -> None:
        self.jobs = jobs
        self.webhooks = webhooks
        super().__init__("reelforge-status-reader", max_batch)

    async def get(self, tenant: str | None, job_id: str) -> tuple[JobRecord | None, list[dict[str, Any]] | None]:
        result: tuple[JobRecord | None, list[dict[str, Any]] | None] = await self._ask((tenant, job_id))
        return result

    def _answer(self, requests: list[tuple[str | None, str]]) -> list[Outcome]:
        """The job if it exists and is the asking tenant's."""
        found = self.jobs.get_jobs(job_id for _, job_id in requests)
        visible = [job if job is not None and (tenant is None or job.tenant == tenant) else None
                   for tenant, job_id in requests for job in (found.get(job_id),)]
        hooked = {job.id for job in visible if job is not None and job.webhook_url}
        attempts = self.webhooks.webhook_attempts_for(hooked) if hooked else {}
        return [((None, None) if job is None else (job, attempts.get(job.id, []) if job.webhook_url else None), None)
                for job in visible]


def _settle(results: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, value, exc in results:
        if fut.done():  # the request was given up (client gone): nobody is waiting
            continue
        if exc is not None:
            fut.set_exception(exc)
        else:
            fut.set_result(value)
