"""A batch's values, merged from layers with one priority, each value remembering which layer set it.

    default < preset < config file < remote config < env/.env < flags (the request itself)

- default: built-in values (DEFAULTS below), and `params.input = "{input}"` when no other layer's params
  name the `{input}` placeholder;
- preset: the preset named by the highest layer that names one (stored by the service, jobs/store_batches.py);
- config file: what `reelforge batch run SPEC` read from SPEC (TOML or JSON);
- remote config: the URL or `s3://bucket/key` named by the highest layer's `remote_config`, fetched by the
  service (http(s) through the URL guard, s3 through the batch's or the service's bucket), JSON or TOML;
- env: REELFORGE_BATCH_<NAME> from the CLI's environment and .env (ENV_NAMES);
- flags: the CLI's flags, or the top-level fields of POST /v1/batches.

`params` merge key by key (a higher layer changes one param and keeps the others); every other value is
taken whole from the highest layer that gives it. `explain` maps each value (`op`, `params.crf`, ...) to the
layer that set it, e.g. "remote config https://cfg.example/batch.json". Secrets (`s3_secret_access_key`) are
never shown. Every layer is checked on its own, so an unknown or ill-typed value names its layer.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from reelforge.config import OTHER_ENV_NAMES
from reelforge.errors import InvalidParams, validation_details

PRESET_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
SECRET_KEYS = frozenset({"s3_secret_access_key"})
CREDENTIAL_KEYS = ("s3_endpoint_url", "s3_access_key_id", "s3_secret_access_key", "s3_region")


def _not_a_number(value: Any) -> Any:
    # pydantic would take 0 as 1970-01-01; the OpenAPI says a date-time string, so a number is refused
    if isinstance(value, int | float):
        raise ValueError("a date-time string (RFC 3339, e.g. 2026-01-31T00:00:00Z), not a number")
    return value


DateTimeText = Annotated[datetime, BeforeValidator(_not_a_number)]


class BatchValues(BaseModel):
    """What any layer may set (all optional; unknown names are refused with the layer named)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, max_length=200, description="A label for the batch")
    op: str | None = Field(default=None, max_length=64, description="The operation every item runs")
    params: dict[str, Any] | None = Field(default=None, description="Op params; strings may use placeholders")
    preset: str | None = Field(default=None, pattern=PRESET_NAME, description="A stored preset's name")
    # sources (one of prefix, inputs, manifest/manifest_key)
    prefix: str | None = Field(default=None, max_length=1100, description="s3://bucket/prefix: every object under it")
    inputs: list[str] | None = Field(default=None, description="A list of URLs / file ids / s3:// keys")
    manifest: str | None = Field(default=None, description="CSV or JSON lines: one item a row (column `input`)")
    manifest_key: str | None = Field(default=None, description="s3://bucket/key of a manifest")
    manifest_format: Literal["csv", "jsonl"] | None = None
    # filters of a prefix listing
    glob: str | None = Field(default=None, max_length=500, description="fnmatch pattern on the key under the prefix")
    extensions: list[str] | None = Field(default=None, description="e.g. [\".mp4\", \".mov\"]")
    min_size: int | None = Field(default=None, ge=0)
    max_size: int | None = Field(default=None, ge=0)
    modified_after: DateTimeText | None = None
    modified_before: DateTimeText | None = None
    # the source's own bucket credentials (default: the service's storage)
    s3_endpoint_url: str | None = Field(default=None, max_length=500)
    s3_access_key_id: str | None = Field(default=None, max_length=200)
    s3_secret_access_key: str | None = Field(default=None, max_length=500)
    s3_region: str | None = Field(default=None, max_length=64)
    # outputs
    destination: str | None = Field(default=None, max_length=1000,
                                    description="s3://bucket/prefix (or a key prefix in the service's storage)")
    filename: str | None = Field(default=None, max_length=500, description="Output key pattern under destination")
    # control
    max_concurrent: int | None = Field(default=None, ge=1, le=100_000)
    max_retries: int | None = Field(default=None, ge=0, le=10)
    priority: int | None = Field(default=None, ge=-10, le=10)
    timeout_s: float | None = Field(default=None, gt=0)
    webhook_url: str | None = Field(default=None, max_length=2000)
    item_webhooks: bool | None = None
    remote_config: str | None = Field(default=None, max_length=2000, description="URL or s3://bucket/key")


KEYS = tuple(BatchValues.model_fields)
LIST_KEYS = frozenset({"inputs", "extensions"})
DEFAULTS: dict[str, Any] = {"filename": "{stem}.{output}{out_ext}", "max_concurrent": 4, "max_retries": 1,
                            "priority": 0, "item_webhooks": False, "s3_region": "us-east-1"}
# REELFORGE_BATCH_<KEY> for every value but the inline manifest; params as a JSON object, lists comma-separated
ENV_NAMES: dict[str, str] = {f"REELFORGE_BATCH_{k.upper()}": k for k in KEYS if k != "manifest"}
# the settings loader must not take them for unknown settings
assert set(ENV_NAMES) <= OTHER_ENV_NAMES, sorted(set(ENV_NAMES) - OTHER_ENV_NAMES)


