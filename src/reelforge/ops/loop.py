"""`loop`: repeat a clip forward or ping-pong (forward, reverse, forward, ...) to an exact target length.

Cost grows with the clip, not the target: the clip is encoded forward once and reversed once, the
repetitions are joined by the concat demuxer with stream copy, and only the final partial piece is
encoded again (cut on an exact frame). Reversing holds frames in memory, so the clip is reversed in
chunks of at most REVERSE_CHUNK_BYTES of decoded frames (about 3 s of 1080p30), chunks in reverse order.

The ping-pong turn does not repeat frames: the reversed leg is frames N-2..1, so one period is 2N-2
frames and the motion never stalls. The source's audio is dropped (reversed audio is rarely wanted);
with `audio` given, its length is the target and it is muxed in unless `mux_audio` is false.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from reelforge.errors import MediaError
from reelforge.media.codecs import AAC_ARGS
from reelforge.media.concat_list import concat_copy_args, write_concat_list
from reelforge.media.encoders import EncoderChoice, Quality, VideoCodec, with_encoder_fallback
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.filters import filter_expr
from reelforge.media.frame_rate import probed_rate, rate_arg
from reelforge.media.frame_size import Duration
from reelforge.media.limits import check_duration_limit, probe_input
from reelforge.media.probe import probe, require_audio, require_video
from reelforge.ops.add_audio import MP4_AUDIO_CODECS
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES

REVERSE_CHUNK_BYTES = 256 * 1024 * 1024


class LoopParams(Params):
    input: MediaRef
    mode: Literal["forward", "pingpong"] = "pingpong"
    duration_s: Duration | None = Field(None, le=24 * 3600, description="target length in seconds")
    audio: MediaRef | None = Field(None, description="target length = this audio's length")
    mux_audio: bool = Field(True, description="with audio: put that audio into the output")
    quality: Quality = "standard"
    codec: VideoCodec = "h264"

    @model_validator(mode="after")
    def _one_target(self) -> LoopParams:
        if (self.duration_s is None) == (self.audio is None):
            raise ValueError("give exactly one of duration_s or audio")
        return self


@dataclass(frozen=True)
class Piece:
    path: Path
    frames: int


# ---------------------------------------------------------------- planning (pure)
def chunk_ranges(start: int, end: int, chunk: int) -> list[tuple[int, int]]:
    """[start, end) split into consecutive ranges of at most `chunk` frames."""
    return [(a, min(end, a + chunk)) for a in range(start, end, max(1, chunk))]


def reverse_chunk_frames(width: int, height: int, budget: int | None = None) -> int:
    """Frames per reversed chunk so that `reverse` holds at most `budget` bytes of yuv420p frames."""
    return max(1, (REVERSE_CHUNK_BYTES if budget is None else budget) // max(1, width * height * 3 // 2))


def sequence_plan(cycle: list[Piece], target_frames: int) -> tuple[list[Piece], tuple[Piece, int] | None]:
    """Whole pieces repeated in order while they fit, then (piece, frames) to cut from the next one."""
    if not cycle or sum(p.frames for p in cycle) <= 0:
        raise ValueError("empty cycle")
    whole: list[Piece] = []
    total = 0
    while True:
        for piece in cycle:
            if total + piece.frames > target_frames:
                rest = target_frames - total
                return whole, ((piece, rest) if rest > 0 else None)
            whole.append(piece)
            total += piece.frames
            if total == target_frames:
                return whole, None


def _setpts(fps: Fraction) -> str:
    return filter_expr("setpts", expr=f"N*{fps.denominator}/{fps.numerator}/TB")


def forward_args(src: Path, out: Path, fps: Fraction, enc: tuple[str, ...],
                 fit: tuple[int, int] | None = None, limit_s: float | None = None) -> list[str]:
    """The clip at a constant frame rate, video only, with the job's encoder; with `fit` also scaled and
    cropped to cover that size (so a build fits and encodes its background in one pass); with `limit_s`
    only its first seconds."""
    filters = [filter_expr("fps", fps=rate_arg(fps)), _setpts(fps)]
    if fit is not None:
        w, h = fit
        filters = [f"scale={w}:{h}:force_original_aspect_ratio=increase", f"crop={w}:{h}", "setsar=1",
                   "format=yuv420p", *filters]
    limit = ["-t", f"{limit_s:.6f}"] if limit_s is not None else []
    return [*limit, "-i", str(src), "-map", "0:v:0", "-vf", ",".join(filters), *enc, "-r", rate_arg(fps), "-an",
            "-sn", "-dn", "-movflags", "+faststart", str(out)]


def reverse_chunk_args(fwd: Path, out: Path, first: int, end: int, fps: Fraction, enc: tuple[str, ...]) -> list[str]:
    """Frames [first, end) of the forward clip, reversed. Seeks to half a frame before `first` (exact with
    accurate seek), stops reading after the chunk, so only this chunk's frames are held by `reverse`."""
    count = end - first
    ss = max(0.0, (first - 0.5) / float(fps))
    vf = ",".join([filter_expr("trim", end_frame=count), "reverse", _setpts(fps)])
    return ["-ss", f"{ss:.6f}", "-t", f"{(count + 1) / float(fps):.6f}", "-i", str(fwd), "-vf", vf,
            *enc, "-r", rate_arg(fps), "-frames:v", str(count), "-an", "-movflags", "+faststart", str(out)]


def partial_args(piece: Path, out: Path, frames: int, fps: Fraction, enc: tuple[str, ...]) -> list[str]:
    vf = ",".join([filter_expr("trim", end_frame=frames), _setpts(fps)])
    return ["-i", str(piece), "-vf", vf, *enc, "-r", rate_arg(fps), "-frames:v", str(frames), "-an",
            "-movflags", "+faststart", str(out)]


