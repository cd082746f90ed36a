"""TTS engine registry, sentence splitting and click-free joining.

Each engine module (tts_piper, tts_kokoro, tts_espeak) offers `list_voices()`, `DEFAULT_VOICE` and
`synthesize(sentence, voice=, speed=, language=, settings=, voices_file=) -> (float32 mono, rate)`;
engines that can speak several sentences at once (piper, espeak) also offer `parallel_workers(settings)`
and take `threads=` (the session's thread count; 1 when sentences run in parallel).
Long text is spoken sentence by sentence (engines keep better prosody on short inputs, and progress and
cancel get a chance between sentences), then joined with short pauses. Each piece is trimmed of its own
leading/trailing silence and given a few milliseconds of fade so the joins never click.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.errors import InvalidParams
from reelforge.models import tts_espeak, tts_kokoro, tts_piper
from reelforge.models.text_language import detect_language

ENGINES: dict[str, ModuleType] = {"piper": tts_piper, "kokoro": tts_kokoro, "espeak": tts_espeak}
ENGINE_NAMES = tuple(ENGINES)
MAX_SENTENCE_CHARS = 300
FADE_S = 0.008
SILENCE_THRESHOLD = 0.01  # of full scale; below it a sample counts as silence when trimming


def list_voices(kokoro_voices: Path | None = None, voice_dirs: Sequence[Path] = ()) -> list[dict[str, Any]]:
    """Every engine's voices with the languages each speaks (GET /v1/voices); missing engines are left out."""
    out: list[dict[str, Any]] = []
    out += tts_piper.list_voices(voice_dirs)
    # a missing or broken optional package must not break the listing of the others
    with contextlib.suppress(Exception):
        out += tts_kokoro.list_voices(kokoro_voices, voice_dirs)
    out += tts_espeak.list_voices()
    return out


@dataclass(frozen=True)
class VoiceRequest:
    engine: str
    voice: str
    language: str
    note: str | None = None  # why this voice, when the job named none


def resolve_voice(engine: str, voice: str | None, language: str | None, voices_file: Path | None = None, *,
                  text: str | None = None, voice_dirs: Sequence[Path] = (),
                  kokoro_voices: Path | None = None) -> VoiceRequest:
    """Check engine/voice/language against what exists; InvalidParams lists the alternatives.

    With neither voice nor language, `text` (when given: at run time) decides the language, and the
    default voice is one that speaks it."""
    if engine not in ENGINES:
        raise InvalidParams(f"Unknown TTS engine {engine!r}. Available: {', '.join(ENGINE_NAMES)}.",
                            code="unknown_engine", details={"available": list(ENGINE_NAMES)})
    lang = (language or "").strip().lower().replace("_", "-") or None
    detected = detect_language(text) if text is not None and voice is None and lang is None else None
    if engine == "piper":
        return _piper_voice(voice, lang, detected, voice_dirs)
    if engine == "kokoro":
        return _kokoro_voice(voice, lang, detected, tts_kokoro.voice_sources(voices_file, kokoro_voices, voice_dirs))
    codes = tts_espeak.languages()
    if voice is None and lang is None and detected in codes:
        return VoiceRequest(engine, detected, detected, note=f"the text reads as {detected}")
    v = voice or lang or tts_espeak.DEFAULT_VOICE
    if v not in codes:
        raise _unknown("voice" if voice else "language", voice or language, "espeak", codes)
    return VoiceRequest(engine, v, v)


def _piper_voice(voice: str | None, lang: str | None, detected: str | None,
                 dirs: Sequence[Path]) -> VoiceRequest:
    if voice is not None:
        found = tts_piper.find_voice(voice, dirs)
        if found is None:
            raise _unknown("voice", voice, "piper", [v["voice"] for v in tts_piper.list_voices(dirs)])
        if lang is not None and tts_piper.normalise_language(lang).split("-")[0] != found.family:
            raise InvalidParams(f"The piper voice {voice!r} speaks {found.language}, not {lang}.",
                                code="unknown_language", details={"available": [found.language]})
        return VoiceRequest("piper", voice, found.language)
    wanted = lang or detected
    found = tts_piper.voice_for_language(wanted, dirs) if wanted else None
    if found is None and lang is not None:
        languages = sorted({v.language for v in tts_piper.all_voices(dirs)})
        raise _unknown("language", lang, "piper", languages)
    if found is None:
        default = tts_piper.find_voice(tts_piper.DEFAULT_VOICE, dirs) or next(iter(tts_piper.all_voices(dirs)), None)
        if default is None:
            raise InvalidParams("No Piper voice is installed.", code="model_unavailable")
        note = f"no piper voice speaks {detected}; using {default.name}" if detected else None
        return VoiceRequest("piper", _piper_name(default), default.language, note=note)
    note = f"the text reads as {detected}: {found.name} speaks {found.language}" if detected else None
    return VoiceRequest("piper", _piper_name(found), found.language, note=note)


