"""Script alignment: normalisation, mapping, interpolation, and the align op on real speech."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from reelforge.captions import Word, align_words, normalize_tokens
from reelforge.config import Settings
from reelforge.media.probe import probe
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation


@pytest.mark.parametrize(("text", "tokens"), [
    ("Hello,", ["hello"]),
    ("Don't", ["dont"]),
    ("20", ["twenty"]),
    ("21st", ["twenty", "first"]),
    ("3.5%", ["three", "point", "five", "percent"]),
    ("1,250", ["one", "thousand", "two", "hundred", "fifty"]),
    ("well-known", ["well", "known"]),
    ("—", []),
])
def test_normalize_tokens(text: str, tokens: list[str]) -> None:
    assert normalize_tokens(text) == tokens


def heard(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(t, s, e) for t, s, e in items]


def assert_valid(words: list[Word], script: str, duration: float) -> None:
    assert [w.text for w in words] == script.split()
    assert all(0 <= w.start <= w.end <= duration for w in words)
    assert all(a.end <= b.start for a, b in itertools.pairwise(words))


def test_exact_and_numbers_either_way() -> None:
    script = "We walked 20 miles, twenty-one in total!"
    rec = heard(("we", 0.1, 0.3), ("walked", 0.3, 0.6), ("twenty", 0.6, 0.9), ("miles", 0.9, 1.2),
                ("21", 1.3, 1.8), ("in", 1.8, 1.9), ("total.", 1.9, 2.4))
    result = align_words(script, rec, 3.0)
    assert result.matched == result.total == 7
    assert_valid(result.words, script, 3.0)
    assert (result.words[2].start, result.words[2].end) == (0.6, 0.9)
    assert result.words[4].start == 1.3 and result.words[4].end == 1.8


def test_substituted_and_unheard_words_get_times_between_neighbours() -> None:
    script = "Meet Siobhan at the old harbour tomorrow"
    rec = heard(("meet", 0.0, 0.3), ("shivawn", 0.3, 0.8), ("at", 0.9, 1.0), ("harbour", 1.6, 2.0),
                ("tomorrow", 2.0, 2.6))
    result = align_words(script, rec, 3.0)
    words = result.words
    assert_valid(words, script, 3.0)
    assert (words[1].start, words[1].end) == (0.3, 0.8)  # substitution keeps the heard time
    assert words[3].start >= 1.0 and words[4].end <= 1.6  # "the old" fill the gap
    assert result.matched == 5


def test_nothing_heard_spreads_words_over_the_audio() -> None:
    script = "one two three four"
    result = align_words(script, [], 4.0)
    assert result.matched == 0 and result.matched_ratio == 0
    assert_valid(result.words, script, 4.0)
    assert result.words[0].start == 0 and result.words[-1].end == 4.0


def test_times_are_clamped_into_the_audio_and_made_monotonic() -> None:
    script = "a b c"
    rec = heard(("a", 0.5, 1.5), ("b", 1.0, 1.2), ("c", 2.5, 9.0))
    result = align_words(script, rec, 3.0)
    assert_valid(result.words, script, 3.0)


def test_align_op_reproduces_the_script_on_real_speech(tmp_path: Path) -> None:
    script = "Captions should show every word. Even names like Zorblax, and 42 numbers!"
    wav = tmp_path / "s.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), "--stdin"], input=script.encode(),
                   check=True)
    settings = Settings(data_dir=tmp_path / "data", whisper_model="packaged:tiny.en", device="cpu")
    op = get_operation("align")
    res = op.run(op.params_model(audio=str(wav), script=script, language="en"),
                 OpContext.for_test(tmp_path / "work", settings))
    words = [Word(**w) for w in res.data["words"]]
    assert_valid(words, script, probe(wav).duration_s + 0.01)
    assert res.data["matched_ratio"] >= 0.7
    assert res.outputs["words"].is_file()


def test_align_params() -> None:
    op = get_operation("align")
    with pytest.raises(ValidationError):
        op.params_model(audio="a.wav", script="   ")
    with pytest.raises(ValidationError):
        op.params_model(audio="a.wav", script="x " * 10_001)
