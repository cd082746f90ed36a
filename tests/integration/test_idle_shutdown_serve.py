"""Idle shutdown on a real `reelforge serve` (the whole service on one rented box): /health shows the
countdown while nothing runs, a running job holds it off, and the operator's command really runs once."""

from __future__ import annotations

import time
from pathlib import Path

from tests.integration.service import Service, wait_job

IDLE_MINUTES = 0.05  # 3 s


def test_the_operators_command_runs_after_idle_minutes_and_health_says_so_first(tmp_path: Path) -> None:
    marker = tmp_path / "stopped-by-idle-shutdown"
    svc = Service(tmp_path / "data", REELFORGE_IDLE_SHUTDOWN_MINUTES=str(IDLE_MINUTES),
                  REELFORGE_IDLE_SHUTDOWN_COMMAND=f"touch {marker}")
    svc.start()
    try:
        with svc.client() as c:
            job = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": IDLE_MINUTES * 60 + 2}}).json()
            wait_job(c, job["id"], timeout=30, until={"running"})
            time.sleep(IDLE_MINUTES * 60 + 0.5)  # longer than the idle minutes: the running job holds it off
            state = c.get("/health").json()["idle_shutdown"]
            assert state["enabled"] and state["fires_in_s"] is None and not state["fired"], state
            assert not marker.exists()
            assert wait_job(c, job["id"], timeout=60)["status"] == "succeeded"
            seen_countdown = False
            deadline = time.monotonic() + IDLE_MINUTES * 60 + 30  # the command, plus the check's interval
            while not marker.exists() and time.monotonic() < deadline:
                state = c.get("/health").json()["idle_shutdown"]
                if state["fires_in_s"] is not None and state["fires_in_s"] > 0 and not state["fired"]:
                    seen_countdown = True  # visible before it runs
                time.sleep(0.1)
            assert seen_countdown and marker.exists()
            time.sleep(0.5)
            state = c.get("/health").json()["idle_shutdown"]
            assert state["fired"] and state["result"] == "exit 0", state
        assert "idle shutdown" in svc.log.read_text()
    finally:
        svc.stop()