@dataclass(frozen=True)
class Layer:
    rank: str  # default | preset | file | remote | env | flags
    label: str  # what --explain prints, e.g. "config file batch.toml"
    values: dict[str, Any]


RANKS = ("default", "preset", "file", "remote", "env", "flags")


def env_values(environ: Mapping[str, str]) -> dict[str, Any]:
    """The REELFORGE_BATCH_* names of an environment as layer values (params decoded from JSON)."""
    out: dict[str, Any] = {}
    for name, key in ENV_NAMES.items():
        if name not in environ or environ[name] == "":
            continue
        raw = environ[name]
        if key == "params":
            try:
                out[key] = json.loads(raw)
            except ValueError:
                raise InvalidParams(f"{name} must be a JSON object.", code="invalid_config") from None
        elif key in LIST_KEYS:
            out[key] = [p.strip() for p in raw.split(",") if p.strip()]
        else:
            out[key] = raw
    return out


def check_layer(layer: Layer) -> dict[str, Any]:
    """The layer's values, validated on their own (types coerced); errors name the layer."""
    try:
        model = BatchValues.model_validate(layer.values)
    except ValidationError as exc:
        details = validation_details(exc)
        first = details[0] if details else {"path": "", "message": "invalid"}
        raise InvalidParams(f"The {layer.label} layer is invalid at {first['path']}: {first['message']}.",
                            code="invalid_config", details=[{**d, "layer": layer.label} for d in details]) from None
    return model.model_dump(mode="json", exclude_unset=True, exclude_none=True)


def parse_config_text(text: str, label: str) -> dict[str, Any]:
    """A config document (JSON object or TOML table); ValueError with what is wrong."""
    stripped = text.lstrip()
    try:
        data = json.loads(text) if stripped.startswith("{") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{label} is neither a JSON object nor TOML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{label} must be a JSON object or a TOML table")
    return data


@dataclass
class Merged:
    values: dict[str, Any]
    explain: dict[str, str]
    layers: list[str] = field(default_factory=list)

    def shown(self) -> dict[str, Any]:
        """The values with secrets starred (what the API returns and the batch row keeps as `config`)."""
        return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in self.values.items()}


def _names_input(value: Any) -> bool:
    if isinstance(value, str):
        return "{input}" in value
    if isinstance(value, dict):
        return any(_names_input(v) for v in value.values())
    if isinstance(value, list):
        return any(_names_input(v) for v in value)
    return False


def merge(layers: list[Layer]) -> Merged:
    """Merge checked layers (any order given; merged by rank, then in the order given)."""
    ordered = sorted(layers, key=lambda layer: RANKS.index(layer.rank))
    values: dict[str, Any] = {}
    explain: dict[str, str] = {}
    params: dict[str, Any] = {}
    for layer in [Layer("default", "default", dict(DEFAULTS)), *ordered]:
        for key, value in layer.values.items():
            if key == "params":
                for pk, pv in value.items():
                    params[pk] = pv
                    explain[f"params.{pk}"] = layer.label
            else:
                values[key] = value
                explain[key] = layer.label
    if not _names_input(params) and "input" not in params:
        params["input"] = "{input}"
        explain["params.input"] = "default"
    values["params"] = params
    return Merged(values, dict(sorted(explain.items())), [layer.label for layer in ordered])


def resolve(given: list[Layer], *, fetch_remote: Callable[[str, dict[str, Any]], dict[str, Any]],
            load_preset: Callable[[str], dict[str, Any]]) -> Merged:
    """The whole merge: check the given layers, add the remote config and the preset, merge.

    `fetch_remote(ref, values_so_far)` returns the remote document's values (raises InvalidParams with the
    layer named); `load_preset(name)` returns a stored preset's values (raises NotFound).
    """
    checked = [Layer(layer.rank, layer.label, check_layer(layer)) for layer in given]
    so_far = merge(checked).values
    ref = so_far.get("remote_config")
    if ref:
        label = f"remote config {ref}"
        raw = fetch_remote(ref, so_far)
        if "remote_config" in raw:
            raise InvalidParams(f"The {label} layer may not name another remote_config.", code="invalid_config")
        checked.append(Layer("remote", label, check_layer(Layer("remote", label, raw))))
        so_far = merge(checked).values
    name = so_far.get("preset")
    if name:
        label = f"preset {name}"
        raw = load_preset(name)
        checked.append(Layer("preset", label, check_layer(Layer("preset", label, raw))))
    return merge(checked)


def check_preset_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A preset's stored values: batch values, without a preset or remote_config of their own."""
    for key in ("preset", "remote_config"):
        if key in values:
            raise InvalidParams(f"A preset may not set {key}.", code="invalid_preset")
    return check_layer(Layer("preset", "preset", dict(values)))
