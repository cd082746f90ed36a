"""`tts`: text to speech (piper, kokoro, espeak) with word timings.

Text is spoken sentence by sentence (several sentences at once where the engine can: see
models.tts.synthesize_text) and joined with short pauses (faded joins, no clicks), then encoded once by
ffmpeg to the requested format and rate. Word timings are real: a piper voice says how long each phoneme
sounds, so its words' times come with the audio (ops.tts_words); sentences it cannot time, and the other
engines, are force-aligned by whisper window by window (no transcription needed: the words are known,
only their times are not) while the encode runs. Either way the words equal the text verbatim.
"""

from __future__ import annotations

import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from reelforge.captions.align import Alignment
from reelforge.captions.words import write_words_json
from reelforge.config import Settings
from reelforge.errors import InvalidParams, ProcessingError
from reelforge.media.audio_pipe import PcmEncoder
from reelforge.media.ffmpeg import ensure_file_output
from reelforge.models import tts as tts_models
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params, context_settings
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources
from reelforge.ops.tts_words import speech_alignment, voice_alignment

MAX_TEXT_CHARS = 20_000
AudioFormat = Literal["wav", "mp3", "m4a"]


class TTSParams(Params):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, description="what to say; long text is fine")
    engine: Literal["piper", "kokoro", "espeak"] = "piper"
    voice: str | None = Field(default=None, description="engine voice; GET /v1/voices lists them")
    language: str | None = Field(default=None, description="e.g. en-us; default: the voice's language")
    speed: float = Field(default=1.0, ge=0.5, le=2.0)
    format: AudioFormat = "wav"
    sample_rate: Literal[16000, 22050, 24000, 44100, 48000] = 48000
    sentence_pause_s: float = Field(default=0.3, ge=0.0, le=3.0)
    word_timings: bool = Field(default=True, description="align the audio to the text (runs whisper)")
    voices_file: MediaRef | None = Field(default=None, description="kokoro only: your voices file (.bin/.npz)")

    @field_validator("text")
    @classmethod
    def _text(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("text must not be empty")
        return v

    @model_validator(mode="after")
    def _voice(self, info: ValidationInfo) -> TTSParams:
        if self.voices_file is not None and self.engine != "kokoro":
            raise ValueError("voices_file is only used by the kokoro engine")
        if self.engine == "kokoro" and self.voices_file:
            return self  # the voice list is in a file only readable at run time
        settings = context_settings(info)
        if settings is not None and not voices_readable_here(settings):
            return self  # the API host lacks the voice folders its workers have: the worker checks
        try:
            # the text's language is not detected here: the submit path stays fast, the worker decides
            tts_models.resolve_voice(self.engine, self.voice, self.language,
                                     voice_dirs=settings.models.voice_dirs if settings else (),
                                     kokoro_voices=settings.models.kokoro_voices if settings else None)
        except InvalidParams as exc:
            raise ValueError(exc.message) from exc
        return self


def voices_readable_here(settings: Settings) -> bool:
    models = settings.models
    folders = [*models.voice_dirs, *([models.kokoro_voices] if models.kokoro_voices else [])]
    return all(p.exists() for p in folders)


def output_args(fmt: str, sample_rate: int) -> list[str]:
    """ffmpeg's output arguments for the requested format and rate (the input is the joined mono speech)."""
    codec = {"wav": ["-c:a", "pcm_s16le"],
             "mp3": ["-c:a", "libmp3lame", "-b:a", "160k"],
             "m4a": ["-c:a", "aac", "-b:a", "160k", "-movflags", "+faststart"]}[fmt]
    return ["-vn", "-ac", "1", "-ar", str(sample_rate), *codec]


def encode_args(src: Path, dst: Path, fmt: str, sample_rate: int) -> list[str]:
    """ffmpeg arguments turning a joined 16-bit wav into the requested format and rate."""
    return ["-i", str(src), *output_args(fmt, sample_rate), str(dst)]


def write_wav(audio: np.ndarray, rate: int, path: Path) -> Path:
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())
    return path


