"""espeak-ng through its binary: always there, robotic, very fast. Text goes through stdin, never argv."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.errors import InvalidParams, ProcessingError

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


def build_args(voice: str, speed: float, wav_out: Path) -> list[str]:
    """espeak-ng arguments; the text itself is written to stdin so it can never become an option."""
    wpm = max(80, min(450, round(BASE_WPM * speed)))
    return [espeak_bin(), "-v", voice, "-s", str(wpm), "-w", str(wav_out), "--stdin"]


def parallel_workers(settings: Settings) -> int:
    """Sentences spoken at once (models.tts.synthesize_text): each is its own espeak-ng process."""
    return max(1, min(settings.compute.threads_per_job, os.cpu_count() or 1))


def synthesize(text: str, *, voice: str, speed: float, language: str, settings: Settings,
               voices_file: Path | None = None, threads: int | None = None) -> tuple[np.ndarray, int]:
    if voice not in languages():
        raise InvalidParams(f"Unknown espeak voice {voice!r}. Available: {', '.join(languages())}.",
                            code="unknown_voice", details={"available": languages()})
    with tempfile.TemporaryDirectory(prefix="rf-espeak-") as tmp:
        out = Path(tmp) / "out.wav"
        res = subprocess.run(build_args(voice, speed, out), input=text.encode("utf-8"), capture_output=True,
                             timeout=300)
        if res.returncode != 0 or not out.is_file():
            raise ProcessingError(f"espeak-ng failed: {res.stderr.decode(errors='replace')[-300:]}",
                                  code="tts_failed")
        with wave.open(str(out), "rb") as w:
            rate = w.getframerate()
            frames = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    return (frames.astype(np.float32) / 32768.0), rate
