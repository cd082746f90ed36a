"""What an image-to-video request needs, decided without torch: the family's rules, memory, offload mode.

Everything here is arithmetic on a model folder's file sizes and the request (size, frames), so the API
process, `GET /v1/ops` and the tests can use it without importing torch. `models/generate_pipe.py` acts on
the plan (loads, offloads, runs).

Memory model (approximate, fp16/bf16 on CUDA; see docs/GENERATE.md for the sizes it gives):

    weights      the model folder's weight files per component (unet/transformer, text encoder, VAE, image
                 encoder), scaled from the stored dtype to the run dtype
    activations  ACTIVATION_GB[family] per megapixel-frame of the generated clip (attention over all
                 latent frames at once dominates), halved when the VAE decodes in slices/tiles
    none         every component resident:                  weights + activations + overhead
    model        model CPU offload, one component on the GPU: largest component + activations + overhead
    sequential   sequential offload, one layer at a time:    ~largest layer + activations + overhead

The first mode (in that order) that fits the budget is chosen; on a CPU worker only `none` exists (the
budget is RAM). Nothing fits -> `generate_too_large`, naming what the request needs and what the worker has.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from reelforge.config import GenerateFamily, GenerateModelEntry, Settings
from reelforge.errors import InputError, UserError

OffloadMode = Literal["none", "model", "sequential"]
OFFLOAD_ORDER: tuple[OffloadMode, ...] = ("none", "model", "sequential")
OVERHEAD_GB = 0.5  # CUDA context, scheduler state, the decoded frames
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_BYTES_PER = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Family:
    name: GenerateFamily
    pipeline: str  # the diffusers class
    denoiser: str  # the component that runs every step (unet | transformer)
    multiple: int  # width and height are generated at a multiple of this (VAE factor x patch/downsampling)
    frame_step: int  # valid frame counts are frame_step*k + frame_base (LTX 8k+1, Wan 4k+1, ...)
    frame_base: int
    native_size: tuple[int, int]
    native_frames: int
    native_fps: int
    activation_gb: float  # GB per megapixel-frame at half precision
    prompt: bool  # takes a text prompt
    motion: bool  # has a motion-strength conditioning (SVD's motion bucket)
    cuda_dtype: str

    def frames_for(self, wanted: int) -> int:
        """The smallest valid frame count >= wanted."""
        k = max(0, math.ceil((wanted - self.frame_base) / self.frame_step))
        return max(self.frame_base + self.frame_step * k, 2)

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The generated size: the requested one rounded to the family's multiple (at least one multiple)."""
        m = self.multiple
        return max(m, round(width / m) * m), max(m, round(height / m) * m)


FAMILIES: dict[str, Family] = {
    "svd": Family("svd", "StableVideoDiffusionPipeline", "unet", 64, 1, 1, (1024, 576), 14, 7, 0.30,
                  prompt=False, motion=True, cuda_dtype="float16"),
    "ltx": Family("ltx", "LTXImageToVideoPipeline", "transformer", 32, 8, 1, (768, 512), 49, 24, 0.06,
                  prompt=True, motion=False, cuda_dtype="bfloat16"),
    "wan": Family("wan", "WanImageToVideoPipeline", "transformer", 16, 4, 1, (832, 480), 33, 16, 0.20,
                  prompt=True, motion=False, cuda_dtype="bfloat16"),
    "cogvideox": Family("cogvideox", "CogVideoXImageToVideoPipeline", "transformer", 16, 8, 1, (720, 480), 49, 8,
                        0.25, prompt=True, motion=False, cuda_dtype="bfloat16"),
}
GENERIC_ACTIVATION_GB = max(f.activation_gb for f in FAMILIES.values())


@dataclass(frozen=True)
class ModelFacts:
    """A configured model folder as read from disk (no weights loaded)."""

    name: str
    folder: Path
    family: Family
    components_gb: dict[str, float]  # component -> weights on disk (GB, stored dtype)
    stored_bytes_per_param: int

    @property
    def disk_gb(self) -> float:
        return sum(self.components_gb.values())

    def weights_gb(self, dtype: str) -> dict[str, float]:
        ratio = _BYTES_PER.get(dtype, 2) / self.stored_bytes_per_param
        return {c: gb * ratio for c, gb in self.components_gb.items()}


