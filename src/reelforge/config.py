"""Settings: built once from REELFORGE_* environment variables and an optional TOML file, then passed down.

Nothing here opens a database or touches the network; `Settings()` is cheap and side-effect free.
The TOML file is named by REELFORGE_CONFIG (keys are the field names, lower case).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
QUEUE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,16}$")  # jobs.queue is a String(16)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="REELFORGE_", extra="ignore")

    # --- service
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: Path = Path("data")
    database_url: str = ""  # default: sqlite under data_dir
    access_log: bool = True  # uvicorn's per-request log line
    public_url: str = ""  # base URL clients use to reach the API (for local file URLs); default from host/port

    # --- execution
    executor: Literal["local", "celery"] = "local"
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    broker_url: str = "redis://127.0.0.1:6379/0"
    worker_queues: str = "cpu,gpu"  # queues a `reelforge worker` consumes by default
    # op -> queue overrides, e.g. {"overlay.engine=rvm": "gpu-24g", "build": "gpu"} (reelforge.engine.routing);
    # ops not named go to "gpu" when they prefer a GPU, else "cpu"
    op_routes: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = Field(default=3, ge=1)
    lease_ttl_s: float = Field(default=20.0, gt=1)
    heartbeat_s: float = Field(default=2.0, gt=0)
    max_timeout_s: float = Field(default=6 * 3600.0, gt=0)
    threads_per_job: int = Field(default=2, ge=1)  # bounds BLAS/ONNX/CT2 threads inside a job
    # pipeline step cache (data_dir/cache/steps): least recently used results are removed beyond this size
    # or age; checked after a result is stored, at most once a minute per process
    step_cache_max_gb: float = Field(default=20.0, ge=0)
    step_cache_max_age_days: float = Field(default=14.0, gt=0)

    # --- storage
    storage: Literal["local", "s3"] = "local"
    s3_endpoint_url: str = ""
    s3_bucket: str = ""
    s3_prefix: str = "reelforge/"
    s3_region: str = "us-east-1"
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""
    s3_presign_expiry_s: int = Field(default=86400, ge=60)
    s3_public_base_url: str = ""  # e.g. a CDN or R2 public domain; outputs then get plain URLs

    # --- limits on untrusted input
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
    # burned subtitles: cues and characters of event text allowed per second of video, with a floor for
    # short clips (libass work grows with both; a normal subtitle is ~0.5 cues and ~20 characters a second)
    max_subtitle_cues_per_s: float = 20.0
    max_subtitle_chars_per_s: float = 2000.0
    min_subtitle_cues: int = 1000
    min_subtitle_chars: int = 100_000

    # --- security
    api_keys_required: bool | None = None  # None: required unless bound to loopback
    metrics_require_key: bool | None = None  # None: /metrics needs a key exactly when API keys are required
    webhook_secret: str = ""  # default: generated once into data_dir/webhook_secret

    # --- media / models
    device: Literal["auto", "cpu", "cuda"] = "auto"
    nvenc: Literal["auto", "off"] = "auto"
    nvenc_max_sessions: int = Field(default=3, ge=1)
    whisper_model: str = "packaged:base"  # packaged:base | packaged:tiny.en | a local CTranslate2 folder
    # whisper model for word timings of a known script (tts, align, build): "auto" = packaged:tiny.en for
    # English (the words are known, only their times are needed: 2x faster than base), else whisper_model
    align_model: str = "auto"
    model_cache_dir: Path | None = None  # default data_dir/models
    font_dir: Path | None = None  # fonts for captions/text (default: DejaVu from fonts-dejavu-core)
    kokoro_voices: Path | None = None  # a Kokoro voices file (e.g. voices-v1.0.bin) for the kokoro engine
    plugins: str = ""  # comma-separated modules with extra @operation()s, imported by API and job hosts

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("REELFORGE_CONFIG")
        if config_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config_file))
        return tuple(sources)

    @field_validator("op_routes")
    @classmethod
    def _queue_names(cls, routes: dict[str, str]) -> dict[str, str]:
        bad = [q for q in routes.values() if not QUEUE_NAME_RE.match(q)]
        if bad:
            raise ValueError(f"op_routes: queue names are 1-16 letters, digits, '.', '_' or '-'; got {bad[0]!r}")
        return routes

    @model_validator(mode="after")
    def _fill_defaults(self) -> Settings:
        self.data_dir = self.data_dir.expanduser().resolve()
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'reelforge.db'}"
        if self.model_cache_dir is None:
            self.model_cache_dir = self.data_dir / "models"
        if not self.public_url:
            shown = "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host
            self.public_url = f"http://{shown}:{self.port}"
        self.public_url = self.public_url.rstrip("/")
        if self.storage == "s3" and not self.s3_bucket:
            raise ValueError("REELFORGE_S3_BUCKET is required when REELFORGE_STORAGE=s3")
        return self

    # --- derived places
    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "storage"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @property
    def keys_required(self) -> bool:
        return (not self.is_loopback) if self.api_keys_required is None else self.api_keys_required

    @property
    def metrics_key_required(self) -> bool:
        return self.keys_required if self.metrics_require_key is None else self.metrics_require_key

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.storage_dir, self.work_dir):
            d.mkdir(parents=True, exist_ok=True)

    def resolved_webhook_secret(self) -> str:
        if self.webhook_secret:
            return self.webhook_secret
        path = self.data_dir / "webhook_secret"
        if not path.exists():
            import secrets

            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(secrets.token_hex(32))
            path.chmod(0o600)
        return path.read_text().strip()

    def public_dict(self) -> dict[str, Any]:
        """Settings safe to show (no secrets)."""
        hidden = {"s3_secret_access_key", "webhook_secret", "database_url", "broker_url"}
        return {k: v for k, v in self.model_dump(mode="json").items() if k not in hidden}
