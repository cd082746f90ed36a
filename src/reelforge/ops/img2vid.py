"""`img2vid`: still images -> Ken Burns clips (sub-pixel smooth), optionally joined into one video.

Clips render in parallel (one thread per clip, each driving its own ffmpeg), bounded by cores or free
NVENC sessions, so a batch of 50 images holds at most `workers` decoded images at once. Joining uses
stream copy (all clips share encoder parameters) or, with a transition, one xfade re-encode. A long joined
video may be rendered in chunks of images by child jobs (docs/CHUNKED.md, img2vid_chunks.py).
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reelforge.errors import MediaError
from reelforge.media.concat_list import concat_copy_args, write_concat_list
from reelforge.media.encoders import (
    EncoderChoice,
    Quality,
    VideoCodec,
    choose_video_encoder,
    encode_with_fallback,
    intermediate_encoder,
    parallel_encodes,
    with_encoder_fallback,
)
from reelforge.media.ffmpeg import ensure_file_output, run_ffmpeg
from reelforge.media.frame_rate import rate_arg
from reelforge.media.frame_size import Duration, FrameSizeText, parse_frame_size
from reelforge.media.kenburns import Easing, Effect, Fit, KenBurnsOptions, render_kenburns
from reelforge.media.limits import check_duration_limit, check_frame_pixels, probe_image
from reelforge.media.transitions import Transition, joined_duration, xfade_chain
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.img2vid_chunks import (
    MAX_CHUNKS,
    Img2VidChunk,
    chunk_count,
    chunk_encoder,
    chunk_key,
    clip_name,
    plan_fork,
)
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES
from reelforge.pipelines.cache import StepCache

MAX_IMAGES = 200


class ImageItem(BaseModel):
    """One image and, optionally, its own motion (unset fields take the job-level defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    image: MediaRef
    duration_s: Duration | None = Field(None, le=3600)
    effect: Effect | None = None
    zoom: float | None = Field(None, ge=0, le=3)
    focus_x: float | None = Field(None, ge=0, le=1)
    focus_y: float | None = Field(None, ge=0, le=1)
    easing: Easing | None = None


class Img2VidParams(Params):
    images: list[ImageItem] = Field(min_length=1, max_length=MAX_IMAGES)
    size: FrameSizeText = "1080p"
    fps: int = Field(30, ge=1, le=60)
    duration_s: Duration = Field(5.0, le=3600, description="default seconds per image")
    effect: Effect = "zoom_in"
    zoom: float = Field(0.2, ge=0, le=3, description="tightest view is 1/(1+zoom) of the full view")
    focus_x: float = Field(0.5, ge=0, le=1)
    focus_y: float = Field(0.5, ge=0, le=1)
    easing: Easing = "linear"
    fit: Fit = "cover"
    join: bool = False
    keep_clips: bool = Field(False, description="with join: also return each clip")
    transition: Transition = "none"
    transition_s: float = Field(0.5, gt=0, le=5)
    quality: Quality = "standard"
    codec: VideoCodec = "h264"
    chunks: int | None = Field(None, ge=1, le=MAX_CHUNKS, description=(
        "joined h264 videos longer than the chunk threshold (60 s by default): how many groups of images to "
        "render as parallel child jobs (1: never split). Default: as many as the workers for the job's queue."))
    chunk: Img2VidChunk | None = Field(None, description="Internal: set on a chunked img2vid's child jobs.")

    @field_validator("images", mode="before")
    @classmethod
    def _plain_refs(cls, value: Any) -> Any:
        # a plain list of references is the common case
        if isinstance(value, list):
            return [{"image": v} if isinstance(v, str) else v for v in value]
        return value

    @model_validator(mode="after")
    def _check_transition(self) -> Img2VidParams:
        if self.transition != "none":
            if not self.join:
                raise ValueError("a transition needs join: true")
            shortest = min(self.clip_options(i).duration_s for i in range(len(self.images)))
            if self.transition_s >= shortest:
                raise ValueError("transition_s must be shorter than the shortest clip")
        if self.chunk is not None and not self.chunk.first < self.chunk.end <= len(self.images):
            raise ValueError("chunk: first..end must be a range of the images")
        return self

    def clip_options(self, i: int) -> KenBurnsOptions:
        item = self.images[i]
        w, h = parse_frame_size(self.size)

        def pick(value: Any, default: Any) -> Any:
            return default if value is None else value

        return KenBurnsOptions(
            width=w, height=h, fps=self.fps, duration_s=pick(item.duration_s, self.duration_s),
            effect=pick(item.effect, self.effect), zoom=pick(item.zoom, self.zoom),
            focus=(pick(item.focus_x, self.focus_x), pick(item.focus_y, self.focus_y)),
            easing=pick(item.easing, self.easing), fit=self.fit)


class _Progress:
    """Aggregates frames done across clips rendering in parallel into one job progress value."""

    def __init__(self, ctx: OpContext, totals: list[int], span: tuple[float, float]) -> None:
        self._ctx, self._totals, self._span = ctx, totals, span
        self._done = [0] * len(totals)
        self._lock = threading.Lock()
        self._all = max(1, sum(totals))

    def update(self, clip: int, frames_done: int) -> None:
        with self._lock:
            self._done[clip] = frames_done
            frac = sum(self._done) / self._all
        lo, hi = self._span
        self._ctx.progress(lo + (hi - lo) * frac)


def _render_clip(i: int, image: Path, size: tuple[int, int], opts: KenBurnsOptions, out: Path, ctx: OpContext,
                 params: Img2VidParams, prefer: EncoderChoice, progress: _Progress,
                 abort: threading.Event) -> str:
    """Render clip `i` into `out`; returns the encoder that made it (NVENC, or the CPU encoder it fell back to)."""
    def work(choice: EncoderChoice) -> str:
        render_kenburns(image, out, opts, choice.args, size_hint=size,
                        on_frame=lambda done: progress.update(i, done),
                        cancelled=lambda: abort.is_set() or ctx.cancelled())
        ensure_file_output(out, f"clip {i + 1}")
        return choice.name

    return with_encoder_fallback(work, ctx, params.quality, params.codec, prefer=prefer)


def _fetch_images(params: Img2VidParams, ctx: OpContext, indexes: range) -> list[tuple[Path, tuple[int, int]]]:
    images: list[tuple[Path, tuple[int, int]]] = []
    for i in indexes:
        ref = params.images[i].image
        path = ctx.fetch(ref)
        info = probe_image(path, ctx.settings, ref)  # refuses decompression bombs before decoding
        assert info.video is not None and info.video.width and info.video.height
        images.append((path, (info.video.width, info.video.height)))
        ctx.check_cancelled()
    return images


def _render_clips(params: Img2VidParams, ctx: OpContext, images: list[tuple[Path, tuple[int, int]]],
                  options: list[KenBurnsOptions], clips: list[Path], prefer: EncoderChoice,
                  span: tuple[float, float]) -> tuple[int, list[str]]:
    """Render one clip per image in parallel threads; returns how many ran at once and each clip's encoder."""
    workers = parallel_encodes(ctx, os.cpu_count() or 1, len(images))
    ctx.stage("rendering", span[0])
    progress = _Progress(ctx, [o.frames for o in options], span)
    abort = threading.Event()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kenburns") as pool:
        futures = [pool.submit(_render_clip, k, path, size, options[k], clips[k], ctx, params, prefer, progress,
                               abort) for k, (path, size) in enumerate(images)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            abort.set()  # stop the other clips quickly; the first error is the job's error
            for f in futures:
                f.cancel()
            ctx.check_cancelled()
            raise failed.exception()  # type: ignore[misc]
    return workers, [f.result() for f in futures]


def _joined_length(params: Img2VidParams, durations: list[float]) -> float:
    if params.transition == "none" or len(durations) == 1:
        return sum(durations)
    return joined_duration(durations, params.transition_s)


def _join(params: Img2VidParams, ctx: OpContext, pieces: list[Path], durations: list[float],
          span: tuple[float, float], prefer: EncoderChoice | None, data: dict[str, Any],
          mixed: bool = False) -> Path:
    """The joined video: `pieces` (clips, or chunks of clips) by stream copy, or with a transition the clips
    by one xfade re-encode. `mixed`: the clips came from different encoders (NVENC and the CPU encoder some
    fell back to): their h264 parameters differ, and a stream copy would describe them all with the first
    clip's, so they are joined by one encode."""
    out = ctx.output_path("video", ".mp4")
    cut = params.transition == "none" or len(durations) == 1
    if cut and not mixed:
        lst = write_concat_list(pieces, ctx.temp_path("clips.txt"))
        run_ffmpeg(concat_copy_args(lst, out, audio=False), ctx)
    else:
        if cut:
            graph = "".join(f"[{i}:v]" for i in range(len(pieces))) + f"concat=n={len(pieces)}:v=1:a=0[vout]"
        else:
            graph = ";".join(xfade_chain([f"{i}:v" for i in range(len(pieces))], durations, params.transition,
                                         params.transition_s))

        def build(choice: EncoderChoice) -> list[str]:
            inputs = [a for c in pieces for a in ("-i", str(c))]
            return [*inputs, "-filter_complex", graph, "-map", "[vout]", *choice.args, "-r", rate_arg(params.fps),
                    "-an", "-movflags", "+faststart", str(out)]

        used = encode_with_fallback(build, ctx, params.quality, codec=params.codec,
                                    duration_s=_joined_length(params, durations), span=span, stage="joining",
                                    prefer=prefer)
        data["join_encoder"] = used.name
    return ensure_file_output(out, "joined video")


@operation(
    "img2vid",
    params=Img2VidParams,
    summary="Images to Ken Burns video clips (smooth sub-pixel zoom/pan), optionally joined into one video.",
    resources=ENCODES,
    timeout_s=3600,
    example={"images": ["https://example.com/a.jpg", {"image": "https://example.com/b.jpg", "effect": "pan_left"}],
             "size": "1080p", "fps": 30, "duration_s": 5, "effect": "zoom_in", "zoom": 0.2, "join": True,
             "transition": "fade", "transition_s": 0.5},
)
def run(params: Img2VidParams, ctx: OpContext) -> OpResult:
    return render(params, ctx)


def render(params: Img2VidParams, ctx: OpContext, *, intermediate: bool = False) -> OpResult:
    """The img2vid op. `intermediate`: the caller decodes this video and encodes it again (a build's images
    under burned captions or a talking head), so on the CPU its h264 is the fast near-lossless intermediate
    (media/encoders.intermediate_encoder) rather than a second quality encode, and it is never chunked."""
    w, h = parse_frame_size(params.size)
    check_frame_pixels(w, h, ctx.settings)
    options = [params.clip_options(i) for i in range(len(params.images))]
    for opts in options:
        check_duration_limit(opts.duration_s, ctx.settings, "An image's duration")
    check_duration_limit(sum(o.duration_s for o in options), ctx.settings, "The total duration")
    durations = [o.frames / o.fps for o in options]
    if params.chunk is not None:
        return _render_chunk(params, ctx, options)
    if ctx.resumed is not None:
        return _join_chunks(params, ctx, durations)
    # a long joined h264 video may be chunked (docs/CHUNKED.md): on the CPU its clips are encoded as its
    # chunks' would be, chunked or not
    long_join = (params.join and params.codec == "h264" and not intermediate
                 and _joined_length(params, durations) > ctx.settings.compute.chunk_threshold_s)
    ctx.stage("fetching")
    images = _fetch_images(params, ctx, range(len(params.images)))  # a bad image fails here, before any fork
    threads = ctx.settings.compute.threads_per_job
    chunks = chunk_count(params.chunks, ctx, _joined_length(params, durations), len(options)) if long_join else 1
    if chunks > 1:
        separate = params.transition != "none" or params.keep_clips  # the parent needs the clips themselves
        return OpResult(fork=plan_fork(params.model_dump(mode="json"), [o.frames for o in options], durations,
                                       chunks, threads, separate))
    prefer = choose_video_encoder(ctx, params.quality, params.codec)
    if intermediate and not prefer.hw and params.codec == "h264":
        prefer = intermediate_encoder(params.quality)
    elif long_join and not prefer.hw:
        prefer = chunk_encoder(params.quality, threads)
    render_span = (0.02, 0.9 if params.join else 1.0)
    clips = [ctx.temp_path(f"{clip_name(i)}.mp4") if params.join and not params.keep_clips
             else ctx.output_path(clip_name(i), ".mp4") for i in range(len(images))]
    workers, encoders = _render_clips(params, ctx, images, options, clips, prefer, render_span)

    data: dict[str, Any] = {"clips": len(clips), "size": f"{w}x{h}", "fps": params.fps,
                            "encoder": ctx.notes.get("encoder"), "workers": workers}
    outputs = {} if params.join and not params.keep_clips else {clip_name(i): p for i, p in enumerate(clips)}
    if not params.join:
        data["duration_s"] = [o.duration_s for o in options]
        return OpResult(outputs=outputs, data=data)

    ctx.stage("joining", render_span[1])
    mixed = len(set(encoders)) > 1
    if mixed:
        data["clip_encoders"] = encoders
    outputs["video"] = _join(params, ctx, clips, durations, (render_span[1], 1.0), prefer, data, mixed)
    data["duration_s"] = round(_joined_length(params, durations), 3)
    ctx.progress(1.0)
    return OpResult(outputs=outputs, data=data)


# ---- chunked img2vid (docs/CHUNKED.md; planning and keys in img2vid_chunks.py)
def _render_chunk(params: Img2VidParams, ctx: OpContext, options: list[KenBurnsOptions]) -> OpResult:
    """A child job: the clips of images chunk.first..chunk.end with the parent's encoder, joined by stream
    copy as `chunk` (or each returned, when the parent joins with a transition or keeps the clips); from the
    step cache when the same images with the same motion were rendered before."""
    spec = params.chunk
    assert spec is not None
    indexes = range(spec.first, spec.end)
    ctx.stage("fetching")
    images = _fetch_images(params, ctx, indexes)
    mine = [options[i] for i in indexes]
    encoder = chunk_encoder(params.quality, spec.threads)
    names = [clip_name(i) for i in indexes] if spec.clips else ["chunk"]
    cache = StepCache.for_settings(ctx.settings)
    key = chunk_key([p for p, _ in images], mine, encoder.args, names)
    hit = cache.load(key, ctx.workdir / "cached")
    if hit is not None:
        ctx.note(chunk_cached=True, encoder=encoder.name)
        ctx.progress(1.0, "chunk from cache")
        return OpResult(outputs=hit.outputs, data={**hit.data, "cached": True})
    clips = [ctx.output_path(clip_name(i), ".mp4") if spec.clips else ctx.temp_path(f"{clip_name(i)}.mp4")
             for i in indexes]
    workers, _ = _render_clips(params, ctx, images, mine, clips, encoder, (0.02, 0.95))  # one CPU encoder
    if spec.clips:
        outputs = {clip_name(i): p for i, p in zip(indexes, clips, strict=True)}
    else:
        ctx.stage("joining", 0.95)
        chunk = ctx.output_path("chunk", ".mp4")
        run_ffmpeg(concat_copy_args(write_concat_list(clips, ctx.temp_path("clips.txt")), chunk, audio=False), ctx)
        outputs = {"chunk": ensure_file_output(chunk, "chunk")}
    result = OpResult(outputs=outputs, data={"first": spec.first, "end": spec.end, "workers": workers,
                                             "encoder": encoder.name})
    cache.store(key, "img2vid.chunk", result)
    ctx.progress(1.0)
    return result


def _join_chunks(params: Img2VidParams, ctx: OpContext, durations: list[float]) -> OpResult:
    """The parent's run after its chunks: the chunks joined by stream copy, or with a transition the clips
    by the one xfade re-encode the unchunked op makes."""
    resumed = ctx.resumed or {}
    children = resumed.get("children") or []
    separate = bool((resumed.get("state") or {}).get("clips"))
    ctx.stage("joining", 0.95)
    if separate:
        named = [(name, ref) for child in children for name, ref in sorted(child["outputs"].items())
                 if name.startswith("clip_")]
        if [name for name, _ in named] != [clip_name(i) for i in range(len(durations))]:
            raise MediaError("The chunked img2vid is missing clips to join.", code="chunk_missing")
        pieces = [ctx.fetch(ref) for _, ref in named]
    else:
        if not children or any("chunk" not in child["outputs"] for child in children):
            raise MediaError("The chunked img2vid has no chunks to join.", code="chunk_missing")
        pieces = [ctx.fetch(child["outputs"]["chunk"]) for child in children]
    w, h = parse_frame_size(params.size)
    data: dict[str, Any] = {"clips": len(durations), "size": f"{w}x{h}", "fps": params.fps,
                            "encoder": "libx264",
                            "workers": max(int(child["data"].get("workers") or 1) for child in children)}
    outputs = {clip_name(i): p for i, p in enumerate(pieces)} if params.keep_clips else {}
    outputs["video"] = _join(params, ctx, pieces, durations, (0.95, 1.0), None, data)
    data["duration_s"] = round(_joined_length(params, durations), 3)
    data["chunks"] = len(children)
    ctx.note(chunks=len(children))
    ctx.progress(1.0)
    return OpResult(outputs=outputs, data=data)
