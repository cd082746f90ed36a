"""TTS: the 20-sentence round trip (tts -> transcribe, WER <= 0.1; align keeps the script's words),
engines, formats, joins without clicks, and bad input answered with what exists."""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.media.probe import probe
from reelforge.models import tts as tts_models
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.registry import get_operation
from reelforge.ops.tts import encode_args

SCRIPT = " ".join([
    "The morning sun rose slowly over the quiet harbor.",
    "Fishing boats were already heading out to sea.",
    "A small dog barked at the seagulls on the pier.",
    "The baker opened his shop and the smell of fresh bread filled the street.",
    "Children walked to school with their bags on their backs.",
    "An old man sat on a bench and read the newspaper.",
    "The wind carried the sound of bells from the church.",
    "A young woman painted the boats in bright colors.",
    "Tourists took photos of the lighthouse on the hill.",
    "The market was full of fruit, vegetables and flowers.",
    "At noon the town became quiet and warm.",
    "People ate lunch in the shade of the trees.",
    "In the afternoon the boats came back with their catch.",
    "The fishermen sold their fish at the busy market.",
    "Clouds gathered slowly over the distant mountains.",
    "A light rain began to fall on the roofs.",
    "The children ran home through the wet streets.",
    "Lights appeared one by one in the windows.",
    "The harbor grew calm as the evening came.",
    "Finally the whole town went to sleep under the stars.",
])


def norm(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def wer(reference: str, hypothesis: str) -> float:
    ref, hyp = norm(reference), norm(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(1, len(ref))


def test_wer_helper() -> None:
    assert wer("a b c d", "a b c d") == 0
    assert wer("a b c d", "a x c") == 0.5


@pytest.fixture(scope="module")
def mod_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), whisper_model="packaged:tiny.en", workers=1,
                    device="cpu")


def new_ctx(root: Path, settings: Settings) -> OpContext:
    return OpContext.for_test(root, settings)


@pytest.fixture(scope="module")
def piper_result(tmp_path_factory: pytest.TempPathFactory, mod_settings: Settings) -> OpResult:
    op = get_operation("tts")
    return op.run(op.params_model(text=SCRIPT, engine="piper", format="wav", sample_rate=22050),
                  new_ctx(tmp_path_factory.mktemp("tts"), mod_settings))


@pytest.mark.slow
def test_round_trip_tts_then_transcribe(piper_result: OpResult, mod_settings: Settings, tmp_path: Path) -> None:
    audio = piper_result.outputs["audio"]
    info = probe(audio)
    assert info.audio is not None and info.audio.sample_rate == 22050
    assert abs(info.duration_s - piper_result.data["duration_s"]) < 0.1
    assert piper_result.data["sentences"] == 20
    op = get_operation("transcribe")
    res = op.run(op.params_model(input=str(audio), language="en"), new_ctx(tmp_path, mod_settings))
    error = wer(SCRIPT, res.data["text"])
    print(f"round trip WER {error:.3f}")
    assert error <= 0.1, res.data["text"]


@pytest.mark.slow
def test_tts_word_timings_are_the_script_verbatim(piper_result: OpResult) -> None:
    words = piper_result.data["words"]
    assert [w["text"] for w in words] == SCRIPT.split()
    duration = probe(piper_result.outputs["audio"]).duration_s
    assert all(0 <= w["start"] <= w["end"] <= duration + 0.01 for w in words)
    assert all(a["end"] <= b["start"] for a, b in itertools.pairwise(words))
    assert piper_result.data["matched_ratio"] >= 0.9
    assert json.loads(piper_result.outputs["words"].read_text())["words"] == words
    # the sentence pauses show up as gaps before each sentence's first word
    first_words = [i for i, w in enumerate(words) if i and words[i - 1]["text"].endswith(".")]
    gaps = [words[i]["start"] - words[i - 1]["end"] for i in first_words]
    assert np.median(gaps) > 0.1


