"""Idle shutdown (the whole service on one rented box): the operator's command runs once after N idle
minutes — no queued or running job, no upload in progress — and /health's state shows the countdown."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.config import Settings
from reelforge.jobs.idle import IdleShutdown
from reelforge.jobs.store import Stores


class Clock:
    t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_command_runs_once_after_idle_minutes_and_rearms(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", idle_shutdown_minutes=2,
                        idle_shutdown_command="stop-box --now 'x y'")
    settings.ensure_dirs()
    stores = Stores.open(settings.service.database_url.get_secret_value(), migrate=True)
    ran: list[list[str]] = []

    class Done:
        returncode, stdout, stderr = 0, "bye", ""

    def run(argv: list[str], **_: Any) -> Done:
        ran.append(argv)
        return Done()

    clock = Clock()
    idle = IdleShutdown(settings, stores.jobs, clock=clock, run=run)
    assert idle.enabled and not idle.check()
    clock.t += 60
    assert not idle.check() and idle.state()["fires_in_s"] == 60.0
    upload = settings.work_dir / "uploads" / "spooling"  # an upload in progress resets the countdown
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"x")
    clock.t += 120
    assert not idle.check() and idle.idle_since is None
    upload.unlink()
    job, _ = stores.jobs.create_job(tenant="t", op="probe", params={}, queue="cpu", timeout_s=10, max_attempts=1)
    assert not idle.check()
    stores.jobs.request_cancel(job.id, None)
    assert not idle.check()
    clock.t += 119
    assert not idle.check()
    clock.t += 1
    assert idle.check() and ran == [["stop-box", "--now", "x y"]]
    clock.t += 600
    assert not idle.check() and len(ran) == 1  # once
    assert idle.state()["fired"] and idle.state()["result"] == "exit 0"
    assert not IdleShutdown(Settings(data_dir=tmp_path / "d2"), stores.jobs).enabled
