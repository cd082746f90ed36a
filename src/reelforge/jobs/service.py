"""The one path to submit, cancel, retry and read jobs.

Every front door calls this: the HTTP routes (api/routes_jobs.py), the batch feeder (jobs/batches.py), and
whatever comes next (compatibility routes, the dashboard). It needs no web framework object: a tenant, a request body
and the stores. What it decides, in one place:

    submit   the op's params validated against its pydantic model (422 with the field path), uploaded
             file ids owned by the tenant, webhook_url syntax, the timeout policy (the op's default,
             capped by settings.compute.max_timeout_s), the row, the idempotency key (body or header)
    cancel   a queued job is cancelled at once (and its webhook told, since no worker ever will be);
             a running one is flagged and its executor asked to stop it
    retry    a failed, cancelled or timed-out job is submitted again as a NEW job whose
             notes.retry_of names the original: the old job's history, error and webhook events stay
             as they were, and the new one starts with a full set of attempts. Retrying the same job
             twice returns the same new job (the retry's idempotency key is derived from the original).
    read     one job (with its webhook attempts), a page of jobs, one output's metadata and URL

The submit hot path stays as cheap as before: validation is CPU only, the file-ownership check is one
thread hop only when the params name uploaded files, and the insert goes through the group-commit
batcher (jobs/batcher.py) when there is one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import anyio.to_thread
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy.exc import IntegrityError

from reelforge.config import Settings
from reelforge.engine.metrics import JOBS_SUBMITTED
from reelforge.engine.routing import queue_for
from reelforge.errors import Conflict, InvalidParams, NotFound, ReelForgeError, invalid_params
from reelforge.jobs.batcher import missing_file
from reelforge.jobs.events import terminal_event
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord
from reelforge.jobs.urls import output_url, output_urls
from reelforge.ops.params import submit_context
from reelforge.ops.registry import get_operation
from reelforge.refs import file_ids_in
from reelforge.storage.delivery import delivery_key
from reelforge.storage.urlguard import check_url_syntax

if TYPE_CHECKING:
    from reelforge.jobs.batcher import StatusReader, SubmitBatcher
    from reelforge.jobs.store import Stores
    from reelforge.jobs.webhooks import WebhookSender
    from reelforge.storage.base import Storage

RETRYABLE = frozenset({JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})
# notes a front door starts a job with that a retry keeps: who answers for the job, in which webhook format,
# and the request as the client sent it
FRONT_DOOR_NOTES = ("frontdoor", "webhook_format", "shotstack_edit")


class JobCreate(BaseModel):
    """A job submission: what POST /v1/jobs takes, and what any other caller hands to JobService.submit."""

    model_config = ConfigDict(extra="forbid")

    op: str = Field(min_length=1, max_length=64, description="Operation name, e.g. `probe`; see GET /v1/ops")
    params: dict[str, Any] = Field(default_factory=dict, description="The operation's params")
    webhook_url: str | None = Field(default=None, max_length=2000,
                                    description="POSTed a signed JSON event on each state change")
    # strict: JSON true/false or "5" are not numbers here (the document says integer / number)
    priority: int = Field(default=0, ge=-10, le=10, strict=True, description="Higher runs first")
    timeout_s: float | None = Field(default=None, gt=0, strict=True, description="Overrides the op's default timeout")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200,
                                        description="A repeat with the same key returns the first job")
    output_paths: dict[str, str] | None = Field(
        default=None, max_length=100,
        description="Where named outputs land: output name -> relative path such as `Project/videos/a.mp4`, "
                    "under this tenant's delivery folder (`storage.delivery_root`); others go to jobs/<id>/")

    @field_validator("timeout_s")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number of seconds")
        return v


class HandOff(Protocol):
    """The part of an executor the service talks to (engine/executor.py Executor satisfies it)."""

    def submit(self, job: JobRecord) -> None: ...

    def cancel(self, job_id: str) -> None: ...


@dataclass(frozen=True)
class PreparedJob:
    """A validated submission: the row to insert and the uploaded file ids it names."""

    values: dict[str, Any]
    file_ids: tuple[str, ...]


def _not_found(job_id: str) -> NotFound:
    return NotFound(f"No job {job_id!r}.", code="job_not_found")


class JobService:
    def __init__(self, settings: Settings, stores: Stores, *, storage: Storage, webhooks: WebhookSender,
                 executor: HandOff, batcher: SubmitBatcher | None = None,
                 reader: StatusReader | None = None) -> None:
        self.settings = settings
        self.stores = stores
        self.jobs = stores.jobs
        self.storage = storage
        self.webhooks = webhooks
        self.executor = executor
        self.batcher = batcher
        self.reader = reader

    # ---- submit
    def prepare(self, tenant: str, body: JobCreate, *, idempotency_key: str | None = None,
                notes: dict[str, Any] | None = None, output_keys: dict[str, str] | None = None,
                strict: bool = False) -> PreparedJob:
        """Everything about a submission that needs no database: params, webhook, timeout, the row.

        strict: validate params as JSON in pydantic's strict mode, as the OpenAPI document describes them (a
        JSON `0` is not a boolean, `"2"` not a number); POST /v1/jobs asks for it. Front doors that build
        params themselves may leave it off (pydantic's lax conversions then apply, as before)."""
        settings = self.settings
        op = get_operation(body.op)
        try:
            if strict:
                params = op.params_model.model_validate_json(json.dumps(body.params), strict=True,
                                                             context=submit_context(settings))
            else:
                params = op.params_model.model_validate(body.params, context=submit_context(settings))
        except ValidationError as exc:
            raise invalid_params(exc) from None
        except InvalidParams as exc:  # raised by an op's own checks (e.g. a pipeline's graph): same shape
            if isinstance(exc.details, dict) and "path" in exc.details:
                exc.details = [{"path": f"params.{exc.details['path']}", "message": exc.message}]
            raise
        if body.webhook_url:
            try:
                check_url_syntax(body.webhook_url, allow_private=settings.limits.fetch_allow_private)
            except ValueError as exc:
                raise InvalidParams(f"Invalid webhook_url: {exc}.", code="invalid_webhook_url") from None
        timeout = body.timeout_s or op.default_timeout(params, cap=settings.compute.max_timeout_s)
        if timeout > settings.compute.max_timeout_s:
            raise InvalidParams(f"timeout_s may be at most {settings.compute.max_timeout_s:g} seconds.")
        stored = params.model_dump(mode="json")
        values = self.jobs.new_job_values(
            tenant=tenant, op=op.name, params=stored, queue=queue_for(op, stored, settings), timeout_s=timeout,
            max_attempts=settings.compute.max_attempts, priority=body.priority, webhook_url=body.webhook_url,
            idempotency_key=body.idempotency_key or idempotency_key,
            output_keys=output_keys if output_keys is not None else self.output_keys(tenant, body.output_paths),
        )
        if notes:
            values["notes"] = dict(notes)
        return PreparedJob(values, tuple(dict.fromkeys(file_ids_in(body.params))))

    def output_keys(self, tenant: str, paths: dict[str, str] | None) -> dict[str, str]:
        """Clients' output paths as storage keys under the tenant's delivery root (storage/delivery.py)."""
        keys: dict[str, str] = {}
        for name, path in (paths or {}).items():
            try:
                keys[name] = delivery_key(self.settings.storage.delivery_root, tenant, path)
            except ValueError as exc:
                raise InvalidParams(f"Invalid value at output_paths.{name}: {exc}.", code="invalid_output_path",
                                    details=[{"path": f"output_paths.{name}", "message": str(exc)}]) from None
        if len(set(keys.values())) != len(keys):
            raise InvalidParams("Two outputs name the same output path.", code="invalid_output_path")
        return keys

    def check_files(self, tenant: str, file_ids: Sequence[str]) -> None:
        """Every uploaded file a job names must be this tenant's (another tenant's reads as missing)."""
        if not file_ids:
            return
        owned = self.stores.files.storage_keys(file_ids, tenant)  # one query however many files
        for file_id in file_ids:
            if file_id not in owned:
                raise missing_file(file_id)

    async def submit_async(self, tenant: str, body: JobCreate, *, idempotency_key: str | None = None,
                           notes: dict[str, Any] | None = None, strict: bool = False) -> tuple[JobRecord, bool]:
        """submit() for an event loop: the file check and the insert on the group-commit batcher's thread.
        `notes`: facts a front door records on the new job (e.g. what the client asked for that maps onto
        something else)."""
        prepared = self.prepare(tenant, body, idempotency_key=idempotency_key, notes=notes, strict=strict)
        if self.batcher is not None:
            # the files are checked on the batcher's thread, one query per batch (no thread hop per request);
            # it hands the job to the executor
            job, created = await self.batcher.create(prepared.values, tenant, prepared.file_ids)
        else:
            if prepared.file_ids:
                await anyio.to_thread.run_sync(self.check_files, tenant, prepared.file_ids)
            job, created = await anyio.to_thread.run_sync(self._insert, prepared.values)
        if created:
            JOBS_SUBMITTED.labels(op=job.op).inc()
        return job, created

    def submit(self, tenant: str, body: JobCreate, *, idempotency_key: str | None = None,
               notes: dict[str, Any] | None = None) -> tuple[JobRecord, bool]:
        """Validate, check, insert and hand the job to the executor. Returns (job, created).
        `notes`: the job's first notes (e.g. the batch item it runs, jobs/batches.py)."""
        prepared = self.prepare(tenant, body, idempotency_key=idempotency_key, notes=notes)
        self.check_files(tenant, prepared.file_ids)
        job, created = self._insert(prepared.values)
        if created:
            JOBS_SUBMITTED.labels(op=job.op).inc()
        return job, created

    def submit_many(self, tenant: str, entries: Sequence[tuple[JobCreate, str | None, dict[str, Any] | None]],
                    ) -> list[JobRecord | ReelForgeError]:
        """submit() for many jobs at once (body, idempotency key, notes): each validated, the files checked in
        one query, the rows inserted in one transaction, then handed to the executor. An entry whose key was
        used before comes back as that job (as submit() would; a key reused with other params is Conflict).
        Returns, per entry, its job or the user error that refused it."""
        out: list[JobRecord | ReelForgeError] = []
        prepared: list[tuple[int, PreparedJob]] = []
        for body, key, notes in entries:
            try:
                prepared.append((len(out), self.prepare(tenant, body, idempotency_key=key, notes=notes)))
                out.append(Conflict("not inserted"))  # replaced below
            except ReelForgeError as exc:
                out.append(exc)
        file_ids = [f for _, p in prepared for f in p.file_ids]
        if file_ids:
            owned = self.stores.files.storage_keys(file_ids, tenant)
            kept = []
            for index, p in prepared:
                missing = next((f for f in p.file_ids if f not in owned), None)
                if missing is None:
                    kept.append((index, p))
                else:
                    out[index] = missing_file(missing)
            prepared = kept
        if not prepared:
            return out
        try:
            records = self.jobs.insert_jobs([p.values for _, p in prepared])
            created = [(index, rec, True) for (index, _), rec in zip(prepared, records, strict=True)]
        except IntegrityError:  # a key used before (a retry after a crash): one by one, as submit() does
            created = []
            for index, p in prepared:
                try:
                    rec, new = self.jobs.insert_job(p.values)
                except Conflict as exc:
                    out[index] = exc
                    continue
                created.append((index, rec, new))
        for index, rec, new in created:
            out[index] = rec
            if new:
                JOBS_SUBMITTED.labels(op=rec.op).inc()
                self.executor.submit(rec)
        return out

    def _insert(self, values: dict[str, Any]) -> tuple[JobRecord, bool]:
        job, created = self.jobs.insert_job(values)
        if created:
            self.executor.submit(job)
        return job, created

    # ---- cancel and retry
    def cancel(self, tenant: str | None, job_id: str) -> JobRecord:
        """Cancel a queued job now, or ask a running job's worker to stop. Terminal jobs are returned as is."""
        job = self.jobs.request_cancel(job_id, tenant)
        if job is None:
            raise _not_found(job_id)
        if job.status == JobStatus.RUNNING:
            self.executor.cancel(job_id)
            if job.notes.get("fork"):
                return self._cancel_children(job)
        elif job.status == JobStatus.CANCELLED and job.webhook_url and job.started_at is None:
            # no worker ever held this job, so no job control will send its terminal event
            fmt = job.notes.get("webhook_format")
            event = terminal_event(job, "cancelled", None, job.error, row=job, webhook_format=fmt)
            self.webhooks.send(job.id, job.webhook_url, event, kind="state" if fmt is None else "cancelled")
        return job

    def _cancel_children(self, job: JobRecord) -> JobRecord:
        """A parent waiting for its children (docs/CHUNKED.md): cancel them all; it is cancelled with them
        (now, when none was running; else when the running ones stopped)."""
        self.jobs.cancel_children(job.id)
        for child_id in (job.notes.get("fork") or {}).get("children") or []:
            child = self.jobs.get_job(child_id)
            if child is not None and child.status == JobStatus.RUNNING:
                self.executor.cancel(child_id)
        settled = self.jobs.settle_parent(job.id)
        if settled is not None and settled.status.terminal and job.webhook_url:
            # its runs ended long ago, so no job control will send its terminal event
            fmt = job.notes.get("webhook_format")
            event = terminal_event(settled, settled.status.value, None, settled.error, row=settled, webhook_format=fmt)
            self.webhooks.send(job.id, job.webhook_url, event, kind="state" if fmt is None else settled.status.value)
        return settled or self.jobs.get_job(job.id) or job

    def retry(self, tenant: str | None, job_id: str) -> tuple[JobRecord, bool]:
        """Submit a failed, cancelled or timed-out job again as a new job (see the module docstring). The new
        job is the old job's tenant's (tenant None: an admin's retry of any tenant's job)."""
        old = self.get(tenant, job_id)
        tenant = old.tenant
        if old.status not in RETRYABLE:
            raise Conflict(f"Job {job_id} is {old.status.value}; only failed, cancelled or timed-out jobs can be "
                           "retried.", code="job_not_retryable")
        body = JobCreate(op=old.op, params=old.params, webhook_url=old.webhook_url, priority=old.priority,
                         timeout_s=old.timeout_s, idempotency_key=f"retry-of:{old.id}")
        carried = {k: old.notes[k] for k in FRONT_DOOR_NOTES if k in old.notes}  # still answers its client
        prepared = self.prepare(tenant, body, notes={**carried, "retry_of": old.id}, output_keys=old.output_keys)
        self.check_files(tenant, prepared.file_ids)
        job, created = self._insert(prepared.values)
        if created:
            JOBS_SUBMITTED.labels(op=job.op).inc()
        return job, created

    # ---- webhooks
    def replay_webhooks(self, tenant: str | None, job_id: str) -> int:
        """Send the job's webhook events again (an operator's replay, e.g. after a receiver was down longer
        than the retry schedule): every state event still kept (7 days), each with its own id and its
        schedule from the start; when none is kept any more, the job's terminal event anew. How many."""
        job = self.get(tenant, job_id)
        if not job.webhook_url:
            raise Conflict(f"Job {job_id} has no webhook_url; there are no events to replay.", code="no_webhook")
        count = self.webhooks.replay(job_id)
        if count == 0 and job.status.terminal:
            fmt = job.notes.get("webhook_format")
            event = terminal_event(job, job.status.value, job.result, job.error, webhook_format=fmt, row=job,
                                   urls=output_urls(self.settings, self.storage, job.id, job.result))
            sent = self.webhooks.send(job.id, job.webhook_url, event,
                                      kind="state" if fmt is None else job.status.value)
            count = int(sent)
        return count

    # ---- read
    def get(self, tenant: str | None, job_id: str) -> JobRecord:
        job = self.jobs.get_job(job_id, tenant)
        if job is None:
            raise _not_found(job_id)
        return job

    def by_idempotency_key(self, tenant: str, key: str) -> JobRecord | None:
        """The tenant's job submitted with this idempotency key (front doors name groups of jobs this way)."""
        return self.jobs.find_by_idempotency_key(tenant, key)

    def find(self, tenant: str | None, job_id: str) -> JobRecord | None:
        """get() without the NotFound: for pollers that stop quietly when a job disappears."""
        return self.jobs.get_job(job_id, tenant)

    def get_with_attempts(self, tenant: str | None, job_id: str) -> tuple[JobRecord, list[dict[str, Any]] | None]:
        """A job and, when it has a webhook, every delivery attempt so far."""
        job = self.get(tenant, job_id)
        return job, (self.stores.webhooks.webhook_attempts(job_id) if job.webhook_url else None)

    async def get_with_attempts_async(self, tenant: str | None,
                                      job_id: str) -> tuple[JobRecord, list[dict[str, Any]] | None]:
        """get_with_attempts() for an event loop: through the batched status reader when there is one."""
        if self.reader is None:
            return await anyio.to_thread.run_sync(self.get_with_attempts, tenant, job_id)
        job, attempts = await self.reader.get(tenant, job_id)
        if job is None:
            raise _not_found(job_id)
        return job, attempts

    def list_jobs(self, tenant: str | None, *, status: Sequence[str] = (), op: str | None = None, limit: int = 50,
             before: float | None = None) -> list[JobRecord]:
        """Newest first; pass the last job's created_at as `before` for the next page."""
        return self.jobs.list_jobs(tenant=tenant, status=list(status), op=op, limit=limit, before=before)

    def output(self, tenant: str | None, job_id: str, name: str) -> dict[str, Any]:
        """The stored metadata (key, filename, size, content_type, sha256) of one output of a job."""
        job = self.get(tenant, job_id)
        outputs = (job.result or {}).get("outputs") or {}
        if name not in outputs:
            raise NotFound(f"Job {job_id} has no output {name!r}.", code="output_not_found")
        return dict(outputs[name])

    def output_url(self, job: JobRecord, name: str, meta: dict[str, Any]) -> str:
        """Where a client downloads an output: the storage's own URL (S3) or this service's route."""
        return output_url(self.settings, self.storage, job.id, name, meta)
