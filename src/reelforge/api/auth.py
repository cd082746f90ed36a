"""API keys: `X-API-Key: <key>` or `Authorization: Bearer <key>`. Each key belongs to a tenant.

Bound to loopback with no key required, a request without a key acts as the tenant "local". A request
with a key always acts as that key's tenant. An admin key (`reelforge keys create --admin`) also reads and
acts on every tenant's jobs (list, read, events, outputs, cancel, retry); what it submits is its own
tenant's. Known keys are cached briefly (hash lookups per request would dominate status polling).
"""

from __future__ import annotations

import threading
import time
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from reelforge.api.dbcalls import run_db
from reelforge.errors import AuthError
from reelforge.jobs.store_keys import KeysStore, Principal

LOCAL_TENANT = "local"
# The two ways to send a key, as OpenAPI security schemes. They read nothing themselves (auto_error=False):
# extract_key does; depending on them is what puts `security` on a route's OpenAPI operation.
API_KEY_HEADER = APIKeyHeader(name="X-API-Key", scheme_name="ApiKey", auto_error=False,
                              description="An API key (`reelforge keys create`)")
BEARER = HTTPBearer(scheme_name="Bearer", auto_error=False,
                    description="The same API key as `Authorization: Bearer <key>`")
AGENT_TOKEN = HTTPBearer(scheme_name="AgentToken", auto_error=False,
                         description="An agent token (`reelforge agents token create`) or a job token it was granted")
DocKey = Annotated[str | None, Security(API_KEY_HEADER)]
DocBearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


class KeyCache:
    def __init__(self, store: KeysStore, ttl_s: float = 30.0) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def cached(self, key: str) -> tuple[bool, Principal | None]:
        with self._lock:
            hit = self._cache.get(key)
            if hit and hit[0] > time.monotonic():
                return True, hit[1]
        return False, None

    def principal(self, key: str) -> Principal | None:
        now = time.monotonic()
        found, principal = self.cached(key)
        if found:
            return principal
        principal = self.store.principal_for_key(key)
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + self.ttl_s, principal)
        return principal

    def tenant(self, key: str) -> str | None:
        principal = self.principal(key)
        return principal.tenant if principal else None


def extract_key(request: Request) -> str | None:
    key = request.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip() or None
    return None


async def _principal(request: Request, required: bool) -> Principal:
    state = request.app.state
    key = extract_key(request)
    if key:
        found, principal = state.keys.cached(key)
        if not found:
            principal = await run_db(request, state.keys.principal, key)
        if principal is None:
            raise AuthError("The API key is not valid.", code="invalid_api_key")
        return principal
    if required:
        raise AuthError("An API key is required: send it as X-API-Key or Authorization: Bearer.",
                        code="missing_api_key")
    return Principal(LOCAL_TENANT)


async def _tenant(request: Request, required: bool) -> str:
    return (await _principal(request, required)).tenant


async def current_principal(request: Request, _key: DocKey = None, _bearer: DocBearer = None) -> Principal:
    # async so that FastAPI does not hop to a worker thread for every request; the DB is only asked on a
    # cache miss
    return await _principal(request, request.app.state.settings.keys_required)


async def current_tenant(request: Request, _key: DocKey = None, _bearer: DocBearer = None) -> str:
    return (await current_principal(request)).tenant


async def metrics_access(request: Request, _key: DocKey = None, _bearer: DocBearer = None) -> None:
    """/metrics counts every tenant's jobs: with `metrics_require_key` (default: whenever API keys are
    required) any valid key may read it, no key may not."""
    await _tenant(request, request.app.state.settings.metrics_key_required)


async def agent_token_doc(_token: Annotated[HTTPAuthorizationCredentials | None, Security(AGENT_TOKEN)] = None) -> None:
    """Documents the agent routes' Bearer token (the routes check it themselves, per job)."""


# What depending on these adds to a route's OpenAPI operation (read by api/openapi.py): the security
# requirement is optional exactly when the setting named by `required` is false for this service.
current_tenant.openapi_doc = {"auth": "keys_required", "responses": [401]}  # type: ignore[attr-defined]
current_principal.openapi_doc = {"auth": "keys_required", "responses": [401]}  # type: ignore[attr-defined]
metrics_access.openapi_doc = {"auth": "metrics_key_required", "responses": [401]}  # type: ignore[attr-defined]
agent_token_doc.openapi_doc = {"auth": "always", "responses": [401, 403]}  # type: ignore[attr-defined]
