"""The executor seam: the API hands job ids to one of these and never knows how they run.

`local`: threads in this process claim jobs through job control and run each in a job host (embedded default).
`celery`: a task per job on Redis/RabbitMQ, run by `reelforge worker` processes through the same runner.
`inline` (tests): runs a job synchronously in the calling thread.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from reelforge.engine.control import QueuedJob
from reelforge.engine.services import Services

log = logging.getLogger("reelforge.executor")


class Executor(ABC):
    name: str = "abstract"

    def __init__(self, services: Services) -> None:
        self.services = services
        on_queued = getattr(services.control, "on_queued", None)  # (test doubles may lack it)
        if on_queued is not None:
            on_queued(self._hand_on)  # a fork's children, a parent queued again: sent on like new jobs

    def _hand_on(self, job: QueuedJob) -> None:
        try:
            self.submit(job)
        except Exception:  # the job stays queued: the reclaimer or the next start sends it again
            log.exception("could not hand on %s", job.id)

    def start(self) -> None:  # noqa: B027 - optional hook
        pass

    def begin_shutdown(self) -> None:  # noqa: B027 - optional hook
        """The process was told to stop (SIGTERM): stop taking and running jobs now. Must not block."""

    def stop(self) -> None:  # noqa: B027 - optional hook
        pass

    @abstractmethod
    def submit(self, job: QueuedJob) -> None: ...

    @abstractmethod
    def cancel(self, job_id: str) -> None: ...

    def health(self) -> dict[str, Any]:
        return {"executor": self.name}


def make_executor(services: Services) -> Executor:
    if services.settings.compute.executor == "celery":
        from reelforge.engine.celery_executor import CeleryExecutor

        return CeleryExecutor(services)
    from reelforge.engine.local import LocalExecutor

    return LocalExecutor(services)
