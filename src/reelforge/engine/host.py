"""The job host: a long-lived *spawned* child process that runs operations, one job at a time.

Why a separate process: cancel and timeout must really stop the work, including ffmpeg and model threads.
The host makes itself a process-group leader (setsid), so `killpg` ends it and every ffmpeg it started.
Why long-lived: models loaded by a job stay warm for the next job in the same host (faster-whisper, ONNX
sessions). Why spawn, not fork: CUDA cannot survive a fork, and a fork would copy the API's threads/locks.

Protocol over a multiprocessing Pipe (parent -> host): ("run", payload). Host -> parent: ("progress",
fraction, stage), ("note", {...}), then exactly one of ("done", {...}) or ("error", {...}).
A graceful cancel sets a shared Event that ctx.cancelled() reads (ffmpeg is killed within 0.2 s); if the
host has not answered within the grace period its whole process group is killed.

Shutdown: the host ignores SIGINT and SIGTERM (a supervisor that signals every process of the service,
like systemd's control-group kill, must not end a job before the service itself knows it is stopping:
the service decides, kills the host, and requeues the job without spending an attempt). A host whose
parent is gone kills its own process group instead of running on as an orphan.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Literal

from reelforge.config import Settings

Outcome = Literal["succeeded", "failed", "cancelled", "timed_out", "crashed", "lost", "interrupted"]
StopReason = Literal["cancel", "timeout", "lost", "shutdown"]
_SPAWN = mp.get_context("spawn")


@dataclass
class HostResult:
    outcome: Outcome
    outputs: dict[str, str] = field(default_factory=dict)  # name -> local path inside the host's workdir
    data: dict[str, Any] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    fork: dict[str, Any] | None = None  # {"children", "state", "outputs"}: the op asked for child jobs


def host_settings_data(settings: Settings) -> dict[str, Any]:
    """The settings a job host gets: the parent's, without the database URL (and any password in it).
    A host runs untrusted media through ffmpeg and needs no database: its job's inputs come resolved in
    the payload (engine/control.py ClaimedJob.host_payload)."""
    data = settings.handover_dict()
    data["service"]["database_url"] = ""
    return data


class JobHost:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._proc: Any = None
        self._conn: Connection | None = None
        self._cancel = _SPAWN.Event()

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.is_alive() else None

    def _ensure_started(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            return
        self._discard()
        parent, child = _SPAWN.Pipe()
        self._proc = _SPAWN.Process(
            target=host_main, args=(host_settings_data(self.settings), child, self._cancel),
            name="reelforge-job-host", daemon=True,
        )
        self._proc.start()
        child.close()
        self._conn = parent

    def _discard(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
        self._conn = None
        self._proc = None

    def kill(self) -> None:
        """Kill the host and every process in its group (ffmpeg, model workers)."""
        proc = self._proc
        if proc is not None and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.join(timeout=5)
        self._discard()

    def close(self) -> None:
        self.kill()

    def run(
        self,
        payload: dict[str, Any],
        *,
        on_progress: Callable[[float, str | None], None],
        on_note: Callable[[dict[str, Any]], None],
        should_stop: Callable[[], StopReason | None],
        poll_s: float = 0.2,
        cancel_grace_s: float = 1.0,
    ) -> HostResult:
        self._ensure_started()
        conn = self._conn  # kept locally: close()/kill() from another thread may drop self._conn meanwhile
        assert conn is not None
        self._cancel.clear()
        notes: dict[str, Any] = {}
        try:
            conn.send(("run", payload))
        except (OSError, ValueError):
            return self._crashed(notes)
        while True:
            try:
                ready = conn.poll(poll_s)
            except (EOFError, OSError, ValueError):
                return self._crashed(notes)
            if ready:
                try:
                    msg = conn.recv()
                except (EOFError, OSError, ValueError):
                    return self._crashed(notes)
                kind = msg[0]
                if kind == "progress":
                    on_progress(msg[1], msg[2])
                elif kind == "note":
                    notes.update(msg[1])
                    on_note(msg[1])
                elif kind == "done":
                    body = msg[1]
                    return HostResult("succeeded", outputs=body["outputs"], data=body["data"],
                                      notes={**notes, **body.get("notes", {})}, fork=body.get("fork"))
                elif kind == "error":
                    err = msg[1]
                    outcome: Outcome = "cancelled" if err.get("code") == "cancelled" else "failed"
                    return HostResult(outcome, notes=notes, error=err)
            proc = self._proc
            if proc is None or not proc.is_alive():
                return self._crashed(notes)
            stop = should_stop()
            if stop is not None:
                return self._stop(stop, notes, cancel_grace_s)

    def _crashed(self, notes: dict[str, Any]) -> HostResult:
        proc = self._proc
        code = proc.exitcode if proc is not None else None
        self.kill()
        return HostResult("crashed", notes=notes, error={
            "code": "worker_lost", "message": f"The worker process running this job died (exit code {code})."})

    def _stop(self, reason: str, notes: dict[str, Any], grace_s: float) -> HostResult:
        if reason == "cancel":
            # graceful first: ops see ctx.cancelled() and ffmpeg is killed by run_ffmpeg's watcher
            self._cancel.set()
            deadline = time.monotonic() + grace_s
            conn = self._conn
            while conn is not None and time.monotonic() < deadline:
                try:
                    if conn.poll(0.05):
                        msg = conn.recv()
                        if msg[0] in ("done", "error"):
                            break
                except (EOFError, OSError, ValueError):
                    break
            else:
                self.kill()
            # the op may have returned normally just as we cancelled: cancel still wins, nothing is stored
            if self._proc is not None and self._proc.is_alive():
                self._kill_children()
            return HostResult("cancelled", notes=notes,
                              error={"code": "cancelled", "message": "The job was cancelled."})
        self.kill()
        if reason == "shutdown":
            return HostResult("interrupted", notes=notes, error={
                "code": "shutdown", "message": "The service shut down while the job ran; it runs again."})
        if reason == "timeout":
            return HostResult("timed_out", notes=notes,
                              error={"code": "timed_out", "message": "The job ran past its timeout."})
        return HostResult("lost", notes=notes,
                          error={"code": "lease_lost", "message": "This worker lost the job's lease."})

    def _kill_children(self) -> None:
        """Kill anything left in the host's group except the host itself (stray ffmpeg after a cancel)."""
        if self._proc is None or self._proc.pid is None:
            return
        pgid = self._proc.pid
        for pid in _group_members(pgid):
            if pid != pgid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return members


