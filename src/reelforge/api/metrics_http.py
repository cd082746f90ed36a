"""HTTP request metrics: a pure ASGI middleware (no per-request objects beyond a closure), labelled by the
route's path template (`/v1/jobs/{job_id}`, never the raw path: bounded label values), method and status
code; requests that match no route are counted as route "unmatched"."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("reelforge_http_requests_total", "HTTP requests answered by this API process, by route "
                        "template, method and status code", ["route", "method", "status"])
HTTP_SECONDS = Histogram("reelforge_http_request_duration_seconds", "Time to answer an HTTP request (to its last "
                         "byte: event streams count their whole life), by route template and method",
                         ["route", "method"],
                         buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120))

Scope = dict[str, Any]


class HttpMetrics:
    def __init__(self, app: Any) -> None:
        self.app = app
        # the labelled children, looked up once per (route, method, status): labels() takes a lock and
        # builds a tuple per call; the label values are bounded (route templates), so is this cache
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._histograms: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def observe(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, observe)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = str(scope.get("method", ""))
            key = (route, method, str(status))
            counter = self._counters.get(key)
            if counter is None:
                counter = self._counters[key] = HTTP_REQUESTS.labels(route=route, method=method, status=key[2])
            counter.inc()
            histogram = self._histograms.get(key[:2])
            if histogram is None:
                histogram = self._histograms[(route, method)] = HTTP_SECONDS.labels(route=route, method=method)
            histogram.observe(time.perf_counter() - started)
