"""A Celery worker's count of the workers on a queue (what a chunked job plans for): asked over the broker
once, then refreshed in the background, so a job claimed after the count went stale does not wait for the
broadcast's replies (two inspects of WORKERS_INSPECT_S each)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from reelforge.config import Settings
from reelforge.engine import celery_app
from reelforge.engine.celery_app import _WorkerState, make_celery


class _Inspect:
    """What the broker's broadcast would answer: `threads` pool threads on one worker of queue `cpu`.
    (The broker itself is not under test: tests/integration/test_chunked_celery.py counts real workers.)"""

    def __init__(self, owner: _Broker) -> None:
        self.owner = owner

    def active_queues(self) -> dict[str, Any]:
        self.owner.asks += 1
        self.owner.release.wait(5)
        return {"w1@host": [{"name": "cpu"}]}

    def stats(self) -> dict[str, Any]:
        return {"w1@host": {"pool": {"max-concurrency": self.owner.threads}}}


class _Broker:
    def __init__(self) -> None:
        self.threads = 2
        self.asks = 0
        self.release = threading.Event()
        self.release.set()


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[_WorkerState, _Broker]:
    app = make_celery(Settings(data_dir=tmp_path, executor="celery", broker_url="memory://"))
    broker = _Broker()
    monkeypatch.setattr(app.control, "inspect", lambda timeout: _Inspect(broker))
    return _WorkerState(Settings(data_dir=tmp_path), None, app), broker


def test_the_first_count_is_asked_then_a_stale_one_is_answered_at_once_and_refreshed_behind(
        state: tuple[_WorkerState, _Broker], monkeypatch: pytest.MonkeyPatch) -> None:
    worker, broker = state
    assert worker.workers_for("cpu") == 2 and broker.asks == 1
    assert worker.workers_for("cpu") == 2 and broker.asks == 1  # fresh: not asked again

    monkeypatch.setattr(celery_app, "WORKERS_TTL_S", 0.0)  # every count is stale from now on
    broker.threads = 4
    broker.release.clear()  # the broadcast's replies take their time
    started = time.monotonic()
    assert worker.workers_for("cpu") == 2  # the stale count, without waiting for the replies
    assert time.monotonic() - started < 1.0
    _wait_for(lambda: broker.asks == 2)  # the refresh has asked and waits for its replies
    assert worker.workers_for("cpu") == 2
    time.sleep(0.1)
    assert broker.asks == 2  # one refresh at a time: no second broadcast while one is out
    broker.release.set()
    _wait_for(lambda: worker.workers_for("cpu") == 4)  # the refreshed count is answered once it lands


def _wait_for(check: Any, limit_s: float = 5.0) -> None:
    deadline = time.monotonic() + limit_s  # a thread start and a lock: milliseconds; 5 s is ample
    while not check():
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.01)
