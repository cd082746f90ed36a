"""A pipeline is a graph of steps; this module parses and checks it without running anything.

    {"steps": [
        {"id": "voice", "op": "tts", "params": {"text": "Hello."}},
        {"id": "video", "op": "add_audio",
         "params": {"video": "file_...", "audio": {"ref": "voice.audio"}}}
    ]}

A reference `{"ref": "<step>.<output>"}` stands for a file another step produced (an OpResult output) and
`{"ref": "<step>.data.<key>[.<key>...]"}` for a metadata value it returned. Refs may appear anywhere in a
step's params. Order comes from the refs plus an explicit `depends_on`.

Every problem (duplicate id, unknown op, dangling or cyclic ref, params the op rejects) is an
`InvalidParams` carrying the JSON path of the offending field, raised while the params are validated, so
the API answers 422 at submit time. At submit time a file ref becomes the placeholder
`step://<step>/<output>` (which `MediaRef` accepts) and the step's params are validated against its op's
model; a data ref's value is unknown until run time, so errors at its location are not reported then.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from reelforge import refs
from reelforge.errors import InvalidParams, UnknownOperation
from reelforge.runtime import OpResult

STEP_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
MAX_STEPS = 200

# A JSON location: ("steps", 2, "params", "input")
Loc = tuple[str | int, ...]


class OpSpec(Protocol):
    """What a step needs of an operation (ops.registry.Operation is one): its params model and its run."""

    @property
    def params_model(self) -> type[BaseModel]: ...

    @property
    def run(self) -> Callable[[Any, Any], OpResult]: ...


# Finds an op by name, or raises UnknownOperation (ops/ passes the registry's get_operation).
OpLookup = Callable[[str], OpSpec]


def format_loc(loc: Loc) -> str:
    """`steps[2].params.input` — the form error messages and details use."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "$"


def graph_error(message: str, loc: Loc, code: str = "invalid_pipeline") -> InvalidParams:
    path = format_loc(loc)
    return InvalidParams(f"{path}: {message}", code=code, details={"path": path, "loc": list(loc)})


@dataclass(frozen=True)
class Ref:
    """A parsed reference to another step's output file or data value."""

    step: str
    output: str | None  # file output name, or None for a data ref
    data_keys: tuple[str, ...] = ()

    @property
    def is_data(self) -> bool:
        return self.output is None

    @property
    def placeholder(self) -> str:
        return refs.step_url(self.step, self.output or "")

    def __str__(self) -> str:
        if self.is_data:
            return f"{self.step}.data.{'.'.join(self.data_keys)}"
        return f"{self.step}.{self.output}"


def parse_ref(text: Any) -> Ref:
    """`voice.audio` -> file ref; `voice.data.duration_s` -> data ref. ValueError with a reason otherwise."""
    if not isinstance(text, str):
        raise ValueError("a ref must be a string like 'step.output' or 'step.data.key'")
    parts = text.strip().split(".")
    if len(parts) < 2 or not all(parts):
        raise ValueError(f"ref {text!r} must look like 'step.output' or 'step.data.key'")
    if parts[1] == "data":
        if len(parts) < 3:
            raise ValueError(f"data ref {text!r} needs a key: 'step.data.key'")
        return Ref(parts[0], None, tuple(parts[2:]))
    if len(parts) != 2:
        raise ValueError(f"ref {text!r} must look like 'step.output' (outputs have no dots)")
    return Ref(parts[0], parts[1])


def parse_step_url(value: str) -> Ref | None:
    """`step://voice/audio` (a ref already in placeholder form) -> Ref; other strings -> None."""
    parsed = refs.parse_ref(value)
    return Ref(parsed.step, parsed.output) if parsed.is_step_output else None


def is_ref_object(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"ref"}


