"""The build's compose step (`build.compose`): its params, its inputs, and its one encode (ops/build.py has
the graph; a chunked build's children compose windows of it: ops/build_chunks.py, docs/CHUNKED.md)."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from reelforge.media.codecs import DEFAULT_VIDEO_ARGS, chunkable_x264_args, gop_args
from reelforge.media.encoders import EncoderChoice, Quality, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.frame_rate import parse_rate
from reelforge.media.frame_size import FrameSizeText, parse_frame_size
from reelforge.media.limits import probe_input
from reelforge.media.probe import MediaInfo, require_audio, require_video
from reelforge.ops.chunking import gop_frames
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.pipelines.compose_plan import (
    RAW_LOOP_MAX_BYTES,
    CaptionMode,
    ComposeInputs,
    Corner,
    HeadLayout,
    MusicMix,
    background_fits,
    compose_frames,
    needs_encode,
    plan_compose,
    raw_loop_bytes,
)


class Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MusicOptions(Options):
    volume: float = Field(default=0.25, ge=0, le=2)
    duck: bool = Field(default=True, description="lower the music while the narration speaks")
    fade_in: float = Field(default=1.0, ge=0, le=30)
    fade_out: float = Field(default=2.0, ge=0, le=30)


class HeadLayoutParams(Options):
    corner: Corner = "bottom_right"
    size: float = 0.3
    margin: float = 0.03
    loop: bool = True


class ComposeStepParams(Params):
    background: MediaRef
    narration: MediaRef
    head: MediaRef | None = None
    music: MediaRef | None = None
    ass: MediaRef | None = None
    srt: MediaRef | None = None
    captions: CaptionMode = "burn"
    size: FrameSizeText
    fps: int = Field(ge=1, le=60)
    quality: Quality = "standard"
    head_layout: HeadLayoutParams = Field(default_factory=HeadLayoutParams)
    music_mix: MusicOptions = Field(default_factory=MusicOptions)


def _decode_loop(background: MediaInfo, size: tuple[int, int], fps: int, duration_s: float,
                 ctx: OpContext) -> Path | None:
    """The background's loop period decoded once to raw frames on the job's disk, when it already has the
    output's size and rate (as build.cycle makes it), repeats at least twice and fits RAW_LOOP_MAX_BYTES
    (and the disk has room); None otherwise (the compose decodes it as it plays)."""
    need = raw_loop_bytes(background, size, fps)
    if (not background_fits(background, size, fps) or background.duration_s * 2 > duration_s
            or need > RAW_LOOP_MAX_BYTES):
        return None
    raw = ctx.temp_path("background.yuv")
    if shutil.disk_usage(raw.parent).free < need * 2:
        return None
    run_ffmpeg(["-i", background.path, "-map", "0:v:0", "-f", "rawvideo", "-pix_fmt", "yuv420p", str(raw)],
               ctx, duration_s=background.duration_s, span=(0.0, 0.02), stage="decoding background")
    return raw


def compose_inputs(params: ComposeStepParams, ctx: OpContext) -> ComposeInputs:
    """The compose's inputs, fetched and probed (the narration's length is the video's)."""
    narration = probe_input(ctx.fetch(params.narration), ctx.settings, params.narration, "audio")
    require_audio(narration)
    background = probe_input(ctx.fetch(params.background), ctx.settings, params.background, "video")
    require_video(background)
    head = probe_input(ctx.fetch(params.head), ctx.settings, params.head, "video") if params.head else None
    music = probe_input(ctx.fetch(params.music), ctx.settings, params.music, "audio") if params.music else None
    if music is not None:
        require_audio(music)
    return ComposeInputs(
        background=background, narration=narration, duration_s=narration.duration_s, head=head, music=music,
        ass=ctx.fetch(params.ass) if params.ass else None, srt=ctx.fetch(params.srt) if params.srt else None)


def subtitles_beside(ctx: OpContext, refs: dict[str, str | None]) -> dict[str, Path]:
    """The subtitle files ({"srt": ref, "ass": ref}) as outputs that travel beside the video, named like it."""
    outputs = {}
    for name, ref in refs.items():
        if ref:
            dest = ctx.output_path("video", f".{name}")
            shutil.copyfile(ctx.fetch(ref), dest)
            outputs[name] = dest
    return outputs


def compose_step(params: ComposeStepParams, ctx: OpContext) -> OpResult:
    size = parse_frame_size(params.size)
    inputs = compose_inputs(params, ctx)
    duration, background = inputs.duration_s, inputs.background
    if needs_encode(inputs, size, params.fps, params.captions):
        inputs = replace(inputs, background_raw=_decode_loop(background, size, params.fps, duration, ctx))
    out = ctx.output_path("video", ".mp4")
    layout = HeadLayout(**params.head_layout.model_dump())
    mix = MusicMix(**params.music_mix.model_dump())
    # a long encoded compose may be chunked (docs/CHUNKED.md): fixed keyframes either way, and on the CPU the
    # chunks' own x264 arguments, so a chunked build's picture is this one's
    gop = gop_frames(params.fps) if duration > ctx.settings.compute.chunk_threshold_s else 0

    def plan(video_args: tuple[str, ...] = DEFAULT_VIDEO_ARGS) -> list[str]:
        return plan_compose(inputs, out, size=size, fps=params.fps, mode=params.captions, head=layout,
                            music=mix, video_args=video_args, fonts_dir=ctx.settings.media.font_dir).args

    def encode_args(choice: EncoderChoice) -> list[str]:
        enc = choice.args
        if gop and not choice.hw:
            enc = chunkable_x264_args(params.quality, gop, ctx.settings.compute.threads_per_job)
        elif gop:  # NVENC (unchunked): at least the same keyframes
            enc = (*enc, *gop_args(gop))
        return plan(enc)

    planned = plan_compose(inputs, out, size=size, fps=params.fps, mode=params.captions, music=mix)
    if planned.copy_video:
        run_ffmpeg(plan(), ctx, duration_s=duration, stage="muxing")
        encoder = "copy"
    else:
        encoder = encode_with_fallback(encode_args, ctx, params.quality, duration_s=duration,
                                       span=(0.02, 1.0), stage="encoding").name
    if inputs.background_raw is not None:
        inputs.background_raw.unlink(missing_ok=True)  # GBs: not left until the job's cleanup
    ensure_file_output(out, "video")
    outputs = {"video": out, **subtitles_beside(ctx, {"srt": params.srt, "ass": params.ass})}
    frames = compose_frames(duration, float(parse_rate(params.fps)))
    return OpResult(outputs=outputs, data={"duration_s": round(duration, 3), "frames": frames,
                                           "video": encoder, "audio": "copy" if planned.copy_audio else "aac",
                                           "captions": params.captions,
                                           "decoded_loop": inputs.background_raw is not None,
                                           "size": list(size), "fps": params.fps})
