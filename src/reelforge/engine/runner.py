"""The runner: one claimed job -> run it in a job host -> store outputs -> terminal state.

Both executors call this; it knows nothing about what an operation does, nor how the job was queued, nor
where the job's state lives: every read and write of it goes through JobControl (engine/control.py), whose
implementation also sends the webhooks.
"""

from __future__ import annotations

import logging
import mimetypes
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from reelforge.engine.control import ClaimedJob, JobStatus
from reelforge.engine.host import HostResult, JobHost
from reelforge.engine.metrics import JOB_DURATION, JOB_FINISHED
from reelforge.engine.services import Services

log = logging.getLogger("reelforge.runner")

mimetypes.add_type("audio/mp4", ".m4a")
mimetypes.add_type("text/vtt", ".vtt")
mimetypes.add_type("application/x-subrip", ".srt")
mimetypes.add_type("text/x-ssa", ".ass")
mimetypes.add_type("video/webm", ".webm")


class Runner:
    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        self.control = services.control

    def run_claimed(
        self,
        job: ClaimedJob,
        host: JobHost,
        worker_id: str,
        *,
        local_cancel: Callable[[str], bool] = lambda _job_id: False,
        on_requeue: Callable[[ClaimedJob], None] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> JobStatus:
        settings, control = self.settings, self.control
        started = time.monotonic()
        deadline = started + job.timeout_s
        workdir = settings.work_dir / job.id / f"attempt-{job.attempts}"

        written_at, written_stage = 0.0, None

        def on_progress(fraction: float, stage: str | None) -> None:
            nonlocal written_at, written_stage
            now = time.monotonic()
            if stage != written_stage or now - written_at >= 0.5:
                written_at, written_stage = now, stage
                control.progress(job, worker_id, fraction, stage)

        def on_note(values: dict[str, Any]) -> None:
            control.note(job, values)

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
                lease = control.renew(job, worker_id)
                if not lease.owned:
                    return "lost"
                if lease.cancel_requested:
                    return "cancel"
            elif now >= next_cancel_check[0]:
                next_cancel_check[0] = now + 0.5
                if control.cancel_requested(job):
                    return "cancel"
            return None

        payload = job.host_payload(str(workdir))  # inputs included: the host opens no database
        try:
            res = host.run(payload, on_progress=on_progress, on_note=on_note, should_stop=should_stop)
            status = self._conclude(job, worker_id, res, on_requeue, stopping())
        except Exception as exc:  # the runner itself must never leave a job running: retry it elsewhere
            log.exception("runner failed on %s", job.id)
            host.kill()
            status = control.release(job, worker_id, {
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
        return status

    def _conclude(self, job: ClaimedJob, worker_id: str, res: HostResult,
                  on_requeue: Callable[[ClaimedJob], None] | None, shutting_down: bool) -> JobStatus:
        control = self.control
        if res.notes:
            control.note(job, res.notes)
        if res.outcome == "succeeded":
            try:
                outputs = self._store_outputs(job, res.outputs)
            except Exception as exc:
                log.exception("storing outputs of %s failed", job.id)
                control.finish(job, worker_id, JobStatus.FAILED, error={
                    "code": "storage_failed", "message": f"The outputs could not be stored ({exc})."})
                return JobStatus.FAILED
            if control.cancel_requested(job):
                self._delete_outputs(job)
                control.finish(job, worker_id, JobStatus.CANCELLED,
                               error={"code": "cancelled", "message": "The job was cancelled."})
                return JobStatus.CANCELLED
            ok = control.finish(job, worker_id, JobStatus.SUCCEEDED, result={"outputs": outputs, "data": res.data})
            return JobStatus.SUCCEEDED if ok else JobStatus.RUNNING
        if res.outcome in ("failed", "cancelled", "timed_out"):
            status = JobStatus(res.outcome)
            control.finish(job, worker_id, status, error=res.error)
            return status
        if res.outcome == "crashed":
            log.warning("job %s attempt %d: %s", job.id, job.attempts, (res.error or {}).get("message"))
            lost = res.error or {"code": "worker_lost", "message": "worker lost"}
            status = control.release(job, worker_id, lost, refund=shutting_down)
            if status == JobStatus.QUEUED and on_requeue is not None:
                on_requeue(job)
            return status
        return JobStatus.RUNNING  # "lost": another worker owns the job now

    def _store_outputs(self, job: ClaimedJob, outputs: dict[str, str]) -> dict[str, Any]:
        stored: dict[str, Any] = {}
        for name, local in outputs.items():
            path = Path(local)
            key = f"jobs/{job.id}/{path.name}"
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            obj = self.services.storage.put_file(path, key, ctype)
            stored[name] = {"key": obj.key, "filename": path.name, "size": obj.size,
                            "content_type": obj.content_type, "sha256": obj.sha256}
        return stored

    def _delete_outputs(self, job: ClaimedJob) -> None:
        try:
            self.services.storage.delete_prefix(f"jobs/{job.id}/")
        except Exception:
            log.exception("could not delete outputs of cancelled job %s", job.id)
