"""A test-only operation that writes more than a small disk holds (loaded via REELFORGE_PLUGINS), so tests
can see what ENOSPC in the middle of a job does: through ffmpeg's stderr, or a plain Python write."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from reelforge.media.ffmpeg import run_ffmpeg
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import Params
from reelforge.ops.registry import operation


class FillParams(Params):
    megabytes: int = Field(default=100, gt=0, le=1000)
    writer: Literal["ffmpeg", "python"] = "ffmpeg"


@operation("test_fill", params=FillParams, summary="Test-only: write N MB into the work folder.", timeout_s=120)
def run(params: FillParams, ctx: OpContext) -> OpResult:
    out = ctx.output_path("fill", ".raw")
    if params.writer == "python":
        block = b"\0" * (1024 * 1024)
        with out.open("wb") as fh:
            for _ in range(params.megabytes):
                fh.write(block)
                fh.flush()
    else:  # 320x240 rgb24 frames: 230,400 bytes each
        frames = params.megabytes * 1024 * 1024 // 230_400 + 1
        run_ffmpeg(["-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25", "-frames:v", str(frames),
                    "-pix_fmt", "rgb24", "-f", "rawvideo", str(out)], ctx)
    return OpResult(outputs={"raw": out}, data={})