def test_espeak_mp3_and_m4a(mod_settings: Settings, tmp_path: Path) -> None:
    op = get_operation("tts")
    for fmt, codec in (("mp3", "mp3"), ("m4a", "aac")):
        res = op.run(op.params_model(text="Testing one two three. Second sentence here.", engine="espeak",
                                     voice="en-gb", format=fmt, speed=1.2, word_timings=False),
                     new_ctx(tmp_path / fmt, mod_settings))
        info = probe(res.outputs["audio"])
        assert info.audio is not None and info.audio.codec == codec and info.audio.sample_rate == 48000
        assert info.duration_s > 1.0 and "words" not in res.outputs


@pytest.mark.slow
def test_kokoro_packaged_voice(mod_settings: Settings, tmp_path: Path) -> None:
    op = get_operation("tts")
    res = op.run(op.params_model(text="Good morning.", engine="kokoro", voice="jf_alpha", word_timings=False,
                                 sample_rate=24000), new_ctx(tmp_path, mod_settings))
    info = probe(res.outputs["audio"])
    assert info.audio is not None and info.audio.sample_rate == 24000 and info.duration_s > 0.4
    assert mod_settings.models.model_cache_dir is not None
    assert (mod_settings.models.model_cache_dir / "kokoro" / "kokoro-v1.0.int8.onnx").is_file()


def test_bad_input_is_rejected_with_what_exists() -> None:
    params = get_operation("tts").params_model
    for bad in ({"text": ""}, {"text": "   \n"}, {"text": "a" * 20_001}, {"text": "hi", "engine": "festival"},
                {"text": "hi", "speed": 3}, {"text": "hi", "format": "ogg"}):
        with pytest.raises(ValidationError):
            params(**bad)
    with pytest.raises(ValidationError, match="Available: joe"):
        params(text="hi", engine="piper", voice="amy")
    with pytest.raises(ValidationError, match="en-us"):
        params(text="hi", engine="piper", language="de")
    with pytest.raises(ValidationError, match="jf_alpha"):
        params(text="hi", engine="kokoro", voice="af_heart")
    with pytest.raises(ValidationError, match=r"Available: .*en-us"):
        params(text="hi", engine="espeak", voice="xx-nowhere")
    with pytest.raises(ValidationError):
        params(text="hi", engine="piper", voices_file="v.bin")


def test_list_voices_covers_every_engine() -> None:
    voices = tts_models.list_voices()
    engines = {v["engine"] for v in voices}
    assert engines == {"piper", "kokoro", "espeak"}
    defaults = {v["engine"]: v["voice"] for v in voices if v.get("default")}
    assert defaults == {"piper": "joe", "kokoro": "jf_alpha", "espeak": "en-us"}


