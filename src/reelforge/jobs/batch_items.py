"""A batch's items: from a bucket listing, a list of references or a manifest; placeholders; filters.

Pure functions (no database, no network): jobs/batches.py lists the bucket and hands the objects in.

Placeholders are `{name}` in any string of the params and in the output file-name pattern; `{{` and `}}`
are literal braces. Nothing else of Python's format syntax exists here (no attribute access, no format
specs), so a template cannot reach anything but the item's own values:

    {input}   the item's input reference (what the job reads)       {index}  0, 1, 2 ... in listing order
    {key}     the object key (prefix sources) or the reference      {rel}    the key below the prefix
    {name}    the file name (last path segment)                     {stem}   the name without its extension
    {ext}     the extension with its dot (".mp4")                   {dir}    `rel`'s folder ("" or "a/b/")
    <column>  every manifest column (CSV) or top-level scalar (JSON lines)
    {output} {out_ext}   in the file-name pattern only: the output's name and its file's extension
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from reelforge.errors import InvalidParams
from reelforge.storage.bucket import ObjectInfo

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MANIFEST_PARAM_PREFIXES = ("param.", "params.")
RESERVED_VARS = frozenset({"input", "index", "key", "rel", "name", "stem", "ext", "dir", "output", "out_ext"})


class TemplateError(ValueError):
    pass


def render(text: str, values: Mapping[str, Any]) -> str:
    """Replace every {name} with values[name]; unknown names and stray braces raise TemplateError."""

    def one(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "{{":
            return "{"
        if whole == "}}":
            return "}"
        name = match.group(1)
        if name is None:
            raise TemplateError(f"a lone {whole!r} in {text!r} (write {whole * 2} for a literal brace)")
        if name not in values:
            known = ", ".join("{" + k + "}" for k in sorted(values))
            raise TemplateError(f"unknown placeholder {{{name}}} in {text!r}; known: {known}")
        return str(values[name])

    return _PLACEHOLDER.sub(one, text)


def render_tree(value: Any, values: Mapping[str, Any], path: str = "params") -> Any:
    """render() on every string of a params tree; TemplateError messages carry the path."""
    if isinstance(value, str):
        try:
            return render(value, values)
        except TemplateError as exc:
            raise TemplateError(f"{path}: {exc}") from None
    if isinstance(value, dict):
        return {k: render_tree(v, values, f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [render_tree(v, values, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


@dataclass
class Item:
    """One item before it is stored: where it comes from, its placeholders and its own params."""

    source: str  # s3://bucket/key, a URL, a file id
    etag: str = ""
    size: int | None = None
    row: int | None = None  # manifest row number (1-based, the header is row 1 of a CSV)
    vars: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # the manifest's per-item params


def path_vars(path: str) -> dict[str, str]:
    name = PurePosixPath(path).name
    suffix = PurePosixPath(name).suffix
    return {"name": name, "stem": name[: len(name) - len(suffix)] if suffix else name, "ext": suffix}


def ref_vars(ref: str) -> dict[str, str]:
    """Placeholders of a reference: its path's name/stem/ext (a file id is its own name)."""
    if ref.startswith(("http://", "https://")):
        try:
            path = unquote(urlsplit(ref).path)
        except ValueError:
            path = ""
    elif ref.startswith("s3://"):
        path = ref[5:].partition("/")[2]
    else:
        path = ref
    return {"key": ref, "rel": PurePosixPath(path).name, "dir": "", **path_vars(path or ref)}


@dataclass(frozen=True)
class Filters:
    glob: str | None = None
    extensions: frozenset[str] = frozenset()
    min_size: int | None = None
    max_size: int | None = None
    modified_after: float | None = None
    modified_before: float | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> Filters:
        def ts(v: Any) -> float | None:
            if v is None:
                return None
            if isinstance(v, str):
                v = datetime.fromisoformat(v.replace("Z", "+00:00"))
            return float(v.timestamp())

        exts = frozenset(("." + e.lower().lstrip(".")) for e in values.get("extensions") or [] if e.strip("."))
        return cls(values.get("glob"), exts, values.get("min_size"), values.get("max_size"),
                   ts(values.get("modified_after")), ts(values.get("modified_before")))

    def keep(self, rel: str, obj: ObjectInfo) -> bool:
        if self.glob and not (fnmatch.fnmatchcase(rel, self.glob)
                              or ("/" not in self.glob and fnmatch.fnmatchcase(PurePosixPath(rel).name, self.glob))):
            return False
        if self.extensions and PurePosixPath(rel).suffix.lower() not in self.extensions:
            return False
        if self.min_size is not None and obj.size < self.min_size:
            return False
        if self.max_size is not None and obj.size > self.max_size:
            return False
        if self.modified_after is not None and obj.mtime <= self.modified_after:
            return False
        return not (self.modified_before is not None and obj.mtime >= self.modified_before)


