"""Storage in a local folder (the embedded default).

Writes go to `<root>/.partial/<random>` first and are renamed into place with os.replace only after the
last byte is written and fsynced, so a reader never sees a half-written object and a crash leaves only
a stray file under .partial/ (see `purge_partials`). The staging folder is inside the root so the rename
never crosses filesystems.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from reelforge.errors import NotFound, PayloadTooLarge, ServiceUnavailable
from reelforge.storage.base import (
    COPY_CHUNK,
    PARTIAL_DIR,
    Storage,
    StoredObject,
    guess_content_type,
    validate_key,
)


def _digest(fh: BinaryIO) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := fh.read(COPY_CHUNK):
        size += len(chunk)
        digest.update(chunk)
    return size, digest.hexdigest()


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = Path(root).expanduser().resolve()

    # ---- helpers
    def _path(self, key: str) -> Path:
        validate_key(key)
        path = self.root / key
        # Keys are already free of "..", so this only catches symlinks planted inside the root.
        if not path.resolve().is_relative_to(self.root):
            raise ValueError(f"storage key {key!r} points outside the storage folder")
        return path

    def _staging(self) -> Path:
        staging = self.root / PARTIAL_DIR
        staging.mkdir(parents=True, exist_ok=True)
        return staging / uuid.uuid4().hex

    def _commit(self, tmp: Path, key: str, size: int, sha256: str, content_type: str | None) -> StoredObject:
        final = self._path(key)
        for attempt in range(3):
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.replace(tmp, final)
                break
            except FileNotFoundError:
                # A concurrent delete pruned the (momentarily empty) folder between mkdir and rename.
                if attempt == 2 or not tmp.exists():
                    raise
        return StoredObject(key=key, size=size, content_type=guess_content_type(key, content_type),
                            sha256=sha256)

    def _write_chunks(self, chunks: Iterable[bytes], tmp: Path, max_bytes: int | None) -> tuple[int, str]:
        digest = hashlib.sha256()
        size = 0
        with tmp.open("wb") as fh:
            for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise PayloadTooLarge(f"The upload is larger than the limit of {max_bytes} bytes.")
                digest.update(chunk)
                fh.write(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        return size, digest.hexdigest()

    # ---- writing
    def put_file(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        self._path(key)  # refuse a bad key before copying anything
        tmp = self._staging()
        try:
            with Path(src).open("rb") as fh:
                size, sha = self._write_chunks(iter(lambda: fh.read(COPY_CHUNK), b""), tmp, None)
            return self._commit(tmp, key, size, sha, content_type)
        finally:
            tmp.unlink(missing_ok=True)

    def put_stream(self, chunks: Iterable[bytes], key: str, *, max_bytes: int,
                   content_type: str | None = None) -> StoredObject:
        self._path(key)
        tmp = self._staging()
        try:
            size, sha = self._write_chunks(chunks, tmp, max_bytes)
            return self._commit(tmp, key, size, sha, content_type)
        finally:
            tmp.unlink(missing_ok=True)  # gone already after a commit; removes the partial file otherwise

    def put_moved(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        self._path(key)
        tmp = self._staging()
        try:
            os.replace(src, tmp)  # the caller's file becomes the staging file: no second copy
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            return super().put_moved(src, key, content_type)  # another filesystem: copied after all
        try:
            with tmp.open("rb") as fh:  # hashed as stored, and durable before it appears (as put_file)
                size, sha = _digest(fh)
                os.fsync(fh.fileno())
            return self._commit(tmp, key, size, sha, content_type)
        finally:
            tmp.unlink(missing_ok=True)

    def move(self, src: str, dest: str, content_type: str | None = None) -> StoredObject:
        path = self._path(src)
        self._path(dest)
        if not path.is_file():
            raise NotFound(f"Stored object {src!r} does not exist.")
        staged = self._staging()
        os.replace(path, staged)  # taken out first: a later write to `src` cannot change what `dest` gets
        self._prune_empty_parents(path.parent)
        try:
            with staged.open("rb") as fh:  # hashed after the rename: the bytes `dest` will hold
                size, sha = _digest(fh)
            return self._commit(staged, dest, size, sha, content_type)
        finally:
            staged.unlink(missing_ok=True)

    # ---- reading
    def get_file(self, key: str, dest: Path) -> Path:
        src = self._path(key)
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        except FileNotFoundError as exc:
            raise NotFound(f"Stored object {key!r} does not exist.") from exc
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def open_read(self, key: str) -> BinaryIO:
        try:
            return self._path(key).open("rb")
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise NotFound(f"Stored object {key!r} does not exist.") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def size(self, key: str) -> int:
        path = self._path(key)
        if not path.is_file():
            raise NotFound(f"Stored object {key!r} does not exist.")
        return path.stat().st_size

    # ---- deleting
    def delete(self, key: str) -> None:
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._prune_empty_parents(path.parent)

    def delete_prefix(self, prefix: str) -> int:
        validate_key(prefix, prefix=True)
        # S3 semantics: a plain string prefix ("jobs/ab" matches "jobs/abc/x"), so walk the folder that
        # holds the prefix's last segment and compare relative keys.
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return 0
        count = 0
        for dirpath, _dirnames, filenames in os.walk(base, topdown=False):
            here = Path(dirpath)
            for name in filenames:
                rel = (here / name).relative_to(self.root).as_posix()
                if rel.startswith(prefix) and not rel.startswith(PARTIAL_DIR + "/"):
                    (here / name).unlink(missing_ok=True)
                    count += 1
            rel_dir = here.relative_to(self.root).as_posix()
            if here != self.root and ((rel_dir + "/").startswith(prefix) or rel_dir.startswith(prefix)):
                with contextlib.suppress(OSError):
                    here.rmdir()  # only succeeds when empty
        self._prune_empty_parents(base)
        return count

    def _prune_empty_parents(self, folder: Path) -> None:
        while folder != self.root and folder.is_relative_to(self.root):
            try:
                folder.rmdir()
            except OSError:
                return
            folder = folder.parent

    def purge_partials(self, max_age_s: float = 86400.0) -> int:
        """Remove staging files left by crashed writers (older than `max_age_s`)."""
        staging = self.root / PARTIAL_DIR
        if not staging.is_dir():
            return 0
        cutoff = time.time() - max_age_s
        count = 0
        for entry in staging.iterdir():
            if entry.is_file() and entry.stat().st_mtime < cutoff:
                entry.unlink(missing_ok=True)
                count += 1
        return count

    # ---- serving
    def url(self, key: str, *, filename: str | None = None) -> str | None:
        validate_key(key)
        return None  # the API streams local objects itself (open_read / local_path)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def check(self) -> None:
        try:
            probe = self._staging()
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            raise ServiceUnavailable(
                f"Local storage at {self.root} is not writable: {exc.strerror}.") from exc