# ---------------------------------------------------------------- inside the host process
def _limit_threads(n: int) -> None:
    # Before numpy/onnxruntime/ctranslate2 are imported: one thread pool per library, of bounded size,
    # so several hosts on one machine do not start hundreds of threads (pthread_create failures).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(n)


def _die_with_parent(parent: int) -> None:
    """An orphaned host (its service was SIGKILLed) ends itself and every ffmpeg it started."""
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            with contextlib.suppress(OSError):
                os.killpg(os.getpgrp(), signal.SIGKILL)
            os._exit(1)


def host_main(settings_data: dict[str, Any], conn: Connection, cancel: Any) -> None:
    os.setsid()
    # Ctrl-C in a terminal, and a SIGTERM sent to every process of the service, go to the parent, which
    # decides (see the module docstring)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    threading.Thread(target=_die_with_parent, args=(os.getppid(),), name="parent-watch", daemon=True).start()
    settings = Settings.from_handover(settings_data)  # secrets included: the child is ours
    _limit_threads(settings.compute.threads_per_job)
    if settings.compute.job_nice:
        os.nice(settings.compute.job_nice)  # inherited by every ffmpeg and model thread of the host
    from reelforge.engine.services import HostServices
    from reelforge.ops.registry import load_plugins

    load_plugins(settings.service.plugins)
    services = HostServices(settings)
    send_lock = threading.Lock()

    def send(msg: tuple[Any, ...]) -> None:
        with send_lock:
            try:
                conn.send(msg)
            except (BrokenPipeError, EOFError, OSError):
                os._exit(0)  # the parent is gone or gave up on this job: nothing left to report to

    while True:
        try:
            kind, payload = conn.recv()
        except (EOFError, OSError, KeyboardInterrupt):
            return
        if kind == "run":
            _execute(payload, settings, services, send, cancel)


def _disk_full() -> dict[str, Any]:
    return {"code": "disk_full", "message": "The server's disk filled up while the job ran. The job is not retried: "
            "free some space (or ask the operator to), then submit it again."}


def _execute(payload: dict[str, Any], settings: Settings, services: Any,
             send: Callable[[tuple[Any, ...]], None], cancel: Any) -> None:
    from reelforge.diskspace import is_disk_full
    from reelforge.errors import ReelForgeError, job_error
    from reelforge.media.ffmpeg import redact_paths
    from reelforge.media.outputs import verify_outputs
    from reelforge.ops.context import OpContext
    from reelforge.ops.registry import get_operation

    last_at, last_stage = 0.0, None

    def on_progress(fraction: float, stage: str | None) -> None:
        nonlocal last_at, last_stage
        now = time.monotonic()
        if stage != last_stage or now - last_at >= 0.25 or fraction >= 1.0:
            last_at, last_stage = now, stage
            send(("progress", fraction, stage))

    try:
        op = get_operation(payload["op"])
        params = op.params_model.model_validate(payload["params"])
        ctx = OpContext(
            job_id=payload["job_id"], workdir=Path(payload["workdir"]), settings=settings,
            resolver=services.resolver_for(payload), on_progress=on_progress,
            is_cancelled=cancel.is_set, on_note=lambda d: send(("note", d)),
            can_fork=bool(payload.get("can_fork")), workers=int(payload.get("workers") or 1),
            resumed=payload.get("resumed"),
        )
        result = op.run(params, ctx)
        if cancel.is_set():
            send(("error", {"code": "cancelled", "message": "The job was cancelled."}))
            return
        if result.fork is not None:  # child jobs first (docs/CHUNKED.md): only the files they need
            send(("done", {"outputs": {}, "data": {}, "notes": ctx.notes,
                           "fork": {"children": result.fork.children, "state": result.fork.state,
                                    "outputs": {k: str(v) for k, v in result.fork.outputs.items()}}}))
            return
        verify_outputs(result.outputs, result.data)  # no job succeeds with an empty or streamless output
        send(("done", {"outputs": {k: str(v) for k, v in result.outputs.items()}, "data": result.data,
                       "notes": ctx.notes}))
    except ReelForgeError as exc:
        # users never see local paths
        send(("error", _disk_full() if is_disk_full(exc) else {**job_error(exc), "message": redact_paths(exc.message)}))
    except Exception as exc:  # an op bug must fail the job with a sentence, not kill the host
        if is_disk_full(exc):  # ENOSPC in an op's own write, or a fetch into the work folder
            send(("error", _disk_full()))
            return
        traceback.print_exc(file=sys.stderr)
        send(("error", {"code": "internal_error",
                        "message": redact_paths(f"The operation failed unexpectedly ({type(exc).__name__}: {exc}).")}))