@dataclass(frozen=True)
class Plan:
    model: ModelFacts
    device: Literal["cuda", "cpu"]
    dtype: str
    mode: OffloadMode
    budget_gb: float
    need_gb: float  # for the chosen mode
    needs: dict[str, float]  # every mode's estimate
    gen_size: tuple[int, int]
    gen_frames: int
    vae_slicing: bool
    vae_tiling: bool
    decode_chunk_size: int
    forward_chunking: bool
    notes: list[str] = field(default_factory=list)

    @property
    def resident_gb(self) -> float:
        """What the loaded pipeline keeps on its device between jobs (offloaded weights live in RAM)."""
        return sum(self.model.weights_gb(self.dtype).values()) if self.mode == "none" else 0.0


def configured(settings: Settings) -> dict[str, GenerateModelEntry]:
    return dict(settings.models.generate_models)


def model_entry(settings: Settings, name: str | None) -> tuple[str, GenerateModelEntry]:
    models = configured(settings)
    if not models:
        raise InputError("No generate models are configured on this worker; set GENERATE_MODELS "
                         "(name -> folder and family, see docs/GENERATE.md).", code="model_not_configured",
                         details={"configured": []})
    if name is None:
        if len(models) == 1:
            return next(iter(models.items()))
        raise InputError(f"Name a model; configured: {', '.join(sorted(models))}.", code="model_required",
                         details={"configured": sorted(models)})
    if name not in models:
        raise InputError(f"Model {name!r} is not configured on this worker; configured: {', '.join(sorted(models))}.",
                         code="model_not_configured", details={"configured": sorted(models)})
    return name, models[name]


def read_model(name: str, entry: GenerateModelEntry, settings: Settings) -> ModelFacts:
    folder = entry.folder.expanduser()
    index = folder / "model_index.json"
    if not index.is_file():
        listed = ", ".join(f"{n} ({e.folder})" for n, e in sorted(configured(settings).items()))
        raise InputError(f"Model {name!r}: folder {folder} has no model_index.json (a diffusers save_pretrained "
                         f"folder is needed; see docs/GENERATE.md). Configured: {listed}.",
                         code="model_unavailable", details={"configured": sorted(configured(settings))})
    try:
        components = [k for k, v in json.loads(index.read_text()).items()
                      if not k.startswith("_") and isinstance(v, list) and v and v[0]]
    except (ValueError, AttributeError):
        raise InputError(f"Model {name!r}: {index} is not valid JSON.", code="model_unavailable") from None
    sizes: dict[str, float] = {}
    stored: list[int] = []
    for comp in components:
        files = _loaded_weight_files(folder / comp)
        if files:
            sizes[comp] = sum(f.stat().st_size for f in files) / 1024**3
            stored += [b for b in (_safetensors_bytes_per_param(f) for f in files[:1]) if b]
    width = max(set(stored), key=stored.count) if stored else 2
    return ModelFacts(name, folder, FAMILIES[entry.family], sizes, width)


def _loaded_weight_files(comp_dir: Path) -> list[Path]:
    """The weight files diffusers loads for a component: safetensors before .bin, and not the `.fp16.` (or other
    variant) copies that hub folders often hold beside the plain files."""
    files = sorted(p for p in comp_dir.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)
                   and not p.name.startswith("."))
    safes = [p for p in files if p.suffix == ".safetensors"]
    files = safes or files
    plain = [p for p in files if p.name.count(".") == 1]  # model.safetensors, model-00001-of-00002.safetensors
    return plain or files


