"""diffusers image-to-video pipelines: load once per job host, offload to fit, run with progress and cancel.

torch and diffusers are imported only here and only when a `generate` job runs (the optional extra
`generate`). The plan (`generate_plan.py`) says which offload mode and decode settings to use; this module
applies them:

- **Warm cache** (`PIPELINES`): pipelines stay loaded in the job host for later jobs, keyed by model,
  device, dtype and offload mode. Before a load (or a run), least recently used pipelines are dropped
  until what stays resident plus what this job needs fits the cache budget (`GENERATE_CACHE_GB`, default
  the worker's generate budget), so whisper or RVM on the same GPU keep their room. One load at a time.
- **Progress and cancel**: `callback_on_step_end` reports step k of N; a forward pre-hook on every block
  of the denoiser and the VAE checks the cancel flag too, so a cancel stops within one block (well under a
  second), not only between steps. Cancel raises JobCancelled out of the pipeline; the pipeline's offload
  hooks are reset and CUDA's cached memory is released.
- Nothing is fetched from a hub: `HF_HUB_OFFLINE=1` is set before diffusers is imported and pipelines
  load with `local_files_only=True` from the configured folder.
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from reelforge.errors import JobCancelled, ProcessingError
from reelforge.models.generate_plan import Family, Plan

StepFn = Callable[[int, int], None]  # (steps done, steps in all)


def import_torch() -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        import torch
    except ImportError:
        raise ProcessingError("The generate op needs the optional extra: pip install 'reelforge[generate]' "
                              "(torch, diffusers, transformers, accelerate; see docs/GENERATE.md).",
                              code="generate_unavailable") from None
    return torch


def use_threads(threads: int) -> None:
    """torch's intra-op threads on CPU for loading and running (settings.compute.threads_per_job)."""
    torch = import_torch()
    if torch.get_num_threads() != max(1, threads):
        torch.set_num_threads(max(1, threads))


def cuda_available() -> bool:
    if os.environ.get("REELFORGE_FORCE_CPU") == "1":
        return False
    torch = import_torch()
    return bool(torch.cuda.is_available())


def detected_budget_gb(device: str) -> float:
    """Memory `generate` may count on: CUDA's free memory plus what torch already holds (our warm pipelines)."""
    if device != "cuda":
        from reelforge.models.generate_plan import available_ram_gb

        return available_ram_gb()
    torch = import_torch()
    free, _total = torch.cuda.mem_get_info()
    return float(free + torch.cuda.memory_reserved()) / 1024**3


@dataclass
class Loaded:
    pipe: Any
    resident_gb: float
    cancel_box: list[Callable[[], bool] | None]  # the running job's cancel check, read by the block hooks
    loaded_in_s: float


class PipelineCache:
    def __init__(self) -> None:
        self._entries: OrderedDict[tuple[str, ...], Loaded] = OrderedDict()
        self._lock = threading.Lock()
        self._load_lock = threading.Lock()  # one model load at a time per job host

    @staticmethod
    def key(plan: Plan) -> tuple[str, ...]:
        return (plan.model.name, str(plan.model.folder), plan.device, plan.dtype, plan.mode)

    def is_warm(self, plan: Plan) -> bool:
        with self._lock:
            return self.key(plan) in self._entries

    def resident_gb(self) -> float:
        with self._lock:
            return sum(e.resident_gb for e in self._entries.values())

    def keys(self) -> list[tuple[str, ...]]:
        with self._lock:
            return list(self._entries)

    def make_room(self, plan: Plan, cache_budget_gb: float) -> list[str]:
        """Drop least recently used pipelines (never this plan's) until the rest + this job fit the budget."""
        keep = self.key(plan)
        dropped: list[str] = []
        with self._lock:
            def others() -> float:
                return sum(e.resident_gb for k, e in self._entries.items() if k != keep)

            mine = plan.need_gb
            for k in list(self._entries):
                if others() + mine <= cache_budget_gb:
                    break
                if k != keep:
                    del self._entries[k]
                    dropped.append(k[0])
        if dropped:
            free_memory()
        return dropped

    def get(self, plan: Plan, cache_budget_gb: float) -> tuple[Loaded, bool, list[str]]:
        """(pipeline, loaded now?, models dropped to make room)."""
        key = self.key(plan)
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key], False, []
        with self._load_lock:
            with self._lock:
                if key in self._entries:
                    return self._entries[key], False, []
                # the same model under another mode/dtype is replaced, not kept twice
                stale = [k for k in self._entries if k[:2] == key[:2]]
                for k in stale:
                    del self._entries[k]
            dropped = [k[0] for k in stale] + self.make_room(plan, cache_budget_gb)
            if stale:
                free_memory()
            started = time.monotonic()
            loaded = load_pipeline(plan)
            loaded.loaded_in_s = round(time.monotonic() - started, 3)
            with self._lock:
                self._entries[key] = loaded
            return loaded, True, dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
        free_memory()


PIPELINES = PipelineCache()


def free_memory() -> None:
    gc.collect()
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _dtype(torch: Any, name: str) -> Any:
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def _install_cancel_hooks(pipe: Any, family: Family, box: list[Callable[[], bool] | None]) -> None:
    torch = import_torch()

    def check(_module: Any, _args: Any) -> None:
        fn = box[0]
        if fn is not None and fn():
            raise JobCancelled("The job was cancelled.")

    for name in (family.denoiser, "vae"):
        model = getattr(pipe, name, None)
        if model is None:
            continue
        for module in model.modules():
            if isinstance(module, torch.nn.ModuleList):
                for block in module:
                    block.register_forward_pre_hook(check)


