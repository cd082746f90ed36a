"""Ken Burns motion with sub-pixel precision: OpenCV warps of a pre-scaled still, piped to an ffmpeg encoder.

Why not ffmpeg's zoompan: it rounds its crop window to whole input pixels every frame, which shows as
stepping/jitter (see BASELINES.md), and the common recipe upscales the image 3.5x first to hide that.
Here the camera is a rectangle ("viewport") in the image's own coordinates, interpolated with real
numbers, and each output frame is one bilinear `warpAffine` per Y/U/V plane of a source that was scaled
once (with INTER_AREA when shrinking) so the zoomed-in end still has about one source pixel per output
pixel. The image is converted to BT.709 limited-range YUV once, so frames leave as raw yuv420p and ffmpeg
only encodes.

Geometry (all pure, unit-tested): the "canvas" is the image (fit=cover) or an output-shaped picture of
the whole image over a blurred copy of itself (fit=contain). The base viewport is the largest
output-shaped rectangle inside the canvas; zooming shrinks it by 1/(1+zoom). Start and end viewports are
chosen per effect, and in between size and centre are interpolated with the same eased parameter: since
both ends lie inside the canvas, every frame does too (convexity), so the image is never stretched and
no border is ever shown.

Memory: one decoded image per render, dropped once the canvas is built; JPEGs much larger than needed
are decoded at 1/2, 1/4 or 1/8 size by libjpeg directly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from reelforge.errors import JobCancelled, MediaError, ProcessingError
from reelforge.media.ffmpeg import kill_process, open_ffmpeg_pipe
from reelforge.media.frame_rate import rate_arg
from reelforge.media.frame_size import even
from reelforge.media.framepipe import PipedFfmpeg, grow_pipe

Effect = Literal["zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down", "none"]
Easing = Literal["linear", "ease_in_out"]
Fit = Literal["cover", "contain"]
EFFECTS: tuple[Effect, ...] = ("zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down", "none")

# At the zoomed-out end the source is sampled at up to this many source pixels per output pixel; more
# would alias with bilinear sampling, less would blur the zoomed-in end (see `canvas_scale`).
MAX_DOWNSAMPLE = 1.5


@dataclass(frozen=True)
class KenBurnsOptions:
    width: int
    height: int
    fps: float
    duration_s: float
    effect: Effect = "zoom_in"
    zoom: float = 0.2  # zoom amount: the tightest view is 1/(1+zoom) of the base view
    focus: tuple[float, float] = (0.5, 0.5)  # point to zoom towards / keep in view, as fractions
    easing: Easing = "linear"
    fit: Fit = "cover"

    @property
    def frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))

    @property
    def max_zoom(self) -> float:
        return 1.0 if self.effect == "none" else 1.0 + self.zoom


@dataclass(frozen=True)
class Viewport:
    """An output-shaped rectangle in canvas pixels (edges, not centres): centre (cx, cy), size (w, h)."""

    cx: float
    cy: float
    w: float
    h: float


# ---------------------------------------------------------------- geometry (pure)
def base_size(canvas_w: float, canvas_h: float, out_w: int, out_h: int) -> tuple[float, float]:
    """The largest rectangle with the output's aspect ratio inside the canvas."""
    aspect = out_w / out_h
    if canvas_w / canvas_h > aspect:
        return canvas_h * aspect, float(canvas_h)
    return float(canvas_w), canvas_w / aspect


def _clamp_centre(c: float, size: float, extent: float) -> float:
    lo, hi = size / 2.0, extent - size / 2.0
    return lo if hi < lo else min(hi, max(lo, c))


def camera_path(canvas_w: float, canvas_h: float, opts: KenBurnsOptions) -> tuple[Viewport, Viewport]:
    """Start and end viewports of the effect in canvas pixels."""
    bw, bh = base_size(canvas_w, canvas_h, opts.width, opts.height)
    tw, th = bw / opts.max_zoom, bh / opts.max_zoom
    fx, fy = opts.focus[0] * canvas_w, opts.focus[1] * canvas_h

    def at(w: float, h: float, x: float | None = None, y: float | None = None) -> Viewport:
        return Viewport(_clamp_centre(fx if x is None else x, w, canvas_w),
                        _clamp_centre(fy if y is None else y, h, canvas_h), w, h)

    wide, tight = at(bw, bh), at(tw, th)
    left, right = at(tw, th, x=-math.inf), at(tw, th, x=math.inf)
    top, bottom = at(tw, th, y=-math.inf), at(tw, th, y=math.inf)
    paths: dict[str, tuple[Viewport, Viewport]] = {
        "zoom_in": (wide, tight), "zoom_out": (tight, wide), "none": (wide, wide),
        # the camera moves in the named direction (so the picture slides the other way)
        "pan_left": (right, left), "pan_right": (left, right), "pan_up": (bottom, top), "pan_down": (top, bottom),
    }
    return paths[opts.effect]


def ease(t: float, easing: Easing) -> float:
    t = min(1.0, max(0.0, t))
    return t if easing == "linear" else 0.5 - 0.5 * math.cos(math.pi * t)


