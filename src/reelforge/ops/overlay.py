"""`overlay`: cut the person out of a talking-head video into a transparent circle / rounded rect.

    decode (ffmpeg, rgb24 pipe) -> batch -> person masks (mediapipe | rvm) -> crop to the shape
      -> temporal smoothing, threshold, feather -> x shape alpha (+ border ring) -> rgba
      -> encode (ffmpeg pipe): webm VP9 yuva420p | mov ProRes 4444 | composite mp4 onto a background

Memory is bounded by the batch size (chosen from the frame size), whatever the video's length. The
segmentation model is cached per worker process (reelforge.models.segmentation). Geometry, shape alpha,
mask filtering and ffmpeg argument lists are pure functions, unit-tested without running anything.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field, field_validator, model_validator

from reelforge.errors import MediaError
from reelforge.media.codecs import AAC_ARGS, DEFAULT_VIDEO_ARGS, OPUS_ARGS, PRORES_4444_ARGS, Quality, vp9_args
from reelforge.media.encoders import with_encoder_fallback
from reelforge.media.ffmpeg import ensure_file_output
from reelforge.media.frame_rate import parse_rate, probed_rate, rate_arg
from reelforge.media.frame_size import FrameSize, even_ceil, even_floor
from reelforge.media.framepipe import FramePipes, decode_args, rawvideo_input_args, rotation_of
from reelforge.media.limits import probe_input
from reelforge.media.probe import MediaInfo, StreamInfo, require_video
from reelforge.models.segmentation import EngineName, Segmenter, open_segmenter
from reelforge.ops import _overlay_seed003 as seed003
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import ENCODES, Resources, ResourceSpec, Variant

OutputKind = Literal["webm", "mov", "composite"]
ShapeKind = Literal["circle", "rect", "none"]
_HEX_RE = re.compile(r"^#?([0-9a-fA-F]{6})$")
# Per-engine defaults when the params leave them unset (None): mediapipe's masks are per-frame and
# flicker at the edges, so they get a threshold and smoothing; RVM's matte is already soft and stable.
ENGINE_DEFAULTS: dict[str, tuple[float, float]] = {"mediapipe": (0.5, 0.4), "rvm": (0.0, 0.0)}
_BATCH_BYTES = 48 * 1024**2  # rough working-set budget of one batch (rgb + masks + rgba)


class OverlayParams(Params):
    """Also accepts the seed-003 overlay function's names (video_url, container, circle_radius, ...,
    engine: rembg with rembg_model): see ops/_overlay_seed003.py."""

    input: MediaRef
    engine: EngineName = "mediapipe"
    engine_requested: str | None = Field(
        None, max_length=64, pattern=r"^rembg:[A-Za-z0-9_.-]+$",
        description="set by the service when a seed-003 `engine: rembg` was mapped onto `engine`")
    threshold: float | None = Field(None, ge=0, le=1, description="0 keeps the soft mask; None: engine default")
    feather: float = Field(3.0, ge=0, le=64, description="soft edge width in pixels")
    smoothing: float | None = Field(None, ge=0, le=0.95, description="temporal smoothing; None: engine default")
    downsample_ratio: float | None = Field(None, gt=0, le=1, description="rvm only; None: about 480 px")
    shape: ShapeKind = "circle"
    radius: float = Field(0.45, gt=0, le=1, description="circle radius, fraction of the shorter side")
    cx: float = Field(0.5, ge=0, le=1, description="shape centre x, fraction of the width")
    cy: float = Field(0.5, ge=0, le=1, description="shape centre y, fraction of the height")
    rect_width: float = Field(0.6, gt=0, le=1, description="fraction of the frame width")
    rect_height: float = Field(0.9, gt=0, le=1, description="fraction of the frame height")
    corner_radius: float = Field(0.0, ge=0, le=0.5, description="fraction of the rect's shorter side")
    crop: bool = Field(True, description="crop the output to the shape's bounding box")
    border_width: float = Field(0.0, ge=0, le=200, description="pixels, drawn inside the shape's edge")
    border_color: str = "#ffffff"
    output: OutputKind = "webm"
    quality: Quality = Field("standard", description="webm and composite encode quality")
    background: MediaRef | None = Field(None, description="video or image; required for composite")
    scale: float = Field(0.35, gt=0, le=1, description="composite: overlay height / background height")
    position_x: float = Field(1.0, ge=0, le=1, description="composite: 0 left .. 1 right of the free space")
    position_y: float = Field(1.0, ge=0, le=1, description="composite: 0 top .. 1 bottom of the free space")
    margin: float = Field(0.03, ge=0, le=0.4, description="composite: fraction of the background's shorter side")

    @model_validator(mode="before")
    @classmethod
    def _seed003_names(cls, data: Any) -> Any:
        return seed003.translate(data)

    @field_validator("border_color")
    @classmethod
    def _hex_colour(cls, v: str) -> str:
        m = _HEX_RE.match(v.strip())
        if not m:
            raise ValueError("border_color must be a hex colour like #ffffff")
        return "#" + m.group(1).lower()

    @model_validator(mode="after")
    def _consistent(self) -> OverlayParams:
        if self.output == "composite" and not self.background:
            raise ValueError("output 'composite' needs a background (video or image)")
        if self.output != "composite" and self.background:
            raise ValueError("background is only used with output 'composite'")
        if self.shape == "none" and self.border_width > 0:
            raise ValueError("a border needs a shape (circle or rect)")
        if self.downsample_ratio is not None and self.engine != "rvm":
            raise ValueError("downsample_ratio applies to engine 'rvm' only")
        return self

    @property
    def border_rgb(self) -> tuple[int, int, int]:
        h = self.border_color.lstrip("#")
        return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)

    def resolved_filter(self) -> tuple[float, float]:
        thr, smooth = ENGINE_DEFAULTS[self.engine]
        return (thr if self.threshold is None else self.threshold,
                smooth if self.smoothing is None else self.smoothing)


# ---------------------------------------------------------------- geometry (pure)
@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int


def frame_size_for(info: MediaInfo, rotation: int) -> tuple[int, int]:
    """Display size (rotation applied), rounded down to even numbers for 4:2:0 encoders."""
    v = require_video(info)
    w, h = int(v.width or 0), int(v.height or 0)
    if rotation in (90, 270):
        w, h = h, w
    return max(2, even_floor(w)), max(2, even_floor(h))


def shape_box(p: OverlayParams, width: int, height: int) -> Box:
    """The part of the frame the output keeps: the shape's bounding box (even-aligned) or the whole frame."""
    if p.shape == "none" or not p.crop:
        return Box(0, 0, width, height)
    cx, cy = p.cx * width, p.cy * height
    if p.shape == "circle":
        hw = hh = p.radius * min(width, height)
    else:
        hw, hh = p.rect_width * width / 2, p.rect_height * height / 2
    x0 = max(0, even_floor(cx - hw))
    y0 = max(0, even_floor(cy - hh))
    x1 = min(width, even_ceil(cx + hw))
    y1 = min(height, even_ceil(cy + hh))
    if x1 - x0 < 2 or y1 - y0 < 2:  # a sliver at the frame edge: keep at least a 2x2 box
        x0, y0 = min(x0, width - 2), min(y0, height - 2)
        x1, y1 = max(x1, x0 + 2), max(y1, y0 + 2)
    return Box(x0, y0, x1 - x0, y1 - y0)