def test_sentence_split_and_joins_without_clicks() -> None:
    text = 'Hello there. "Quoted!" he said? Yes.\n\nNew paragraph without end\nsame paragraph.'
    assert tts_models.split_sentences(text) == ["Hello there.", '"Quoted!"', "he said?", "Yes.",
                                                "New paragraph without end same paragraph."]
    long = "word, " * 200
    assert all(len(s) <= tts_models.MAX_SENTENCE_CHARS for s in tts_models.split_sentences(long))
    rate = 22050
    t = np.arange(rate // 2) / rate
    tone = (0.8 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # starts/ends mid-wave: would click
    speech = tts_models.join_pieces([(tone, rate), (tone, rate)], pause_s=0.2, texts=["a", "b"])
    joined = speech.audio
    assert speech.rate == rate
    # the spans say where each sentence sounds: the lead, the tone, the pause, the tone again
    first, second = speech.sentences
    assert (first.text, second.text) == ("a", "b")
    assert abs(first.start_s - 0.1) < 0.03 and abs(second.start_s - first.end_s - 0.2) < 1e-6
    assert abs(second.end_s - (speech.duration_s - 0.1)) < 1e-6
    # no sample-to-sample jump bigger than the tone's own slope anywhere (a click is a step)
    max_step = float(np.max(np.abs(np.diff(tone))))
    assert float(np.max(np.abs(np.diff(joined)))) <= max_step + 1e-6
    assert joined.size >= 2 * tone.size * 0.9 + 0.2 * rate


def test_encode_args_plan() -> None:
    wav = encode_args(Path("in.wav"), Path("o.wav"), "wav", 48000)
    assert wav[-3:] == ["-c:a", "pcm_s16le", "o.wav"] and wav[wav.index("-ar") + 1] == "48000"
    assert "libmp3lame" in encode_args(Path("i"), Path("o.mp3"), "mp3", 44100)
    m4a = encode_args(Path("i"), Path("o.m4a"), "m4a", 24000)
    assert "aac" in m4a and "+faststart" in m4a


def test_text_never_reaches_espeak_argv(tmp_path: Path) -> None:
    from reelforge.models.tts_espeak import build_args

    args = build_args("en-us", 1.0, tmp_path / "o.wav")
    assert args[-1] == "--stdin"
    # a text that looks like options is spoken, not obeyed
    out = tmp_path / "o.wav"
    subprocess.run(args, input=b"-w /tmp/evil.wav --help", check=True)
    with wave.open(str(out)) as w:
        assert w.getnframes() > 0


PARALLEL_TEXT = " ".join(tts_models.split_sentences(SCRIPT)[:6])


def pcm16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")  # what ops.tts.write_wav stores


def test_parallel_synthesis_gives_the_sequential_samples(mod_settings: Settings) -> None:
    """Several sentences spoken at once are joined in the text's order: the same PCM as one at a time."""
    req = tts_models.resolve_voice("espeak", "en-us", None)
    seq = tts_models.synthesize_text(PARALLEL_TEXT, req, speed=1.0, settings=mod_settings, workers=1)
    par = tts_models.synthesize_text(PARALLEL_TEXT, req, speed=1.0, settings=mod_settings, workers=2)
    assert len(seq.sentences) == 6
    assert np.array_equal(pcm16(par.audio), pcm16(seq.audio)) and par.sentences == seq.sentences


def test_parallel_piper_keeps_the_order_and_the_samples(mod_settings: Settings,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Piper's voices draw noise inside the model on every call (no two runs are alike), so the noise is
    turned off here to compare: 2 workers on one-thread sessions vs one at a time on the job's 2-thread
    session give the same sentences in the same places, sample for sample within 1 LSB of 16-bit PCM
    (the two thread pools sum floats in a different order: ~1e-5 apart)."""
    import functools

    import piper

    monkeypatch.setattr(piper, "SynthesisConfig",
                        functools.partial(piper.SynthesisConfig, noise_scale=0.0, noise_w_scale=0.0))
    req = tts_models.resolve_voice("piper", None, "en-us")
    seq = tts_models.synthesize_text(PARALLEL_TEXT, req, speed=1.0, settings=mod_settings, workers=1)
    par = tts_models.synthesize_text(PARALLEL_TEXT, req, speed=1.0, settings=mod_settings, workers=2)
    assert len(par.sentences) == 6 and par.sentences == seq.sentences
    a, b = pcm16(seq.audio).astype(np.int32), pcm16(par.audio).astype(np.int32)
    assert a.size == b.size and int(np.max(np.abs(a - b))) <= 1


def test_parallel_synthesis_reports_in_order_and_stops_on_cancel(mod_settings: Settings) -> None:
    req = tts_models.resolve_voice("espeak", "en-us", None)
    seen: list[tuple[int, int]] = []
    tts_models.synthesize_text(PARALLEL_TEXT, req, speed=1.0, settings=mod_settings, workers=3,
                               on_sentence=lambda done, total: seen.append((done, total)))
    assert seen == [(i, 6) for i in range(1, 7)]

    class Cancelled(Exception):
        pass

    def cancel_at_two(done: int, total: int) -> None:
        if done == 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        tts_models.synthesize_text(PARALLEL_TEXT, req, speed=1.0, settings=mod_settings, workers=2,
                                   on_sentence=cancel_at_two)
