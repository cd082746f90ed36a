"""`generate`: AI image-to-video (diffusers: Stable Video Diffusion, LTX-Video, Wan, CogVideoX) -> mp4.

Stages: fetching -> loading_model (only when this job host has not got the pipeline warm) ->
preparing_image -> `denoising k/N` (every step, from the pipeline's step callback) -> decoding -> encoding.
The model comes from a folder the operator configured (`GENERATE_MODELS`); `models/generate_plan.py` picks
the offload mode that fits the worker's memory (or refuses), `models/generate_pipe.py` loads and runs it,
and the frames are encoded through `media/encoders` (NVENC when the worker has it), optionally
interpolated to `output_fps` and scaled to `output_size` by ffmpeg. docs/GENERATE.md has the details.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from reelforge.errors import InputError
from reelforge.media.codecs import Quality, VideoCodec
from reelforge.media.encoders import EncoderChoice, encode_with_fallback
from reelforge.media.ffmpeg import ensure_file_output
from reelforge.media.frame_size import FrameSizeText, parse_frame_size
from reelforge.media.limits import check_frame_pixels, probe_image
from reelforge.models.generate_plan import FAMILIES, Family, Plan, choose_plan, min_vram_gb, model_entry, read_model
from reelforge.ops.context import OpContext, OpResult
from reelforge.ops.params import MediaRef, Params
from reelforge.ops.registry import operation
from reelforge.ops.resources import Resources, ResourceSpec

_DEFAULT_GUIDANCE = {"svd": 3.0, "ltx": 3.0, "wan": 5.0, "cogvideox": 6.0}
# when the params leave size/frames to the model: the largest native request of any family
_ASSUMED = (1024, 576, 25)


class GenerateParams(Params):
    image: MediaRef = Field(description="the first frame (it is fitted to the size with `fit`)")
    prompt: str = Field("", max_length=2000, description="what happens (LTX, Wan, CogVideoX; SVD takes none)")
    negative_prompt: str = Field("", max_length=2000)
    model: str | None = Field(None, pattern=r"^[A-Za-z0-9._-]{1,64}$",
                              description="a name from GENERATE_MODELS (default: the only one configured)")
    frames: int | None = Field(None, ge=2, le=257, description="frame count (default: the model's native)")
    duration_s: float | None = Field(None, gt=0, le=30, description="instead of frames: seconds at fps")
    fps: int | None = Field(None, ge=1, le=60, description="frame rate of the generated clip (default: the model's)")
    width: int | None = Field(None, ge=64, le=2048, multiple_of=2, description="default: the model's native size")
    height: int | None = Field(None, ge=64, le=2048, multiple_of=2)
    fit: Literal["cover", "contain"] = Field("cover", description="cover crops the image, contain pads it")
    steps: int = Field(25, ge=1, le=150, description="denoising steps")
    guidance: float | None = Field(None, ge=0, le=30, description="classifier-free guidance (default per family)")
    motion: float = Field(0.5, ge=0, le=1, description="motion strength (SVD's motion bucket); others ignore it")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="the same seed gives the same frames")
    output_fps: int | None = Field(None, ge=1, le=120, description="interpolate to this frame rate afterwards")
    interpolate: Literal["blend", "motion"] = Field("blend", description="with output_fps: blend frames "
                                                    "(fast) or motion-compensated (ffmpeg minterpolate, slow)")
    output_size: FrameSizeText | None = Field(None, description="scale (cover) to this size afterwards")
    quality: Quality = "standard"
    codec: VideoCodec = "h264"

    @model_validator(mode="after")
    def _check(self) -> GenerateParams:
        if self.frames is not None and self.duration_s is not None:
            raise ValueError("give frames or duration_s, not both")
        if (self.width is None) != (self.height is None):
            raise ValueError("give both width and height, or neither (the model's native size)")
        return self


def _request_shape(values: Mapping[str, Any]) -> tuple[int, int, int]:
    w = int(values.get("width") or _ASSUMED[0])
    h = int(values.get("height") or _ASSUMED[1])
    frames = values.get("frames")
    if frames is None and values.get("duration_s"):
        frames = round(float(values["duration_s"]) * int(values.get("fps") or 24))
    return w, h, int(frames or _ASSUMED[2])


def generate_resources(values: Mapping[str, Any]) -> Resources:
    """A GPU is preferred (tiny models run on CPU); the VRAM need is the least any family needs for the request
    (sequential offload). The worker checks the real model against its own memory before it loads anything."""
    w, h, frames = _request_shape(values)
    return Resources(gpu="preferred", vram_gb=min_vram_gb(w, h, frames), nvenc=True)


def generate_timeout(values: Mapping[str, Any]) -> float:
    """Model loading (up to 10 min from a slow disk) + a budget that scales with steps x frames x pixels."""
    w, h, frames = _request_shape(values)
    steps = int(values.get("steps") or 25)
    return 600.0 + 2.0 * steps * frames * max(0.25, w * h / 1e6) + 120.0


def _choose_device(ctx: OpContext) -> Literal["cuda", "cpu"]:
    from reelforge.models.generate_pipe import cuda_available

    pref = ctx.settings.media.device
    if pref == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if pref == "cuda":
        ctx.note(device_fallback="cuda requested but torch sees no CUDA device; using cpu")
    return "cpu"


def _fit_image(path: Path, size: tuple[int, int], fit: str) -> Any:
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    if fit == "cover":
        return ImageOps.fit(rgb, size, method=Image.Resampling.LANCZOS)
    return ImageOps.pad(rgb, size, method=Image.Resampling.LANCZOS, color=(0, 0, 0))


def _filters(plan: Plan, out_w: int, out_h: int, params: GenerateParams, fps: int) -> str:
    """Numbers only (no user text reaches the filter)."""
    parts = []
    if plan.gen_size != (out_w, out_h):
        parts.append(f"scale={out_w}:{out_h}:flags=lanczos")
    if params.output_fps is not None and params.output_fps != fps:
        parts.append(f"minterpolate=fps={params.output_fps}:mi_mode=mci" if params.interpolate == "motion"
                     else f"framerate=fps={params.output_fps}")
    if params.output_size is not None:
        w, h = parse_frame_size(params.output_size)
        parts.append(f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=lanczos,crop={w}:{h}")
    parts.append("setsar=1")
    return ",".join(parts)


@operation(
    "generate",
    params=GenerateParams,
    summary="AI image-to-video (SVD, LTX-Video, Wan, CogVideoX through diffusers) from an image and a prompt.",
    resources=ResourceSpec(derive=generate_resources,
                           note="GPU preferred; VRAM by size and frames (the worker picks an offload mode)"),
    timeout_s=3600,
    timeout_for=generate_timeout,
    example={"image": "https://example.com/first-frame.jpg", "prompt": "the camera pans slowly over the sea",
             "model": "ltx", "frames": 49, "fps": 24, "width": 768, "height": 512, "steps": 30, "seed": 7},
)
def run(params: GenerateParams, ctx: OpContext) -> OpResult:
    from reelforge.models import generate_pipe as gp

    settings = ctx.settings
    name, entry = model_entry(settings, params.model)
    facts = read_model(name, entry, settings)
    fam: Family = FAMILIES[entry.family]
    fps = params.fps or fam.native_fps
    if params.frames is not None:
        frames = params.frames
    elif params.duration_s is not None:
        frames = max(2, round(params.duration_s * fps))
    else:
        frames = fam.native_frames
    if frames > 257:
        raise InputError(f"{frames} frames is more than the 257 a job may generate.", code="too_many_frames")
    out_w, out_h = (params.width, params.height) if params.width and params.height else fam.native_size
    check_frame_pixels(out_w, out_h, settings)
    if params.output_size is not None:
        check_frame_pixels(*parse_frame_size(params.output_size), settings)
    device = _choose_device(ctx)
    if device == "cpu":
        gp.use_threads(settings.compute.threads_per_job)  # before loading too: see generate_pipe.generate
    detected = gp.detected_budget_gb(device) if settings.models.generate_vram_gb <= 0 else 0.0
    plan = choose_plan(facts, entry, settings, device=device, detected_gb=detected, width=out_w, height=out_h,
                       frames=frames)
    seed = params.seed if params.seed is not None else random.SystemRandom().randrange(2**32)
    ctx.note(device=device, generate_model=name, generate_family=fam.name, generate_mode=plan.mode,
             generate_need_gb=plan.need_gb, generate_budget_gb=plan.budget_gb, seed=seed,
             **({"generate_note": "; ".join(plan.notes)} if plan.notes else {}))
    timings: dict[str, float] = {}

    ctx.stage("fetching")
    path = ctx.fetch(params.image)
    probe_image(path, settings, params.image)  # refuses decompression bombs before anything decodes it
    ctx.check_cancelled()

    cache_budget = settings.models.generate_cache_gb or plan.budget_gb
    if not gp.PIPELINES.is_warm(plan):
        ctx.stage("loading_model", 0.02)
    started = time.monotonic()
    loaded, loaded_now, dropped = gp.PIPELINES.get(plan, cache_budget)
    dropped += gp.PIPELINES.make_room(plan, cache_budget)
    if loaded_now:
        timings["load_s"] = round(time.monotonic() - started, 3)
    if dropped:
        ctx.note(generate_evicted=dropped)
    ctx.check_cancelled()

    ctx.stage("preparing_image", 0.15)
    t0 = time.monotonic()
    image = _fit_image(path, plan.gen_size, params.fit)
    timings["prepare_s"] = round(time.monotonic() - t0, 4)

    lo, hi = 0.18, 0.9
    t0 = time.monotonic()
    marks: dict[str, float] = {}

    def on_step(k: int, n: int) -> None:
        ctx.progress(lo + (hi - lo) * k / max(1, n), f"denoising {k}/{n}")

    def on_decoding() -> None:
        marks["decode_at"] = time.monotonic()
        ctx.stage("decoding", hi)

    guidance = params.guidance if params.guidance is not None else _DEFAULT_GUIDANCE[fam.name]
    request = gp.Request(image=image, prompt=params.prompt, negative_prompt=params.negative_prompt,
                         steps=params.steps, guidance=guidance, motion=params.motion, fps=fps, seed=seed)
    video = gp.generate(loaded, plan, request, on_step=on_step, on_decoding=on_decoding, cancelled=ctx.cancelled,
                        threads=settings.compute.threads_per_job)
    done = time.monotonic()
    timings["denoise_s"] = round(marks.get("decode_at", done) - t0, 3)
    timings["decode_s"] = round(done - marks.get("decode_at", done), 3)
    video = video[:frames]
    digest = hashlib.sha256(video.tobytes()).hexdigest()  # the same seed and params give the same digest
    ctx.check_cancelled()

    t0 = time.monotonic()
    raw = ctx.temp_path("frames.rgb")
    raw.write_bytes(video.tobytes())
    gen_h, gen_w = int(video.shape[1]), int(video.shape[2])
    out = ctx.output_path("video", ".mp4")
    vf = _filters(plan, out_w, out_h, params, fps)
    out_fps = params.output_fps or fps

    def build(choice: EncoderChoice) -> list[str]:
        return ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{gen_w}x{gen_h}", "-framerate", str(fps),
                "-i", str(raw), "-vf", vf, *choice.args, "-r", str(out_fps), "-an", "-movflags", "+faststart",
                str(out)]

    used = encode_with_fallback(build, ctx, params.quality, codec=params.codec, duration_s=len(video) / fps,
                                span=(0.95, 1.0), stage="encoding")
    ensure_file_output(out, "generated video")
    raw.unlink(missing_ok=True)
    timings["encode_s"] = round(time.monotonic() - t0, 3)
    final_w, final_h = parse_frame_size(params.output_size) if params.output_size else (out_w, out_h)
    ctx.progress(1.0)
    return OpResult(outputs={"video": out}, data={
        "model": name, "family": fam.name, "device": device, "offload": plan.mode, "dtype": plan.dtype,
        "seed": seed, "steps": params.steps, "frames": len(video), "generated_frames": plan.gen_frames,
        "generated_size": f"{plan.gen_size[0]}x{plan.gen_size[1]}", "size": f"{final_w}x{final_h}",
        "fps": out_fps, "duration_s": round(len(video) / fps, 3), "encoder": used.name,
        "frames_sha256": digest, "warm": not loaded_now, "timings": timings, "need_gb": plan.need_gb,
        "budget_gb": plan.budget_gb})
