"""Priority on the embedded executor: with its one slot busy, jobs of priority -5, 0, 5, 10 submitted in that
order (FIFO would be exactly wrong) start 10, 5, 0, -5 (the slot claims from the job store by priority,
then age)."""

from __future__ import annotations

from datetime import datetime

from tests.integration.service import Service, wait_job

WORDS = [{"text": "Hello", "start": 0.0, "end": 0.4}, {"text": "world", "start": 0.45, "end": 0.9}]


def test_higher_priority_runs_first_on_the_embedded_executor(tmp_path):
    svc = Service(tmp_path / "data", REELFORGE_WORKERS="1").start()
    try:
        with svc.client() as c:
            busy = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 2, "marker": "prio"}}).json()
            wait_job(c, busy["id"], timeout=60, until={"running"})  # the only slot is taken
            jobs = {p: c.post("/v1/jobs", json={"op": "subtitles", "params": {"words": WORDS},
                                                "priority": p}).json()["id"] for p in (-5, 0, 5, 10)}
            done = {p: wait_job(c, job_id, timeout=120) for p, job_id in jobs.items()}
    finally:
        svc.stop()
    assert all(j["status"] == "succeeded" for j in done.values()), done
    assert sorted(done, key=lambda p: datetime.fromisoformat(done[p]["started_at"])) == [10, 5, 0, -5]