def _piper_name(voice: tts_piper.PiperVoiceFiles) -> str:
    return tts_piper.DEFAULT_VOICE if voice.source == "packaged" else voice.name


def _kokoro_voice(voice: str | None, lang: str | None, detected: str | None,
                  sources: Sequence[tuple[str, Path]]) -> VoiceRequest:
    wanted = lang or (tts_kokoro.LANGUAGE_ALIASES.get(detected) if detected else None)
    resolved = tts_kokoro.LANGUAGE_ALIASES.get(wanted or "en-us")
    if resolved is None:
        if lang is not None:
            raise _unknown("language", lang, "kokoro", list(tts_kokoro.LANGUAGES))
        resolved = "en-us"  # the text's language is one kokoro cannot phonemize
    names = tts_kokoro.all_voice_names(sources)
    if voice is not None:
        if voice not in names:
            raise _unknown("voice", voice, "kokoro", names)
        return VoiceRequest("kokoro", voice, resolved)
    chosen = tts_kokoro.voice_for_language(resolved, names)
    if chosen is not None:
        return VoiceRequest("kokoro", chosen, resolved)
    fallback = tts_kokoro.DEFAULT_VOICE if tts_kokoro.DEFAULT_VOICE in names else (names[0] if names else None)
    if fallback is None:
        raise InvalidParams("No Kokoro voice is installed.", code="model_unavailable")
    return VoiceRequest("kokoro", fallback, resolved,
                        note=f"no kokoro voice made for {resolved} is installed; {fallback} reads it with an "
                             "accent (add a voices file such as voices-v1.0.bin to VOICE_DIRS)")


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


def sound_bounds(audio: np.ndarray, rate: int, pad_s: float = 0.02) -> tuple[int, int]:
    """[start, end) of the audio without its leading/trailing silence (a little padding kept)."""
    loud = np.flatnonzero(np.abs(audio) > SILENCE_THRESHOLD)
    if loud.size == 0:
        return 0, 0
    pad = int(pad_s * rate)
    return max(0, int(loud[0]) - pad), min(audio.size, int(loud[-1]) + pad + 1)


def trim_silence(audio: np.ndarray, rate: int, pad_s: float = 0.02) -> np.ndarray:
    start, end = sound_bounds(audio, rate, pad_s)
    return audio[start:end]


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
    # where each spoken word sounds (seconds, in order), when the engine says (piper's phoneme durations)
    words: tuple[tuple[float, float], ...] | None = None


@dataclass(frozen=True)
class Speech:
    audio: np.ndarray  # float32 mono in [-1, 1]
    rate: int
    sentences: tuple[Spoken, ...]  # in order; sentences that produced no sound are left out

    @property
    def duration_s(self) -> float:
        return self.audio.size / self.rate if self.rate else 0.0


Piece = tuple[np.ndarray, int] | tuple[np.ndarray, int, list[tuple[int, int]] | None]


def _word_times(spans: list[tuple[int, int]] | None, cut: tuple[int, int], at: int,
                rate: int) -> tuple[tuple[float, float], ...] | None:
    """The engine's word sample ranges (in the untrimmed piece) as seconds in the joined audio, where the
    piece, trimmed to `cut`, starts at sample `at`."""
    if spans is None:
        return None
    lo, hi = cut

    def place(sample: int) -> float:
        return (at + min(max(sample, lo), hi) - lo) / rate

    return tuple((place(a), place(b)) for a, b in spans)


AudioSink = Callable[[np.ndarray, int], None]


