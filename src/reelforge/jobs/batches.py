"""Batch runs: one job per object under a bucket prefix, per reference of a list, or per manifest row.

    create   layers merged (jobs/batch_config.py: default < preset < config file < remote config < env <
             flags), the source listed (storage/bucket.py) and filtered, each item's params rendered from
             the template (jobs/batch_items.py) and validated by JobService.prepare — every item before
             anything is written: one bad item is a 422 naming it (row number for manifests), and nothing
             is created. Then the batch and all its item rows in one transaction. Items that succeeded in an
             earlier batch of the same tenant with the same fingerprint (op, template, source, filters,
             destination) and the same (source object, etag, size) are `skipped`: a re-run does only what
             is left. A dry run stops before the write and shows the items and the jobs they would be.
    feed     BatchFeeder, one thread in the API process: for each active batch, every tick, look at the
             jobs of its submitted items (one query), copy a succeeded job's outputs to the destination
             pattern, put a failed item back while it has retries left, and submit pending items through
             JobService.submit — the one submit path — until `max_concurrent` are queued or running. A
             job's idempotency key is `<batch>:<item>:<try>`, so a service killed between inserting a job
             and marking its item submits nothing twice: on restart the same key finds the same job.
    end      when no item is pending or in flight: results.json and results.csv written to storage (and
             next to the outputs when there is a destination), the batch's webhook sent (batch.succeeded,
             batch.failed when any item failed, batch.cancelled), through the webhook outbox.
    control  pause (no new submissions; running jobs finish), resume, cancel (pending items cancelled,
             running jobs asked to stop through JobService.cancel).

Batches left active by a stopped service are picked up by the next one's feeder: nothing else is needed.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import logging
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, Strict, create_model

from reelforge.config import Settings
from reelforge.errors import Conflict, InvalidParams, NotFound, ReelForgeError, UserError
from reelforge.jobs.batch_config import (
    CREDENTIAL_KEYS,
    PRESET_NAME,
    BatchValues,
    Layer,
    Merged,
    check_preset_values,
    parse_config_text,
    resolve,
)
from reelforge.jobs.batch_items import (
    Filters,
    Item,
    TemplateError,
    from_listing,
    from_manifest,
    from_refs,
    render,
    render_tree,
)
from reelforge.jobs.capacity import batch_estimate
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store_batches import ACTIVE_BATCH, BatchesStore, BatchRecord, InFlight, ItemRecord, new_batch_id
from reelforge.ops.registry import get_operation
from reelforge.refs import is_file_id
from reelforge.storage.base import Storage, validate_key
from reelforge.storage.bucket import Bucket, SourceError, split_s3_url
from reelforge.storage.delivery import delivery_key
from reelforge.storage.fetch import UrlFetcher
from reelforge.storage.urlguard import check_resolved_host

if TYPE_CHECKING:
    from reelforge.jobs.store import Stores
    from reelforge.jobs.webhooks import WebhookSender

log = logging.getLogger("reelforge.batches")

MAX_CONFIG_BYTES = 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
PRESIGN_S = 7 * 24 * 3600  # the longest a SigV4 presigned URL lives
SHOWN_ITEMS = 1000  # items listed in a dry run's answer
FINGERPRINT_KEYS = ("op", "params", "prefix", "inputs", "manifest", "manifest_key", "manifest_format", "glob",
                    "extensions", "min_size", "max_size", "modified_after", "modified_before", "destination",
                    "filename")
TERMINAL_BATCH = ("succeeded", "failed", "cancelled")
BATCH_LIST_LIMIT = 200
RESULT_COLUMNS = ("index", "source", "etag", "size", "row", "status", "job_id", "outputs", "error_code", "error",
                  "seconds", "cost")


class GivenLayer(BaseModel):
    """A lower layer the client read (the CLI's config file and environment)."""

    model_config = ConfigDict(extra="forbid")

    rank: Literal["file", "env"]
    label: str = Field(min_length=1, max_length=300, description='What --explain shows, e.g. "config file b.toml"')
    values: dict[str, Any] = Field(default_factory=dict)


class BatchCreate(BatchValues):
    """POST /v1/batches: the top-level values are the `flags` layer (the highest); `layers` the lower ones."""

    layers: list[GivenLayer] = Field(default_factory=list, max_length=8)
    dry_run: bool = Field(default=False, description="List the items and jobs; create nothing")


# what a preset may hold: any batch value but another preset or a remote config (so the OpenAPI says exactly
# what PUT /v1/presets/{name} accepts)
def _strict_scalars(annotation: Any) -> Any:
    # JSON 0/1 are not booleans and "5" is no number here: the document says boolean / integer / number
    scalars = {bool, int, float}
    return Annotated[annotation, Strict()] if set(get_args(annotation)) & scalars or annotation in scalars \
        else annotation


_PRESET_FIELDS: dict[str, Any] = {k: (_strict_scalars(f.annotation), f) for k, f in BatchValues.model_fields.items()
                                   if k not in ("preset", "remote_config")}
PresetValues: type[BaseModel] = create_model("PresetValues", __config__=ConfigDict(extra="forbid"),
                                             **_PRESET_FIELDS)


class PresetBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    values: PresetValues = Field(description="Batch values (op, params, max_concurrent, ...)")

    def stored(self) -> dict[str, Any]:
        return dict(self.values.model_dump(mode="json", exclude_unset=True))


@dataclass
class PlannedItem:
    item: Item
    params: dict[str, Any]
    queue: str
    skip: ItemRecord | None = None


@dataclass
class Plan:
    merged: Merged
    fingerprint: str
    items: list[PlannedItem]
    secrets: dict[str, Any] | None
    timings: dict[str, float] = field(default_factory=dict)


def _item_error(planned_index: int, item: Item, path: str, message: str, code: str) -> dict[str, Any]:
    out: dict[str, Any] = {"index": planned_index, "source": item.source, "path": path, "message": message,
                           "code": code}
    if item.row is not None:
        out["row"] = item.row
    return out


def _secrets(values: dict[str, Any]) -> dict[str, Any] | None:
    if not values.get("s3_access_key_id"):
        return None
    return {k: values.get(k) or "" for k in CREDENTIAL_KEYS}


class BatchService:
    def __init__(self, settings: Settings, stores: Stores, *, storage: Storage, jobs: JobService,
                 webhooks: WebhookSender | None) -> None:
        self.settings = settings
        self.stores = stores
        self.store: BatchesStore = stores.batches
        self.storage = storage
        self.jobs = jobs
        self.webhooks = webhooks
        self.feeder: BatchFeeder | None = None

    # ---- buckets
    def bucket(self, bucket: str, secrets: dict[str, Any] | None) -> Bucket:
        """The batch's own bucket client (own credentials) or the service's storage."""
        if secrets:
            return Bucket.connect(bucket, endpoint_url=secrets.get("s3_endpoint_url") or "",
                                  access_key_id=secrets.get("s3_access_key_id") or "",
                                  secret_access_key=secrets.get("s3_secret_access_key") or "",
                                  region=secrets.get("s3_region") or "us-east-1",
                                  allow_private=self.settings.limits.fetch_allow_private)
        return Bucket.of_storage(self.storage, bucket)

    # ---- layers
    def _fetch_remote(self, ref: str, so_far: dict[str, Any]) -> dict[str, Any]:
        label = f"remote config {ref}"
        try:
            if ref.startswith("s3://"):
                try:
                    bucket, key = split_s3_url(ref)
                except ValueError as exc:
                    raise InvalidParams(f"{ref!r} {exc}.") from None
                data = self.bucket(bucket, _secrets(so_far)).read_bytes(key, MAX_CONFIG_BYTES)
            elif ref.startswith(("http://", "https://")):
                data = self._fetch_url(ref)
            else:
                raise InvalidParams("it must be an http(s) URL or s3://bucket/key")
        except UserError as exc:
            raise InvalidParams(f"The {label} layer could not be read: {exc.message.rstrip('.')}.",
                                code="remote_config_unavailable",
                                details=[{"layer": label, "code": exc.code, "message": exc.message}]) from None
        try:
            return parse_config_text(data.decode("utf-8"), f"The {label} layer")
        except UnicodeDecodeError:
            raise InvalidParams(f"The {label} layer is not UTF-8 text.", code="remote_config_invalid") from None
        except ValueError as exc:
            raise InvalidParams(f"{exc}.", code="remote_config_invalid", details=[{"layer": label}]) from None

    def _fetch_url(self, url: str) -> bytes:
        limits = self.settings.limits
        fetcher = UrlFetcher(max_bytes=MAX_CONFIG_BYTES, timeout_s=min(limits.fetch_timeout_s, 30.0),
                             guard=partial(check_resolved_host, allow_private=limits.fetch_allow_private))
        with tempfile.TemporaryDirectory(prefix="rf-remote-config-") as tmp:
            return fetcher.fetch(url, Path(tmp)).read_bytes()

    def _preset_values(self, tenant: str, name: str) -> dict[str, Any]:
        preset = self.store.get_preset(tenant, name)
        if preset is None:
            raise NotFound(f"No preset {name!r}; create it with `reelforge presets add {name} --from FILE`.",
                           code="preset_not_found")
        return dict(preset["values"])

    # ---- plan (everything before a write)
    def plan(self, tenant: str, body: BatchCreate) -> Plan:
        t0 = time.perf_counter()
        flags = body.model_dump(mode="json", exclude_unset=True, exclude_none=True, exclude={"layers", "dry_run"})
        layers = [Layer(g.rank, g.label, g.values) for g in body.layers] + [Layer("flags", "flags", flags)]
        merged = resolve(layers, fetch_remote=self._fetch_remote,
                         load_preset=partial(self._preset_values, tenant))
        v = merged.values
        if not v.get("op"):
            raise InvalidParams("No op: give one (--op, `op` in the config, or a preset that sets it).",
                                code="invalid_config")
        op = get_operation(v["op"])
        if merged.explain.get("params.input") == "default" and "input" not in op.params_model.model_fields:
            del v["params"]["input"], merged.explain["params.input"]  # an op that reads no `input`
        secrets = _secrets(v)
        t_layers = time.perf_counter()
        items = self._list_items(v, secrets)
        cap = self.settings.limits.max_batch_items
        if len(items) > cap:
            raise InvalidParams(f"The batch has {len(items)} items; at most {cap} (limits.max_batch_items).",
                                code="batch_too_large")
        t_list = time.perf_counter()
        self._destination(tenant, v, secrets)
        planned = self._validate(tenant, v, op.name, items)
        fingerprint = hashlib.sha256(json.dumps({k: v.get(k) for k in FINGERPRINT_KEYS}, sort_keys=True,
                                                default=str).encode()).hexdigest()
        done = self.store.succeeded_items(tenant, fingerprint)
        for p in planned:
            p.skip = done.get((p.item.source, p.item.etag, p.item.size))
        t_end = time.perf_counter()
        return Plan(merged, fingerprint, planned, secrets, {"layers_s": t_layers - t0, "listing_s": t_list - t_layers,
                                                             "validation_s": t_end - t_list})

    def _list_items(self, v: dict[str, Any], secrets: dict[str, Any] | None) -> list[Item]:
        given = [k for k in ("prefix", "inputs", "manifest", "manifest_key") if v.get(k)]
        if not given:
            raise InvalidParams("No source: give a prefix (s3://bucket/prefix), inputs, or a manifest.",
                                code="source_missing")
        if len(given) > 1:
            raise InvalidParams(f"Give one source, not {' and '.join(given)}.", code="source_ambiguous")
        kind = given[0]
        if kind == "prefix":
            try:
                bucket, prefix = split_s3_url(v["prefix"])
            except ValueError as exc:
                raise InvalidParams(f"prefix {v['prefix']!r} {exc}.", code="source_invalid") from None
            objects = list(self.bucket(bucket, secrets).list(prefix))
            items = from_listing(bucket, prefix, objects, Filters.of(v))
            if not items:
                left_out = f" ({len(objects)} left out by the filters)" if objects else ""
                raise SourceError(f"No objects under {v['prefix']}{left_out}: the batch would be empty.",
                                  code="source_empty")
            return items
        if kind == "inputs":
            items = from_refs(v["inputs"])
        else:
            text = v["manifest"] if kind == "manifest" else self._read_manifest(v["manifest_key"], secrets)
            items = from_manifest(text, v.get("manifest_format"))
        if not items:
            raise SourceError("The batch's list of inputs is empty.", code="source_empty")
        return items

    def _read_manifest(self, ref: str, secrets: dict[str, Any] | None) -> str:
        if is_file_id(ref):
            raise InvalidParams("manifest_key takes s3://bucket/key; send an uploaded manifest's text as `manifest`.",
                                code="source_invalid")
        try:
            bucket, key = split_s3_url(ref)
        except ValueError as exc:
            raise InvalidParams(f"manifest_key {ref!r} {exc}.", code="source_invalid") from None
        try:
            return self.bucket(bucket, secrets).read_bytes(key, MAX_MANIFEST_BYTES).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidParams(f"The manifest {ref} is not UTF-8 text.", code="manifest_invalid") from None

    def _destination(self, tenant: str, v: dict[str, Any], secrets: dict[str, Any] | None) -> None:
        dest = v.get("destination")
        if not dest:
            return
        if dest.startswith("s3://"):
            try:
                bucket, prefix = split_s3_url(dest)
            except ValueError as exc:
                raise InvalidParams(f"destination {dest!r} {exc}.", code="destination_invalid") from None
            self.bucket(bucket, secrets).check_writable(prefix.rstrip("/") + "/")
        else:
            try:  # a folder of the tenant's delivery root (storage/delivery.py), never the service's own
                self.local_key(tenant, dest, "x")
            except ValueError as exc:
                raise InvalidParams(f"destination {dest!r}: {exc}.", code="destination_invalid") from None

    def _validate(self, tenant: str, v: dict[str, Any], op: str, items: list[Item]) -> list[PlannedItem]:
        """Every item's job through JobService.prepare (params, webhook, timeout) and its output key pattern;
        all errors are collected, then refused together."""
        errors: list[dict[str, Any]] = []
        planned: list[PlannedItem] = []
        template = v.get("params") or {}
        webhook = v.get("webhook_url") if v.get("item_webhooks") else None
        if v.get("webhook_url"):  # the batch's own webhook: checked even when items have none
            self.jobs.prepare(tenant, JobCreate(op="probe", params={"input": "https://example.com/x.mp4"},
                                                webhook_url=v["webhook_url"]))
        pattern = v.get("filename") or ""
        dest = (v.get("destination") or "").rstrip("/")
        file_ids: list[str] = []
        for index, item in enumerate(items):
            item.vars = {**item.vars, "index": index, "input": item.source}
            try:
                params = render_tree({**template, **render_tree(item.params, item.vars)}, item.vars)
                if dest:
                    name = render(pattern, {**item.vars, "output": "output", "out_ext": ".ext"})
                    if dest.startswith("s3://"):
                        validate_key(f"{dest.partition('://')[2].partition('/')[2]}/{name}".lstrip("/"))
                    else:
                        self.local_key(tenant, dest, name)
            except TemplateError as exc:
                errors.append(_item_error(index, item, "template", str(exc), "template_invalid"))
                continue
            except ValueError as exc:
                errors.append(_item_error(index, item, "filename", f"output key: {exc}", "destination_invalid"))
                continue
            try:
                prepared = self.jobs.prepare(tenant, JobCreate(op=op, params=params, webhook_url=webhook,
                                                               priority=v.get("priority", 0),
                                                               timeout_s=v.get("timeout_s")))
            except ReelForgeError as exc:
                paths = exc.details if isinstance(exc.details, list) and exc.details else [{"path": "", "message":
                                                                                           exc.message}]
                for d in paths[:3]:
                    errors.append(_item_error(index, item, str(d.get("path", "")), str(d.get("message", "")),
                                              exc.code))
                continue
            file_ids.extend(prepared.file_ids)
            planned.append(PlannedItem(item, prepared.values["params"], prepared.values["queue"]))
        if file_ids and not errors:
            try:
                self.jobs.check_files(tenant, list(dict.fromkeys(file_ids)))
            except UserError as exc:
                errors.append({"index": None, "source": None, "path": "input", "message": exc.message,
                               "code": exc.code})
        if errors:
            first = errors[0]
            where = f"item {first['index']}" + (f" (row {first['row']})" if "row" in first else "")
            bad = len({e["index"] for e in errors})
            raise InvalidParams(f"{bad} of {len(items)} items fail validation; nothing was created. First: {where}: "
                                f"{first['path']}: {first['message']}.", code="batch_items_invalid",
                                details=errors[:200])
        return planned

    def local_key(self, tenant: str, dest: str, name: str) -> str:
        """A destination in the service's own storage: under the tenant's delivery root (ValueError if not)."""
        return delivery_key(self.settings.storage.delivery_root, tenant, f"{dest.strip('/')}/{name}")

    # ---- create / read
    def create(self, tenant: str, body: BatchCreate) -> dict[str, Any]:
        plan = self.plan(tenant, body)
        if body.dry_run:
            return self._dry_run_view(plan)
        now = time.time()
        batch_id = new_batch_id()
        values = {"id": batch_id, "tenant": tenant, "name": plan.merged.values.get("name"), "status": "running",
                  "fingerprint": plan.fingerprint, "config": plan.merged.shown(),
                  "explain": {"values": plan.merged.explain, "layers": plan.merged.layers},
                  "secrets": plan.secrets, "total": len(plan.items), "results": None, "created_at": now,
                  "updated_at": now, "started_at": now, "finished_at": None}
        rows = []
        for index, p in enumerate(plan.items):
            skip = p.skip
            rows.append({"batch_id": batch_id, "idx": index, "source": p.item.source, "etag": p.item.etag,
                         "size": p.item.size, "row": p.item.row, "vars": p.item.vars, "params": p.params,
                         "status": "skipped" if skip else "pending", "tries": 0,
                         "job_id": skip.job_id if skip else None, "outputs": skip.outputs if skip else None,
                         "error": None, "seconds": skip.seconds if skip else None,
                         "finished_at": now if skip else None})
        rec = self.store.create_batch(values, rows)
        if self.feeder is not None:
            self.feeder.wake()
        return self.view(rec)

    def _dry_run_view(self, plan: Plan) -> dict[str, Any]:
        op = plan.merged.values["op"]
        shown = [{"index": i, "source": p.item.source, "etag": p.item.etag, "size": p.item.size, "row": p.item.row,
                  "skip": p.skip is not None,
                  "job": None if p.skip else {"op": op, "params": p.params, "queue": p.queue}}
                 for i, p in enumerate(plan.items[:SHOWN_ITEMS])]
        skipped = sum(1 for p in plan.items if p.skip is not None)
        by_queue: dict[str, int] = {}
        for p in plan.items:
            if p.skip is None:
                by_queue[p.queue] = by_queue.get(p.queue, 0) + 1
        capacity = batch_estimate(self.settings, op, by_queue)
        return {"dry_run": True, **({"capacity": capacity} if capacity else {}), "config": plan.merged.shown(),
                "explain": plan.merged.explain,
                "layers": plan.merged.layers, "total": len(plan.items), "skipped": skipped,
                "jobs": len(plan.items) - skipped, "items": shown, "truncated": len(plan.items) > SHOWN_ITEMS}

    def get(self, tenant: str | None, batch_id: str) -> BatchRecord:
        rec = self.store.get_batch(batch_id, tenant)
        if rec is None:
            raise NotFound(f"No batch {batch_id!r}.", code="batch_not_found")
        return rec

    def view(self, rec: BatchRecord) -> dict[str, Any]:
        counts = self.store.counts(rec.id)
        done = counts["succeeded"] + counts["failed"] + counts["cancelled"]
        remaining = counts["pending"] + counts["submitted"]
        eta = None
        if remaining and done and rec.started_at and rec.status == "running":
            elapsed = max(time.time() - rec.started_at, 1e-3)
            eta = round(remaining / (done / elapsed), 1)
        results = None
        if rec.results:
            base = f"{self.settings.service.public_url}/v1/batches/{rec.id}/results"
            results = {"json": f"{base}?format=json", "csv": f"{base}?format=csv", **rec.results}
        return {"id": rec.id, "name": rec.name, "status": rec.status, "total": rec.total, "counts": counts,
                "progress": round((rec.total - remaining) / rec.total, 4) if rec.total else 1.0, "eta_s": eta,
                "created_at": rec.created_at, "started_at": rec.started_at, "finished_at": rec.finished_at,
                "config": rec.config, "explain": rec.explain.get("values", {}),
                "layers": rec.explain.get("layers", []), "results": results}

    def list_batches(self, tenant: str, limit: int = 50, before: float | None = None) -> list[BatchRecord]:
        return self.store.list_batches(tenant, limit=min(limit, BATCH_LIST_LIMIT), before=before)

    def items(self, tenant: str, batch_id: str, *, status: list[str], offset: int, limit: int) -> list[dict[str, Any]]:
        self.get(tenant, batch_id)
        return [_item_view(i) for i in self.store.items(batch_id, status=status, offset=offset, limit=limit)]

    # ---- control
    def control(self, tenant: str, batch_id: str, action: Literal["cancel", "pause", "resume"]) -> dict[str, Any]:
        rec = self.get(tenant, batch_id)
        moves = {"cancel": ("cancelling", ("running", "paused")), "pause": ("paused", ("running",)),
                 "resume": ("running", ("paused",))}
        target, sources = moves[action]
        if rec.status not in sources and rec.status != target and not (action == "cancel" and rec.status
                                                                        in TERMINAL_BATCH):
            raise Conflict(f"Batch {batch_id} is {rec.status}; it cannot be {action}d.", code="batch_not_controllable")
        self.store.set_status(batch_id, target, only_from=sources)
        if self.feeder is not None:
            self.feeder.wake()
        return self.view(self.get(tenant, batch_id))

    # ---- results
    def results(self, tenant: str, batch_id: str, fmt: Literal["json", "csv"]) -> bytes:
        rec = self.get(tenant, batch_id)
        items, costs = self.store.items(batch_id), self.store.job_costs(batch_id)
        if fmt == "json":
            return results_json(rec, self.store.counts(batch_id), items, costs)
        return results_csv(items, costs)

    # ---- presets
    def put_preset(self, tenant: str, name: str, values: dict[str, Any]) -> dict[str, Any]:
        import re

        if not re.match(PRESET_NAME, name):
            raise InvalidParams("Preset names are 1-64 letters, digits, '.', '_' or '-'.", code="invalid_preset")
        return self.store.put_preset(tenant, name, check_preset_values(values))

    def get_preset(self, tenant: str, name: str) -> dict[str, Any]:
        preset = self.store.get_preset(tenant, name)
        if preset is None:
            raise NotFound(f"No preset {name!r}.", code="preset_not_found")
        return preset

    def delete_preset(self, tenant: str, name: str) -> None:
        if not self.store.delete_preset(tenant, name):
            raise NotFound(f"No preset {name!r}.", code="preset_not_found")


def _item_view(i: ItemRecord) -> dict[str, Any]:
    return {"index": i.idx, "source": i.source, "etag": i.etag, "size": i.size, "row": i.row, "status": i.status,
            "tries": i.tries, "job_id": i.job_id, "outputs": i.outputs, "error": i.error, "seconds": i.seconds}


def results_json(rec: BatchRecord, counts: dict[str, int], items: list[ItemRecord],
                 costs: dict[int, float] | None = None) -> bytes:
    costs = costs or {}
    rows = []
    for i in items:
        rows.append({"index": i.idx, "source": i.source, "etag": i.etag, "size": i.size, "row": i.row,
                     "status": i.status, "job_id": i.job_id,
                     "outputs": {name: o.get("url") or o.get("key") for name, o in (i.outputs or {}).items()},
                     "error_code": (i.error or {}).get("code"), "error": (i.error or {}).get("message"),
                     "seconds": i.seconds, "cost": costs.get(i.idx)})
    return json.dumps({"batch_id": rec.id, "name": rec.name, "status": rec.status, "counts": counts,
                       "items": rows}, indent=1).encode()


def results_csv(items: list[ItemRecord], costs: dict[int, float] | None = None) -> bytes:
    costs = costs or {}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(RESULT_COLUMNS)
    for i in items:
        outputs = ";".join(f"{name}={o.get('url') or o.get('key')}" for name, o in (i.outputs or {}).items())
        writer.writerow([i.idx, i.source, i.etag, "" if i.size is None else i.size, "" if i.row is None else i.row,
                         i.status, i.job_id or "", outputs, (i.error or {}).get("code") or "",
                         (i.error or {}).get("message") or "", "" if i.seconds is None else round(i.seconds, 3),
                         costs.get(i.idx, "")])
    return buf.getvalue().encode()


def _chunks(fh: Any, size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := fh.read(size):
        yield chunk


class BatchFeeder:
    """Keeps every active batch moving (see the module docstring); one thread, woken early by `wake()`."""

    def __init__(self, service: BatchService, *, interval_s: float = 0.5) -> None:
        self.service = service
        self.store = service.store
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._cancel_sent: set[str] = set()
        self._buckets: dict[str, Bucket] = {}
        self._thread = threading.Thread(target=self._run, name="reelforge-batch-feeder", daemon=True)
        service.feeder = self

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.tick()
            self._wake.wait(self.interval_s)
            self._wake.clear()

    def tick(self) -> None:
        try:
            ids = self.store.active_batch_ids()
        except Exception:
            log.exception("batch feeder: could not list active batches")
            return
        for batch_id in ids:
            if self._stop.is_set():
                return
            try:
                self.step(batch_id)
            except Exception:
                log.exception("batch feeder: batch %s", batch_id)

    # ---- one batch
    def step(self, batch_id: str) -> None:
        rec = self.store.get_batch(batch_id)
        if rec is None or rec.status not in ACTIVE_BATCH:
            return
        config = rec.config
        active = 0
        for flight in self.store.in_flight(batch_id):
            if flight.job_status in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
                active += 1
                job_id = flight.item.job_id
                if rec.status == "cancelling" and job_id and job_id not in self._cancel_sent:
                    self._cancel_sent.add(job_id)
                    with contextlib.suppress(ReelForgeError):
                        self.service.jobs.cancel(rec.tenant, job_id)
                continue
            self._settle(rec, flight)
        if rec.status == "running":
            free = int(config.get("max_concurrent") or 1) - active
            pending = self.store.items(batch_id, status=["pending"], limit=free) if free > 0 else []
            if pending:
                self._submit(rec, pending)
        elif rec.status == "cancelling":
            self.store.cancel_pending(batch_id)
        counts = self.store.counts(batch_id)
        if counts["pending"] == 0 and counts["submitted"] == 0:
            self._finish(rec, counts)

    def _settle(self, rec: BatchRecord, flight: InFlight) -> None:
        """A submitted item whose job ended (or vanished)."""
        item, now = flight.item, time.time()
        status = flight.job_status
        seconds = None
        if flight.job_started_at and flight.job_finished_at:
            seconds = round(flight.job_finished_at - flight.job_started_at, 3)
        if status == JobStatus.SUCCEEDED.value:
            try:
                outputs = self._deliver(rec, item, flight.job_result or {})
            except ReelForgeError as exc:
                log.warning("batch %s item %d: outputs not copied: %s", rec.id, item.idx, exc.message)
                self.store.update_item(rec.id, item.idx, expect="submitted", status="failed", finished_at=now,
                                       seconds=seconds, error={"code": "output_copy_failed", "message": exc.message})
                return
            self.store.update_item(rec.id, item.idx, expect="submitted", status="succeeded", outputs=outputs,
                                   seconds=seconds, finished_at=now, error=None)
            return
        retries = int(rec.config.get("max_retries") or 0)
        error = flight.job_error or {"code": "job_lost", "message": "The item's job no longer exists."}
        if status is None or (status in (JobStatus.FAILED.value, JobStatus.TIMED_OUT.value)
                              and rec.status != "cancelling" and item.tries <= retries):
            self.store.update_item(rec.id, item.idx, expect="submitted", status="pending", error=error)
            return
        final = "cancelled" if status == JobStatus.CANCELLED.value else "failed"
        self.store.update_item(rec.id, item.idx, expect="submitted", status=final, error=error, seconds=seconds,
                               finished_at=now)

    def _bucket(self, rec: BatchRecord, bucket: str) -> Bucket:
        key = f"{rec.id}:{bucket}"
        if key not in self._buckets:
            self._buckets[key] = self.service.bucket(bucket, rec.secrets)
        return self._buckets[key]

    def _submit(self, rec: BatchRecord, items: list[ItemRecord]) -> None:
        """Submit pending items through JobService (one transaction for all their job rows)."""
        config = rec.config
        entries = []
        for item in items:
            params = item.params
            if rec.secrets and item.source.startswith("s3://"):
                # the job host has no credentials for the batch's own bucket: it reads a presigned GET
                bucket, key = split_s3_url(item.source)
                params = _replace_exact(params, item.source, self._bucket(rec, bucket).presign_get(key, PRESIGN_S))
            body = JobCreate(op=config["op"], params=params, priority=config.get("priority", 0),
                             timeout_s=config.get("timeout_s"),
                             webhook_url=config.get("webhook_url") if config.get("item_webhooks") else None)
            entries.append((body, f"{rec.id}:{item.idx}:{item.tries + 1}", {"batch_id": rec.id,
                                                                             "batch_item": item.idx}))
        jobs = self.service.jobs
        marks = []
        for item, (_, key, _), answer in zip(items, entries, jobs.submit_many(rec.tenant, entries), strict=True):
            if isinstance(answer, Conflict):  # submitted before a crash, with a URL signed then: that job it is
                answer = jobs.jobs.find_by_idempotency_key(rec.tenant, key) or answer
            if isinstance(answer, ReelForgeError):  # e.g. an uploaded input deleted since the batch was made
                self.store.update_item(rec.id, item.idx, expect="pending", status="failed", error=answer.to_dict(),
                                       finished_at=time.time(), tries=item.tries + 1)
            else:
                marks.append((item.idx, answer.id, item.tries + 1))
        self.store.mark_submitted(rec.id, marks)

    def _deliver(self, rec: BatchRecord, item: ItemRecord, result: dict[str, Any]) -> dict[str, Any]:
        """Copy a succeeded job's outputs to the destination pattern; {name: {key, url, size}}."""
        outputs = result.get("outputs") or {}
        storage = self.service.storage
        dest = (rec.config.get("destination") or "").rstrip("/")
        delivered: dict[str, Any] = {}
        for name, meta in outputs.items():
            source_key = meta["key"]
            if not dest:
                url = storage.url(source_key, filename=meta.get("filename"))
                delivered[name] = {"key": source_key, "size": meta.get("size"),
                                   "url": url or f"{self.service.settings.service.public_url}/v1/jobs/"
                                                 f"{item.job_id}/outputs/{name}"}
                continue
            out_ext = PurePosixPath(meta.get("filename") or source_key).suffix
            name_part = render(rec.config.get("filename") or "", {**item.vars, "output": name, "out_ext": out_ext})
            ctype = meta.get("content_type") or "application/octet-stream"
            if dest.startswith("s3://"):
                bucket, prefix = split_s3_url(dest)
                key = f"{prefix.rstrip('/')}/{name_part}".lstrip("/")
                with storage.open_read(source_key) as fh:
                    self._bucket(rec, bucket).put(key, fh, ctype)
                delivered[name] = {"key": key, "size": meta.get("size"), "url": f"s3://{bucket}/{key}"}
            else:
                key = self.service.local_key(rec.tenant, dest, name_part)
                with storage.open_read(source_key) as fh:
                    storage.put_stream(_chunks(fh), key, max_bytes=1 << 40, content_type=ctype)
                delivered[name] = {"key": key, "size": meta.get("size"), "url": storage.url(key) or key}
        return delivered

    def _finish(self, rec: BatchRecord, counts: dict[str, int]) -> None:
        if rec.status == "cancelling":
            status = "cancelled"
        elif rec.status == "paused" and counts["pending"]:
            return
        else:
            status = "failed" if counts["failed"] else "succeeded"
        results = self._write_results(rec, status, counts)
        if not self.store.set_status(rec.id, status, only_from=ACTIVE_BATCH, finished_at=time.time(),
                                     results=results):
            return
        url = rec.config.get("webhook_url")
        if url and self.service.webhooks is not None:
            final = self.store.get_batch(rec.id) or rec
            event = {"type": f"batch.{status}", "batch_id": rec.id, "name": rec.name, "status": status,
                     "counts": counts, "at": time.time(), "results": self.service.view(final)["results"]}
            self.service.webhooks.send(rec.id, url, event, kind="state")
        log.info("batch %s %s: %s", rec.id, status, counts)

    def _write_results(self, rec: BatchRecord, status: str, counts: dict[str, int]) -> dict[str, Any]:
        storage = self.service.storage
        items, costs = self.store.items(rec.id), self.store.job_costs(rec.id)
        final = BatchRecord(**{**rec.__dict__, "status": status})
        docs = {"json": (results_json(final, counts, items, costs), "application/json"),
                "csv": (results_csv(items, costs), "text/csv")}
        out: dict[str, Any] = {}
        for fmt, (data, ctype) in docs.items():
            key = f"batches/{rec.id}/results.{fmt}"
            storage.put_stream(iter([data]), key, max_bytes=len(data) + 1, content_type=ctype)
            out[f"{fmt}_key"] = key
        dest = (rec.config.get("destination") or "").rstrip("/")
        if dest:
            try:
                for fmt, (data, ctype) in docs.items():
                    if dest.startswith("s3://"):
                        bucket, prefix = split_s3_url(dest)
                        key = f"{prefix.rstrip('/')}/results.{fmt}".lstrip("/")
                        self._bucket(rec, bucket).put(key, data, ctype)
                        out[f"{fmt}_destination"] = f"s3://{bucket}/{key}"
                    else:
                        key = self.service.local_key(rec.tenant, dest, f"results.{fmt}")
                        storage.put_stream(iter([data]), key, max_bytes=len(data) + 1, content_type=ctype)
                        out[f"{fmt}_destination"] = key
            except ReelForgeError as exc:
                log.warning("batch %s: results not written to the destination: %s", rec.id, exc.message)
        return out


def _replace_exact(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return new if value == old else value
    if isinstance(value, dict):
        return {k: _replace_exact(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_exact(v, old, new) for v in value]
    return value


__all__ = ["BatchCreate", "BatchFeeder", "BatchService", "GivenLayer", "PresetBody"]
