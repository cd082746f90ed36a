"""The work-context protocol: what a unit of work (an op, a pipeline step) may ask of the outside world.

It lives at the base layer so that every layer can type against it without importing the layer that
implements it: media/, models/ and captions/ report progress and check cancel through a `WorkContext`;
storage/fetch.py builds a `Resolver`; pipelines/ runs steps in child contexts. `reelforge.ops.context.
OpContext` is the one implementation (job host, pipelines, tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from reelforge.config import Settings

# Resolves an input reference (file id, URL, s3:// key, step:// ref) into a local file in `dest_dir`.
Resolver = Callable[[str, Path], Path]
# Progress callback: (fraction 0..1, current stage or None).
ProgressFn = Callable[[float, str | None], None]


class Params(BaseModel):
    """Base for every operation's params: unknown fields are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass
class OpResult:
    """What an operation produced: named output files plus JSON-able metadata."""

    outputs: dict[str, Path] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)


class WorkContext(Protocol):
    """Progress, cancel, notes, inputs and work files of one running job (or one pipeline step of it)."""

    @property
    def job_id(self) -> str: ...

    @property
    def workdir(self) -> Path: ...

    @property
    def settings(self) -> Settings: ...

    def progress(self, fraction: float, stage: str | None = None) -> None:
        """Report progress 0..1, optionally entering a named stage."""

    def stage(self, name: str, fraction: float = 0.0) -> None:
        """Enter a named stage at `fraction` of this unit's progress."""

    def cancelled(self) -> bool: ...

    def check_cancelled(self) -> None:
        """Raise JobCancelled when the job was cancelled."""

    def note(self, **values: Any) -> None:
        """Record values on the job (encoder, device, fallbacks...)."""

    def fetch(self, ref: str) -> Path:
        """The local path of an input reference (fetched once per context)."""

    def output_path(self, name: str, suffix: str) -> Path:
        """Where to write an output file."""

    def temp_path(self, name: str) -> Path:
        """A fresh path for a scratch file."""

    def child(self, workdir: Path, *, resolver: Resolver, on_progress: ProgressFn | None,
              is_cancelled: Callable[[], bool]) -> WorkContext:
        """A context for one part of this job (a pipeline step): own work folder, progress and inputs;
        its notes go to this job."""
