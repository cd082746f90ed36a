"""Storage for a machine that holds no storage credentials (a remote agent and its job hosts).

`UrlFiles`: a job's uploaded inputs read by URL — a presigned GET (S3) or the API's one-job download route
(local storage), as the job's envelope gives them. The job token goes as a Bearer header only to URLs
under the API's own base, never to a presigned URL (S3 would refuse a second signature, and a token must
not leak to another host). These URLs come from the service itself, not from users, so they are not put
through the user-URL guard (the API is often on a private address); size is still capped.

Every other storage operation is refused: such a machine has no storage of its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, NoReturn

import httpx

from reelforge.errors import NotFound, PayloadTooLarge, ServiceUnavailable
from reelforge.storage.base import Storage, StoredObject

CHUNK = 1024 * 1024


def _refuse(what: str) -> NoReturn:
    raise ServiceUnavailable(f"This worker has no storage of its own ({what}); it reads and writes job files "
                             "only through the service.", code="no_storage")


class NoStorage(Storage):
    """A Storage that refuses everything; subclasses allow what their job needs."""

    def put_file(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        _refuse("put_file")

    def put_stream(self, chunks: Iterable[bytes], key: str, *, max_bytes: int,
                   content_type: str | None = None) -> StoredObject:
        _refuse("put_stream")

    def get_file(self, key: str, dest: Path) -> Path:
        _refuse("get_file")

    def open_read(self, key: str) -> BinaryIO:
        _refuse("open_read")

    def exists(self, key: str) -> bool:
        return False

    def size(self, key: str) -> int:
        raise NotFound(f"No object {key!r} on this worker.", code="not_found")

    def delete(self, key: str) -> None:
        return None

    def delete_prefix(self, prefix: str) -> int:
        return 0  # nothing is stored here; uncommitted uploads are the service's to drop

    def url(self, key: str, *, filename: str | None = None) -> str | None:
        return None

    def check(self) -> None:
        return None


class UrlFiles(NoStorage):
    def __init__(self, urls: dict[str, str], *, api: str = "", token: str = "", max_bytes: int,
                 timeout_s: float = 60.0) -> None:
        self.urls = urls  # storage key -> URL
        self.api = api.rstrip("/")
        self.token = token
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    def headers_for(self, url: str) -> dict[str, str]:
        if self.token and self.api and (url == self.api or url.startswith(self.api + "/")):
            return {"Authorization": f"Bearer {self.token}"}
        return {}

    def get_file(self, key: str, dest: Path) -> Path:
        url = self.urls.get(key)
        if not url:
            raise NotFound(f"No URL for {key!r} in this job.", code="not_found")
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with httpx.stream("GET", url, headers=self.headers_for(url), timeout=self.timeout_s,
                              trust_env=False) as resp:
                if resp.status_code == 404:
                    raise NotFound("The job's input is gone from the service.", code="not_found")
                if resp.status_code >= 400:
                    raise ServiceUnavailable(f"The service refused the job's input (HTTP {resp.status_code}).",
                                             code="input_unavailable")
                seen = 0
                with tmp.open("wb") as fh:
                    for chunk in resp.iter_bytes(CHUNK):
                        seen += len(chunk)
                        if seen > self.max_bytes:
                            raise PayloadTooLarge(f"The input is larger than {self.max_bytes} bytes.",
                                                  code="input_too_large")
                        fh.write(chunk)
            tmp.replace(dest)
        except httpx.HTTPError as exc:
            raise ServiceUnavailable(f"The job's input could not be downloaded ({type(exc).__name__}).",
                                     code="input_unavailable") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest
