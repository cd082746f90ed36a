"""Content-addressed reuse of step results.

key = sha256(op name + canonical JSON params), where every input reference in the params has been
replaced by the sha256 of the file it resolves to. Same op, same settings, same input bytes -> same key,
whichever URL, upload id or earlier step the bytes came from.

A cached result lives in `<data_dir>/cache/steps/<key>/` as the output files plus `result.json`. It is
built in a temporary sibling folder and renamed into place, so a reader never sees half of one.

Eviction: a hit touches `result.json`, so its mtime is the entry's last use. `evict()` removes entries
unused for longer than the maximum age, then the least recently used ones until the cache fits its size
cap, and leftovers of crashed writers. An entry is renamed away before it is deleted, so a job either
finds it whole or not at all (a job that was linking its files as it went treats that as a miss).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelforge.config import Settings
from reelforge.runtime import OpResult

CACHE_VERSION = 1
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
_hash_memo: dict[tuple[str, int, int], str] = {}
_memo_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, remembered per (path, size, mtime) for this process."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    with _memo_lock:
        if key in _hash_memo:
            return _hash_memo[key]
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    with _memo_lock:
        _hash_memo[key] = digest
    return digest


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def step_key(op_name: str, hashed_params: Any) -> str:
    """The cache key of a step whose input refs were already replaced by content hashes."""
    payload = canonical_json({"v": CACHE_VERSION, "op": op_name, "params": hashed_params})
    return hashlib.sha256(payload.encode()).hexdigest()


EVICT_EVERY_S = 60.0
STALE_TMP_S = 6 * 3600.0  # a writer's temporary folder older than this was left by a crash
_last_evict: dict[str, float] = {}
_evict_lock = threading.Lock()


@dataclass(frozen=True)
class CacheLimits:
    max_bytes: int
    max_age_s: float


@dataclass(frozen=True)
class Evicted:
    entries: int
    bytes: int
    kept_entries: int
    kept_bytes: int


def _tree_bytes(folder: Path) -> int:
    total = 0
    for f in folder.iterdir():
        with contextlib.suppress(OSError):
            total += f.stat().st_size
    return total


class StepCache:
    def __init__(self, root: Path, limits: CacheLimits | None = None) -> None:
        self.root = root
        self.limits = limits

    @classmethod
    def for_settings(cls, settings: Settings) -> StepCache:
        """The service's step cache (data_dir/cache/steps) with the configured size and age limits."""
        return cls(settings.service.data_dir / "cache" / "steps", CacheLimits(
            max_bytes=int(settings.compute.step_cache_max_gb * 1024**3),
            max_age_s=settings.compute.step_cache_max_age_days * 86400))

    def _dir(self, key: str) -> Path:
        return self.root / key

    def load(self, key: str, dest: Path) -> OpResult | None:
        """The cached result for `key` with its files linked into `dest`, or None on a miss."""
        folder = self._dir(key)
        meta_path = folder / "result.json"
        if not meta_path.is_file():
            return None
        try:
            meta = json.loads(meta_path.read_text())
            files: dict[str, str] = meta["outputs"]
        except (ValueError, KeyError):
            return None
        dest.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, Path] = {}
        for name, filename in files.items():
            target = dest / filename
            try:
                _link_or_copy(folder / filename, target)
            except FileNotFoundError:
                return None  # evicted while we read it: a miss
            outputs[name] = target
        with contextlib.suppress(OSError):
            os.utime(meta_path)  # last use, for eviction
        return OpResult(outputs=outputs, data=meta.get("data") or {})

    def store(self, key: str, op_name: str, result: OpResult) -> bool:
        """Save a result; False when its data is not JSON (then it is simply not cached)."""
        try:
            data_json = json.dumps(result.data)
        except (TypeError, ValueError):
            return False
        folder = self._dir(key)
        if folder.exists():
            return True
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".tmp-{key[:16]}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            files: dict[str, str] = {}
            for name, path in result.outputs.items():
                # keep the op's own file name (video.srt beside video.mp4); the output name if it clashes
                filename = _SAFE_NAME.sub("_", Path(path).name)
                if filename in files.values() or filename == "result.json":
                    filename = _SAFE_NAME.sub("_", name) + Path(path).suffix
                _link_or_copy(Path(path), tmp / filename)
                files[name] = filename
            meta = {"op": op_name, "outputs": files, "data": json.loads(data_json)}
            (tmp / "result.json").write_text(json.dumps(meta, indent=1))
            try:
                os.rename(tmp, folder)
            except OSError:  # another job stored the same key first: theirs is as good as ours
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.maybe_evict()
        return True

    def maybe_evict(self) -> Evicted | None:
        """evict() when limits are set and this process has not done so in the last minute."""
        if self.limits is None:
            return None
        now = time.monotonic()
        with _evict_lock:
            last = _last_evict.get(str(self.root))
            if last is not None and now - last < EVICT_EVERY_S:
                return None
            _last_evict[str(self.root)] = now
        return self.evict(self.limits)

    def evict(self, limits: CacheLimits, now: float | None = None) -> Evicted:
        """Remove entries older than limits.max_age_s (by last use), then least recently used ones until
        the rest fits limits.max_bytes; also crashed writers' temporary folders."""
        now = time.time() if now is None else now
        if not self.root.is_dir():
            return Evicted(0, 0, 0, 0)
        entries: list[tuple[float, int, Path]] = []
        for folder in self.root.iterdir():
            try:
                if folder.name.startswith((".tmp-", ".evict-")):
                    if now - folder.stat().st_mtime > STALE_TMP_S or folder.name.startswith(".evict-"):
                        shutil.rmtree(folder, ignore_errors=True)
                    continue
                entries.append(((folder / "result.json").stat().st_mtime, _tree_bytes(folder), folder))
            except OSError:
                continue  # being written or removed by someone else
        entries.sort()  # oldest use first
        total = sum(size for _, size, _ in entries)
        removed = freed = 0
        for used, size, folder in entries:
            if now - used <= limits.max_age_s and total <= limits.max_bytes:
                break
            gone = folder.with_name(f".evict-{folder.name}-{uuid.uuid4().hex[:8]}")
            try:
                os.rename(folder, gone)
            except OSError:
                continue
            shutil.rmtree(gone, ignore_errors=True)
            total -= size
            removed += 1
            freed += size
        return Evicted(removed, freed, len(entries) - removed, total)


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard link when possible (no bytes copied; later moves of `dest` leave `src` intact), else copy."""
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