def from_listing(bucket: str, prefix: str, objects: Iterable[ObjectInfo], filters: Filters) -> list[Item]:
    """Items of a prefix listing: "folder" keys (ending in /) and filtered-out objects are left out."""
    items = []
    for obj in objects:
        if obj.key.endswith("/"):
            continue
        rel = obj.key[len(prefix):].lstrip("/")
        if not rel or not filters.keep(rel, obj):
            continue
        folder = rel.rpartition("/")[0]
        items.append(Item(source=f"s3://{bucket}/{obj.key}", etag=obj.etag, size=obj.size,
                          vars={"key": obj.key, "rel": rel, "dir": f"{folder}/" if folder else "",
                                **path_vars(rel)}))
    return items


def from_refs(refs: Iterable[str]) -> list[Item]:
    return [Item(source=ref.strip(), vars=ref_vars(ref.strip())) for ref in refs if ref.strip()]


def _cell(value: str) -> Any:
    """A CSV param cell: JSON when it reads as a number, true/false, null, an object or a list; else text."""
    text = value.strip()
    if text and (text[0] in "{[-0123456789" or text in ("true", "false", "null")):
        try:
            return json.loads(text)
        except ValueError:
            return value
    return value


def _manifest_item(row: int, data: Mapping[str, Any], errors: list[dict[str, Any]]) -> Item | None:
    ref = data.get("input")
    if not isinstance(ref, str) or not ref.strip():
        errors.append({"row": row, "path": "input",
                       "message": "every row needs an `input` (URL, file id or s3:// key)"})
        return None
    params: dict[str, Any] = {}
    own: dict[str, Any] = {}
    for key, value in data.items():
        if key is None:  # a CSV row with more cells than the header
            errors.append({"row": row, "path": "", "message": "the row has more cells than the header"})
            return None
        if key == "params":
            if not isinstance(value, dict):
                errors.append({"row": row, "path": "params", "message": "must be an object"})
                return None
            params.update(value)
        elif key.startswith(MANIFEST_PARAM_PREFIXES):
            name = key.split(".", 1)[1]
            if value is not None and value != "":
                params[name] = _cell(value) if isinstance(value, str) else value
        elif key != "input":
            if not _NAME.match(key):
                errors.append({"row": row, "path": key, "message": "column names are letters, digits and _"})
                return None
            if key in RESERVED_VARS:
                errors.append({"row": row, "path": key, "message": f"{key!r} is a built-in placeholder"})
                return None
            if isinstance(value, dict | list):
                errors.append({"row": row, "path": key, "message": "placeholder values must be text or numbers"})
                return None
            own[key] = "" if value is None else value
    return Item(source=ref.strip(), row=row, vars={**ref_vars(ref.strip()), **own}, params=params)


def from_manifest(text: str, fmt: str | None) -> list[Item]:
    """Items of a CSV (header row; column `input`, `param.<name>` columns, others placeholders) or JSON lines
    (`input`, `params` object, other scalars placeholders) manifest. Bad rows: one 422 naming every row."""
    if fmt is None:
        fmt = "jsonl" if text.lstrip().startswith("{") else "csv"
    errors: list[dict[str, Any]] = []
    items: list[Item] = []
    if fmt == "jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                errors.append({"row": number, "path": "", "message": f"not JSON: {exc.msg}"})
                continue
            if not isinstance(data, dict):
                errors.append({"row": number, "path": "", "message": "each line must be a JSON object"})
                continue
            item = _manifest_item(number, data, errors)
            if item is not None:
                items.append(item)
    else:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "input" not in reader.fieldnames:
            raise InvalidParams("The manifest's header row has no `input` column.", code="manifest_invalid",
                                details=[{"row": 1, "path": "input", "message": "no input column"}])
        try:
            for data in reader:
                item = _manifest_item(reader.line_num, data, errors)
                if item is not None:
                    items.append(item)
        except csv.Error as exc:
            errors.append({"row": reader.line_num, "path": "", "message": f"not CSV: {exc}"})
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise InvalidParams(f"The manifest has bad rows: row {first['row']}: {first['message']}{more}.",
                            code="manifest_invalid", details=errors[:200])
    return items
