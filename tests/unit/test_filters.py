"""Escaping for ffmpeg filter graphs: values must come out of ffmpeg's parsers exactly as they went in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from reelforge.media.filters import (
    drawtext_text,
    escape_graph,
    filter_expr,
    filter_path,
    option_value,
    quote_option,
    safe_filename,
)
from tests.unit.video_helpers import FONT, ffmpeg, frames

TRICKY = [
    "'],drawbox=x=0:y=0:w=96:h=64:color=red:t=fill[x]",
    "a:b\\c;d,e[f]g 100% {pts} \\N:force_style='Fontsize=90'",
    "Emoji 🎬 and RTL مرحبا بالعالم, עברית",
    "  leading and trailing spaces  ",
]


def test_quote_and_escape_layers():
    assert quote_option("it's") == "'it'\\''s'"
    assert escape_graph("a,b;c[d]e:f'g\\h") == "a\\,b\\;c\\[d\\]e\\:f\\'g\\\\h"
    assert option_value(3) == "3"
    assert option_value(0.5) == "0.5"
    assert option_value(True) == "1"
    with pytest.raises(ValueError):
        option_value(float("nan"))
    with pytest.raises(ValueError):
        option_value("a\x00b")


def test_filter_expr_builds_from_data():
    assert filter_expr("scale", w=320, h=240) == "scale=w=320:h=240"
    assert filter_expr("fps", fps=None) == "fps"
    assert filter_expr("format", pix_fmts="yuv420p") == "format=pix_fmts=\\'yuv420p\\'"
    with pytest.raises(ValueError):
        filter_expr("scale,drawbox", w=1)
    with pytest.raises(ValueError):
        filter_expr("scale", **{"w:h": 1})


def test_safe_filename():
    assert safe_filename("My clip: 'final' [v2].srt") == "My_clip_final_v2_.srt"
    assert safe_filename("Ünïcödé—名前.ass") == "Unicode.ass"
    assert safe_filename("../../etc/passwd") == "etc_passwd"
    assert safe_filename("🎬") == "file"


def _render(tmp_path: Path, name: str, vf: str) -> np.ndarray:
    out = tmp_path / f"{name}.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=480x64:d=1", "-vf", vf, "-frames:v", "1", str(out))
    return frames(out)[0]


@pytest.mark.parametrize("text", TRICKY)
def test_drawtext_text_is_literal(tmp_path, text):
    """Escaped `text=` renders exactly what `textfile=` (read verbatim from a file) renders."""
    textfile = tmp_path / "t.txt"
    textfile.write_text(text, encoding="utf-8")
    common = {"fontfile": Path(FONT), "fontsize": 20, "fontcolor": "white", "x": 4, "y": 20, "expansion": "none"}
    escaped = _render(tmp_path, "escaped", filter_expr("drawtext", text=text, **common))
    literal = _render(tmp_path, "literal", filter_expr("drawtext", textfile=textfile, **common))
    assert np.array_equal(escaped, literal)
    assert (escaped != 128).any()  # something was drawn
    assert not ((escaped[..., 0] > 200) & (escaped[..., 1] < 60)).any()  # no red box injected


def test_drawtext_with_expansion_escapes_percent(tmp_path):
    text = "50% {pts} \\ done"
    textfile = tmp_path / "t.txt"
    textfile.write_text(text, encoding="utf-8")
    font = Path(FONT)
    a = _render(tmp_path, "a", f"drawtext=fontfile={filter_path(font)}:fontsize=20:x=4:y=20:text="
                               f"{drawtext_text(text, expansion=True)}")
    b = _render(tmp_path, "b", filter_expr("drawtext", fontfile=font, fontsize=20, x=4, y=20, textfile=textfile,
                                           expansion="none"))
    assert np.array_equal(a, b)


def test_filter_path_with_special_characters(tmp_path):
    """A subtitle file whose path has quotes, colons, brackets, commas and semicolons is found by `ass=`."""
    weird = tmp_path / "we'ird [x],y;z=%:caps"
    weird.mkdir()
    ass = weird / "sub's:file.ass"
    ass.write_text(
        "[Script Info]\nScriptType: v4.00+\nPlayResX: 320\nPlayResY: 240\n\n[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, Alignment, MarginV\n"
        "Style: Default,DejaVu Sans,40,&H00FFFFFF,2,10\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Text\nDialogue: 0,0:00:00.00,0:00:05.00,Default,HELLO\n")
    out = tmp_path / "burned.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=320x240:d=1", "-vf",
           filter_expr("ass", filename=ass, fontsdir=Path(FONT).parent), "-frames:v", "1", str(out))
    img = frames(out)[0]
    assert img[150:, :].max() > 200  # text drawn at the bottom
    assert img[:100, :].max() < 30
