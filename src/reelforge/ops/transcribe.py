"""`transcribe`: speech to text with faster-whisper -> transcript.txt, SRT, VTT, words.json, karaoke ASS."""

from __future__ import annotations

from typing import Literal

import pysubs2
from pydantic import Field, ValidationInfo, field_validator

from reelforge.captions import CaptionStyle, Word, build_subtitles, save_subs, words_from_subs
from reelforge.captions.build import build_plain
from reelforge.captions.words import write_words_json
from reelforge.errors import InvalidParams, MediaError
from reelforge.media.limits import probe_input
from reelforge.media.probe import require_audio
from reelforge.models.whisper import (
    BUILTIN_JOB_MODELS,
    TranscribeOptions,
    Transcript,
    decode_audio,
    job_models,
    transcribe_audio,
    whisper_languages,
)
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params, context_settings
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources


class TranscribeParams(Params):
    input: MediaRef = Field(description="audio or video")
    model: str | None = Field(default=None, description="whisper model by name (base, tiny.en, or one the "
                              "operator configured in WHISPER_MODELS); default: the service's WHISPER_MODEL")
    language: str | None = Field(default=None, description="ISO code such as en, de; 'auto' or none detects")
    task: Literal["transcribe", "translate"] = Field(default="transcribe", description="translate: to English")
    vad: bool = Field(default=True, description="skip non-speech with Silero VAD")
    beam_size: int = Field(default=5, ge=1, le=10)
    word_timestamps: bool = True
    batched: bool | None = Field(default=None, description="batched pipeline; default: on for audio >= 30 s")
    captions: CaptionStyle = Field(default_factory=lambda: CaptionStyle(style="karaoke"),
                                   description="look of captions.ass")
    width: int = Field(default=1920, ge=16, le=8192, description="caption canvas (the video's size)")
    height: int = Field(default=1080, ge=16, le=8192)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None or not v.strip():
            return None
        settings = context_settings(info)
        choices = job_models(settings) if settings is not None else BUILTIN_JOB_MODELS
        if settings is not None and v.strip() not in choices:
            raise ValueError(f"unknown whisper model {v!r}; this service offers: {', '.join(choices)}")
        return v.strip()

    @field_validator("language")
    @classmethod
    def _language(cls, v: str | None) -> str | None:
        if v is None or v.strip().lower() in ("", "auto"):
            return None
        code = v.strip().lower()
        langs = whisper_languages()
        if code not in langs:
            raise ValueError(f"unknown language {v!r}; use one of: {', '.join(langs)} (or auto)")
        return code


# Subtitle conventions (Netflix, BBC): at most 42 characters a line, two lines a cue
SRT_STYLE = CaptionStyle(style="classic", max_chars_per_line=42, max_lines=2, max_words_per_line=30,
                         max_gap_s=1.5, break_on_sentence=True)


def segments_subs(transcript: Transcript) -> pysubs2.SSAFile:
    """Whisper's segments, one subtitle event each (their full text, however long)."""
    subs = pysubs2.SSAFile()
    for seg in transcript.segments:
        subs.append(pysubs2.SSAEvent(start=round(seg.start * 1000), end=round(seg.end * 1000), text=seg.text))
    return subs


def transcript_words(transcript: Transcript, subs: pysubs2.SSAFile, breaks: set[int]) -> list[Word]:
    """The timed words, and in `breaks` each segment's first word (a cue never spans two segments).

    Without word timestamps, each segment's time is spread over its words so captions still work."""
    if not transcript.words:
        return words_from_subs(subs, breaks)
    words: list[Word] = []
    for seg in transcript.segments:
        if seg.words:
            breaks.add(len(words))
            words.extend(seg.words)
    return words


def readable_subs(words: list[Word], breaks: set[int]) -> pysubs2.SSAFile:
    """Cues of at most two lines of 42 characters, cut at segment, sentence and pause boundaries."""
    return build_plain(words, SRT_STYLE, breaks=breaks)


@operation(
    "transcribe",
    params=TranscribeParams,
    summary="Speech to text (faster-whisper): transcript, SRT, VTT, words.json and karaoke ASS captions.",
    resources=Resources(gpu="preferred", vram_gb=2),  # faster-whisper; large models need ~5 GB
    timeout_s=3600,
    example={"input": "https://example.com/interview.mp4", "language": "en", "vad": True},
)
def run(params: TranscribeParams, ctx: OpContext) -> OpResult:
    ctx.stage("fetching")
    path = ctx.fetch(params.input)
    info = probe_input(path, ctx.settings, params.input, "audio")
    require_audio(info)
    if info.duration_s > ctx.settings.limits.max_media_duration_s:
        raise MediaError("The input is longer than this service accepts.", code="too_long")
    audio = decode_audio(path, ctx, info.duration_s, span=(0.01, 0.08))
    if audio.size == 0:
        raise MediaError("The input's audio stream holds no samples.", code="empty_audio")
    options = TranscribeOptions(language=params.language, task=params.task, vad=params.vad,
                                beam_size=params.beam_size, word_timestamps=params.word_timestamps,
                                batched=params.batched)
    settings = ctx.settings
    if params.model is not None:
        spec = job_models(settings).get(params.model)
        if spec is None:  # checked at submit; a worker configured differently from the API says so here
            raise InvalidParams(f"This worker has no whisper model {params.model!r}.", code="model_unavailable")
        settings = settings.replace(whisper_model=spec)
    transcript = transcribe_audio(audio, settings, options, ctx, span=(0.08, 0.95))
    ctx.stage("writing", 0.95)
    breaks: set[int] = set()
    words = transcript_words(transcript, segments_subs(transcript), breaks)
    seg_subs = readable_subs(words, breaks)
    text_path = ctx.output_path("transcript", ".txt")
    tmp_text = ctx.temp_path("transcript.txt")
    tmp_text.write_text(transcript.text + ("\n" if transcript.text else ""), encoding="utf-8")
    tmp_text.replace(text_path)
    outputs = {
        "transcript": text_path,
        "segments_srt": save_subs(seg_subs, ctx.output_path("segments", ".srt")),
        "segments_vtt": save_subs(seg_subs, ctx.output_path("segments", ".vtt")),
        "words": write_words_json(words, ctx.output_path("words", ".json"), language=transcript.language),
        "captions": save_subs(build_subtitles(words, params.captions, (params.width, params.height)),
                              ctx.output_path("captions", ".ass")),
    }
    ctx.progress(1.0, "done")
    return OpResult(outputs=outputs, data={
        "text": transcript.text,
        "language": transcript.language,
        "language_probability": round(transcript.language_probability, 3),
        "duration_s": round(transcript.duration, 3),
        "segments": len(transcript.segments),
        "words": len(words),
        "device": transcript.device,
        "compute_type": transcript.compute_type,
        "batched": transcript.batched,
    })
