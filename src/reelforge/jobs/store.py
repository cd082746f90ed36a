"""The job store: every state change of a job goes through here, as compare-and-set updates.

The jobs table is the source of truth for both executors. Claiming is a conditional UPDATE (status and
lease checked in the WHERE clause), so two workers can never both own a job, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from reelforge.errors import Conflict
from reelforge.jobs.models import ApiKeyRow, FileRow, JobRow, WebhookAttemptRow, WebhookOutboxRow
from reelforge.jobs.states import ACTIVE, TERMINAL, JobStatus

_JOBS = JobRow.__table__


class _Values:
    """Attribute access over a dict of column values (so JobRecord.from_row takes fresh inserts too)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def new_job_id() -> str:
    return f"job_{uuid.uuid4().hex}"


def new_file_id() -> str:
    return f"file_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class JobRecord:
    id: str
    tenant: str
    op: str
    params: dict[str, Any]
    queue: str
    status: JobStatus
    stage: str | None
    progress: float
    priority: int
    timeout_s: float
    idempotency_key: str | None
    webhook_url: str | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    updated_at: float
    attempts: int
    max_attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    cancel_requested: bool
    notes: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, row: Any) -> JobRecord:
        """From an ORM JobRow or a Core row (both expose the columns as attributes)."""
        return cls(
            id=row.id, tenant=row.tenant, op=row.op, params=row.params or {}, queue=row.queue,
            status=JobStatus(row.status), stage=row.stage, progress=row.progress or 0.0,
            priority=row.priority, timeout_s=row.timeout_s, idempotency_key=row.idempotency_key,
            webhook_url=row.webhook_url, created_at=row.created_at, started_at=row.started_at,
            finished_at=row.finished_at, updated_at=row.updated_at, attempts=row.attempts,
            max_attempts=row.max_attempts, lease_owner=row.lease_owner,
            lease_expires_at=row.lease_expires_at, cancel_requested=bool(row.cancel_requested),
            notes=row.notes or {}, result=row.result, error=row.error,
        )


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant: str
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    created_at: float


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    tenant: str
    prefix: str
    created_at: float
    revoked: bool


def new_key_prefix() -> str:
    """A key's public id, e.g. rf_1a2b3c4d: the part before the secret, safe to show (`keys list`, logs)."""
    return f"rf_{secrets.token_hex(4)}"


def _hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=20, max_overflow=20)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # WAL: readers never block the writer; NORMAL sync is durable across process crashes
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


