"""Every API route of an app, flat, whatever way the installed FastAPI keeps included routers.

Newer FastAPI versions keep an included router as one lazy entry in `app.routes`; `iter_route_contexts`
expands those into route contexts that answer like an APIRoute (path_format, methods, dependant, ...).
Older versions copy each route into `app.routes`. api/openapi.py (the documentation rules) and api/errors.py
(a 405's complete `Allow`) read the routes through here.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI, routing
from starlette.routing import compile_path


def iter_api_routes(app: FastAPI) -> Iterator[Any]:
    """The APIRoutes (or route contexts answering like them) of the app, in order."""
    contexts = getattr(routing, "iter_route_contexts", None)
    if contexts is None:  # pragma: no cover - older FastAPI: included routes are copied into app.routes
        yield from (r for r in app.routes if isinstance(r, routing.APIRoute))
        return
    for ctx in contexts(app.routes):
        if isinstance(ctx.original_route, routing.APIRoute):
            yield ctx


_REGEX_CACHE: dict[str, re.Pattern[str]] = {}


def methods_at(app: FastAPI, path: str) -> list[str]:
    """Every method some API route serves at this concrete path (one route per method is common)."""
    methods: set[str] = set()
    for route in iter_api_routes(app):
        fmt = route.path_format
        regex = _REGEX_CACHE.get(fmt)
        if regex is None:
            regex = _REGEX_CACHE[fmt] = compile_path(route.path)[0]
        if regex.match(path):
            methods |= set(route.methods or ())
    return sorted(methods)