def iter_refs(value: Any, loc: Loc = ()) -> Iterator[tuple[Loc, Ref]]:
    """Every ref inside a params value, with its location. Raises InvalidParams for a malformed ref."""
    if is_ref_object(value):
        try:
            yield loc, parse_ref(value["ref"])
        except ValueError as exc:
            raise graph_error(str(exc), (*loc, "ref"), code="invalid_ref") from None
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_refs(v, (*loc, str(k)))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from iter_refs(v, (*loc, i))
    elif isinstance(value, str):
        ref = parse_step_url(value)
        if ref is not None:
            yield loc, ref


def substitute_refs(value: Any, replace: Callable[[Ref], Any]) -> Any:
    """A copy of `value` with every ref object (and step:// string) replaced by `replace(ref)`."""
    if is_ref_object(value):
        return replace(parse_ref(value["ref"]))
    if isinstance(value, dict):
        return {k: substitute_refs(v, replace) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [substitute_refs(v, replace) for v in value]
    if isinstance(value, str):
        ref = parse_step_url(value)
        return replace(ref) if ref is not None else value
    return value


class Step(BaseModel):
    """One node: run `op` with `params` (which may hold refs) after the steps it depends on."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique step name: a letter, then letters, digits, '_' or '-'.")
    op: str = Field(description="The operation to run (any registered op).")
    params: dict[str, Any] = Field(default_factory=dict,
                                   description="The op's params; {'ref': 'step.output'} anywhere refers to "
                                               "another step's output file, {'ref': 'step.data.key'} to "
                                               "a value it returned.")
    depends_on: list[str] = Field(default_factory=list, description="Steps to finish first (besides refs).")
    cache: bool | None = Field(default=None,
                               description="Reuse an earlier identical result (default: the pipeline's).")
    weight: float = Field(default=1.0, gt=0, le=1000,
                          description="Share of the job's progress bar (a long encode: more than a probe).")


@dataclass(frozen=True)
class StepPlan:
    """A checked step: its op, the steps it needs, and where its refs are."""

    index: int
    step: Step
    operation: OpSpec
    needs: tuple[str, ...]  # direct dependencies, in first-mention order
    refs: tuple[tuple[Loc, Ref], ...]

    @property
    def id(self) -> str:
        return self.step.id


@dataclass(frozen=True)
class Graph:
    steps: tuple[StepPlan, ...]  # topological order (stable: list order among ready steps)

    def by_id(self) -> dict[str, StepPlan]:
        return {s.id: s for s in self.steps}

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {s.id: [] for s in self.steps}
        for s in self.steps:
            for need in s.needs:
                out[need].append(s.id)
        return out

    @property
    def final(self) -> StepPlan:
        """The step whose outputs are the job's: the last listed step that nothing depends on."""
        deps = self.dependents()
        sinks = [s for s in self.steps if not deps[s.id]]
        return max(sinks, key=lambda s: s.index)


def build_graph(steps: list[Step], *, lookup: OpLookup,
                context: Mapping[str, Any] | None = None, base_loc: Loc = ("steps",)) -> Graph:
    """Check a list of steps and order them; InvalidParams names the JSON path of the first problem."""
    if not steps:
        raise graph_error("a pipeline needs at least one step", base_loc, code="empty_pipeline")
    if len(steps) > MAX_STEPS:
        raise graph_error(f"a pipeline may have at most {MAX_STEPS} steps", base_loc, code="too_many_steps")
    index: dict[str, int] = {}
    for i, step in enumerate(steps):
        if not STEP_ID_RE.match(step.id):
            raise graph_error("a step id is a letter followed by letters, digits, '_' or '-' (max 64)",
                              (*base_loc, i, "id"), code="invalid_step_id")
        if step.id in index:
            raise graph_error(f"duplicate step id {step.id!r} (also steps[{index[step.id]}])",
                              (*base_loc, i, "id"), code="duplicate_step")
        index[step.id] = i

    plans: dict[str, StepPlan] = {}
    for i, step in enumerate(steps):
        try:
            operation = lookup(step.op)
        except UnknownOperation as exc:
            raise graph_error(exc.message, (*base_loc, i, "op"), code="unknown_op") from None
        refs = tuple(iter_refs(step.params, (*base_loc, i, "params")))
        needs: list[str] = []
        for loc, ref in refs:
            if ref.step not in index:
                raise graph_error(f"refers to step {ref.step!r}, which does not exist", loc,
                                  code="dangling_ref")
            if ref.step == step.id:
                raise graph_error("a step cannot refer to its own output", loc, code="cyclic_ref")
            if ref.step not in needs:
                needs.append(ref.step)
        for j, dep in enumerate(step.depends_on):
            dep_loc = (*base_loc, i, "depends_on", j)
            if dep not in index:
                raise graph_error(f"depends on step {dep!r}, which does not exist", dep_loc,
                                  code="dangling_ref")
            if dep == step.id:
                raise graph_error("a step cannot depend on itself", dep_loc, code="cyclic_ref")
            if dep not in needs:
                needs.append(dep)
        plans[step.id] = StepPlan(i, step, operation, tuple(needs), refs)

    order = _topological(plans, base_loc)
    graph = Graph(tuple(plans[sid] for sid in order))
    for plan in graph.steps:
        check_step_params(plan, context=context, base_loc=base_loc)
    return graph


def _topological(plans: dict[str, StepPlan], base_loc: Loc) -> list[str]:
    """Kahn's algorithm, ready steps taken in list order; a leftover set is a cycle, reported by path."""
    remaining = {sid: set(p.needs) for sid, p in plans.items()}
    order: list[str] = []
    while remaining:
        ready = sorted((sid for sid, needs in remaining.items() if not needs), key=lambda s: plans[s].index)
        if not ready:
            cycle = _find_cycle({sid: plans[sid].needs for sid in remaining})
            first = plans[cycle[0]]
            where = next((loc for loc, ref in first.refs if ref.step == cycle[1 % len(cycle)]),
                         (*base_loc, first.index, "depends_on"))
            raise graph_error("cyclic dependency: " + " -> ".join([*cycle, cycle[0]]), where,
                              code="cyclic_ref")
        for sid in ready:
            order.append(sid)
            del remaining[sid]
        for needs in remaining.values():
            needs.difference_update(ready)
    return order


def _find_cycle(needs: Mapping[str, tuple[str, ...]]) -> list[str]:
    """One cycle among steps that all still wait on something: walk needs until a step repeats."""
    start = min(needs)
    seen: list[str] = []
    node = start
    while node not in seen:
        seen.append(node)
        node = next(n for n in needs[node] if n in needs)
    return seen[seen.index(node):]


def check_step_params(plan: StepPlan, *, context: Mapping[str, Any] | None = None,
                      base_loc: Loc = ("steps",)) -> None:
    """Validate a step's params against its op's model with refs as placeholders.

    A file ref becomes `step://<step>/<output>`; a data ref's value is only known at run time, so it is
    replaced by None and errors at its location, below it, or on a model containing it (a cross-field
    check) are ignored here — they are checked again when the step runs.
    """
    data_locs = [loc for loc, ref in plan.refs if ref.is_data]
    params_loc: Loc = (*base_loc, plan.index, "params")
    with_placeholders = substitute_refs(plan.step.params, lambda r: None if r.is_data else r.placeholder)
    try:
        plan.operation.params_model.model_validate(with_placeholders, context=dict(context or {}))
    except ValidationError as exc:
        for err in exc.errors():
            loc: Loc = (*params_loc, *err["loc"])
            # at, below, or containing a data ref (a model-level check that involves it): run time decides
            if any(loc[: len(d)] == d or d[: len(loc)] == loc for d in data_locs):
                continue
            raise graph_error(f"{err['msg']} (step {plan.id!r}, op {plan.step.op!r})", loc,
                              code="invalid_step_params") from None
    except InvalidParams as exc:  # a nested pipeline's own graph error: re-anchor its path under this step
        inner = (exc.details or {}).get("loc") if isinstance(exc.details, dict) else None
        if inner is None:
            raise graph_error(exc.message, params_loc, code=exc.code) from None
        raise graph_error(exc.message.split(": ", 1)[-1], (*params_loc, *inner), code=exc.code) from None
