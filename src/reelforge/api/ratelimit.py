"""Per-key rate limits on the routes that create work: submits (POST /v1/jobs, retries, other front doors'
submits) and uploads (POST /v1/files).

A token bucket per (kind, API key): `rate` tokens a second up to `burst`; each request takes one; an empty
bucket answers 429 `rate_limited` with `Retry-After` (whole seconds until the next token). Requests without a
key (a loopback service with keys not required) share one bucket per tenant.

Two stores, chosen by `limits.rate_limit_backend`:
- `memory`: in this process (one API process: `reelforge serve`);
- `redis`: one Lua script per request on a Redis server (the broker's, or `limits.rate_limit_redis_url`), so the
  limit holds across every API process behind a load balancer. `auto` (the default) picks redis when the
  service runs with a Redis broker (`executor = "celery"` and a redis:// broker URL) or a Redis URL is set.
  When Redis cannot be reached the process falls back to its own buckets (logged once) instead of refusing work.

Routes take the limit as a dependency: `dependencies=[Depends(rate_limit("submit"))]`; api/openapi.py then
documents the 429 on them (see RATE_LIMIT_DOC).
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import Depends, Request

from reelforge.api.auth import current_tenant, extract_key
from reelforge.config import Settings
from reelforge.errors import RateLimited

log = logging.getLogger("reelforge.api")
Kind = Literal["submit", "upload"]
KINDS: tuple[Kind, ...] = ("submit", "upload")


class MemoryBuckets:
    """Token buckets in this process, keyed by (kind, identity)."""

    MAX_KEYS = 100_000

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def take(self, key: str, rate: float, burst: int) -> float:
        """Take one token; 0 when allowed, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(burst), now))
            tokens = min(float(burst), tokens + max(0.0, now - last) * rate)
            wait = 0.0
            if tokens >= 1:
                tokens -= 1
            else:
                wait = (1 - tokens) / rate
            if len(self._buckets) >= self.MAX_KEYS and key not in self._buckets:
                self._buckets.clear()  # a flood of distinct keys: forget them all (each starts full again)
            self._buckets[key] = (tokens, now)
            return wait


# One atomic step on a Redis hash {t: tokens, ts: seconds}; the server's clock, so every API process agrees.
_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local data = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(data[1]) or burst
local last = tonumber(data[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class RedisBuckets:
    """Token buckets on a Redis server, shared by every API process that uses it."""

    def __init__(self, url: str, prefix: str = "reelforge:ratelimit:") -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._script = self._client.register_script(_LUA)
        self._prefix = prefix
        self._fallback = MemoryBuckets()
        self._warned = False

    def take(self, key: str, rate: float, burst: int) -> float:
        import redis

        try:
            return float(self._script(keys=[self._prefix + key], args=[rate, burst]))
        except redis.RedisError as exc:
            if not self._warned:
                self._warned = True
                log.warning("rate limits: Redis unreachable (%s); limiting per process until it is back", exc)
            return self._fallback.take(key, rate, burst)


class RateLimiter:
    """The limits of one service (from settings.limits) over one bucket store."""

    def __init__(self, settings: Settings, store: MemoryBuckets | RedisBuckets | None = None) -> None:
        limits = settings.limits
        self.limits: dict[str, tuple[float, int]] = {
            "submit": (limits.submit_rate_per_s, limits.submit_burst),
            "upload": (limits.upload_rate_per_s, limits.upload_burst),
        }
        self.store = store or make_store(settings)

    def check(self, kind: Kind, identity: str) -> None:
        rate, burst = self.limits[kind]
        if rate <= 0:
            return  # this limit is off
        wait = self.store.take(f"{kind}:{identity}", rate, max(1, burst))
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise RateLimited(f"Too many {kind}s from this key: at most {rate:g} a second (bursts of {burst}). "
                              f"Retry in {seconds} s.", retry_after_s=wait)


def backend_for(settings: Settings) -> tuple[str, str]:
    """("memory", "") or ("redis", url) as the settings choose (see the module docstring)."""
    limits = settings.limits
    url = limits.rate_limit_redis_url.get_secret_value()
    if limits.rate_limit_backend == "memory":
        return "memory", ""
    broker = settings.compute.broker_url.get_secret_value()
    if not url and broker.startswith(("redis://", "rediss://")) and (
            settings.compute.executor == "celery" or limits.rate_limit_backend == "redis"):
        url = broker
    if limits.rate_limit_backend == "redis" and not url:
        raise ValueError("rate_limit_backend = redis needs rate_limit_redis_url or a redis:// broker_url")
    return ("redis", url) if url else ("memory", "")


def make_store(settings: Settings) -> MemoryBuckets | RedisBuckets:
    kind, url = backend_for(settings)
    return RedisBuckets(url) if kind == "redis" else MemoryBuckets()


def identity(request: Request, tenant: str) -> str:
    """Whom a limit counts: the API key (hashed; never stored as sent), else the tenant."""
    key = extract_key(request)
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:24]
    return "tenant:" + tenant


# what a route using rate_limit() adds to its OpenAPI operation (read by api/openapi.py)
RATE_LIMIT_DOC: dict[str, Any] = {"responses": [429]}


async def take(request: Request, tenant: str, kind: Kind) -> None:
    """Take one `kind` token for the request's key, or raise RateLimited. Front doors that authenticate in
    their handler (the earlier API, Shotstack) call this after authenticating and answer in their own shape."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    ident = identity(request, tenant)
    if isinstance(limiter.store, RedisBuckets):
        import anyio.to_thread

        await anyio.to_thread.run_sync(limiter.check, kind, ident)
    else:
        limiter.check(kind, ident)


def rate_limit(kind: Kind) -> Callable[..., Awaitable[None]]:
    """A route dependency taking one `kind` token for the request's key (429 when the bucket is empty).

    It authenticates first (a request with a bad key is a 401, not a 429 counted against anyone)."""

    async def limited(request: Request, tenant: Annotated[str, Depends(current_tenant)]) -> None:
        await take(request, tenant, kind)

    limited.__name__ = f"rate_limit_{kind}"
    limited.openapi_doc = RATE_LIMIT_DOC  # type: ignore[attr-defined]
    return limited
