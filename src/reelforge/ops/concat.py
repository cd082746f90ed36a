"""`concat`: join clips; stream copy when all inputs share codec parameters, otherwise normalise them (to a
given size/fps or the reference clip's) and re-encode, optionally with transitions (xfade) between clips.

Stream copy is used only when the inputs' codec parameters *and* codec extradata (SPS/PPS) are identical:
MP4 keeps one set of decoder parameters per track, so clips from different encoders would decode wrongly.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from pydantic import Field, model_validator

from reelforge.errors import MediaError
from reelforge.media.codecs import AAC_ARGS
from reelforge.media.concat_list import concat_copy_args, copy_compatible, write_concat_list
from reelforge.media.encoders import EncoderChoice, Quality, VideoCodec, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output, ffprobe_bin, run_ffmpeg
from reelforge.media.filters import filter_expr
from reelforge.media.frame_rate import probed_rate, rate_arg
from reelforge.media.frame_size import FrameSizeText, even, parse_frame_size
from reelforge.media.inputs import probe_args
from reelforge.media.limits import check_duration_limit, check_frame_pixels, probe_input
from reelforge.media.probe import MediaInfo, require_video
from reelforge.media.transitions import (
    Transition,
    acrossfade_chain,
    joined_duration,
    normalise_audio_chain,
    normalise_video_chain,
    xfade_chain,
)
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES


class ConcatParams(Params):
    inputs: list[MediaRef] = Field(min_length=2, max_length=100)
    transition: Transition = "none"
    transition_s: float = Field(0.5, gt=0, le=5)
    size: FrameSizeText | None = Field(None, description="output size; default: the reference clip's")
    fps: int | None = Field(None, ge=1, le=60, description="output frame rate; default: the reference clip's")
    reference: int = Field(0, ge=0, description="index of the clip whose size/fps the others are fitted to")
    quality: Quality = "standard"
    codec: VideoCodec = "h264"

    @model_validator(mode="after")
    def _check(self) -> ConcatParams:
        if self.reference >= len(self.inputs):
            raise ValueError("reference must be the index of one of the inputs")
        return self


@dataclass(frozen=True)
class NormalisePlan:
    width: int
    height: int
    fps: str
    durations: tuple[float, ...]
    audio: bool
    graph: str
    duration_s: float


def clip_duration(info: MediaInfo) -> float:
    v = info.video
    return (v.duration_s if v and v.duration_s else None) or info.duration_s


def plan_normalise(params: ConcatParams, infos: list[MediaInfo]) -> NormalisePlan:
    """The filter graph re-encoding every clip to one size/fps (pure, table-tested)."""
    ref = require_video(infos[params.reference])
    if params.size:
        w, h = parse_frame_size(params.size)
    else:
        w, h = even(ref.width or 2), even(ref.height or 2)
    fps = rate_arg(params.fps or probed_rate(ref.fps, default=Fraction(30)))
    durations = tuple(clip_duration(i) for i in infos)
    if params.transition != "none" and params.transition_s >= min(durations):
        raise MediaError("transition_s must be shorter than the shortest clip.", code="transition_too_long")
    audio = any(i.audio is not None for i in infos)
    parts = []
    for k, info in enumerate(infos):
        parts.append(normalise_video_chain(f"{k}:v:0", f"v{k}", w, h, fps))
        if audio:
            if info.audio is not None:
                chain = normalise_audio_chain(f"{k}:a:0", f"an{k}")
                parts.append(chain)
                parts.append(f"[an{k}]apad,{filter_expr('atrim', end=round(durations[k], 6))}[a{k}]")
            else:
                silence = filter_expr("anullsrc", channel_layout="stereo", sample_rate=48000)
                parts.append(f"{silence},{filter_expr('aformat', sample_fmts='fltp')},"
                             f"{filter_expr('atrim', end=round(durations[k], 6))}[a{k}]")
    vlabels = [f"v{k}" for k in range(len(infos))]
    alabels = [f"a{k}" for k in range(len(infos))]
    if params.transition == "none":
        links = "".join(f"[{v}]" + (f"[{a}]" if audio else "") for v, a in zip(vlabels, alabels, strict=True))
        outs = "[vout]" + ("[aout]" if audio else "")
        parts.append(f"{links}{filter_expr('concat', n=len(infos), v=1, a=1 if audio else 0)}{outs}")
        total = sum(durations)
    else:
        parts += xfade_chain(vlabels, list(durations), params.transition, params.transition_s)
        if audio:
            parts += acrossfade_chain(alabels, params.transition_s)
        total = joined_duration(durations, params.transition_s)
    return NormalisePlan(w, h, fps, durations, audio, ";".join(parts), total)


def normalise_args(paths: list[Path], plan: NormalisePlan, enc: tuple[str, ...], out: Path) -> list[str]:
    args = [a for p in paths for a in ("-i", str(p))]
    args += ["-filter_complex", plan.graph, "-map", "[vout]"]
    if plan.audio:
        args += ["-map", "[aout]", *AAC_ARGS]
    return [*args, *enc, "-r", plan.fps, "-movflags", "+faststart", str(out)]


def extradata_hash(path: Path) -> tuple[str, ...]:
    """Hashes of each stream's codec extradata (SPS/PPS for H.264), to tell copy-compatible encodes apart."""
    cmd = [ffprobe_bin(), "-v", "error", "-show_data_hash", "md5", "-show_entries", "stream=extradata_hash",
           "-of", "csv=p=0", *probe_args(path)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return tuple(res.stdout.split())


@operation(
    "concat",
    params=ConcatParams,
    summary="Join clips: stream copy when compatible, else normalised re-encode; optional xfade transitions.",
    resources=ENCODES,
    timeout_s=3600,
    example={"inputs": ["https://example.com/a.mp4", "https://example.com/b.mp4"], "transition": "fade",
             "transition_s": 0.5},
)
def run(params: ConcatParams, ctx: OpContext) -> OpResult:
    ctx.stage("probing")
    paths = [ctx.fetch(ref) for ref in params.inputs]
    infos = []
    for k, p in enumerate(paths):
        info = probe_input(p, ctx.settings, params.inputs[k])
        try:
            require_video(info)
        except MediaError as exc:
            raise MediaError(f"Input {k + 1} has no video stream.", code=exc.code) from exc
        infos.append(info)
    check_duration_limit(sum(clip_duration(i) for i in infos), ctx.settings, "The joined video")
    out = ctx.output_path("video", ".mp4")
    copy = (params.transition == "none" and params.size is None and params.fps is None
            and copy_compatible(infos) and len({extradata_hash(p) for p in paths}) == 1)
    if copy:
        ctx.note(encoder="copy")
        total = sum(i.duration_s for i in infos)
        lst = write_concat_list(paths, ctx.temp_path("inputs.txt"))
        run_ffmpeg(concat_copy_args(lst, out, audio=infos[0].audio is not None, formats={i.demuxer for i in infos}),
                   ctx, duration_s=total,
                   stage="joining")
        method = "copy"
    else:
        plan = plan_normalise(params, infos)
        check_frame_pixels(plan.width, plan.height, ctx.settings)
        total = plan.duration_s

        def build(choice: EncoderChoice) -> list[str]:
            return normalise_args(paths, plan, choice.args, out)

        encode_with_fallback(build, ctx, params.quality, codec=params.codec, duration_s=total, stage="encoding")
        method = "reencode"
    ensure_file_output(out)
    ctx.progress(1.0)
    return OpResult(outputs={"video": out}, data={"method": method, "duration_s": round(total, 3),
                                                  "clips": len(paths), "encoder": ctx.notes.get("encoder")})
