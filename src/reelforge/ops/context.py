"""What an operation gets besides its params: a work folder, progress, cancel, inputs and outputs.

An operation is a plain function `run(params, ctx) -> OpResult`. It never imports the web framework, the
executor or a cloud SDK; everything it needs from the outside world comes through this context. The
same class serves the job host process (callbacks wired to the runner), pipelines (child contexts), and
tests (`OpContext.for_test`).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reelforge.config import Settings
from reelforge.errors import InputError, JobCancelled
from reelforge.runtime import OpResult, ProgressFn, Resolver

__all__ = ["OpContext", "OpResult", "Resolver"]


def _local_resolver(ref: str, dest_dir: Path) -> Path:
    """Tests and the CLI's local mode: a reference is a path on this machine."""
    path = Path(ref.removeprefix("file://"))
    if not path.is_file():
        raise InputError(f"Input file {ref!r} does not exist.", code="input_not_found")
    return path


class OpContext:
    """The `reelforge.runtime.WorkContext` implementation."""

    def __init__(
        self,
        *,
        job_id: str,
        workdir: Path,
        settings: Settings,
        resolver: Resolver = _local_resolver,
        on_progress: ProgressFn | None = None,
        is_cancelled: Callable[[], bool] | None = None,
        on_note: Callable[[dict[str, Any]], None] | None = None,
        can_fork: bool = False,
        workers: int = 1,
        resumed: dict[str, Any] | None = None,
    ) -> None:
        self.job_id = job_id
        self.workdir = workdir
        self.settings = settings
        self._resolver = resolver
        self._on_progress = on_progress
        self._is_cancelled = is_cancelled or (lambda: False)
        self._on_note = on_note
        # fork-join (docs/CHUNKED.md): whether this job may answer with a Fork (its job control can create
        # child jobs), how many workers could take them, and, on the run after its children, their results
        self.can_fork = can_fork
        self.workers = workers
        self.resumed = resumed
        self._parent: OpContext | None = None  # a child context's notes go to the job's context
        self._stage: str | None = None
        self._fetched: dict[str, Path] = {}
        self._lock = threading.Lock()
        self.notes: dict[str, Any] = {}
        workdir.mkdir(parents=True, exist_ok=True)

    # ---- construction helpers
    @classmethod
    def for_test(cls, workdir: Path, settings: Settings | None = None, **kw: Any) -> OpContext:
        return cls(job_id=f"test-{uuid.uuid4().hex[:8]}", workdir=workdir,
                   settings=settings or Settings(data_dir=workdir / "data"), **kw)

    def child(self, workdir: Path, *, resolver: Resolver, on_progress: ProgressFn | None,
              is_cancelled: Callable[[], bool]) -> OpContext:
        """A context for one pipeline step: own folder, progress, cancel check and inputs; job-wide notes."""
        sub = OpContext(job_id=self.job_id, workdir=workdir, settings=self.settings, resolver=resolver,
                        on_progress=on_progress, is_cancelled=is_cancelled)
        sub.notes = self.notes
        sub._parent = self
        return sub

    # ---- progress and cancel
    def progress(self, fraction: float, stage: str | None = None) -> None:
        """Report progress of this operation, 0..1 (clamped), optionally entering a named stage."""
        if stage is not None:
            self._stage = stage
        frac = min(1.0, max(0.0, float(fraction)))
        if self._on_progress is not None:
            self._on_progress(frac, self._stage)

    def stage(self, name: str, fraction: float = 0.0) -> None:
        """Enter a named stage (shown on the job), at `fraction` of this operation's progress."""
        self.progress(fraction, name)

    def cancelled(self) -> bool:
        return bool(self._is_cancelled())

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled("The job was cancelled.")

    # ---- notes recorded on the job (encoder, device, fallbacks...)
    def note(self, **values: Any) -> None:
        if self._parent is not None:
            self._parent.note(**values)
            return
        with self._lock:
            self.notes.update(values)
        if self._on_note is not None:
            self._on_note(dict(values))

    # ---- inputs and outputs
    def fetch(self, ref: str) -> Path:
        """Local path of an input reference; each distinct reference is fetched once per job."""
        with self._lock:
            if ref in self._fetched:
                return self._fetched[ref]
        dest = self.workdir / "inputs"
        dest.mkdir(parents=True, exist_ok=True)
        path = self._resolver(ref, dest)
        with self._lock:
            self._fetched[ref] = path
        return path

    def output_path(self, name: str, suffix: str) -> Path:
        """Where to write an output file (the runner stores it after the op returns)."""
        out = self.workdir / "out"
        out.mkdir(parents=True, exist_ok=True)
        return out / f"{name}{suffix if suffix.startswith('.') else '.' + suffix}"

    def temp_path(self, name: str) -> Path:
        tmp = self.workdir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{int(time.time() * 1000) % 10**8}-{uuid.uuid4().hex[:6]}-{name}"