@dataclass(frozen=True)
class ShapeAlpha:
    """Float maps over the cropped box: `inner` scales the person mask, `ring` is the opaque border."""

    inner: np.ndarray
    ring: np.ndarray | None
    ring_index: tuple[np.ndarray, np.ndarray] | None = field(default=None)


def signed_distance(p: OverlayParams, width: int, height: int, box: Box) -> np.ndarray | None:
    """Signed distance in px to the shape's edge (negative inside) at each pixel centre of `box`."""
    if p.shape == "none":
        return None
    xs = np.arange(box.x, box.x + box.w, dtype=np.float32) + 0.5 - p.cx * width
    ys = np.arange(box.y, box.y + box.h, dtype=np.float32) + 0.5 - p.cy * height
    if p.shape == "circle":
        r = p.radius * min(width, height)
        return np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2) - np.float32(r)
    hw, hh = p.rect_width * width / 2, p.rect_height * height / 2
    rr = p.corner_radius * 2 * min(hw, hh)
    qx = np.abs(xs)[None, :] - np.float32(hw - rr)
    qy = np.abs(ys)[:, None] - np.float32(hh - rr)
    outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2)
    inside = np.minimum(np.maximum(qx, qy), 0)
    return (outside + inside - np.float32(rr)).astype(np.float32)


