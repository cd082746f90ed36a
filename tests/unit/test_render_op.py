"""`render` for real: a three-track timeline rendered by ffmpeg, checked by duration, streams and pixels."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.media.probe import probe
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import get_operation
from tests.conftest import ffmpeg

W, H = 320, 180


def frame_at(path: Path, t: float, size: tuple[int, int] = (W, H)) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{t}", "-i", str(path), "-frames:v", "1", "-f",
                          "rawvideo", "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3).astype(int)


def render(ctx: OpContext, body: dict[str, Any]) -> OpResult:
    op = get_operation("render")
    return op.run(op.params_model.model_validate(body), ctx)


@pytest.fixture
def square_image(tmp_path: Path) -> Path:
    """A white 40x40 square on black, 160x90: its apparent size shows zoom."""
    out = tmp_path / "square.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=160x90", "-vf", "drawbox=x=60:y=25:w=40:h=40:c=white:t=fill",
           "-frames:v", "1", str(out))
    return out


def white_width(img: np.ndarray) -> int:
    row = img[img.shape[0] // 2]
    return int((row.mean(axis=1) > 200).sum())


def test_three_track_timeline_matches_its_declared_duration_and_effects(
        ctx: OpContext, tmp_path: Path, square_image: Path, make_audio: Any) -> None:
    blue = tmp_path / "blue.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=320x240:r=10:d=5", "-f", "lavfi", "-i", "sine=f=300:d=5",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(blue))
    music = make_audio(duration=2.0, name="music.wav", freq=600)
    body = {
        "timeline": {
            "background": "#000000",
            "soundtrack": {"src": str(music), "volume": 0.5, "fade_out": 0.5},
            "tracks": [
                # top: a caption-like text box over the bottom edge from 3 to 4 s
                {"clips": [{"asset": {"type": "text", "text": "Top: 'text' 100%", "size": 20, "box": True,
                                      "box_colour": "#FFFFFF", "colour": "black"},
                            "start": 3, "length": 1, "position": "bottom"}]},
                # middle: the square image in the top-left quarter, zooming in from 1 to 3 s
                {"clips": [{"asset": {"type": "image", "src": str(square_image)}, "start": 1, "length": 2,
                            "fit": "contain", "scale": 0.5, "position": "topLeft", "effect": "zoomIn"}]},
                # bottom: blue video fading in over the first second, trimmed
                {"clips": [{"asset": {"type": "video", "src": str(blue), "trim": 0.5}, "start": 0,
                            "length": 4, "fade_in": 1}]},
            ],
        },
        "output": {"format": "mp4", "size": f"{W}x{H}", "fps": 10, "quality": "draft"},
    }
    result = render(ctx, body)
    out = result.outputs["render"]
    info = probe(out)
    assert info.video is not None and (info.video.width, info.video.height) == (W, H)
    assert info.audio is not None
    assert abs(info.duration_s - 4.0) <= 0.1  # the declared length: last clip end
    assert result.data["duration_s"] == 4.0

    early, later = frame_at(out, 0.05), frame_at(out, 1.5)
    assert early[90, 250, 2] < later[90, 250, 2] - 60  # fade in: blue grows
    assert later[90, 250, 2] > 180 and later[90, 250, 0] < 60  # bottom video is blue
    # the image sits in the top-left quarter (contain fits 160x90 to 320x180; scale 0.5), over the blue
    assert later[45, 80].mean() > 200  # its white square
    assert later[5, 5, 2] < 60  # its black border, not blue
    # zoomIn: the square grows by about 1.2x between the start and the end of the clip
    start_w = white_width(frame_at(out, 1.05)[0:90, 0:160])
    end_w = white_width(frame_at(out, 2.9)[0:90, 0:160])
    assert end_w > start_w * 1.1
    # the text box appears only during its clip, at the bottom
    before, during = frame_at(out, 2.5), frame_at(out, 3.5)
    assert before[165, 160].mean() < 100 and during[165, 160].mean() > 200


def test_render_gif_and_poster(ctx: OpContext, make_image: Any) -> None:
    img = make_image(size="160x120")
    tl = {"tracks": [{"clips": [{"asset": {"type": "image", "src": str(img)}, "start": 0, "length": 1,
                                 "transition": {"in": "wipeRight", "duration": 0.5}}]}]}
    gif = render(ctx, {"timeline": tl, "output": {"format": "gif", "size": "160x90", "fps": 10}})
    assert probe(gif.outputs["render"]).video is not None
    poster = render(ctx, {"timeline": tl, "output": {"format": "png", "size": "160x90", "poster_at": 0.9}})
    frame = frame_at(poster.outputs["render"], 0, (160, 90))
    assert frame.std() > 20  # the test pattern, fully wiped in


def test_missing_input_fails_clearly(ctx: OpContext) -> None:
    from reelforge.errors import InputError

    with pytest.raises(InputError) as info:
        render(ctx, {"timeline": {"tracks": [{"clips": [{"asset": {"type": "image", "src": "/nope.png"},
                                                         "start": 0, "length": 1}]}]}})
    assert info.value.details["path"] == "timeline.tracks[0].clips[0].asset.src"
