"""Which backend takes a queue's jobs: `compute.queue_backends` maps a queue to an ordered list, e.g.
{"gpu": ["agent", "local"]}. The first backend that is available takes the job:

    agent   remote `reelforge agent`s pull jobs over HTTPS (api/routes_agents.py); available while one has
            asked for this queue within `compute.agent_alive_s`
    runpod  a RunPod serverless endpoint (jobs/runpod_backend.py); available when configured and not
            marked down after a failure (unreachable, key refused, 5xx beyond the retries)
    modal   a deployed Modal function (jobs/modal_backend.py); the same rules
    local   the embedded executor's slots (engine/local.py)
    celery  the broker's workers

A queue not in the table is the configured executor's, as before. With the Celery executor, a queue whose
list does not name "celery" is never sent to the broker (engine/celery_executor.py). So with the local executor and
gpu = ["agent", "local"], the local slots leave gpu jobs to the agents while any agent is polling, and take
them when none has been seen for a while; with gpu = ["agent"], never.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection

from reelforge.config import Settings
from reelforge.engine.routing import configured_queues

SHARED_REFRESH_S = 2.0


class AgentPresence:
    """When an agent last asked for each queue. Agents long-poll one API process; `shared` (set by the
    composition root from the agent store) tells what agents polled any process of this deployment, so a
    second API process's local slots leave agent queues alone too."""

    def __init__(self, shared: Callable[[float], Collection[str]] | None = None) -> None:
        self._seen: dict[str, float] = {}
        self._down: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self.shared = shared  # within_s -> queues some agent polled within that many seconds
        self._shared_at = -1e9
        self._shared_queues: frozenset[str] = frozenset()

    def seen(self, queues: Collection[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for q in queues:
                self._seen[q] = now

    def alive(self, queue: str, within_s: float) -> bool:
        with self._lock:
            at = self._seen.get(queue)
        if at is not None and time.monotonic() - at <= within_s:
            return True
        return queue in self._elsewhere(within_s)

    def _elsewhere(self, within_s: float) -> frozenset[str]:
        if self.shared is None:
            return frozenset()
        now = time.monotonic()
        if now - self._shared_at >= SHARED_REFRESH_S:  # a cached answer: this runs on every claim
            try:
                queues = frozenset(self.shared(within_s))
            except Exception:
                queues = self._shared_queues  # the store is unreachable: keep what was known
            with self._lock:
                self._shared_queues, self._shared_at = queues, now
        return self._shared_queues

    def mark_down(self, backend: str, for_s: float, why: str) -> None:
        """A remote backend failed (unreachable, refused the key, 5xx): skip it for a while."""
        with self._lock:
            self._down[backend] = (time.monotonic() + for_s, why)

    def down(self, backend: str) -> str | None:
        """Why this backend is being skipped now, or None."""
        with self._lock:
            until, why = self._down.get(backend, (0.0, ""))
        return why if time.monotonic() < until else None


REMOTE_FUNCTIONS = ("runpod", "modal")  # backends that run one provider call per job (jobs/remote_backend.py)


def remote_configured(settings: Settings, backend: str) -> bool:
    conf = settings.compute
    return bool(conf.runpod_endpoint_id if backend == "runpod" else conf.modal_app if backend == "modal" else False)


def backend_for(settings: Settings, queue: str, presence: AgentPresence) -> str:
    """The backend that should take this queue's jobs right now."""
    chain = settings.compute.queue_backends.get(queue)
    if not chain:
        return settings.compute.executor
    for backend in chain:
        if backend == "agent" and not presence.alive(queue, settings.compute.agent_alive_s):
            continue
        if backend in REMOTE_FUNCTIONS and (not remote_configured(settings, backend) or presence.down(backend)):
            continue
        return backend
    return chain[-1]  # none available: the last one's (agents still get them when they come back)


def local_queues(settings: Settings, presence: AgentPresence) -> list[str] | None:
    """The queues the embedded executor's slots claim from; None: every queue (no table)."""
    if not settings.compute.queue_backends:
        return None
    names = [*configured_queues(settings), *settings.compute.queue_backends]
    return [q for q in dict.fromkeys(names) if backend_for(settings, q, presence) == "local"]
