"""`probe`: ffprobe metadata of an input (duration, streams, codecs, size, fps), also stored as probe.json.

It reads metadata only, so an input over this service's caps (frame size, frame rate, duration, streams) is
still described, with `limits.ok` false and the problems other operations would refuse it for. Formats
that are not one ordinary media file (playlists, concat lists, image patterns) are refused like everywhere.
"""

from __future__ import annotations

import json

from reelforge.media.limits import input_limit_problems
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
    probed = probe(path, name=params.input)
    problems = input_limit_problems(probed, ctx.settings, params.input)
    info = {**probed.to_dict(), "limits": {"ok": not problems,
                                           "problems": [{"code": p.code, "message": p.message} for p in problems]}}
    out = ctx.output_path("probe", ".json")
    out.write_text(json.dumps(info, indent=2))
    ctx.progress(1.0)
    return OpResult(outputs={"probe": out}, data=info)
