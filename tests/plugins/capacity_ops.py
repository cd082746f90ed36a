"""A cheap test-only GPU-queue operation for the capacity tests (loaded via REELFORGE_PLUGINS): it declares
that it wants a GPU and encodes with NVENC (so the `gpu` queue is encode-heavy and GPUs without NVENC are
never rented for it), then only waits a moment and reports the video length it "made"."""

from __future__ import annotations

import time

from pydantic import Field

from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources


class TickParams(Params):
    seconds: float = Field(default=0.1, ge=0, le=30)
    video_s: float = Field(default=10.0, ge=0)


@operation("test_gpu_tick", params=TickParams, summary="Test-only: a GPU-queue job that just waits.",
           resources=Resources(gpu="preferred", nvenc=True), timeout_s=60)
def run(params: TickParams, ctx: OpContext) -> OpResult:
    time.sleep(params.seconds)
    return OpResult(outputs={}, data={"duration_s": params.video_s})
