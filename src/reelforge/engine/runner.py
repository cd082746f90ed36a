"""The runner: one claimed job -> run it in a job host -> store outputs -> terminal state -> webhooks.

Both executors call this; it knows nothing about what an operation does, nor how the job was queued.
"""

from __future__ import annotations

import logging
import mimetypes
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from reelforge.engine.host import HostResult, JobHost
from reelforge.engine.metrics import JOB_DURATION, JOB_FINISHED
from reelforge.engine.services import Services
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord

log = logging.getLogger("reelforge.runner")

mimetypes.add_type("audio/mp4", ".m4a")
mimetypes.add_type("text/vtt", ".vtt")
mimetypes.add_type("application/x-subrip", ".srt")
mimetypes.add_type("text/x-ssa", ".ass")
mimetypes.add_type("video/webm", ".webm")


def job_event(job: JobRecord, event: str, **extra: Any) -> dict[str, Any]:
    return {"type": event, "job_id": job.id, "op": job.op, "at": time.time(), **extra}


class Runner:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.store = services.stores.jobs

    def _webhook(self, job: JobRecord, event: dict[str, Any], kind: str) -> None:
        if job.webhook_url:
            self.services.webhooks.send(job.id, job.webhook_url, event, kind=kind)

    def run_claimed(
        self,
        job: JobRecord,
        host: JobHost,
        worker_id: str,
        *,
        local_cancel: Callable[[str], bool] = lambda _job_id: False,
        on_requeue: Callable[[JobRecord], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> JobStatus:
        settings, store = self.settings, self.store
        started = time.monotonic()
        deadline = started + job.timeout_s
        workdir = settings.work_dir / job.id / f"attempt-{job.attempts}"
        self._webhook(job, job_event(job, "job.running", attempt=job.attempts), "state")

        written_at, written_stage = 0.0, None

        def on_progress(fraction: float, stage: str | None) -> None:
            nonlocal written_at, written_stage
            now = time.monotonic()
            if stage != written_stage or now - written_at >= 0.5:
                written_at, written_stage = now, stage
                store.update_progress(job.id, worker_id, fraction, stage)
                self._webhook(job, job_event(job, "job.progress", progress=round(fraction, 4), stage=stage),
                              "progress")

        def on_note(values: dict[str, Any]) -> None:
            store.add_notes(job.id, values)

        next_beat = [time.monotonic() + settings.compute.heartbeat_s]
        next_cancel_check = [0.0]

        def should_stop() -> Literal["cancel", "timeout", "lost"] | None:
            now = time.monotonic()
            if local_cancel(job.id):
                return "cancel"
            if now >= deadline:
                return "timeout"
            if now >= next_beat[0]:
                next_beat[0] = now + settings.compute.heartbeat_s
                owner, cancel = store.heartbeat(job.id, worker_id, settings.compute.lease_ttl_s)
                if not owner:
                    return "lost"
                if cancel:
                    return "cancel"
            elif now >= next_cancel_check[0]:
                next_cancel_check[0] = now + 0.5
                if store.cancel_requested(job.id):
                    return "cancel"
            return None

        payload = {"job_id": job.id, "op": job.op, "params": job.params, "tenant": job.tenant,
                   "workdir": str(workdir), "attempt": job.attempts}
        try:
            res = host.run(payload, on_progress=on_progress, on_note=on_note, should_stop=should_stop)
            status = self._conclude(job, worker_id, res, on_requeue, stopping())
        except Exception as exc:  # the runner itself must never leave a job running: retry it elsewhere
            log.exception("runner failed on %s", job.id)
            host.kill()
            status = store.release_for_retry(job.id, worker_id, {
                "code": "internal_error", "message": f"The worker failed while running the job ({exc})."})
            if status == JobStatus.QUEUED and on_requeue is not None:
                on_requeue(job)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if workdir.parent.exists() and not any(workdir.parent.iterdir()):
                shutil.rmtree(workdir.parent, ignore_errors=True)
        if status.terminal:
            JOB_DURATION.labels(op=job.op, status=status.value).observe(time.monotonic() - started)
            JOB_FINISHED.labels(op=job.op, status=status.value).inc()
            final = store.get_job(job.id)
            if final is not None:
                self._webhook(final, job_event(final, f"job.{status.value}", status=status.value,
                                               result=final.result, error=final.error), "state")
        return status

    def _conclude(self, job: JobRecord, worker_id: str, res: HostResult,
                  on_requeue: Callable[[JobRecord], None] | None, shutting_down: bool) -> JobStatus:
        store = self.store
        if res.notes:
            store.add_notes(job.id, res.notes)
        if res.outcome == "succeeded":
            try:
                outputs = self._store_outputs(job, res.outputs)
            except Exception as exc:
                log.exception("storing outputs of %s failed", job.id)
                store.finish(job.id, worker_id, JobStatus.FAILED, error={
                    "code": "storage_failed", "message": f"The outputs could not be stored ({exc})."})
                return JobStatus.FAILED
            if store.cancel_requested(job.id):
                self._delete_outputs(job)
                store.finish(job.id, worker_id, JobStatus.CANCELLED,
                             error={"code": "cancelled", "message": "The job was cancelled."})
                return JobStatus.CANCELLED
            ok = store.finish(job.id, worker_id, JobStatus.SUCCEEDED, result={"outputs": outputs, "data": res.data})
            return JobStatus.SUCCEEDED if ok else JobStatus.RUNNING
        if res.outcome in ("failed", "cancelled", "timed_out"):
            status = JobStatus(res.outcome)
            store.finish(job.id, worker_id, status, error=res.error)
            return status
        if res.outcome == "crashed":
            log.warning("job %s attempt %d: %s", job.id, job.attempts, (res.error or {}).get("message"))
            status = store.release_for_retry(job.id, worker_id, res.error or {"code": "worker_lost",
                                                                                "message": "worker lost"},
                                             refund=shutting_down)
            if status == JobStatus.QUEUED and on_requeue is not None:
                on_requeue(job)
            return status
        return JobStatus.RUNNING  # "lost": another worker owns the job now

    def _store_outputs(self, job: JobRecord, outputs: dict[str, str]) -> dict[str, Any]:
        stored: dict[str, Any] = {}
        for name, local in outputs.items():
            path = Path(local)
            key = f"jobs/{job.id}/{path.name}"
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            obj = self.services.storage.put_file(path, key, ctype)
            stored[name] = {"key": obj.key, "filename": path.name, "size": obj.size,
                            "content_type": obj.content_type, "sha256": obj.sha256}
        return stored

    def _delete_outputs(self, job: JobRecord) -> None:
        try:
            self.services.storage.delete_prefix(f"jobs/{job.id}/")
        except Exception:
            log.exception("could not delete outputs of cancelled job %s", job.id)
