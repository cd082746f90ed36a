"""The OpenAPI document, exact enough that a generated client and a schema fuzzer need no hand edits.

FastAPI writes the document from the routes; `install_openapi` then applies the service-wide rules below in
one pass, so a new route gets them without doing anything:

- errors: every error status is the real body, `ErrorResponse` (api/errors.py), never FastAPI's
  `HTTPValidationError`; each operation lists the statuses it can answer: 400/413/422 when it takes a body,
  422 when it takes parameters, 404 when its path has parameters, 503 always, plus what its dependencies
  declare (`openapi_doc` on the dependency: 401 for authenticated routes, 429 for rate-limited ones with
  `Retry-After`). A route adds its own with `responses=error_responses(409)`; what a route declares itself
  wins over the rules.
- security: `ApiKey` (`X-API-Key`) and `Bearer` schemes on every route that depends on `current_tenant`;
  optional (`{}` in the list) when this service does not require keys (a loopback bind), so the document says
  what this service enforces.
- jobs: `JobCreate` is a union of one variant per operation, discriminated by `op` (a `const`), whose
  `params` is that op's params model; `op` in a `JobView` is the enum of this service's operations. The server
  validates exactly as before (JobService, against the op's model); the document only describes it.
- names: a route's operationId is its function's name (unique, checked here), so a generated client has
  `submit_job`, `get_job`, ... and body models like `UploadFileBody`.
- bodies that are not JSON: `binary_response()` for downloads (+ the 307 redirect to storage),
  `EVENT_STREAM` for server-sent events, `UPLOAD_BODY` for POST /v1/files (raw bytes or multipart).

The document is built once per app (the first request for it), from this service's settings and the
operations registered at that time (plugins included).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from reelforge.api.errors import STATUS_TEXT, ErrorResponse
from reelforge.api.routing import iter_api_routes
from reelforge.ops.registry import Operation, load_all

REF_TEMPLATE = "#/components/schemas/{model}"
ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
BODY_METHODS = {"post", "put", "patch"}
ALWAYS = (503,)
# openapi_extra={OWN_ERRORS: True}: a front door whose errors have another shape (a foreign API's) documents
# its error responses itself; the rules below then leave that operation alone
OWN_ERRORS = "x-reelforge-own-errors"
# openapi_extra={"security": KEY_SECURITY, OWN_AUTH: "keys_required"}: a route that authenticates inside its
# handler (to answer 401 in its own shape) declares the key schemes itself; optional when that setting is off
OWN_AUTH = "x-reelforge-auth"
KEY_SECURITY: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
# json_body(): models of bodies that routes read themselves (not FastAPI Body params), added to the components
BODY_MODELS: dict[str, type[BaseModel]] = {}

# ---- declarations a route uses in its decorator -----------------------------------------------------------


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for route-specific error statuses, e.g. `responses=error_responses(409)`."""
    return {status: {"model": ErrorResponse, "description": STATUS_TEXT.get(status, "Error")} for status in statuses}


