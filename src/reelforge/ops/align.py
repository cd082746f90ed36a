"""`align`: word timings for exactly the words of a known script, from whisper word timestamps.

The recognised words only provide times; the text always comes from the script, so captions show what the
author wrote (names, numbers, punctuation) with the times it was actually spoken. `tts` uses this too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from reelforge.captions.align import Alignment, align_words, script_words
from reelforge.captions.pauses import find_pauses, snap_to_pauses
from reelforge.captions.words import Word, write_words_json
from reelforge.config import Settings
from reelforge.errors import MediaError
from reelforge.media.limits import probe_input
from reelforge.media.probe import MediaInfo, require_audio
from reelforge.models.whisper import (
    BATCHED_MIN_DURATION_S,
    MAX_WINDOW_S,
    SAMPLE_RATE,
    TextWindow,
    TranscribeOptions,
    choose_whisper,
    decode_audio,
    force_align,
    transcribe_audio,
    whisper_languages,
)
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources

MAX_SCRIPT_CHARS = 20_000
WINDOW_PAD_S = 0.15  # silence kept around a window's speech, so its first and last words have edges

log = logging.getLogger(__name__)


class AlignParams(Params):
    audio: MediaRef = Field(description="audio or video whose speech follows the script")
    script: str = Field(min_length=1, max_length=MAX_SCRIPT_CHARS, description="the text as spoken")
    language: str | None = Field(default=None, description="spoken language (e.g. en); detected when left out")

    @field_validator("script")
    @classmethod
    def _script(cls, v: str) -> str:
        if not script_words(v):
            raise ValueError("the script must contain at least one word")
        return v


def whisper_language(language: str | None) -> str | None:
    """'en-us' (TTS style) -> 'en' (whisper style); None stays None."""
    if not language:
        return None
    return language.strip().lower().replace("_", "-").split("-")[0] or None


def alignment_settings(settings: Settings, lang: str | None, *, forced: bool = True) -> Settings:
    """Settings whose whisper_model is the one to align with (see Settings.align_model).

    `auto`: tiny.en for forced alignment of English whose sentence spans are known (tts output: the
    windows fix where each sentence is, the model only places words inside), else the transcription
    model: audio of unknown layout is aligned by transcribing it, and a smaller model than transcribe's
    would time the words worse than transcribe does."""
    model = settings.models.align_model.strip()
    if model == "auto":
        model = "packaged:tiny.en" if lang == "en" and forced else settings.models.whisper_model
    return settings if model == settings.models.whisper_model else settings.replace(whisper_model=model)


def _decode_checked(path: Path, ctx: OpContext, info: MediaInfo, span: tuple[float, float]) -> tuple[Any, float]:
    """`path` (probed as `info`) as 16 kHz float32 samples and its duration; refused when too long."""
    require_audio(info)
    if info.duration_s > ctx.settings.limits.max_media_duration_s:
        raise MediaError("The audio is longer than this service accepts.", code="too_long")
    audio = decode_audio(path, ctx, info.duration_s, span=span)
    return audio, len(audio) / SAMPLE_RATE or info.duration_s


def align_audio(path: Path, script: str, ctx: OpContext, *, language: str | None = None,
                span: tuple[float, float] = (0.0, 1.0)) -> Alignment:
    """Probe, decode and transcribe `path`, then map the heard words onto `script`'s words."""
    lo, hi = span
    audio, duration = _decode_checked(path, ctx, probe_input(path, ctx.settings, kind="audio"),
                                      (lo, lo + (hi - lo) * 0.1))
    lang = whisper_language(language)
    settings = alignment_settings(ctx.settings, lang, forced=False)
    if lang not in whisper_languages() or (choose_whisper(settings).english_only and lang != "en"):
        # unknown to whisper, or an English-only model: let it detect; the heard times are still usable
        lang = None
    # greedy decoding suffices: the script fixes the words, only their times are taken from whisper
    transcript = transcribe_audio(audio, settings,
                                  TranscribeOptions(language=lang, word_timestamps=True, vad=True,
                                                    beam_size=1, batched=duration >= BATCHED_MIN_DURATION_S),
                                  ctx, span=(lo + (hi - lo) * 0.1, hi))
    return heard_pauses(align_words(script, transcript.words, duration), audio)


def heard_pauses(alignment: Alignment, audio: Any) -> Alignment:
    """The alignment with its word boundaries moved into the pauses of the audio (captions/pauses.py)."""
    words = snap_to_pauses(alignment.words, find_pauses(audio, SAMPLE_RATE))
    return Alignment(words, alignment.matched, alignment.total)


