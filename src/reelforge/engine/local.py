"""The embedded executor: N slots, each a thread that claims queued jobs and runs them in its own job host.

Leases make it crash-safe: a slot renews its job's lease while it runs; on start-up and then every few
seconds, jobs whose lease ran out (their process died) are requeued or failed (`max_attempts`).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
import uuid
from typing import Any

from reelforge.engine.backends import local_queues
from reelforge.engine.control import ClaimedJob, QueuedJob
from reelforge.engine.executor import Executor
from reelforge.engine.host import JobHost
from reelforge.engine.runner import Runner
from reelforge.engine.services import Services

log = logging.getLogger("reelforge.local")
STOP_WAIT_S = 20.0


class LocalExecutor(Executor):
    name = "local"

    def __init__(self, services: Services, *, workers: int | None = None) -> None:
        super().__init__(services)
        self.workers = workers or services.settings.compute.workers
        self.runner = Runner(services)
        self._wake = threading.Condition()
        self._pending_wake = 0
        self._stop = threading.Event()
        self._cancels: set[str] = set()
        self._cancel_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._hosts: list[JobHost] = []
        self._busy: dict[int, str] = {}
        self.worker_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def start(self) -> None:
        self._clean_leftovers()
        self._reclaim()
        for i in range(self.workers):
            host = JobHost(self.services.settings)
            self._hosts.append(host)
            t = threading.Thread(target=self._slot, args=(i, host), name=f"reelforge-slot-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        t = threading.Thread(target=self._reclaimer, name="reelforge-reclaimer", daemon=True)
        t.start()
        self._threads.append(t)

    def _clean_leftovers(self) -> None:
        """Work folders and storage staging files left by a process that died (this executor owns
        data_dir's work folder: nothing of it is running before start)."""
        work = self.services.settings.work_dir
        if work.is_dir():
            for entry in work.glob("job_*"):
                shutil.rmtree(entry, ignore_errors=True)
        purge = getattr(self.services.storage, "purge_partials", None)
        if purge is not None:
            try:
                purge()
            except Exception:
                log.exception("could not purge partial storage objects")

    def begin_shutdown(self) -> None:
        """Called as soon as the process is told to stop (the SIGTERM handler), before the HTTP server
        drains its connections: each slot stops its job (host killed, job queued again, attempt given
        back) and claims nothing more. Returns at once."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()

    def stop(self) -> None:
        self.begin_shutdown()
        # the slots requeue their own jobs (a poll interval, a kill, two writes); a slot still stuck after
        # that has its host killed here, and its job keeps the shutdown mark for the next start's reclaim
        deadline = time.monotonic() + STOP_WAIT_S
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        for host in self._hosts:
            host.close()

    def submit(self, job: QueuedJob) -> None:
        self._wake_one()

    def _wake_one(self) -> None:
        with self._wake:
            self._pending_wake += 1
            self._wake.notify()

    def cancel(self, job_id: str) -> None:
        with self._cancel_lock:
            self._cancels.add(job_id)

    def _is_cancelled(self, job_id: str) -> bool:
        with self._cancel_lock:
            return job_id in self._cancels

    def health(self) -> dict[str, Any]:
        alive = sum(1 for t in self._threads if t.is_alive())
        return {"executor": self.name, "slots": self.workers, "threads_alive": alive,
                "busy": len(self._busy)}

    def _slot(self, index: int, host: JobHost) -> None:
        worker_id = f"{self.worker_prefix}:{index}"
        while not self._stop.is_set():
            try:
                queues = local_queues(self.services.settings, self.services.presence)
                job = self.services.control.claim_next(worker_id, queues) if queues != [] else None
            except Exception:
                log.exception("claim failed")
                job = None
            if job is None:
                with self._wake:
                    if self._pending_wake == 0:
                        self._wake.wait(timeout=1.0)
                    self._pending_wake = max(0, self._pending_wake - 1)
                continue
            self._busy[index] = job.id
            if self.services.settings.compute.queue_backends:  # several backends: say which one ran it
                try:
                    self.services.control.note(job, {"backend": "local", "worker": worker_id})
                except Exception:
                    log.exception("could not note the backend of %s", job.id)
            if self._stop.is_set():  # claimed while the shutdown began: give it back untouched
                self._give_back(job, worker_id)
                self._busy.pop(index, None)
                break
            try:
                self.runner.run_claimed(job, host, worker_id, local_cancel=self._is_cancelled,
                                        on_requeue=self.submit, stopping=self._stop.is_set)
            except Exception:
                log.exception("slot %d failed on %s", index, job.id)
            finally:
                self._busy.pop(index, None)
                with self._cancel_lock:
                    self._cancels.discard(job.id)

    def _give_back(self, job: ClaimedJob, worker_id: str) -> None:
        try:
            self.services.control.release(job, worker_id, {
                "code": "worker_lost", "message": "The service shut down as the job started."}, refund=True)
        except Exception:
            log.exception("could not requeue %s at shutdown (the next start's reclaim will)", job.id)

    def _reclaim(self) -> None:
        try:
            for job_id, status in self.services.backlog.reclaim_expired():
                log.warning("reclaimed %s -> %s", job_id, status.value)
                self._wake_one()
        except Exception:
            log.exception("reclaim failed")

    def _reclaimer(self) -> None:
        interval = max(1.0, self.services.settings.compute.lease_ttl_s / 2)
        while not self._stop.wait(interval):
            self._reclaim()
