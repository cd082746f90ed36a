"""End-to-end tests of the `overlay` op on a video made at test time from scikit-image's astronaut.

The astronaut is cut out of `skimage.data.astronaut()` with a fixed silhouette defined here (an envelope
of ellipse + polygon, minus the grey studio wall), then moved across a textured noise background. The
silhouette's placement in every frame is therefore known exactly and is the ground truth for the masks.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from reelforge.errors import JobCancelled, MediaError
from reelforge.media.framepipe import FramePipes, FrameSize, decode_args
from reelforge.models.segmentation import open_segmenter
from reelforge.ops.context import OpContext
from reelforge.ops.overlay import OverlayParams
from reelforge.ops.overlay import run as run_overlay
from tests.unit.video_helpers import ffmpeg_children

W, H, FPS, N_FRAMES = 320, 240, 15, 30
PERSON_H = 220


def astronaut_cutout() -> tuple[np.ndarray, np.ndarray]:
    """The astronaut's head and shoulders (RGB) and its silhouette (bool), both PERSON_H tall."""
    from skimage import data

    img = data.astronaut()[:336]  # above the helmet she holds, so only the person remains
    h, w = img.shape[:2]
    env = np.zeros((h, w), np.uint8)
    cv2.ellipse(env, (226, 95), (82, 92), 0, 0, 360, 1, -1)
    body = np.array([[150, 150], [300, 150], [330, 250], [365, 300], [368, 336], [18, 336], [25, 290],
                     [60, 250], [110, 215]], np.int32)
    cv2.fillPoly(env, [body], 1)
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
    wall = (hsv[..., 1] < 60) & (hsv[..., 2] > 150)
    m = (env.astype(bool) & ~wall).astype(np.uint8)
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    _, lab, stats, _ = cv2.connectedComponentsWithStats(m)
    m = (lab == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])).astype(np.uint8)
    filled = m.copy()
    cv2.floodFill(filled, None, (0, 0), 2)  # fill holes: everything not reachable from the corner
    m = (filled != 2).astype(np.uint8)
    scale = PERSON_H / h
    size = (int(w * scale), PERSON_H)
    return (cv2.resize(img, size, interpolation=cv2.INTER_AREA),
            cv2.resize(m, size, interpolation=cv2.INTER_NEAREST).astype(bool))


def person_x(i: int) -> int:
    return round(60 * i / (N_FRAMES - 1))  # slides 60 px to the right over the clip


def make_frames() -> tuple[np.ndarray, np.ndarray]:
    person, sil = astronaut_cutout()
    ph, pw = sil.shape
    rng = np.random.default_rng(7)
    texture = cv2.resize(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8), (W, H),
                         interpolation=cv2.INTER_NEAREST)
    texture = cv2.GaussianBlur(texture, (0, 0), 2)
    frames = np.empty((N_FRAMES, H, W, 3), np.uint8)
    truth = np.zeros((N_FRAMES, H, W), bool)
    for i in range(N_FRAMES):
        x = person_x(i)
        f = texture.copy()
        vis = min(pw, W - x)
        region, cut = f[H - ph:, x:x + vis], sil[:, :vis]
        region[cut] = person[:, :vis][cut]
        truth[i, H - ph:, x:x + vis] = cut
        frames[i] = f
    return frames, truth


@pytest.fixture(scope="module")
def talking_head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """(video path, ground-truth masks): 2 s, 320x240, 15 fps, near-lossless H.264 + a 440 Hz tone."""
    frames, truth = make_frames()
    out = tmp_path_factory.mktemp("overlay") / "talking_head.mp4"
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
           "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{W}x{H}", "-framerate", str(FPS), "-i", "pipe:0",
           "-f", "lavfi", "-i", f"sine=frequency=440:duration={N_FRAMES / FPS}:sample_rate=48000",
           "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p",
           "-c:a", "aac", "-shortest", str(out)]
    subprocess.run(cmd, input=frames.tobytes(), check=True)
    return out, truth


def iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


