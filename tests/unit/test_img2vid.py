"""img2vid: clips and joined video with exact durations, parallel rendering, bad input refused."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.errors import InvalidParams, MediaError
from reelforge.ops.context import OpContext
from reelforge.ops.img2vid import Img2VidParams
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import duration, frame_count, streams

OP = get_operation("img2vid")


def test_clips_have_exact_length_and_size(ctx, make_image):
    a, b = make_image(size="640x480", name="a.png"), make_image(size="300x500", name="b.png")
    progress = []
    ctx._on_progress = lambda f, s: progress.append(f)
    params = Img2VidParams(images=[str(a), {"image": str(b), "effect": "pan_down", "duration_s": 0.7}],
                           size="320x240", fps=10, duration_s=1.0, quality="draft")
    result = OP.run(params, ctx)
    assert sorted(result.outputs) == ["clip_001", "clip_002"]
    for name, seconds in (("clip_001", 1.0), ("clip_002", 0.7)):
        v = streams(result.outputs[name])
        assert len(v) == 1 and (v[0]["width"], v[0]["height"]) == (320, 240)
        assert frame_count(result.outputs[name]) == round(seconds * 10)
        assert abs(duration(result.outputs[name]) - seconds) <= 0.1 + 1e-6
    assert ctx.notes["encoder"] in ("libx264", "h264_nvenc")
    assert progress and max(progress) == pytest.approx(1.0) and progress == sorted(progress)


def test_join_with_transition(ctx, make_image):
    imgs = [str(make_image(size="400x300", name=f"{i}.png")) for i in range(3)]
    params = Img2VidParams(images=imgs, size="vertical_720", fps=10, duration_s=1.0, join=True,
                           transition="fade", transition_s=0.3, quality="draft", fit="contain")
    result = OP.run(params, ctx)
    assert list(result.outputs) == ["video"]
    out = result.outputs["video"]
    v = streams(out)[0]
    assert (v["width"], v["height"]) == (720, 1280)
    assert abs(duration(out) - (3 * 1.0 - 2 * 0.3)) <= 0.1 + 1e-6
    assert result.data["duration_s"] == pytest.approx(2.4)


def test_join_by_stream_copy(ctx, make_image):
    imgs = [str(make_image(size="320x240", name=f"{i}.png")) for i in range(2)]
    result = OP.run(Img2VidParams(images=imgs, size="160x120", fps=10, duration_s=0.5, join=True,
                                  keep_clips=True, quality="draft"), ctx)
    assert sorted(result.outputs) == ["clip_001", "clip_002", "video"]
    assert frame_count(result.outputs["video"]) == 10


def test_image_over_pixel_cap_is_refused_before_decoding(tmp_path, make_image):
    settings = Settings(data_dir=tmp_path / "d", max_image_pixels=100_000)
    ctx = OpContext.for_test(tmp_path / "w", settings)
    big = make_image(size="640x480")
    with pytest.raises(MediaError) as err:
        OP.run(Img2VidParams(images=[str(big)], size="320x240", fps=10, duration_s=0.5), ctx)
    assert err.value.code == "image_too_large"


def test_duration_over_the_service_limit(tmp_path, make_image):
    ctx = OpContext.for_test(tmp_path / "w", Settings(data_dir=tmp_path / "d", max_media_duration_s=10))
    with pytest.raises(InvalidParams) as err:
        OP.run(Img2VidParams(images=[str(make_image())] * 3, duration_s=5), ctx)
    assert err.value.code == "duration_too_long"


def test_not_an_image(ctx, tmp_path):
    bad = tmp_path / "x.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(MediaError):
        OP.run(Img2VidParams(images=[str(bad)], size="320x240", fps=10, duration_s=0.5), ctx)


@pytest.mark.parametrize("bad", [
    {"size": "321x240"}, {"size": "huge"}, {"size": "8000x8000"}, {"fps": 0}, {"fps": 61},
    {"duration_s": 0}, {"duration_s": -1}, {"duration_s": float("nan")}, {"duration_s": float("inf")},
    {"zoom": -0.1}, {"effect": "spin"}, {"images": []}, {"transition": "fade"},
    {"join": True, "transition": "fade", "transition_s": 2.0, "duration_s": 1.0}, {"colour": "red"},
])
def test_params_rejected_at_submit(bad):
    with pytest.raises(ValidationError):
        Img2VidParams(**{"images": ["a.jpg"], **bad})


def test_presets_and_example_are_valid():
    for size in ("1080p", "720p", "vertical_1080", "square_1080", "4:5", "1280x720"):
        Img2VidParams(images=["a.jpg"], size=size)
    assert OP.example is not None
    Img2VidParams(**OP.example)


def test_clips_from_two_encoders_are_joined_by_one_encode_not_by_copy(ctx, make_image, monkeypatch):
    """On a GPU worker one clip may fall back from NVENC to x264 (an NVENC failure) while the others keep
    NVENC: the two h264 streams differ in profile and parameter sets, and a stream copy would describe every
    clip with the first one's. This machine has no NVENC: the "hardware" encoder here is x264 with other
    settings (baseline profile), and it fails on the second image as NVENC would."""
    import subprocess

    from reelforge.errors import ProcessingError
    from reelforge.media.encoders import EncoderChoice
    from reelforge.ops import img2vid

    hw = EncoderChoice("h264_nvenc", "h264", "draft", ("-c:v", "libx264", "-profile:v", "baseline", "-preset",
                                                         "ultrafast", "-pix_fmt", "yuv420p"), hw=True)
    a, b = make_image(size="320x240", name="a.png"), make_image(size="320x240", name="b.png", source="testsrc")
    real = img2vid.render_kenburns

    def render(image, out, opts, args, **kw):  # type: ignore[no-untyped-def]
        if image == b and "baseline" in args:
            raise ProcessingError("h264_nvenc: no NVENC capable devices found", code="ffmpeg_failed")
        return real(image, out, opts, args, **kw)

    monkeypatch.setattr(img2vid, "choose_video_encoder", lambda *a, **k: hw)
    monkeypatch.setattr(img2vid, "render_kenburns", render)
    result = OP.run(Img2VidParams(images=[str(a), str(b)], size="160x120", fps=10, duration_s=1.0, join=True,
                                  quality="draft"), ctx)
    assert result.data["clip_encoders"] == ["h264_nvenc", "libx264"]
    assert "h264_nvenc failed" in ctx.notes["encoder_fallback"]
    assert result.data["join_encoder"] == "h264_nvenc"  # one encode of the whole, not a copy of the clips
    out = result.outputs["video"]
    assert frame_count(out) == 20
    decoded = subprocess.run(["ffmpeg", "-v", "error", "-i", str(out), "-f", "null", "-"], capture_output=True,
                             text=True, check=True)
    assert decoded.stderr == ""
