"""Operations that exist only for tests of the job machinery (loaded via REELFORGE_PLUGINS).

`test_slow` runs a real ffmpeg encode paced at real time (-re), so a test can watch it run, cancel it, or
kill its process, and see what really happens to the ffmpeg child.
"""

from __future__ import annotations

import os
import time

from pydantic import Field

from reelforge.media.ffmpeg import run_ffmpeg
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources


class SlowParams(Params):
    seconds: float = Field(default=3.0, gt=0, le=600)
    marker: str = Field(default="slow", pattern=r"^[a-z0-9_-]{1,40}$")


@operation("test_slow", params=SlowParams, summary="Test-only: a real-time paced ffmpeg encode.", timeout_s=60,
           example={"seconds": 2.0, "marker": "example"})
def run(params: SlowParams, ctx: OpContext) -> OpResult:
    out = ctx.output_path(f"slow-{params.marker}", ".mp4")
    run_ffmpeg(["-re", "-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=10:duration={params.seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-metadata", f"comment={params.marker}", str(out)],
               ctx, duration_s=params.seconds, stage="encoding")
    return OpResult(outputs={"video": out}, data={"seconds": params.seconds})


class HostFactsParams(Params):
    pass


@operation("test_host_facts", params=HostFactsParams, summary="Test-only: what the job host process has loaded.",
           timeout_s=30)
def host_facts(params: HostFactsParams, ctx: OpContext) -> OpResult:
    import sys

    database = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic", "psycopg", "psycopg2")
                      or m.startswith("reelforge.jobs"))
    return OpResult(outputs={}, data={"database_modules": database, "nice": os.nice(0)})


class NeedsGpuParams(Params):
    pass


@operation("test_needs_gpu", params=NeedsGpuParams, summary="Test-only: declares it needs a 12 GB GPU.",
           resources=Resources(gpu="required", vram_gb=12.0), timeout_s=30)
def needs_gpu(params: NeedsGpuParams, ctx: OpContext) -> OpResult:
    return OpResult(outputs={}, data={"ran": True})


class GpuSlowParams(Params):
    seconds: float = Field(default=2.0, gt=0, le=60)


@operation("test_gpu_slow", params=GpuSlowParams, summary="Test-only: holds a 12 GB GPU for a while.",
           resources=Resources(gpu="required", vram_gb=12.0), timeout_s=60)
def gpu_slow(params: GpuSlowParams, ctx: OpContext) -> OpResult:
    deadline = time.monotonic() + params.seconds
    while time.monotonic() < deadline:
        ctx.check_cancelled()
        time.sleep(0.05)
    return OpResult(outputs={}, data={"ran": True})


class FlakyParams(Params):
    key: str = Field(pattern=r"^[a-z0-9_-]{1,40}$")
    fail_times: int = Field(default=1, ge=0, le=10)


@operation("test_flaky", params=FlakyParams, summary="Test-only: fails its first `fail_times` runs per key.",
           timeout_s=30)
def flaky(params: FlakyParams, ctx: OpContext) -> OpResult:
    from reelforge.errors import ProcessingError

    counter = ctx.settings.service.data_dir / "test_flaky" / params.key
    counter.parent.mkdir(parents=True, exist_ok=True)
    runs = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(runs))
    if runs <= params.fail_times:
        raise ProcessingError(f"test_flaky {params.key}: run {runs} fails on purpose.")
    out = ctx.output_path("flaky", ".txt")
    out.write_text(f"{params.key} ran {runs} times\n")
    return OpResult(outputs={"flaky": out}, data={"runs": runs})
