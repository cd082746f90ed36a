"""The input-reference grammar, parsed in one place.

    file_<32 hex>             an uploaded file (`kind="file"`)
    http://... | https://...  a URL (`kind="url"`)
    s3://<bucket>/<key>       an object in a bucket (`kind="s3"`)
    step://<step>/<output>    a file another pipeline step produced (`kind="step"`)
    file:///path              a local path, for tests and the CLI's local mode (`kind="local"`)
    job://<job id>/<output>   another job's output (`kind="job"`): only in what the service itself hands
                              a job (a chunked render's chunks, the files a chunked build's parent stored
                              for its children: docs/CHUNKED.md), never from a client; a remote worker's
                              fork may name only its own job's fork files (validation context `job_refs`)

Anything else is `kind="other"` (a plain local path in tests, or an error where only the forms above are
accepted). Schemes are case-insensitive (RFC 3986); the rest is kept as given. Used by ops/params.py
(`MediaRef` checks at submit time), storage/fetch.py (which resolver), the API (file ids for ownership
checks) and pipelines/graph.py (step refs). `check_url_syntax` is the submit-time form of an acceptable
URL (storage/urlguard.py checks the resolved addresses again at fetch time); `MediaRef` is the pydantic
type of an op parameter that names an input.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, ValidationInfo

FILE_ID_RE = re.compile(r"file_[0-9a-f]{32}\Z")  # \Z: .match() and .fullmatch() agree
STEP_SCHEME = "step://"
RefKind = Literal["file", "url", "s3", "step", "local", "job", "other"]
# The forms a client may send (everything but local paths).
CLIENT_KINDS: frozenset[RefKind] = frozenset({"file", "url", "s3", "step"})

_KIND_BY_SCHEME: dict[str, RefKind] = {"http": "url", "https": "url", "s3": "s3", "step": "step",
                                       "file": "local", "job": "job"}


@dataclass(frozen=True)
class InputRef:
    """A parsed reference. `bucket`/`key` are set for s3, `step`/`output` for step refs ("" if absent)."""

    text: str
    kind: RefKind
    bucket: str = ""
    key: str = ""
    step: str = ""
    output: str = ""

    @property
    def is_step_output(self) -> bool:
        """A well-formed `step://<step>/<output>` (both parts present, no "/" in the output name)."""
        return self.kind == "step" and bool(self.step) and bool(self.output) and "/" not in self.output


def is_file_id(value: Any) -> bool:
    return isinstance(value, str) and FILE_ID_RE.fullmatch(value) is not None


def scheme_of(text: str) -> str:
    """The lower-cased scheme of `text` ("" when it has none)."""
    head, sep, _ = text.partition("://")
    return head.lower() if sep and head.isascii() and head.isalnum() else ""


def parse_ref(text: str) -> InputRef:
    if is_file_id(text):
        return InputRef(text, "file")
    scheme = scheme_of(text)
    kind = _KIND_BY_SCHEME.get(scheme, "other")
    rest = text[len(scheme) + 3:] if scheme else ""
    if kind == "s3":
        bucket, _, key = rest.partition("/")
        return InputRef(text, kind, bucket=bucket, key=key)
    if kind == "step":
        step, _, output = rest.partition("/")
        return InputRef(text, kind, step=step, output=output)
    return InputRef(text, kind)


def _strings_in(value: Any, keep: Callable[[str], bool]) -> list[str]:
    """Every string anywhere in a params tree (pipelines and timelines nest them) that `keep` accepts, in order."""
    if isinstance(value, str):
        return [value] if keep(value) else []
    if isinstance(value, Mapping):
        return [f for v in value.values() for f in _strings_in(v, keep)]
    if isinstance(value, list | tuple):
        return [f for v in value for f in _strings_in(v, keep)]
    return []


def file_ids_in(value: Any) -> list[str]:
    """Every uploaded-file id anywhere in a params tree, in order."""
    return _strings_in(value, is_file_id)


def job_refs_in(value: Any) -> list[str]:
    """Every `job://` reference anywhere in a params tree, in order."""
    return _strings_in(value, lambda text: parse_ref(text).kind == "job")


_INPUT_KINDS: frozenset[RefKind] = frozenset({"file", "url", "s3", "local", "job"})


def input_refs_in(value: Any) -> list[str]:
    """Every string anywhere in a params tree that names an input by one of the forms above (a step ref and
    plain text do not), in order."""
    return _strings_in(value, lambda text: parse_ref(text).kind in _INPUT_KINDS)


def job_output_ref(job_id: str, output: str) -> str:
    """The reference to another job's output: `job://<job id>/<output>` (see the module docstring)."""
    return f"job://{job_id}/{output}"


def step_url(step: str, output: str) -> str:
    """The placeholder form of a step output ref: `step://<step>/<output>`."""
    return f"{STEP_SCHEME}{step}/{output}"


# ---- http(s) URLs: the form accepted at submit time (every resolved address is checked again at fetch
# time by storage/urlguard.py, since DNS can point a public name at a private address)
_BLOCKED_NAMES = {"localhost", "localhost.localdomain", "metadata.google.internal", "metadata"}


def ip_is_public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_reserved
                or ip.is_unspecified or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT))


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address a literal host means, including legacy IPv4 forms (2130706433, 0x7f.1, 127.1)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if all(c in "0123456789abcdefx." for c in host) and any(c.isdigit() for c in host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def check_url_syntax(url: str, *, allow_private: bool = False) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("only http and https URLs can be fetched")
    host = (parts.hostname or "").lower().rstrip(".")
    if not host:
        raise ValueError("the URL has no host")
    if parts.username or parts.password:
        raise ValueError("URLs with credentials are not accepted")
    if allow_private:
        return
    if host in _BLOCKED_NAMES or host.endswith(".localhost") or host.endswith(".internal"):
        raise ValueError(f"the host {host!r} is not a public address")
    ip = _literal_ip(host)
    if ip is None:
        return  # a name: resolved and checked at fetch time
    if not ip_is_public(ip):
        raise ValueError(f"the address {host} is not public (loopback, private, link-local or reserved)")


# ---- MediaRef: an op parameter that names an input
def _check_media_ref(value: str, info: ValidationInfo) -> str:
    value = value.strip()
    if not value:
        raise ValueError("an input reference must not be empty")
    ctx: dict[str, Any] = info.context or {}
    if ctx.get("source") != "api":
        return value  # tests and local use: a plain local path is fine, the context resolves it
    kind = parse_ref(value).kind
    if kind == "job" and value in ctx.get("job_refs", ()):
        return value  # a remote worker's fork: the files its job stored for its children (jobs/agents.py)
    if kind not in CLIENT_KINDS:
        raise ValueError(
            "must be an uploaded file id (file_...), an http(s) URL, or an s3:// key in the configured bucket"
        )
    if kind == "url":
        check_url_syntax(value, allow_private=bool(ctx.get("allow_private")))
    if kind == "s3" and "s3_bucket" in ctx:
        bucket = parse_ref(value).bucket
        if not ctx["s3_bucket"]:
            raise ValueError("s3:// inputs need S3 storage; this service stores files locally (upload the file "
                             "or pass a URL)")
        if bucket != ctx["s3_bucket"]:
            raise ValueError(f"s3://{bucket}/... is not the configured bucket {ctx['s3_bucket']!r}; this "
                             "service reads only its own bucket (pass a presigned URL for other buckets)")
    return value


# When params are validated by the API (validation context {"source": "api"}) the form is checked strictly
# at submit time; otherwise a plain local path is accepted too.
MediaRef = Annotated[str, AfterValidator(_check_media_ref)]
