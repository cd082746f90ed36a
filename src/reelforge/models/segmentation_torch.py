"""RobustVideoMatting on CUDA through PyTorch, for workers that have torch+CUDA but no onnxruntime-gpu.

onnxruntime-gpu is a 250 MB wheel tied to one CUDA major version; a GPU worker image usually already has
a CUDA build of PyTorch. So the same packaged ONNX file (`rvm_mobilenetv3_fp32.onnx`) is converted once
per process into a `torch.fx.GraphModule` by the small pure-Python `onnx2torch` package and run there:

- the recurrent states r1..r4 never leave the GPU (only the alpha comes back, once per batch);
- fp32 by default: on an H100 the 720p graph is bound by kernel launches and host syncs, not by maths,
  and fp16 measured slower (64-67 vs 77-92 fps, bench/results/gpu.md) though about as accurate (2 alpha
  pixels in a million off by more than 2/255). REELFORGE_RVM_PRECISION=fp16 selects it, e.g. for a GPU
  short on memory;
- `torch`, `onnx` and `onnx2torch` are optional (the `gpu` extra); nothing here is imported unless
  `torch_cuda_usable()` said yes, so CPU workers and CI behave exactly as before.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from reelforge.models.segmentation import Region

log = logging.getLogger(__name__)

Precision = Literal["fp16", "fp32"]
DEFAULT_PRECISION: Precision = "fp32"
# Which outputs of the converted graph we read, by their ONNX names (the graph also returns fgr).
_OUTPUT_NAMES = ("fgr", "pha", "r1o", "r2o", "r3o", "r4o")


@functools.lru_cache(maxsize=1)
def torch_cuda_usable() -> bool:
    """True when torch imports, sees a CUDA device, and onnx + onnx2torch are installed.

    onnx2torch is only located, not imported: importing it pulls in torchvision, which is slow and
    pointless on a machine without CUDA.
    """
    if importlib.util.find_spec("onnx2torch") is None or importlib.util.find_spec("onnx") is None:
        return False
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # a broken CUDA install must mean "no torch CUDA", never a crashed job
        return False


def torch_cuda_wanted(preference: str) -> bool:
    """The same switches as `reelforge.device.choose_device`: `cpu` and REELFORGE_FORCE_CPU=1 win."""
    if preference == "cpu" or os.environ.get("REELFORGE_FORCE_CPU") == "1":
        return False
    return torch_cuda_usable()


def precision_from_env() -> Precision:
    """REELFORGE_RVM_PRECISION=fp16|fp32 overrides the measured default (see the module docstring)."""
    value = os.environ.get("REELFORGE_RVM_PRECISION", "").strip().lower()
    return value if value in ("fp16", "fp32") else DEFAULT_PRECISION  # type: ignore[return-value]


@dataclass
class TorchRvmModel:
    module: Any  # torch.fx.GraphModule converted from the ONNX graph
    dtype: Any  # torch.float16 | torch.float32
    device: Any  # torch.device("cuda")
    precision: Precision
    path: Path
    detail: str
    pha_index: int
    state_index: tuple[int, int, int, int]


def load_rvm_torch(path: Path, precision: Precision = DEFAULT_PRECISION, threads: int = 2) -> TorchRvmModel:
    """Convert the RVM ONNX graph to torch and put it on the current CUDA device."""
    import onnx
    import onnx2torch
    import torch

    # The CPU side only feeds the GPU; keep torch's own pool inside the job's share of cores, as
    # segmentation.py does for onnxruntime and the overlay op for OpenCV.
    torch.set_num_threads(max(1, threads))
    # A video's frame size is fixed, so cuDNN's one-off algorithm search pays for itself after a frame.
    torch.backends.cudnn.benchmark = True
    device = torch.device("cuda")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    graph = onnx.load(str(path))
    names = [o.name for o in graph.graph.output]
    module = onnx2torch.convert(graph).eval().to(device=device, dtype=dtype)
    idx = {name: names.index(name) for name in _OUTPUT_NAMES}
    _smoke_test(module, dtype, device, idx["pha"])
    gpu = torch.cuda.get_device_name(device)
    detail = f"{path.name} via torch {torch.__version__} CUDA ({gpu}, {precision}, onnx2torch)"
    return TorchRvmModel(module, dtype, device, precision, path, detail, idx["pha"],
                         (idx["r1o"], idx["r2o"], idx["r3o"], idx["r4o"]))


def _smoke_test(module: Any, dtype: Any, device: Any, pha_index: int) -> None:
    """One tiny frame through the converted graph, so a conversion or dtype problem (an ONNX op that
    onnx2torch maps differently, a constant left in fp32) fails here, at load, where the caller can still
    fall back to onnxruntime, rather than in the middle of a job."""
    import torch

    with torch.inference_mode():
        zero = torch.zeros((1, 1, 1, 1), dtype=dtype, device=device)
        src = torch.full((1, 3, 128, 128), 0.5, dtype=dtype, device=device)
        res = module(src, zero, zero, zero, zero, torch.tensor([1.0], dtype=dtype, device=device))
        pha = res[pha_index]
        if tuple(pha.shape) != (1, 1, 128, 128) or not bool(torch.isfinite(pha).all()):
            raise RuntimeError(f"converted RVM graph gave an unusable alpha {tuple(pha.shape)}")


class TorchRvmSegmenter:
    """Same contract as `segmentation.RvmSegmenter`, with the tensors and the recurrent state on the GPU."""

    engine = "rvm"
    device = "cuda"
    backend = "torch"

    def __init__(self, model: TorchRvmModel, downsample_ratio: float | None) -> None:
        self._m = model
        self.detail = model.detail
        self._ratio = downsample_ratio
        self._state: list[Any] = []
        self.reset()

    def reset(self) -> None:
        import torch

        # A 1x1x1x1 zero tensor is the documented "no history" state for every recurrent input.
        self._state = [torch.zeros((1, 1, 1, 1), dtype=self._m.dtype, device=self._m.device) for _ in range(4)]

    def masks(self, frames: np.ndarray, region: Region | None = None) -> np.ndarray:
        import torch

        from reelforge.models.segmentation import rvm_auto_downsample

        m = self._m
        n, h, w = frames.shape[:3]
        ratio = torch.tensor([self._ratio or rvm_auto_downsample(w, h)], dtype=m.dtype, device=m.device)
        with torch.inference_mode():
            # One upload per batch as uint8 (4x less than float32 over PCIe); scaling happens on the GPU.
            batch = torch.from_numpy(np.ascontiguousarray(frames)).to(m.device, non_blocking=True)
            out = torch.empty((n, h, w), dtype=torch.float32, device=m.device)
            for i in range(n):
                src = batch[i].permute(2, 0, 1).unsqueeze(0).to(m.dtype).mul_(1.0 / 255.0)
                res = m.module(src, *self._state, ratio)
                self._state = [res[k] for k in m.state_index]
                out[i] = res[m.pha_index][0, 0]
            out.clamp_(0.0, 1.0)
            if region is not None:  # crop on the device: only the region crosses to the host
                x, y, rw, rh = region
                out = out[:, y:y + rh, x:x + rw]
            # The single device->host copy of the batch; it also waits for the GPU work above.
            return np.ascontiguousarray(out.cpu().numpy())
