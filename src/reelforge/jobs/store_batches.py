"""Batches, their items and presets (jobs/batches.py decides; this only reads and writes rows).

Item rows are written in one transaction with their batch (Core executemany in chunks), so a batch of
10,000 items is one commit; the feeder reads a batch's in-flight items joined with their jobs in one query.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from reelforge.jobs.db import _Store, rowcount
from reelforge.jobs.models import BatchItemRow, BatchRow, JobRow, PresetRow

_ITEMS = BatchItemRow.metadata.tables[BatchItemRow.__tablename__]
_BATCHES = BatchRow.metadata.tables[BatchRow.__tablename__]
INSERT_CHUNK = 1000
ACTIVE_BATCH = ("running", "paused", "cancelling")
ITEM_STATES = ("pending", "submitted", "succeeded", "failed", "cancelled", "skipped")


def new_batch_id() -> str:
    return f"bat_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class BatchRecord:
    id: str
    tenant: str
    name: str | None
    status: str
    fingerprint: str
    config: dict[str, Any]
    explain: dict[str, Any]
    secrets: dict[str, Any] | None
    total: int
    results: dict[str, Any] | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, r: Any) -> BatchRecord:
        return cls(r.id, r.tenant, r.name, r.status, r.fingerprint, r.config or {}, r.explain or {}, r.secrets,
                   r.total, r.results, r.created_at, r.updated_at, r.started_at, r.finished_at)


@dataclass(frozen=True)
class ItemRecord:
    batch_id: str
    idx: int
    source: str
    etag: str
    size: int | None
    row: int | None
    vars: dict[str, Any]
    params: dict[str, Any]
    status: str
    tries: int
    job_id: str | None
    outputs: dict[str, Any] | None
    error: dict[str, Any] | None
    seconds: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, r: Any) -> ItemRecord:
        return cls(r.batch_id, r.idx, r.source, r.etag or "", r.size, r.row, r.vars or {}, r.params or {}, r.status,
                   r.tries, r.job_id, r.outputs, r.error, r.seconds, r.finished_at)


@dataclass(frozen=True)
class InFlight:
    """A submitted item with its job's state (job_status None: the job row is gone)."""

    item: ItemRecord
    job_status: str | None
    job_result: dict[str, Any] | None
    job_error: dict[str, Any] | None
    job_started_at: float | None
    job_finished_at: float | None


