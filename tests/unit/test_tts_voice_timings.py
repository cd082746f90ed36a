"""Word timings from the piper voice's own phoneme durations, and the speech encode fed while it is spoken."""

from __future__ import annotations

import itertools
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from reelforge.config import Settings
from reelforge.media.audio_pipe import PcmEncoder, pcm16
from reelforge.models import tts_piper
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import get_operation
from reelforge.ops.tts import encode_args, output_args

PLAIN = ("The morning sun rose slowly over the quiet harbor. Fishing boats were already heading out to sea. "
         "A small dog barked at the seagulls on the pier. The baker opened his shop, and the smell of bread "
         "filled the street.")
PAUSE_S = 0.4


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), whisper_model="packaged:tiny.en", workers=1,
                    device="cpu")


def speak(text: str, settings: Settings, root: Path, **kw: object) -> OpResult:
    op = get_operation("tts")
    params = op.params_model(text=text, engine="piper", format="wav", sample_rate=22050,
                             sentence_pause_s=PAUSE_S, **kw)
    return op.run(params, OpContext.for_test(root, settings))


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767.0, w.getframerate()


def assert_sound_in_every_word(words: list[dict[str, Any]], audio: np.ndarray, rate: int) -> None:
    for w in words:
        a, b = int(w["start"] * rate), int(w["end"] * rate)
        assert b > a and np.max(np.abs(audio[a:b])) > 0.05, w  # sound inside every word


def assert_near_whisper(words: list[dict[str, Any]], audio: Path, settings: Settings, root: Path, who: str) -> None:
    """The word starts agree with what whisper's forced alignment hears in the same file (~0.1 s late)."""
    op = get_operation("align")
    heard = op.run(op.params_model(audio=str(audio), script=PLAIN), OpContext.for_test(root, settings)).data["words"]
    diffs = np.array([abs(a["start"] - b["start"]) for a, b in zip(words, heard, strict=True)])
    print(f"{who} vs whisper word starts: median {np.median(diffs):.3f} s, max {diffs.max():.3f} s")
    assert np.median(diffs) < 0.2 and diffs.max() < 0.6


@dataclass
class _Item:  # the shape of piper's PhonemeAlignment
    phoneme: str
    num_samples: int


@dataclass
class _Chunk:  # the parts of piper's AudioChunk that word_spans reads
    phoneme_alignments: list[_Item] | None
    audio_float_array: np.ndarray


def test_word_spans_follow_the_words_own_phonemes() -> None:
    """Two espeak sentences "he, wo." and "a!": a word spans its sounding phonemes (stress marks, the comma's
    pause and the markers name no word); a silent word (a dash) takes no time; words espeak ran together
    are told apart by their own phonemes; a word said differently in the sentence than alone takes the
    unmatched phonemes between its neighbours."""
    first = _Chunk([_Item("^", 100), _Item("h", 10), _Item("ˈ", 5), _Item("e", 20), _Item(",", 50),
                    _Item(" ", 30), _Item("w", 10), _Item("o", 10), _Item(".", 40), _Item("$", 25)],
                   np.zeros(300, np.float32))
    second = _Chunk([_Item("^", 7), _Item("a", 13), _Item("!", 20), _Item("$", 10)], np.zeros(50, np.float32))
    chunks = [first, second]
    assert tts_piper.word_spans(chunks, ["he", "", "wo", "a"]) == [(100, 135), (135, 135), (215, 235), (307, 320)]
    assert tts_piper.word_spans(chunks, ["hew", "o", "a"]) == [(100, 225), (225, 235), (307, 320)]
    assert tts_piper.word_spans(chunks, ["he", "xy", "a"]) == [(100, 135), (215, 235), (307, 320)]
    assert tts_piper.word_spans([first, _Chunk(None, np.zeros(10, np.float32))], ["he", "wo"]) is None
    # a phoneme of two characters (an affricate written with its tie) is still one phoneme of one word
    affricate = _Chunk([_Item("^", 5), _Item("t͡ʃ", 10), _Item("a", 10), _Item(" ", 5), _Item("b", 10),
                        _Item("$", 5)], np.zeros(45, np.float32))
    assert tts_piper.word_spans([affricate], ["t͡ʃa", "b"]) == [(5, 25), (30, 40)]