def shape_alpha(p: OverlayParams, width: int, height: int, box: Box) -> ShapeAlpha:
    d = signed_distance(p, width, height, box)
    if d is None:
        return ShapeAlpha(np.ones((box.h, box.w), np.float32), None)
    outer = np.clip(0.5 - d, 0, 1)  # one pixel of anti-aliasing at the edge
    if p.border_width <= 0:
        return ShapeAlpha(outer.astype(np.float32), None)
    inner = np.clip(0.5 - (d + np.float32(p.border_width)), 0, 1).astype(np.float32)
    ring = (outer - inner).astype(np.float32)
    idx = np.nonzero(ring > 0)
    return ShapeAlpha(inner, ring, (idx[0], idx[1]))


# ---------------------------------------------------------------- mask filtering and compositing
class MaskFilter:
    """Temporal smoothing (an exponential average across frames), threshold, then feathering."""

    def __init__(self, threshold: float, feather_px: float, smoothing: float) -> None:
        self.threshold = threshold
        self.smoothing = smoothing
        self.sigma = feather_px / 2.0
        self._prev: np.ndarray | None = None

    def __call__(self, masks: np.ndarray) -> np.ndarray:
        out = masks if masks.flags.writeable else masks.copy()
        for i in range(out.shape[0]):
            m = out[i]
            if self.smoothing > 0 and self._prev is not None and self._prev.shape == m.shape:
                cv2.addWeighted(self._prev, self.smoothing, m, 1.0 - self.smoothing, 0.0, dst=m)
            self._prev = m.copy()
            if self.threshold > 0:
                np.greater_equal(m, self.threshold, out=m, casting="unsafe")
            if self.sigma > 0:
                cv2.GaussianBlur(m, (0, 0), self.sigma, dst=m, borderType=cv2.BORDER_REPLICATE)
        return out


def compose_rgba(frames: np.ndarray, masks: np.ndarray, shape: ShapeAlpha,
                 border_rgb: tuple[int, int, int]) -> np.ndarray:
    """(N,h,w,4) uint8 straight-alpha frames: alpha = mask x shape (+ border ring, drawn in its colour).

    OpenCV does the per-pixel work (channel append, multiply with rounding and saturation into uint8):
    about 8x faster than the same numpy expressions at 720p, which matters on a 2-core worker.
    """
    n, h, w = masks.shape
    rgba = np.empty((n, h, w, 4), np.uint8)
    colour = np.asarray(border_rgb, np.float32)
    for i in range(n):
        cv2.cvtColor(frames[i], cv2.COLOR_RGB2RGBA, dst=rgba[i])
        if shape.ring is None or shape.ring_index is None:
            rgba[i, :, :, 3] = cv2.multiply(masks[i], shape.inner, scale=255.0, dtype=cv2.CV_8U)
            continue
        alpha = cv2.multiply(masks[i], shape.inner)
        ys, xs = shape.ring_index
        ring = shape.ring[ys, xs]
        total = alpha[ys, xs] + ring
        share = (ring / np.maximum(total, 1e-6))[:, None]
        mixed = rgba[i, ys, xs, :3].astype(np.float32) * (1 - share) + colour * share
        rgba[i, ys, xs, :3] = np.clip(mixed + 0.5, 0, 255).astype(np.uint8)
        alpha[ys, xs] = np.minimum(total, 1.0)
        rgba[i, :, :, 3] = cv2.convertScaleAbs(alpha, alpha=255.0)
    return rgba


