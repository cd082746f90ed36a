"""Captions: timed words, caption styles, ASS/SRT/VTT building and script alignment.

    from reelforge.captions import Word, CaptionStyle, build_subtitles, save_subs
    subs = build_subtitles(words, CaptionStyle(style="karaoke", max_words_per_line=4), play_res=(1080, 1920))
    save_subs(subs, Path("captions.ass"))
"""

from reelforge.captions.align import Alignment, align_words, normalize_tokens
from reelforge.captions.build import ass_escape, ass_style, build_plain, build_subtitles, group_words, pos_prefix
from reelforge.captions.style import BURN_IN_DEFAULTS, STYLE_FIELDS, STYLES, CaptionStyle, parse_color
from reelforge.captions.words import (
    Word,
    load_words,
    plain_text,
    words_from_json,
    words_from_subs,
    words_to_json,
    write_words_json,
)
from reelforge.captions.writers import load_subs, save_subs, write_ass, write_srt, write_vtt

__all__ = [
    "BURN_IN_DEFAULTS", "STYLES", "STYLE_FIELDS", "Alignment", "CaptionStyle", "Word", "align_words", "ass_escape",
    "ass_style", "build_plain", "build_subtitles", "group_words", "load_subs", "load_words", "normalize_tokens",
    "parse_color", "plain_text", "pos_prefix", "save_subs", "words_from_json", "words_from_subs", "words_to_json",
    "write_ass", "write_srt", "write_vtt", "write_words_json",
]