@pytest.mark.slow
def test_piper_words_sound_where_the_voice_says(settings: Settings, tmp_path: Path) -> None:
    """Every word's span holds sound, every pause between sentences falls between two words, and the times
    agree with whisper listening to the same audio (forced alignment, which estimates ~0.1 s late)."""
    res = speak(PLAIN, settings, tmp_path / "voice")
    assert res.data["word_timings_from"] == "voice" and res.data["matched_ratio"] == 1.0
    words = res.data["words"]
    assert [w["text"] for w in words] == PLAIN.split()
    audio, rate = read_wav(res.outputs["audio"])
    assert_sound_in_every_word(words, audio, rate)
    for before, after in itertools.pairwise(words):
        assert before["end"] <= after["start"]
        if before["text"].endswith("."):
            # the sentence pause: silence (the joiner's zeros, faded edges) between the two words
            gap = audio[int(before["end"] * rate) + int(0.03 * rate): int(after["start"] * rate) - int(0.03 * rate)]
            assert gap.size >= int((PAUSE_S - 0.1) * rate) and np.max(np.abs(gap)) < 0.02, (before, after)
    assert_near_whisper(words, res.outputs["audio"], settings, tmp_path / "align", "voice")


@pytest.mark.slow
def test_a_sentence_the_voice_could_not_time_is_aligned_by_whisper(settings: Settings, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """One sentence without the voice's times (as from a voice whose graph gives none, or a word whose
    sounds were not found): whisper aligns that sentence alone and the others keep the voice's times."""
    real = tts_piper.word_spans

    def none_for_numbers(chunks: list[object], alone: list[str]) -> list[tuple[int, int]] | None:
        return None if any("θ" in a for a in alone) else real(chunks, alone)  # "2024": two thousand ...

    monkeypatch.setattr(tts_piper, "word_spans", none_for_numbers)
    # the second and the fourth sentence go to whisper, in two windows (the split: test_speech_align.py)
    text = ("The weather was calm today. In 2024, well-known facts changed — really! The boats came home. "
            "Three gulls sat on the mast.")
    res = speak(text, settings, tmp_path)
    assert res.data["word_timings_from"] == "voice+alignment"
    words = res.data["words"]
    assert [w["text"] for w in words] == text.split()
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))
    duration = res.data["duration_s"]
    assert all(0 <= w["start"] <= w["end"] <= duration for w in words)
    audio, rate = read_wav(res.outputs["audio"])
    for w in words:
        if w["text"] != "—":  # every word that sounds holds sound, whoever timed it
            assert np.max(np.abs(audio[int(w["start"] * rate): int(w["end"] * rate)])) > 0.05, w
    home, three = text.split().index("home."), text.split().index("Three")
    assert words[three]["start"] - words[home]["end"] >= PAUSE_S - 0.1  # the pause between them stays a gap


@pytest.mark.slow
def test_without_the_voice_durations_every_word_is_aligned(settings: Settings, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts_piper, "word_spans", lambda chunks, alone: None)  # a voice whose graph gives none
    text = "A small dog barked at the seagulls. The baker opened his shop."
    res = speak(text, settings, tmp_path)
    assert res.data["word_timings_from"] == "alignment"
    assert [w["text"] for w in res.data["words"]] == text.split()


def decoded(path: Path) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(raw, "<i2")


def test_the_streamed_encode_is_the_file_encode(tmp_path: Path) -> None:
    """Speech fed to the encoder piece by piece gives the same AAC as encoding the joined wav afterwards."""
    rate = 22050
    t = np.arange(rate * 7) / rate
    audio = (0.4 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 0.7 * t)).astype(np.float32)
    wav = tmp_path / "joined.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm16(audio))
    subprocess.run(["ffmpeg", "-v", "error", "-y", *encode_args(wav, tmp_path / "file.m4a", "m4a", 48000)],
                   check=True)
    encoder = PcmEncoder(output_args("m4a", 48000), tmp_path / "streamed.m4a")
    for piece in np.array_split(audio, [3000, 40000, 41000, 100000]):
        encoder.write(piece, rate)
    encoder.close()
    a, b = decoded(tmp_path / "file.m4a"), decoded(tmp_path / "streamed.m4a")
    assert a.size == b.size and a.size > 6 * 48000 and np.array_equal(a, b)


