"""Database calls from async routes, on a small thread pool of their own.

FastAPI's run_in_threadpool shares anyio's default pool of 40 threads with every sync route and upload
write. Under a few hundred concurrent clients all 40 then run store reads at once: they contend for the
GIL with the event loop (each hand-off costs up to a switch interval), overflow SQLAlchemy's connection
pool (overflow connections are opened and closed per checkout, PRAGMAs included), and a request's latency
becomes the wait behind all of them. A store read takes well under a millisecond, so a few threads keep
up with the loop; the rest of the requests wait for a thread in order, on the event loop, costing nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from anyio import CapacityLimiter
from fastapi import Request

T = TypeVar("T")
DB_THREADS = 8


def make_limiter() -> CapacityLimiter:
    return CapacityLimiter(DB_THREADS)


async def run_db(request: Request, fn: Callable[..., T], *args: Any) -> T:
    limiter: CapacityLimiter | None = getattr(request.app.state, "db_limiter", None)
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter)
