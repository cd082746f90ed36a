"""`pipeline`: run several ops as one job, wired by refs, in parallel where possible, reusing cached steps."""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationInfo, model_validator

from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import Params
from reelforge.ops.registry import get_operation, operation, steps_resources
from reelforge.ops.resources import ResourceSpec
from reelforge.pipelines.graph import Graph, Step, build_graph
from reelforge.pipelines.runner import RunOptions, run_graph


class PipelineParams(Params):
    steps: list[Step] = Field(description="The steps; order comes from refs and depends_on.")
    cache: bool = Field(default=True, description="Reuse results of identical earlier steps (by content).")
    keep_intermediates: bool = Field(default=False,
                                     description="Store every step's outputs (as '<step>.<output>'), "
                                                 "not just the final step's.")
    max_parallel: int | None = Field(default=None, ge=1, le=32,
                                     description="Steps run at once (default: the worker's cores).")

    @model_validator(mode="after")
    def _check_graph(self, info: ValidationInfo) -> PipelineParams:
        # Raises InvalidParams (not ValueError) so the path of the bad field survives to the 422 answer.
        build_graph(self.steps, lookup=get_operation, context=info.context)
        return self

    def graph(self) -> Graph:
        return build_graph(self.steps, lookup=get_operation)


EXAMPLE: dict[str, Any] = {
    "steps": [
        {"id": "clip", "op": "probe", "params": {"input": "https://example.com/video.mp4"}},
        {"id": "again", "op": "probe", "params": {"input": "https://example.com/video.mp4"},
         "depends_on": ["clip"]},
    ],
}


@operation(
    "pipeline",
    params=PipelineParams,
    summary="Run several operations as one job: steps wired by refs, parallel, cached by content.",
    resources=ResourceSpec(derive=steps_resources, note="what its steps need together"),
    timeout_s=3 * 3600,
    example=EXAMPLE,
)
def run(params: PipelineParams, ctx: OpContext) -> OpResult:
    options = RunOptions(cache=params.cache, keep_intermediates=params.keep_intermediates,
                         max_parallel=params.max_parallel)
    return run_graph(params.graph(), ctx, options)
