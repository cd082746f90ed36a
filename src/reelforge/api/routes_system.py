"""Health, metrics, and discovery (ops with their JSON schemas, TTS voices)."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, Field

from reelforge.api.auth import current_principal, metrics_access
from reelforge.api.dbcalls import run_db
from reelforge.api.openapi import error_responses
from reelforge.config import Settings
from reelforge.diskspace import free_bytes
from reelforge.engine.metrics import process_registry
from reelforge.engine.routing import queue_for, routes
from reelforge.errors import Forbidden
from reelforge.jobs.store_keys import Principal
from reelforge.media.ffmpeg import have_ffmpeg
from reelforge.ops.registry import Operation, load_all
from reelforge.ops.resources import Resources

router = APIRouter(tags=["system"])


class Health(BaseModel):
    status: Literal["ok", "degraded"] = Field(description="degraded: a part is down (503) or the disk is low (200)")
    checks: dict[str, Any] = Field(description='Each part: "ok", facts about it, or {"error": "..."}')
    disk: dict[str, Any]


@router.get("/health", summary="Store, storage, executor, ffmpeg and free disk space", response_model=Health,
            responses={503: {"model": Health, "description": "A part the service needs is down"}})
def health(request: Request) -> JSONResponse:
    """503 when a part the service needs is down; 200 with status "degraded" when everything works but the
    data disk has less than `disk_low_bytes` free (jobs and uploads that do not fit fail with disk_full)."""
    state = request.app.state
    checks: dict[str, Any] = {}
    ok = True
    for name, fn in (("store", state.services.stores.ping), ("storage", state.services.storage.check),
                     ("executor", state.executor.health)):
        try:
            value = fn()
            checks[name] = value if isinstance(value, dict) else "ok"
        except Exception as exc:
            ok = False
            checks[name] = {"error": str(exc)[:300]}
    checks["ffmpeg"] = "ok" if have_ffmpeg() else {"error": "ffmpeg/ffprobe not found on PATH"}
    ok = ok and have_ffmpeg()
    disk = _disk(state.settings)
    status = "ok" if ok and not disk.get("low") else "degraded"
    body: dict[str, Any] = {"status": status, "checks": checks, "disk": disk}
    idle = getattr(state, "idle_shutdown", None)
    if idle is not None and idle.enabled:
        body["idle_shutdown"] = idle.state()
    capacity = getattr(state, "capacity", None)
    if capacity is not None:
        body["capacity"] = capacity.status()
    return JSONResponse(body, status_code=200 if ok else 503)


def _disk(settings: Any) -> dict[str, Any]:
    try:
        free = free_bytes(settings.service.data_dir)
    except OSError as exc:
        return {"error": f"free space unknown ({exc.strerror})", "low": True}
    limits = settings.limits
    return {"free_bytes": free, "low_bytes": limits.disk_low_bytes, "reserve_bytes": limits.disk_reserve_bytes,
            "low": free < limits.disk_low_bytes}


class StoreCollector:
    """Job counts by op and status, and each queue's depth and oldest waiting job, read from the store at
    scrape time (they count every process's jobs, so only the API exports them)."""

    def __init__(self, store: Any, queues: Iterable[str] = ()) -> None:
        self.store = store
        self.queues = list(queues)  # always shown, 0 when empty

    def collect(self) -> Any:
        counts = self.store.counts_by_status()
        jobs = GaugeMetricFamily("reelforge_jobs", "Jobs in the store by op and status", labels=["op", "status"])
        for (op, status), n in sorted(counts.items()):
            jobs.add_metric([op, status], n)
        yield jobs
        depths = {q: (0, None) for q in self.queues}
        depths.update(self.store.queue_depths())
        depth = GaugeMetricFamily("reelforge_queue_depth", "Jobs waiting to run, by queue", labels=["queue"])
        oldest = GaugeMetricFamily("reelforge_queue_oldest_seconds", "Age of the oldest job waiting in the "
                                   "queue (0 when none waits)", labels=["queue"])
        now = time.time()
        for queue, (n, created) in sorted(depths.items()):
            depth.add_metric([queue], n)
            oldest.add_metric([queue], max(0.0, now - created) if created else 0.0)
        yield depth
        yield oldest


@router.get("/metrics", summary="Prometheus metrics (needs a key when `metrics_require_key`)",
            response_class=Response, dependencies=[Depends(metrics_access)])
def metrics(request: Request) -> Response:
    """This process's metrics (with PROMETHEUS_MULTIPROC_DIR: every process's on this machine, workers
    included), the job store's counts and queue depths, and this machine's GPUs (docs/METRICS.md)."""
    registry: CollectorRegistry = request.app.state.metrics_registry
    body = generate_latest(process_registry()) + generate_latest(registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


class OpVariant(BaseModel):
    when: dict[str, Any] = Field(description="param paths (dotted) and the values that select these resources")
    resources: Resources
    queue: str = Field(description="the queue such jobs are routed to")


class OpInfo(BaseModel):
    name: str
    summary: str
    resources: Resources = Field(description="what a job of this op needs with its default params")
    queue: str = Field(description="the queue its jobs are routed to (op_routes applied)")
    variants: list[OpVariant] = Field(default_factory=list,
                                      description="params that change the resources or the queue")
    resources_note: str = Field(default="", description="set when the resources follow from the params in another way")
    default_timeout_s: float
    params_schema: dict[str, Any]
    example: dict[str, Any] | None = None


class OpList(BaseModel):
    ops: list[OpInfo]


def op_info(op: Operation, settings: Settings) -> OpInfo:
    spec = op.resources
    conditional, _ = routes(settings)
    # the op's own variants, then any param condition the operator routes on
    whens = [dict(v.when) for v in spec.variants]
    whens += [{r.path: r.value} for r in conditional if r.op == op.name and r.path and {r.path: r.value} not in whens]
    variants = [OpVariant(when=w, resources=op.resources_for(_params_with(w)), queue=queue_for(op, _params_with(w),
                          settings)) for w in whens]
    return OpInfo(name=op.name, summary=op.summary, resources=spec.base, queue=queue_for(op, None, settings),
                  variants=variants, resources_note=spec.note, default_timeout_s=op.timeout_s,
                  params_schema=op.params_model.model_json_schema(), example=op.example)


def _params_with(when: dict[str, Any]) -> dict[str, Any]:
    """{"head.engine": "rvm"} -> {"head": {"engine": "rvm"}}: params in which the condition holds."""
    out: dict[str, Any] = {}
    for path, value in when.items():
        *parents, last = path.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return out


class Me(BaseModel):
    tenant: str = Field(description="The tenant this key acts as (its submissions are this tenant's)")
    admin: bool = Field(description="An admin key reads and acts on every tenant's jobs")
    tenants: list[str] | None = Field(None, description="For an admin key: the tenants that have keys")


@router.get("/v1/me", response_model=Me, summary="Who this key is: its tenant, and whether it is an admin key")
async def me(request: Request, who: Annotated[Principal, Depends(current_principal)]) -> Me:
    tenants = await run_db(request, request.app.state.keys.store.tenants) if who.admin else None
    return Me(tenant=who.tenant, admin=who.admin, tenants=tenants)


@router.get("/v1/workers", responses=error_responses(403),
            summary="What runs jobs: the executor, remote agents and their resources, remote backends, rented capacity",
            description="For an admin key (or no key on a loopback install that needs none); others get 403 "
                        "`admin_key_required`. With the Celery executor, `celery_workers` lists the live workers as "
                        "they answer over the broker (queues, pool size, running tasks, CPU cores, GPUs with "
                        "memory, utilisation and NVENC sessions); `celery_workers_error` says why when the "
                        "broker could not be asked.")
async def workers(request: Request, who: Annotated[Principal, Depends(current_principal)]) -> dict[str, Any]:
    state = request.app.state
    settings: Settings = state.settings
    if not who.admin and settings.keys_required:
        raise Forbidden("Only an admin key may see the workers.", code="admin_key_required")
    return await run_db(request, _workers, state, settings)


def _workers(state: Any, settings: Settings) -> dict[str, Any]:
    from reelforge.engine.backends import remote_configured
    from reelforge.jobs.capacity import Ledger, day_start, ledger_path

    try:
        executor: Any = state.executor.health()
    except Exception as exc:
        executor = {"error": str(exc)[:300]}
    now = time.time()
    alive_s = settings.compute.agent_alive_s
    agents = [{"id": a.id, "name": a.name, "queues": list(a.queues), "last_seen_at": a.last_seen_at,
               "alive": a.last_seen_at is not None and now - a.last_seen_at <= alive_s, "resources": a.resources}
              for a in state.services.stores.agents.list_tokens() if not a.revoked]
    named = {b for chain in settings.compute.queue_backends.values() for b in chain}
    presence = state.services.engine.presence
    backends = []
    for name in ("runpod", "modal"):
        configured = remote_configured(settings, name)
        if not configured and name not in named:
            continue
        why = presence.down(name)
        backends.append({"name": name, "configured": configured,
                         "queues": sorted(q for q, chain in settings.compute.queue_backends.items() if name in chain),
                         "state": "down" if why or not configured else "up",
                         "why": why or (None if configured else "not configured (no endpoint/app in the settings)")})
    cap = settings.capacity
    capacity: dict[str, Any] = {"provider": cap.provider or None, "instances": [], "dph": 0.0,
                                "spent_today_usd": 0.0, "max_day_usd": cap.max_day_usd, "max_dph": cap.max_dph}
    path = ledger_path(settings)
    if cap.provider or path.exists():
        ledger = Ledger(path)
        live = ledger.summary(now).open()
        capacity["instances"] = [{k: i.get(k) for k in ("key", "vast_id", "queue", "gpu", "dph", "created_at",
                                                        "registered_at", "jobs")} for i in live]
        capacity["dph"] = round(sum(i["dph"] for i in live), 4)
        capacity["spent_today_usd"] = round(ledger.spent_since(day_start(now), now), 4)
    out: dict[str, Any] = {"executor": executor, "agents": agents, "backends": backends, "capacity": capacity}
    lister = getattr(state.executor, "workers", None)
    if callable(lister):  # Celery: what every live worker answers over the broker (queues, pool, GPUs)
        try:
            out["celery_workers"] = lister()
        except Exception as exc:
            out["celery_workers_error"] = str(exc)[:300]
    return out


@router.get("/v1/ops", response_model=OpList,
            summary="Available operations: params schema, example, resources and the queue their jobs go to")
def list_ops(request: Request) -> OpList:
    settings: Settings = request.app.state.settings
    return OpList(ops=[op_info(op, settings) for op in sorted(load_all().values(), key=lambda o: o.name)])


@router.get("/v1/voices", summary="Text-to-speech engines and their voices")
def list_voices(request: Request) -> dict[str, Any]:
    from reelforge.models.tts import list_voices as voices

    models = request.app.state.settings.models
    return {"voices": voices(models.kokoro_voices, models.voice_dirs)}
