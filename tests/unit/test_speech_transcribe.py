"""Transcription: device choice, model resolution, outputs, warm model, silence, corrupt audio, bad params."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pysubs2
import pytest
from pydantic import ValidationError

import reelforge.device
from reelforge.config import Settings
from reelforge.errors import InvalidParams, JobCancelled, MediaError, ProcessingError
from reelforge.models.cache import MODEL_CACHE
from reelforge.models.whisper import choose_whisper, decode_args, resolve_model_path
from reelforge.ops.context import OpContext
from reelforge.ops.registry import get_operation

SPEECH = "The weather is lovely today. We are going to the beach this afternoon."


@pytest.fixture(scope="module")
def mod_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings(data_dir=tmp_path_factory.mktemp("data"), whisper_model="packaged:tiny.en", workers=1,
                    device="cpu")


@pytest.fixture(scope="module")
def speech_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("media") / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), "--stdin"], input=SPEECH.encode(),
                   check=True)
    return out


def new_ctx(tmp_path: Path, settings: Settings, stages: list[str] | None = None, **kw) -> OpContext:
    def on_progress(fraction: float, stage: str | None) -> None:
        if stages is not None and stage and (not stages or stages[-1] != stage):
            stages.append(stage)

    return OpContext.for_test(tmp_path / "work", settings, on_progress=on_progress, **kw)


def test_device_choice_cuda_when_ct2_reports_cuda(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("REELFORGE_FORCE_CPU", raising=False)
    settings = Settings(data_dir=tmp_path, whisper_model="packaged:tiny.en")
    monkeypatch.setattr(reelforge.device, "ctranslate2_cuda_devices", lambda: 1)
    choice = choose_whisper(settings)
    assert (choice.device, choice.compute_type) == ("cuda", "float16")
    assert choose_whisper(settings.replace(device="cpu")).device == "cpu"
    monkeypatch.setattr(reelforge.device, "ctranslate2_cuda_devices", lambda: 0)
    choice = choose_whisper(settings)
    assert (choice.device, choice.compute_type) == ("cpu", "int8")


def test_model_resolution(tmp_path: Path) -> None:
    tiny = resolve_model_path(Settings(data_dir=tmp_path, whisper_model="packaged:tiny.en"))
    assert (tiny / "model.bin").is_file()
    # any local CTranslate2 folder works
    assert resolve_model_path(Settings(data_dir=tmp_path, whisper_model=str(tiny))) == tiny.resolve()
    assert choose_whisper(Settings(data_dir=tmp_path, whisper_model=str(tiny))).english_only
    for name in ("base", "Systran/faster-whisper-small", "packaged:large", str(tmp_path / "missing")):
        with pytest.raises(ProcessingError) as err:
            resolve_model_path(Settings(data_dir=tmp_path, whisper_model=name))
        assert err.value.code == "model_unavailable"
    with pytest.raises(ProcessingError, match="offline"):
        resolve_model_path(Settings(data_dir=tmp_path, whisper_model="base"))


def test_decode_args_take_first_audio_stream_as_16k_mono() -> None:
    args = decode_args(Path("in.mp4"), Path("out.f32"))
    assert args[:2] == ["-i", "in.mp4"]
    assert args[args.index("-map") + 1] == "0:a:0"
    assert args[args.index("-ar") + 1] == "16000" and args[args.index("-ac") + 1] == "1"


def test_transcribe_outputs_and_warm_model(speech_wav: Path, mod_settings: Settings, tmp_path: Path) -> None:
    op = get_operation("transcribe")
    MODEL_CACHE.clear()  # make this the first job of the process
    first: list[str] = []
    res = op.run(op.params_model(input=str(speech_wav)), new_ctx(tmp_path / "a", mod_settings, first))
    assert "loading_model" in first and first[-1] == "done"
    words = res.data["text"].lower()
    assert "lovely" in words and "beach" in words and "afternoon" in words
    assert res.data["language"] == "en" and res.data["device"] == "cpu" and res.data["compute_type"] == "int8"
    assert set(res.outputs) == {"transcript", "segments_srt", "segments_vtt", "words", "captions"}
    assert res.outputs["transcript"].read_text().strip() == res.data["text"]
    srt = pysubs2.load(str(res.outputs["segments_srt"]))
    assert len(srt) >= 1 and srt[0].end > srt[0].start
    assert res.outputs["segments_vtt"].read_text().startswith("WEBVTT")
    wj = json.loads(res.outputs["words"].read_text())["words"]
    assert len(wj) >= 10 and all(w["start"] <= w["end"] for w in wj)
    ass = pysubs2.load(str(res.outputs["captions"]))
    assert all("\\kf" in e.text for e in ass)
    # second job in the same process: the model is warm, no loading stage
    second: list[str] = []
    ctx2 = new_ctx(tmp_path / "b", mod_settings, second)
    op.run(op.params_model(input=str(speech_wav), word_timestamps=False, beam_size=1), ctx2)
    assert "loading_model" not in second and "transcribing" in second
    assert ctx2.notes["device"] == "cpu" and ctx2.notes["compute_type"] == "int8"


def test_batched_pipeline_transcribes_too(speech_wav: Path, mod_settings: Settings, tmp_path: Path) -> None:
    op = get_operation("transcribe")
    res = op.run(op.params_model(input=str(speech_wav), batched=True), new_ctx(tmp_path, mod_settings))
    assert res.data["batched"] is True and "beach" in res.data["text"].lower()


def test_silence_gives_empty_transcript(make_audio, mod_settings: Settings, tmp_path: Path) -> None:
    silent = tmp_path / "silence.wav"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                    "anullsrc=r=16000:cl=mono", "-t", "3", str(silent)], check=True)
    op = get_operation("transcribe")
    res = op.run(op.params_model(input=str(silent)), new_ctx(tmp_path, mod_settings))
    assert res.data["text"] == "" and res.data["words"] == 0
    assert res.outputs["transcript"].read_text() == ""
    assert len(pysubs2.load(str(res.outputs["captions"]))) == 0


def test_corrupt_and_audio_less_inputs_are_media_errors(make_video, mod_settings: Settings,
                                                        tmp_path: Path) -> None:
    op = get_operation("transcribe")
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"ID3" + bytes(range(256)) * 40)
    with pytest.raises(MediaError):
        op.run(op.params_model(input=str(bad)), new_ctx(tmp_path / "a", mod_settings))
    silent_video = make_video(duration=1.0, audio=False)
    with pytest.raises(MediaError) as err:
        op.run(op.params_model(input=str(silent_video)), new_ctx(tmp_path / "b", mod_settings))
    assert err.value.code == "no_audio_stream"


def test_bad_params(speech_wav: Path, mod_settings: Settings, tmp_path: Path) -> None:
    op = get_operation("transcribe")
    with pytest.raises(ValidationError, match="unknown language"):
        op.params_model(input="a.wav", language="klingon")
    with pytest.raises(ValidationError):
        op.params_model(input="a.wav", task="summarise")
    with pytest.raises(ValidationError):
        op.params_model(input="a.wav", beam_size=0)
    assert op.params_model(input="a.wav", language="auto").language is None
    # the English-only test model cannot take German
    with pytest.raises(InvalidParams) as err:
        op.run(op.params_model(input=str(speech_wav), language="de"), new_ctx(tmp_path, mod_settings))
    assert err.value.code == "unsupported_language"


def test_cancel_stops_the_job(speech_wav: Path, mod_settings: Settings, tmp_path: Path) -> None:
    op = get_operation("transcribe")
    ctx = new_ctx(tmp_path, mod_settings, is_cancelled=lambda: True)
    with pytest.raises(JobCancelled):
        op.run(op.params_model(input=str(speech_wav)), ctx)


def test_a_job_picks_its_whisper_model_by_name(speech_wav: Path, mod_settings: Settings, tmp_path: Path) -> None:
    from reelforge.ops.params import submit_context

    op = get_operation("transcribe")
    # the service's own model is unusable here: the job's choice is what runs
    settings = mod_settings.replace(whisper_model="/nonexistent/whisper",
                                    whisper_models={"fast": "packaged:tiny.en"})
    ctx = submit_context(settings)
    assert op.params_model.model_validate({"input": "https://example.com/a.wav", "model": "tiny.en"}, context=ctx).model
    with pytest.raises(ValidationError, match=r"unknown whisper model 'large-v3'.*base, tiny.en.*fast"):
        op.params_model.model_validate({"input": "https://example.com/a.wav", "model": "large-v3"}, context=ctx)
    with pytest.raises(ValidationError, match="unknown whisper model '/models/x'"):  # never a path
        op.params_model.model_validate({"input": "https://example.com/a.wav", "model": "/models/x"}, context=ctx)
    job_ctx = new_ctx(tmp_path, settings)
    res = op.run(op.params_model(input=str(speech_wav), model="fast", word_timestamps=False), job_ctx)
    assert "beach" in res.data["text"].lower() and job_ctx.notes["whisper_model"] == "packaged:tiny.en"


def test_segments_srt_cues_are_two_lines_of_at_most_42_characters() -> None:
    from reelforge.captions import Word
    from reelforge.models.whisper import Segment, Transcript
    from reelforge.ops.transcribe import readable_subs, segments_subs, transcript_words

    long_text = ("this is a rather long segment that whisper produced in one piece and that would not fit "
                 "on a screen in two lines of subtitles at all")
    tokens = long_text.split()
    words = tuple(Word(t, i * 0.3, i * 0.3 + 0.25) for i, t in enumerate(tokens))
    second = (Word("Next.", 9.0, 9.4),)
    segments = (Segment(0.0, words[-1].end, long_text, words), Segment(9.0, 9.4, "Next.", second))
    transcript = Transcript(segments=segments, language="en", language_probability=1.0, duration=10.0, device="cpu",
                            compute_type="int8", batched=False, loaded_model=False)
    breaks: set[int] = set()
    subs = readable_subs(transcript_words(transcript, segments_subs(transcript), breaks), breaks)
    assert len(long_text) > 96 and len(subs) >= 2
    for event in subs:
        lines = event.plaintext.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines), lines
    assert " ".join(e.plaintext.replace("\n", " ") for e in subs) == long_text + " Next."
    assert subs[-1].plaintext == "Next." and subs[-1].start == 9000  # a cue never spans two segments