def sentence_windows(sentences: Sequence[tuple[str, float, float]], duration_s: float,
                     max_s: float = MAX_WINDOW_S - 0.5, pad_s: float = WINDOW_PAD_S,
                     breaks: Sequence[bool] | None = None) -> list[TextWindow] | None:
    """(text, start, end) of consecutive sentences grouped into windows of at most `max_s` seconds.

    A window reaches `pad_s` past its speech on each side, but never past halfway to the next sentence.
    `breaks[i]` says other speech sounds between sentence i-1 and i (only some sentences are being
    aligned): a window never spans it, or its text would miss words its audio holds. None when a single
    sentence is longer than a window (the caller aligns by transcription then)."""
    windows: list[TextWindow] = []
    group: list[tuple[str, float, float]] = []

    def edges(i: int) -> tuple[float, float]:
        _, start, end = sentences[i]
        before = (sentences[i - 1][2] + start) / 2 if i else 0.0
        after = (end + sentences[i + 1][1]) / 2 if i + 1 < len(sentences) else duration_s
        return max(before, start - pad_s), min(after, end + pad_s)

    first = 0
    for i, sentence in enumerate(sentences):
        if group and (edges(i)[1] - edges(first)[0] > max_s or (breaks is not None and breaks[i])):
            windows.append(TextWindow(edges(first)[0], edges(i - 1)[1], " ".join(t for t, _, _ in group)))
            group = []
        if not group:
            first = i
            if edges(i)[1] - edges(i)[0] > max_s:
                return None
        group.append(sentence)
    if group:
        windows.append(TextWindow(edges(first)[0], edges(len(sentences) - 1)[1], " ".join(t for t, _, _ in group)))
    return windows


def snap_to_sentences(alignment: Alignment, sentences: Sequence[tuple[str, float, float]]) -> Alignment:
    """Every word inside the sentence it belongs to, the sentence's first word starting and its last word
    ending where the synthesis says the sentence sounds (exact), instead of where the attention-based
    estimate put them (often ~0.1 s off)."""
    counts = [len(script_words(text)) for text, _, _ in sentences]
    if sum(counts) != len(alignment.words):
        return alignment  # the sentences do not split the words the same way: keep the estimate
    words = list(alignment.words)
    at = 0
    for n, (_, start, end) in zip(counts, sentences, strict=True):
        for i in range(at, at + n):
            w = words[i]
            first = start if i == at else min(max(w.start, start), end)
            last = end if i == at + n - 1 else min(max(w.end, first), end)
            words[i] = Word(w.text, first, max(first, last))
        at += n
    return Alignment(words, alignment.matched, alignment.total)


def align_spoken(path: Path, sentences: Sequence[tuple[str, float, float]], script: str, ctx: OpContext, *,
                 language: str | None = None, span: tuple[float, float] = (0.0, 1.0),
                 breaks: Sequence[bool] | None = None) -> Alignment:
    """Word timings for audio whose sentences and their places are known (tts output): forced alignment
    window by window, no transcription. Falls back to `align_audio` when a sentence is too long for one
    window or the model cannot force-align."""
    info = probe_input(path, ctx.settings, kind="audio")
    windows = sentence_windows(sentences, info.duration_s, breaks=breaks)
    if windows:
        lo, hi = span
        audio, duration = _decode_checked(path, ctx, info, (lo, lo + (hi - lo) * 0.1))
        lang = whisper_language(language)
        try:
            words = force_align(audio, windows, alignment_settings(ctx.settings, lang), language=lang, ctx=ctx,
                                span=(lo + (hi - lo) * 0.1, hi))
            return snap_to_sentences(heard_pauses(align_words(script, words, duration), audio), sentences)
        except (RuntimeError, ValueError) as exc:  # e.g. a converted model without alignment heads
            log.warning("forced alignment failed (%s); aligning by transcription", exc)
    return align_audio(path, script, ctx, language=language, span=span)


@operation(
    "align",
    params=AlignParams,
    summary="Word timings for exactly the script's words, from the speech in an audio file.",
    resources=Resources(gpu="optional", vram_gb=1),  # a small whisper for word times
    timeout_s=1800,
    example={"audio": "https://example.com/narration.mp3",
             "script": "Welcome to ReelForge. Every word of this script gets its own time."},
)
def run(params: AlignParams, ctx: OpContext) -> OpResult:
    ctx.stage("fetching")
    path = ctx.fetch(params.audio)
    result = align_audio(path, params.script, ctx, language=params.language, span=(0.02, 0.95))
    out = write_words_json(result.words, ctx.output_path("words", ".json"),
                           matched_ratio=round(result.matched_ratio, 3))
    ctx.progress(1.0, "done")
    return OpResult(outputs={"words": out},
                    data={"words": [w.to_dict() for w in result.words], "word_count": result.total,
                          "matched_ratio": round(result.matched_ratio, 3)})
