"""`transcribe`: speech to text with faster-whisper -> transcript.txt, SRT, VTT, words.json, karaoke ASS."""

from __future__ import annotations

from typing import Literal

import pysubs2
from pydantic import Field, field_validator

from reelforge.captions import CaptionStyle, Word, build_subtitles, save_subs, words_from_subs
from reelforge.captions.words import write_words_json
from reelforge.errors import MediaError
from reelforge.media.limits import probe_input
from reelforge.media.probe import require_audio
from reelforge.models.whisper import TranscribeOptions, Transcript, decode_audio, transcribe_audio, whisper_languages
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources


class TranscribeParams(Params):
    input: MediaRef = Field(description="audio or video")
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


def segments_subs(transcript: Transcript) -> pysubs2.SSAFile:
    subs = pysubs2.SSAFile()
    for seg in transcript.segments:
        subs.append(pysubs2.SSAEvent(start=round(seg.start * 1000), end=round(seg.end * 1000), text=seg.text))
    return subs


def transcript_words(transcript: Transcript, subs: pysubs2.SSAFile) -> list[Word]:
    # without word timestamps, spread each segment's time over its words so captions still work
    return list(transcript.words) or words_from_subs(subs)


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
    transcript = transcribe_audio(audio, ctx.settings, options, ctx, span=(0.08, 0.95))
    ctx.stage("writing", 0.95)
    seg_subs = segments_subs(transcript)
    words = transcript_words(transcript, seg_subs)
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