def test_an_aborted_encode_leaves_no_ffmpeg(tmp_path: Path) -> None:
    encoder = PcmEncoder(output_args("m4a", 48000), tmp_path / "x.m4a")
    encoder.write(np.zeros(22050, np.float32), 22050)
    proc = encoder._proc
    assert proc is not None and proc.poll() is None
    encoder.abort()
    assert proc.poll() is not None
    other = PcmEncoder(output_args("wav", 16000), tmp_path / "y.wav")
    other.write(np.zeros(100, np.float32), 22050)
    with pytest.raises(ValueError):  # one encode, one rate
        other.write(np.zeros(100, np.float32), 16000)
    other.abort()


# ---------------------------------------------------------------- espeak: the synthesiser's word events
def test_espeak_word_events_map_to_the_script_words() -> None:
    """Events (first character, length, first sample) to whitespace words: the first event inside a word
    starts it ("2024," is said as several words), a word lasts until the next starts, a silent dash takes
    no time where its neighbours meet, words run together share their event's time."""
    from reelforge.models.tts_espeak import word_spans

    text = "In 2024, well-known — really!"
    events = [(0, 2, 0), (3, 4, 100), (4, 3, 180), (9, 4, 300), (14, 5, 380), (22, 6, 500)]
    assert word_spans(text, events, 900) == [(0, 100), (100, 300), (300, 500), (500, 500), (500, 900)]
    # "on the" run together as one event: the two share its time by letters
    assert word_spans("sat on the pier.", [(0, 3, 0), (4, 2, 100), (11, 4, 200)], 300) == [
        (0, 100), (100, 140), (140, 200), (200, 300)]
    assert word_spans("the end", [(4, 3, 50)], 100) is None  # a sounding word before every event
    assert word_spans("— go", [(2, 2, 10)], 100) == [(10, 10), (10, 100)]
    assert word_spans("", [], 0) == []


@pytest.mark.slow
def test_espeak_times_its_own_words_with_the_binary_s_audio(settings: Settings, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The library speaks exactly what the espeak-ng binary says (sample for sample) and reports its words:
    the tts op needs no forced alignment, every word holds sound, and whisper hears the words about where
    espeak says they start. With the binary overridden the words are aligned as before."""
    from reelforge.models import tts_espeak

    sentence = "The baker opened his shop, and the smell of bread filled the street."
    audio, rate, spans = tts_espeak.synthesize_timed(sentence, voice="en-us", speed=1.0, language="",
                                                     settings=settings)
    binary, binary_rate = tts_espeak._speak_binary(sentence, "en-us", 1.0)
    assert rate == binary_rate and np.array_equal(audio, binary)
    assert spans is not None and len(spans) == len(sentence.split())

    op = get_operation("tts")
    params = op.params_model(text=PLAIN, engine="espeak", format="wav", sample_rate=22050, sentence_pause_s=PAUSE_S)
    res = op.run(params, OpContext.for_test(tmp_path / "voice", settings))
    assert res.data["word_timings_from"] == "voice" and res.data["matched_ratio"] == 1.0
    words = res.data["words"]
    assert [w["text"] for w in words] == PLAIN.split()
    assert_sound_in_every_word(words, *read_wav(res.outputs["audio"]))
    assert all(x["end"] <= y["start"] for x, y in itertools.pairwise(words))
    assert_near_whisper(words, res.outputs["audio"], settings, tmp_path / "align", "espeak")

    monkeypatch.setenv("REELFORGE_ESPEAK", "espeak-ng")  # another binary: its library is unknown
    assert tts_espeak.synthesize_timed(sentence, voice="en-us", speed=1.0, language="", settings=settings)[2] is None
    res = op.run(params, OpContext.for_test(tmp_path / "binary", settings))
    assert res.data["word_timings_from"] == "alignment" and [w["text"] for w in res.data["words"]] == PLAIN.split()