def _safetensors_bytes_per_param(path: Path) -> int | None:
    """The dtype width of a safetensors file's first tensor, read from its JSON header (no torch)."""
    if path.suffix != ".safetensors":
        return None
    try:
        with path.open("rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 100_000_000:
                return None
            header = json.loads(fh.read(size))
    except (OSError, ValueError):
        return None
    for key, value in header.items():
        if key != "__metadata__" and isinstance(value, dict):
            return {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "F8_E4M3": 1, "F8_E5M2": 1}.get(value.get("dtype", ""))
    return None


def activations_gb(family: Family | None, width: int, height: int, frames: int, *, sliced: bool) -> float:
    coef = family.activation_gb if family is not None else GENERIC_ACTIVATION_GB
    gb = coef * width * height * frames / 1e6
    return gb / 2 if sliced else gb


def estimate(model: ModelFacts, dtype: str, width: int, height: int, frames: int) -> dict[str, float]:
    """GB each offload mode needs on the device for this request."""
    weights = model.weights_gb(dtype)
    total = sum(weights.values())
    largest = max(weights.values(), default=0.0)
    layer = max(0.05, largest / 20)  # sequential offload keeps about one block resident
    fam = model.family
    return {
        "none": round(total + activations_gb(fam, width, height, frames, sliced=False) + OVERHEAD_GB, 2),
        "model": round(largest + activations_gb(fam, width, height, frames, sliced=True) + OVERHEAD_GB, 2),
        "sequential": round(layer + activations_gb(fam, width, height, frames, sliced=True) + OVERHEAD_GB, 2),
    }


def min_vram_gb(width: int, height: int, frames: int) -> float:
    """What any family needs at least for the request (sequential offload): the routing's declared need."""
    return round(1.0 + activations_gb(None, width, height, frames, sliced=True), 1)


def run_dtype(entry: GenerateModelEntry, family: Family, device: str) -> str:
    if entry.dtype != "auto":
        return entry.dtype
    return family.cuda_dtype if device == "cuda" else "float32"


def available_ram_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024**2
    except OSError:
        pass
    return 8.0


def choose_plan(model: ModelFacts, entry: GenerateModelEntry, settings: Settings, *, device: Literal["cuda", "cpu"],
                detected_gb: float, width: int, height: int, frames: int) -> Plan:
    """The offload mode and decode settings for one request, or a clear error when nothing fits."""
    fam = model.family
    declared = settings.models.generate_vram_gb
    budget = declared if declared > 0 else detected_gb * 0.9
    dtype = run_dtype(entry, fam, device)
    gen_w, gen_h = fam.size_for(width, height)
    gen_frames = fam.frames_for(frames)
    needs = estimate(model, dtype, gen_w, gen_h, gen_frames)
    notes: list[str] = []
    if device == "cpu":
        if model.disk_gb > settings.models.generate_cpu_max_gb:
            raise UserError(f"Model {model.name!r} ({model.disk_gb:.1f} GB) needs a CUDA GPU; this worker has none "
                            f"(models up to GENERATE_CPU_MAX_GB={settings.models.generate_cpu_max_gb:g} GB "
                            "run on CPU).",
                            code="gpu_required")
        modes: tuple[OffloadMode, ...] = ("none",)
        notes.append("running on CPU: slow, meant for tiny models and tests")
    else:
        modes = OFFLOAD_ORDER
    mode = next((m for m in modes if needs[m] <= budget), None)
    if mode is None:
        best = min(needs[m] for m in modes)
        where = "RAM" if device == "cpu" else "GPU memory"
        source = "declared (GENERATE_VRAM_GB)" if declared > 0 else "available"
        raise UserError(
            f"This request ({gen_w}x{gen_h}, {gen_frames} frames, model {model.name!r}) needs about {best:.1f} GB of "
            f"{where} even with {'sequential offload' if device == 'cuda' else 'no offload (CPU)'}; this worker has "
            f"{budget:.1f} GB {source}. Ask for fewer frames or a smaller size, or send it to a larger GPU.",
            code="generate_too_large",
            details={"need_gb": best, "budget_gb": round(budget, 2), "needs": needs, "device": device})
    offloaded = mode != "none"
    chunk = {"none": gen_frames, "model": 8, "sequential": 2}[mode]
    return Plan(model=model, device=device, dtype=dtype, mode=mode, budget_gb=round(budget, 2), need_gb=needs[mode],
                needs=needs, gen_size=(gen_w, gen_h), gen_frames=gen_frames, vae_slicing=offloaded,
                vae_tiling=offloaded, decode_chunk_size=max(1, min(chunk, gen_frames)),
                forward_chunking=mode == "sequential", notes=notes)
