"""The runner: one claimed job -> run it in a job host -> store outputs -> terminal state.

Both executors call this; it knows nothing about what an operation does, nor how the job was queued, nor
where the job's state lives: every read and write of it goes through JobControl (engine/control.py), whose
implementation also sends the webhooks.
"""

from __future__ import annotations

import logging
import mimetypes
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reelforge.diskspace import estimate_job_bytes, is_disk_full, require_free
from reelforge.engine.control import ClaimedJob, JobStatus
from reelforge.engine.host import HostResult, JobHost, StopReason
from reelforge.engine.metrics import JOB_DURATION, JOB_FINISHED
from reelforge.engine.services import Services
from reelforge.errors import DiskFull

log = logging.getLogger("reelforge.runner")

mimetypes.add_type("audio/mp4", ".m4a")
mimetypes.add_type("text/vtt", ".vtt")
mimetypes.add_type("application/x-subrip", ".srt")
mimetypes.add_type("text/x-ssa", ".ass")
mimetypes.add_type("video/webm", ".webm")

# A supervisor that signals every process of the service (systemd's control-group kill) can end a job's
# host or its ffmpeg a moment before this process hears of the shutdown. A failure that shows a signal (a
# host that died, an encoder that exited by a signal or with ffmpeg's 255 "received signal") is therefore
# held this long to see whether the service is stopping. Other failures answer at once.
SHUTDOWN_GRACE_S = 3.0
_EXIT_IN_MESSAGE = re.compile(r"\(exit (-?\d+)\)")
_FFMPEG_SIGNAL_EXIT = 255  # ffmpeg's own exit status after SIGINT/SIGTERM; negative: killed by that signal
DISK_FULL_WRITE_TRIES = 10
DISK_FULL_WRITE_WAIT_S = 1.0
_DISK_FULL = {"code": "disk_full", "message": "The server's disk filled up while the job ran. The job is not "
              "retried: free some space (or ask the operator to), then submit it again."}


def _shows_signal(res: HostResult) -> bool:
    """Whether a failed attempt looks like something a signal ended (see SHUTDOWN_GRACE_S)."""
    if res.outcome == "crashed":
        return True
    error = res.error or {}
    if res.outcome != "failed" or error.get("code") not in ("ffmpeg_failed", "processing_failed", "internal_error"):
        return False
    match = _EXIT_IN_MESSAGE.search(str(error.get("message", "")))  # our encoders' "(exit N)"
    if match is None:
        return error.get("code") == "internal_error"  # an unexpected exception: a pipe cut by a signal, maybe
    code = int(match.group(1))
    return code < 0 or code == _FFMPEG_SIGNAL_EXIT


def _shutdown_caused(res: HostResult, stopping: Callable[[], bool], keep_lease: Callable[[], bool]) -> bool:
    """Hold a signal-like failure up to SHUTDOWN_GRACE_S while watching for the service's shutdown. The job's
    lease is renewed meanwhile (the hold may outlast a short lease: the job would be reclaimed as lost)."""
    if not _shows_signal(res):
        return False
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    while not stopping():
        if time.monotonic() >= deadline or not keep_lease():
            return False
        time.sleep(0.1)
    return True


def _remove(workdir: Path) -> None:
    shutil.rmtree(workdir, ignore_errors=True)


