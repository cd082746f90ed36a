"""What an operation needs from the machine that runs it: a GPU (or not), its memory, NVENC.

An op declares this once in `@operation(resources=...)`. It is a description, not a scheduler: the
routing (`reelforge.engine.routing`) turns it into a queue name, and the operator's `op_routes` table can
send any op anywhere. Where the need depends on the params (overlay with `engine: rvm` wants a GPU,
overlay with mediapipe does not), the op lists `Variant`s; they are data, so `GET /v1/ops` can show them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

# none:      never uses a GPU (probe, stream copies, x264-only work)
# optional:  can use a GPU when the worker has one, gains little (small whisper alignment, kokoro)
# preferred: much faster on a GPU, still runs on CPU (faster-whisper transcription, RVM matting)
# required:  does not run without a CUDA GPU (diffusion models: the future `generate`)
GpuNeed = Literal["none", "optional", "preferred", "required"]
_GPU_ORDER: dict[str, int] = {"none": 0, "optional": 1, "preferred": 2, "required": 3}


class Resources(BaseModel):
    model_config = ConfigDict(frozen=True)

    gpu: GpuNeed = Field(default="none", description="none | optional | preferred (much faster on a GPU) | required")
    vram_gb: float = Field(default=0.0, ge=0, description="GPU memory it needs when it runs on a GPU (approximate)")
    nvenc: bool = Field(default=False, description="encodes with NVENC when the worker's GPU has it (else x264 on CPU)")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cpu_only(self) -> bool:
        """Nothing in it can use a GPU: any worker is as good as any other."""
        return self.gpu == "none" and not self.nvenc

    @property
    def wants_gpu(self) -> bool:
        """Worth a GPU worker's slot: the default routing sends these to the `gpu` queue."""
        return _GPU_ORDER[self.gpu] >= _GPU_ORDER["preferred"]

    def combine(self, other: Resources) -> Resources:
        """What one job running both needs (a pipeline's steps run in the same job host)."""
        gpu = self.gpu if _GPU_ORDER[self.gpu] >= _GPU_ORDER[other.gpu] else other.gpu
        return Resources(gpu=gpu, vram_gb=max(self.vram_gb, other.vram_gb), nvenc=self.nvenc or other.nvenc)


CPU = Resources()
ENCODES = Resources(nvenc=True)  # an ffmpeg encode that takes NVENC when there is one


def param_value(params: Mapping[str, Any], path: str) -> Any:
    """`head.engine` -> params["head"]["engine"]; None when any part is missing."""
    value: Any = params
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


@dataclass(frozen=True)
class Variant:
    """`resources` apply when every `when` path (dotted, into the params) has the given value."""

    when: Mapping[str, Any]
    resources: Resources

    def matches(self, params: Mapping[str, Any]) -> bool:
        return all(param_value(params, path) == value for path, value in self.when.items())


@dataclass(frozen=True)
class ResourceSpec:
    """An op's resources: `base`, replaced by the first matching variant, or computed by `derive`
    (a pipeline's resources are those of its steps together)."""

    base: Resources = CPU
    variants: tuple[Variant, ...] = ()
    derive: Callable[[Mapping[str, Any]], Resources] | None = None
    note: str = ""  # shown in GET /v1/ops when `derive` decides

    def for_params(self, params: Mapping[str, Any] | BaseModel | None) -> Resources:
        if params is None:
            return self.base
        values = params.model_dump(mode="json") if isinstance(params, BaseModel) else params
        if self.derive is not None:
            return self.derive(values)
        for variant in self.variants:
            if variant.matches(values):
                return variant.resources
        return self.base


def as_spec(resources: Resources | ResourceSpec) -> ResourceSpec:
    return resources if isinstance(resources, ResourceSpec) else ResourceSpec(resources)
