"""The operations registry: adding an operation is adding one module to `reelforge.ops`.

Each module calls `@operation(...)` on its `run(params, ctx)` function. `load_all()` imports every module
of the package once, so nothing needs a central list.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from reelforge.errors import UnknownOperation
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.resources import CPU, Resources, ResourceSpec, as_spec

P = TypeVar("P", bound=BaseModel)
RunFn = Callable[[Any, OpContext], OpResult]


@dataclass(frozen=True)
class Operation:
    name: str
    params_model: type[BaseModel]
    run: RunFn
    summary: str
    resources: ResourceSpec = field(default_factory=ResourceSpec)  # GPU, VRAM, NVENC; routed to a queue
    timeout_s: float = 600.0  # default per-job timeout (model loading included); jobs may override
    example: dict[str, Any] | None = None  # a runnable params example, shown in docs
    # a default timeout that depends on the params (generate: steps x frames), capped by max_timeout_s
    timeout_for: Callable[[Mapping[str, Any]], float] | None = None

    def resources_for(self, params: BaseModel | Mapping[str, Any] | None = None) -> Resources:
        """The resources a job with these params needs (None: the op's base resources)."""
        return self.resources.for_params(params)

    def default_timeout(self, params: BaseModel | Mapping[str, Any] | None = None, cap: float = float("inf")) -> float:
        """The timeout a job gets when it names none: `timeout_for(params)` when the op has one (at most `cap`)."""
        if self.timeout_for is None or params is None:
            return self.timeout_s
        values = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
        return min(cap, max(self.timeout_s, self.timeout_for(values)))


_REGISTRY: dict[str, Operation] = {}
_NOT_OPS = {"context", "registry", "params", "resources"}
_loaded = False


def operation(
    name: str,
    *,
    params: type[P],
    summary: str,
    resources: Resources | ResourceSpec = CPU,
    timeout_s: float = 600.0,
    example: dict[str, Any] | None = None,
    timeout_for: Callable[[Mapping[str, Any]], float] | None = None,
) -> Callable[[Callable[[P, OpContext], OpResult]], Callable[[P, OpContext], OpResult]]:
    def decorate(fn: Callable[[P, OpContext], OpResult]) -> Callable[[P, OpContext], OpResult]:
        if name in _REGISTRY and _REGISTRY[name].run is not fn:
            raise RuntimeError(f"operation {name!r} registered twice")
        _REGISTRY[name] = Operation(name, params, fn, summary, as_spec(resources), timeout_s, example, timeout_for)
        return fn

    return decorate


def load_all() -> dict[str, Operation]:
    global _loaded
    if not _loaded:
        import reelforge.ops as pkg

        for mod in pkgutil.iter_modules(pkg.__path__):
            if mod.name not in _NOT_OPS and not mod.name.startswith("_"):
                importlib.import_module(f"reelforge.ops.{mod.name}")
        _loaded = True
    return dict(_REGISTRY)


def load_plugins(modules: str) -> None:
    """Import extra operation modules named in settings.service.plugins (comma-separated dotted names)."""
    for name in filter(None, (m.strip() for m in modules.split(","))):
        importlib.import_module(name)


def steps_resources(params: Mapping[str, Any]) -> Resources:
    """A pipeline's resources: what its steps need together (they run in one job host)."""
    total = CPU
    ops = load_all()
    for step in params.get("steps") or []:
        op = ops.get(step.get("op", "")) if isinstance(step, Mapping) else None
        if op is not None:
            total = total.combine(op.resources_for(step.get("params") or {}))
    return total


def get_operation(name: str) -> Operation:
    ops = load_all()
    if name not in ops:
        raise UnknownOperation(
            f"Unknown operation {name!r}. Available: {', '.join(sorted(ops))}.",
            details={"available": sorted(ops)},
        )
    return ops[name]
