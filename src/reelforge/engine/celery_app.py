"""Scale-out execution on Celery: one task, `reelforge.run_job(job_id)`, run through the same Runner.

Worker side only. Delivery guarantees: acks_late + reject_on_worker_lost + prefetch 1, and a broker
visibility timeout above the longest job timeout so a long job is not redelivered while it runs. A worker
that dies without a word is detected by its expired lease (the API's reclaimer requeues and resends the
job); a duplicate delivery is harmless because claiming is compare-and-set on the job row.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_shutting_down
from kombu import Queue

from reelforge.config import Settings
from reelforge.engine.routing import CPU_QUEUE, configured_queues
from reelforge.errors import ServiceUnavailable

if TYPE_CHECKING:
    from reelforge.engine.services import Services

log = logging.getLogger("reelforge.celery")
TASK_NAME = "reelforge.run_job"


def make_celery(settings: Settings, services_factory: Callable[[], Services] | None = None) -> Celery:
    """The Celery app. A worker passes `services_factory` (job control and storage, from its composition
    root, cli.py); the API side only sends tasks and passes none."""
    app = Celery("reelforge", broker=settings.compute.broker_url.get_secret_value(), set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=CPU_QUEUE,
        # cpu, gpu, every queue op_routes names and the ones this worker consumes (names are free strings)
        task_queues=[Queue(q) for q in configured_queues(settings)],
        broker_transport_options={"visibility_timeout": int(settings.compute.max_timeout_s + 600)},
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
    )
    state = _WorkerState(settings, services_factory)

    def shutting_down(**_: Any) -> None:
        # sent by the worker's SIGTERM/SIGINT/SIGQUIT handler, before it waits for running tasks: a
        # running job is stopped and queued again (to the broker) without spending an attempt
        state.stopping.set()

    worker_shutting_down.connect(shutting_down, weak=False)

    @app.task(name=TASK_NAME)
    def run_job(job_id: str) -> str:
        return state.run(app, job_id)

    app.reelforge_state = state
    return app


class _WorkerState:
    """Per worker process: services made lazily (after any fork), one job host per pool thread."""

    def __init__(self, settings: Settings, factory: Callable[[], Services] | None) -> None:
        self.settings = settings
        self.factory = factory
        self._lock = threading.Lock()
        self._services: Services | None = None
        self._local = threading.local()
        self.stopping = threading.Event()
        self.worker_prefix = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def services(self) -> Services:
        with self._lock:
            if self._services is None:
                if self.factory is None:
                    raise ServiceUnavailable("This Celery app was made without job control; start workers with "
                                             "`reelforge worker`.", code="no_job_control")
                self._services = self.factory()
            return self._services

    def host(self) -> Any:
        host = getattr(self._local, "host", None)
        if host is None:
            from reelforge.engine.host import JobHost

            host = JobHost(self.settings)
            self._local.host = host
        return host

    def run(self, app: Celery, job_id: str) -> str:
        from reelforge.engine.runner import Runner

        services = self.services()
        worker_id = f"{self.worker_prefix}:{threading.get_ident()}"
        job = services.control.claim(job_id, worker_id)
        if job is None:
            return "skipped"  # already done, cancelled, or owned by a live worker
        status = Runner(services).run_claimed(
            job, self.host(), worker_id,
            on_requeue=lambda j: app.send_task(TASK_NAME, args=[j.id], queue=j.queue),
            stopping=self.stopping.is_set,
        )
        return status.value
