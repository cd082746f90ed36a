"""Words + CaptionStyle -> pysubs2.SSAFile (ASS), and plain grouped lines for SRT/VTT.

Grouping: words fill a line up to max_words_per_line / max_chars_per_line; up to max_lines lines make one
caption; a pause longer than max_gap_s or a sentence end starts a new caption. Styles then differ only in
the events they emit per caption:
  classic      one event, plain text
  karaoke      one event, {\\kf<cs>} before each word (SecondaryColour until sung, then PrimaryColour)
  highlight    one event per word: the whole caption, the current word in highlight_color
  underline    one event per word: the whole caption, the current word underlined (\\u1)
  word_by_word one event per word: only that word
User text is escaped so it can never open an override block.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import pysubs2

from reelforge.captions.style import CaptionStyle, parse_color
from reelforge.captions.words import Word

STYLE_NAME = "Default"
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]]*$")
_CORE = re.compile(r"^(\W*)(.*?)(\W*)$", re.UNICODE)


def ass_escape(text: str) -> str:
    """Neutralise characters that ASS treats as markup: braces open override blocks, backslash escapes."""
    return (text.replace("\\", "\uff3c").replace("{", "\uff5b").replace("}", "\uff5d")
            .replace("\n", " ").replace("\r", " "))


def ass_color(value: str) -> str:
    c = parse_color(value)
    return f"&H{c.b:02X}{c.g:02X}{c.r:02X}&"


def display_text(word: str, style: CaptionStyle) -> str:
    """A word as shown: replacements (keeping surrounding punctuation), then all caps."""
    text = word
    if style.replacements:
        m = _CORE.match(word)
        if m and m.group(2).lower() in style.replacements:
            text = m.group(1) + style.replacements[m.group(2).lower()] + m.group(3)
        elif word.lower() in style.replacements:
            text = style.replacements[word.lower()]
    return text.upper() if style.all_caps else text


@dataclass(frozen=True)
class Caption:
    """One caption on screen: `lines` of indexes into the words list."""

    lines: tuple[tuple[int, ...], ...]

    @property
    def indexes(self) -> list[int]:
        return [i for line in self.lines for i in line]


def group_words(words: Sequence[Word], style: CaptionStyle,
                breaks: Collection[int] = ()) -> list[Caption]:
    """Captions of `words`; an index in `breaks` always starts a new caption (e.g. an SRT line's first word)."""
    shown = [display_text(w.text, style) for w in words]
    captions: list[Caption] = []
    lines: list[list[int]] = []
    line: list[int] = []

    def close_caption() -> None:
        nonlocal line, lines
        if line:
            lines.append(line)
        if lines:
            captions.append(Caption(tuple(tuple(x) for x in lines)))
        lines, line = [], []

    for i, word in enumerate(words):
        if not shown[i].strip():
            continue
        if line or lines:
            prev = (line or lines[-1])[-1]
            if i in breaks or word.start - words[prev].end > style.max_gap_s or (
                    style.break_on_sentence and _SENTENCE_END.search(words[prev].text)):
                close_caption()
        if line:
            chars = sum(len(shown[j]) for j in line) + len(line) + len(shown[i])
            too_long = style.max_chars_per_line is not None and chars > style.max_chars_per_line
            if len(line) >= style.max_words_per_line or too_long:
                lines.append(line)
                line = []
                if len(lines) >= style.max_lines:
                    close_caption()
        line.append(i)
    close_caption()
    return captions


def ass_style(style: CaptionStyle) -> pysubs2.SSAStyle:
    """The ASS style of `style` (font, colours, outline/box, alignment, margins); also used to burn SRT/VTT."""
    base, hi = parse_color(style.color), parse_color(style.highlight_color)
    karaoke = style.style == "karaoke"
    return pysubs2.SSAStyle(
        fontname=style.font,
        fontsize=style.font_size,
        # karaoke: text starts in SecondaryColour and turns PrimaryColour as each word is sung
        primarycolor=hi if karaoke else base,
        secondarycolor=base if karaoke else hi,
        outlinecolor=parse_color(style.outline_color),
        backcolor=parse_color(style.back_color),
        bold=style.bold,
        italic=style.italic,
        borderstyle=3 if style.box else 1,
        outline=style.outline,
        shadow=style.shadow,
        alignment=pysubs2.Alignment(style.alignment),
        marginl=style.margin_h,
        marginr=style.margin_h,
        marginv=style.margin_v,
    )


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def pos_prefix(style: CaptionStyle) -> str:
    """`{\\pos(x,y)}` when the style anchors captions at a point, else nothing."""
    return f"{{\\pos({style.x},{style.y})}}" if style.x is not None else ""


def _caption_text(words: Sequence[Word], cap: Caption, style: CaptionStyle, current: int | None = None) -> str:
    """The caption's text with the `current` word marked per the style."""
    lines_out = []
    for line in cap.lines:
        parts = []
        for i in line:
            text = ass_escape(display_text(words[i].text, style))
            if i == current and style.style == "highlight":
                scale = (f"\\fscx{style.highlight_scale}\\fscy{style.highlight_scale}"
                         if style.highlight_scale != 100 else "")
                text = f"{{\\c{ass_color(style.highlight_color)}{scale}}}{text}{{\\r}}"
            elif i == current and style.style == "underline":
                text = f"{{\\u1}}{text}{{\\u0}}"
            parts.append(text)
        lines_out.append(" ".join(parts))
    return pos_prefix(style) + "\\N".join(lines_out)


def _karaoke_text(words: Sequence[Word], cap: Caption, style: CaptionStyle) -> str:
    idx = cap.indexes
    t0 = words[idx[0]].start
    # each word's \k runs until the next word starts, so gaps are absorbed and the sweep never stalls;
    # durations come from rounded cumulative times so rounding errors do not add up along the line
    marks = [_cs(words[i].start - t0) for i in idx] + [_cs(words[idx[-1]].end - t0)]
    pos = 0
    lines_out = []
    for line in cap.lines:
        parts = []
        for i in line:
            k = max(0, marks[pos + 1] - marks[pos])
            parts.append(f"{{\\{style.karaoke_tag}{k}}}{ass_escape(display_text(words[i].text, style))}")
            pos += 1
        lines_out.append(" ".join(parts))
    return pos_prefix(style) + "\\N".join(lines_out)


def _cs(seconds: float) -> int:
    return max(0, round(seconds * 100))


def _event(start: float, end: float, text: str) -> pysubs2.SSAEvent:
    s, e = _ms(start), _ms(end)
    return pysubs2.SSAEvent(start=s, end=max(e, s + 10), text=text, style=STYLE_NAME)


def new_subs(style: CaptionStyle, play_res: tuple[int, int]) -> pysubs2.SSAFile:
    subs = pysubs2.SSAFile()
    subs.info["PlayResX"] = str(play_res[0])
    subs.info["PlayResY"] = str(play_res[1])
    subs.info["ScaledBorderAndShadow"] = "yes"
    subs.info["WrapStyle"] = "0"
    subs.styles[STYLE_NAME] = ass_style(style)
    return subs


def build_subtitles(words: Sequence[Word], style: CaptionStyle | None = None,
                    play_res: tuple[int, int] = (1920, 1080), breaks: Collection[int] = ()) -> pysubs2.SSAFile:
    """An ASS subtitle file for `words` in `style` on a `play_res` canvas (usually the video's size).

    `breaks`: word indexes that must start a new caption (see `words_from_subs`).
    """
    style = style or CaptionStyle()
    subs = new_subs(style, play_res)
    for cap in group_words(words, style, breaks):
        idx = cap.indexes
        start, end = words[idx[0]].start, words[idx[-1]].end
        if style.style == "classic":
            subs.append(_event(start, end, _caption_text(words, cap, style)))
        elif style.style == "karaoke":
            subs.append(_event(start, end, _karaoke_text(words, cap, style)))
        else:
            for n, i in enumerate(idx):
                w_start = start if n == 0 else words[i].start
                w_end = words[idx[n + 1]].start if n + 1 < len(idx) else end
                if style.style == "word_by_word":
                    text = pos_prefix(style) + ass_escape(display_text(words[i].text, style))
                else:
                    text = _caption_text(words, cap, style, current=i)
                subs.append(_event(w_start, w_end, text))
    return subs


def build_plain(words: Sequence[Word], style: CaptionStyle | None = None,
                breaks: Collection[int] = ()) -> pysubs2.SSAFile:
    """Grouped plain lines (the classic style), the right shape for SRT and VTT whatever the ASS style."""
    plain = (style or CaptionStyle()).model_copy(update={"style": "classic", "x": None, "y": None})
    return build_subtitles(words, plain, breaks=breaks)