@operation(
    "tts",
    params=TTSParams,
    summary="Text to speech (piper, kokoro, espeak) with word timings for captions.",
    resources=Resources(gpu="optional", vram_gb=1),  # piper/kokoro ONNX take CUDA when there
    timeout_s=1800,
    example={"text": "Welcome to ReelForge. This voice was made on your own server.", "engine": "piper",
             "format": "mp3"},
)
def run(params: TTSParams, ctx: OpContext) -> OpResult:
    voices_file = ctx.fetch(params.voices_file) if params.voices_file else None
    models = ctx.settings.models
    req = tts_models.resolve_voice(params.engine, params.voice, params.language, voices_file, text=params.text,
                                   voice_dirs=models.voice_dirs, kokoro_voices=models.kokoro_voices)
    sentences = tts_models.split_sentences(params.text)
    if not sentences:
        raise InvalidParams("The text has nothing to speak.", code="empty_text")
    if not tts_models.is_warm(req, ctx.settings):
        ctx.stage("loading_model", 0.0)
    ctx.note(tts_engine=req.engine, tts_voice=req.voice, tts_language=req.language)
    if req.note:
        ctx.note(tts_voice_choice=req.note)
    # piper times its own words (ops.tts_words): after its synthesis only the encode's tail is left
    synth_end = 0.6 if params.word_timings and req.engine != "piper" else 0.9

    def on_sentence(done: int, total: int) -> None:
        ctx.check_cancelled()
        ctx.progress(0.02 + (synth_end - 0.02) * done / total, "synthesizing")

    out = ctx.output_path("speech", f".{params.format}")
    encoded = ctx.temp_path(out.name)  # moved into place only once complete
    # the encode is fed sentence by sentence while the rest is still being spoken (media.audio_pipe)
    encoder = PcmEncoder(output_args(params.format, params.sample_rate), encoded)
    ctx.progress(0.02, "synthesizing")
    try:
        speech = tts_models.synthesize_text(params.text, req, speed=params.speed, settings=ctx.settings,
                                            pause_s=params.sentence_pause_s, voices_file=voices_file,
                                            on_sentence=on_sentence, on_audio=encoder.write)
        audio, rate = speech.audio, speech.rate
        if audio.size == 0 or not np.any(np.abs(audio) > tts_models.SILENCE_THRESHOLD):
            raise ProcessingError("The engine produced no sound for this text.", code="tts_silent")
        duration = speech.duration_s
        data: dict[str, object] = {"duration_s": round(duration, 3), "sample_rate": params.sample_rate,
                                   "engine": req.engine, "voice": req.voice, "language": req.language,
                                   "sentences": len(sentences)}
        outputs: dict[str, Path] = {}
        voiced = voice_alignment(speech, params.text) if params.word_timings else None
        alignment: Alignment | None = voiced
        source = "voice"
        ctx.progress(synth_end, "encoding")
        if params.word_timings and voiced is None:
            # The encode's tail runs beside the alignment, instead of before or after it. Alignment reads
            # the lossless joined wav (same timeline as the encoded file, without codec delay), one known
            # sentence window at a time: the synthesis says which sentence sounds where.
            joined = write_wav(audio, rate, ctx.temp_path("speech.wav"))
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tts-encode") as pool:
                encoding = pool.submit(encoder.close)
                alignment, source = speech_alignment(joined, speech, params.text, ctx, language=req.language,
                                                     span=(synth_end + 0.05, 0.99))
                encoding.result()
            joined.unlink(missing_ok=True)
        else:
            encoder.close()
    except BaseException:
        encoder.abort()
        raise
    if params.word_timings and alignment is not None:
        outputs["words"] = write_words_json(alignment.words, ctx.output_path("words", ".json"))
        data["words"] = [w.to_dict() for w in alignment.words]
        data["matched_ratio"] = round(alignment.matched_ratio, 3)
        data["word_timings_from"] = source
    ensure_file_output(encoded, "audio").replace(out)
    outputs = {"audio": out, **outputs}
    ctx.progress(1.0, "done")
    return OpResult(outputs=outputs, data=data)
