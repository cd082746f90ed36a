"""`caption`: burn SRT, WebVTT or ASS captions (a file/URL, or inline text) into a video.

SRT/VTT get the job's `style` (captions.CaptionStyle, the model every caption op shares; the fields a
job leaves out keep caption's own look, BURN_IN_DEFAULTS) and are written as an .ass file;
ASS files keep their own styles. The subtitle file is written into the work dir under a fixed, plain
name and passed to the `ass` filter through media/filters, so neither the user's file name nor any text
or style value can reach the filter graph. Fonts come from the worker's font dir (DejaVu by default).

An h264 caption of an input longer than compute.chunk_threshold_s may be chunked (docs/CHUNKED.md): the
parent forks child `caption` jobs, each burning the same captions into one window of the input's frames
(video only), then joins them by stream copy and muxes the input's sound in, as the unchunked caption
copies it.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from reelforge.captions import BURN_IN_DEFAULTS, CaptionStyle, ass_style, pos_prefix
from reelforge.errors import InvalidParams, MediaError
from reelforge.media.codecs import chunkable_x264_args, gop_args
from reelforge.media.encoders import EncoderChoice, Quality, VideoCodec, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output
from reelforge.media.filters import filter_expr
from reelforge.media.frame_rate import parse_rate
from reelforge.media.limits import probe_input
from reelforge.media.probe import MediaInfo, require_video
from reelforge.media.subtitle_files import (
    SubtitleFormat,
    check_burn_size,
    detect_format,
    load_subtitles,
    read_subtitle_text,
    styled_ass,
)
from reelforge.ops.chunking import (
    chunk_count,
    chunk_key,
    encode_chunk,
    fork_chunks,
    gop_frames,
    join_chunks,
    resumed_chunks,
)
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES
from reelforge.pipelines.render_plan import Window, frame_count
from reelforge.pipelines.timeline import ChunkSpec

DEFAULT_FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")


class SubtitleSource(Params):
    """Where subtitles come from: a reference (`subtitles`) or inline text (`subtitles_text`)."""

    subtitles: MediaRef | None = None
    subtitles_text: str | None = Field(None, max_length=2_000_000)
    format: SubtitleFormat = "auto"

    @model_validator(mode="after")
    def _one_source(self) -> SubtitleSource:
        if (self.subtitles is None) == (self.subtitles_text is None):
            raise ValueError("give exactly one of subtitles (a file or URL) or subtitles_text (inline)")
        if self.subtitles_text is not None and not self.subtitles_text.strip():
            raise ValueError("subtitles_text is empty")
        return self


class CaptionParams(SubtitleSource):
    input: MediaRef
    style: CaptionStyle = CaptionStyle()
    quality: Quality = "standard"
    codec: VideoCodec = "h264"
    chunks: int | None = Field(default=None, ge=1, le=64, description=(
        "h264 captions of inputs longer than the chunk threshold (60 s by default): how many time chunks to "
        "burn as parallel child jobs (1: never split). Default: as many as the workers for the job's queue."))
    chunk: ChunkSpec | None = Field(default=None, description="Internal: set on a chunked caption's child jobs.")


def subtitle_text(source: SubtitleSource, ctx: OpContext) -> str:
    if source.subtitles_text is not None:
        return source.subtitles_text
    assert source.subtitles is not None
    return read_subtitle_text(ctx.fetch(source.subtitles))


def font_dir(ctx: OpContext) -> Path:
    return ctx.settings.media.font_dir or DEFAULT_FONT_DIR


def burn_filter(ass_path: Path, fonts: Path) -> str:
    return filter_expr("ass", filename=ass_path, fontsdir=fonts)


def caption_args(video: Path, ass_path: Path, fonts: Path, out: Path, enc: tuple[str, ...],
                 has_audio: bool) -> list[str]:
    return ["-i", str(video), "-map", "0:v:0", *(["-map", "0:a:0", "-c:a", "copy"] if has_audio else []),
            "-vf", burn_filter(ass_path, fonts), *enc, "-movflags", "+faststart", str(out)]


@operation(
    "caption",
    params=CaptionParams,
    summary="Burn SRT/VTT (styled) or ASS captions into a video.",
    resources=ENCODES,
    timeout_s=3600,
    example={"input": "https://example.com/clip.mp4", "subtitles_text": "1\n00:00:00,000 --> 00:00:02,000\n"
             "Hello, world!\n", "style": {"font_size": 60, "position": "bottom", "outline": 3}},
)
def run(params: CaptionParams, ctx: OpContext) -> OpResult:
    joining = ctx.resumed is not None  # the run after a chunked caption's chunks: progress starts at 95 %
    ctx.stage("probing", 0.95 if joining else 0.0)
    video_path = ctx.fetch(params.input)
    info = probe_input(video_path, ctx.settings, params.input, "video")
    v = require_video(info)
    text = subtitle_text(params, ctx)
    fmt = detect_format(text, params.format)
    subs = load_subtitles(text, fmt)
    check_burn_size(subs, info.duration_s, ctx.settings)
    work = ctx.workdir / "caption"
    work.mkdir(parents=True, exist_ok=True)
    ass_path = work / "captions.ass"  # our own plain name: nothing of the user's is in the path
    if fmt == "ass":
        # burn the user's script verbatim (pysubs2 only validated it): libass understands more of ASS
        # (embedded fonts, unusual Format lines) than a parse/write round trip keeps
        ass_path.write_text(text, encoding="utf-8")
    else:
        style = params.style.with_defaults(BURN_IN_DEFAULTS)
        subs = styled_ass(subs, ass_style(style), v.width or 1920, v.height or 1080, vtt=fmt == "vtt",
                          wrap_chars=style.max_chars_per_line, all_caps=style.all_caps, prefix=pos_prefix(style))
        subs.save(str(ass_path), format_="ass")
    fonts = font_dir(ctx)
    # a long h264 caption may be chunked (docs/CHUNKED.md): fixed keyframes on the input's frame rate either way
    rate = parse_rate(v.fps) if v.fps else None
    long_h264 = params.codec == "h264" and rate is not None and info.duration_s > ctx.settings.compute.chunk_threshold_s
    if params.chunk is not None:
        if params.chunk.sound:  # a render's sound child; a caption's sound is its input's, copied
            raise InvalidParams("chunk.sound is not a caption chunk.", code="invalid_chunk",
                                details={"path": "chunk.sound"})
        if rate is None:
            raise MediaError("The input's frame rate is unknown: it cannot be burned in chunks.", code="no_frame_rate")
        return _caption_chunk(params, params.chunk, ctx, info, video_path, ass_path, fonts, rate, work)
    gop = gop_frames(float(rate)) if long_h264 and rate is not None else 0
    chunks = chunk_count(params.chunks, ctx, info.duration_s) if gop and not joining else 1
    if chunks > 1 and rate is not None:
        frames = v.frames or frame_count(v.duration_s or info.duration_s, float(rate))
        return fork_chunks("caption", params.model_dump(mode="json"), frames, chunks, gop)
    out = ctx.output_path("video", ".mp4")
    has_audio = info.audio is not None
    pieces: list[Path] = []
    if joining:
        pieces = resumed_chunks(ctx)
        ctx.stage("joining chunks", 0.95)
        # the input's sound by stream copy, as the unchunked caption copies it
        extra, maps = (["-i", str(video_path)], ["0:v:0", "1:a:0"]) if has_audio else ([], ["0:v:0"])
        join_chunks(ctx, pieces, out, work, duration_s=info.duration_s, extra_inputs=extra, maps=maps,
                    span=(0.95, 1.0))
    else:
        def build(choice: EncoderChoice) -> list[str]:
            enc = choice.args
            if gop and not choice.hw:  # a long h264 caption on the CPU: as its chunks would be encoded
                enc = chunkable_x264_args(params.quality, gop, ctx.settings.compute.threads_per_job)
            elif gop:  # NVENC (unchunked): at least the same keyframes
                enc = (*enc, *gop_args(gop))
            return caption_args(video_path, ass_path, fonts, out, enc, has_audio)

        encode_with_fallback(build, ctx, params.quality, codec=params.codec, duration_s=info.duration_s,
                             stage="burning captions", span=(0.05, 1.0))
    ensure_file_output(out)
    ctx.progress(1.0)
    data: dict[str, Any] = {"format": fmt, "captions": len(subs.events), "encoder": ctx.notes.get("encoder")}
    if joining:
        data["chunks"] = len(pieces)
    return OpResult(outputs={"video": out}, data=data)


# demuxers whose -ss lands on the keyframe at or before the target (an index: mp4's sample table, mkv's
# cues); an MPEG-TS seek landed 2 s after it (on the next keyframe), so other inputs are read from the start
SEEKABLE_DEMUXERS = frozenset({"mov", "matroska"})


def chunk_args(video: Path, ass_path: Path, fonts: Path, out: Path, window: Window, rate: Fraction,
               enc: tuple[str, ...], *, seek: bool = True) -> list[str]:
    """One chunk's picture: the input's frames start_frame..end_frame (exclusive), with the captions burned
    on the input's own clock, timestamps then starting at 0; video only.

    The input is opened a little before the window when `seek` (-ss, a keyframe seek then ffmpeg's
    accurate trim; only for SEEKABLE_DEMUXERS), and the run ends once the window's frames are out
    (-frames:v), which also ends the reading. `-copyts -start_at_zero` keep the clock the unchunked caption
    sees (the file's timestamps less its start time), so `select` picks frames by their time on the frame
    grid (half a frame of tolerance) and the `ass` filter shows the same cues on the same frames."""
    a, b = window.start_frame / rate, None if window.end_frame is None else window.end_frame / rate
    margin = max(Fraction(1), 2 / rate)
    start = max(Fraction(0), a - margin)
    half = 1 / (2 * rate)
    seek_args = ["-ss", f"{float(start):.6f}"] if seek and start > 0 else []
    picked = f"gte(t,{float(a - half):.6f})" + (f"*lt(t,{float(b - half):.6f})" if b is not None else "")
    graph = f"{filter_expr('select', expr=picked)},{burn_filter(ass_path, fonts)},setpts=PTS-STARTPTS"
    frames = [] if window.end_frame is None else ["-frames:v", str(window.end_frame - window.start_frame)]
    return ["-copyts", "-start_at_zero", *seek_args, "-i", str(video), "-map", "0:v:0", "-an", "-vf", graph,
            *frames, *enc, "-movflags", "+faststart", str(out)]


def _caption_chunk(params: CaptionParams, spec: ChunkSpec, ctx: OpContext, info: MediaInfo, video: Path,
                   ass_path: Path, fonts: Path, rate: Fraction, work: Path) -> OpResult:
    """A child job: the captioned picture of one window, libx264 (the same encoder on every machine), from
    the step cache when the same chunk was burned before."""
    window = Window(spec.start_frame, spec.end_frame)
    out = ctx.output_path("chunk", ".mp4")
    enc = chunkable_x264_args(params.quality, spec.gop, ctx.settings.compute.threads_per_job)
    args = chunk_args(video, ass_path, fonts, out, window, rate, enc, seek=info.demuxer in SEEKABLE_DEMUXERS)
    key = chunk_key("caption.chunk", args, [str(video)], work, ctx.workdir)
    a, b = window.seconds(float(rate))
    seconds = (b if b is not None else info.duration_s) - a
    return encode_chunk(ctx, kind="caption.chunk", key=key, args=args, out=out, work=work, window=window,
                        seconds=seconds, stage="burning captions")
