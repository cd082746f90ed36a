"""`probe`: ffprobe metadata of an input (duration, streams, codecs, size, fps), also stored as probe.json."""

from __future__ import annotations

import json

from reelforge.media.probe import probe
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation


class ProbeParams(Params):
    input: MediaRef


@operation(
    "probe",
    params=ProbeParams,
    summary="Media metadata: duration, streams, codecs, size, fps.",
    timeout_s=120,
    example={"input": "https://example.com/video.mp4"},
)
def run(params: ProbeParams, ctx: OpContext) -> OpResult:
    ctx.stage("fetching")
    path = ctx.fetch(params.input)
    ctx.stage("probing", 0.5)
    info = probe(path).to_dict()
    out = ctx.output_path("probe", ".json")
    out.write_text(json.dumps(info, indent=2))
    ctx.progress(1.0)
    return OpResult(outputs={"probe": out}, data=info)
