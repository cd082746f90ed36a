"""The work-context protocol: what a unit of work (an op, a pipeline step) may ask of the outside world.

It lives at the base layer so that every layer can type against it without importing the layer that
implements it: media/, models/ and captions/ report progress and check cancel through a `WorkContext`;
storage/fetch.py builds a `Resolver`; pipelines/ runs steps in child contexts. `reelforge.ops.context.
OpContext` is the one implementation (job host, pipelines, tests).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, field_validator

from reelforge.config import Settings

# Resolves an input reference (file id, URL, s3:// key, step:// ref) into a local file in `dest_dir`.
Resolver = Callable[[str, Path], Path]
# Progress callback: (fraction 0..1, current stage or None).
ProgressFn = Callable[[float, str | None], None]


# C0 controls but tab, line feed and carriage return; DEL; C1 controls. NUL crashes espeak/piper, the others
# reach libass, drawtext or a file name unseen; no text a user means contains them.
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def control_character_at(value: Any, where: str = "") -> str | None:
    """Where the first control character in `value` (strings, nested lists and dicts) is, or None."""
    if isinstance(value, str):
        found = _CONTROL_RE.search(value)
        if found is None:
            return None
        return f"{where + ': ' if where else ''}U+{ord(found.group()):04X} at position {found.start()}"
    if isinstance(value, dict):
        for key, item in value.items():
            hit = control_character_at(key, where) or control_character_at(item, f"{where}.{key}".lstrip("."))
            if hit:
                return hit
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            hit = control_character_at(item, f"{where}[{i}]")
            if hit:
                return hit
    return None


class Params(BaseModel):
    """Base for every operation's params: unknown fields are an error, not silently ignored, and no text in
    them (at any depth: timeline assets, pipeline steps, styles) holds a control character (a 422 naming
    the field)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_control_characters(cls, value: Any) -> Any:
        hit = control_character_at(value)
        if hit is not None:
            raise ValueError(f"text may not contain control characters other than tab and line breaks ({hit})")
        return value


@dataclass(frozen=True)
class Fork:
    """An op's answer "run these child jobs, then run me again with their results" (a chunked render:
    docs/CHUNKED.md). Each child is {"op", "params", "weight"} (weight: its share of the parent's progress);
    `state` comes back to the op, with the children's outputs, as its context's `resumed`. `outputs`: files
    the parent made for its children (a chunked build's narration, background, captions): stored as the
    parent's own before the children are queued, and named `job://<parent id>/<name>` by the children's
    params and by the resumed run (`resumed["outputs"]`)."""

    children: list[dict[str, Any]]
    state: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)


@dataclass
class OpResult:
    """What an operation produced: named output files plus JSON-able metadata (or, instead, a Fork)."""

    outputs: dict[str, Path] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    fork: Fork | None = None


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