# ---------------------------------------------------------------- ffmpeg plans (pure)
@dataclass(frozen=True)
class CompositePlan:
    background: Path
    is_image: bool
    width: int  # output (background) size
    height: int
    overlay_w: int
    overlay_h: int
    x: int
    y: int


def plan_composite(p: OverlayParams, background: Path, bg_info: MediaInfo, box: Box) -> CompositePlan:
    v = require_video_or_image(bg_info)
    bw, bh = max(2, even_floor(v.width or 0)), max(2, even_floor(v.height or 0))
    oh = max(2, even_floor(p.scale * bh))
    ow = max(2, even_floor(oh * box.w / box.h))
    if ow > bw:  # a very wide overlay: fit the width instead
        ow = bw
        oh = max(2, even_floor(ow * box.h / box.w))
    m = round(p.margin * min(bw, bh))
    free_x, free_y = max(0, bw - ow - 2 * m), max(0, bh - oh - 2 * m)
    x = min(bw - ow, m + round(p.position_x * free_x))
    y = min(bh - oh, m + round(p.position_y * free_y))
    return CompositePlan(background, bg_info.is_image, bw, bh, ow, oh, x, y)


def require_video_or_image(info: MediaInfo) -> StreamInfo:
    v = info.video
    if v is None or not v.width or not v.height:
        raise MediaError("The background has no picture (video or image).", code="no_video_stream")
    return v


def fps_text(fps: float | None) -> str:
    """The probed rate as ffmpeg text (NTSC-exact: a probed 29.97 is 30000/1001); 25 when the probe has none."""
    return rate_arg(probed_rate(fps))


def encode_args(
    output: OutputKind,
    size: FrameSize,
    fps: str,
    out_path: Path,
    *,
    audio_source: Path | None,
    composite: CompositePlan | None = None,
    video_codec_args: Sequence[str] | None = None,
    quality: Quality = "standard",
) -> list[str]:
    """The encoder command (after ffmpeg's global flags). Input #0 is always the rgba pipe."""
    args = rawvideo_input_args(size, fps)
    if output == "composite":
        assert composite is not None
        c = composite
        if c.is_image:
            # Decode and convert the still once, then repeat it in the filter graph (`-loop 1` on the
            # input would decode and convert the image again for every frame).
            args += ["-i", str(c.background)]
            bg_chain = (f"scale={c.width}:{c.height},setsar=1,format=yuv420p,"
                        f"loop=loop=-1:size=1:start=0,setpts=N/({fps})/TB")
        else:
            args += ["-stream_loop", "-1", "-i", str(c.background)]
            bg_chain = f"scale={c.width}:{c.height},setsar=1,fps={fps},format=yuv420p"
        audio_input = 2
        graph = (
            f"[1:v]{bg_chain}[bg];"
            f"[0:v]scale={c.overlay_w}:{c.overlay_h}:flags=bicubic[ov];"
            f"[bg][ov]overlay=x={c.x}:y={c.y}:shortest=1:format=auto,format=yuv420p[v]"
        )
        args += ["-i", str(audio_source)] if audio_source else []
        args += ["-filter_complex", graph, "-map", "[v]", "-r", fps]  # the looped still carries no rate
        args += list(video_codec_args or DEFAULT_VIDEO_ARGS)
        audio = list(AAC_ARGS)
        container = ["-movflags", "+faststart", "-f", "mp4"]
    else:
        audio_input = 1
        args += ["-i", str(audio_source)] if audio_source else []
        args += ["-map", "0:v"]
        if output == "webm":
            args += vp9_args(quality, alpha=True)
            audio = list(OPUS_ARGS)
            container = ["-f", "webm"]
        else:
            args += PRORES_4444_ARGS
            audio = ["-c:a", "pcm_s16le"]
            container = ["-f", "mov"]
    if audio_source:
        args += ["-map", f"{audio_input}:a:0", *audio, "-shortest"]
    return [*args, *container, str(out_path)]