def viewport_at(start: Viewport, end: Viewport, t: float) -> Viewport:
    """Linear interpolation of size and centre with one parameter: stays inside the canvas (convexity)."""
    return Viewport(start.cx + (end.cx - start.cx) * t, start.cy + (end.cy - start.cy) * t,
                    start.w + (end.w - start.w) * t, start.h + (end.h - start.h) * t)


def frame_params(i: int, opts: KenBurnsOptions) -> float:
    """Eased progress of frame i in [0, 1]."""
    n = opts.frames
    return ease(i / (n - 1), opts.easing) if n > 1 else 0.0


def affine_for(vp: Viewport, out_w: int, out_h: int, plane_div: int = 1) -> np.ndarray:
    """Inverse map (output pixel -> canvas pixel) for warpAffine, using pixel-centre conventions.

    For chroma planes (`plane_div=2`) both canvas and output are halved; the scale is unchanged and only
    the viewport's origin halves.
    """
    s = vp.w / out_w
    x0 = (vp.cx - vp.w / 2.0) / plane_div
    y0 = (vp.cy - vp.h / 2.0) / plane_div
    return np.array([[s, 0.0, x0 + 0.5 * s - 0.5], [0.0, s, y0 + 0.5 * s - 0.5]], dtype=np.float64)


def canvas_scale(image_w: int, image_h: int, opts: KenBurnsOptions) -> float:
    """Scale applied once to the image so the tightest viewport has >= 1 source pixel per output pixel
    (up to MAX_DOWNSAMPLE source pixels per output pixel at the widest view)."""
    if opts.fit == "contain":
        return 1.0  # the contain canvas is built at its final size directly
    bw, _ = base_size(image_w, image_h, opts.width, opts.height)
    return min(opts.max_zoom, MAX_DOWNSAMPLE) * opts.width / bw


def contain_canvas_size(opts: KenBurnsOptions) -> tuple[int, int]:
    k = min(opts.max_zoom, MAX_DOWNSAMPLE)
    return even(opts.width * k), even(opts.height * k)


def kenburns_ffmpeg_args(opts: KenBurnsOptions, encoder_args: tuple[str, ...] | list[str], out: Path) -> list[str]:
    """ffmpeg arguments: raw yuv420p frames on stdin -> encoded MP4 (no audio)."""
    tags = ["-color_range", "tv", "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709"]
    return ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{opts.width}x{opts.height}",
            "-framerate", rate_arg(opts.fps), "-i", "pipe:0", *encoder_args, *tags,
            "-frames:v", str(opts.frames), "-an", "-movflags", "+faststart", str(out)]


# ---------------------------------------------------------------- image -> canvas planes
def reduced_decode_factor(image_w: int, image_h: int, opts: KenBurnsOptions) -> int:
    """1, 2, 4 or 8: how much smaller libjpeg may decode the image and still cover the needed scale.
    Either orientation is assumed (EXIF rotation is applied after decoding)."""
    if opts.fit == "contain":
        cw, ch = contain_canvas_size(opts)
        need = max(min(cw / image_w, ch / image_h), min(cw / image_h, ch / image_w))
    else:
        need = max(canvas_scale(image_w, image_h, opts), canvas_scale(image_h, image_w, opts))
    for factor in (8, 4, 2):
        if need * factor <= 1.0:
            return factor
    return 1


_REDUCED_FLAGS = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


def load_image(path: Path, opts: KenBurnsOptions, size_hint: tuple[int, int] | None = None) -> np.ndarray:
    """Decode the image as BGR (EXIF orientation applied), at a reduced size when that is enough."""
    factor = reduced_decode_factor(*size_hint, opts) if size_hint else 1
    img = cv2.imread(str(path), _REDUCED_FLAGS[factor])
    if img is None:
        raise MediaError("The image could not be decoded; it may be corrupt or in an unsupported format.",
                         code="image_decode_failed")
    return img