def decode_rgba(path: Path, *, vp9_alpha: bool = False) -> np.ndarray:
    """All frames of `path` as (N,H,W,4) uint8. libvpx-vp9 is the decoder that reads VP9's alpha layer."""
    info = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "stream=width,height", "-of", "csv=p=0", str(path)],
                          capture_output=True, text=True, check=True).stdout.strip().split(",")
    w, h = int(info[0]), int(info[1])
    cmd = ["ffmpeg", "-v", "error", *(["-c:v", "libvpx-vp9"] if vp9_alpha else []), "-i", str(path),
           "-f", "rawvideo", "-pix_fmt", "rgba", "pipe:1"]
    raw = subprocess.run(cmd, capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(-1, h, w, 4)


def streams(path: Path) -> list[dict[str, str]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,codec_name,pix_fmt,profile", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    import json

    return json.loads(out)["streams"]


def circle_mask(radius_frac: float) -> np.ndarray:
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    return np.hypot(xs - W / 2, ys - H / 2) <= radius_frac * min(W, H)


# ---------------------------------------------------------------- masks against the known placement
@pytest.mark.parametrize("engine", ["mediapipe", "rvm"])
def test_masks_match_known_placement(engine: str, talking_head: tuple[Path, np.ndarray],
                                     ctx: OpContext) -> None:
    video, truth = talking_head
    seg = open_segmenter(engine, threads=2, frame_size=(W, H))  # type: ignore[arg-type]
    size = FrameSize(W, H, 3)
    scores: list[float] = []
    with FramePipes(ctx) as pipes:
        reader = pipes.reader(decode_args(video, size, str(FPS)), size)
        for batch in reader.batches(8):
            masks = seg.masks(batch)
            assert masks.dtype == np.float32 and masks.shape == batch.shape[:3]
            assert masks.min() >= 0.0 and masks.max() <= 1.0
            for m in masks:
                scores.append(iou(m >= 0.5, truth[len(scores)]))
    assert len(scores) == N_FRAMES
    # Measured: mediapipe min ~0.96, rvm min ~0.99 on this clip.
    assert min(scores) >= 0.8, f"{engine}: per-frame IoU {np.round(scores, 3).tolist()}"


@pytest.mark.parametrize("engine", ["mediapipe", "rvm"])
def test_masks_of_a_region_are_the_crop_of_the_full_masks(engine: str, talking_head: tuple[Path, np.ndarray],
                                                         ctx: OpContext) -> None:
    """The op asks only for the shape's box: mediapipe samples its upscaled output there alone, and that
    must be what cropping the full-size mask gives (RVM crops its full matte)."""
    video, _ = talking_head
    size = FrameSize(W, H, 3)
    with FramePipes(ctx) as pipes:
        batch = next(pipes.reader(decode_args(video, size, str(FPS)), size).batches(4))
    region = (W // 5 + 1, H // 7, W // 2 - 2, H // 2 + 4)  # odd offsets: not on any grid of the model's
    x, y, w, h = region
    full = open_segmenter(engine, threads=2, frame_size=(W, H)).masks(batch)  # type: ignore[arg-type]
    part = open_segmenter(engine, threads=2, frame_size=(W, H)).masks(batch, region)  # type: ignore[arg-type]
    assert part.shape == (len(batch), h, w) and part.flags.c_contiguous
    assert float(np.max(np.abs(part - full[:, y:y + h, x:x + w]))) < 1e-3


def test_model_input_is_an_area_average() -> None:
    """The cheaper shrink (2x2 averages, then INTER_AREA) stays within 3 levels of one INTER_AREA step."""
    import cv2

    from reelforge.models.segmentation import model_input

    rng = np.random.default_rng(3)
    frame = cv2.GaussianBlur(rng.integers(0, 256, (720, 1280, 3), dtype=np.uint8), (0, 0), 2.0)
    exact = cv2.resize(frame, (256, 256), interpolation=cv2.INTER_AREA).astype(np.int16)
    fast = model_input(frame, 256, 256).astype(np.int16)
    assert fast.shape == exact.shape
    # a slightly wider box than one step: on this fine texture max 3, mean 0.53 levels of 255
    assert int(np.abs(fast - exact).max()) <= 3 and float(np.abs(fast - exact).mean()) < 0.75
    odd = rng.integers(0, 256, (301, 517, 3), dtype=np.uint8)  # odd sizes: straight to INTER_AREA
    assert np.array_equal(model_input(odd, 256, 144), cv2.resize(odd, (256, 144), interpolation=cv2.INTER_AREA))


def test_segmentation_model_is_loaded_once_per_process() -> None:
    from reelforge.models import segmentation

    a = open_segmenter("mediapipe", threads=2, frame_size=(W, H))
    before = segmentation.cached_models()
    b = open_segmenter("mediapipe", threads=2, frame_size=(W, H))
    assert segmentation.cached_models() == before
    assert a._m is b._m  # type: ignore[attr-defined]  # one interpreter shared by both jobs


# ---------------------------------------------------------------- outputs
def test_webm_carries_alpha_circle_and_audio(talking_head: tuple[Path, np.ndarray], ctx: OpContext) -> None:
    video, truth = talking_head
    params = OverlayParams(input=str(video), shape="circle", radius=0.45, crop=False, output="webm")
    result = run_overlay(params, ctx)
    out = result.outputs["overlay"]
    assert out.suffix == ".webm" and not list(out.parent.glob("*.part"))
    kinds = {s["codec_type"]: s for s in streams(out)}
    assert kinds["video"]["codec_name"] == "vp9" and kinds["audio"]["codec_name"] == "opus"
    frames = decode_rgba(out, vp9_alpha=True)
    assert len(frames) == N_FRAMES
    alpha = frames[..., 3]
    outside = ~circle_mask(0.45 + 2 / min(W, H))
    far_outside = ~circle_mask(0.45 + 8 / min(W, H))
    # The frames we encode are exactly 0 there (see test_overlay_plan); VP9 codes the alpha plane lossily,
    # so blocks straddling the circle's edge ring a little (measured: max 11/255 within 8 px at crf 32).
    assert np.mean(alpha[:, outside] == 0) > 0.99
    assert alpha[:, outside].max() <= 16 and alpha[:, far_outside].max() <= 2
    core = np.stack([cv2.erode(t.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0 for t in truth])
    inside_person = core & circle_mask(0.45 - 3 / min(W, H))[None]
    assert np.mean(alpha[inside_person] > 0) > 0.98
    # the background (outside the person) inside the circle is mostly transparent too
    background = ~np.stack([cv2.dilate(t.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0 for t in truth])
    assert np.mean(alpha[background & circle_mask(0.45)[None]] <= 8) > 0.97
    assert ctx.notes["engine"] == "mediapipe" and ctx.notes["device"] == "cpu"
    assert ctx.notes["encoder"] == "libvpx-vp9"


def test_mov_prores_4444_rvm_with_border(talking_head: tuple[Path, np.ndarray], ctx: OpContext) -> None:
    video, truth = talking_head
    params = OverlayParams(input=str(video), engine="rvm", shape="rect", rect_width=0.8, rect_height=0.9,
                           corner_radius=0.25, border_width=4, border_color="#ff0000", output="mov")
    result = run_overlay(params, ctx)
    out = result.outputs["overlay"]
    kinds = {s["codec_type"]: s for s in streams(out)}
    assert kinds["video"]["codec_name"] == "prores" and "4444" in kinds["video"]["profile"]
    assert kinds["video"]["pix_fmt"].startswith("yuva")
    assert kinds["audio"]["codec_name"] == "pcm_s16le"
    crop = result.data["crop"]
    frames = decode_rgba(out)
    assert frames.shape[1:3] == (crop["h"], crop["w"]) == (216, 256)
    alpha = frames[..., 3]
    # corners are outside the rounded rect: transparent; the border ring is opaque red
    assert alpha[:, :3, :3].max() == 0 and alpha[:, -3:, -3:].max() == 0
    mid = crop["h"] // 2
    ring = frames[:, mid, 1]  # one pixel inside the left edge, inside the 4 px border
    assert ring[:, 3].min() > 240 and ring[:, 0].min() > 200 and ring[:, 1].max() < 40
    person = truth[:, crop["y"]:crop["y"] + crop["h"], crop["x"]:crop["x"] + crop["w"]]
    core = np.stack([cv2.erode(t.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0 for t in person])
    core[:, :, :8] = core[:, :, -8:] = False  # away from the border ring
    assert np.mean(alpha[core] > 200) > 0.97
    assert ctx.notes["engine"] == "rvm" and ctx.notes["encoder"] == "prores"


def test_composite_shows_background_where_alpha_is_zero(talking_head: tuple[Path, np.ndarray], ctx: OpContext,
                                                        tmp_path: Path) -> None:
    video, _ = talking_head
    bg = tmp_path / "bg.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "color=c=0x2050c0:s=480x270",
                    "-frames:v", "1", str(bg)], check=True)
    params = OverlayParams(input=str(video), shape="circle", radius=0.45, output="composite",
                           background=str(bg), scale=0.5, position_x=1.0, position_y=1.0, margin=0.0)
    result = run_overlay(params, ctx)
    out = result.outputs["overlay"]
    kinds = {s["codec_type"]: s for s in streams(out)}
    assert kinds["video"]["codec_name"] == "h264" and kinds["audio"]["codec_name"] == "aac"
    frames = decode_rgba(out)[..., :3].astype(int)
    assert frames.shape[1:3] == (270, 480) and abs(len(frames) - N_FRAMES) <= 1
    blue = np.array([0x20, 0x50, 0xC0])
    # the overlay is 136x136 (216 crop scaled to half of 270), bottom-right; outside its circle: background
    ov, x0, y0 = 134, 480 - 134, 270 - 134
    ys, xs = np.mgrid[0:270, 0:480] + 0.5
    outside = np.hypot(xs - (x0 + ov / 2), ys - (y0 + ov / 2)) > ov / 2 + 3
    err = np.abs(frames[:, outside] - blue).max(axis=-1)
    assert np.mean(err <= 12) > 0.995
    # the person's face is in the overlay: far from the background colour
    inner = frames[:, y0 + 30:y0 + 60, x0 + 50:x0 + 80]
    assert np.abs(inner - blue).max(axis=-1).mean() > 60


# ---------------------------------------------------------------- cancel
def test_cancel_mid_run_stops_pipeline_and_leaves_no_ffmpeg(talking_head: tuple[Path, np.ndarray],
                                                            tmp_path: Path) -> None:
    video, _ = talking_head
    flag = threading.Event()

    def on_progress(fraction: float, stage: str | None) -> None:
        if stage == "matting" and fraction > 0.06:  # after the first batch went through
            flag.set()

    ctx = OpContext.for_test(tmp_path / "w", on_progress=on_progress, is_cancelled=flag.is_set)
    with pytest.raises(JobCancelled):
        run_overlay(OverlayParams(input=str(video), output="mov"), ctx)
    assert flag.is_set()
    assert ffmpeg_children() == []
    assert not list((tmp_path / "w" / "out").glob("overlay*"))


def test_cancel_watcher_kills_blocked_ffmpeg(tmp_path: Path) -> None:
    flag = threading.Event()
    ctx = OpContext.for_test(tmp_path / "w", is_cancelled=flag.is_set)
    size = FrameSize(64, 48, 3)
    endless = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=25", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "pipe:1"]
    with FramePipes(ctx, poll_s=0.05) as pipes:
        reader = pipes.reader(endless, size)
        assert reader.read_batch(2) is not None
        pid = pipes.pids()[0]
        flag.set()  # the decoder is now blocked on a full pipe; only the watcher can stop it
        deadline = time.monotonic() + 5
        while pid in ffmpeg_children() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pid not in ffmpeg_children()
        with pytest.raises(JobCancelled):
            while reader.read_batch(64) is not None:
                pass


# ---------------------------------------------------------------- bad input
def test_rejects_input_without_video(make_audio: Callable[..., Path], ctx: OpContext) -> None:
    with pytest.raises(MediaError) as err:
        run_overlay(OverlayParams(input=str(make_audio(duration=1.0))), ctx)
    assert err.value.code == "no_video_stream"


def test_rejects_resolution_over_cap(make_video: Callable[..., Path], tmp_path: Path) -> None:
    from reelforge.config import Settings

    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", max_video_pixels=320 * 200))
    with pytest.raises(MediaError) as err:
        run_overlay(OverlayParams(input=str(make_video(duration=0.5, audio=False))), ctx)
    assert err.value.code == "video_too_large"


def test_rejects_zero_length_video(tmp_path: Path, ctx: OpContext) -> None:
    empty = tmp_path / "empty.y4m"
    empty.write_bytes(b"YUV4MPEG2 W320 H240 F15:1 Ip A1:1 C420jpeg\n")  # a video stream with no frames
    with pytest.raises(MediaError) as err:
        run_overlay(OverlayParams(input=str(empty)), ctx)
    assert err.value.code == "empty_video"


# ---------------------------------------------------------------- frame pipes: errors carry ffmpeg's words
def test_encoder_failure_raises_with_stderr_tail(tmp_path: Path, ctx: OpContext) -> None:
    from reelforge.errors import ProcessingError
    from reelforge.media.framepipe import rawvideo_input_args

    size = FrameSize(64, 48, 4)
    bad = [*rawvideo_input_args(size, "25"), "-c:v", "no_such_encoder", "-f", "null", "-"]
    frames = np.zeros((4, 48, 64, 4), np.uint8)
    with pytest.raises(ProcessingError) as err, FramePipes(ctx) as pipes:
        writer = pipes.writer(bad, size).start_queue(1)
        for _ in range(50):
            writer.write(frames)
        writer.close()
    assert "no_such_encoder" in err.value.message
    assert ffmpeg_children() == []


def test_decoder_failure_is_a_media_error(tmp_path: Path, ctx: OpContext) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 100)
    size = FrameSize(64, 48, 3)
    with pytest.raises(MediaError) as err, FramePipes(ctx) as pipes:
        list(pipes.reader(decode_args(junk, size, "25"), size).batches(4, prefetch=1))
    assert err.value.code == "media_decode_failed" and "Invalid data" in err.value.message
