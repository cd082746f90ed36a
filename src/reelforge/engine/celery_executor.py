"""API side of the Celery path: send a task per job (its op's task name, its priority on the broker's scale:
engine/celery_app.py); requeue jobs whose worker vanished."""

from __future__ import annotations

import logging
import threading
from typing import Any

from reelforge.engine.celery_app import make_celery, send_job
from reelforge.engine.celery_resources import celery_workers
from reelforge.engine.control import QueuedJob
from reelforge.engine.executor import Executor
from reelforge.engine.services import Services
from reelforge.errors import ServiceUnavailable

log = logging.getLogger("reelforge.celery")


class CeleryExecutor(Executor):
    name = "celery"

    def __init__(self, services: Services) -> None:
        super().__init__(services)
        self.app = make_celery(services.settings)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsent: dict[str, QueuedJob] = {}  # jobs the broker refused; sent again by the reclaimer
        self._unsent_lock = threading.Lock()

    def start(self) -> None:
        # Jobs queued before a restart may never have reached the broker: send them again (a duplicate
        # delivery is a no-op, claiming is compare-and-set).
        for job in self.services.backlog.queued():
            self._send(job)
        self._thread = threading.Thread(target=self._reclaimer, name="reelforge-reclaimer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _send(self, job: QueuedJob) -> None:
        chain = self.services.settings.compute.queue_backends.get(job.queue)
        if chain and "celery" not in chain:
            return  # agents or RunPod take this queue (engine/backends.py); the broker never sees it
        try:
            send_job(self.app, job.id, job.op, job.queue, job.priority)
        except Exception as exc:  # the job stays queued; the reclaimer/restart sends it again
            raise ServiceUnavailable(f"The job queue (broker) is unreachable: {exc}.",
                                     code="broker_unavailable") from exc

    def submit(self, job: QueuedJob) -> None:
        try:
            self._send(job)
        except ServiceUnavailable:
            with self._unsent_lock:
                self._unsent[job.id] = job
            raise

    def cancel(self, job_id: str) -> None:
        pass  # the cancel flag is in the job's state; the worker running it polls the flag every 0.5 s

    def workers(self) -> list[dict[str, Any]]:
        """The live workers as they describe themselves over the broker (engine/celery_resources.py)."""
        try:
            return celery_workers(self.app)
        except Exception as exc:
            raise ServiceUnavailable(f"The job queue (broker) is unreachable: {exc}.",
                                     code="broker_unavailable") from exc

    def health(self) -> dict[str, Any]:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=2)
        except Exception as exc:
            raise ServiceUnavailable(f"broker unreachable: {exc}") from exc
        return {"executor": self.name, "broker": "ok"}

    def _reclaimer(self) -> None:
        interval = max(1.0, self.services.settings.compute.lease_ttl_s / 2)
        while not self._stop.wait(interval):
            with self._unsent_lock:
                pending, self._unsent = list(self._unsent.values()), {}
            for job in pending:
                try:
                    self.submit(job)
                except ServiceUnavailable:
                    log.warning("broker still unreachable; %s stays queued", job.id)
            try:
                for job_id, status in self.services.backlog.reclaim_expired():
                    log.warning("reclaimed %s -> %s", job_id, status.value)
                    if status.value == "queued":
                        requeued = self.services.backlog.find(job_id)
                        if requeued is not None:
                            self._send(requeued)
            except Exception:
                log.exception("reclaim failed")