# ---------------------------------------------------------------- the operation
def _check_input(info: MediaInfo, ctx: OpContext) -> None:
    v = require_video(info)
    if not v.width or not v.height:
        raise MediaError("The video stream has no picture size.", code="no_video_stream")
    if v.width * v.height > ctx.settings.limits.max_video_pixels:
        raise MediaError(
            f"The video is {v.width}x{v.height}; the limit is {ctx.settings.limits.max_video_pixels} pixels per frame.",
            code="video_too_large",
        )
    if info.duration_s <= 0 or v.frames == 0:
        raise MediaError("The video has no frames (zero length).", code="empty_video")
    if info.duration_s > ctx.settings.limits.max_media_duration_s:
        raise MediaError(f"The video is longer than the {ctx.settings.limits.max_media_duration_s:.0f} s limit.",
                         code="media_too_long")


def batch_frames(width: int, height: int) -> int:
    per_frame = width * height * (3 + 4 + 4 + 4)  # rgb in, float mask, rgba out (+ slack)
    return int(max(1, min(8, _BATCH_BYTES // per_frame)))


@operation(
    "overlay",
    params=OverlayParams,
    summary="Talking-head background removal into a transparent circle / rect overlay (webm, mov or composite).",
    resources=ResourceSpec(ENCODES, (Variant({"engine": "rvm"}, Resources(gpu="preferred", vram_gb=1, nvenc=True)),
                                      )),  # mediapipe runs on the CPU (tflite); RVM's ONNX takes CUDA
    timeout_s=3600,
    example={"input": "https://example.com/talking-head.mp4", "engine": "mediapipe", "shape": "circle",
             "radius": 0.45, "border_width": 6, "border_color": "#ffffff", "output": "webm"},
)
def run(params: OverlayParams, ctx: OpContext) -> OpResult:
    t0 = time.monotonic()
    ctx.stage("fetching")
    source = ctx.fetch(params.input)
    info = probe_input(source, ctx.settings, params.input, "video")
    _check_input(info, ctx)
    video = require_video(info)
    width, height = frame_size_for(info, rotation_of(source))
    fps = fps_text(video.fps)
    box = shape_box(params, width, height)

    composite: CompositePlan | None = None
    if params.output == "composite":
        assert params.background is not None
        bg = ctx.fetch(params.background)
        bg_info = probe_input(bg, ctx.settings, params.background, "visual")
        bgv = require_video_or_image(bg_info)
        if (bgv.width or 0) * (bgv.height or 0) > ctx.settings.limits.max_video_pixels:
            raise MediaError("The background is larger than the pixel limit.", code="video_too_large")
        composite = plan_composite(params, bg, bg_info, box)

    threads = ctx.settings.compute.threads_per_job
    cv2.setNumThreads(threads)  # OpenCV's resize/blur pool is process-wide; keep it within the job's share
    ctx.stage("loading model", 0.02)
    seg = open_segmenter(params.engine, threads=threads, frame_size=(width, height),
                         device_preference=ctx.settings.media.device, downsample_ratio=params.downsample_ratio)
    ctx.note(engine=params.engine, device=seg.device, segmentation_model=seg.detail)
    if params.engine_requested:
        ctx.note(engine_requested=params.engine_requested,
                 engine_mapping=seed003.mapping_note(params.engine_requested, params.engine))

    suffix = {"webm": ".webm", "mov": ".mov", "composite": ".mp4"}[params.output]
    final = ctx.output_path("overlay", suffix)
    partial = final.with_name(final.name + ".part")
    job = _Render(params, ctx, seg, source, info, (width, height), fps, box, composite, partial)
    try:
        if composite is not None:
            # Rerunnable from scratch, so an NVENC failure mid-way re-renders on the CPU encoder.
            encoder = with_encoder_fallback(lambda c: job.render(c.args, c.name), ctx, params.quality)
        else:
            encoder = job.render(None, "libvpx-vp9" if params.output == "webm" else "prores")
            ctx.note(encoder=encoder)
        ensure_file_output(partial, "overlay video")
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
    ctx.progress(1.0, "done")
    out_w, out_h = (composite.width, composite.height) if composite else (box.w, box.h)
    return OpResult(
        outputs={"overlay": final},
        data={
            "output": params.output, "engine": params.engine, "device": seg.device, "encoder": encoder,
            "frames": job.frames_done, "fps": fps, "width": out_w, "height": out_h,
            "crop": {"x": box.x, "y": box.y, "w": box.w, "h": box.h},
            "seconds": round(time.monotonic() - t0, 3),
            "mask_ms_per_frame": round(1000 * job.mask_s / max(1, job.frames_done), 2),
        },
    )


@dataclass
class _Render:
    """One streaming pass: decode -> masks -> rgba -> encode. `render` can run again after a failure."""

    params: OverlayParams
    ctx: OpContext
    seg: Segmenter
    source: Path
    info: MediaInfo
    size: tuple[int, int]
    fps: str
    box: Box
    composite: CompositePlan | None
    out: Path
    frames_done: int = 0
    mask_s: float = 0.0

    def render(self, codec_args: Sequence[str] | None, encoder: str) -> str:
        p, ctx, box = self.params, self.ctx, self.box
        width, height = self.size
        self.seg.reset()
        threshold, smoothing = p.resolved_filter()
        mask_filter = MaskFilter(threshold, p.feather, smoothing)
        shape = shape_alpha(p, width, height, box)
        in_size, out_size = FrameSize(width, height, 3), FrameSize(box.w, box.h, 4)
        enc = encode_args(p.output, out_size, self.fps, self.out,
                          audio_source=self.source if self.info.audio is not None else None,
                          composite=self.composite, video_codec_args=codec_args, quality=p.quality)
        total = max(1, round(self.info.duration_s * float(parse_rate(self.fps))))
        per_batch = batch_frames(width, height)
        self.mask_s = 0.0
        done = 0
        ctx.stage("matting", 0.05)
        with FramePipes(ctx) as pipes:
            reader = pipes.reader(decode_args(self.source, in_size, self.fps), in_size)
            # One batch decoded ahead and two waiting for the encoder: decode, inference and encode
            # overlap on the job's cores; memory stays a few batches.
            writer = pipes.writer(enc, out_size).start_queue(2)
            for frames in reader.batches(per_batch, prefetch=1):
                pipes.raise_if_cancelled()
                t = time.monotonic()
                crop_m = self.seg.masks(frames, (box.x, box.y, box.w, box.h))  # only the shape's box
                self.mask_s += time.monotonic() - t
                crop_f = frames[:, box.y:box.y + box.h, box.x:box.x + box.w]
                writer.write(compose_rgba(crop_f, mask_filter(crop_m), shape, p.border_rgb))
                done += len(frames)
                ctx.progress(0.05 + 0.9 * min(1.0, done / total))
            if done == 0:
                raise MediaError("The video has no decodable frames.", code="empty_video")
            ctx.stage("finishing", 0.96)
            writer.close()
        self.frames_done = writer.frames_written
        return encoder
