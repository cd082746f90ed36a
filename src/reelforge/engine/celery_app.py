"""Scale-out execution on Celery: one task per operation, `reelforge.op.<op>(job_id)`, run through the same
Runner.

Worker side (and the broker layout both sides share). Delivery guarantees: acks_late +
reject_on_worker_lost + prefetch 1, and a broker visibility timeout above the longest job timeout so a long
job is not redelivered while it runs. A worker that dies without a word is detected by its expired lease
(the API's reclaimer requeues and resends the job); a duplicate delivery is harmless because claiming is
compare-and-set on the job row.

Task names: one per op (`reelforge.op.transcribe`, ...), so Flower, `celery events` and Celery exporters
count and time each op on its own; every task does the same thing (claim the job, run it). The old single
name `reelforge.run_job` stays registered, so messages queued by an older API still run.

Queues: each queue (`cpu`, `gpu`, every `op_routes` target) is bound to a direct exchange of its own name.

Priority ("higher runs first", -10..10 on the API) is mapped onto the broker's own scale, 0..9:
- Redis (kombu's transport): 0 is the *highest*; each queue is split into ten sub-lists
  (`priority_steps` 0..9) that the worker reads from highest first; our 10 -> 0, -10 -> 9.
- RabbitMQ (AMQP): 9 is the highest; queues are declared with `x-max-priority: 9`; our 10 -> 9, -10 -> 0.
  A queue declared by an older version without `x-max-priority` must be deleted once (RabbitMQ refuses to
  redeclare a queue with other arguments: PRECONDITION_FAILED).
With prefetch 1 a worker holds no reserved backlog, so a high-priority job submitted later is the next one
taken. The embedded executor claims from the job store by priority, then age.

`celery -A reelforge.engine.celery_app inspect registered` (and `celery events`, Flower) load the module's
`app` (alias `celery`): made on first access from the environment's settings, with no job control, so it
can inspect and send but refuses to start a worker (start those with `reelforge worker`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from celery import Celery
from celery.signals import worker_init, worker_shutting_down
from kombu import Exchange, Queue

from reelforge.config import Settings
from reelforge.engine import celery_resources  # noqa: F401  registers the workers' `reelforge_resources` command
from reelforge.engine.routing import CPU_QUEUE, configured_queues
from reelforge.errors import ServiceUnavailable

if TYPE_CHECKING:
    from reelforge.engine.services import Services

log = logging.getLogger("reelforge.celery")
TASK_NAME = "reelforge.run_job"  # the single task name before one per op (kept for queued messages)
TASK_PREFIX = "reelforge.op."
MAX_BROKER_PRIORITY = 9  # 0..9 on both brokers (RabbitMQ: x-max-priority; Redis: ten priority steps)
API_PRIORITY_MIN, API_PRIORITY_MAX = -10, 10


def task_name(op: str) -> str:
    """The Celery task name of an op's jobs: `reelforge.op.<op>`."""
    return f"{TASK_PREFIX}{op}"


def is_redis(broker_url: str) -> bool:
    return broker_url.split("://", 1)[0].lower() in {"redis", "rediss", "redis+socket", "sentinel"}


def broker_priority(priority: int, broker_url: str) -> int:
    """The API's priority (-10..10, higher runs first) on the broker's scale (0..9). Redis: 0 is the highest;
    AMQP: 9 is the highest. Order is kept: a higher API priority never maps to a later place."""
    p = max(API_PRIORITY_MIN, min(API_PRIORITY_MAX, int(priority)))
    step = round((p - API_PRIORITY_MIN) * MAX_BROKER_PRIORITY / (API_PRIORITY_MAX - API_PRIORITY_MIN))
    return MAX_BROKER_PRIORITY - step if is_redis(broker_url) else step


def broker_queue(name: str) -> Queue:
    """A queue bound to a direct exchange of its own name, priorities on (x-max-priority for AMQP; kombu's
    Redis transport ignores queue arguments and uses priority_steps)."""
    return Queue(name, Exchange(name, type="direct"), routing_key=name,
                 queue_arguments={"x-max-priority": MAX_BROKER_PRIORITY})


def send_job(app: Celery, job_id: str, op: str, queue: str, priority: int) -> None:
    """Send a job's task: its op's task name, its queue, its priority on the broker's scale."""
    app.send_task(task_name(op), args=[job_id], queue=queue, routing_key=queue, exchange=queue,
                  priority=broker_priority(priority, app.conf.broker_url or ""))
WORKERS_TTL_S = 10.0  # short: a count taken while workers start or stop must not stick
WORKERS_INSPECT_S = 1.0


