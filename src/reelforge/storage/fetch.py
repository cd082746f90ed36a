"""The input resolver jobs use: an input reference in, a local file out.

    file_<32 hex>        an uploaded file; `lookup_file(id)` maps it to a storage key for this tenant
    s3://bucket/key      a key in the configured bucket (S3 storage only), used as given
    http(s)://...        downloaded with the SSRF guard: every hop re-checked, connections pinned to the
                         checked address (see storage/pinned.py), size capped, timeouts applied

Everything else (including the pipeline's own `step://` references) is an InputError. Downloads are
written to a temporary name in the destination folder and renamed when complete, so a failed fetch
never leaves a plausible-looking partial input behind.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
import re
import uuid
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

import httpx

from reelforge.config import Settings
from reelforge.errors import InputError, NotFound, UrlNotAllowed
from reelforge.refs import InputRef, parse_ref
from reelforge.runtime import Resolver
from reelforge.storage.base import Storage
from reelforge.storage.pinned import send_pinned
from reelforge.storage.urlguard import check_resolved_host

MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "ReelForge-fetch/1"
_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]+")

Guard = Callable[[str], list[str]]  # URL -> checked addresses, or raises UrlNotAllowed


def shown_url(url: str) -> str:
    """A URL for messages: without query or fragment (they often hold signatures or tokens)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unbalanced "[" in the host
        return url.split("?", 1)[0][:100]
    return f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme and parts.netloc else url[:100]


def safe_suffix(name: str) -> str:
    suffix = PurePosixPath(unquote(name)).suffix.lower()
    return suffix if _SUFFIX.fullmatch(suffix) else ""


# Media types whose standard-library guess is missing or odd.
_TYPE_SUFFIX = {"audio/wav": ".wav", "audio/wave": ".wav", "audio/x-wav": ".wav", "audio/mpeg": ".mp3",
                "audio/mp4": ".m4a", "audio/ogg": ".ogg", "video/quicktime": ".mov", "video/webm": ".webm",
                "video/x-matroska": ".mkv", "image/jpeg": ".jpg", "image/webp": ".webp"}


def suffix_for_type(content_type: str) -> str:
    ctype = content_type.lower()
    suffix = _TYPE_SUFFIX.get(ctype) or (mimetypes.guess_extension(ctype) if ctype else None) or ""
    return suffix if _SUFFIX.fullmatch(suffix) else ""


def local_name(source: str, name_hint: str, suffix: str) -> str:
    """A file name that keeps an extension (ffmpeg uses it) and cannot collide between inputs."""
    stem = _UNSAFE_NAME.sub("_", PurePosixPath(unquote(name_hint)).stem).strip("_")[:40] or "input"
    tag = hashlib.sha256(source.encode()).hexdigest()[:10]
    return f"{stem}-{tag}{suffix}"


def write_atomically(chunks: Iterable[bytes], dest: Path) -> Path:
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
    try:
        with tmp.open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


class UrlFetcher:
    """Downloads http(s) inputs under the SSRF guard. `guard` checks a URL and returns its addresses."""

    def __init__(self, *, max_bytes: int, timeout_s: float, guard: Guard,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.max_bytes = max_bytes
        self.timeout = httpx.Timeout(timeout_s)
        self.guard = guard
        self.transport = transport

    def fetch(self, url: str, dest_dir: Path) -> Path:
        current = url
        with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False,
                          transport=self.transport,
                          headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}) as client:
            # Our own redirect loop: httpx would follow a redirect to 127.0.0.1 without asking the guard.
            for hop in range(MAX_REDIRECTS + 1):
                try:
                    addrs = self._check(current)
                except UrlNotAllowed as exc:
                    if hop == 0:
                        raise
                    raise UrlNotAllowed(f"The input URL {shown_url(url)} redirected to a URL that is not "
                                        f"allowed. {exc.message}", code=exc.code) from exc
                response = self._open(client, current, addrs)
                try:
                    if response.status_code in REDIRECT_CODES:
                        location = response.headers.get("location")
                        if not location:
                            raise InputError(f"The input URL {shown_url(current)} redirected without a "
                                             "Location.", code="input_fetch_failed")
                        current = self._join(current, location)
                        continue
                    if not response.is_success:
                        raise InputError(
                            f"The input URL {shown_url(current)} answered HTTP {response.status_code} "
                            f"({response.reason_phrase or 'error'}).", code="input_fetch_failed")
                    return self._save(response, url, current, dest_dir)
                finally:
                    response.close()
        raise InputError(f"The input URL {shown_url(url)} redirected more than {MAX_REDIRECTS} times.",
                         code="input_fetch_failed")

    def _check(self, url: str) -> list[str]:
        try:
            return self.guard(url)
        except ValueError as exc:  # e.g. a port out of range or an un-encodable host name
            raise InputError(f"The URL {shown_url(url)} is not valid ({exc}).", code="input_invalid") from exc

    @staticmethod
    def _join(current: str, location: str) -> str:
        try:
            return str(httpx.URL(current).join(location))
        except (httpx.InvalidURL, ValueError) as exc:
            raise InputError(f"The input URL {shown_url(current)} redirected to an invalid URL.",
                             code="input_fetch_failed") from exc

    def _open(self, client: httpx.Client, url: str, addrs: list[str]) -> httpx.Response:
        try:
            return send_pinned(client, "GET", url, addrs)
        except httpx.InvalidURL as exc:
            raise InputError(f"The URL {shown_url(url)} is not valid.", code="input_invalid") from exc
        except httpx.TimeoutException as exc:
            raise InputError(f"The input URL {shown_url(url)} did not answer in time.",
                             code="input_unreachable") from exc
        except httpx.HTTPError as exc:
            raise InputError(f"The input URL {shown_url(url)} could not be reached "
                             f"({type(exc).__name__}).", code="input_unreachable") from exc

    def _too_large(self, url: str) -> InputError:
        return InputError(f"The input at {shown_url(url)} is larger than the limit of {self.max_bytes} "
                          "bytes.", code="input_too_large")

    def _save(self, response: httpx.Response, original: str, final: str, dest_dir: Path) -> Path:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes:
            raise self._too_large(final)  # refuse before reading a byte
        ctype = response.headers.get("content-type", "").split(";")[0].strip()
        suffix = (safe_suffix(urlsplit(original).path) or safe_suffix(urlsplit(final).path)
                  or suffix_for_type(ctype))
        name_hint = PurePosixPath(urlsplit(original).path).name or "input"
        dest = Path(dest_dir) / local_name(original, name_hint, suffix)

        def capped() -> Iterable[bytes]:
            # Counted as received, so a missing or lying Content-Length cannot get past the cap; decoded
            # bytes are counted, so a compressed body cannot inflate past it either.
            received = 0
            for chunk in response.iter_bytes(1024 * 1024):
                received += len(chunk)
                if received > self.max_bytes:
                    raise self._too_large(final)
                yield chunk

        try:
            return write_atomically(capped(), dest)
        except httpx.TimeoutException as exc:
            raise InputError(f"The download of {shown_url(final)} stalled.",
                             code="input_unreachable") from exc
        except httpx.HTTPError as exc:
            raise InputError(f"The download of {shown_url(final)} broke off ({type(exc).__name__}).",
                             code="input_unreachable") from exc


