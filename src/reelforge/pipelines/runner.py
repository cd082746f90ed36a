"""Run a step graph inside one job: parallel where the graph allows, cached by content, one progress bar.

Each step gets its own context (`ctx.child`: own work folder under `<job workdir>/steps/<id>`), sharing the job's
notes and cancel flag. Its resolver maps `step://<step>/<output>` to the file that step produced and
hands every other reference to the job's context (so a URL used by two steps is fetched once).

Ready steps run on a thread pool bounded by min(settings.compute.workers, cores) — the heavy work happens in
ffmpeg/model subprocesses or native code that releases the GIL. The first failure stops the others
(their ffmpeg is killed through the shared cancel check) and fails the job with the same error class,
its message prefixed "step '<id>' (<op>): ".
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from reelforge.errors import InputError, InvalidParams, JobCancelled, ProcessingError, ReelForgeError
from reelforge.pipelines.cache import StepCache, file_sha256, step_key
from reelforge.pipelines.graph import Graph, Ref, StepPlan, format_loc, parse_step_url, substitute_refs
from reelforge.refs import parse_ref
from reelforge.runtime import OpResult, WorkContext


@dataclass
class StepRecord:
    op: str
    cached: bool = False
    seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.op, "cached": self.cached, "seconds": round(self.seconds, 3),
                "outputs": self.outputs, **({"key": self.key[:16]} if self.key else {})}


@dataclass(frozen=True)
class RunOptions:
    cache: bool = True
    keep_intermediates: bool = False
    max_parallel: int | None = None
    # extra step data copied into the job's data (the final step's data is always merged in)
    include_step_data: bool = True


def default_parallelism(ctx: WorkContext) -> int:
    return max(1, min(ctx.settings.compute.workers, os.cpu_count() or 1))


class PipelineRunner:
    """`done`: an earlier run, in the same job, of some of these steps (a part of the graph, e.g. a build's
    steps before its compose): their results are taken as they are, not run again."""

    def __init__(self, graph: Graph, ctx: WorkContext, options: RunOptions | None = None,
                 done: PipelineRunner | None = None) -> None:
        self.graph = graph
        self.ctx = ctx
        self.options = options or RunOptions()
        self.plans = graph.by_id()
        self.results: dict[str, OpResult] = {}
        self.records: dict[str, StepRecord] = {s.id: StepRecord(s.step.op) for s in graph.steps}
        if done is not None:
            self.results.update((sid, r) for sid, r in done.results.items() if sid in self.plans)
            self.records.update((sid, r) for sid, r in done.records.items() if sid in self.results)
        self.cache = StepCache.for_settings(ctx.settings)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._fractions: dict[str, float] = {sid: 1.0 if sid in self.results else 0.0 for sid in self.plans}
        self._weights = {s.id: s.step.weight for s in graph.steps}
        self._weight_sum = sum(self._weights.values())
        self._done = len(self.results)
        self._fetch_locks: dict[str, threading.Lock] = {}

    # ---- public
    def run(self) -> OpResult:
        workers = self.options.max_parallel or default_parallelism(self.ctx)
        waiting = {s.id: set(s.needs) - set(self.results) for s in self.graph.steps if s.id not in self.results}
        order = [s.id for s in self.graph.steps]
        running: dict[Future[OpResult], str] = {}
        failure: tuple[str, BaseException] | None = None
        with self._lock:  # 0 unless steps were done before (`done`)
            start = sum(f * self._weights[s] for s, f in self._fractions.items()) / self._weight_sum
        self.ctx.progress(start, f"{self._done}/{len(order)} starting")
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="step") as pool:
            while waiting or running:
                if failure is None and not self.ctx.cancelled():
                    for sid in [s for s in order if s in waiting and not waiting[s]]:
                        if len(running) >= workers:
                            break
                        del waiting[sid]
                        running[pool.submit(self._run_step, self.plans[sid])] = sid
                if not running:
                    break
                finished, _ = wait(list(running), timeout=0.5, return_when=FIRST_COMPLETED)
                for fut in finished:
                    sid = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        self.results[sid] = fut.result()
                        with self._lock:
                            self._done += 1
                            self._fractions[sid] = 1.0
                        for needs in waiting.values():
                            needs.discard(sid)
                        self._report(sid, None)
                    elif failure is None and not isinstance(exc, JobCancelled):
                        failure = (sid, exc)
                        self._stop.set()  # other steps see "cancelled" and kill their ffmpeg
        if failure is not None:
            raise _step_error(failure[0], self.plans[failure[0]].step.op, failure[1]) from failure[1]
        if self.ctx.cancelled() or waiting:
            raise JobCancelled("The job was cancelled.")
        self.ctx.progress(1.0, f"{len(order)}/{len(order)} done")
        return self._job_result()

    # ---- one step
    def _step_ctx(self, plan: StepPlan) -> WorkContext:
        # Each step gets its own context reporting to one aggregator (parallel steps share one progress bar),
        # with a cancel check that a failing sibling can trip too; its notes (encoder, device) are job-wide.
        def on_progress(fraction: float, stage: str | None) -> None:
            self._on_step_progress(plan.id, fraction, stage)

        return self.ctx.child(self.ctx.workdir / "steps" / plan.id, resolver=self._resolve,
                              on_progress=on_progress,
                              is_cancelled=lambda: self._stop.is_set() or self.ctx.cancelled())

    def _run_step(self, plan: StepPlan) -> OpResult:
        started = time.monotonic()
        record = self.records[plan.id]
        step_ctx = self._step_ctx(plan)
        step_ctx.check_cancelled()
        params_dict = substitute_refs(plan.step.params, lambda r: self._ref_value(plan, r))
        try:
            params = plan.operation.params_model.model_validate(params_dict)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise InvalidParams(f"{format_loc(('params', *err['loc']))}: {err['msg']}",
                                code="invalid_step_params") from None
        use_cache = self.options.cache if plan.step.cache is None else plan.step.cache
        key = None
        if use_cache:
            key = step_key(plan.step.op, self._hash_inputs(params.model_dump(mode="json"), step_ctx))
            record.key = key
            hit = self.cache.load(key, step_ctx.workdir / "out")
            if hit is not None:
                record.cached = True
                record.outputs = sorted(hit.outputs)
                record.seconds = time.monotonic() - started
                return hit
        step_ctx.progress(0.0, None)
        result = plan.operation.run(params, step_ctx)
        if not isinstance(result, OpResult):
            raise ProcessingError("the op returned no result", code="bad_op_result")
        record.outputs = sorted(result.outputs)
        if key is not None:
            self.cache.store(key, plan.step.op, result)
        record.seconds = time.monotonic() - started
        return result

    # ---- refs
    def _ref_value(self, consumer: StepPlan, ref: Ref) -> Any:
        result = self.results.get(ref.step)
        if result is None:  # cannot happen after a valid topological run; guard anyway
            raise ProcessingError(f"step {ref.step!r} has not run", code="step_not_ready")
        if ref.is_data:
            value: Any = result.data
            for key in ref.data_keys:
                if not isinstance(value, dict) or key not in value:
                    raise InvalidParams(f"ref {str(ref)!r}: step {ref.step!r} returned no value at that key "
                                        f"(it has: {', '.join(sorted(result.data)) or 'none'})",
                                        code="dangling_ref")
                value = value[key]
            return value
        if ref.output not in result.outputs:
            raise InvalidParams(f"ref {str(ref)!r}: step {ref.step!r} produced no output {ref.output!r} "
                                f"(it produced: {', '.join(sorted(result.outputs)) or 'nothing'})",
                                code="dangling_ref")
        return ref.placeholder

    def _resolve(self, ref: str, dest: Path) -> Path:
        step_ref = parse_step_url(ref)
        if step_ref is None:
            # one download per reference even when parallel steps ask for it at the same moment
            with self._lock:
                ref_lock = self._fetch_locks.setdefault(ref, threading.Lock())
            with ref_lock:
                return self.ctx.fetch(ref)
        result = self.results.get(step_ref.step)
        if result is None or step_ref.output not in result.outputs:
            raise InputError(f"Input {ref!r} is not an output of an earlier step.", code="input_not_found")
        return Path(result.outputs[step_ref.output])

    def _hash_inputs(self, value: Any, step_ctx: WorkContext) -> Any:
        """Params with each input reference replaced by {"sha256": <content hash of the resolved file>}."""
        if isinstance(value, dict):
            return {k: self._hash_inputs(v, step_ctx) for k, v in value.items()}
        if isinstance(value, list):
            return [self._hash_inputs(v, step_ctx) for v in value]
        if isinstance(value, str) and _looks_like_input(value):
            try:
                path = step_ctx.fetch(value)
            except ReelForgeError:
                return value  # not fetchable: the step itself will report it
            return {"sha256": file_sha256(path)}
        return value

    # ---- progress
    def _on_step_progress(self, sid: str, fraction: float, stage: str | None) -> None:
        with self._lock:
            self._fractions[sid] = max(self._fractions[sid], min(1.0, fraction))
        self._report(sid, stage)

    def _report(self, sid: str, stage: str | None) -> None:
        with self._lock:
            total = len(self._fractions)
            overall = sum(f * self._weights[s] for s, f in self._fractions.items()) / self._weight_sum
            done = self._done
            pct = round(self._fractions[sid] * 100)
        inner = f" {stage}" if stage else ""
        shown = f"{min(done + (0 if pct >= 100 else 1), total)}/{total} {sid}{inner} {pct}%"
        self.ctx.progress(overall, shown)

    # ---- outputs
    def _job_result(self) -> OpResult:
        final = self.graph.final
        final_result = self.results[final.id]
        outputs: dict[str, Path] = dict(final_result.outputs)
        if self.options.keep_intermediates:
            for plan in self.graph.steps:
                if plan.id != final.id:
                    for name, path in self.results[plan.id].outputs.items():
                        outputs[f"{plan.id}.{name}"] = Path(path)
        else:
            self._delete_intermediates(final.id)
        steps: dict[str, Any] = {}
        for plan in self.graph.steps:
            entry = self.records[plan.id].to_dict()
            if self.options.include_step_data:
                entry["data"] = self.results[plan.id].data
            steps[plan.id] = entry
        data = {**final_result.data, "final_step": final.id, "steps": steps}
        return OpResult(outputs=outputs, data=data)

    def _delete_intermediates(self, final_id: str) -> None:
        keep = {Path(p).resolve() for p in self.results[final_id].outputs.values()}
        for plan in self.graph.steps:
            if plan.id == final_id:
                continue
            for path in self.results[plan.id].outputs.values():
                p = Path(path)
                if p.resolve() not in keep and self.ctx.workdir in p.resolve().parents:
                    p.unlink(missing_ok=True)
            shutil.rmtree(self.ctx.workdir / "steps" / plan.id / "tmp", ignore_errors=True)


def _looks_like_input(value: str) -> bool:
    if parse_ref(value).kind != "other":  # file id, URL, s3://, step://, file://
        return True
    if len(value) > 1024 or "\n" in value or "/" not in value:
        return False
    try:
        return Path(value).is_file()
    except OSError:
        return False


def _step_error(sid: str, op: str, exc: BaseException) -> ReelForgeError:
    """The step's error, same class and code, its message naming the step."""
    prefix = f"step '{sid}' ({op}): "
    if isinstance(exc, ReelForgeError):
        details = {"step": sid, "op": op, **({"cause": exc.details} if exc.details is not None else {})}
        try:
            return type(exc)(prefix + exc.message, code=exc.code, details=details)
        except TypeError:  # a subclass with its own constructor
            return ProcessingError(prefix + exc.message, code=exc.code, details=details)
    return ProcessingError(f"{prefix}failed unexpectedly ({type(exc).__name__}: {exc})", code="step_crashed",
                           details={"step": sid, "op": op})


def run_graph(graph: Graph, ctx: WorkContext, options: RunOptions | None = None,
              done: PipelineRunner | None = None) -> OpResult:
    return PipelineRunner(graph, ctx, options, done).run()
