"""TTS engine registry, sentence splitting and click-free joining.

Each engine module (tts_piper, tts_kokoro, tts_espeak) offers `list_voices()`, `DEFAULT_VOICE` and
`synthesize(sentence, voice=, speed=, language=, settings=, voices_file=) -> (float32 mono, rate)`.
Long text is spoken sentence by sentence (engines keep better prosody on short inputs, and progress and
cancel get a chance between sentences), then joined with short pauses. Each piece is trimmed of its own
leading/trailing silence and given a few milliseconds of fade so the joins never click.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.errors import InvalidParams
from reelforge.models import tts_espeak, tts_kokoro, tts_piper

ENGINES: dict[str, ModuleType] = {"piper": tts_piper, "kokoro": tts_kokoro, "espeak": tts_espeak}
ENGINE_NAMES = tuple(ENGINES)
MAX_SENTENCE_CHARS = 300
FADE_S = 0.008
SILENCE_THRESHOLD = 0.01  # of full scale; below it a sample counts as silence when trimming


def list_voices(voices_file: Path | None = None) -> list[dict[str, Any]]:
    """Every engine's voices (GET /v1/voices). Engines whose package is missing are left out."""
    out: list[dict[str, Any]] = []
    out += tts_piper.list_voices()
    # a missing or broken optional package must not break the listing of the others
    with contextlib.suppress(Exception):
        out += tts_kokoro.list_voices(voices_file)
    out += tts_espeak.list_voices()
    return out


@dataclass(frozen=True)
class VoiceRequest:
    engine: str
    voice: str
    language: str


def resolve_voice(engine: str, voice: str | None, language: str | None,
                  voices_file: Path | None = None) -> VoiceRequest:
    """Check engine/voice/language against what exists; InvalidParams lists the alternatives."""
    if engine not in ENGINES:
        raise InvalidParams(f"Unknown TTS engine {engine!r}. Available: {', '.join(ENGINE_NAMES)}.",
                            code="unknown_engine", details={"available": list(ENGINE_NAMES)})
    lang = (language or "").strip().lower().replace("_", "-") or None
    if engine == "piper":
        v = tts_piper.VOICE_ALIASES.get(voice or tts_piper.DEFAULT_VOICE)
        if v is None:
            raise _unknown("voice", voice, "piper", list(tts_piper.VOICE_ALIASES))
        resolved = tts_piper.LANGUAGE_ALIASES.get(lang or "en-us")
        if resolved is None:
            raise _unknown("language", language, "piper", list(tts_piper.LANGUAGES))
        return VoiceRequest(engine, v, resolved)
    if engine == "kokoro":
        resolved = tts_kokoro.LANGUAGE_ALIASES.get(lang or "en-us")
        if resolved is None:
            raise _unknown("language", language, "kokoro", list(tts_kokoro.LANGUAGES))
        names = tts_kokoro.voice_names(tts_kokoro.voices_file_for(voices_file))
        v = voice or ("af_heart" if "af_heart" in names else names[0] if names else tts_kokoro.DEFAULT_VOICE)
        if v not in names:
            raise _unknown("voice", voice, "kokoro", list(names))
        return VoiceRequest(engine, v, resolved)
    codes = tts_espeak.languages()
    v = voice or lang or tts_espeak.DEFAULT_VOICE
    if v not in codes:
        raise _unknown("voice" if voice else "language", voice or language, "espeak", codes)
    return VoiceRequest(engine, v, v)


def _unknown(what: str, value: str | None, engine: str, available: list[str]) -> InvalidParams:
    return InvalidParams(f"Unknown {what} {value!r} for the {engine} engine. Available: {', '.join(available)}.",
                         code=f"unknown_{what}", details={"available": available})