# ---------------------------------------------------------------- running
def _count_frames(path: Path, fps: Fraction) -> int:
    info = probe(path)
    v = require_video(info)
    return v.frames if v.frames else round((v.duration_s or info.duration_s) * float(fps))


def encode_cycle(src: Path, ctx: OpContext, mode: str, fps: Fraction, source_s: float, enc: tuple[str, ...], *,
                 size: tuple[int, int], fit: bool = False, limit_s: float | None = None,
                 span: tuple[float, float] = (0.0, 0.9)) -> list[Piece]:
    """One period of the loop as pieces that join by stream copy: the clip forward, then (ping-pong) the
    clip reversed in chunks. `size` is the output frame size (it bounds the reverse chunks). With
    `limit_s` only the clip's first seconds are used."""
    lo, hi = span
    mid = lo + (hi - lo) / 2 if mode == "pingpong" else hi
    fwd_path = ctx.temp_path("forward.mp4")
    run_ffmpeg(forward_args(src, fwd_path, fps, enc, size if fit else None, limit_s), ctx,
               duration_s=min(source_s, limit_s or source_s), span=(lo, mid), stage="encoding forward")
    n = _count_frames(ensure_file_output(fwd_path, "forward clip"), fps)
    cycle = [Piece(fwd_path, n)]
    if mode == "pingpong" and n >= 3:
        ranges = chunk_ranges(1, n - 1, reverse_chunk_frames(*size))
        for k, (a, b) in enumerate(reversed(ranges)):
            ctx.check_cancelled()
            out = ctx.temp_path(f"reverse_{k:04d}.mp4")
            at = mid + (hi - mid) * k / len(ranges)
            run_ffmpeg(reverse_chunk_args(fwd_path, out, a, b, fps, enc), ctx, duration_s=(b - a) / float(fps),
                       span=(at, at + (hi - mid) / len(ranges)), stage="reversing")
            cycle.append(Piece(ensure_file_output(out, "reversed chunk"), b - a))
    return cycle


def _build_pieces(src: Path, ctx: OpContext, params: LoopParams, fps: Fraction, width: int, height: int,
                  source_s: float, target_frames: int) -> Callable[[EncoderChoice], list[Piece]]:
    def work(choice: EncoderChoice) -> list[Piece]:
        enc = choice.args
        cycle = encode_cycle(src, ctx, params.mode, fps, source_s, enc, size=(width, height))
        whole, partial = sequence_plan(cycle, target_frames)
        if partial is not None:
            piece, frames = partial
            cut = ctx.temp_path("partial.mp4")
            run_ffmpeg(partial_args(piece.path, cut, frames, fps, enc), ctx, stage="trimming")
            whole.append(Piece(ensure_file_output(cut, "final piece"), frames))
        return whole

    return work


@operation(
    "loop",
    params=LoopParams,
    summary="Loop a clip forward or ping-pong to an exact duration (or an audio file's length).",
    resources=ENCODES,
    timeout_s=3600,
    example={"input": "https://example.com/clip.mp4", "mode": "pingpong", "duration_s": 60},
)
def run(params: LoopParams, ctx: OpContext) -> OpResult:
    ctx.stage("probing")
    src = ctx.fetch(params.input)
    info = probe_input(src, ctx.settings, params.input, "video")
    video = require_video(info)
    if info.duration_s <= 0 or not video.width or not video.height:
        raise MediaError("The input video has no duration or size.", code="empty_media")
    check_duration_limit(info.duration_s, ctx.settings, "The input video")
    audio_path = None
    if params.audio is not None:
        audio_path = ctx.fetch(params.audio)
        audio_info = probe_input(audio_path, ctx.settings, params.audio, "audio")
        audio_stream = require_audio(audio_info)
        target_s = audio_info.duration_s
        if target_s <= 0:
            raise MediaError("The audio has no duration.", code="empty_media")
    else:
        assert params.duration_s is not None
        target_s = params.duration_s
    check_duration_limit(target_s, ctx.settings, "The target duration")

    fps = probed_rate(video.fps, default=Fraction(30))
    target_frames = max(1, round(target_s * fps))
    work = _build_pieces(src, ctx, params, fps, video.width, video.height, info.duration_s, target_frames)
    pieces = with_encoder_fallback(work, ctx, params.quality, params.codec)

    ctx.stage("joining", 0.92)
    out = ctx.output_path("video", ".mp4")
    lst = write_concat_list([p.path for p in pieces], ctx.temp_path("pieces.txt"))
    exact_s = target_frames / float(fps)
    if audio_path is not None and params.mux_audio:
        acodec = ["-c:a", "copy"] if audio_stream.codec in MP4_AUDIO_CODECS else list(AAC_ARGS)
        args = concat_copy_args(lst, out, duration_s=exact_s, extra_inputs=["-i", str(audio_path)],
                                maps=["0:v:0", "1:a:0"], output_args=["-c:v", "copy", *acodec])
    else:
        args = concat_copy_args(lst, out, audio=False)
    run_ffmpeg(args, ctx, duration_s=exact_s, span=(0.92, 1.0))
    ensure_file_output(out)
    ctx.progress(1.0)
    return OpResult(outputs={"video": out}, data={
        "duration_s": round(exact_s, 4), "frames": target_frames, "fps": rate_arg(fps), "mode": params.mode,
        "pieces": len(pieces), "encoder": ctx.notes.get("encoder")})
