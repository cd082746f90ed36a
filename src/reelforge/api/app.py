"""The FastAPI application factory. The API validates, persists and hands off; it never runs media work."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from reelforge import __version__
from reelforge.api.auth import KeyCache
from reelforge.api.dbcalls import make_limiter
from reelforge.api.errors import error_response, install_error_handlers
from reelforge.api.legacy_seed003 import router as seed003_router
from reelforge.api.legacy_seed004 import router as seed004_router
from reelforge.api.metrics_http import HttpMetrics
from reelforge.api.openapi import install_openapi, operation_id
from reelforge.api.ratelimit import RateLimiter
from reelforge.api.routes_agents import ClaimWake, WakingHandOff
from reelforge.api.routes_agents import router as agents_router
from reelforge.api.routes_batches import router as batches_router
from reelforge.api.routes_files import router as files_router
from reelforge.api.routes_jobs import router as jobs_router
from reelforge.api.routes_shotstack import router as shotstack_router
from reelforge.api.routes_system import StoreCollector
from reelforge.api.routes_system import router as system_router
from reelforge.api.routes_ui import install_ui
from reelforge.config import Settings
from reelforge.engine.backends import remote_configured
from reelforge.engine.executor import Executor, make_executor
from reelforge.engine.metrics import GpuCollector
from reelforge.engine.routing import check_routes, configured_queues
from reelforge.engine.services import Services
from reelforge.errors import ReelForgeError
from reelforge.jobs.agents import AgentJobs
from reelforge.jobs.batcher import StatusReader, SubmitBatcher
from reelforge.jobs.batches import BatchFeeder, BatchService
from reelforge.jobs.capacity import CapacityCollector, Ledger, ledger_path
from reelforge.jobs.idle import IdleShutdown
from reelforge.jobs.remote_backend import RemoteFunctionBackend
from reelforge.jobs.services import JobServices
from reelforge.ops.registry import load_plugins

log = logging.getLogger("reelforge.api")


DRAIN_BYTES = 64 * 1024 * 1024


class BodyLimit:
    """Refuse request bodies over a cap (uploads have their own, larger cap) before they are read whole,
    in a way the client sees: an error answered while the client is still sending its body (a 413 here,
    a 401 before the body was looked at, a 413/507 from the upload route) first reads and discards the
    rest of the body, up to drain_bytes. Without that, the server closes a socket with unread data in
    it, the kernel answers with a reset, and the client reports "connection reset" instead of the error.
    A body beyond drain_bytes is not read: the answer then carries `Connection: close`.
    """

    def __init__(self, app: Any, max_bytes: int, exempt_prefixes: tuple[str, ...] = ("/v1/files",),
                 drain_bytes: int = DRAIN_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt_prefixes
        self.drain_bytes = drain_bytes

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limited = not scope["path"].startswith(self.exempt)
        declared: int | None = None
        chunked = False
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit():
                declared = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        body_done = not chunked and not declared  # no body to read (GET, empty POST)
        if body_done:  # nothing to count, cap or drain: the app as it is (status polls take this path)
            await self.app(scope, receive, send)
            return
        seen = 0
        started = False
        over = False  # the body crossed the cap while the app read it: the answer is our 413, whatever
        # the app made of the exception (FastAPI turns errors while reading a body into a 400)

        async def guarded_receive() -> Any:
            nonlocal seen, body_done, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if limited and seen > self.max_bytes:
                    over = True
                    raise _TooLarge()
            elif message["type"] == "http.disconnect":
                body_done = True
            return message

        async def guarded_send(message: dict[str, Any]) -> None:
            nonlocal started
            if over and not started:
                return
            await forward(message)

        async def forward(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if not body_done and not await drain():
                    message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        async def drain() -> bool:
            """Read and discard the rest of the body; False when it is larger than drain_bytes."""
            nonlocal body_done
            if declared is not None and declared - seen > self.drain_bytes:
                return False
            drained = 0
            while not body_done:
                message = await receive()
                if message["type"] != "http.request":
                    body_done = True
                    break
                drained += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if drained > self.drain_bytes:
                    return False
            return True

        if limited and declared is not None and declared > self.max_bytes:
            await self._too_large(scope, forward)
            return
        try:
            await self.app(scope, guarded_receive, guarded_send)
        except Exception:
            if not over or started:
                raise
        if over and not started:
            await self._too_large(scope, forward)

    async def _too_large(self, scope: Any, send: Any) -> None:
        resp = error_response(413, "payload_too_large", f"The request body is larger than {self.max_bytes} bytes.")

        async def no_body() -> Any:
            return {"type": "http.disconnect"}

        await resp(scope, no_body, send)


class _TooLarge(Exception):
    pass


def check_bind_safety(settings: Settings, services: JobServices) -> None:
    """Refuse to serve on a non-loopback address with no API key: the service would be open to anyone."""
    if settings.keys_required and not services.stores.keys.any_api_keys():
        raise ReelForgeError(
            f"Refusing to listen on {settings.service.host} without an API key. Create one first with "
            "`reelforge keys create --name <name>` (or bind to 127.0.0.1).", code="no_api_keys")


def remote_backends(settings: Settings, services: JobServices, agents: AgentJobs) -> list[RemoteFunctionBackend]:
    """The remote-function backends (RunPod, Modal) that some queue names and the settings configure."""
    named = {b for chain in settings.compute.queue_backends.values() for b in chain}
    out: list[RemoteFunctionBackend] = []
    if "runpod" in named and remote_configured(settings, "runpod"):
        from reelforge.jobs.runpod_backend import RunPodBackend

        out.append(RunPodBackend(settings, services.stores, agents, services.engine.presence))
    if "modal" in named and remote_configured(settings, "modal"):
        from reelforge.jobs.modal_backend import ModalBackend

        out.append(ModalBackend(settings, services.stores, agents, services.engine.presence))
    return out


def create_app(settings: Settings | None = None, *,
               executor_factory: Callable[[Services], Executor] | None = None) -> FastAPI:
    settings = settings or Settings()
    load_plugins(settings.service.plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = JobServices.create(settings)  # the composition root: database job control for the engine
        check_bind_safety(settings, services)
        check_routes(settings)  # an op_routes entry naming no operation stops start-up
        executor = (executor_factory or make_executor)(services.engine)
        registry = CollectorRegistry()
        registry.register(StoreCollector(services.stores.jobs, configured_queues(settings)))
        registry.register(GpuCollector())
        app.state.services = services
        app.state.executor = executor
        app.state.keys = KeyCache(services.stores.keys)
        app.state.agents = AgentJobs(settings, services.stores, services.storage, services.control)
        remotes = remote_backends(settings, services, app.state.agents)
        capacity = None
        if settings.capacity.provider == "vast" and settings.capacity.in_api:
            from reelforge.jobs.capacity import CapacityController

            capacity = CapacityController(settings, services.stores)
        if settings.capacity.provider or ledger_path(settings).exists():
            registry.register(CapacityCollector(Ledger(ledger_path(settings))))
        app.state.capacity = capacity
        app.state.idle_shutdown = IdleShutdown(settings, services.stores.jobs)
        # every new job also wakes the agents' long polls in this process (no wait for the poll interval)
        app.state.claim_wake = ClaimWake(asyncio.get_running_loop())
        handoff = WakingHandOff(executor, app.state.claim_wake)
        app.state.batcher = SubmitBatcher(services.stores.jobs, handoff.submit, files=services.stores.files)
        app.state.reader = StatusReader(services.stores.jobs, services.stores.webhooks)
        app.state.jobs = services.job_service(handoff, batcher=app.state.batcher, reader=app.state.reader)
        # batches submit through the same JobService; the feeder resumes batches a stopped service left
        app.state.batches = BatchService(settings, services.stores, storage=services.storage, jobs=app.state.jobs,
                                         webhooks=services.webhooks)
        feeder = BatchFeeder(app.state.batches)
        app.state.metrics_registry = registry
        app.state.db_limiter = make_limiter()
        executor.start()
        for remote in remotes:
            remote.start()
        if capacity is not None:
            capacity.start()
        app.state.idle_shutdown.start()
        feeder.start()
        try:
            yield
        finally:
            feeder.stop()
            app.state.idle_shutdown.stop()
            if capacity is not None:
                capacity.stop()
            app.state.batcher.close()
            app.state.reader.close()
            for remote in remotes:
                remote.stop()
            executor.stop()
            services.close()

    app = FastAPI(
        title="ReelForge",
        version=__version__,
        description="Self-hosted video-building service: submit JSON jobs, get finished media in your storage. "
                    "Authenticate with `X-API-Key` (not needed on 127.0.0.1). Errors are always "
                    "`{\"error\": {\"code\", \"message\"}}`.",
        lifespan=lifespan,
        docs_url=None, redoc_url=None,  # served by routes_ui with local assets, not from a CDN
        generate_unique_id_function=operation_id,  # operationId = the route function's name (submit_job, ...)
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings)
    install_error_handlers(app)
    install_openapi(app)
    app.include_router(jobs_router)
    app.include_router(files_router)
    app.include_router(system_router)
    app.include_router(agents_router)
    app.include_router(seed004_router)  # the users' earlier API: /video/*, /transcribe, /job/{id}
    app.include_router(seed003_router)  # the earlier overlay service: /overlay
    app.include_router(shotstack_router)
    app.include_router(batches_router)
    install_ui(app)
    # uploads (users' files, agents' outputs) have their own, larger cap
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes,
                       exempt_prefixes=("/v1/files", "/v1/agent/jobs/"))
    app.add_middleware(HttpMetrics)  # outermost: every answer counted, 413s and errors included
    return app
