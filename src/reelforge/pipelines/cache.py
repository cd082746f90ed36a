"""Content-addressed reuse of step results.

key = sha256(op name + canonical JSON params), where every input reference in the params has been
replaced by the sha256 of the file it resolves to. Same op, same settings, same input bytes -> same key,
whichever URL, upload id or earlier step the bytes came from.

A cached result lives in `<data_dir>/cache/steps/<key>/` as the output files plus `result.json`. It is
built in a temporary sibling folder and renamed into place, so a reader never sees half of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Any

from reelforge.ops.context import OpResult

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


class StepCache:
    def __init__(self, root: Path) -> None:
        self.root = root

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
            src = folder / filename
            if not src.is_file():
                return None  # partly evicted: treat as a miss
            target = dest / filename
            _link_or_copy(src, target)
            outputs[name] = target
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
        return True


def _link_or_copy(src: Path, dest: Path) -> None:
    """Hard link when possible (no bytes copied; later moves of `dest` leave `src` intact), else copy."""
    if dest.exists():
        dest.unlink()
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
