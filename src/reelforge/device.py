"""Which accelerators this worker process has, decided once per process and per job.

CUDA is detected without importing torch: CTranslate2 (faster-whisper) and onnxruntime each report their
own view, since a machine can have a GPU that one runtime cannot use (missing cuDNN, CPU-only wheel).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Literal


@functools.lru_cache(maxsize=1)
def ctranslate2_cuda_devices() -> int:
    try:
        import ctranslate2

        return int(ctranslate2.get_cuda_device_count())
    except Exception:  # any import/driver problem means "no usable CUDA for CT2"
        return 0


@functools.lru_cache(maxsize=1)
def onnxruntime_cuda() -> bool:
    try:
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()
    except Exception:
        return False


@dataclass(frozen=True)
class DeviceChoice:
    kind: Literal["cuda", "cpu"]
    reason: str


def choose_device(preference: str = "auto", *, runtime: Literal["ct2", "onnx"] = "ct2") -> DeviceChoice:
    """Pick cuda or cpu for a model runtime, honouring the settings' preference (auto | cpu | cuda)."""
    if os.environ.get("REELFORGE_FORCE_CPU") == "1" or preference == "cpu":
        return DeviceChoice("cpu", "cpu requested")
    has = ctranslate2_cuda_devices() > 0 if runtime == "ct2" else onnxruntime_cuda()
    if has:
        return DeviceChoice("cuda", f"CUDA available to {runtime}")
    if preference == "cuda":
        return DeviceChoice("cpu", f"cuda requested but not available to {runtime}; using cpu")
    return DeviceChoice("cpu", "no CUDA device")
