"""How captions look: one pydantic model, embedded as-is in the params of ops that make captions."""

from __future__ import annotations

import re
from typing import Literal

import pysubs2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

StyleName = Literal["classic", "karaoke", "highlight", "word_by_word", "underline"]
STYLES: tuple[str, ...] = ("classic", "karaoke", "highlight", "word_by_word", "underline")
Position = Literal["bottom_left", "bottom_center", "bottom_right", "middle_left", "middle_center",
                   "middle_right", "top_left", "top_center", "top_right"]
# ASS alignment follows the numeric keypad: 1..3 bottom, 4..6 middle, 7..9 top
ALIGNMENT: dict[str, int] = {
    "bottom_left": 1, "bottom_center": 2, "bottom_right": 3,
    "middle_left": 4, "middle_center": 5, "middle_right": 6,
    "top_left": 7, "top_center": 8, "top_right": 9,
}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")


def parse_color(value: str) -> pysubs2.Color:
    """'#RRGGBB' or '#RRGGBBAA' (AA = opacity, FF opaque) -> pysubs2 Color (whose `a` is transparency)."""
    m = _HEX.match(value.strip())
    if not m:
        raise ValueError(f"colour {value!r} must look like #RRGGBB or #RRGGBBAA")
    rgb = m.group(1)
    opacity = int(m.group(2), 16) if m.group(2) else 255
    return pysubs2.Color(int(rgb[0:2], 16), int(rgb[2:4], 16), int(rgb[4:6], 16), 255 - opacity)


class CaptionStyle(BaseModel):
    """Caption look and grouping. Sizes are in the subtitle canvas's pixels (play_res)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    style: StyleName = "classic"
    max_words_per_line: int = Field(default=6, ge=1, le=30)
    max_chars_per_line: int = Field(default=32, ge=4, le=200)
    max_lines: int = Field(default=1, ge=1, le=4)
    max_gap_s: float = Field(default=1.0, gt=0, le=30, description="a pause this long starts a new caption")
    break_on_sentence: bool = True
    position: Position = "bottom_center"
    x: int | None = Field(default=None, ge=0, le=10000, description="with y: anchor point instead of margins")
    y: int | None = Field(default=None, ge=0, le=10000)
    margin_v: int = Field(default=80, ge=0, le=5000)
    margin_h: int = Field(default=40, ge=0, le=5000)
    font: str = Field(default="DejaVu Sans", min_length=1, max_length=100)
    font_size: int = Field(default=64, ge=4, le=1000)
    highlight_scale: int = Field(default=100, ge=50, le=300, description="current word size in %")
    bold: bool = True
    italic: bool = False
    color: str = "#FFFFFF"
    highlight_color: str = "#FFD700"
    outline_color: str = "#000000"
    back_color: str = "#00000080"
    outline: float = Field(default=3.0, ge=0, le=50)
    shadow: float = Field(default=0.0, ge=0, le=50)
    box: bool = Field(default=False, description="opaque box behind the text (back_color) instead of outline")
    all_caps: bool = False
    replacements: dict[str, str] = Field(default_factory=dict, description="word -> shown text, case-insensitive")
    karaoke_tag: Literal["k", "kf", "ko"] = Field(default="kf", description="\\k jump, \\kf sweep, \\ko outline")

    @field_validator("color", "highlight_color", "outline_color", "back_color")
    @classmethod
    def _color(cls, v: str) -> str:
        parse_color(v)
        return v

    @field_validator("font")
    @classmethod
    def _font(cls, v: str) -> str:
        # a font name ends up inside the ASS header: keep it to a plain name
        if any(c in v for c in ",{}\\\n\r"):
            raise ValueError("font name must not contain , { } \\ or line breaks")
        return v.strip()

    @field_validator("replacements")
    @classmethod
    def _replacements(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 500:
            raise ValueError("at most 500 replacements")
        return {k.strip().lower(): r for k, r in v.items() if k.strip()}

    @model_validator(mode="after")
    def _xy(self) -> CaptionStyle:
        if (self.x is None) != (self.y is None):
            raise ValueError("give both x and y, or neither")
        return self