_SENTENCE_END = re.compile(r"(?:(?<=[.!?…。！？])|(?<=[.!?…。！？][\"'”’)\]]))\s+|\n\s*\n|(?<=[。！？])")


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text` (single newlines inside a paragraph join lines); over-long ones split at commas."""
    out: list[str] = []
    for raw in _SENTENCE_END.split(text.strip()):
        sentence = " ".join(raw.split())
        if not sentence:
            continue
        while len(sentence) > max_chars:
            cut = max((sentence.rfind(p, 0, max_chars) for p in (", ", "; ", ": ", " - ")), default=-1)
            if cut <= 0:
                cut = sentence.rfind(" ", 0, max_chars)
            if cut <= 0:
                cut = max_chars - 1
            out.append(sentence[: cut + 1].strip())
            sentence = sentence[cut + 1:].strip()
        if sentence:
            out.append(sentence)
    return out


def trim_silence(audio: np.ndarray, rate: int, pad_s: float = 0.02) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > SILENCE_THRESHOLD)
    if loud.size == 0:
        return audio[:0]
    pad = int(pad_s * rate)
    return audio[max(0, loud[0] - pad): loud[-1] + pad + 1]


def fade_edges(audio: np.ndarray, rate: int, fade_s: float = FADE_S) -> np.ndarray:
    n = min(int(fade_s * rate), audio.size // 2)
    if n <= 0:
        return audio
    out = audio.astype(np.float32, copy=True)
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


def resample_linear(audio: np.ndarray, src_rate: int, dst_rate: int) -> np.ndarray:
    """Plain linear resampling, only used if engines ever mix rates inside one text (ffmpeg does the rest)."""
    if src_rate == dst_rate or audio.size == 0:
        return audio
    n = round(audio.size * dst_rate / src_rate)
    return np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)


@dataclass(frozen=True)
class Spoken:
    """One sentence inside the joined audio: its text and where it sounds (seconds)."""

    text: str
    start_s: float
    end_s: float


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32 mono in [-1, 1]
    rate: int
    sentences: tuple[Spoken, ...]  # in order; sentences that produced no sound are left out

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.rate if self.rate else 0.0


def join_pieces(pieces: list[tuple[np.ndarray, int]], pause_s: float, lead_s: float = 0.1,
                texts: list[str] | None = None) -> Speech:
    """Join sentence audio with `pause_s` of silence between, a little silence around, at one rate.

    The returned spans are exact (sample counts of what was joined), so word alignment can work on one
    known sentence window at a time instead of searching the whole narration."""
    if not pieces:
        return Speech(np.zeros(0, np.float32), tts_piper.SAMPLE_RATE, ())
    rate = pieces[0][1]
    gap = np.zeros(int(pause_s * rate), np.float32)
    edge = np.zeros(int(lead_s * rate), np.float32)
    parts = [edge]
    at = edge.size
    spoken: list[Spoken] = []
    for i, (audio, r) in enumerate(pieces):
        piece = fade_edges(trim_silence(resample_linear(audio, r, rate), rate), rate)
        if piece.size == 0:
            continue
        if i and len(parts) > 1:
            parts.append(gap)
            at += gap.size
        parts.append(piece)
        spoken.append(Spoken(texts[i] if texts else "", at / rate, (at + piece.size) / rate))
        at += piece.size
    parts.append(edge)
    return Speech(np.concatenate(parts).astype(np.float32), rate, tuple(spoken))


def synthesize_text(text: str, req: VoiceRequest, *, speed: float, settings: Settings, pause_s: float = 0.3,
                    voices_file: Path | None = None,
                    on_sentence: Callable[[int, int], None] | None = None) -> Speech:
    """Speak `text` sentence by sentence with the chosen engine; `on_sentence(i, n)` runs after each."""
    engine = ENGINES[req.engine]
    sentences = split_sentences(text)
    pieces = []
    for i, sentence in enumerate(sentences):
        pieces.append(engine.synthesize(sentence, voice=req.voice, speed=speed, language=req.language,
                                        settings=settings, voices_file=voices_file))
        if on_sentence is not None:
            on_sentence(i + 1, len(sentences))
    return join_pieces(pieces, pause_s, texts=sentences)


def is_warm(engine: str, settings: Settings) -> bool:
    mod = ENGINES[engine]
    check = getattr(mod, "is_warm", None)
    return True if check is None else bool(check(settings))