class SpeechJoiner:
    """Joins sentence audio in order with `pause_s` of silence between and `lead_s` around, at one rate
    (the first piece's), handing each new stretch of the joined audio to `on_audio(samples, rate)` as soon
    as it is known, so an encoder can start before the last sentence is spoken.

    The sentence spans are exact (sample counts of what was joined), so word alignment can work on one
    known sentence window at a time instead of searching the whole narration; a piece that comes with its
    words' sample ranges (piper) keeps them, moved to where the piece sits in the joined audio."""

    def __init__(self, pause_s: float, lead_s: float = 0.1, on_audio: AudioSink | None = None) -> None:
        self.pause_s, self.lead_s = pause_s, lead_s
        self.on_audio = on_audio
        self.rate = 0
        self.parts: list[np.ndarray] = []
        self.spoken: list[Spoken] = []
        self.at = 0  # samples joined so far

    def _emit(self, samples: np.ndarray) -> None:
        self.parts.append(samples)
        self.at += samples.size
        if self.on_audio is not None and samples.size:
            self.on_audio(samples, self.rate)

    def add(self, item: Piece, text: str = "") -> None:
        audio, r = item[0], item[1]
        spans = item[2] if len(item) > 2 else None
        if not self.rate:
            self.rate = r
            self._emit(np.zeros(int(self.lead_s * r), np.float32))
        rate = self.rate
        resampled = resample_linear(audio, r, rate)
        cut = sound_bounds(resampled, rate)
        piece = fade_edges(resampled[cut[0]:cut[1]], rate)
        if piece.size == 0:
            return
        if self.spoken:
            self._emit(np.zeros(int(self.pause_s * rate), np.float32))
        if spans is not None and r != rate:
            spans = [(round(a * rate / r), round(b * rate / r)) for a, b in spans]
        start = self.at
        self._emit(piece)
        self.spoken.append(Spoken(text, start / rate, self.at / rate, _word_times(spans, cut, start, rate)))

    def finish(self) -> Speech:
        if not self.rate:
            return Speech(np.zeros(0, np.float32), tts_piper.SAMPLE_RATE, ())
        self._emit(np.zeros(int(self.lead_s * self.rate), np.float32))
        return Speech(np.concatenate(self.parts).astype(np.float32), self.rate, tuple(self.spoken))


def join_pieces(pieces: Sequence[Piece], pause_s: float, lead_s: float = 0.1,
                texts: list[str] | None = None) -> Speech:
    """All pieces through one SpeechJoiner (see there)."""
    joiner = SpeechJoiner(pause_s, lead_s)
    for i, item in enumerate(pieces):
        joiner.add(item, texts[i] if texts else "")
    return joiner.finish()


def synthesize_text(text: str, req: VoiceRequest, *, speed: float, settings: Settings, pause_s: float = 0.3,
                    voices_file: Path | None = None, workers: int | None = None,
                    on_sentence: Callable[[int, int], None] | None = None,
                    on_audio: AudioSink | None = None) -> Speech:
    """Speak `text` sentence by sentence with the chosen engine; `on_sentence(i, n)` runs after each, in
    order, on the calling thread (it may raise to cancel), and `on_audio(samples, rate)` gets the joined
    audio stretch by stretch as it grows (see SpeechJoiner), on that thread too.

    Engines that can (their `parallel_workers(settings)`: piper on CPU, espeak) speak `workers` sentences
    at once (default: as many as the engine says), each worker on a one-thread session; the pieces are
    joined in the text's order, so the result is the one sequential synthesis gives (sample for sample
    for a deterministic engine; piper's voices draw their own noise every call either way)."""
    engine = ENGINES[req.engine]
    # the engine's timed form when it has one (piper: its words' sample ranges come with the audio)
    speak: Callable[..., Piece] = getattr(engine, "synthesize_timed", engine.synthesize)
    sentences = split_sentences(text)
    kwargs: dict[str, Any] = {"voice": req.voice, "speed": speed, "language": req.language, "settings": settings,
                              "voices_file": voices_file}
    can = getattr(engine, "parallel_workers", None)
    n = min(len(sentences), workers if workers is not None else can(settings) if can else 1)
    joiner = SpeechJoiner(pause_s, on_audio=on_audio)
    if n <= 1 or can is None:
        for i, sentence in enumerate(sentences):
            joiner.add(speak(sentence, **kwargs), sentence)
            if on_sentence is not None:
                on_sentence(i + 1, len(sentences))
        return joiner.finish()
    # the first sentence on this thread: the engine's session and its phonemizer (piper makes it on first
    # use, unguarded) exist before any worker needs them
    joiner.add(speak(sentences[0], threads=1, **kwargs), sentences[0])
    if on_sentence is not None:
        on_sentence(1, len(sentences))
    pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tts")
    try:
        # one task per sentence, taken in order by whichever worker is free: the workers stay even however
        # long each sentence is, and the results are joined in the text's order as they come
        futures = [pool.submit(speak, sentence, threads=1, **kwargs) for sentence in sentences[1:]]
        for i, (sentence, future) in enumerate(zip(sentences[1:], futures, strict=True), 2):
            joiner.add(future.result(), sentence)
            if on_sentence is not None:
                on_sentence(i, len(sentences))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)  # on cancel or error: the sentences not yet started
    return joiner.finish()


def is_warm(req: VoiceRequest, settings: Settings) -> bool:
    if req.engine == "piper":
        voice = tts_piper.find_voice(req.voice, settings.models.voice_dirs)
        threads = 1 if tts_piper.parallel_workers(settings) > 1 else None  # the session long texts use
        return voice is not None and tts_piper.is_warm(settings, voice, threads)
    check = getattr(ENGINES[req.engine], "is_warm", None)
    return True if check is None else bool(check(settings))
