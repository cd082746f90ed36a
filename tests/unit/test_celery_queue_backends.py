"""With the Celery executor, a queue that compute.queue_backends gives to agents only never reaches the broker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from reelforge.config import Settings
from reelforge.engine.celery_executor import CeleryExecutor
from reelforge.engine.control_http import NoBacklog
from reelforge.engine.services import Services
from reelforge.errors import ServiceUnavailable
from reelforge.storage.url_files import NoStorage


@dataclass
class Job:
    id: str
    queue: str
    priority: int = 0


def test_agent_only_queues_are_not_sent_to_the_broker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, executor="celery", broker_url="memory://",
                        queue_backends={"gpu": ["agent"], "cpu": ["celery", "agent"]})
    executor = CeleryExecutor(Services(settings, NoStorage(), None, NoBacklog()))  # type: ignore[arg-type]
    sent: list[tuple[str, str]] = []
    # the broker's side is not under test here (tests/integration/test_celery_*.py run the real one)
    executor.app.send_task = lambda name, args, queue, priority: sent.append((args[0], queue))  # type: ignore
    executor.submit(Job("job_gpu", "gpu"))
    executor.submit(Job("job_cpu", "cpu"))
    executor.submit(Job("job_other", "render"))
    assert sent == [("job_cpu", "cpu"), ("job_other", "render")]


def test_an_unreachable_broker_is_still_reported_for_broker_queues(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, executor="celery", queue_backends={"gpu": ["agent"]})
    executor = CeleryExecutor(Services(settings, NoStorage(), None, NoBacklog()))  # type: ignore[arg-type]

    def refuse(*_a: object, **_k: object) -> None:
        raise ConnectionError("refused")

    executor.app.send_task = refuse  # type: ignore[method-assign]
    executor.submit(Job("job_gpu", "gpu"))  # not the broker's: nothing to refuse
    with pytest.raises(ServiceUnavailable):
        executor.submit(Job("job_cpu", "cpu"))