def _not_found(ref: str) -> InputError:
    # Same sentence for "no such id" and "another tenant's id", so ids cannot be probed.
    return InputError(f"Input file {ref!r} was not found.", code="input_not_found")


def make_resolver(settings: Settings, storage: Storage, *, lookup_file: Callable[[str], str | None],
                  guard: Guard | None = None, allow_service_prefix: bool = False) -> Resolver:
    """The resolver a job's OpContext uses for its inputs.

    `lookup_file(file_id)` returns the storage key of an uploaded file the job's tenant may read, else
    None. `guard` replaces the URL check (tests); by default it is urlguard.check_resolved_host with
    settings.limits.fetch_allow_private. `s3://` keys under the service's own prefix (where every tenant's
    uploads and outputs live) are refused unless `allow_service_prefix`, so tenants cannot read each
    other's objects by key; such objects are referenced by file id instead.
    """
    fetcher = UrlFetcher(
        max_bytes=settings.limits.max_fetch_bytes, timeout_s=settings.limits.fetch_timeout_s,
        guard=guard or partial(check_resolved_host, allow_private=settings.limits.fetch_allow_private))

    def resolve_file_id(ref: str, dest_dir: Path) -> Path:
        key = lookup_file(ref)
        if not key:
            raise _not_found(ref)
        dest = Path(dest_dir) / f"{ref}{safe_suffix(key)}"
        try:
            return storage.get_file(key, dest)
        except NotFound as exc:
            raise _not_found(ref) from exc

    def resolve_s3(parsed: InputRef, dest_dir: Path) -> Path:
        ref, bucket, key = parsed.text, parsed.bucket, parsed.key
        try:
            size = storage.head_external(bucket, key, allow_service_prefix=allow_service_prefix)
            if size > settings.limits.max_fetch_bytes:
                raise InputError(f"The input {ref!r} is larger than the limit of {settings.limits.max_fetch_bytes} "
                                 "bytes.", code="input_too_large")
            dest = Path(dest_dir) / local_name(ref, key.rsplit("/", 1)[-1], safe_suffix(key))
            return storage.read_external(bucket, key, dest, allow_service_prefix=allow_service_prefix)
        except NotFound as exc:
            raise InputError(f"The object {ref!r} does not exist.", code="input_not_found") from exc

    def resolve_job_output(ref: str, dest_dir: Path) -> Path:
        key = lookup_file(ref)  # only what the service put in the job's payload (a chunked render's chunks)
        if not key:
            raise _not_found(ref)
        try:
            return storage.get_file(key, Path(dest_dir) / local_name(ref, key.rsplit("/", 1)[-1], safe_suffix(key)))
        except NotFound as exc:
            raise _not_found(ref) from exc

    def resolve(ref: str, dest_dir: Path) -> Path:
        parsed = parse_ref(ref)
        if parsed.kind == "file":
            return resolve_file_id(ref, dest_dir)
        if parsed.kind == "job":
            return resolve_job_output(ref, dest_dir)
        if parsed.kind == "url":
            return fetcher.fetch(ref, dest_dir)
        if parsed.kind == "s3":
            return resolve_s3(parsed, dest_dir)
        if parsed.kind == "step":
            raise InputError(f"The reference {ref!r} only works inside a pipeline's steps.",
                             code="input_invalid")
        raise InputError(f"The input {ref[:100]!r} is not an uploaded file id (file_...), an http(s) URL or "
                         "an s3:// key.", code="input_invalid")

    return resolve
