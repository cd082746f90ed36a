"""Shotstack edits rendered by the native `render` op (no HTTP): gif/jpg/png/mp3 outputs, poster and
thumbnail, range and scaleTo, text boxes, captions; sizes, rates, durations and pixels checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.formats.shotstack import translate
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import get_operation
from tests.conftest import ffmpeg

W, H = 160, 90


def render(ctx: OpContext, edit: dict[str, Any]) -> OpResult:
    op = get_operation("render")
    return op.run(op.params_model.model_validate(translate(edit).params), ctx)


def info(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,codec_name,width,height,r_frame_rate:format=duration", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def pixels(path: Path, size: tuple[int, int], t: float = 0.0) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{t}", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3).astype(int)


@pytest.fixture
def clip_video(tmp_path: Path) -> Path:
    out = tmp_path / "red.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x90:r=10:d=2", "-f", "lavfi", "-i", "sine=f=500:d=2", "-c:v",
           "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out))
    return out


def edit(src: Path, output: dict[str, Any], **clip: Any) -> dict[str, Any]:
    return {"timeline": {"background": "#0000FF", "tracks": [{"clips": [
        {"asset": {"type": "video", "src": str(src)}, "start": 0, "length": 2, **clip}]}]},
        "output": {"size": {"width": W, "height": H}, **output}}


def test_gif_jpg_png_and_mp3_outputs(ctx: OpContext, clip_video: Path) -> None:
    gif = render(ctx, edit(clip_video, {"format": "gif", "fps": 12, "repeat": False}, scale=0.5)).outputs["render"]
    g = info(gif)
    assert g["streams"][0]["codec_name"] == "gif" and (g["streams"][0]["width"], g["streams"][0]["height"]) == (W, H)
    assert g["streams"][0]["r_frame_rate"] == "12/1" and abs(float(g["format"]["duration"]) - 2.0) < 0.2
    img = pixels(gif, (W, H), 1.0)
    assert img[H // 2, W // 2, 0] > 180 and img[3, 3, 2] > 180  # the half-size clip over the blue background
    for fmt in ("jpg", "png"):
        still = render(ctx, edit(clip_video, {"format": fmt})).outputs["render"]
        s = info(still)["streams"][0]
        assert (s["width"], s["height"]) == (W, H) and s["codec_name"] == {"jpg": "mjpeg", "png": "png"}[fmt]
    mp3 = render(ctx, edit(clip_video, {"format": "mp3"})).outputs["render"]
    m = info(mp3)
    assert [s["codec_type"] for s in m["streams"]] == ["audio"] and abs(float(m["format"]["duration"]) - 2) < 0.15


def test_poster_thumbnail_range_and_scale_to(ctx: OpContext, clip_video: Path) -> None:
    out = {"format": "mp4", "resolution": "sd", "scaleTo": "preview", "fps": 25, "range": {"start": 0.5, "length": 1},
           "poster": {"capture": 0.5}, "thumbnail": {"capture": 0.2, "scale": 0.5}}
    e = edit(clip_video, out)
    del e["output"]["size"]
    result = render(ctx, e)
    v = info(result.outputs["render"])
    video = next(s for s in v["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"], video["r_frame_rate"]) == (512, 288, "25/1")
    assert abs(float(v["format"]["duration"]) - 1.0) < 0.1
    poster = info(result.outputs["poster"])["streams"][0]
    thumb = info(result.outputs["thumbnail"])["streams"][0]
    assert (poster["width"], poster["height"]) == (512, 288) and (thumb["width"], thumb["height"]) == (256, 144)


def test_text_box_alignment_and_offset(ctx: OpContext, tmp_path: Path) -> None:
    e = {"timeline": {"background": "#000000", "tracks": [{"clips": [
        {"asset": {"type": "text", "text": "II", "width": 80, "height": 40,
                   "font": {"family": "DejaVu Sans", "size": 30, "color": "#ffffff"},
                   "background": {"color": "#00FF00"}, "alignment": {"horizontal": "left", "vertical": "top"}},
         "start": 0, "length": 1, "position": "topLeft", "offset": {"x": 0.25, "y": -0.1}}]}]},
        "output": {"format": "png", "size": {"width": W, "height": H}}}
    img = pixels(render(ctx, e).outputs["render"], (W, H))
    x0, y0 = round(0.25 * W), round(0.1 * H)  # offset right and *down* (y is up in Shotstack: -0.1 is down)
    assert img[y0 + 35, x0 + 70, 1] > 200 and img[y0 + 35, x0 + 70, 0] < 60  # the green box
    assert img[y0 - 3, x0 + 40].max() < 40 and img[y0 + 20, x0 - 3].max() < 40  # black outside it
    white = np.argwhere((img[y0:y0 + 40, x0:x0 + 80] > 200).all(axis=2))
    assert len(white) and white[:, 1].min() < 20  # the text starts at the box's left edge


def test_caption_asset_burns_the_srt(ctx: OpContext, tmp_path: Path) -> None:
    srt = tmp_path / "c.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:01,000\nHELLO\n", encoding="utf-8")
    e = {"timeline": {"background": "#000000", "tracks": [{"clips": [
        {"asset": {"type": "caption", "src": str(srt), "font": {"size": 20, "color": "#ffffff"}}, "start": 0,
         "length": 1}]}]}, "output": {"format": "jpg", "size": {"width": W, "height": H}}}
    img = pixels(render(ctx, e).outputs["render"], (W, H))
    assert (img[H // 2:] > 200).all(axis=2).sum() > 20  # white caption text in the lower half


def test_timeline_fonts_are_drawn_from_their_files(ctx: OpContext, tmp_path: Path) -> None:
    bold = tmp_path / "face.ttf"  # a font file that names itself "DejaVu Sans": its Bold cut
    bold.write_bytes(Path("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf").read_bytes())

    def text_edit(**timeline: Any) -> dict[str, Any]:
        return {"timeline": {"background": "#000000", **timeline, "tracks": [{"clips": [
            {"asset": {"type": "text", "text": "Wide", "font": {"family": "DejaVu Sans", "size": 40}}, "start": 0,
             "length": 1}]}]}, "output": {"format": "png", "size": {"width": W, "height": H}}}

    plain = pixels(render(ctx, text_edit()).outputs["render"], (W, H))
    heavy = pixels(render(ctx, text_edit(fonts=[{"src": str(bold)}])).outputs["render"], (W, H))
    assert (heavy > 200).all(axis=2).sum() > 1.3 * (plain > 200).all(axis=2).sum()
    missing = text_edit(fonts=[{"src": str(bold)}])
    missing["timeline"]["tracks"][0]["clips"][0]["asset"]["font"]["family"] = "Nope Sans"
    with pytest.raises(Exception, match=r"timeline.tracks\[0\].clips\[0\].asset.font: no font family 'Nope Sans'"):
        render(ctx, missing)
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font")
    with pytest.raises(Exception, match=r"timeline.fonts\[0\]: not a font file"):
        render(ctx, text_edit(fonts=[{"src": str(junk)}]))


def test_transform_rotates_and_flips(ctx: OpContext, tmp_path: Path) -> None:
    half = tmp_path / "half.png"  # left half white, right half black
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=80x40,drawbox=x=0:y=0:w=40:h=40:c=white:t=fill", "-frames:v", "1",
           str(half))

    def shot(transform: dict[str, Any]) -> np.ndarray:
        e = {"timeline": {"background": "#0000FF", "tracks": [{"clips": [
            {"asset": {"type": "image", "src": str(half)}, "start": 0, "length": 1, "fit": "none",
             "transform": transform}]}]}, "output": {"format": "png", "size": {"width": W, "height": H}}}
        return pixels(render(ctx, e).outputs["render"], (W, H))

    flipped = shot({"flip": {"horizontal": True}})
    assert flipped[H // 2, W // 2 + 20].min() > 200 and flipped[H // 2, W // 2 - 20].max() < 60
    turned = shot({"rotate": {"angle": 90}})  # clockwise: the white left half ends on top, 40x80 tall
    assert turned[H // 2 - 20, W // 2].min() > 200 and turned[H // 2 + 20, W // 2].max() < 60
    assert turned[H // 2, W // 2 - 30, 2] > 200  # blue beside the turned (now narrow) picture