def load_pipeline(plan: Plan) -> Loaded:
    torch = import_torch()
    import diffusers

    fam = plan.model.family
    cls = getattr(diffusers, fam.pipeline)
    try:
        pipe = cls.from_pretrained(str(plan.model.folder), torch_dtype=_dtype(torch, plan.dtype),
                                   local_files_only=True)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ProcessingError(f"Model {plan.model.name!r} could not be loaded from {plan.model.folder} as "
                              f"{fam.pipeline}: {str(exc)[:400]}", code="model_unavailable") from None
    with contextlib.suppress(Exception):
        pipe.set_progress_bar_config(disable=True)
    if plan.device == "cuda":
        if plan.mode == "none":
            pipe.to("cuda")
        elif plan.mode == "model":
            pipe.enable_model_cpu_offload()
        else:
            pipe.enable_sequential_cpu_offload()
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        if plan.vae_slicing and hasattr(vae, "enable_slicing"):
            vae.enable_slicing()
        if plan.vae_tiling and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
    denoiser = getattr(pipe, fam.denoiser, None)
    if plan.forward_chunking and denoiser is not None and hasattr(denoiser, "enable_forward_chunking"):
        with contextlib.suppress(Exception):
            denoiser.enable_forward_chunking(chunk_size=1, dim=1)
    box: list[Callable[[], bool] | None] = [None]
    _install_cancel_hooks(pipe, fam, box)
    return Loaded(pipe, plan.resident_gb, box, 0.0)


@dataclass(frozen=True)
class Request:
    image: Any  # PIL.Image at the plan's generated size
    prompt: str
    negative_prompt: str
    steps: int
    guidance: float
    motion: float  # 0..1
    fps: int
    seed: int


def call_kwargs(plan: Plan, req: Request) -> dict[str, Any]:
    """The pipeline's arguments for this family."""
    fam = plan.model.family
    w, h = plan.gen_size
    common: dict[str, Any] = {"image": req.image, "height": h, "width": w, "num_frames": plan.gen_frames,
                              "num_inference_steps": req.steps, "output_type": "np"}
    if fam.name == "svd":
        return {**common, "min_guidance_scale": 1.0, "max_guidance_scale": max(1.0, req.guidance),
                "fps": req.fps, "motion_bucket_id": round(req.motion * 255), "noise_aug_strength": 0.02,
                "decode_chunk_size": plan.decode_chunk_size}
    text = {"prompt": req.prompt, "negative_prompt": req.negative_prompt or None, "guidance_scale": req.guidance}
    if fam.name == "ltx":
        return {**common, **text, "frame_rate": req.fps}
    if fam.name == "cogvideox":
        return {**common, **text, "use_dynamic_cfg": True}
    return {**common, **text}


def generate(loaded: Loaded, plan: Plan, req: Request, *, on_step: StepFn, on_decoding: Callable[[], None],
             cancelled: Callable[[], bool], threads: int = 1) -> np.ndarray:
    """Run the pipeline: uint8 frames (F, H, W, 3). Raises JobCancelled within one block of a cancel.

    On CPU torch gets exactly `threads` intra-op threads (settings.compute.threads_per_job): on a busy machine
    a second thread makes small ops wait on each other (seen: one tiny UNet forward 0.19 s on 1 thread,
    11 s on 2 at load 12 on 2 cores)."""
    torch = import_torch()
    if plan.device == "cpu":
        use_threads(threads)
    pipe = loaded.pipe
    generator = torch.Generator(device="cpu").manual_seed(req.seed)  # the same frames on any device

    def step_end(p: Any, i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
        total = int(getattr(p, "_num_timesteps", None) or req.steps)
        on_step(i + 1, total)
        if cancelled():
            raise JobCancelled("The job was cancelled.")
        if i + 1 >= total:
            on_decoding()
        return kwargs

    loaded.cancel_box[0] = cancelled
    try:
        with torch.inference_mode():
            out = pipe(**call_kwargs(plan, req), generator=generator, callback_on_step_end=step_end)
    except JobCancelled:
        _after_abort(pipe)
        raise
    except torch.cuda.OutOfMemoryError:
        _after_abort(pipe)
        raise ProcessingError(f"The GPU ran out of memory in mode {plan.mode} (estimated {plan.need_gb} GB of "
                              f"{plan.budget_gb} GB); lower GENERATE_VRAM_GB on this worker or ask for less.",
                              code="gpu_out_of_memory") from None
    finally:
        loaded.cancel_box[0] = None
    frames = out.frames[0] if isinstance(out.frames, list | tuple) else out.frames
    arr = np.asarray(frames)
    if arr.ndim == 5:
        arr = arr[0]
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    del out
    return arr


def _after_abort(pipe: Any) -> None:
    """Offloaded components go back to the CPU now; the rest is freed just after the error has left (a
    full gc can take a second on a busy machine, and the job host must answer a cancel within its grace)."""
    with contextlib.suppress(Exception):
        pipe.maybe_free_model_hooks()
    threading.Timer(0.2, free_memory).start()
