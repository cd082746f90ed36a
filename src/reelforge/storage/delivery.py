"""Where a job's named outputs land when a front door chooses the place: `<delivery root>/<path>/<name>`.

The earlier API (seed 004) let clients say where each output goes in the bucket (`path` + `output_filename`).
Those names come from users, so they are confined here: the key is always under the tenant's own delivery
root (`storage.delivery_root`, default `delivered/{tenant}/`, itself under the storage's prefix), never
absolute, never climbing with `..`, never inside the service's own folders (`jobs/`, `uploads/`, ...), and a
tenant name that is not a plain key segment is replaced by a digest so that no two tenants share a root.
Other tenants' deliveries are therefore out of reach, and `s3://` input references cannot read any of them
(they refuse keys inside the service's prefix).
"""

from __future__ import annotations

import hashlib
import re

from reelforge.storage.base import validate_key

_PLAIN_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@+=-]{0,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def tenant_segment(tenant: str) -> str:
    """The tenant's name as one key segment: itself when plain, else a digest (so 'a/b' cannot alias 'a')."""
    if _PLAIN_SEGMENT.match(tenant) and tenant not in (".", ".."):
        return tenant
    return "t-" + hashlib.sha256(tenant.encode()).hexdigest()[:24]


def tenant_root(root_template: str, tenant: str) -> str:
    """`storage.delivery_root` with the tenant filled in (always ends with '/')."""
    root = root_template.replace("{tenant}", tenant_segment(tenant))
    return root if root.endswith("/") else root + "/"


def relative_path(path: str, filename: str | None = None) -> str:
    """A client's folder (`path`) and file name joined into a relative key; ValueError says what is wrong."""
    if not isinstance(path, str):
        raise ValueError("must be a string")
    folder = path.strip()
    if _CONTROL.search(folder) or (filename and _CONTROL.search(filename)):
        raise ValueError("must not contain control characters")
    if "\\" in folder:
        raise ValueError("must use '/' separators")
    if folder.startswith("/") or re.match(r"^[A-Za-z]:", folder) or "://" in folder:
        raise ValueError("must be relative to the bucket (no leading '/', drive or scheme)")
    folder = folder.rstrip("/")
    parts = folder.split("/") if folder else []
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError("must not have empty, '.' or '..' segments")
    if filename is not None:
        name = filename.strip()
        if not name or "/" in name or "\\" in name or name in (".", ".."):
            raise ValueError("the file name must be a plain name (no '/')")
        parts.append(name)
    if not parts:
        raise ValueError("names no file")
    return "/".join(parts)


def delivery_key(root_template: str, tenant: str, relative: str) -> str:
    """The storage key (relative to the storage's prefix) for a tenant's relative output path."""
    return validate_key(tenant_root(root_template, tenant) + relative_path(relative))