def json_body(model: type[BaseModel], description: str) -> dict[str, Any]:
    """`openapi_extra={"requestBody": json_body(Model, "...")}` for a JSON body a route reads itself (so its
    errors keep its own shape): the document names `Model`, and build_openapi adds its schema."""
    BODY_MODELS[model.__name__] = model
    return {"required": True, "description": description,
            "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=model.__name__)}}}}


def binary_response(what: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route answering with a file's bytes, or a 307 to where storage serves them."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {
        200: {"description": f"{what}: the bytes, with the stored content type",
              "content": {"application/octet-stream": binary, "*/*": binary}},
        307: {"description": f"{what} is in object storage: `Location` is a presigned (or public) URL",
              "headers": {"Location": {"schema": {"type": "string"}, "description": "Where to download it"}}},
    }


EVENT_STREAM: dict[int | str, dict[str, Any]] = {
    200: {"description": "Server-sent events until the job ends: `event: progress` with "
                         "`data: {\"status\", \"stage\", \"progress\"}` on each change, then one `event: done` whose "
                         "data is the final JobView; `: keep-alive` comments every 15 s in between",
          # each event (OpenAPI 3.2's itemSchema, which Schemathesis reads); no `schema`: the body as a whole
          # is the raw stream (a generated client hands it over as bytes)
          "content": {"text/event-stream": {"itemSchema": {
              "title": "JobEvent", "type": "object", "required": ["event", "data"],
              "properties": {"event": {"type": "string", "enum": ["progress", "done"]},
                             "data": {"type": "string", "contentMediaType": "application/json",
                                      "description": "JSON: {status, stage, progress}, or the JobView for done"},
                             "id": {"type": "string"}, "retry": {"type": "integer"}}}}}},
}

UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file: the raw bytes as the body (name it with `?filename=`), or multipart with the "
                       "file in a field named `file`",
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary", "minLength": 1}},
            "multipart/form-data": {
                "schema": {"type": "object", "title": "UploadFileBody", "required": ["file"],
                           "properties": {"file": {"type": "string", "format": "binary", "minLength": 1}}},
            },
        },
    },
}

# ---- the pass over the document ---------------------------------------------------------------------------


def ops_schemas(ops: list[Operation]) -> dict[str, Any]:
    """Component schemas: each op's params model (titled like the model) and every model they use."""
    models = list({id(op.params_model): op.params_model for op in ops}.values())
    _, top = models_json_schema([(m, "validation") for m in models], ref_template=REF_TEMPLATE)
    return dict(top.get("$defs", {}))


def _camel(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)


def _required_fields(model: type[BaseModel]) -> bool:
    return any(field.is_required() for field in model.model_fields.values())


def job_create_union(spec: dict[str, Any], ops: list[Operation]) -> None:
    """Replace the JobCreate component by a union of one variant per op, discriminated by `op`."""
    schemas = spec["components"]["schemas"]
    base = schemas.get("JobCreate")
    if base is None:
        return
    mapping: dict[str, str] = {}
    variants = []
    for op in ops:
        name = f"{_camel(op.name)}JobCreate"
        variant = copy.deepcopy(base)
        variant["title"] = name
        variant["description"] = f"A `{op.name}` job: {op.summary}"
        props = variant["properties"]
        props["op"] = {"type": "string", "const": op.name, "title": "Op"}
        props["params"] = {"$ref": REF_TEMPLATE.format(model=op.params_model.__name__)}
        variant["required"] = ["op", "params"] if _required_fields(op.params_model) else ["op"]
        schemas[name] = variant
        ref = REF_TEMPLATE.format(model=name)
        mapping[op.name] = ref
        variants.append({"$ref": ref})
    schemas["JobCreate"] = {
        "title": "JobCreate",
        "description": "A job submission: `op` names the operation (GET /v1/ops), `params` are that operation's",
        "oneOf": variants,
        "discriminator": {"propertyName": "op", "mapping": mapping},
    }


def op_enum(spec: dict[str, Any], ops: list[Operation]) -> None:
    schemas = spec["components"]["schemas"]
    schemas["OpName"] = {"title": "OpName", "type": "string", "enum": [op.name for op in ops],
                         "description": "The operations this service runs"}
    view = schemas.get("JobView")
    if view is not None:
        view["properties"]["op"] = {"$ref": REF_TEMPLATE.format(model="OpName")}


def _dependency_docs(route: Any) -> Iterator[dict[str, Any]]:
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        doc = getattr(dep.call, "openapi_doc", None)
        if isinstance(doc, dict):
            yield doc
        stack.extend(dep.dependencies)


def _error_entry(status: int) -> dict[str, Any]:
    entry: dict[str, Any] = {"description": STATUS_TEXT.get(status, "Error"),
                             "content": {"application/json": {"schema": ERROR_REF}}}
    if status == 429:
        entry["headers"] = {"Retry-After": {"description": "Seconds until the next such request is allowed",
                                            "schema": {"type": "integer"}}}
    return entry