def make_celery(settings: Settings, services_factory: Callable[[], Services] | None = None) -> Celery:
    """The Celery app. A worker passes `services_factory` (job control and storage, from its composition
    root, cli.py); the API side only sends tasks and passes none."""
    from reelforge.ops.registry import load_all, load_plugins

    broker = settings.compute.broker_url.get_secret_value()
    app = Celery("reelforge", broker=broker, set_as_current=False)
    transport: dict[str, Any] = {"visibility_timeout": int(settings.compute.max_timeout_s + 600)}
    if is_redis(broker):
        # ten sub-lists per queue; a worker's BRPOP lists every queue's step 0 first, then step 1 ..., so
        # priority holds across the queues it consumes too; round robin only orders queues within a step
        # (fair between cpu and gpu at equal priority). kombu's separator kept: messages an older version
        # left at steps 3, 6, 9 are still read.
        transport.update(priority_steps=list(range(MAX_BROKER_PRIORITY + 1)), queue_order_strategy="round_robin")
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        task_default_queue=CPU_QUEUE,
        task_default_exchange=CPU_QUEUE,
        task_default_routing_key=CPU_QUEUE,
        task_default_priority=broker_priority(0, broker),
        task_queue_max_priority=MAX_BROKER_PRIORITY,
        # cpu, gpu, every queue op_routes names and the ones this worker consumes (names are free strings)
        task_queues=[broker_queue(q) for q in configured_queues(settings)],
        broker_transport_options=transport,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        # task events (received/started/succeeded per task name): what Flower and Celery exporters read
        worker_send_task_events=settings.compute.celery_task_events,
        task_send_sent_event=settings.compute.celery_task_events,
    )
    state = _WorkerState(settings, services_factory, app)

    def shutting_down(**_: Any) -> None:
        # sent by the worker's SIGTERM/SIGINT/SIGQUIT handler, before it waits for running tasks: a
        # running job is stopped and queued again (to the broker) without spending an attempt
        state.stopping.set()

    worker_shutting_down.connect(shutting_down, weak=False)

    def refuse_without_control(sender: Any = None, **_: Any) -> None:
        if getattr(sender, "app", None) is app and state.factory is None:
            raise SystemExit("This Celery app has no job control (it is the one `celery -A "
                             "reelforge.engine.celery_app` loads for inspect/events/Flower); start workers with "
                             "`reelforge worker`.")

    worker_init.connect(refuse_without_control, weak=False)

    def run_job(job_id: str) -> str:
        return state.run(app, job_id)

    app.task(name=TASK_NAME, shared=False)(run_job)
    load_plugins(settings.service.plugins)
    for op in sorted(load_all()):
        app.task(name=task_name(op), shared=False)(_op_task(run_job, op))

    app.reelforge_state = state
    return app


def _op_task(run: Callable[[str], str], op: str) -> Callable[[str], str]:
    def task(job_id: str) -> str:
        return run(job_id)

    task.__name__ = task.__qualname__ = f"op_{op.replace('.', '_').replace('-', '_')}"
    task.__doc__ = f"Run a queued `{op}` job (claim it, run it in a job host, store its outputs)."
    return task


class _WorkerState:
    """Per worker process: services made lazily (after any fork), one job host per pool thread."""

    def __init__(self, settings: Settings, factory: Callable[[], Services] | None, app: Celery) -> None:
        self.settings = settings
        self.factory = factory
        self.app = app
        self._workers: dict[str, tuple[float, int]] = {}  # queue -> (when counted, worker threads)
        self._counting: set[str] = set()  # queues whose count is being asked for in the background
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
                on_queued = getattr(self._services.control, "on_queued", None)
                if on_queued is not None:  # a fork's children and a parent queued again go to the broker
                    on_queued(self.send)
            return self._services

    def send(self, job: Any) -> None:
        send_job(self.app, job.id, job.op, job.queue, job.priority)

    def workers_for(self, queue: str) -> int:
        """How many pool threads of the live workers consume `queue` (asked over the broker; 1 when nobody
        answers): what a chunked job plans for (docs/CHUNKED.md). Asking costs two broadcasts that each wait
        their whole WORKERS_INSPECT_S for replies, so only the first ask of a queue waits: a count older
        than WORKERS_TTL_S is still answered, and a fresh one is asked for in the background (a join run
        after a chunked render's chunks paid ~2 s here)."""
        now = time.monotonic()
        with self._lock:
            known = self._workers.get(queue)
            stale = known is not None and now - known[0] >= WORKERS_TTL_S and queue not in self._counting
            if stale:
                self._counting.add(queue)
        if known is None:
            return self._count_workers(queue)
        if stale:
            threading.Thread(target=self._count_workers, args=(queue,), name=f"count-workers-{queue}",
                             daemon=True).start()
        return known[1]

    def _count_workers(self, queue: str) -> int:
        count = 1
        try:
            inspect = self.app.control.inspect(timeout=WORKERS_INSPECT_S)
            queues = inspect.active_queues() or {}
            stats = inspect.stats() or {}
            count = sum(int((stats.get(name) or {}).get("pool", {}).get("max-concurrency") or 1)
                        for name, consumed in queues.items()
                        if any(q.get("name") == queue for q in consumed or ())) or 1
        except Exception:
            log.warning("could not count the workers of queue %s", queue, exc_info=True)
        with self._lock:
            self._workers[queue] = (time.monotonic(), count)
            self._counting.discard(queue)
        return count

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
        # only a first run of a top-level job may fork: a child, or a parent run again to join, never does
        may_fork = job.parent is None and job.resumed is None and not self.settings.compute.chunk_workers
        workers = self.workers_for(job.queue) if may_fork else 1
        status = Runner(services).run_claimed(
            job, self.host(), worker_id,
            on_requeue=lambda j: send_job(app, j.id, j.op, j.queue, j.priority),
            stopping=self.stopping.is_set, workers=workers,
        )
        return status.value


_module_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """`app` / `celery`: what `celery -A reelforge.engine.celery_app ...` loads (made on first use)."""
    global _module_app
    if name in ("app", "celery"):
        if _module_app is None:
            _module_app = make_celery(Settings())
        return _module_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
