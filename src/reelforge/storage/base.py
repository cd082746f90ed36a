"""The storage seam: one interface over a local folder and an S3-compatible bucket.

Keys are relative, slash-separated names ("jobs/<id>/video.mp4"). They are produced by our own code, but
parts of them (an upload's filename, a job id) can come from users, so every key is checked before it
touches a filesystem path or a bucket: `validate_key` refuses anything that could climb out of the
storage root or alias another key.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from reelforge.errors import UrlNotAllowed

# First key segment reserved for objects being written (never a committed object).
PARTIAL_DIR = ".partial"
DEFAULT_CONTENT_TYPE = "application/octet-stream"
COPY_CHUNK = 1024 * 1024
MAX_PRESIGNED_PUT = 5 * 1024**3  # S3's limit for one PUT; a bigger output goes through the API

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    content_type: str
    sha256: str


def validate_key(key: str, *, prefix: bool = False) -> str:
    """Return `key` if it is a safe relative key, else raise ValueError.

    With `prefix=True` a trailing "/" is allowed (a folder-like prefix for `delete_prefix`).
    """
    if not isinstance(key, str) or not key:
        raise ValueError("a storage key must be a non-empty string")
    if _CONTROL.search(key):
        raise ValueError("a storage key must not contain control characters")
    if "\\" in key:
        raise ValueError("a storage key must use '/' separators")
    if key.startswith("/") or re.match(r"^[A-Za-z]:", key):
        raise ValueError(f"storage key {key!r} must be relative")
    body = key[:-1] if prefix and key.endswith("/") else key
    parts = body.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"storage key {key!r} has an empty, '.' or '..' segment")
    if parts[0] == PARTIAL_DIR:
        raise ValueError(f"storage keys must not start with the reserved {PARTIAL_DIR!r} folder")
    if len(key.encode()) > 1000:
        raise ValueError("a storage key must be at most 1000 bytes")
    return key


def guess_content_type(key: str, given: str | None = None) -> str:
    if given:
        return given
    guessed, _ = mimetypes.guess_type(key, strict=False)
    return guessed or DEFAULT_CONTENT_TYPE


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


class Storage(ABC):
    """Where job outputs and uploaded files live. Implementations: LocalStorage, S3Storage."""

    @abstractmethod
    def put_file(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        """Store a local file under `key`; the object appears only once completely written."""

    @abstractmethod
    def put_stream(self, chunks: Iterable[bytes], key: str, *, max_bytes: int,
                   content_type: str | None = None) -> StoredObject:
        """Store a stream of chunks; more than `max_bytes` raises PayloadTooLarge and stores nothing."""

    def put_moved(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        """put_file for a file the caller gives up (`src` is gone afterwards): local storage renames it into
        place instead of writing it a second time. This default copies, then removes `src`."""
        try:
            return self.put_file(src, key, content_type)
        finally:
            Path(src).unlink(missing_ok=True)

    # a machine without storage credentials (a remote agent) may PUT an object straight to `upload_url`
    presigned_uploads: bool = False

    def upload_url(self, key: str, *, content_type: str, expires_s: int) -> str | None:
        """A URL that takes one PUT of one object (at most MAX_PRESIGNED_PUT bytes, `Content-Type:
        content_type`) to `key`, for a machine holding no credentials; None: uploads go through the API."""
        return None

    def move(self, src: str, dest: str, content_type: str | None = None) -> StoredObject:
        """Give the object `src` the key `dest` (`src` is gone afterwards). Size and SHA-256 are those of the
        bytes under `dest` now. This default copies through this process; local storage renames."""
        size = self.size(src)
        with self.open_read(src) as fh:
            obj = self.put_stream(iter(lambda: fh.read(COPY_CHUNK), b""), dest, max_bytes=max(1, size),
                                  content_type=content_type)
        self.delete(src)
        return obj

    @abstractmethod
    def get_file(self, key: str, dest: Path) -> Path:
        """Download `key` to the file `dest` (parents created); missing key -> NotFound."""

    @abstractmethod
    def open_read(self, key: str) -> BinaryIO:
        """A readable binary file object for `key` (the caller closes it); missing -> NotFound."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes; missing -> NotFound."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove `key`; removing a missing key is not an error."""

    @abstractmethod
    def delete_prefix(self, prefix: str) -> int:
        """Remove every key starting with `prefix` (plain string prefix, as in S3). Returns the count."""

    @abstractmethod
    def url(self, key: str, *, filename: str | None = None) -> str | None:
        """A URL clients can download `key` from, or None when the API must serve the bytes itself."""

    def local_path(self, key: str) -> Path | None:
        """The file backing `key` on this machine (local storage only)."""
        return None

    @abstractmethod
    def check(self) -> None:
        """Health probe; raises ServiceUnavailable when the storage cannot be used."""

    # ---- objects named by `s3://<bucket>/<key>` input references: keys used as given (no prefix)
    def head_external(self, bucket: str, key: str, *, allow_service_prefix: bool = False) -> int:
        """Size in bytes of an object an input reference names; missing -> NotFound.

        Refused (UrlNotAllowed) unless this storage has buckets, `bucket` is its own, and (unless
        `allow_service_prefix`) the key lies outside the service's own folder, where every tenant's uploads
        and outputs live, so tenants cannot read each other's objects by key. A key that names no object
        ("" or ending in "/") is an InputError. This default refuses every such reference.
        """
        raise _no_buckets()

    def read_external(self, bucket: str, key: str, dest: Path, *, allow_service_prefix: bool = False) -> Path:
        """Download an object an input reference names to the file `dest`; same checks as head_external."""
        raise _no_buckets()


def _no_buckets() -> UrlNotAllowed:
    return UrlNotAllowed("s3:// inputs need S3 storage; this server stores files in a local folder. "
                         "Upload the file or give an http(s) URL instead.")
