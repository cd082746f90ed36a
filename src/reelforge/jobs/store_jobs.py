"""Jobs: every state change of a job goes through here, as compare-and-set updates.

The jobs table is the source of truth for both executors. Claiming is a conditional UPDATE (status and
lease checked in the WHERE clause), so two workers can never both own a job, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reelforge.errors import Conflict
from reelforge.jobs.db import _Store, rowcount
from reelforge.jobs.models import JobRow
from reelforge.jobs.states import ACTIVE, TERMINAL, JobStatus

_JOBS = JobRow.metadata.tables[JobRow.__tablename__]  # the Table (Core inserts and selects)
INTERRUPTED_NOTE = "interrupted_by_shutdown"  # in a running job's notes until it is queued again
FORK_OWNER = "children"  # the lease owner of a parent job waiting for its children (docs/CHUNKED.md)


class _Values:
    """Attribute access over a dict of column values (so JobRecord.from_row takes fresh inserts too)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


class _RandomIds:
    """128-bit random hex ids from the OS's randomness, read 256 ids at a time.

    uuid4() reads 16 bytes per call with a getrandom() syscall that releases the GIL: on the event loop
    (every submit makes an id) each release meant waiting to get the GIL back from whatever thread held it
    then (the executor's slots, the batchers), up to a switch interval (5 ms) per submit. In a profile of
    200 concurrent submits that wait was the largest single item on the event loop (14-22% of its samples).
    """

    def __init__(self, per_read: int = 256) -> None:
        self._size = 16 * per_read
        self._buf = b""
        self._at = 0
        self._lock = threading.Lock()

    def next_hex(self) -> str:
        with self._lock:
            if self._at >= len(self._buf):
                self._buf, self._at = os.urandom(self._size), 0
            raw = self._buf[self._at:self._at + 16]
            self._at += 16
        return raw.hex()

    def forget(self) -> None:
        """In a forked child: never hand out the ids left in the parent's buffer."""
        self._buf, self._at = b"", 0
        self._lock = threading.Lock()


_ids = _RandomIds()
os.register_at_fork(after_in_child=_ids.forget)


def new_job_id() -> str:
    return f"job_{_ids.next_hex()}"


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
    output_keys: dict[str, str] = field(default_factory=dict)  # output name -> storage key (see JobRow)

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
            output_keys=getattr(row, "output_keys", None) or {},
        )