def _bgr_to_yuv420(bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """BT.709 limited-range Y, U, V planes (U and V at half size) of an even-sized BGR picture."""
    f = bgr.astype(np.float32) * (1.0 / 255.0)
    b, g, r = f[..., 0], f[..., 1], f[..., 2]
    kr, kb = 0.2126, 0.0722
    y = kr * r + (1.0 - kr - kb) * g + kb * b
    u = (b - y) * (0.5 / (1.0 - kb))
    v = (r - y) * (0.5 / (1.0 - kr))
    h, w = y.shape
    half = (w // 2, h // 2)
    u_half = cv2.resize(u, half, interpolation=cv2.INTER_AREA)
    v_half = cv2.resize(v, half, interpolation=cv2.INTER_AREA)

    def to8(plane: np.ndarray, scale: float, offset: float) -> np.ndarray:
        return np.clip(plane * scale + offset + 0.5, 0, 255).astype(np.uint8)

    return to8(y, 219.0, 16.0), to8(u_half, 224.0, 128.0), to8(v_half, 224.0, 128.0)


def _resize(img: np.ndarray, w: int, h: int) -> np.ndarray:
    shrinking = w * h < img.shape[1] * img.shape[0]
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def build_canvas(img: np.ndarray, opts: KenBurnsOptions) -> np.ndarray:
    """The BGR picture the camera moves over: the scaled image (cover) or image over blurred fill (contain)."""
    ih, iw = img.shape[:2]
    if opts.fit == "cover":
        k = canvas_scale(iw, ih, opts)
        return _resize(img, even(iw * k), even(ih * k))
    cw, ch = contain_canvas_size(opts)
    # blurred fill: cover-scale a small copy, blur it (cheap at low resolution), scale up, dim a little
    small_w, small_h = max(2, cw // 16), max(2, ch // 16)
    cover = max(small_w / iw, small_h / ih)
    tiny = cv2.resize(img, (max(small_w, round(iw * cover)), max(small_h, round(ih * cover))),
                      interpolation=cv2.INTER_AREA)
    ty, tx = (tiny.shape[0] - small_h) // 2, (tiny.shape[1] - small_w) // 2
    tiny = cv2.GaussianBlur(tiny[ty:ty + small_h, tx:tx + small_w], (0, 0), sigmaX=2.0)
    canvas = (cv2.resize(tiny, (cw, ch), interpolation=cv2.INTER_LINEAR) * 0.6).astype(np.uint8)
    fit = min(cw / iw, ch / ih)
    fw, fh = max(1, round(iw * fit)), max(1, round(ih * fit))
    x, y = (cw - fw) // 2, (ch - fh) // 2
    canvas[y:y + fh, x:x + fw] = _resize(img, fw, fh)
    return canvas


@dataclass(frozen=True)
class CanvasPlanes:
    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        return self.y.shape[1], self.y.shape[0]


def prepare_planes(img: np.ndarray, opts: KenBurnsOptions) -> CanvasPlanes:
    canvas = build_canvas(img, opts)
    return CanvasPlanes(*_bgr_to_yuv420(canvas))


def iter_frames(planes: CanvasPlanes, opts: KenBurnsOptions) -> Iterator[memoryview]:
    """Raw yuv420p frames; the same buffer is reused, so consume each before asking for the next."""
    w, h = opts.width, opts.height
    cw, ch = planes.size
    start, end = camera_path(cw, ch, opts)
    buf = np.empty(w * h * 3 // 2, dtype=np.uint8)
    y = buf[: w * h].reshape(h, w)
    u = buf[w * h: w * h * 5 // 4].reshape(h // 2, w // 2)
    v = buf[w * h * 5 // 4:].reshape(h // 2, w // 2)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i in range(opts.frames):
        vp = viewport_at(start, end, frame_params(i, opts))
        cv2.warpAffine(planes.y, affine_for(vp, w, h, 1), (w, h), dst=y, flags=flags,
                       borderMode=cv2.BORDER_REPLICATE)
        m2 = affine_for(vp, w, h, 2)
        cv2.warpAffine(planes.u, m2, (w // 2, h // 2), dst=u, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        cv2.warpAffine(planes.v, m2, (w // 2, h // 2), dst=v, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        yield buf.data  # a memoryview of the frame buffer, refilled in place


# ---------------------------------------------------------------- runner
def render_kenburns(image: Path, out: Path, opts: KenBurnsOptions, encoder_args: tuple[str, ...],
                    *, size_hint: tuple[int, int] | None = None,
                    on_frame: Callable[[int], None] | None = None,
                    cancelled: Callable[[], bool] = lambda: False) -> None:
    """Render one still into an MP4. `on_frame(done)` is called after each frame is handed to ffmpeg."""
    if opts.width % 2 or opts.height % 2:
        raise ValueError("output width and height must be even")
    # ffmpeg first: its start (exec, libraries, encoder set-up) overlaps the image's decode and canvas
    child = PipedFfmpeg(open_ffmpeg_pipe(kenburns_ffmpeg_args(opts, encoder_args, out), write=True), "encoder")
    proc = child.proc
    assert proc.stdin is not None
    grow_pipe(proc.stdin.fileno())  # a 1080p frame is 3 MB: fewer, larger writes
    try:
        img = load_image(image, opts, size_hint)
        planes = prepare_planes(img, opts)
        del img  # only the canvas planes stay alive during the encode
        for done, frame in enumerate(iter_frames(planes, opts), start=1):
            if cancelled():
                kill_process(proc)
                raise JobCancelled("The job was cancelled.")
            _write_all(proc.stdin, frame)
            if on_frame is not None:
                on_frame(done)
        proc.stdin.close()
    except BrokenPipeError:
        pass  # ffmpeg exited early; its exit status and stderr say why
    except BaseException:
        kill_process(proc)
        raise
    rc = proc.wait()
    if rc != 0:
        raise ProcessingError(f"ffmpeg failed encoding the Ken Burns frames (exit {rc}): {child.stderr_tail()}",
                              code="ffmpeg_failed")


def _write_all(stream: object, data: memoryview) -> None:
    view = data.cast("B")
    write = stream.write  # type: ignore[attr-defined]
    while len(view):
        n = write(view)
        if n is None:  # non-blocking pipe not ready; ours are blocking, but be safe
            continue
        view = view[n:]
