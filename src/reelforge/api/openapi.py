"""The OpenAPI document with every operation's params model in `components/schemas`.

`POST /v1/jobs` takes `params` as an object whose shape depends on `op`, so FastAPI alone would never show
the params models. They are added here in one pass (pydantic's `models_json_schema`), so a model several
ops share, such as `CaptionStyle`, is one component that each op's params refer to.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from reelforge.ops.registry import load_all

REF_TEMPLATE = "#/components/schemas/{model}"


def ops_schemas() -> dict[str, Any]:
    """Component schemas: each op's params model (titled like the model) and every model they use."""
    ops = sorted(load_all().values(), key=lambda o: o.name)
    models = list({id(op.params_model): op.params_model for op in ops}.values())
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF_TEMPLATE)
    return dict(top.get("$defs", {}))


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` include the ops' params schemas (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description,
                               routes=app.routes)
            schemas = spec.setdefault("components", {}).setdefault("schemas", {})
            for name, schema in ops_schemas().items():
                schemas.setdefault(name, schema)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
