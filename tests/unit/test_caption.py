"""caption burn-in: captions appear where the style puts them; text and styles cannot inject into the graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from reelforge.captions import CaptionStyle
from reelforge.errors import MediaError
from reelforge.media.subtitle_files import escape_ass_text
from reelforge.ops.caption import CaptionParams, burn_filter
from reelforge.ops.registry import get_operation
from tests.unit.video_helpers import ffmpeg, frames, streams

OP = get_operation("caption")


def srt(text: str, start: str = "00:00:00,000", end: str = "00:00:05,000") -> str:
    return f"1\n{start} --> {end}\n{text}\n"


@pytest.fixture
def grey_video(tmp_path) -> Path:
    out = tmp_path / "grey.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=320x240:r=10:d=1", "-f", "lavfi", "-i", "sine=d=1",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out))
    return out


def _frame(path: Path) -> np.ndarray:
    return frames(path, at=0.5, count=1)[0].astype(int)


def _burn(ctx, video: Path, **kw) -> np.ndarray:
    result = OP.run(CaptionParams(input=str(video), quality="draft", **kw), ctx)
    out = result.outputs["video"]
    assert [s["codec_type"] for s in streams(out)] == ["video", "audio"]
    return _frame(out)


def _changed(img: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.abs(img - ref).max(axis=2) > 40  # pixels where captions were drawn


def test_captions_appear_at_the_bottom(ctx, grey_video):
    ref = _frame(grey_video)
    img = _burn(ctx, grey_video, subtitles_text=srt("Hello, world!"))
    changed = _changed(img, ref)
    assert changed[160:].sum() > 200  # text in the bottom third
    assert changed[:120].sum() == 0  # nothing in the top half
    assert ctx.notes["encoder"] in ("libx264", "h264_nvenc")


def test_top_position_and_style(ctx, grey_video):
    ref = _frame(grey_video)
    style = {"position": "top", "color": "#FF0000", "font_size": 200, "all_caps": True, "margin_v": 20}
    img = _burn(ctx, grey_video, subtitles_text=srt("top"), style=style)
    changed = _changed(img, ref)
    assert changed[:90].sum() > 200 and changed[120:].sum() == 0
    red = (img[..., 0] > 180) & (img[..., 1] < 90)
    assert red[:80].sum() > 50


@pytest.mark.parametrize("attack", [
    "'],drawbox=x=0:y=0:w=320:h=240:color=red:t=fill[x]",
    "\\N:force_style='Fontsize=200,PrimaryColour=&H000000FF'",
    "{\\fs200\\c&H0000FF&}big red?",
])
def test_injection_attempts_render_as_text(ctx, grey_video, attack):
    ref = _frame(grey_video)
    img = _burn(ctx, grey_video, subtitles_text=srt(attack))
    changed = _changed(img, ref)
    assert changed[150:].sum() > 100  # the attack is drawn as (small, white) text at the bottom
    assert changed[:100].sum() == 0  # no filled box, no giant text
    assert not ((img[..., 0] > 180) & (img[..., 1] < 90)).any()  # nothing turned red


def test_backslash_n_is_literal_not_a_line_break(ctx, grey_video, tmp_path):
    literal = _burn(ctx, grey_video, subtitles_text=srt("AB\\NCD"))
    broken = _burn(ctx, grey_video, subtitles_text=srt("AB\nCD"))
    rows = lambda img: np.flatnonzero((_changed(img, _frame(grey_video))).any(axis=1))  # noqa: E731
    assert len(rows(literal)) < len(rows(broken))  # one line of text is shorter than two


def test_vtt_ass_and_files_with_odd_names(ctx, grey_video, tmp_path):
    ref = _frame(grey_video)
    vtt = "WEBVTT\n\n00:00.000 --> 00:05.000\n<v Ann>Caf&eacute; &amp; «quotes» 🎬 مرحبا</v>\n"
    assert _changed(_burn(ctx, grey_video, subtitles_text=vtt), ref)[160:].sum() > 100
    weird = tmp_path / "my 'subs' [v1],x;y:z.ass"
    weird.write_text(
        "[Script Info]\nScriptType: v4.00+\nPlayResX: 320\nPlayResY: 240\n\n[V4+ Styles]\n"
        "Format: Name, Fontname, Fontsize, PrimaryColour, Alignment, MarginV\n"
        "Style: Default,DejaVu Sans,30,&H00FFFFFF,8,10\n\n[Events]\n"
        "Format: Layer, Start, End, Style, Text\nDialogue: 0,0:00:00.00,0:00:05.00,Default,ASS on top\n")
    changed = _changed(_burn(ctx, grey_video, subtitles=str(weird)), ref)
    assert changed[:80].sum() > 100 and changed[160:].sum() == 0


def test_unsupported_and_empty_subtitles(ctx, grey_video):
    with pytest.raises(MediaError) as err:
        OP.run(CaptionParams(input=str(grey_video), subtitles_text="just some words, not subtitles"), ctx)
    assert err.value.code == "unsupported_subtitles"
    with pytest.raises(MediaError) as err:
        OP.run(CaptionParams(input=str(grey_video), subtitles_text="{1}{25}MicroDVD line\n"), ctx)
    assert err.value.code == "unsupported_subtitles"
    with pytest.raises(MediaError) as err:
        OP.run(CaptionParams(input=str(grey_video), subtitles_text="WEBVTT\n\n"), ctx)
    assert err.value.code == "empty_subtitles"


def test_video_without_video_stream(ctx, make_audio):
    with pytest.raises(MediaError) as err:
        OP.run(CaptionParams(input=str(make_audio()), subtitles_text=srt("x")), ctx)
    assert err.value.code == "no_video_stream"


def test_escape_ass_text_and_filter():
    assert escape_ass_text("{\\b1}x\ny") == "\\{\\\u2060b1\\}x\\Ny"
    f = burn_filter(Path("/tmp/w/captions.ass"), Path("/usr/share/fonts"))
    assert f.startswith("ass=filename=") and ":fontsdir=" in f


@pytest.mark.parametrize("bad", [
    {"style": {"font": "Arial'],drawbox"}}, {"style": {"font": "A:B"}}, {"style": {"color": "red"}},
    {"style": {"color": "#FFF"}}, {"style": {"font_size": 0}}, {"style": {"position": "left"}},
    {"subtitles": "a.srt"}, {"subtitles_text": "   "}, {"style": {"margin_v": -1}},
])
def test_bad_params(bad):
    base = {"input": "v.mp4", "subtitles_text": "1\n00:00:00,000 --> 00:00:01,000\nx\n"}
    with pytest.raises(ValidationError):
        CaptionParams(**{**base, **bad})


def test_style_defaults_are_sane():
    s = CaptionStyle()
    assert s.font == "DejaVu Sans" and s.position == "bottom"
