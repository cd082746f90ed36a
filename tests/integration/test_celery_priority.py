"""Priority and the Celery tooling for real, on both brokers: Redis (127.0.0.1:6379) and RabbitMQ
(guest@127.0.0.1:5672), jobs in PostgreSQL.

"Higher runs first": jobs of priority -5, 0, 5, 10 are submitted in that order (oldest first, so FIFO would
be exactly wrong) with no worker running; a worker with concurrency 1 then starts them 10, 5, 0, -5.
On Redis, `celery -A reelforge.engine.celery_app inspect registered` and Flower's API see the worker and
its one task per op, and the worker answers `inspect reelforge_resources` (its queues, pool, CPU and GPUs).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime

import httpx
import pytest
import redis

from tests.integration.pg import temp_database
from tests.integration.service import Service, free_port, stop_group, wait_job
from tests.integration.test_celery_postgres import worker
from tests.metrics_check import check_exposition

pytestmark = pytest.mark.services
REDIS_DB = 7  # test_celery_postgres uses 11, test_celery_routing 13
QUEUE = "hooks-prio"  # this module's own queue (and exchange) on both brokers
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672//"
WORDS = [{"text": "Hello", "start": 0.0, "end": 0.4}, {"text": "world", "start": 0.45, "end": 0.9}]


def _clear(broker: str) -> None:
    if broker.startswith("redis"):
        redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
        return
    from kombu import Connection

    with Connection(AMQP_URL) as conn:  # a queue left by an earlier run (or declared without x-max-priority)
        channel = conn.channel()
        for name in (QUEUE, f"{QUEUE}.dead"):
            with contextlib.suppress(Exception):
                channel.queue_delete(name)
        with contextlib.suppress(Exception):
            channel.exchange_delete(QUEUE)


@pytest.fixture(scope="module", params=["redis", "amqp"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    broker = f"redis://127.0.0.1:6379/{REDIS_DB}" if request.param == "redis" else AMQP_URL
    _clear(broker)
    with temp_database() as db_url:
        svc = Service(tmp_path_factory.mktemp(f"prio-{request.param}") / "data", REELFORGE_EXECUTOR="celery",
                      REELFORGE_DATABASE_URL=db_url, REELFORGE_BROKER_URL=broker,
                      REELFORGE_OP_ROUTES=json.dumps({"subtitles": QUEUE}), REELFORGE_WORKER_QUEUES=QUEUE)
        svc.start()
        yield svc
        svc.stop()
    _clear(broker)


def test_higher_priority_runs_first(stack: Service):
    with stack.client() as c:
        jobs = {}
        for priority in (-5, 0, 5, 10):
            resp = c.post("/v1/jobs", json={"op": "subtitles", "params": {"words": WORDS}, "priority": priority})
            assert resp.status_code == 202, resp.text
            assert resp.json()["queue"] == QUEUE
            jobs[priority] = resp.json()["id"]
        time.sleep(0.5)  # every task is on the broker before any worker exists
        with worker(stack, queues=QUEUE):
            done = {p: wait_job(c, job_id, timeout=120) for p, job_id in jobs.items()}
    assert all(j["status"] == "succeeded" for j in done.values()), done
    started = sorted(done, key=lambda p: datetime.fromisoformat(done[p]["started_at"]))
    assert started == [10, 5, 0, -5], {p: done[p]["started_at"] for p in done}


@contextlib.contextmanager
def flower(svc: Service, port: int) -> Iterator[subprocess.Popen[bytes]]:
    log = (svc.data_dir.parent / "flower.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "celery", "-A", "reelforge.engine.celery_app", "flower",
                             "--address=127.0.0.1", f"--port={port}"],
                            env={**svc.env, "FLOWER_UNAUTHENTICATED_API": "true"}, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield proc
    finally:
        stop_group(proc, 10)


def test_celery_inspect_flower_and_the_workers_metrics(stack: Service, tmp_path):
    if "amqp" in stack.env["REELFORGE_BROKER_URL"]:
        pytest.skip("the celery tools are checked once, on Redis")
    metrics_port = free_port()
    multiproc = tmp_path / "prom"  # prometheus_client's multiprocess mode: the worker's metrics in files there
    multiproc.mkdir()
    with stack.client() as c, worker(stack, QUEUE, f"--metrics-port={metrics_port}",
                                     env={"PROMETHEUS_MULTIPROC_DIR": str(multiproc)}):
        job = c.post("/v1/jobs", json={"op": "subtitles", "params": {"words": WORDS}}).json()
        assert wait_job(c, job["id"], timeout=120)["status"] == "succeeded"  # the worker is up

        # the worker's own /metrics: what it ran (durations vanish in Celery mode otherwise), valid per promtool
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
        samples = check_exposition(text)
        assert ({"op": "subtitles", "status": "succeeded"}, 1.0) in samples["reelforge_jobs_finished_total"]
        assert any(lb.get("op") == "subtitles" for lb, _ in samples["reelforge_job_duration_seconds_count"])
        assert ({"queue": QUEUE}, 1.0) in samples["reelforge_queue_wait_seconds_count"]
        api = check_exposition(c.get("/metrics").text)
        assert ({"queue": QUEUE}, 0.0) in api["reelforge_queue_depth"]
        inspect = subprocess.run([sys.executable, "-m", "celery", "-A", "reelforge.engine.celery_app", "inspect",
                                  "registered", "--json", "--timeout=5"], env=stack.env, capture_output=True,
                                 text=True, timeout=60)
        assert inspect.returncode == 0, inspect.stderr + inspect.stdout
        [(name, registered)] = json.loads(inspect.stdout.strip().splitlines()[-1]).items()
        assert {"reelforge.op.subtitles", "reelforge.op.probe", "reelforge.op.transcribe"} <= set(registered)
        # the worker's own inspect command: its queues, pool and this machine (what the dashboard shows)
        res = subprocess.run([sys.executable, "-m", "celery", "-A", "reelforge.engine.celery_app", "inspect",
                              "reelforge_resources", "--json", "--timeout=5"], env=stack.env, capture_output=True,
                             text=True, timeout=60)
        assert res.returncode == 0, res.stderr + res.stdout
        reply = json.loads(res.stdout.strip().splitlines()[-1])[name]
        assert reply["queues"] == [QUEUE] and reply["concurrency"] == 1 and reply["cpu_cores"] == os.cpu_count()
        assert isinstance(reply["gpus"], list)

        port = free_port()
        with flower(stack, port):
            deadline = time.monotonic() + 60
            workers: dict = {}
            while time.monotonic() < deadline and name not in workers:
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    resp = httpx.get(f"http://127.0.0.1:{port}/api/workers", params={"refresh": "1"}, timeout=10)
                    if resp.status_code == 200:
                        workers = resp.json()
                time.sleep(0.5)
            assert name in workers, workers
            assert "reelforge.op.subtitles" in workers[name]["registered"]
            assert {q["name"] for q in workers[name]["active_queues"]} == {QUEUE}
            [queue] = workers[name]["active_queues"]
            assert queue["exchange"]["name"] == QUEUE  # its own exchange, not cpu's
            # task events: Flower saw the job's task under its op's name
            second = c.post("/v1/jobs", json={"op": "subtitles", "params": {"words": WORDS}}).json()
            assert wait_job(c, second["id"], timeout=60)["status"] == "succeeded"
            deadline = time.monotonic() + 30
            names: set[str] = set()
            while time.monotonic() < deadline and "reelforge.op.subtitles" not in names:
                tasks = httpx.get(f"http://127.0.0.1:{port}/api/tasks", timeout=10).json()
                names = {t.get("name") for t in tasks.values()}
                time.sleep(0.5)
            assert "reelforge.op.subtitles" in names, tasks