MAX_STAGES = 50  # a stage timeline longer than this keeps its first entries


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
        workers: int = 1,
    ) -> JobStatus:
        """`stopping`: True once this process is shutting down. The job is then interrupted (its host
        killed) and queued again without spending an attempt; the interruption is written to the job's
        state before the host is killed, so a process killed before it could requeue the job still gets
        the attempt back when the job's lease is reclaimed. `workers`: how many workers could take this job's
        queue (an op that splits its work into child jobs plans for them; docs/CHUNKED.md)."""
        settings, control = self.settings, self.control
        started = time.monotonic()
        deadline = started + job.timeout_s
        workdir = settings.work_dir / job.id / f"attempt-{job.attempts}"

        written_at, written_stage = 0.0, None
        stages: list[list[Any]] = []  # [stage, seconds since this attempt started]: the job's stage timeline

        def on_progress(fraction: float, stage: str | None) -> None:
            nonlocal written_at, written_stage
            now = time.monotonic()
            if stage != written_stage or now - written_at >= 0.5:
                written_at, written_stage = now, stage
                control.progress(job, worker_id, fraction, stage)
            if stage and (not stages or stages[-1][0] != stage) and len(stages) < MAX_STAGES:
                stages.append([stage[:200], round(now - started, 3)])
                control.note(job, {"stages": stages})  # a few writes per job: only when the stage changes

        def on_note(values: dict[str, Any]) -> None:
            control.note(job, values)

        next_beat = [time.monotonic() + settings.compute.heartbeat_s]
        next_cancel_check = [0.0]

        def should_stop() -> StopReason | None:
            now = time.monotonic()
            if stopping():
                control.interrupted(job, worker_id)
                return "shutdown"
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
        payload["can_fork"] = bool(getattr(control, "can_fork", False)) and job.parent is None
        payload["workers"] = max(1, workers)
        try:
            self._check_disk(job)
            op_started = time.monotonic()
            res = host.run(payload, on_progress=on_progress, on_note=on_note, should_stop=should_stop)
            # the op's own time in its host; the rest of started -> finished is the worker's (claim hand-over,
            # storing outputs, finish): what a remote worker's envelope costs shows there
            res.notes["op_s"] = round(time.monotonic() - op_started, 3)
            if res.outcome != "succeeded":
                _remove(workdir)  # before any write: a full disk needs the space back for the job's state
            status = self._conclude(job, worker_id, res, on_requeue, stopping)
        except Exception as exc:  # the runner itself must never leave a job running: retry it elsewhere
            if not isinstance(exc, DiskFull):  # (the pre-check refused the job before its host saw it)
                host.kill()
            _remove(workdir)
            if is_disk_full(exc):  # the pre-check, or ENOSPC on a job-state write / a storage copy
                log.warning("job %s: disk full (%s)", job.id, exc)
                status = self._finish_disk_full(job, worker_id, exc.to_dict() if isinstance(exc, DiskFull) else None)
            else:
                log.exception("runner failed on %s", job.id)
                status = control.release(job, worker_id, {
                    "code": "internal_error", "message": f"The worker failed while running the job ({exc})."},
                    refund=stopping())
                if status == JobStatus.QUEUED and on_requeue is not None:
                    on_requeue(job)
        finally:
            _remove(workdir)
            if workdir.parent.exists() and not any(workdir.parent.iterdir()):
                shutil.rmtree(workdir.parent, ignore_errors=True)
        if status.terminal:
            JOB_DURATION.labels(op=job.op, status=status.value).observe(time.monotonic() - started)
            JOB_FINISHED.labels(op=job.op, status=status.value).inc()
        return status

    def _check_disk(self, job: ClaimedJob) -> None:
        """Refuse work that would not fit on the data disk, before a byte is written (DiskFull)."""
        settings = self.settings
        sizes = []
        for ref in job.files.values():
            try:
                sizes.append(self.services.storage.size(ref.key))
            except Exception:  # a missing input fails the job in its host, with its own code
                continue
        need = estimate_job_bytes(job.params, sizes, max_duration_s=settings.limits.max_media_duration_s)
        needs = {settings.work_dir: need}
        if settings.storage.backend == "local":  # outputs are copied into storage: about a third of the estimate
            needs[settings.storage_dir] = need // 3
        require_free(needs, settings.limits.disk_reserve_bytes, "this job")

    def _finish_disk_full(self, job: ClaimedJob, worker_id: str, error: dict[str, Any] | None) -> JobStatus:
        """Fail the job with disk_full, once: no retry would find more space. The write itself may hit the
        full disk (SQLite: "database or disk is full"), so it is retried while other work frees space."""
        for attempt in range(DISK_FULL_WRITE_TRIES):
            try:
                self.control.finish(job, worker_id, JobStatus.FAILED, error=error or _DISK_FULL)
                return JobStatus.FAILED
            except Exception as write_exc:
                if not is_disk_full(write_exc) or attempt == DISK_FULL_WRITE_TRIES - 1:
                    raise
                time.sleep(DISK_FULL_WRITE_WAIT_S)
        return JobStatus.FAILED

    def _conclude(self, job: ClaimedJob, worker_id: str, res: HostResult,
                  on_requeue: Callable[[ClaimedJob], None] | None, stopping: Callable[[], bool]) -> JobStatus:
        control = self.control
        if res.outcome != "succeeded" and (res.error or {}).get("code") == "disk_full":
            status = self._finish_disk_full(job, worker_id, res.error)
            if res.notes:
                control.note(job, res.notes)
            return status
        if res.notes:
            control.note(job, res.notes)
        if res.outcome == "succeeded" and res.fork is not None:
            shared: dict[str, Any] = {}
            if res.fork.get("outputs"):  # files for the children: stored as the parent's before they are queued
                try:
                    shared = self._store_outputs(job, res.fork["outputs"], folder="fork/")
                except Exception as exc:
                    self._delete_outputs(job)
                    if is_disk_full(exc):
                        return self._finish_disk_full(job, worker_id, None)
                    log.exception("storing the fork files of %s failed", job.id)
                    control.finish(job, worker_id, JobStatus.FAILED, error={
                        "code": "storage_failed", "message": f"The outputs could not be stored ({exc})."})
                    return JobStatus.FAILED
            children = control.fork(job, worker_id, res.fork["children"], res.fork.get("state") or {},
                                    outputs=shared)
            log.info("job %s waits for %d child jobs", job.id, len(children))
            return JobStatus.RUNNING  # until its children end (the job control settles it)
        if res.outcome == "succeeded":
            try:
                outputs = self._store_outputs(job, res.outputs)
            except Exception as exc:
                if is_disk_full(exc):
                    self._delete_outputs(job)
                    return self._finish_disk_full(job, worker_id, None)
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
        next_renew = [0.0]

        def keep_lease() -> bool:
            now = time.monotonic()
            if now < next_renew[0]:
                return True
            next_renew[0] = now + self.settings.compute.heartbeat_s
            return control.renew(job, worker_id).owned

        if res.outcome == "interrupted" or _shutdown_caused(res, stopping, keep_lease):
            # the service is stopping: the job did not fail, it was stopped; the attempt is given back
            log.info("job %s attempt %d interrupted by shutdown; queued again", job.id, job.attempts)
            status = control.release(job, worker_id, {
                "code": "worker_lost", "message": "The service shut down while the job ran."}, refund=True)
            if status == JobStatus.QUEUED and on_requeue is not None:
                on_requeue(job)
            return status
        if res.outcome in ("failed", "cancelled", "timed_out"):
            status = JobStatus(res.outcome)
            control.finish(job, worker_id, status, error=res.error)
            return status
        if res.outcome == "crashed":
            log.warning("job %s attempt %d: %s", job.id, job.attempts, (res.error or {}).get("message"))
            lost = res.error or {"code": "worker_lost", "message": "worker lost"}
            status = control.release(job, worker_id, lost)
            if status == JobStatus.QUEUED and on_requeue is not None:
                on_requeue(job)
            return status
        return JobStatus.RUNNING  # "lost": another worker owns the job now

    def _store_outputs(self, job: ClaimedJob, outputs: dict[str, str], folder: str = "") -> dict[str, Any]:
        """Each output put into storage; `folder`: as jobs/<id>/<folder><name><suffix> instead of the output's
        key (a fork's files: apart from the job's own outputs, and named by output, since two of them may be
        inputs fetched under the same file name)."""
        stored: dict[str, Any] = {}
        for name, local in outputs.items():
            path = Path(local)
            key = f"jobs/{job.id}/{folder}{name}{path.suffix}" if folder else job.output_key(name, path.name)
            ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            obj = self.services.storage.put_file(path, key, ctype)
            stored[name] = {"key": obj.key, "filename": key.rsplit("/", 1)[-1], "size": obj.size,
                            "content_type": obj.content_type, "sha256": obj.sha256}
        return stored

    def _delete_outputs(self, job: ClaimedJob) -> None:
        try:
            self.services.storage.delete_prefix(f"jobs/{job.id}/")
            for key in job.output_keys.values():
                self.services.storage.delete(key)
        except Exception:
            log.exception("could not delete outputs of cancelled job %s", job.id)
