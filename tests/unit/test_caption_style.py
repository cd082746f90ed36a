"""One caption style for every op that makes captions: both old spellings accepted everywhere, one schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pysubs2
import pytest
from pydantic import ValidationError

from reelforge.api.app import create_app
from reelforge.captions import CaptionStyle
from reelforge.config import Settings
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import ffmpeg, frames

# the same look in caption's spelling and in the subtitles/transcribe/build spelling
CAPTION_SPELLING: dict[str, Any] = {"position": "top", "align": "right", "max_line_chars": 8, "font_size": 60,
                                    "color": "#FF0000"}
GRID_SPELLING: dict[str, Any] = {"position": "top_right", "max_chars_per_line": 8, "font_size": 60,
                                 "color": "#FF0000"}
SPELLINGS = pytest.mark.parametrize("spelling", [CAPTION_SPELLING, GRID_SPELLING], ids=["caption", "grid"])
SRT = "1\n00:00:00,000 --> 00:00:05,000\nHello\n"
WORDS = [{"text": t, "start": i * 0.5, "end": i * 0.5 + 0.4}
         for i, t in enumerate(["one", "two", "three", "four", "five", "six", "seven"])]


def validated_styles(spelling: dict[str, Any]) -> dict[str, CaptionStyle]:
    """The style each op's params model makes of `spelling` (subtitles: nested and flat)."""
    def params(op: str, body: dict[str, Any]) -> Any:
        return get_operation(op).params_model.model_validate(body)

    return {
        "caption": params("caption", {"input": "v.mp4", "subtitles_text": SRT, "style": spelling}).style,
        "subtitles": params("subtitles", {"words": WORDS, "style": spelling}).style,
        "subtitles (flat)": params("subtitles", {"words": WORDS, "style": "karaoke", **spelling}).style,
        "transcribe": params("transcribe", {"input": "speech.wav", "captions": spelling}).captions,
        "build": params("build", {"audio": "narration.wav", "backgrounds": ["bg.mp4"],
                                  "caption_style": spelling}).caption_style,
        "render": params("render", _timeline({"type": "caption", "words": WORDS, "style": spelling}))
        .timeline.tracks[0].clips[0].asset.style,
    }


def _timeline(asset: dict[str, Any], **output: Any) -> dict[str, Any]:
    return {"timeline": {"background": "#808080", "tracks": [{"clips": [{"asset": asset, "start": 0, "length": 2}]}]},
            "output": {"format": "mp4", "size": "320x240", "fps": 10, "quality": "draft", **output}}


@SPELLINGS
def test_the_same_style_object_is_accepted_by_every_caption_op(spelling: dict[str, Any]) -> None:
    styles = validated_styles(spelling)
    looks = {op: (s.alignment, s.max_chars_per_line, s.font_size, s.color) for op, s in styles.items()}
    assert set(looks.values()) == {(9, 8, 60, "#FF0000")}, looks  # 9: top right on the numeric keypad
    assert styles["subtitles (flat)"].style == "karaoke"


def test_style_fields_flat_and_nested_at_once_are_refused() -> None:
    with pytest.raises(ValidationError):
        get_operation("subtitles").params_model.model_validate({"words": WORDS, "style": GRID_SPELLING,
                                                                "max_words_per_line": 2})


def test_row_positions_take_their_column_from_align() -> None:
    assert CaptionStyle().alignment == 2 and CaptionStyle(position="bottom_center").alignment == 2
    assert CaptionStyle(position="middle", align="left").alignment == 4
    assert CaptionStyle(position="top_left", align="right").alignment == 7  # a grid cell has its own column


@pytest.fixture
def grey_video(tmp_path: Path) -> Path:
    out = tmp_path / "grey.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=320x240:r=10:d=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(out))
    return out


def test_caption_burns_a_grid_position_top_right(ctx, grey_video: Path) -> None:
    op = get_operation("caption")
    style = {"position": "top_right", "font_size": 150, "margin_v": 20, "max_chars_per_line": 30}
    result = op.run(op.params_model.model_validate({"input": str(grey_video), "subtitles_text": SRT,
                                                    "style": style, "quality": "draft"}), ctx)
    ref = frames(grey_video, at=0.5, count=1)[0].astype(int)
    img = frames(result.outputs["video"], at=0.5, count=1)[0].astype(int)
    drawn = np.abs(img - ref).max(axis=2) > 40
    assert drawn[:100, 160:].sum() > 200  # the top-right quarter (plus a little below it)
    assert drawn[:, :120].sum() == 0 and drawn[140:].sum() == 0  # not on the left, not at the bottom


def test_subtitles_in_caption_spelling_writes_top_right_and_wraps(ctx) -> None:
    op = get_operation("subtitles")
    for body in ({"words": WORDS, "style": CAPTION_SPELLING, "formats": ["ass"]},
                 {"words": WORDS, "formats": ["ass"], **CAPTION_SPELLING}):
        result = op.run(op.params_model.model_validate(body), ctx)
        ass = pysubs2.load(str(result.outputs["ass"]))
        style = next(iter(ass.styles.values()))
        assert style.alignment == pysubs2.Alignment.TOP_RIGHT and style.fontsize == 60
        assert len(ass) > 1 and all(len(e.plaintext) <= 8 or " " not in e.plaintext for e in ass)


def test_render_caption_asset_draws_the_style_top_right(ctx) -> None:
    op = get_operation("render")
    style = {"position": "top", "align": "right", "font_size": 60, "margin_v": 10, "margin_h": 10}
    words = [{"text": "TOP", "start": 0, "end": 2}]
    result = op.run(op.params_model.model_validate(_timeline({"type": "caption", "words": words, "style": style})),
                    ctx)
    img = frames(result.outputs["render"], at=1.0, count=1)[0].astype(int)
    drawn = np.abs(img - 128).max(axis=2) > 60
    assert drawn[:80, 160:].sum() > 200 and drawn[:, :150].sum() == 0 and drawn[120:].sum() == 0
    with pytest.raises(ValidationError):  # the look twice
        op.params_model.model_validate(_timeline({"type": "caption", "words": words, "style": style, "size": 40}))


def test_openapi_has_one_caption_style_schema(tmp_path: Path) -> None:
    spec = create_app(Settings(data_dir=tmp_path / "data")).openapi()
    schemas = spec["components"]["schemas"]
    styles = [name for name, s in schemas.items() if "karaoke_tag" in s.get("properties", {})
              or "max_line_chars" in s.get("properties", {})]
    assert styles == ["CaptionStyle"]
    ref = "#/components/schemas/CaptionStyle"
    for params in ("CaptionParams", "SubtitlesParams", "TranscribeParams", "BuildParams"):
        assert ref in str(schemas[params]), params
