"""Idle shutdown, for the whole service on one rented box (seed 000's deployment): after
`capacity.idle_shutdown_minutes` with no queued or running job and no open upload, the operator's
`capacity.idle_shutdown_command` (e.g. the provider's stop or destroy call for this very instance) is run
once, and logged. `/health` shows the countdown beforehand (`idle_shutdown`).

An open upload is a spool file in the work folder (`work/uploads`, `work/agent-uploads`): the routes create
one per upload in progress and remove it when the upload ends, so this needs no hook into the routes.
"""

from __future__ import annotations

import logging
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

from reelforge.config import Settings
from reelforge.jobs.store import JobsStore

log = logging.getLogger("reelforge.idle")
CHECK_S = 5.0


class IdleShutdown:
    def __init__(self, settings: Settings, jobs: JobsStore, *, clock: Callable[[], float] = time.monotonic,
                 run: Callable[..., Any] = subprocess.run) -> None:
        self.settings = settings
        self.jobs = jobs
        self.clock = clock
        self.run_command = run
        self.minutes = settings.capacity.idle_shutdown_minutes
        self.command = settings.capacity.idle_shutdown_command
        self.idle_since: float | None = None
        self.fired_at: float | None = None
        self.last_result: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.minutes > 0 and bool(self.command.strip())

    def open_uploads(self) -> int:
        work = self.settings.work_dir
        return sum(sum(1 for _ in d.iterdir()) for d in (work / "uploads", work / "agent-uploads") if d.is_dir())

    def busy(self) -> bool:
        counts = self.jobs.counts_by_status()
        active = sum(n for (_op, status), n in counts.items() if status in ("queued", "running"))
        return active > 0 or self.open_uploads() > 0

    def check(self) -> bool:
        """One look; True when the command was run now."""
        now = self.clock()
        if self.busy():
            self.idle_since = None
            self.fired_at = None  # work came back (the box survived the command): armed again
            return False
        if self.idle_since is None:
            self.idle_since = now
        if self.fired_at is not None or now - self.idle_since < self.minutes * 60:
            return False
        self.fired_at = now
        log.warning("idle shutdown: no job and no upload for %.1f min: running the operator's command %r",
                    (now - self.idle_since) / 60, self.command)
        try:
            res = self.run_command(shlex.split(self.command), capture_output=True, text=True, timeout=300)
            self.last_result = f"exit {res.returncode}"
            log.warning("idle shutdown: the command ended with exit code %s: %s", res.returncode,
                        (res.stdout or res.stderr or "").strip()[-500:])
        except (OSError, subprocess.SubprocessError) as exc:
            self.last_result = f"failed: {exc}"
            log.error("idle shutdown: the command could not be run: %s", exc)
        return True

    def state(self) -> dict[str, Any]:
        """For /health: whether it is on, how long the service has been idle, when the command will run."""
        if not self.enabled:
            return {"enabled": False}
        idle_for = 0.0 if self.idle_since is None else self.clock() - self.idle_since
        return {"enabled": True, "minutes": self.minutes, "idle_for_s": round(idle_for, 1),
                "fires_in_s": None if self.idle_since is None else round(max(0.0, self.minutes * 60 - idle_for), 1),
                "fired": self.fired_at is not None, "result": self.last_result}

    def start(self) -> None:
        if not self.enabled:
            return
        log.info("idle shutdown armed: %r after %.1f idle minutes", self.command, self.minutes)
        self._thread = threading.Thread(target=self._loop, name="reelforge-idle-shutdown", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(min(CHECK_S, max(0.2, self.minutes * 60 / 10))):
            try:
                self.check()
            except Exception:
                log.exception("idle shutdown check failed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
