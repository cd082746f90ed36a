"""Ken Burns geometry (pure) and rendering: smooth sub-pixel motion, never stretched, contain with fill."""

from __future__ import annotations

import itertools
import random

import cv2
import numpy as np
import pytest

from reelforge.media.encoders import cpu_encoder
from reelforge.media.kenburns import (
    EFFECTS,
    KenBurnsOptions,
    affine_for,
    camera_path,
    ease,
    frame_params,
    iter_frames,
    load_image,
    prepare_planes,
    reduced_decode_factor,
    render_kenburns,
    viewport_at,
)
from tests.unit.video_helpers import ffmpeg_children, frame_count, frames, streams


def _opts(**kw):
    base = {"width": 320, "height": 240, "fps": 25, "duration_s": 2.0}
    return KenBurnsOptions(**{**base, **kw})


@pytest.mark.parametrize("effect", EFFECTS)
@pytest.mark.parametrize(("cw", "ch"), [(640, 480), (1200, 400), (300, 900), (320, 240)])
def test_every_frame_stays_inside_and_keeps_aspect(effect, cw, ch):
    rnd = random.Random(f"{effect}{cw}{ch}")
    for _ in range(5):
        opts = _opts(effect=effect, zoom=rnd.uniform(0, 1.5), focus=(rnd.random(), rnd.random()),
                     easing=rnd.choice(["linear", "ease_in_out"]))
        start, end = camera_path(cw, ch, opts)
        for i in range(opts.frames):
            vp = viewport_at(start, end, frame_params(i, opts))
            assert vp.w / vp.h == pytest.approx(320 / 240)  # never stretched
            assert vp.cx - vp.w / 2 >= -1e-6 and vp.cx + vp.w / 2 <= cw + 1e-6
            assert vp.cy - vp.h / 2 >= -1e-6 and vp.cy + vp.h / 2 <= ch + 1e-6


def test_zoom_and_pan_endpoints():
    start, end = camera_path(640, 480, _opts(effect="zoom_in", zoom=0.25, focus=(0.5, 0.5)))
    assert (start.w, start.h, start.cx, start.cy) == (640, 480, 320, 240)
    assert end.w == pytest.approx(512) and (end.cx, end.cy) == (320, 240)
    zs, ze = camera_path(640, 480, _opts(effect="zoom_out", zoom=0.25))
    assert (zs, ze) == (end, start)
    left, right = camera_path(640, 480, _opts(effect="pan_right", zoom=0.25))
    assert left.cx == pytest.approx(256) and right.cx == pytest.approx(384)
    # a wide image pans across its width even without zoom
    s, e = camera_path(1200, 400, _opts(effect="pan_left", zoom=0.0))
    assert s.cx > e.cx and s.w == pytest.approx(400 * 320 / 240)
    # focus towards a corner is clamped so no border shows
    _, tight = camera_path(640, 480, _opts(effect="zoom_in", zoom=1.0, focus=(0.0, 1.0)))
    assert (tight.cx, tight.cy) == (160, 360)


def test_easing_and_affine():
    assert ease(0.0, "ease_in_out") == 0.0 and ease(1.0, "ease_in_out") == pytest.approx(1.0)
    assert ease(0.25, "linear") == 0.25 and ease(0.25, "ease_in_out") < 0.25
    m = affine_for(viewport_at(*camera_path(320, 240, _opts(effect="none")), 0.0), 320, 240)
    assert np.allclose(m, [[1, 0, 0], [0, 1, 0]])  # 1:1 view maps pixel centres onto pixel centres


def test_reduced_decode_factor():
    opts = _opts(width=1920, height=1080)
    assert reduced_decode_factor(1920, 1080, opts) == 1
    assert reduced_decode_factor(8000, 6000, opts) == 2
    assert reduced_decode_factor(24000, 16000, opts) == 4
    assert reduced_decode_factor(40000, 30000, opts) == 8


def _shifts(y_frames):
    out = []
    h, w = y_frames[0].shape
    window = cv2.createHanningWindow((w, h), cv2.CV_64F)
    for a, b in itertools.pairwise(y_frames):
        (dx, dy), _ = cv2.phaseCorrelate(a.astype(np.float64), b.astype(np.float64), window)
        out.append((dx, dy))
    return np.array(out)


def test_pan_is_smooth_to_the_subpixel(make_image):
    img = load_image(make_image(size="640x480"), _opts())
    opts = _opts(effect="pan_right", zoom=0.3, duration_s=2.0)
    planes = prepare_planes(img, opts)
    ys = [np.frombuffer(f, np.uint8)[: 320 * 240].reshape(240, 320).copy() for f in iter_frames(planes, opts)]
    shifts = _shifts(ys)
    dx = shifts[:, 0]
    # camera moves right -> picture moves left; a fraction of a pixel per frame, evenly
    assert (dx < 0).all()
    per_frame = abs(dx.mean())
    assert 0.3 < per_frame < 3
    # expected travel: canvas 416 px wide (640 * 1.3 * 320/640), view 320 px -> 96 px over 49 steps
    assert per_frame == pytest.approx(96 / 49, rel=0.05)
    # whole-pixel stepping shows second differences up to ~1 px; sub-pixel motion stays near 0
    second = np.abs(np.diff(dx))
    assert second.mean() < 0.03 and second.max() < 0.2, "motion must not step by whole pixels"
    assert np.abs(shifts[:, 1]).max() < 0.1


def test_render_cover_and_progress(tmp_path, make_image):
    out = tmp_path / "kb.mp4"
    opts = _opts(effect="zoom_in", duration_s=1.2, fps=10)
    done = []
    render_kenburns(make_image(size="800x400"), out, opts, cpu_encoder("h264", "draft").args,
                    on_frame=done.append)
    v = streams(out)[0]
    assert (v["width"], v["height"], v["codec_name"], v["pix_fmt"]) == (320, 240, "h264", "yuv420p")
    assert frame_count(out) == 12 and done[-1] == 12


def test_contain_shows_whole_image_over_blurred_fill(tmp_path, make_image):
    tall = make_image(size="240x480", name="tall.png")
    out = tmp_path / "contain.mp4"
    render_kenburns(tall, out, _opts(effect="none", fit="contain", duration_s=0.2, fps=10), cpu_encoder().args)
    frame = frames(out, count=1)[0].astype(np.float32)
    centre = frame[:, 120:200]
    side = frame[:, :50]
    # the image (sharp, detailed) in the middle; blurred, dimmed fill at the sides
    assert np.abs(np.diff(centre, axis=1)).mean() > 3 * np.abs(np.diff(side, axis=1)).mean()
    assert side.mean() < centre.mean()


def test_corrupt_image_is_a_media_error(tmp_path):
    from reelforge.errors import MediaError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(MediaError) as err:
        load_image(bad, _opts())
    assert err.value.code == "image_decode_failed"


def test_a_corrupt_image_stops_the_encoder_started_before_it(tmp_path):
    """ffmpeg starts before the image is decoded (its start-up overlaps the decode): a bad image must not
    leave it running."""
    from reelforge.errors import MediaError

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(MediaError):
        render_kenburns(bad, tmp_path / "out.mp4", _opts(), ("-c:v", "libx264", "-preset", "ultrafast"))
    assert ffmpeg_children() == []
