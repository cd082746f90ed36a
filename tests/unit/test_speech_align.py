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


def test_sentence_windows_group_whole_sentences_and_pad_into_the_pauses() -> None:
    from reelforge.ops.align import sentence_windows

    # ten 4 s sentences with 0.3 s pauses
    spans = [(f"s{i}.", i * 4.3, i * 4.3 + 4.0) for i in range(10)]
    windows = sentence_windows(spans, duration_s=43.1, max_s=29.5, pad_s=0.15)
    assert windows is not None and len(windows) == 2
    assert windows[0].text == " ".join(f"s{i}." for i in range(6)) and windows[1].text.startswith("s6.")
    assert windows[0].start_s == 0.0  # the padding never reaches before the audio
    # padded by 0.15 s into each pause (0.3 s): a window never reaches into the next sentence
    assert windows[0].end_s == pytest.approx(5 * 4.3 + 4.0 + 0.15)
    assert windows[1].start_s == pytest.approx(6 * 4.3 - 0.15)
    assert all(w.end_s - w.start_s <= 29.5 for w in windows)
    # no pause at all: the pads stop halfway
    tight = sentence_windows([("a.", 0.0, 2.0), ("b.", 2.0, 4.0)], duration_s=4.0, max_s=3.0)
    assert tight is not None and [(w.start_s, w.end_s) for w in tight] == [(0.0, 2.0), (2.0, 4.0)]
    # one sentence longer than a window: the caller must transcribe instead
    assert sentence_windows([("long.", 0.0, 40.0)], duration_s=40.0) is None
    # only some sentences aligned (s1, s2, then s5, s6: the voice timed s3 and s4): no window spans the gap
    some = [spans[i] for i in (1, 2, 5, 6)]
    split = sentence_windows(some, duration_s=43.1, max_s=29.5, pad_s=0.15, breaks=[False, False, True, False])
    assert split is not None and [w.text for w in split] == ["s1. s2.", "s5. s6."]
    assert split[0].end_s == pytest.approx(2 * 4.3 + 4.0 + 0.15) and split[1].start_s == pytest.approx(5 * 4.3 - 0.15)


def test_forced_alignment_matches_transcription_and_snaps_to_sentences(tmp_path: Path) -> None:
    """Known sentences in known places (what tts produces): one forced pass per window gives the same word
    times as transcribing (no decoding), and each sentence's edges are the synthesis' exact ones."""
    import numpy as np

    from reelforge.models import tts as tts_models
    from reelforge.ops.align import align_audio, align_spoken
    from reelforge.ops.tts import write_wav

    settings = Settings(data_dir=tmp_path / "data", whisper_model="packaged:tiny.en", device="cpu")
    text = ("The river carries light through the city. Every morning the studio opens early. "
            "Captions follow each word as it is spoken.")
    req = tts_models.resolve_voice("espeak", "en-us", None)
    speech = tts_models.synthesize_text(text, req, speed=1.0, settings=settings, pause_s=0.4)
    wav = write_wav(speech.audio, speech.rate, tmp_path / "speech.wav")
    spans = [(s.text, s.start_s, s.end_s) for s in speech.sentences]
    assert len(spans) == 3
    ctx = OpContext.for_test(tmp_path / "work", settings)
    forced = align_spoken(wav, spans, text, ctx, language="en-us")
    heard = align_audio(wav, text, ctx, language="en")
    assert [w.text for w in forced.words] == text.split() and forced.matched_ratio == 1.0
    assert_valid(forced.words, text, speech.duration_s + 0.01)
    # every word inside its own sentence; first and last words on the sentence's exact edges
    at = 0
    for sentence, start, end in spans:
        n = len(sentence.split())
        words = forced.words[at:at + n]
        assert words[0].start == pytest.approx(start) and words[-1].end == pytest.approx(end)
        assert all(start - 1e-6 <= w.start <= w.end <= end + 1e-6 for w in words)
        at += n
    diffs = [abs(a.start - b.start) for a, b in zip(forced.words, heard.words, strict=True)]
    print("forced vs transcribed start difference, median", float(np.median(diffs)))
    assert float(np.median(diffs)) < 0.1


def test_word_boundaries_sit_in_the_pauses_heard(tmp_path: Path) -> None:
    """examples/align.json: no word spans a pause, the words either side of one end and start at its
    edges, and no word has zero length (tiny.en once gave 'with' a zero-length span past a pause)."""
    from reelforge.captions.pauses import find_pauses
    from reelforge.models.whisper import SAMPLE_RATE
    from tests.unit.video_helpers import audio_samples

    script = "Welcome to ReelForge. Captions show this script verbatim, with the times it was really spoken."
    wav = tmp_path / "narration.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), "--stdin"], input=script.encode(),
                   check=True)
    pauses = find_pauses(audio_samples(wav, SAMPLE_RATE), SAMPLE_RATE)
    assert len(pauses) == 2  # after "ReelForge." and after "verbatim,"
    for model in ("packaged:tiny.en", "packaged:base"):  # a small model's drift is corrected too
        settings = Settings(data_dir=tmp_path / "data", whisper_model=model, device="cpu")
        op = get_operation("align")
        res = op.run(op.params_model(audio=str(wav), script=script, language="en"),
                     OpContext.for_test(tmp_path / f"work-{model[-4:]}", settings))
        words = [Word(**w) for w in res.data["words"]]
        assert all(w.end - w.start >= 0.05 for w in words), words
        for pause in pauses:
            assert not any(w.start < pause.start - 0.02 and w.end > pause.end + 0.02 for w in words)
            before = next(w for w in words if w.text in ("ReelForge.", "verbatim,") and abs(w.end - pause.start) < 0.03)
            after = words[words.index(before) + 1]
            assert abs(after.start - pause.end) < 0.03, (before, after, pause)