class BatchesStore(_Store):
    # ---- batches
    def create_batch(self, values: dict[str, Any], items: Sequence[dict[str, Any]]) -> BatchRecord:
        """Insert the batch and all its items in one transaction."""
        with self.engine.begin() as conn:
            conn.execute(insert(_BATCHES), [values])
            for start in range(0, len(items), INSERT_CHUNK):
                conn.execute(insert(_ITEMS), list(items[start:start + INSERT_CHUNK]))
        return BatchRecord.from_row(_Obj(values))

    def get_batch(self, batch_id: str, tenant: str | None = None) -> BatchRecord | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(_BATCHES).where(_BATCHES.c.id == batch_id)).first()
        if row is None or (tenant is not None and row.tenant != tenant):
            return None
        return BatchRecord.from_row(row)

    def list_batches(self, tenant: str, *, limit: int = 50, before: float | None = None) -> list[BatchRecord]:
        q = select(_BATCHES).where(_BATCHES.c.tenant == tenant)
        if before is not None:
            q = q.where(_BATCHES.c.created_at < before)
        q = q.order_by(_BATCHES.c.created_at.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [BatchRecord.from_row(r) for r in conn.execute(q)]

    def active_batch_ids(self) -> list[str]:
        with self.engine.connect() as conn:
            q = select(_BATCHES.c.id).where(_BATCHES.c.status.in_(ACTIVE_BATCH)).order_by(_BATCHES.c.created_at)
            return list(conn.execute(q).scalars())

    def set_status(self, batch_id: str, status: str, *, only_from: Iterable[str] | None = None,
                   **values: Any) -> bool:
        """Change a batch's status (compare-and-set on `only_from`); True when it changed."""
        q = update(BatchRow).where(BatchRow.id == batch_id)
        if only_from is not None:
            q = q.where(BatchRow.status.in_(list(only_from)))
        with self.session() as s, s.begin():
            return rowcount(s.execute(q.values(status=status, updated_at=time.time(), **values))) == 1

    def counts(self, batch_id: str) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(_ITEMS.c.status, func.count()).where(_ITEMS.c.batch_id == batch_id)
                                .group_by(_ITEMS.c.status))
            found = {status: int(n) for status, n in rows}
        return {state: found.get(state, 0) for state in ITEM_STATES}

    def succeeded_items(self, tenant: str, fingerprint: str, exclude: str | None = None,
                        ) -> dict[tuple[str, str, int | None], ItemRecord]:
        """Items that succeeded (or were already skipped as done) in this tenant's earlier batches with the
        same fingerprint, by (source, etag, size): what a re-run skips."""
        q = (select(_ITEMS).join(_BATCHES, _BATCHES.c.id == _ITEMS.c.batch_id)
             .where(_BATCHES.c.tenant == tenant, _BATCHES.c.fingerprint == fingerprint,
                    _ITEMS.c.status.in_(["succeeded", "skipped"])))
        if exclude:
            q = q.where(_BATCHES.c.id != exclude)
        with self.engine.connect() as conn:
            return {(r.source, r.etag or "", r.size): ItemRecord.from_row(r) for r in conn.execute(q)}

    # ---- items
    def items(self, batch_id: str, *, status: Sequence[str] = (), offset: int = 0,
              limit: int | None = None) -> list[ItemRecord]:
        q = select(_ITEMS).where(_ITEMS.c.batch_id == batch_id)
        if status:
            q = q.where(_ITEMS.c.status.in_(list(status)))
        q = q.order_by(_ITEMS.c.idx).offset(offset)
        if limit is not None:
            q = q.limit(limit)
        with self.engine.connect() as conn:
            return [ItemRecord.from_row(r) for r in conn.execute(q)]

    def in_flight(self, batch_id: str) -> list[InFlight]:
        jobs = JobRow.metadata.tables[JobRow.__tablename__]
        q = (select(_ITEMS, jobs.c.status.label("job_status"), jobs.c.result.label("job_result"),
                    jobs.c.error.label("job_error"), jobs.c.started_at.label("job_started_at"),
                    jobs.c.finished_at.label("job_finished_at"))
             .select_from(_ITEMS.outerjoin(jobs, jobs.c.id == _ITEMS.c.job_id))
             .where(_ITEMS.c.batch_id == batch_id, _ITEMS.c.status == "submitted").order_by(_ITEMS.c.idx))
        with self.engine.connect() as conn:
            return [InFlight(ItemRecord.from_row(r), r.job_status, r.job_result, r.job_error, r.job_started_at,
                             r.job_finished_at) for r in conn.execute(q)]

    def job_costs(self, batch_id: str) -> dict[int, float]:
        """{item index: its job's cost in USD} where the job's notes know one (rented capacity writes
        `cost_usd`, jobs/capacity.py)."""
        jobs = JobRow.metadata.tables[JobRow.__tablename__]
        q = (select(_ITEMS.c.idx, jobs.c.notes).select_from(_ITEMS.join(jobs, jobs.c.id == _ITEMS.c.job_id))
             .where(_ITEMS.c.batch_id == batch_id))
        with self.engine.connect() as conn:
            return {idx: float(notes["cost_usd"]) for idx, notes in conn.execute(q)
                    if isinstance(notes, dict) and isinstance(notes.get("cost_usd"), int | float)}

    def update_item(self, batch_id: str, idx: int, *, expect: str | None = None, **values: Any) -> bool:
        q = update(BatchItemRow).where(BatchItemRow.batch_id == batch_id, BatchItemRow.idx == idx)
        if expect is not None:
            q = q.where(BatchItemRow.status == expect)
        with self.session() as s, s.begin():
            return rowcount(s.execute(q.values(**values))) == 1

    def mark_submitted(self, batch_id: str, marks: Sequence[tuple[int, str, int]]) -> None:
        """(idx, job id, tries) of pending items whose jobs were just inserted: one transaction."""
        if not marks:
            return
        stmt = (update(_ITEMS).where(_ITEMS.c.batch_id == batch_id, _ITEMS.c.idx == bindparam("b_idx"),
                                     _ITEMS.c.status == "pending")
                .values(status="submitted", job_id=bindparam("b_job"), tries=bindparam("b_tries")))
        with self.engine.begin() as conn:
            conn.execute(stmt, [{"b_idx": i, "b_job": j, "b_tries": t} for i, j, t in marks])

    def cancel_pending(self, batch_id: str) -> int:
        now = time.time()
        with self.session() as s, s.begin():
            return rowcount(s.execute(
                update(BatchItemRow).where(BatchItemRow.batch_id == batch_id, BatchItemRow.status == "pending")
                .values(status="cancelled", finished_at=now,
                        error={"code": "cancelled", "message": "The batch was cancelled before this item ran."})))

    # ---- presets
    def put_preset(self, tenant: str, name: str, data: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        with self.session() as s, s.begin():
            row = s.get(PresetRow, (tenant, name), with_for_update=self.db.row_locks)
            if row is None:
                row = PresetRow(tenant=tenant, name=name, data=data, created_at=now, updated_at=now)
                s.add(row)
            else:
                row.data, row.updated_at = data, now
            return _preset(row)

    def get_preset(self, tenant: str, name: str) -> dict[str, Any] | None:
        with self.session() as s:
            row = s.get(PresetRow, (tenant, name))
            return _preset(row) if row is not None else None

    def list_presets(self, tenant: str) -> list[dict[str, Any]]:
        with self.session() as s:
            return [_preset(r) for r in s.scalars(select(PresetRow).where(PresetRow.tenant == tenant)
                                                   .order_by(PresetRow.name))]

    def delete_preset(self, tenant: str, name: str) -> bool:
        with self.session() as s, s.begin():
            return rowcount(s.execute(delete(PresetRow).where(PresetRow.tenant == tenant,
                                                              PresetRow.name == name))) == 1


def _preset(row: PresetRow) -> dict[str, Any]:
    return {"name": row.name, "values": row.data, "created_at": row.created_at, "updated_at": row.updated_at}


class _Obj:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
