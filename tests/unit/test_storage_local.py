"""LocalStorage: atomic writes, size caps, key safety, prefix deletes — on a real folder."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelforge.config import Settings
from reelforge.errors import NotFound, PayloadTooLarge, ServiceUnavailable
from reelforge.storage import LocalStorage, make_storage
from reelforge.storage.base import PARTIAL_DIR, validate_key


@pytest.fixture
def store(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def files_under(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_make_storage_defaults_to_local_folder(settings: Settings) -> None:
    store = make_storage(settings)
    assert isinstance(store, LocalStorage)
    assert store.root == settings.storage_dir.resolve()


def test_put_file_round_trip(store: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "clip.mp4"
    payload = bytes(range(256)) * 1000
    src.write_bytes(payload)
    obj = store.put_file(src, "jobs/j1/video.mp4")
    assert obj.key == "jobs/j1/video.mp4"
    assert obj.size == len(payload)
    assert obj.content_type == "video/mp4"
    assert obj.sha256 == hashlib.sha256(payload).hexdigest()
    assert store.exists("jobs/j1/video.mp4") and store.size("jobs/j1/video.mp4") == len(payload)
    out = store.get_file("jobs/j1/video.mp4", tmp_path / "down" / "copy.mp4")
    assert out.read_bytes() == payload
    with store.open_read("jobs/j1/video.mp4") as fh:
        assert fh.read() == payload
    assert store.local_path("jobs/j1/video.mp4") == store.root / "jobs/j1/video.mp4"
    assert store.url("jobs/j1/video.mp4") is None
    assert files_under(store.root) == ["jobs/j1/video.mp4"]  # nothing left in staging


def test_put_moved_renames_the_callers_file_into_place(store: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "received.part"
    payload = b"agent output " * 5000
    src.write_bytes(payload)
    inode = src.stat().st_ino
    obj = store.put_moved(src, "agent-uploads/j1/1/v.mp4", "video/mp4")
    assert (obj.size, obj.sha256, obj.content_type) == (len(payload), hashlib.sha256(payload).hexdigest(),
                                                        "video/mp4")
    assert not src.exists()
    placed = store.root / "agent-uploads/j1/1/v.mp4"
    assert placed.read_bytes() == payload and placed.stat().st_ino == inode  # renamed, not written again
    with pytest.raises(ValueError):
        store.put_moved(tmp_path / "x", "../escape")


def test_move_renames_and_hashes_what_lies_under_the_new_key(store: LocalStorage) -> None:
    payload = b"\x00\x01 video bytes" * 3000
    store.put_stream([payload], "agent-uploads/j1/1/v.mp4", max_bytes=len(payload))
    inode = (store.root / "agent-uploads/j1/1/v.mp4").stat().st_ino
    obj = store.move("agent-uploads/j1/1/v.mp4", "jobs/j1/v.mp4", "video/mp4")
    assert (obj.key, obj.size, obj.sha256) == ("jobs/j1/v.mp4", len(payload), hashlib.sha256(payload).hexdigest())
    assert (store.root / "jobs/j1/v.mp4").stat().st_ino == inode
    assert not store.exists("agent-uploads/j1/1/v.mp4")
    assert files_under(store.root) == ["jobs/j1/v.mp4"]  # the emptied upload folders are pruned too
    with pytest.raises(NotFound):
        store.move("agent-uploads/j1/1/v.mp4", "jobs/j1/w.mp4")


def test_explicit_content_type_wins(store: LocalStorage, tmp_path: Path) -> None:
    src = tmp_path / "x.bin"
    src.write_bytes(b"WEBVTT\n")
    assert store.put_file(src, "a/subs.vtt", content_type="text/vtt; charset=utf-8").content_type == \
        "text/vtt; charset=utf-8"
    assert store.put_stream([b"x"], "a/blob", max_bytes=10).content_type == "application/octet-stream"


def test_put_stream_counts_and_hashes(store: LocalStorage) -> None:
    chunks = [b"a" * 1000, b"", b"b" * 24]
    obj = store.put_stream(iter(chunks), "files/f1/in.wav", max_bytes=1024)
    assert obj.size == 1024
    assert obj.sha256 == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert (store.root / "files/f1/in.wav").read_bytes() == b"".join(chunks)


def test_oversized_stream_leaves_nothing(store: LocalStorage) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(10):
            yield b"z" * 100

    with pytest.raises(PayloadTooLarge):
        store.put_stream(chunks(), "files/f2/big.bin", max_bytes=950)
    assert not store.exists("files/f2/big.bin")
    assert files_under(store.root) == []


def test_failing_stream_leaves_nothing_and_keeps_the_old_object(store: LocalStorage) -> None:
    store.put_stream([b"old"], "out/result.txt", max_bytes=100)

    def broken() -> Iterator[bytes]:
        yield b"new data"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(broken(), "out/result.txt", max_bytes=100)
    assert (store.root / "out/result.txt").read_bytes() == b"old"
    assert files_under(store.root) == ["out/result.txt"]


def test_reader_never_sees_a_partial_object(store: LocalStorage) -> None:
    """While a stream is being written, the key does not exist; it appears whole."""
    seen: list[bool] = []
    gate = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield b"1" * 10
        seen.append(store.exists("jobs/j/out.mp4"))
        gate.set()
        yield b"2" * 10

    obj = store.put_stream(chunks(), "jobs/j/out.mp4", max_bytes=100)
    assert gate.is_set() and seen == [False]
    assert obj.size == 20 and store.size("jobs/j/out.mp4") == 20


@pytest.mark.parametrize("key", [
    "../etc/passwd", "a/../../b", "/abs/path", "a//b", "./a", "a/./b", "", "a\\b", "C:/x", "a\x00b",
    f"{PARTIAL_DIR}/x", "a/..",
])
def test_unsafe_keys_are_refused(store: LocalStorage, tmp_path: Path, key: str) -> None:
    src = tmp_path / "f"
    src.write_bytes(b"x")
    with pytest.raises(ValueError):
        store.put_file(src, key)
    with pytest.raises(ValueError):
        store.get_file(key, tmp_path / "out")
    with pytest.raises(ValueError):
        store.exists(key)
    assert not (tmp_path / "etc").exists()


def test_symlink_inside_root_cannot_escape(store: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    store.root.mkdir(parents=True)
    (store.root / "link").symlink_to(outside)
    with pytest.raises(ValueError):
        store.open_read("link/secret.txt")


def test_missing_objects(store: LocalStorage, tmp_path: Path) -> None:
    assert not store.exists("nope/x")
    with pytest.raises(NotFound):
        store.get_file("nope/x", tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(NotFound):
        store.open_read("nope/x")
    with pytest.raises(NotFound):
        store.size("nope/x")
    store.delete("nope/x")  # deleting what is not there is fine


def test_delete_and_delete_prefix(store: LocalStorage) -> None:
    for key in ["jobs/ab/1.mp4", "jobs/ab/sub/2.srt", "jobs/abc/3.mp4", "jobs/b/4.mp4", "files/x"]:
        store.put_stream([key.encode()], key, max_bytes=100)
    store.delete("jobs/b/4.mp4")
    assert not store.exists("jobs/b/4.mp4")
    assert not (store.root / "jobs/b").exists()  # empty folders are pruned
    assert store.delete_prefix("jobs/ab/") == 2
    assert files_under(store.root) == ["files/x", "jobs/abc/3.mp4"]
    assert store.delete_prefix("jobs/a") == 1  # plain string prefix, as in S3
    assert files_under(store.root) == ["files/x"]
    assert not (store.root / "jobs").exists()
    assert store.delete_prefix("nothing/here/") == 0
    with pytest.raises(ValueError):
        store.delete_prefix("")
    with pytest.raises(ValueError):
        store.delete_prefix("../")


def test_validate_key_allows_ordinary_names() -> None:
    for key in ["jobs/0f/video.mp4", "files/f_1/My Clip (1).mov", "a", "ünïcode/ファイル.wav", "a/.hidden"]:
        assert validate_key(key) == key
    assert validate_key("jobs/", prefix=True) == "jobs/"


def test_check_and_purge_partials(store: LocalStorage) -> None:
    store.check()
    stale = store.root / PARTIAL_DIR / "leftover"
    stale.write_bytes(b"half")
    assert store.purge_partials(max_age_s=3600) == 0
    assert store.purge_partials(max_age_s=-1) == 1
    assert not stale.exists()


def test_check_reports_unwritable_root(tmp_path: Path) -> None:
    blocker = tmp_path / "file-not-folder"
    blocker.write_text("x")
    with pytest.raises(ServiceUnavailable):
        LocalStorage(blocker).check()