def apply_rules(spec: dict[str, Any], app: FastAPI) -> None:
    """Error responses and security requirements on every operation (the rules in the module docstring)."""
    settings = app.state.settings
    for route in iter_api_routes(app):
        if not route.include_in_schema:
            continue
        path_item = spec["paths"].get(route.path_format, {})
        docs = list(_dependency_docs(route))
        for method in route.methods:
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            own_auth = operation.pop(OWN_AUTH, None)
            if own_auth and not getattr(settings, own_auth) and operation.get("security"):
                operation["security"] = [*operation["security"], {}]
            if operation.pop(OWN_ERRORS, False):
                continue
            responses = operation.setdefault("responses", {})
            statuses = set(ALWAYS)
            if method.lower() in BODY_METHODS and (route.body_field is not None or "requestBody" in operation):
                statuses |= {400, 413, 422}
            if operation.get("parameters"):
                statuses.add(422)
            if "{" in route.path_format:
                statuses.add(404)
            for doc in docs:
                statuses |= set(doc.get("responses", ()))
            for status in sorted(statuses):
                key = str(status)
                existing = responses.get(key)
                if existing is None or _is_fastapi_validation(existing):
                    responses[key] = _error_entry(status)
                elif status == 429 and "headers" not in existing:
                    existing["headers"] = _error_entry(429)["headers"]
            auth = next((d["auth"] for d in docs if "auth" in d), None)
            if auth and auth != "always" and not getattr(settings, auth) and operation.get("security"):
                operation["security"] = [*operation["security"], {}]
    schemas = spec.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        if not _referenced(spec, unused):
            schemas.pop(unused, None)


def _is_fastapi_validation(entry: dict[str, Any]) -> bool:
    schema = entry.get("content", {}).get("application/json", {}).get("schema", {})
    return schema.get("$ref", "").endswith("/HTTPValidationError")


def _referenced(spec: dict[str, Any], name: str) -> bool:
    target = REF_TEMPLATE.format(model=name)

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            return node.get("$ref") == target or any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    return walk(spec.get("paths", {})) or walk(
        {k: v for k, v in spec.get("components", {}).get("schemas", {}).items() if k != name})


def operation_id(route: Any) -> str:
    """A route's operationId: its function's name (`submit_job`), which generated clients name methods by."""
    return str(route.name)


def check_operation_ids(spec: dict[str, Any]) -> None:
    seen: dict[str, str] = {}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            op_id = operation.get("operationId")
            if op_id in seen:
                raise RuntimeError(f"two routes are both named {op_id!r} ({seen[op_id]} and {method.upper()} {path}): "
                                   "a route function's name is its operationId, so it must be unique")
            seen[op_id] = f"{method.upper()} {path}"


def build_openapi(app: FastAPI) -> dict[str, Any]:
    spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    check_operation_ids(spec)
    ops = sorted(load_all().values(), key=lambda o: o.name)
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in ops_schemas(ops).items():
        schemas.setdefault(name, schema)
    schemas.setdefault("ErrorResponse", ErrorResponse.model_json_schema(ref_template=REF_TEMPLATE))
    if BODY_MODELS:
        _, top = models_json_schema([(m, "validation") for m in BODY_MODELS.values()], ref_template=REF_TEMPLATE)
        for name, schema in top.get("$defs", {}).items():
            schemas.setdefault(name, schema)
    for name, schema in ErrorResponse.model_json_schema(ref_template=REF_TEMPLATE).get("$defs", {}).items():
        schemas.setdefault(name, schema)
    schemas["ErrorResponse"].pop("$defs", None)
    job_create_union(spec, ops)
    op_enum(spec, ops)
    apply_rules(spec, app)
    return spec


def install_openapi(app: FastAPI) -> None:
    """Make `app.openapi()` the exact document (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
