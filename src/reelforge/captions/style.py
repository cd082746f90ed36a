"""How captions look: one pydantic model, embedded as-is in the params of every op that makes captions.

    CaptionStyle(position="bottom_center", max_chars_per_line=30)   # subtitles/transcribe/build spelling
    CaptionStyle(position="bottom", max_line_chars=30)              # caption's spelling: the same style
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import pysubs2
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

StyleName = Literal["classic", "karaoke", "highlight", "word_by_word", "underline"]
STYLES: tuple[str, ...] = ("classic", "karaoke", "highlight", "word_by_word", "underline")
# Two vocabularies, both kept: the 3x3 grid ("bottom_center") of subtitles/transcribe/build, and the row
# alone ("bottom") of caption, whose column is `align`.
Position = Literal["bottom_left", "bottom_center", "bottom_right", "middle_left", "middle_center",
                   "middle_right", "top_left", "top_center", "top_right", "bottom", "middle", "top"]
Align = Literal["left", "center", "right"]
# ASS alignment follows the numeric keypad: 1..3 bottom, 4..6 middle, 7..9 top
_ROW = {"bottom": 0, "middle": 3, "top": 6}
_COLUMN = {"left": 1, "center": 2, "right": 3}
ALIGNMENT: dict[str, int] = {f"{row}_{col}": r + c for row, r in _ROW.items() for col, c in _COLUMN.items()}
# What `caption` (burning an SRT/VTT file) used before the two style models were one: its look stays the
# same for every field a job leaves out. Its sizes are pixels of a 1080-line canvas.
BURN_IN_DEFAULTS: dict[str, Any] = {"font_size": 54, "bold": False, "shadow": 1.0, "margin_v": 60,
                                    "margin_h": 60, "max_chars_per_line": 42}
_HEX = re.compile(r"^#?([0-9a-fA-F]{6})([0-9a-fA-F]{2})?$")
# a font *name* (libass looks it up in the fonts dir); it is written into the ASS header, so nothing that
# could end a field or start an override tag: letters (any script), digits, space, dot, dash, underscore
_FONT = re.compile(r"^[\w .\-]{1,100}$")


def parse_color(value: str) -> pysubs2.Color:
    """'#RRGGBB' or '#RRGGBBAA' (AA = opacity, FF opaque) -> pysubs2 Color (whose `a` is transparency)."""
    m = _HEX.match(value.strip())
    if not m:
        raise ValueError(f"colour {value!r} must look like #RRGGBB or #RRGGBBAA")
    rgb = m.group(1)
    opacity = int(m.group(2), 16) if m.group(2) else 255
    return pysubs2.Color(int(rgb[0:2], 16), int(rgb[2:4], 16), int(rgb[4:6], 16), 255 - opacity)


class CaptionStyle(BaseModel):
    """How captions look and how words are grouped into them: one model for caption, subtitles, transcribe
    and build. Sizes are pixels of the subtitle canvas: the video's size (subtitles, transcribe, build), or a
    canvas 1080 lines high for `caption`. Word grouping and the word styles apply where captions are built
    from timed words; `caption` burns the lines of a given file as they are.

    Old spellings are accepted: `max_line_chars` (caption) for `max_chars_per_line`, and `position` as a row
    (`bottom`, with `align`) or a grid cell (`bottom_center`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, title="CaptionStyle")

    style: StyleName = "classic"
    max_words_per_line: int = Field(default=6, ge=1, le=30)
    max_chars_per_line: int | None = Field(
        default=32, ge=4, le=200, validation_alias=AliasChoices("max_chars_per_line", "max_line_chars"),
        description="wrap / start a new line after this many characters; null: no limit (alias max_line_chars)")
    max_lines: int = Field(default=1, ge=1, le=4)
    max_gap_s: float = Field(default=1.0, gt=0, le=30, description="a pause this long starts a new caption")
    break_on_sentence: bool = True
    position: Position = Field(default="bottom", description="grid cell (bottom_center) or row (bottom) + align")
    align: Align = Field(default="center", description="the column when position is a row (bottom|middle|top)")
    x: int | None = Field(default=None, ge=0, le=10000, description="with y: anchor point instead of margins")
    y: int | None = Field(default=None, ge=0, le=10000)
    margin_v: int = Field(default=80, ge=0, le=5000)
    margin_h: int = Field(default=40, ge=0, le=5000)
    font: str = Field(default="DejaVu Sans", min_length=1, max_length=100)
    font_size: float = Field(default=64, ge=4, le=1000)
    highlight_scale: int = Field(default=100, ge=50, le=300, description="current word size in %")
    bold: bool = True
    italic: bool = False
    color: str = "#FFFFFF"
    highlight_color: str = "#FFD700"
    outline_color: str = "#000000"
    back_color: str = Field(default="#00000080", description="shadow, or the box with box=true")
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
        return "#" + v.strip().lstrip("#").upper()

    @field_validator("font")
    @classmethod
    def _font(cls, v: str) -> str:
        v = v.strip()
        if not _FONT.match(v):
            raise ValueError("font must be a font name: letters, digits, spaces, '.', '-' or '_'")
        return v

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

    @property
    def alignment(self) -> int:
        """The ASS (numeric keypad) alignment of `position` (+ `align` when position is a row)."""
        if self.position in _ROW:
            return _ROW[self.position] + _COLUMN[self.align]
        return ALIGNMENT[self.position]

    def with_defaults(self, defaults: Mapping[str, Any]) -> CaptionStyle:
        """This style with `defaults` for the fields the job did not give (an op's own look)."""
        return self.model_copy(update={k: v for k, v in defaults.items() if k not in self.model_fields_set})


# every key a style object may have (fields and their old spellings)
STYLE_FIELDS: frozenset[str] = frozenset(CaptionStyle.model_fields) | {"max_line_chars"}
