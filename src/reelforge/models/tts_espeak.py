"""espeak-ng: always there, robotic, very fast. Text goes through stdin, never argv.

A sentence is spoken by libespeak-ng in a small process of its own (models/espeak_speak.py), which also
reports where each word starts, so espeak's words are timed by the synthesiser itself, like piper's, and
never need whisper's forced alignment. Without the library (or with REELFORGE_ESPEAK naming another
binary) the binary speaks and the words are aligned as before.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.errors import InvalidParams, ProcessingError
from reelforge.models import espeak_speak

log = logging.getLogger(__name__)

NAME = "espeak"
DEFAULT_VOICE = "en-us"
SAMPLE_RATE = 22050
BASE_WPM = 175  # espeak-ng's default speaking rate, words per minute


def espeak_bin() -> str:
    return os.environ.get("REELFORGE_ESPEAK", "espeak-ng")


def available() -> bool:
    return shutil.which(espeak_bin()) is not None


@functools.lru_cache(maxsize=1)
def voice_table() -> tuple[tuple[str, str], ...]:
    """(language code, voice name) pairs from `espeak-ng --voices` (empty when espeak-ng is missing)."""
    if not available():
        return ()
    res = subprocess.run([espeak_bin(), "--voices"], capture_output=True, text=True, timeout=30)
    rows = []
    for line in res.stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 4:
            rows.append((cols[1], cols[3]))
    return tuple(rows)


def languages() -> list[str]:
    return [code for code, _ in voice_table()]


def list_voices() -> list[dict[str, Any]]:
    return [{"engine": NAME, "voice": code, "name": name.replace("_", " "), "languages": [code],
             "sample_rate": SAMPLE_RATE, "default": code == DEFAULT_VOICE, "licence": "GPL-3.0"}
            for code, name in voice_table()]


def words_per_minute(speed: float) -> int:
    return max(80, min(450, round(BASE_WPM * speed)))  # espeak's own bounds


def build_args(voice: str, speed: float, wav_out: Path) -> list[str]:
    """espeak-ng arguments; the text itself is written to stdin so it can never become an option."""
    return [espeak_bin(), "-v", voice, "-s", str(words_per_minute(speed)), "-w", str(wav_out), "--stdin"]


def parallel_workers(settings: Settings) -> int:
    """Sentences spoken at once (models.tts.synthesize_text): each is its own process."""
    return max(1, min(settings.compute.threads_per_job, os.cpu_count() or 1))


def _check_voice(voice: str) -> None:
    if voice not in languages():
        raise InvalidParams(f"Unknown espeak voice {voice!r}. Available: {', '.join(languages())}.",
                            code="unknown_voice", details={"available": languages()})


def _speak_binary(text: str, voice: str, speed: float) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory(prefix="rf-espeak-") as tmp:
        out = Path(tmp) / "out.wav"
        # the binary reads stdin up to its last byte and drops that byte (a newline, for a line of input)
        res = subprocess.run(build_args(voice, speed, out), input=text.encode("utf-8") + b"\n",
                             capture_output=True, timeout=300)
        if res.returncode != 0 or not out.is_file():
            raise ProcessingError(f"espeak-ng failed: {res.stderr.decode(errors='replace')[-300:]}",
                                  code="tts_failed")
        with wave.open(str(out), "rb") as w:
            rate = w.getframerate()
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return (frames.astype(np.float32) / 32768.0), rate


def word_spans(text: str, words: list[tuple[int, int, int]], total: int) -> list[tuple[int, int]] | None:
    """The sample range of each whitespace-separated word of `text`, from the synthesiser's word events
    (first character, length, first sample). A word starts where the first event inside it starts
    ("2024," is said as several words, "Don't" as one) and lasts until the next timed word starts (the
    last: `total`). espeak runs some unstressed words into the word before them ("on the" is one event):
    such a run shares that word's time by letters. A word without letters or digits (a dash) is silent:
    it takes no time. None when a sounding word precedes every event (that sentence is aligned instead)."""
    hits: list[int | None] = []
    letters: list[int] = []
    at, last = 0, 0
    for token in text.split():
        begin = text.index(token, at)
        at = begin + len(token)
        hit = next((sample for start, _, sample in words if begin <= start < at), None)
        if hit is not None:
            hit = last = max(hit, last)
        hits.append(hit)
        letters.append(sum(ch.isalnum() for ch in token))
    timed = [(i, hit) for i, hit in enumerate(hits) if hit is not None]
    if not hits:
        return []
    if not timed or any(letters[j] for j in range(timed[0][0])):
        return None
    spans: list[tuple[int, int]] = [(timed[0][1], timed[0][1])] * len(hits)  # silent words before the first
    for k, (i, begin_at) in enumerate(timed):
        stop, end_at = timed[k + 1] if k + 1 < len(timed) else (len(hits), max(total, begin_at))
        # the timed word and the sounding words run into it share [begin_at, end_at) by letters
        shares = {i: letters[i] or 1, **{j: letters[j] for j in range(i + 1, stop) if letters[j]}}
        weight, done, prev = sum(shares.values()), 0, begin_at
        for j in range(i, stop):
            done += shares.get(j, 0)  # silent words add nothing: no time, where their neighbours meet
            spans[j] = (prev, begin_at + (end_at - begin_at) * done // weight)
            prev = spans[j][1]
    return spans


def synthesize_timed(text: str, *, voice: str, speed: float, language: str, settings: Settings,
                     voices_file: Path | None = None, threads: int | None = None
                     ) -> tuple[np.ndarray, int, list[tuple[int, int]] | None]:
    """Mono float32 audio in [-1, 1], its sample rate, and the sample range of each whitespace-separated
    word (None when only the binary could speak, or a sounding word came before every word event)."""
    _check_voice(voice)
    if "REELFORGE_ESPEAK" not in os.environ:
        res = subprocess.run([sys.executable, "-I", "-S", espeak_speak.__file__, voice, str(words_per_minute(speed))],
                             input=text.encode("utf-8"), capture_output=True, timeout=300)
        if res.returncode == 0:
            head, _, raw = res.stdout.partition(b"\n")
            meta = json.loads(head)
            samples = np.frombuffer(raw, dtype="<i2")
            spans = word_spans(text, [(a, b, c) for a, b, c in meta["words"]], samples.size)
            return samples.astype(np.float32) / 32768.0, int(meta["rate"]), spans
        if res.returncode == espeak_speak.NO_VOICE:  # listed by the binary, unknown to the library
            raise InvalidParams(f"espeak-ng could not load the voice {voice!r}.", code="unknown_voice")
        if res.returncode != espeak_speak.NO_LIBRARY:
            raise ProcessingError(f"espeak-ng failed: {res.stderr.decode(errors='replace')[-300:]}",
                                  code="tts_failed")
        log.info("libespeak-ng could not be loaded: the espeak-ng binary speaks and the words are aligned")
    audio, rate = _speak_binary(text, voice, speed)
    return audio, rate, None


def synthesize(text: str, *, voice: str, speed: float, language: str, settings: Settings,
               voices_file: Path | None = None, threads: int | None = None) -> tuple[np.ndarray, int]:
    """synthesize_timed without the word ranges."""
    audio, rate, _ = synthesize_timed(text, voice=voice, speed=speed, language=language, settings=settings,
                                      voices_file=voices_file, threads=threads)
    return audio, rate
