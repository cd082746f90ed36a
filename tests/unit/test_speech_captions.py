"""Caption building: every style read back by pysubs2 with its tags; grouping, position, look; subtitles op."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pysubs2
import pytest
from pydantic import ValidationError

from reelforge.captions import (
    CaptionStyle,
    Word,
    build_plain,
    build_subtitles,
    group_words,
    load_words,
    save_subs,
    words_from_subs,
    write_words_json,
)
from reelforge.errors import MediaError
from reelforge.ops.registry import get_operation

TEXT = "The quick brown fox jumps over the lazy dog. It was not amused at all, my friend."


def timed(text: str = TEXT, step: float = 0.4, gap: float = 0.05) -> list[Word]:
    return [Word(t, i * step, i * step + step - gap) for i, t in enumerate(text.split())]


def roundtrip(subs: pysubs2.SSAFile, tmp_path: Path, name: str = "c.ass") -> pysubs2.SSAFile:
    path = save_subs(subs, tmp_path / name)
    return pysubs2.load(str(path))


@pytest.mark.parametrize("style", ["classic", "karaoke", "highlight", "word_by_word", "underline"])
def test_each_style_reads_back_with_its_tags(style: str, tmp_path: Path) -> None:
    words = timed()
    subs = roundtrip(build_subtitles(words, CaptionStyle(style=style, max_words_per_line=4)), tmp_path)
    texts = [e.text for e in subs]
    assert texts, "no events"
    shown = " ".join(e.plaintext.replace("\n", " ") for e in subs)
    if style == "classic":
        assert not any("{" in t for t in texts)
        assert shown.split() == TEXT.split()
    elif style == "karaoke":
        assert all(t.count("\\kf") == len(e.plaintext.split()) for t, e in zip(texts, subs, strict=True))
        # fill durations add up to each event's duration (centiseconds)
        for e in subs:
            ks = [int(k) for k in re.findall(r"\\kf(\d+)", e.text)]
            assert abs(sum(ks) * 10 - (e.end - e.start)) <= 10
        st = subs.styles["Default"]
        assert (st.primarycolor.r, st.primarycolor.g, st.primarycolor.b) == (0xFF, 0xD7, 0x00)  # fill colour
    elif style == "highlight":
        assert len(subs) == len(words)
        assert all(t.count("\\c&H00D7FF&") == 1 for t in texts)
    elif style == "underline":
        assert len(subs) == len(words)
        assert all(t.count("\\u1") == 1 and "\\u0" in t for t in texts)
    else:  # word_by_word
        assert [e.plaintext for e in subs] == TEXT.split()
    starts = [e.start for e in subs]
    assert starts == sorted(starts)


def test_grouping_respects_words_chars_lines_gaps_and_sentences() -> None:
    words = timed()
    caps = group_words(words, CaptionStyle(max_words_per_line=3, max_chars_per_line=100))
    assert all(len(c.indexes) <= 3 for c in caps)
    # a sentence end closes a caption: "dog." is the last word of its caption
    assert any(words[c.indexes[-1]].text == "dog." for c in caps)
    caps = group_words(words, CaptionStyle(max_words_per_line=10, max_chars_per_line=12, break_on_sentence=False))
    for c in caps:
        for line in c.lines:
            text = " ".join(words[i].text for i in line)
            assert len(text) <= 12 or len(line) == 1
    two = build_subtitles(words, CaptionStyle(max_words_per_line=2, max_lines=2))
    assert any("\\N" in e.text for e in two)
    gap_words = [Word("one", 0, 0.3), Word("two", 0.4, 0.7), Word("three", 3.0, 3.3)]
    assert len(group_words(gap_words, CaptionStyle(max_gap_s=1.0))) == 2


def test_position_grid_and_xy(tmp_path: Path) -> None:
    subs = roundtrip(build_subtitles(timed(), CaptionStyle(position="top_right")), tmp_path)
    assert subs.styles["Default"].alignment == pysubs2.Alignment.TOP_RIGHT
    subs = roundtrip(build_subtitles(timed(), CaptionStyle(x=640, y=360, position="middle_center"),
                                     play_res=(1280, 720)), tmp_path)
    assert all(e.text.startswith("{\\pos(640,360)}") for e in subs)
    assert subs.info["PlayResX"] == "1280" and subs.info["PlayResY"] == "720"
    with pytest.raises(ValidationError):
        CaptionStyle(x=10)


def test_look_font_colours_outline_caps_and_replacements(tmp_path: Path) -> None:
    style = CaptionStyle(font="DejaVu Serif", font_size=40, color="#102030", outline_color="#FF0000",
                         back_color="#00FF0040", outline=5, shadow=2, box=True, all_caps=True,
                         replacements={"fox": "f*x", "dog": "doggo"}, italic=True)
    subs = roundtrip(build_subtitles(timed(), style), tmp_path)
    st = subs.styles["Default"]
    assert st.fontname == "DejaVu Serif" and st.fontsize == 40 and st.italic
    assert (st.primarycolor.r, st.primarycolor.g, st.primarycolor.b, st.primarycolor.a) == (0x10, 0x20, 0x30, 0)
    assert (st.outlinecolor.r, st.outlinecolor.g, st.outlinecolor.b) == (255, 0, 0)
    assert st.backcolor.a == 255 - 0x40  # ASS stores transparency
    assert (st.outline, st.shadow, st.borderstyle) == (5, 2, 3)
    shown = " ".join(e.plaintext for e in subs)
    assert "F*X" in shown and "DOGGO." in shown and "LAZY" in shown
    with pytest.raises(ValidationError):
        CaptionStyle(color="red")
    with pytest.raises(ValidationError):
        CaptionStyle(font="Evil{\\pos(1,1)}")


def test_user_text_cannot_inject_ass_tags(tmp_path: Path) -> None:
    words = [Word("{\\pos(0,0)}hacked", 0, 0.5), Word("ok\\N", 0.5, 1.0)]
    for style in ("classic", "karaoke", "highlight"):
        subs = roundtrip(build_subtitles(words, CaptionStyle(style=style)), tmp_path)
        assert all("\\pos" not in e.text for e in subs)
        assert all("\\N" not in e.text for e in subs)


def test_srt_vtt_and_words_json_round_trip(tmp_path: Path) -> None:
    words = timed()
    plain = build_plain(words, CaptionStyle(style="karaoke", max_words_per_line=5))
    srt = pysubs2.load(str(save_subs(plain, tmp_path / "c.srt")))
    vtt = pysubs2.load(str(save_subs(plain, tmp_path / "c.vtt")))
    assert len(srt) == len(vtt) == len(plain)
    assert " ".join(e.plaintext for e in srt).split() == TEXT.split()
    assert (tmp_path / "c.vtt").read_text().startswith("WEBVTT")
    back = words_from_subs(srt)
    assert [w.text for w in back] == TEXT.split()
    assert all(a.end <= b.start + 1e-6 for a, b in itertools.pairwise(back))
    path = write_words_json(words, tmp_path / "words.json")
    assert load_words(path) == [Word(w.text, round(w.start, 3), round(w.end, 3)) for w in words]


def test_subtitles_op_inline_words(ctx) -> None:
    op = get_operation("subtitles")
    words = [w.to_dict() for w in timed()]
    res = op.run(op.params_model(words=words, style="highlight", max_words_per_line=3, width=1080, height=1920), ctx)
    assert set(res.outputs) == {"ass", "srt", "vtt"}
    ass = pysubs2.load(str(res.outputs["ass"]))
    assert ass.info["PlayResY"] == "1920" and len(ass) == len(words)
    assert len(pysubs2.load(str(res.outputs["srt"]))) == res.data["captions"]


def test_subtitles_op_from_srt_and_words_json(ctx, tmp_path: Path) -> None:
    srt = tmp_path / "user.srt"
    srt.write_text("1\n00:00:01,000 --> 00:00:03,000\nHello there my friend\n\n"
                   "2\n00:00:03,500 --> 00:00:05,000\nSee you soon\n", encoding="utf-8")
    op = get_operation("subtitles")
    res = op.run(op.params_model(input=str(srt), style="karaoke", formats=["ass"]), ctx)
    ass = pysubs2.load(str(res.outputs["ass"]))
    assert [e.plaintext for e in ass] == ["Hello there my friend", "See you soon"]
    assert ass[0].start == 1000 and "\\kf" in ass[0].text
    wj = tmp_path / "w.json"
    wj.write_text(json.dumps({"words": [w.to_dict() for w in timed()]}))
    res = op.run(op.params_model(input=str(wj), style="underline"), ctx)
    assert "\\u1" in pysubs2.load(str(res.outputs["ass"]))[0].text


def test_subtitles_op_rejects_bad_input(ctx, tmp_path: Path) -> None:
    op = get_operation("subtitles")
    with pytest.raises(ValidationError):
        op.params_model()
    with pytest.raises(ValidationError):
        op.params_model(words=[{"text": "a", "start": 0, "end": 1}], input="x.srt")
    with pytest.raises(ValidationError):
        op.params_model(words=[{"text": "a", "start": 2, "end": 1}])
    with pytest.raises(ValidationError):
        op.params_model(words=[{"text": "a", "start": 0, "end": 1}], style="fancy")
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(MediaError):
        op.run(op.params_model(input=str(junk)), ctx)
