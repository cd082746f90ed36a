"""Settings: built once from REELFORGE_* environment variables, ./.env and an optional TOML file, then passed down.

Nothing here opens a database or touches the network; `Settings()` is cheap and side-effect free.

Settings are grouped (`settings.limits.max_fetch_bytes`, `settings.storage.s3_bucket`, ...). Every setting
also has one flat name, the name it had before the grouping: FLAT_NAMES below is the one table that maps a
flat name to its group, and it drives every way of giving a setting:

- keyword arguments: `Settings(data_dir=..., workers=1)` or `Settings(compute={"workers": 1})`;
- environment / .env: `REELFORGE_WORKERS=1` or `REELFORGE_COMPUTE__WORKERS=1`;
- the TOML file named by REELFORGE_CONFIG: `workers = 1` at the top or `[compute]` / `workers = 1`.

Precedence, highest first: keyword arguments, environment, .env (REELFORGE_ENV_FILE, default ./.env), TOML.
A named config or env file that is missing, or an unknown REELFORGE_* name / TOML key, raises ConfigError
naming it and the nearest valid name: a typo never silently falls back to a default.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_origin
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    SerializationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,16}$")  # jobs.queue is a String(16)
ENV_PREFIX = "REELFORGE_"
# REELFORGE_* names that are read elsewhere and are not settings (so they are not "unknown settings")
OTHER_ENV_NAMES = frozenset({
    "REELFORGE_CONFIG", "REELFORGE_ENV_FILE",  # where the settings come from (read here)
    "REELFORGE_URL", "REELFORGE_API_KEY",  # the CLI client
    "REELFORGE_AGENT_API", "REELFORGE_AGENT_TOKEN",  # `reelforge agent`
    "REELFORGE_FFMPEG", "REELFORGE_FFPROBE", "REELFORGE_ESPEAK",  # tool paths (media, models)
    "REELFORGE_FORCE_CPU", "REELFORGE_RVM_PRECISION",  # model switches read by the model loaders
    # `reelforge batch run`: the env layer of a batch's values (jobs/batch_config.py ENV_NAMES, checked there)
    *(f"REELFORGE_BATCH_{name.upper()}" for name in (
        "name", "op", "params", "preset", "prefix", "inputs", "manifest_key", "manifest_format", "glob",
        "extensions", "min_size", "max_size", "modified_after", "modified_before", "s3_endpoint_url",
        "s3_access_key_id", "s3_secret_access_key", "s3_region", "destination", "filename", "max_concurrent",
        "max_retries", "priority", "timeout_s", "webhook_url", "item_webhooks", "remote_config")),
    "REELFORGE_MODAL_GPU", "REELFORGE_MODAL_TIMEOUT_S",  # `modal deploy` of engine/modal_app.py
})
REVEAL_SECRETS = "reveal_secrets"  # serialization context key: see Settings.handover_dict


class ConfigError(ValueError):
    """The configuration cannot be used (missing file, unknown key); the message names what is wrong."""


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    user = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[2]}"))


def _dump_secret(value: SecretStr, info: SerializationInfo) -> str:
    if info.context and info.context.get(REVEAL_SECRETS):
        return value.get_secret_value()
    return "**********" if value.get_secret_value() else ""


def _dump_secret_url(value: SecretStr, info: SerializationInfo) -> str:
    if info.context and info.context.get(REVEAL_SECRETS):
        return value.get_secret_value()
    return redact_url(value.get_secret_value())


# A secret dumps as stars (a URL with its password starred) unless the dump is a hand-over to a child process.
Secret = Annotated[SecretStr, PlainSerializer(_dump_secret, return_type=str)]
SecretUrl = Annotated[SecretStr, PlainSerializer(_dump_secret_url, return_type=str)]


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceSettings(_Group):
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    database_url: SecretUrl = SecretStr("")  # default: sqlite under data_dir; may carry a password
    access_log: bool = True  # uvicorn's per-request log line
    public_url: str = ""  # base URL clients use to reach the API (for local file URLs); default from host/port
    plugins: str = ""  # comma-separated modules with extra @operation()s, imported by API and job hosts
    # the earlier API's front door (api/legacy_seed004.py, /overlay): a call waits this long for its job,
    # then answers 504 with the job id (the job keeps running; GET /job/{id} has the result)
    legacy_sync_wait_s: float = Field(default=300.0, ge=0)


class ComputeSettings(_Group):
    executor: Literal["local", "celery"] = "local"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    broker_url: SecretUrl = SecretStr("redis://127.0.0.1:6379/0")  # may carry a password
    worker_queues: str = "cpu,gpu"  # queues a `reelforge worker` consumes by default
    # Celery task events (sent/received/started/succeeded per task): what Flower and Celery exporters read
    celery_task_events: bool = True
    # a `reelforge worker`'s own /metrics (job durations, queue waits, webhooks, GPUs); 0 = none
    worker_metrics_port: int = Field(default=0, ge=0, le=65535)
    worker_metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container Prometheus scrapes from outside
    # op -> queue overrides, e.g. {"overlay.engine=rvm": "gpu-24g", "build": "gpu"} (reelforge.engine.routing);
    # ops not named go to "gpu" when they prefer a GPU, else "cpu"
    op_routes: dict[str, str] = Field(default_factory=dict)
    # queue -> ordered backends that take its jobs, e.g. {"gpu": ["agent", "local"]}: remote agents
    # (`reelforge agent`) take gpu jobs; the local slots take them only while no agent has asked for that
    # queue within agent_alive_s. A queue not named here is taken by the configured executor.
    queue_backends: dict[str, list[Literal["local", "celery", "agent", "runpod", "modal"]]] = Field(
        default_factory=dict)
    agent_alive_s: float = Field(default=30.0, gt=0)
    # the `runpod` backend: a RunPod serverless endpoint whose handler runs job envelopes (deploy/runpod/)
    runpod_endpoint_id: str = ""
    runpod_api_key: Secret = SecretStr("")
    runpod_base_url: str = "https://api.runpod.ai/v2"
    runpod_ttl_s: float = Field(default=24 * 3600.0, gt=0)  # a job's whole life on RunPod, its queue included
    # the `modal` backend: the Modal app deployed from engine/modal_app.py (Modal's token: MODAL_TOKEN_ID/SECRET)
    modal_app: str = ""
    modal_function: str = "run_envelope"
    modal_environment: str = ""
    max_attempts: int = Field(default=3, ge=1)
    lease_ttl_s: float = Field(default=20.0, gt=1)
    heartbeat_s: float = Field(default=2.0, gt=0)
    max_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    threads_per_job: int = Field(default=2, ge=1)  # bounds BLAS/ONNX/CT2 threads inside a job
    # niceness of job hosts (and the ffmpeg they start): media work yields the CPU to the API process on a
    # shared machine, so status reads and submits stay fast while every slot encodes; 0 = same as the API
    job_nice: int = Field(default=10, ge=0, le=19)
    # pipeline step cache (data_dir/cache/steps): least recently used results are removed beyond this size
    # or age; checked after a result is stored, at most once a minute per process
    step_cache_max_gb: float = Field(default=20.0, ge=0)
    step_cache_max_age_days: float = Field(default=14.0, gt=0)
    # chunked rendering (docs/CHUNKED.md): an mp4 render longer than chunk_threshold_s is split into time
    # chunks, each a child job, when more than one worker can take them; no chunk is shorter than chunk_min_s
    # (per-chunk start-up and the join must stay small next to the encode). chunk_workers: how many workers
    # to plan for; 0 = ask the executor (embedded: 1, so no chunking unless a render asks with `chunks`;
    # Celery: the concurrency of the workers consuming the job's queue)
    chunk_threshold_s: float = Field(default=60.0, gt=0)
    chunk_min_s: float = Field(default=15.0, gt=0)
    chunk_workers: int = Field(default=0, ge=0, le=256)

    @field_validator("op_routes")
    @classmethod
    def _queue_names(cls, routes: dict[str, str]) -> dict[str, str]:
        bad = [q for q in routes.values() if not QUEUE_NAME_RE.match(q)]
        if bad:
            raise ValueError(f"op_routes: queue names are 1-16 letters, digits, '.', '_' or '-'; got {bad[0]!r}")
        return routes


class StorageSettings(_Group):
    backend: Literal["local", "s3"] = "local"
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "reelforge/"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: Secret = SecretStr("")
    s3_presign_expiry_s: int = Field(default=86400, ge=60)
    s3_public_base_url: str = ""  # e.g. a CDN or R2 public domain; outputs then get plain URLs
    # the endpoint presigned URLs are made for, as clients reach the storage (e.g. http://localhost:9000 when the
    # service itself talks to http://minio:9000 inside a compose network); default: s3_endpoint_url
    s3_presign_endpoint_url: str = ""
    # where outputs a client names (the earlier API's path + output_filename) land, under the prefix above;
    # one folder per tenant ({tenant}), never the service's own jobs/ or uploads/ (storage/delivery.py)
    delivery_root: str = "delivered/{tenant}/"

    @field_validator("delivery_root")
    @classmethod
    def _delivery_root(cls, v: str) -> str:
        root = v.strip()
        root = root if root.endswith("/") else root + "/"
        parts = root[:-1].split("/")
        if root.startswith("/") or "\\" in root or any(p in ("", ".", "..") for p in parts):
            raise ValueError("delivery_root must be a relative folder such as 'delivered/{tenant}/'")
        if parts.count("{tenant}") != 1 or "{tenant}" in parts[0] or root.count("{tenant}") != 1:
            raise ValueError("delivery_root must hold '{tenant}' once, as a folder after the first one "
                             "(e.g. 'delivered/{tenant}/'): every tenant gets its own folder")
        if parts[0] in ("jobs", "uploads", "agent-uploads", ".partial"):
            raise ValueError(f"delivery_root must not start in the service's own folder {parts[0]!r}")
        return root


class LimitSettings(_Group):
    """Limits on untrusted input."""

    max_body_bytes: int = 1_000_000
    max_upload_bytes: int = 2 * 1024**3
    max_fetch_bytes: int = 2 * 1024**3
    fetch_timeout_s: float = 60.0
    fetch_allow_private: bool = False  # only for local development: lets URLs point at private addresses
    max_media_duration_s: float = 4 * 3600.0
    max_image_pixels: int = 60_000_000
    max_video_pixels: int = 4096 * 2304
    # free disk space: jobs and uploads that would leave less than the reserve free on the data disk are
    # refused with disk_full (507 for uploads); /health says "degraded" below disk_low_bytes
    disk_reserve_bytes: int = Field(default=256 * 1024**2, ge=0)
    disk_low_bytes: int = Field(default=1024**3, ge=0)
    max_video_fps: float = 240.0  # frame rate of an input video
    max_input_streams: int = 16  # streams in one input file (video + audio + subtitle + data)
    max_batch_items: int = Field(default=100_000, ge=1)  # items one batch may have (jobs/batches.py)
    # burned subtitles: cues and characters of event text allowed per second of video, with a floor for
    # short clips (libass work grows with both; a normal subtitle is ~0.5 cues and ~20 characters a second)
    max_subtitle_cues_per_s: float = 20.0
    max_subtitle_chars_per_s: float = 2000.0
    min_subtitle_cues: int = 1000
    min_subtitle_chars: int = 100_000
    # per-key rate limits (token buckets, api/ratelimit.py): sustained requests a second and the burst allowed;
    # a rate of 0 turns that limit off. Submits count POST /v1/jobs, retries and other front doors' submits.
    submit_rate_per_s: float = Field(default=20.0, ge=0)
    submit_burst: int = Field(default=100, ge=1)
    upload_rate_per_s: float = Field(default=5.0, ge=0)
    upload_burst: int = Field(default=20, ge=1)
    # where the buckets live: memory (this process) | redis (shared by every API process) | auto: redis when
    # the service runs with a Redis broker (executor celery) or rate_limit_redis_url is set
    rate_limit_backend: Literal["auto", "memory", "redis"] = "auto"
    rate_limit_redis_url: SecretUrl = SecretStr("")  # default: the broker URL when it is redis://


class SecuritySettings(_Group):
    api_keys_required: bool | None = None  # None: required unless bound to loopback
    metrics_require_key: bool | None = None  # None: /metrics needs a key exactly when API keys are required
    webhook_secret: Secret = SecretStr("")  # default: generated once into data_dir/webhook_secret
    # while rotating: the secret receivers had before; every webhook is then signed with both (two signatures)
    webhook_secret_previous: Secret = SecretStr("")


class WebhookSettings(_Group):
    """Webhook delivery (jobs/webhooks.py)."""

    # seconds to wait before each retry of an event the receiver did not take (after the first try); when
    # they are spent the event is given up on. 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about 28 h in all
    retry_schedule: list[float] = Field(default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0,
                                                                 36000.0], min_length=1, max_length=50)
    retry_jitter: float = Field(default=0.2, ge=0, le=1)  # each wait is spread by up to +-this fraction
    timeout_s: float = Field(default=10.0, gt=0)  # one delivery request

    @field_validator("retry_schedule")
    @classmethod
    def _non_negative(cls, schedule: list[float]) -> list[float]:
        if any(s < 0 for s in schedule):
            raise ValueError("webhook_retry_schedule: waits are seconds >= 0")
        return schedule


class MediaSettings(_Group):
    device: Literal["auto", "cpu", "cuda"] = "auto"
    nvenc: Literal["auto", "off"] = "auto"
    nvenc_max_sessions: int = Field(default=3, ge=1)
    font_dir: Path | None = None  # fonts for captions/text (default: DejaVu from fonts-dejavu-core)
    chromium_path: Path = Path("/usr/bin/chromium")  # renders `render`'s html assets (Debian's chromium)


GenerateFamily = Literal["svd", "ltx", "wan", "cogvideox"]


class GenerateModelEntry(_Group):
    """One image-to-video model folder for the `generate` op (a diffusers `save_pretrained` folder)."""

    folder: Path
    family: GenerateFamily  # svd (Stable Video Diffusion), ltx (LTX-Video), wan (Wan 2.x), cogvideox
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = "auto"  # auto: fp16/bf16 on CUDA, fp32 on CPU


class ModelSettings(_Group):
    whisper_model: str = "packaged:base"  # packaged:base | packaged:tiny.en | a local CTranslate2 folder
    # whisper model for word timings of a known script: "auto" = packaged:tiny.en to force-align English tts
    # output (its sentence spans are known: 2x faster than base), else whisper_model (align, given narration)
    align_model: str = "auto"
    # whisper models a job may pick by name (`transcribe` param `model`): name -> packaged:... or a local
    # CTranslate2 folder; "base" and "tiny.en" (the packaged ones) are always offered
    whisper_models: dict[str, str] = Field(default_factory=dict)
    model_cache_dir: Path | None = None  # default data_dir/models
    kokoro_voices: Path | None = None  # a Kokoro voices file (e.g. voices-v1.0.bin) for the kokoro engine
    # folders of extra voices: Piper's <name>.onnx + <name>.onnx.json, Kokoro voices files (*.bin, *.npz)
    voice_dirs: list[Path] = Field(default_factory=list)

    @field_validator("voice_dirs", mode="before")
    @classmethod
    def _voice_dirs(cls, v: Any) -> Any:
        if isinstance(v, str):  # an environment variable: a JSON list, or folders separated by ':' or ','
            v = v.strip()
            return json.loads(v) if v.startswith("[") else [p for p in re.split(r"[:,]", v) if p.strip()]
        return v
    # `generate` (docs/GENERATE.md): model name -> {folder, family, dtype}; nothing is downloaded at run time
    generate_models: dict[str, GenerateModelEntry] = Field(default_factory=dict)
    # GPU memory this worker gives `generate` (GB); 0 = what CUDA reports free. On a CPU worker: the RAM budget
    # (0 = the machine's available memory). The offload mode is chosen to fit it; a request that fits no mode fails
    generate_vram_gb: float = Field(default=0.0, ge=0)
    # warm generate pipelines kept per job host; least recently used are dropped beyond this many GB resident
    # on the device (0 = generate_vram_gb's budget), so whisper/RVM on the same GPU keep room
    generate_cache_gb: float = Field(default=0.0, ge=0)
    # models up to this size (weights on disk, GB) may run on a worker without a CUDA GPU (slowly); larger need CUDA
    generate_cpu_max_gb: float = Field(default=2.0, ge=0)


class CapacitySettings(_Group):
    """Rented GPU capacity (jobs/capacity.py, docs/CAPACITY.md): instances found, started, watched and
    destroyed on a provider, each running `reelforge agent` for one queue, within the budgets below."""

    provider: Literal["", "vast"] = ""  # "": no rented capacity
    vast_api_key: Secret = SecretStr("")  # sent as Bearer to the Vast.ai API only; never to an instance
    vast_base_url: str = "https://console.vast.ai/api/v0"
    deployment: str = Field(default="reelforge", pattern=r"^[A-Za-z0-9_-]{1,40}$")  # in every instance's label
    queues: list[str] = Field(default_factory=lambda: ["gpu"])  # the queues rented instances take
    in_api: bool = True  # run the controller in the API process (else run `reelforge capacity` alone)
    tick_s: float = Field(default=10.0, gt=0)
    reap_every_s: float = Field(default=180.0, gt=0)  # orphan reaper: at start and this often
    image: str = ""  # a Docker image with ReelForge and ffmpeg installed (e.g. deploy/Dockerfile.runpod's)
    disk_gb: float = Field(default=20.0, gt=0)
    runtype: str = "ssh"
    # the instance's start script; {api} {queues} {slots} {idle_exit} are filled in; the agent token is in
    # the instance's environment (REELFORGE_AGENT_TOKEN), scoped to that queue and revoked when it is destroyed
    onstart: str = "reelforge agent --api {api} --queues {queues} --concurrency {slots} --idle-exit {idle_exit}"
    agent_api_url: str = ""  # how instances reach this service (default: service.public_url)
    max_instances: int = Field(default=3, ge=0)
    max_instances_per_queue: int = Field(default=3, ge=0)
    max_dph: float = Field(default=2.0, ge=0)  # $/hour of all live instances together, starting ones included
    max_day_usd: float = Field(default=20.0, ge=0)  # per UTC day
    max_lifetime_h: float = Field(default=12.0, gt=0)
    idle_minutes: float = Field(default=10.0, gt=0)  # an instance without a job this long is destroyed
    boot_timeout_s: float = Field(default=900.0, gt=0)  # an agent not registered by then: destroyed
    broken_grace_s: float = Field(default=120.0, ge=0)  # offline/unknown this long: destroyed
    jobs_per_instance: int = Field(default=20, ge=1)  # queued jobs per instance before another is started
    slots: int = Field(default=1, ge=1)  # jobs at a time on an instance (the agent's --concurrency)
    destroy_on_stop: bool = True  # the controller destroys its instances when it stops
    # offer filters (asked of the API and checked again here)
    gpu_names: list[str] = Field(default_factory=list)  # e.g. ["RTX 4090", "RTX 3090"]; empty: any
    min_gpu_ram_gb: float = Field(default=8.0, ge=0)
    max_offer_dph: float = Field(default=1.0, gt=0)
    min_reliability: float = Field(default=0.95, ge=0, le=1)
    verified_only: bool = True
    min_cuda: float = Field(default=12.0, ge=0)
    min_inet_down_mbps: float = Field(default=100.0, ge=0)
    geolocations: list[str] = Field(default_factory=list)  # e.g. ["US", "CA"]; empty: anywhere
    # the whole service on one rented box: run this command after N minutes with no queued or running job
    # and no open upload (e.g. the provider's destroy call for this instance); 0 minutes: never
    idle_shutdown_minutes: float = Field(default=0.0, ge=0)
    idle_shutdown_command: str = ""

    @field_validator("queues")
    @classmethod
    def _capacity_queues(cls, queues: list[str]) -> list[str]:
        bad = [q for q in queues if not QUEUE_NAME_RE.match(q)]
        if bad:
            raise ValueError(f"capacity.queues: queue names are 1-16 letters, digits, '.', '_' or '-'; got {bad[0]!r}")
        return queues


GROUPS: dict[str, type[_Group]] = {
    "service": ServiceSettings, "compute": ComputeSettings, "storage": StorageSettings, "limits": LimitSettings,
    "security": SecuritySettings, "webhooks": WebhookSettings, "media": MediaSettings, "models": ModelSettings,
    "capacity": CapacitySettings,
}

# The one table: flat name (keyword argument, REELFORGE_<NAME>, top-level TOML key) -> (group, field).
FLAT_NAMES: dict[str, tuple[str, str]] = {
    "host": ("service", "host"), "port": ("service", "port"), "data_dir": ("service", "data_dir"),
    "database_url": ("service", "database_url"), "access_log": ("service", "access_log"),
    "public_url": ("service", "public_url"), "plugins": ("service", "plugins"),
    "legacy_sync_wait_s": ("service", "legacy_sync_wait_s"),
    "executor": ("compute", "executor"), "workers": ("compute", "workers"), "broker_url": ("compute", "broker_url"),
    "worker_queues": ("compute", "worker_queues"), "op_routes": ("compute", "op_routes"),
    "celery_task_events": ("compute", "celery_task_events"),
    "worker_metrics_port": ("compute", "worker_metrics_port"),
    "worker_metrics_host": ("compute", "worker_metrics_host"),
    "max_attempts": ("compute", "max_attempts"),
    "queue_backends": ("compute", "queue_backends"), "agent_alive_s": ("compute", "agent_alive_s"),
    "runpod_endpoint_id": ("compute", "runpod_endpoint_id"), "runpod_api_key": ("compute", "runpod_api_key"),
    "runpod_base_url": ("compute", "runpod_base_url"), "runpod_ttl_s": ("compute", "runpod_ttl_s"),
    "modal_app": ("compute", "modal_app"), "modal_function": ("compute", "modal_function"),
    "modal_environment": ("compute", "modal_environment"),
    "lease_ttl_s": ("compute", "lease_ttl_s"), "heartbeat_s": ("compute", "heartbeat_s"),
    "max_timeout_s": ("compute", "max_timeout_s"), "threads_per_job": ("compute", "threads_per_job"),
    "job_nice": ("compute", "job_nice"),
    "step_cache_max_gb": ("compute", "step_cache_max_gb"),
    "step_cache_max_age_days": ("compute", "step_cache_max_age_days"),
    "chunk_threshold_s": ("compute", "chunk_threshold_s"), "chunk_min_s": ("compute", "chunk_min_s"),
    "chunk_workers": ("compute", "chunk_workers"),
    "storage": ("storage", "backend"),  # a string; a mapping under the same name is the whole group
    "s3_endpoint_url": ("storage", "s3_endpoint_url"), "s3_bucket": ("storage", "s3_bucket"),
    "s3_prefix": ("storage", "s3_prefix"), "s3_region": ("storage", "s3_region"),
    "s3_access_key_id": ("storage", "s3_access_key_id"), "s3_secret_access_key": ("storage", "s3_secret_access_key"),
    "s3_presign_expiry_s": ("storage", "s3_presign_expiry_s"), "s3_public_base_url": ("storage", "s3_public_base_url"),
    "s3_presign_endpoint_url": ("storage", "s3_presign_endpoint_url"),
    "delivery_root": ("storage", "delivery_root"),
    "max_body_bytes": ("limits", "max_body_bytes"), "max_upload_bytes": ("limits", "max_upload_bytes"),
    "max_fetch_bytes": ("limits", "max_fetch_bytes"), "fetch_timeout_s": ("limits", "fetch_timeout_s"),
    "fetch_allow_private": ("limits", "fetch_allow_private"),
    "max_media_duration_s": ("limits", "max_media_duration_s"),
    "max_image_pixels": ("limits", "max_image_pixels"), "max_video_pixels": ("limits", "max_video_pixels"),
    "disk_reserve_bytes": ("limits", "disk_reserve_bytes"), "disk_low_bytes": ("limits", "disk_low_bytes"),
    "max_video_fps": ("limits", "max_video_fps"), "max_input_streams": ("limits", "max_input_streams"),
    "max_batch_items": ("limits", "max_batch_items"),
    "max_subtitle_cues_per_s": ("limits", "max_subtitle_cues_per_s"),
    "max_subtitle_chars_per_s": ("limits", "max_subtitle_chars_per_s"),
    "min_subtitle_cues": ("limits", "min_subtitle_cues"), "min_subtitle_chars": ("limits", "min_subtitle_chars"),
    "submit_rate_per_s": ("limits", "submit_rate_per_s"), "submit_burst": ("limits", "submit_burst"),
    "upload_rate_per_s": ("limits", "upload_rate_per_s"), "upload_burst": ("limits", "upload_burst"),
    "rate_limit_backend": ("limits", "rate_limit_backend"),
    "rate_limit_redis_url": ("limits", "rate_limit_redis_url"),
    "api_keys_required": ("security", "api_keys_required"), "webhook_secret": ("security", "webhook_secret"),
    "metrics_require_key": ("security", "metrics_require_key"),
    "webhook_secret_previous": ("security", "webhook_secret_previous"),
    "webhook_retry_schedule": ("webhooks", "retry_schedule"), "webhook_retry_jitter": ("webhooks", "retry_jitter"),
    "webhook_timeout_s": ("webhooks", "timeout_s"),
    "device": ("media", "device"), "nvenc": ("media", "nvenc"), "nvenc_max_sessions": ("media", "nvenc_max_sessions"),
    "font_dir": ("media", "font_dir"), "chromium_path": ("media", "chromium_path"),
    "whisper_model": ("models", "whisper_model"), "align_model": ("models", "align_model"),
    "whisper_models": ("models", "whisper_models"),
    "model_cache_dir": ("models", "model_cache_dir"), "kokoro_voices": ("models", "kokoro_voices"),
    "voice_dirs": ("models", "voice_dirs"),
    "generate_models": ("models", "generate_models"), "generate_vram_gb": ("models", "generate_vram_gb"),
    "generate_cache_gb": ("models", "generate_cache_gb"), "generate_cpu_max_gb": ("models", "generate_cpu_max_gb"),
    "capacity_provider": ("capacity", "provider"),
    "vast_api_key": ("capacity", "vast_api_key"),
    "vast_base_url": ("capacity", "vast_base_url"),
    "capacity_deployment": ("capacity", "deployment"),
    "capacity_queues": ("capacity", "queues"),
    "capacity_in_api": ("capacity", "in_api"),
    "capacity_tick_s": ("capacity", "tick_s"),
    "capacity_reap_every_s": ("capacity", "reap_every_s"),
    "capacity_image": ("capacity", "image"),
    "capacity_disk_gb": ("capacity", "disk_gb"),
    "capacity_runtype": ("capacity", "runtype"),
    "capacity_onstart": ("capacity", "onstart"),
    "capacity_agent_api_url": ("capacity", "agent_api_url"),
    "capacity_max_instances": ("capacity", "max_instances"),
    "capacity_max_instances_per_queue": ("capacity", "max_instances_per_queue"),
    "capacity_max_dph": ("capacity", "max_dph"),
    "capacity_max_day_usd": ("capacity", "max_day_usd"),
    "capacity_max_lifetime_h": ("capacity", "max_lifetime_h"),
    "capacity_idle_minutes": ("capacity", "idle_minutes"),
    "capacity_boot_timeout_s": ("capacity", "boot_timeout_s"),
    "capacity_broken_grace_s": ("capacity", "broken_grace_s"),
    "capacity_jobs_per_instance": ("capacity", "jobs_per_instance"),
    "capacity_slots": ("capacity", "slots"),
    "capacity_destroy_on_stop": ("capacity", "destroy_on_stop"),
    "capacity_gpu_names": ("capacity", "gpu_names"),
    "capacity_min_gpu_ram_gb": ("capacity", "min_gpu_ram_gb"),
    "capacity_max_offer_dph": ("capacity", "max_offer_dph"),
    "capacity_min_reliability": ("capacity", "min_reliability"),
    "capacity_verified_only": ("capacity", "verified_only"),
    "capacity_min_cuda": ("capacity", "min_cuda"),
    "capacity_min_inet_down_mbps": ("capacity", "min_inet_down_mbps"),
    "capacity_geolocations": ("capacity", "geolocations"),
    "idle_shutdown_minutes": ("capacity", "idle_shutdown_minutes"),
    "idle_shutdown_command": ("capacity", "idle_shutdown_command"),
}

# every group field has exactly one flat name (so every setting keeps its old spelling); a new setting goes
# into its group *and* into FLAT_NAMES, or importing this module fails here
_GROUP_FIELDS = {(g, f) for g, cls in GROUPS.items() for f in cls.model_fields}
assert len(set(FLAT_NAMES.values())) == len(FLAT_NAMES) and set(FLAT_NAMES.values()) == _GROUP_FIELDS, \
    f"settings without exactly one flat name: {sorted(_GROUP_FIELDS ^ set(FLAT_NAMES.values()))}"


def _is_group_value(key: str, value: Any) -> bool:
    """`storage="s3"` is the flat backend name; `storage={...}` (or a StorageSettings) is the whole group."""
    return key in GROUPS and (isinstance(value, Mapping | BaseModel) or key not in FLAT_NAMES)


def _group_items(value: Any) -> dict[str, Any]:
    if isinstance(value, BaseModel):  # keep raw values: a dump would star the secrets
        return {name: getattr(value, name) for name in type(value).model_fields}
    return dict(value)


def nest(data: Mapping[str, Any]) -> dict[str, Any]:
    """Flat and grouped spellings -> grouped ({"compute": {"workers": 1}}); other keys are left for validation."""
    out: dict[str, Any] = {}
    flat_given: dict[tuple[str, str], str] = {}
    for key, value in data.items():
        if _is_group_value(key, value):
            group = out.setdefault(key, {})
            for field, v in _group_items(value).items():
                if (key, field) in flat_given:
                    raise ConfigError(f"{key}.{field} is given twice: as {key}.{field} and as {flat_given[key, field]}")
                group[field] = v
        elif key in FLAT_NAMES:
            group_name, field = FLAT_NAMES[key]
            group = out.setdefault(group_name, {})
            if field in group:
                raise ConfigError(f"{group_name}.{field} is given twice: as {group_name}.{field} and as {key}")
            group[field] = value
            flat_given[group_name, field] = key
        else:
            out[key] = value
    return out


def _nearest(name: str, candidates: list[str]) -> str:
    match = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else "; see the settings table in README.md"


def _field_info(group: str, field: str) -> Any:
    return GROUPS[group].model_fields[field]


def _from_text(group: str, field: str, value: str) -> Any:
    """An environment string for a field: "" means unset for optional fields, JSON for list/dict fields."""
    info = _field_info(group, field)
    if value == "" and info.default is None:
        return None
    if get_origin(info.annotation) in (dict, list) or info.annotation in (dict, list):
        # a list may also be written plainly (VOICE_DIRS=/a:/b): its field's validator splits it
        return value if get_origin(info.annotation) is list and not value.lstrip().startswith("[") \
            else json.loads(value)
    return value


def setting_env_names() -> list[str]:
    """Every environment name of a setting: REELFORGE_<FLAT> and REELFORGE_<GROUP>__<FIELD>."""
    return [ENV_PREFIX + n.upper() for n in FLAT_NAMES] + [
        f"{ENV_PREFIX}{g.upper()}__{f.upper()}" for g, cls in GROUPS.items() for f in cls.model_fields]


def _env_to_nested(environ: Mapping[str, str], origin: str) -> dict[str, Any]:
    """REELFORGE_<FLAT> and REELFORGE_<GROUP>__<FIELD> names -> grouped values; unknown names raise."""
    valid = setting_env_names()
    flat: dict[str, Any] = {}
    for name, value in environ.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_ENV_NAMES:
            continue
        key = upper[len(ENV_PREFIX):].lower()
        group, sep, field = key.partition("__")
        if sep and group in GROUPS and field in GROUPS[group].model_fields:
            flat.setdefault(group, {})[field] = _from_text(group, field, value)
        elif not sep and key in FLAT_NAMES:
            flat[key] = _from_text(*FLAT_NAMES[key], value)
        else:
            raise ConfigError(f"unknown setting {name} in {origin}{_nearest(upper, valid)}")
    return nest(flat)


def _toml_to_nested(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    valid = list(FLAT_NAMES) + list(GROUPS) + [f"{g}.{f}" for g, cls in GROUPS.items() for f in cls.model_fields]
    for key, value in data.items():
        if _is_group_value(key, value):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config file {path}: [{key}] must be a table")
            for field in value:
                if field not in GROUPS[key].model_fields:
                    raise ConfigError(f"unknown key {key}.{field} in config file {path}"
                                      f"{_nearest(f'{key}.{field}', valid)}")
        elif key not in FLAT_NAMES:
            raise ConfigError(f"unknown key {key} in config file {path}{_nearest(key, valid)}")
    return nest(data)


def _env_file_values() -> tuple[dict[str, str], str]:
    """REELFORGE_* entries of the .env file (REELFORGE_ENV_FILE names it; default ./.env, optional)."""
    from dotenv import dotenv_values

    named = os.environ.get("REELFORGE_ENV_FILE")
    path = Path(named or ".env").expanduser()
    if not path.is_file():
        if named:
            raise ConfigError(f"REELFORGE_ENV_FILE names {path}, which does not exist")
        return {}, str(path)
    values = dotenv_values(path)
    # other names in the file (e.g. a compose file's POSTGRES_PASSWORD) are not ours to judge
    return {k: v or "" for k, v in values.items() if k.upper().startswith(ENV_PREFIX)}, str(path)


class _Source(PydanticBaseSettingsSource):
    """A settings source from a function returning grouped values."""

    def __init__(self, settings_cls: type[BaseSettings], load: Any) -> None:
        super().__init__(settings_cls)
        self._load = load

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # unused: __call__ is whole
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._load()


class Settings(BaseSettings):
    model_config = SettingsConfigDict(extra="forbid")

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    compute: ComputeSettings = Field(default_factory=ComputeSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    webhooks: WebhookSettings = Field(default_factory=WebhookSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)
    models: ModelSettings = Field(default_factory=ModelSettings)
    capacity: CapacitySettings = Field(default_factory=CapacitySettings)

    if TYPE_CHECKING:  # flat names (FLAT_NAMES) are keyword arguments too; checked at run time, not by mypy
        def __init__(self, **values: Any) -> None: ...

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Each source is grouped before the sources are merged, so a flat name in one source and a grouped
        # name in another meet as the same field and the higher source wins.
        dotenv, env_path = _env_file_values()

        def toml() -> dict[str, Any]:
            named = os.environ.get("REELFORGE_CONFIG") or dotenv.get("REELFORGE_CONFIG")
            if not named:
                return {}
            path = Path(named).expanduser()
            if not path.is_file():
                raise ConfigError(f"REELFORGE_CONFIG names {path}, which does not exist")
            return _toml_to_nested(path)

        return (
            _Source(settings_cls, lambda: nest(init_settings())),
            _Source(settings_cls, lambda: _env_to_nested(os.environ, "the environment")),
            _Source(settings_cls, lambda: _env_to_nested(dotenv, env_path)),
            _Source(settings_cls, toml),
        )

    @model_validator(mode="before")
    @classmethod
    def _grouped(cls, data: Any) -> Any:
        return nest(data) if isinstance(data, Mapping) else data

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        svc = self.service
        svc.data_dir = svc.data_dir.expanduser().resolve()
        if not svc.database_url.get_secret_value():
            svc.database_url = SecretStr(f"sqlite:///{svc.data_dir / 'reelforge.db'}")
        if self.models.model_cache_dir is None:
            self.models.model_cache_dir = svc.data_dir / "models"
        if not svc.public_url:
            shown = "127.0.0.1" if svc.host in ("0.0.0.0", "::") else svc.host
            svc.public_url = f"http://{shown}:{svc.port}"
        svc.public_url = svc.public_url.rstrip("/")
        if self.storage.backend == "s3" and not self.storage.s3_bucket:
            raise ValueError("REELFORGE_S3_BUCKET is required when REELFORGE_STORAGE=s3")
        return self

    # --- copies and dumps
    def replace(self, **changes: Any) -> Settings:
        """A validated copy with some settings changed; flat (`workers=1`) or grouped (`compute={...}`) names."""
        data: dict[str, Any] = {name: _group_items(getattr(self, name)) for name in GROUPS}
        for group, values in nest(changes).items():
            if group in GROUPS:
                data[group].update(_group_items(values))
            else:
                data[group] = values
        return type(self).model_validate(data)  # validates only `data`: no environment or files are read

    def handover_dict(self) -> dict[str, Any]:
        """JSON-able settings *with* secrets, only for a child process of this one (see from_handover)."""
        return self.model_dump(mode="json", context={REVEAL_SECRETS: True})

    @classmethod
    def from_handover(cls, data: Mapping[str, Any]) -> Settings:
        """Rebuild the parent's settings exactly (the child reads no environment or files of its own)."""
        return cls.model_validate(dict(data))

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to show: secrets starred, passwords in URLs starred."""
        return self.model_dump(mode="json")

    # --- derived places
    @property
    def storage_dir(self) -> Path:
        return self.service.data_dir / "storage"

    @property
    def work_dir(self) -> Path:
        return self.service.data_dir / "work"

    @property
    def is_loopback(self) -> bool:
        return self.service.host in LOOPBACK_HOSTS

    @property
    def keys_required(self) -> bool:
        required = self.security.api_keys_required
        return (not self.is_loopback) if required is None else required

    @property
    def metrics_key_required(self) -> bool:
        required = self.security.metrics_require_key
        return self.keys_required if required is None else required

    def ensure_dirs(self) -> None:
        for d in (self.service.data_dir, self.storage_dir, self.work_dir):
            d.mkdir(parents=True, exist_ok=True)

    def resolved_webhook_secret(self) -> str:
        if secret := self.security.webhook_secret.get_secret_value():
            return secret
        path = self.service.data_dir / "webhook_secret"
        if not path.exists():
            import base64
            import secrets

            self.service.data_dir.mkdir(parents=True, exist_ok=True)
            # the Standard Webhooks form: whsec_ + base64 of 32 random bytes (the signing key)
            path.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
            path.chmod(0o600)
        return path.read_text().strip()


# settings live in groups only (the environment, .env and TOML sources know group fields and FLAT_NAMES)
assert set(Settings.model_fields) == set(GROUPS), \
    f"settings outside a group: {sorted(set(Settings.model_fields) - set(GROUPS))}; add them to a group and FLAT_NAMES"