class JobStore:
    def __init__(self, url: str, *, engine: Engine | None = None) -> None:
        self.url = url
        self.engine = engine or make_engine(url)
        self._session = sessionmaker(self.engine, expire_on_commit=False)

    # ---- schema
    def migrate(self) -> None:
        """Bring the schema to the latest Alembic revision (creates it on a fresh database)."""
        from reelforge.jobs.migrate import upgrade

        upgrade(self.engine)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")

    def dispose(self) -> None:
        self.engine.dispose()

    def session(self) -> Session:
        return self._session()

    # ---- jobs: submit and read
    def create_job(
        self, *, tenant: str, op: str, params: dict[str, Any], queue: str, timeout_s: float,
        max_attempts: int, priority: int = 0, webhook_url: str | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[JobRecord, bool]:
        """Insert a queued job. Returns (job, created); an existing idempotency key returns (old, False)."""
        return self.insert_job(self.new_job_values(
            tenant=tenant, op=op, params=params, queue=queue, timeout_s=timeout_s, max_attempts=max_attempts,
            priority=priority, webhook_url=webhook_url, idempotency_key=idempotency_key))

    def insert_job(self, values: dict[str, Any]) -> tuple[JobRecord, bool]:
        """Insert one job (from new_job_values). An existing idempotency key returns (that job, False),
        or Conflict when the key was used for a different op or params."""
        key = values.get("idempotency_key")
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(_JOBS), [values])
        except IntegrityError:
            if key is None:
                raise
            existing = self.find_by_idempotency_key(values["tenant"], key)
            if existing is None:
                raise
            if existing.op != values["op"] or existing.params != values["params"]:
                raise Conflict(
                    "This idempotency_key was already used for a different job.", code="idempotency_conflict"
                ) from None
            return existing, False
        return JobRecord.from_row(_Values(values)), True

    @staticmethod
    def new_job_values(*, tenant: str, op: str, params: dict[str, Any], queue: str, timeout_s: float,
                       max_attempts: int, priority: int = 0, webhook_url: str | None = None,
                       idempotency_key: str | None = None) -> dict[str, Any]:
        now = time.time()
        return {
            "id": new_job_id(), "tenant": tenant, "op": op, "params": params, "queue": queue,
            "status": JobStatus.QUEUED.value, "stage": "queued", "progress": 0.0, "priority": priority,
            "timeout_s": timeout_s, "idempotency_key": idempotency_key, "webhook_url": webhook_url,
            "created_at": now, "updated_at": now, "started_at": None, "finished_at": None, "attempts": 0,
            "max_attempts": max_attempts, "lease_owner": None, "lease_expires_at": None,
            "cancel_requested": False, "notes": {}, "result": None, "error": None,
        }

    def insert_jobs(self, batch: list[dict[str, Any]]) -> list[JobRecord]:
        """Insert many new jobs (from new_job_values) in one transaction: group commit for busy APIs."""
        with self.engine.begin() as conn:
            conn.execute(insert(_JOBS), batch)
        return [JobRecord.from_row(_Values(v)) for v in batch]

    def find_by_idempotency_key(self, tenant: str, key: str) -> JobRecord | None:
        with self.session() as s:
            row = s.scalar(select(JobRow).where(JobRow.tenant == tenant, JobRow.idempotency_key == key))
            return JobRecord.from_row(row) if row else None

    def get_job(self, job_id: str, tenant: str | None = None) -> JobRecord | None:
        # Core, not ORM: status polling is the hottest read path
        with self.engine.connect() as conn:
            row = conn.execute(select(_JOBS).where(_JOBS.c.id == job_id)).first()
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return JobRecord.from_row(row)

    def list_jobs(self, *, tenant: str, status: Sequence[str] = (), op: str | None = None, limit: int = 50,
                  before: float | None = None) -> list[JobRecord]:
        q = select(JobRow).where(JobRow.tenant == tenant)
        if status:
            q = q.where(JobRow.status.in_(list(status)))
        if op:
            q = q.where(JobRow.op == op)
        if before is not None:
            q = q.where(JobRow.created_at < before)
        q = q.order_by(JobRow.created_at.desc()).limit(limit)
        with self.session() as s:
            return [JobRecord.from_row(r) for r in s.scalars(q)]

    def counts_by_status(self) -> dict[tuple[str, str], int]:
        with self.session() as s:
            rows = s.execute(select(JobRow.op, JobRow.status, func.count()).group_by(JobRow.op, JobRow.status))
            return {(op, st): n for op, st, n in rows}

    def queued_ids(self, limit: int = 1000) -> list[str]:
        with self.session() as s:
            q = (select(JobRow.id).where(JobRow.status == JobStatus.QUEUED.value)
                 .order_by(JobRow.priority.desc(), JobRow.created_at).limit(limit))
            return list(s.scalars(q))

    # ---- jobs: workers
    def _claimed(self, s: Session, job_id: str) -> JobRecord:
        row = s.get(JobRow, job_id)
        assert row is not None
        return JobRecord.from_row(row)

    def claim(self, job_id: str, worker_id: str, lease_ttl_s: float) -> JobRecord | None:
        """Take a specific job if it is queued, or running under an expired lease (its worker died)."""
        now = time.time()
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.cancel_requested.is_(False), or_(
                    JobRow.status == JobStatus.QUEUED.value,
                    (JobRow.status == JobStatus.RUNNING.value) & (JobRow.lease_expires_at < now),
                ))
                .values(status=JobStatus.RUNNING.value, lease_owner=worker_id,
                        lease_expires_at=now + lease_ttl_s, attempts=JobRow.attempts + 1,
                        started_at=func.coalesce(JobRow.started_at, now), updated_at=now, stage="starting")
            )
            if res.rowcount != 1:
                return None
            return self._claimed(s, job_id)

    def claim_next(self, worker_id: str, lease_ttl_s: float, queues: Iterable[str] | None = None,
                   ) -> JobRecord | None:
        """Claim the highest-priority oldest queued job (compare-and-set; retried on a lost race)."""
        for _ in range(8):
            q = select(JobRow.id).where(JobRow.status == JobStatus.QUEUED.value,
                                        JobRow.cancel_requested.is_(False))
            if queues is not None:
                q = q.where(JobRow.queue.in_(list(queues)))
            q = q.order_by(JobRow.priority.desc(), JobRow.created_at).limit(1)
            with self.session() as s:
                job_id = s.scalar(q)
            if job_id is None:
                return None
            job = self.claim(job_id, worker_id, lease_ttl_s)
            if job is not None:
                return job
        return None

    def heartbeat(self, job_id: str, worker_id: str, lease_ttl_s: float) -> tuple[bool, bool]:
        """Renew the lease. Returns (still_owner, cancel_requested)."""
        now = time.time()
        with self.session() as s, s.begin():
            res = s.execute(
                update(JobRow)
                .where(JobRow.id == job_id, JobRow.lease_owner == worker_id,
                       JobRow.status == JobStatus.RUNNING.value)
                .values(lease_expires_at=now + lease_ttl_s)
            )
            cancel = s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
            return res.rowcount == 1, bool(cancel)

    def cancel_requested(self, job_id: str) -> bool:
        with self.session() as s:
            return bool(s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id)))

    def update_progress(self, job_id: str, worker_id: str, progress: float, stage: str | None) -> None:
        values: dict[str, Any] = {"progress": max(0.0, min(1.0, progress)), "updated_at": time.time()}
        if stage is not None:
            values["stage"] = stage[:200]
        with self.session() as s, s.begin():
            s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == worker_id,
                                           JobRow.status == JobStatus.RUNNING.value).values(**values))

    def add_notes(self, job_id: str, notes: dict[str, Any]) -> None:
        with self.session() as s, s.begin():
            row = s.get(JobRow, job_id, with_for_update=not self.url.startswith("sqlite"))
            if row is not None:
                row.notes = {**(row.notes or {}), **notes}

    def finish(self, job_id: str, worker_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> bool:
        """Move an owned running job to a terminal state. False if we no longer own it."""
        assert status in TERMINAL
        now = time.time()
        values: dict[str, Any] = {"status": status.value, "finished_at": now, "updated_at": now,
                                  "lease_owner": None, "lease_expires_at": None, "result": result,
                                  "error": error, "stage": status.value}
        if status == JobStatus.SUCCEEDED:
            values["progress"] = 1.0
        with self.session() as s, s.begin():
            res = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == worker_id,
                                                 JobRow.status == JobStatus.RUNNING.value).values(**values))
            return res.rowcount == 1

    def release_for_retry(self, job_id: str, worker_id: str | None, error: dict[str, Any], *,
                          refund: bool = False) -> JobStatus:
        """The worker running this job was lost: queue it again, or fail it when out of attempts.

        `refund`: the attempt does not count (the service itself was shutting down, not the job's fault).
        """
        now = time.time()
        with self.session() as s, s.begin():
            row = s.get(JobRow, job_id, with_for_update=not self.url.startswith("sqlite"))
            if row is None or row.status != JobStatus.RUNNING.value:
                return JobStatus(row.status) if row else JobStatus.FAILED
            if worker_id is not None and row.lease_owner != worker_id:
                return JobStatus(row.status)
            row.lease_owner = None
            row.lease_expires_at = None
            row.updated_at = now
            row.notes = {**(row.notes or {}), "last_worker_error": error}
            if row.cancel_requested:
                row.status, row.finished_at, row.stage = JobStatus.CANCELLED.value, now, "cancelled"
                row.error = {"code": "cancelled", "message": "The job was cancelled."}
            elif refund or row.attempts < row.max_attempts:
                row.status, row.stage, row.progress = JobStatus.QUEUED.value, "queued (retry)", 0.0
                if refund:
                    row.attempts = max(0, row.attempts - 1)
            else:
                row.status, row.finished_at, row.stage = JobStatus.FAILED.value, now, "failed"
                row.error = {**error, "message": f"{error.get('message', '')} Gave up after {row.attempts} "
                             "attempts.".strip()}
            return JobStatus(row.status)

    def expired_running(self) -> list[JobRecord]:
        now = time.time()
        with self.session() as s:
            q = select(JobRow).where(JobRow.status == JobStatus.RUNNING.value, JobRow.lease_expires_at < now)
            return [JobRecord.from_row(r) for r in s.scalars(q)]

    def reclaim_expired(self) -> list[tuple[str, JobStatus]]:
        """Requeue (or fail) every running job whose lease ran out: its worker is gone."""
        out = []
        for job in self.expired_running():
            status = self.release_for_retry(job.id, job.lease_owner, {
                "code": "worker_lost", "message": "The worker running this job stopped responding."})
            out.append((job.id, status))
        return out

    def request_cancel(self, job_id: str, tenant: str | None) -> JobRecord | None:
        """Flag a job for cancel. A queued job is cancelled at once; a running one by its worker."""
        now = time.time()
        with self.session() as s, s.begin():
            row = s.get(JobRow, job_id, with_for_update=not self.url.startswith("sqlite"))
            if row is None or (tenant is not None and row.tenant != tenant):
                return None
            if row.status in ACTIVE:
                row.cancel_requested = True
                row.updated_at = now
                if row.status == JobStatus.QUEUED.value:
                    row.status, row.finished_at, row.stage = JobStatus.CANCELLED.value, now, "cancelled"
                    row.error = {"code": "cancelled", "message": "The job was cancelled before it started."}
            return JobRecord.from_row(row)

    # ---- files
    def create_file(self, *, tenant: str, filename: str, content_type: str, size: int, sha256: str,
                    storage_key: str, file_id: str | None = None) -> FileRecord:
        row = FileRow(id=file_id or new_file_id(), tenant=tenant, filename=filename, content_type=content_type,
                      size=size, sha256=sha256, storage_key=storage_key, created_at=time.time())
        with self.session() as s, s.begin():
            s.add(row)
        return self._file(row)

    @staticmethod
    def _file(row: FileRow) -> FileRecord:
        return FileRecord(row.id, row.tenant, row.filename, row.content_type, row.size, row.sha256,
                          row.storage_key, row.created_at)

    def get_file(self, file_id: str, tenant: str | None) -> FileRecord | None:
        with self.session() as s:
            row = s.get(FileRow, file_id)
            if row is None or (tenant is not None and row.tenant != tenant):
                return None
            return self._file(row)

    # ---- API keys
    def create_api_key(self, name: str, tenant: str | None = None) -> tuple[str, ApiKeyRecord]:
        """Returns the plaintext key (shown once) and its record; only a hash is stored."""
        prefix = new_key_prefix()
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiKeyRow(id=f"key_{uuid.uuid4().hex[:16]}", name=name, tenant=tenant or name,
                        key_hash=_hash_key(plaintext), prefix=prefix, created_at=time.time(),
                        revoked=False)
        with self.session() as s, s.begin():
            s.add(row)
        return plaintext, ApiKeyRecord(row.id, row.name, row.tenant, row.prefix, row.created_at, False)

    def tenant_for_key(self, plaintext: str) -> str | None:
        with self.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == _hash_key(plaintext),
                                                   ApiKeyRow.revoked.is_(False)))
            return row.tenant if row else None

    def list_api_keys(self) -> list[ApiKeyRecord]:
        with self.session() as s:
            return [ApiKeyRecord(r.id, r.name, r.tenant, r.prefix, r.created_at, r.revoked)
                    for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.created_at))]

    def revoke_api_key(self, key_id: str) -> bool:
        with self.session() as s, s.begin():
            res = s.execute(update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(revoked=True))
            return res.rowcount == 1

    def any_api_keys(self) -> bool:
        with self.session() as s:
            return s.scalar(select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked.is_(False))) > 0

    # ---- webhook attempts
    def record_webhook_attempt(self, job_id: str, attempt: dict[str, Any]) -> None:
        with self.session() as s, s.begin():
            s.add(WebhookAttemptRow(job_id=job_id, at=time.time(),
                                    event=str(attempt.get("event", ""))[:40], attempt=int(attempt.get("attempt", 1)),
                                    status_code=attempt.get("status_code"), error=attempt.get("error")))

    def webhook_attempts(self, job_id: str) -> list[dict[str, Any]]:
        with self.session() as s:
            rows = s.scalars(select(WebhookAttemptRow).where(WebhookAttemptRow.job_id == job_id)
                             .order_by(WebhookAttemptRow.id))
            return [{"event": r.event, "attempt": r.attempt, "status_code": r.status_code, "error": r.error,
                     "at": r.at} for r in rows]

    # ---- webhook outbox (terminal events until delivered; see jobs/webhooks.py)
    def outbox_add(self, job_id: str, url: str, event_type: str, kind: str, body: bytes, claim_s: float) -> int:
        now = time.time()
        with self.session() as s, s.begin():
            row = WebhookOutboxRow(job_id=job_id, url=url, event_type=event_type[:60], kind=kind[:40],
                                   body=body.decode(), created_at=now, claimed_until=now + claim_s)
            s.add(row)
            s.flush()
            return int(row.id)

    def outbox_done(self, item_id: int, outcome: str) -> None:
        with self.session() as s, s.begin():
            s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.id == item_id)
                      .values(done_at=time.time(), outcome=outcome[:20]))

    def outbox_release(self, item_ids: Iterable[int]) -> None:
        """Give up claims (a sender shutting down) so the next process sends them at once."""
        ids = list(item_ids)
        if ids:
            with self.session() as s, s.begin():
                s.execute(update(WebhookOutboxRow).where(WebhookOutboxRow.id.in_(ids),
                                                         WebhookOutboxRow.done_at.is_(None))
                          .values(claimed_until=0.0))

    def outbox_claim_stale(self, claim_s: float, limit: int = 100) -> list[dict[str, Any]]:
        """Undelivered events whose sender's claim ran out, each claimed for `claim_s` by this caller
        (a conditional update: of several processes asking at once, one gets each row)."""
        now = time.time()
        with self.session() as s:
            rows = s.execute(select(WebhookOutboxRow.id, WebhookOutboxRow.claimed_until)
                             .where(WebhookOutboxRow.done_at.is_(None), WebhookOutboxRow.claimed_until < now)
                             .order_by(WebhookOutboxRow.id).limit(limit)).all()
        claimed: list[dict[str, Any]] = []
        for item_id, old in rows:
            with self.session() as s, s.begin():
                won = s.execute(update(WebhookOutboxRow)
                                .where(WebhookOutboxRow.id == item_id, WebhookOutboxRow.done_at.is_(None),
                                       WebhookOutboxRow.claimed_until == old)
                                .values(claimed_until=now + claim_s)).rowcount == 1
                if won:
                    r = s.get(WebhookOutboxRow, item_id)
                    assert r is not None
                    claimed.append({"id": r.id, "job_id": r.job_id, "url": r.url, "event_type": r.event_type,
                                    "kind": r.kind, "body": r.body.encode()})
        return claimed

    def outbox_prune(self, older_than_s: float) -> int:
        """Delete finished outbox rows older than `older_than_s` (the attempts table keeps the history)."""
        with self.session() as s, s.begin():
            return s.execute(delete(WebhookOutboxRow).where(WebhookOutboxRow.done_at.is_not(None),
                                                            WebhookOutboxRow.done_at < time.time() - older_than_s)
                             ).rowcount
