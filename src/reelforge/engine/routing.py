"""Which queue a job goes to: the operator's `op_routes` table first, else the op's resources decide.

Defaults (no table): an op that prefers or requires a GPU for these params goes to `gpu` (transcribe,
overlay with `engine: rvm`, build with an RVM talking head, a pipeline with such a step), everything else
to `cpu` — encodes included: x264 runs on the CPU, and the GPUs most GPU workers rent (A100, H100, H200)
have no NVENC, so an encode on a GPU worker would hold its GPU slot while using only its CPUs.

The table maps keys to queue names (free strings: `gpu-24g`, `nvenc`, ...):
    "transcribe"          every transcribe job
    "overlay.engine=rvm"  overlay jobs whose params have engine == "rvm" (a dotted path into the params;
                          the value is read as JSON when it parses, e.g. `true`, `3`, else as a string)
A key with a condition wins over the plain op key; among matching conditions the first in the table wins.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from reelforge.config import Settings
from reelforge.errors import ReelForgeError
from reelforge.ops.registry import Operation, load_all
from reelforge.ops.resources import Resources, param_value

CPU_QUEUE = "cpu"
GPU_QUEUE = "gpu"


@dataclass(frozen=True)
class Route:
    op: str
    path: str | None  # None: every job of the op
    value: Any
    queue: str

    def matches(self, op: str, params: Mapping[str, Any]) -> bool:
        return op == self.op and (self.path is None or param_value(params, self.path) == self.value)


def parse_route(key: str, queue: str) -> Route:
    op, _, cond = key.strip().partition(".")
    if not cond:
        return Route(op, None, None, queue)
    path, eq, raw = cond.partition("=")
    if not eq or not path.strip() or not raw.strip():
        raise ReelForgeError(f"op_routes key {key!r}: write 'op' or 'op.param=value' (e.g. 'overlay.engine=rvm').",
                             code="invalid_config")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw.strip()
    return Route(op, path.strip(), value, queue)


@functools.lru_cache(maxsize=8)
def _routes(items: tuple[tuple[str, str], ...]) -> tuple[list[Route], list[Route]]:
    routes = [parse_route(k, q) for k, q in items]
    return [r for r in routes if r.path is not None], [r for r in routes if r.path is None]


def routes(settings: Settings) -> tuple[list[Route], list[Route]]:
    """(routes with a condition, plain op routes), in table order."""
    return _routes(tuple(settings.compute.op_routes.items()))


def default_queue(resources: Resources) -> str:
    return GPU_QUEUE if resources.wants_gpu else CPU_QUEUE


def queue_for(op: Operation, params: BaseModel | Mapping[str, Any] | None, settings: Settings) -> str:
    """The queue of a new job of `op` with these (validated) params: the one call a submit path makes."""
    values: Mapping[str, Any] = {} if params is None else (
        params.model_dump(mode="json") if isinstance(params, BaseModel) else params)
    conditional, plain = routes(settings)
    for route in (*conditional, *plain):
        if route.matches(op.name, values):
            return route.queue
    return default_queue(op.resources_for(values if params is not None else None))


def check_routes(settings: Settings, ops: Iterable[str] | None = None) -> None:
    """At start-up: a table entry naming no operation is a typo; refuse to start and name it."""
    conditional, plain = routes(settings)
    if not conditional and not plain:
        return
    known = set(load_all() if ops is None else ops)
    unknown = sorted({r.op for r in (*conditional, *plain)} - known)
    if unknown:
        raise ReelForgeError(f"op_routes names unknown operation(s) {', '.join(map(repr, unknown))}. "
                             f"Known: {', '.join(sorted(known))}.", code="invalid_config")


def configured_queues(settings: Settings) -> list[str]:
    """Every queue a job can be sent to under these settings, plus the ones this worker consumes."""
    names = [CPU_QUEUE, GPU_QUEUE, *settings.compute.op_routes.values(),
             *(q.strip() for q in settings.compute.worker_queues.split(","))]
    return list(dict.fromkeys(q for q in names if q))
