"""JobControl over the database: the implementation of engine/control.py the service's own workers use.

Claiming resolves every uploaded-file id the job's params name to a storage reference (the tenant's own
files only), so the job host gets them in its payload and never opens the database. Webhook events are
sent from here: `job.running` on claim, `job.progress` (throttled again by the sender), and the terminal
event whenever a job ends — finished by its worker, failed after its last attempt, or reclaimed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

from reelforge.config import Settings
from reelforge.engine.control import ClaimedJob, JobStatus, Lease, QueuedJob, StorageRef
from reelforge.engine.metrics import QUEUE_WAIT
from reelforge.jobs.events import job_event, sends_progress, terminal_event
from reelforge.jobs.store import JobRecord, Stores
from reelforge.jobs.urls import output_urls
from reelforge.jobs.webhooks import WebhookSender
from reelforge.refs import file_ids_in, job_output_ref, job_refs_in
from reelforge.storage.base import Storage

log = logging.getLogger("reelforge.control")


class DatabaseControl:
    """engine.control.JobControl and JobBacklog on the job stores."""

    can_fork = True

    def __init__(self, settings: Settings, stores: Stores, storage: Storage, webhooks: WebhookSender) -> None:
        self.settings = settings
        self.jobs = stores.jobs
        self.files = stores.files
        self.storage = storage
        self.webhooks = webhooks
        # (webhook_url, webhook_format) of each job claimed here, until it ends
        self._hooks: dict[str, tuple[str | None, str | None]] = {}
        self._lock = threading.Lock()
        self._hand_on: list[Callable[[QueuedJob], None]] = []

    # ---- JobControl
    def claim(self, job_id: str, worker_id: str) -> ClaimedJob | None:
        rec = self.jobs.claim(job_id, worker_id, self.settings.compute.lease_ttl_s)
        return self._claimed(rec) if rec is not None else None

    def claim_next(self, worker_id: str, queues: Collection[str] | None = None) -> ClaimedJob | None:
        rec = self.jobs.claim_next(worker_id, self.settings.compute.lease_ttl_s, queues)
        return self._claimed(rec) if rec is not None else None

    def renew(self, job: ClaimedJob, worker_id: str) -> Lease:
        owned, cancel = self.jobs.heartbeat(job.id, worker_id, self.settings.compute.lease_ttl_s)
        if not owned:
            self._forget(job.id)  # another worker has it now; its events are that worker's to send
        return Lease(owned, cancel)

    def cancel_requested(self, job: ClaimedJob) -> bool:
        return self.jobs.cancel_requested(job.id)

    def progress(self, job: ClaimedJob, worker_id: str, fraction: float, stage: str | None) -> None:
        self.jobs.update_progress(job.id, worker_id, fraction, stage)
        self._send(job.id, job_event(job, "job.progress", status="running", progress=round(fraction, 4),
                                     stage=stage), "progress")
        if job.parent is not None:
            self.jobs.fork_progress(job.parent)

    def note(self, job: ClaimedJob, values: dict[str, Any]) -> None:
        self.jobs.add_notes(job.id, values)

    def finish(self, job: ClaimedJob, worker_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> bool:
        ok = self.jobs.finish(job.id, worker_id, status, result=result, error=error)
        if ok:
            self._terminal(job, status, result, error)
            self._child_ended(job.parent)
        else:
            self._forget(job.id)
        return ok

    def release(self, job: ClaimedJob, worker_id: str, error: dict[str, Any], *, refund: bool = False) -> JobStatus:
        status = self.jobs.release_for_retry(job.id, worker_id, error, refund=refund)
        if status.terminal:
            self._terminal_from_row(job.id)
            self._child_ended(job.parent)
        else:
            self._forget(job.id)
        return status

    # ---- fork-join (docs/CHUNKED.md)
    def on_queued(self, hand_on: Callable[[QueuedJob], None]) -> None:
        self._hand_on.append(hand_on)

    def fork(self, job: ClaimedJob, worker_id: str, children: list[dict[str, Any]],
             state: dict[str, Any], *, outputs: dict[str, Any] | None = None) -> list[str]:
        made = self.jobs.fork(job.id, worker_id, children, state, outputs)
        if made is None:
            if self.jobs.cancel_requested(job.id):  # cancelled while it planned: no children, cancelled now
                self.finish(job, worker_id, JobStatus.CANCELLED,
                            error={"code": "cancelled", "message": "The job was cancelled."})
            return []
        for child in made:
            self._queued(child)
        return [child.id for child in made]

    def _child_ended(self, parent_id: str | None) -> None:
        if parent_id is None:
            return
        parent = self.jobs.settle_parent(parent_id)
        if parent is None:
            self.jobs.fork_progress(parent_id)
        elif parent.status == JobStatus.QUEUED:
            self._queued(parent)
        else:
            self._terminal_from_row(parent_id)

    def _queued(self, job: QueuedJob) -> None:
        for hand_on in self._hand_on:
            try:
                hand_on(job)
            except Exception:  # it stays queued: a reclaimer, a restart or a polling slot takes it
                log.exception("could not hand on %s", job.id)

    def interrupted(self, job: ClaimedJob, worker_id: str) -> None:
        self.jobs.mark_interrupted(job.id, worker_id)

    # ---- JobBacklog
    def reclaim_expired(self) -> list[tuple[str, JobStatus]]:
        reclaimed = self.jobs.reclaim_expired()
        for job_id, status in reclaimed:
            if status.terminal:  # out of attempts: nobody else will ever say so
                self._terminal_from_row(job_id)
                rec = self.jobs.get_job(job_id)
                self._child_ended(rec.notes.get("parent") if rec is not None else None)
        return reclaimed

    def queued(self, limit: int = 1000) -> list[QueuedJob]:
        found = (self.jobs.get_job(job_id) for job_id in self.jobs.queued_ids(limit))
        return [job for job in found if job is not None]

    def find(self, job_id: str) -> QueuedJob | None:
        return self.jobs.get_job(job_id)

    # ---- inside
    def _claimed(self, rec: JobRecord) -> ClaimedJob:
        if rec.attempts <= 1 and rec.created_at:  # the first claim: how long it waited in its queue
            QUEUE_WAIT.labels(queue=rec.queue).observe(max(0.0, time.time() - rec.created_at))
        with self._lock:
            self._hooks[rec.id] = (rec.webhook_url, rec.notes.get("webhook_format"))
        files = self._resolve_files(rec)
        resumed = self._resumed(rec, files)
        job = ClaimedJob(id=rec.id, op=rec.op, params=rec.params, tenant=rec.tenant, queue=rec.queue,
                         priority=rec.priority, attempts=rec.attempts, max_attempts=rec.max_attempts,
                         timeout_s=rec.timeout_s, files=files, output_keys=rec.output_keys,
                         parent=rec.notes.get("parent"), resumed=resumed)
        self._send(rec.id, job_event(rec, "job.running", status="running", attempt=rec.attempts), "state")
        return job

    def readable_files(self, job_id: str) -> dict[str, StorageRef]:
        """The files a claim of this job gets in its `files` (its uploads, its parent's fork files, its
        children's outputs and its own fork files), as they are now: what a remote worker may download."""
        rec = self.jobs.get_job(job_id)
        if rec is None:
            return {}
        files = self._resolve_files(rec)
        self._resumed(rec, files)
        return files

    def _resolve_files(self, rec: JobRecord) -> dict[str, StorageRef]:
        """The tenant's uploaded files the params name (one query). An id not found is left out: the host
        then fails the job with input_not_found, as it would for any missing input. A fork's child also gets
        the files its parent stored for it (`job://<parent>/<name>`) that its params name."""
        keys = self.files.storage_keys(file_ids_in(rec.params), rec.tenant)
        files = {fid: StorageRef(key, self.storage.url(key)) for fid, key in keys.items()}
        parent_id = rec.notes.get("parent")
        if parent_id:
            named = set(job_refs_in(rec.params))
            parent = self.jobs.get_job(parent_id) if named else None
            if parent is not None:
                files.update({ref: where for ref, where in self._fork_files(parent).items() if ref in named})
        return files

    def _fork_files(self, rec: JobRecord) -> dict[str, StorageRef]:
        """The files a parent stored for its children, by their `job://<parent>/<name>` refs."""
        stored = ((rec.notes.get("fork") or {}).get("outputs")) or {}
        return {job_output_ref(rec.id, name): StorageRef(meta["key"], self.storage.url(meta["key"]))
                for name, meta in stored.items()}

    def _resumed(self, rec: JobRecord, files: dict[str, StorageRef]) -> dict[str, Any] | None:
        """A parent run again after its children: their outputs as job:// refs (added to `files`)."""
        fork = rec.notes.get("fork")
        if not fork:
            return None
        children = []
        for child_id in fork.get("children") or []:
            child = self.jobs.get_job(child_id)
            result = (child.result or {}) if child is not None else {}
            outputs = {}
            for name, meta in (result.get("outputs") or {}).items():
                ref = job_output_ref(child_id, name)
                files[ref] = StorageRef(meta["key"], self.storage.url(meta["key"]))
                outputs[name] = ref
            children.append({"id": child_id, "outputs": outputs, "data": result.get("data") or {}})
        shared = self._fork_files(rec)
        files.update(shared)
        return {"state": fork.get("state") or {}, "children": children,
                "outputs": {ref.rsplit("/", 1)[-1]: ref for ref in shared}}

    def _webhook(self, job_id: str) -> tuple[str | None, str | None]:
        """(webhook_url, webhook_format) of a job."""
        with self._lock:
            if job_id in self._hooks:
                return self._hooks[job_id]
        rec = self.jobs.get_job(job_id)
        return (rec.webhook_url, rec.notes.get("webhook_format")) if rec is not None else (None, None)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._hooks.pop(job_id, None)

    def _send(self, job_id: str, event: dict[str, Any], kind: str) -> None:
        url, fmt = self._webhook(job_id)
        if url and sends_progress(fmt):
            self.webhooks.send(job_id, url, event, kind=kind)

    def _terminal(self, job: ClaimedJob | JobRecord, status: JobStatus, result: dict[str, Any] | None,
                  error: dict[str, Any] | None) -> None:
        url, fmt = self._webhook(job.id)
        self._forget(job.id)
        if not url:
            return
        row = None
        if fmt is not None:  # a foreign format wants the row's times and owner
            row = job if isinstance(job, JobRecord) else self.jobs.get_job(job.id)
        event = terminal_event(job, status.value, result, error, webhook_format=fmt, row=row,
                               urls=output_urls(self.settings, self.storage, job.id, result) if row else None)
        self.webhooks.send(job.id, url, event, kind="state" if fmt is None else status.value)

    def _terminal_from_row(self, job_id: str) -> None:
        rec = self.jobs.get_job(job_id)
        if rec is None or not rec.status.terminal:
            self._forget(job_id)
            return
        self._terminal(rec, rec.status, rec.result, rec.error)
