"""The FastAPI application factory. The API validates, persists and hands off; it never runs media work."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from reelforge import __version__
from reelforge.api.auth import KeyCache
from reelforge.api.errors import error_response, install_error_handlers
from reelforge.api.routes_files import router as files_router
from reelforge.api.routes_jobs import router as jobs_router
from reelforge.api.routes_system import StoreCollector
from reelforge.api.routes_system import router as system_router
from reelforge.config import Settings
from reelforge.engine.executor import Executor, make_executor
from reelforge.engine.services import Services
from reelforge.errors import ReelForgeError
from reelforge.jobs.batcher import SubmitBatcher
from reelforge.jobs.service import JobService
from reelforge.ops.registry import load_plugins

log = logging.getLogger("reelforge.api")


class BodyLimit:
    """Refuse request bodies over a cap (uploads have their own, larger cap) before they are read whole."""

    def __init__(self, app: Any, max_bytes: int, exempt_prefixes: tuple[str, ...] = ("/v1/files",)) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.exempt = exempt_prefixes

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.exempt):
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Any, receive: Any, send: Any) -> None:
        resp = error_response(413, "payload_too_large", f"The request body is larger than {self.max_bytes} bytes.")
        await resp(scope, receive, send)


class _TooLarge(Exception):
    pass


def check_bind_safety(settings: Settings, services: Services) -> None:
    """Refuse to serve on a non-loopback address with no API key: the service would be open to anyone."""
    if settings.keys_required and not services.store.any_api_keys():
        raise ReelForgeError(
            f"Refusing to listen on {settings.host} without an API key. Create one first with "
            "`reelforge keys create --name <name>` (or bind to 127.0.0.1).", code="no_api_keys")


def create_app(settings: Settings | None = None, *,
               executor_factory: Callable[[Services], Executor] | None = None) -> FastAPI:
    settings = settings or Settings()
    load_plugins(settings.plugins)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = Services.create(settings)
        check_bind_safety(settings, services)
        executor = (executor_factory or make_executor)(services)
        registry = CollectorRegistry()
        registry.register(StoreCollector(services.store))
        app.state.services = services
        app.state.executor = executor
        app.state.keys = KeyCache(services.store)
        app.state.batcher = SubmitBatcher(services.store, executor.submit)
        app.state.jobs = JobService(settings, services.store, storage=services.storage,
                                    webhooks=services.webhooks, executor=executor, batcher=app.state.batcher)
        app.state.metrics_registry = registry
        executor.start()
        try:
            yield
        finally:
            app.state.batcher.close()
            executor.stop()
            services.close()

    app = FastAPI(
        title="ReelForge",
        version=__version__,
        description="Self-hosted video-building service: submit JSON jobs, get finished media in your storage. "
                    "Authenticate with `X-API-Key` (not needed on 127.0.0.1). Errors are always "
                    "`{\"error\": {\"code\", \"message\"}}`.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(jobs_router)
    app.include_router(files_router)
    app.include_router(system_router)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app