class JobsStore(_Store):
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
            if existing.op != values["op"] or existing.params != values["params"] \
                    or existing.output_keys != (values.get("output_keys") or {}):
                raise Conflict(
                    "This idempotency_key was already used for a different job.", code="idempotency_conflict"
                ) from None
            return existing, False
        return JobRecord.from_row(_Values(values)), True

    @staticmethod
    def new_job_values(*, tenant: str, op: str, params: dict[str, Any], queue: str, timeout_s: float,
                       max_attempts: int, priority: int = 0, webhook_url: str | None = None,
                       idempotency_key: str | None = None,
                       output_keys: dict[str, str] | None = None) -> dict[str, Any]:
        now = time.time()
        return {
            "id": new_job_id(), "tenant": tenant, "op": op, "params": params, "queue": queue,
            "status": JobStatus.QUEUED.value, "stage": "queued", "progress": 0.0, "priority": priority,
            "timeout_s": timeout_s, "idempotency_key": idempotency_key, "webhook_url": webhook_url,
            "created_at": now, "updated_at": now, "started_at": None, "finished_at": None, "attempts": 0,
            "max_attempts": max_attempts, "lease_owner": None, "lease_expires_at": None,
            "cancel_requested": False, "notes": {}, "result": None, "error": None,
            "output_keys": dict(output_keys) if output_keys else None,
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

    def get_jobs(self, job_ids: Iterable[str]) -> dict[str, JobRecord]:
        """Many jobs by id in one query (any tenant: the caller filters), for batched status reads."""
        ids = list(set(job_ids))
        with self.engine.connect() as conn:
            rows = conn.execute(select(_JOBS).where(_JOBS.c.id.in_(ids))).all() if ids else []
        return {row.id: JobRecord.from_row(row) for row in rows}

    def list_jobs(self, *, tenant: str | None, status: Sequence[str] = (), op: str | None = None, limit: int = 50,
                  before: float | None = None) -> list[JobRecord]:
        """Newest first; tenant None lists every tenant's jobs (an admin key)."""
        q = select(JobRow)
        if tenant is not None:
            q = q.where(JobRow.tenant == tenant)
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

    def queue_depths(self) -> dict[str, tuple[int, float | None]]:
        """queue -> (queued jobs, created_at of the oldest): what /metrics shows per queue."""
        with self.session() as s:
            rows = s.execute(select(JobRow.queue, func.count(), func.min(JobRow.created_at))
                             .where(JobRow.status == JobStatus.QUEUED.value).group_by(JobRow.queue))
            return {queue: (n, oldest) for queue, n, oldest in rows}

    def queue_counts(self, queues: Iterable[str]) -> dict[str, tuple[int, int]]:
        """queue -> (queued, running) for these queues (the capacity controller's queue depths)."""
        names = list(queues)
        out = {q: (0, 0) for q in names}
        with self.session() as s:
            rows = s.execute(select(JobRow.queue, JobRow.status, func.count())
                             .where(JobRow.queue.in_(names),
                                    JobRow.status.in_([JobStatus.QUEUED.value, JobStatus.RUNNING.value]))
                             .group_by(JobRow.queue, JobRow.status))
            for queue, status, n in rows:
                queued, running = out[queue]
                out[queue] = (queued + n, running) if status == JobStatus.QUEUED.value else (queued, running + n)
        return out

    def running_owners(self) -> list[str]:
        """The lease owner (worker id) of every running job."""
        with self.session() as s:
            q = select(JobRow.lease_owner).where(JobRow.status == JobStatus.RUNNING.value)
            return [o for o in s.scalars(q) if o]

    def finished_since(self, since: float, limit: int = 1000) -> list[JobRecord]:
        """Jobs that reached a terminal state after `since`, oldest first."""
        with self.session() as s:
            q = (select(JobRow).where(JobRow.finished_at > since, JobRow.status.in_([t.value for t in TERMINAL]))
                 .order_by(JobRow.finished_at).limit(limit))
            return [JobRecord.from_row(r) for r in s.scalars(q)]

    def queued_ids(self, limit: int = 1000) -> list[str]:
        with self.session() as s:
            q = (select(JobRow.id).where(JobRow.status == JobStatus.QUEUED.value)
                 .order_by(JobRow.priority.desc(), JobRow.created_at).limit(limit))
            return list(s.scalars(q))

    def queued_candidates(self, queues: Iterable[str], limit: int) -> list[tuple[str, str, dict[str, Any]]]:
        """(id, op, params) of queued jobs of these queues, in claim order: a remote agent picks the first
        whose op's resources fit it."""
        with self.session() as s:
            q = (select(JobRow.id, JobRow.op, JobRow.params)
                 .where(JobRow.status == JobStatus.QUEUED.value, JobRow.cancel_requested.is_(False),
                        JobRow.queue.in_(list(queues)))
                 .order_by(JobRow.priority.desc(), JobRow.created_at).limit(limit))
            return [(job_id, op, params or {}) for job_id, op, params in s.execute(q)]

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
            if rowcount(res) != 1:
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
            return rowcount(res) == 1, bool(cancel)

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
            row = s.get(JobRow, job_id, with_for_update=self.db.row_locks)
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
            if error is not None and "stage" not in error:
                # the job's stage becomes its final status: the error keeps the stage it failed in
                stage = s.scalar(select(JobRow.stage).where(JobRow.id == job_id))
                if stage:
                    values["error"] = {**error, "stage": stage}
            res = s.execute(update(JobRow).where(JobRow.id == job_id, JobRow.lease_owner == worker_id,
                                                 JobRow.status == JobStatus.RUNNING.value).values(**values))
            return rowcount(res) == 1

    def release_for_retry(self, job_id: str, worker_id: str | None, error: dict[str, Any], *,
                          refund: bool = False) -> JobStatus:
        """The worker running this job was lost: queue it again, or fail it when out of attempts.

        `refund`: the attempt does not count (the service itself was shutting down, not the job's fault).
        """
        now = time.time()
        with self.session() as s, s.begin():
            row = s.get(JobRow, job_id, with_for_update=self.db.row_locks)
            if row is None or row.status != JobStatus.RUNNING.value:
                return JobStatus(row.status) if row else JobStatus.FAILED
            if worker_id is not None and row.lease_owner != worker_id:
                return JobStatus(row.status)
            notes = dict(row.notes or {})
            # its worker wrote that the service was shutting down before it stopped the job: whatever
            # happened next (the process was killed before it could requeue it), the attempt does not count
            refund = bool(notes.pop(INTERRUPTED_NOTE, False)) or refund
            row.lease_owner = None
            row.lease_expires_at = None
            row.updated_at = now
            row.notes = {**notes, "last_worker_error": error}
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

    def mark_interrupted(self, job_id: str, worker_id: str) -> None:
        """Record, before the job's host is killed, that its owner is shutting down (see release_for_retry)."""
        with self.session() as s, s.begin():
            row = s.get(JobRow, job_id, with_for_update=self.db.row_locks)
            if row is not None and row.status == JobStatus.RUNNING.value and row.lease_owner == worker_id:
                row.notes = {**(row.notes or {}), INTERRUPTED_NOTE: True}

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
            row = s.get(JobRow, job_id, with_for_update=self.db.row_locks)
            if row is None or (tenant is not None and row.tenant != tenant):
                return None
            if row.status in ACTIVE:
                row.cancel_requested = True
                row.updated_at = now
                if row.status == JobStatus.QUEUED.value:
                    row.status, row.finished_at, row.stage = JobStatus.CANCELLED.value, now, "cancelled"
                    row.error = {"code": "cancelled", "message": "The job was cancelled before it started."}
            return JobRecord.from_row(row)

    # ---- fork-join (docs/CHUNKED.md): a parent waits, RUNNING under FORK_OWNER with no lease (so no
    # reclaim and no claim), while its children run; notes.fork = {"children": [ids], "weights", "state",
    # "outputs": the files stored for the children, as stored outputs}; each child's notes.parent names it
    def fork(self, parent_id: str, worker_id: str, children: list[dict[str, Any]],
             state: dict[str, Any], outputs: dict[str, Any] | None = None) -> list[JobRecord] | None:
        """Insert the children and park the owned parent; None if this worker does not own it (or it was
        asked to cancel: the caller cancels it)."""
        now = time.time()
        with self.session() as s, s.begin():
            row = s.get(JobRow, parent_id, with_for_update=self.db.row_locks)
            if (row is None or row.status != JobStatus.RUNNING.value or row.lease_owner != worker_id
                    or row.cancel_requested):
                return None
            values = []
            for i, child in enumerate(children):
                v = self.new_job_values(
                    tenant=row.tenant, op=child["op"], params=child["params"], queue=row.queue,
                    timeout_s=row.timeout_s, max_attempts=row.max_attempts, priority=min(10, row.priority + 1),
                    idempotency_key=f"fork:{parent_id}:{i}")
                v["notes"] = {"parent": parent_id, "child": i}
                values.append(v)
            s.execute(insert(_JOBS), values)
            row.lease_owner, row.lease_expires_at, row.updated_at = FORK_OWNER, None, now
            row.stage = f"waiting for {len(values)} chunks"
            row.notes = {**(row.notes or {}), "fork": {
                "children": [v["id"] for v in values], "weights": [float(c.get("weight") or 1) for c in children],
                "state": state, **({"outputs": outputs} if outputs else {})}}
        return [JobRecord.from_row(_Values(v)) for v in values]

    def fork_progress(self, parent_id: str) -> None:
        """The waiting parent's progress: its children's, weighted (its own first and last runs take the
        first and last 5 %)."""
        with self.session() as s, s.begin():
            row = s.get(JobRow, parent_id)
            if row is None or row.lease_owner != FORK_OWNER or row.status != JobStatus.RUNNING.value:
                return
            fork = (row.notes or {}).get("fork") or {}
            ids, weights = fork.get("children") or [], fork.get("weights") or []
            got = dict(s.execute(select(JobRow.id, JobRow.progress).where(JobRow.id.in_(ids))).all())
            total = sum(weights) or 1.0
            done = sum(w * (got.get(cid) or 0.0) for cid, w in zip(ids, weights, strict=False)) / total
            s.execute(update(JobRow).where(JobRow.id == parent_id, JobRow.lease_owner == FORK_OWNER)
                      .values(progress=0.05 + 0.9 * done, updated_at=time.time()))

    def cancel_children(self, parent_id: str) -> None:
        """Flag every active child of a parent for cancel (a queued one is cancelled at once)."""
        parent = self.get_job(parent_id)
        for child_id in ((parent.notes.get("fork") or {}).get("children") or []) if parent else []:
            self.request_cancel(child_id, None)

    def settle_parent(self, parent_id: str) -> JobRecord | None:
        """After a child ended: the parent queued again once every child succeeded, failed (or cancelled)
        as soon as one did not (its other children then cancelled). Returns the parent when it changed."""
        now = time.time()
        with self.session() as s, s.begin():
            row = s.get(JobRow, parent_id, with_for_update=self.db.row_locks)
            if row is None or row.status != JobStatus.RUNNING.value or row.lease_owner != FORK_OWNER:
                return None
            ids = ((row.notes or {}).get("fork") or {}).get("children") or []
            kids = {r.id: r for r in s.execute(select(JobRow.id, JobRow.status, JobRow.error, JobRow.notes)
                                               .where(JobRow.id.in_(ids))).all()}
            statuses = [JobStatus(kids[i].status) if i in kids else JobStatus.FAILED for i in ids]
            if all(st == JobStatus.SUCCEEDED for st in statuses):
                row.status, row.lease_owner, row.updated_at = JobStatus.QUEUED.value, None, now
                row.stage = "queued (join)"
                row.attempts = max(0, row.attempts - 1)  # waiting was not an attempt: the join gets its own
                return JobRecord.from_row(row)
            ended = [(i, st) for i, st in zip(ids, statuses, strict=True) if st.terminal and st != JobStatus.SUCCEEDED]
            if not ended:
                return None
            bad_id, bad = ended[0]
            row.lease_owner, row.finished_at, row.updated_at = None, now, now
            if row.cancel_requested or bad == JobStatus.CANCELLED:
                row.status, row.stage = JobStatus.CANCELLED.value, "cancelled"
                row.error = {"code": "cancelled", "message": "The job was cancelled."}
            else:
                err = (kids[bad_id].error if bad_id in kids else None) or {}
                row.status, row.stage = JobStatus.FAILED.value, "failed"
                row.error = {"code": err.get("code") or "chunk_failed",
                             "message": f"Chunk {ids.index(bad_id) + 1} of {len(ids)} ({bad_id}) {bad.value}: "
                                        f"{err.get('message', '')}".strip(), "chunk": bad_id}
            for child_id, st in zip(ids, statuses, strict=True):
                if not st.terminal:
                    child = s.get(JobRow, child_id, with_for_update=self.db.row_locks)
                    if child is not None:
                        child.cancel_requested, child.updated_at = True, now
                        if child.status == JobStatus.QUEUED.value:
                            child.status, child.finished_at, child.stage = JobStatus.CANCELLED.value, now, "cancelled"
                            child.error = {"code": "cancelled", "message": "Another chunk of the render ended first."}
            return JobRecord.from_row(row)
