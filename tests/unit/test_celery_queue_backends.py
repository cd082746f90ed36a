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
    op: str = "probe"


def test_agent_only_queues_are_not_sent_to_the_broker(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, executor="celery", broker_url="memory://",
                        queue_backends={"gpu": ["agent"], "cpu": ["celery", "agent"]})
    executor = CeleryExecutor(Services(settings, NoStorage(), None, NoBacklog()))  # type: ignore[arg-type]
    sent: list[tuple[str, str]] = []
    # the broker's side is not under test here (tests/integration/test_celery_*.py run the real one)
    executor.app.send_task = lambda name, args, queue, **_: sent.append((args[0], queue))  # type: ignore
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


def test_priorities_map_onto_each_brokers_scale_in_order() -> None:
    from reelforge.engine.celery_app import broker_priority

    api = [10, 5, 0, -5, -10]
    redis = [broker_priority(p, "redis://127.0.0.1:6379/0") for p in api]
    amqp = [broker_priority(p, "amqp://guest:guest@127.0.0.1//") for p in api]
    assert redis == sorted(redis) and len(set(redis)) == 5 and (redis[0], redis[-1]) == (0, 9)  # 0 is highest
    assert amqp == sorted(amqp, reverse=True) and len(set(amqp)) == 5 and (amqp[0], amqp[-1]) == (9, 0)
    assert broker_priority(99, "redis://x") == 0 and broker_priority(-99, "amqp://x") == 0


def test_one_task_per_op_and_queues_on_their_own_exchanges(tmp_path: Path) -> None:
    from reelforge.engine import celery_app

    settings = Settings(data_dir=tmp_path, executor="celery", broker_url="memory://", op_routes={"probe": "io"})
    app = celery_app.make_celery(settings)
    assert {"reelforge.op.probe", "reelforge.op.transcribe", "reelforge.run_job"} <= set(app.tasks)
    queues = {q.name: q for q in app.conf.task_queues}
    assert set(queues) >= {"cpu", "gpu", "io"}
    assert all(q.exchange.name == name and q.routing_key == name and q.queue_arguments == {"x-max-priority": 9}
               for name, q in queues.items())
    assert celery_app.celery is celery_app.app  # what `celery -A reelforge.engine.celery_app` loads
