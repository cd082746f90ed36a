"""`img2vid`: still images -> Ken Burns clips (sub-pixel smooth), optionally joined into one video.

Clips render in parallel (one thread per clip, each driving its own ffmpeg), bounded by cores or free
NVENC sessions, so a batch of 50 images holds at most `workers` decoded images at once. Joining uses
stream copy (all clips share encoder parameters) or, with a transition, one xfade re-encode.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from reelforge.media.concat_list import concat_copy_args, write_concat_list
from reelforge.media.encoders import (
    EncoderChoice,
    Quality,
    VideoCodec,
    choose_video_encoder,
    encode_with_fallback,
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
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES

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
                 abort: threading.Event) -> Path:
    def work(choice: EncoderChoice) -> Path:
        render_kenburns(image, out, opts, choice.args, size_hint=size,
                        on_frame=lambda done: progress.update(i, done),
                        cancelled=lambda: abort.is_set() or ctx.cancelled())
        return ensure_file_output(out, f"clip {i + 1}")

    return with_encoder_fallback(work, ctx, params.quality, params.codec, prefer=prefer)


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
    w, h = parse_frame_size(params.size)
    check_frame_pixels(w, h, ctx.settings)
    options = [params.clip_options(i) for i in range(len(params.images))]
    for opts in options:
        check_duration_limit(opts.duration_s, ctx.settings, "An image's duration")
    check_duration_limit(sum(o.duration_s for o in options), ctx.settings, "The total duration")

    ctx.stage("fetching")
    images: list[tuple[Path, tuple[int, int]]] = []
    for item in params.images:
        path = ctx.fetch(item.image)
        info = probe_image(path, ctx.settings, item.image)  # refuses decompression bombs before decoding
        assert info.video is not None and info.video.width and info.video.height
        images.append((path, (info.video.width, info.video.height)))
        ctx.check_cancelled()

    prefer = choose_video_encoder(ctx, params.quality, params.codec)
    workers = parallel_encodes(ctx, os.cpu_count() or 1, len(images))
    render_span = (0.02, 0.9 if params.join else 1.0)
    ctx.stage("rendering", render_span[0])
    progress = _Progress(ctx, [o.frames for o in options], render_span)
    abort = threading.Event()
    clips = [ctx.temp_path(f"clip_{i + 1:03d}.mp4") if params.join and not params.keep_clips
             else ctx.output_path(f"clip_{i + 1:03d}", ".mp4") for i in range(len(images))]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kenburns") as pool:
        futures = [pool.submit(_render_clip, i, path, size, options[i], clips[i], ctx, params, prefer, progress,
                               abort) for i, (path, size) in enumerate(images)]
        done, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = next((f for f in done if f.exception() is not None), None)
        if failed is not None:
            abort.set()  # stop the other clips quickly; the first error is the job's error
            for f in futures:
                f.cancel()
            ctx.check_cancelled()
            raise failed.exception()  # type: ignore[misc]

    data: dict[str, Any] = {"clips": len(clips), "size": f"{w}x{h}", "fps": params.fps,
                            "encoder": ctx.notes.get("encoder"), "workers": workers}
    outputs = {} if params.join and not params.keep_clips else {p.stem: p for p in clips}
    if not params.join:
        data["duration_s"] = [o.duration_s for o in options]
        return OpResult(outputs=outputs, data=data)

    ctx.stage("joining", render_span[1])
    out = ctx.output_path("video", ".mp4")
    durations = [o.frames / o.fps for o in options]
    if params.transition == "none" or len(clips) == 1:
        lst = write_concat_list(clips, ctx.temp_path("clips.txt"))
        run_ffmpeg(concat_copy_args(lst, out, audio=False), ctx)
        total = sum(durations)
    else:
        total = joined_duration(durations, params.transition_s)
        graph = ";".join(xfade_chain([f"{i}:v" for i in range(len(clips))], durations, params.transition,
                                     params.transition_s))

        def build(choice: EncoderChoice) -> list[str]:
            inputs = [a for c in clips for a in ("-i", str(c))]
            return [*inputs, "-filter_complex", graph, "-map", "[vout]", *choice.args, "-r", rate_arg(params.fps),
                    "-an", "-movflags", "+faststart", str(out)]

        used = encode_with_fallback(build, ctx, params.quality, codec=params.codec, duration_s=total,
                                    span=(render_span[1], 1.0), stage="joining", prefer=prefer)
        data["join_encoder"] = used.name
    ensure_file_output(out, "joined video")
    outputs["video"] = out
    data["duration_s"] = round(total, 3)
    ctx.progress(1.0)
    return OpResult(outputs=outputs, data=data)
