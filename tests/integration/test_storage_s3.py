"""S3Storage and s3:// inputs against a real S3 HTTP server (moto's standalone server) on loopback."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelforge.config import Settings
from reelforge.errors import InputError, NotFound, PayloadTooLarge, ServiceUnavailable, UrlNotAllowed
from reelforge.storage import LocalStorage, make_storage
from reelforge.storage.fetch import make_resolver
from reelforge.storage.s3 import MIB, S3Storage, make_s3_client

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(tmp_path: Path, endpoint: str) -> Settings:
    bucket = f"rf-{uuid.uuid4().hex[:12]}"
    settings = Settings(data_dir=tmp_path / "data", workers=1, storage="s3", s3_endpoint_url=endpoint,
                        s3_bucket=bucket, s3_prefix="rf/", s3_access_key_id="testing",
                        s3_secret_access_key="testing", s3_presign_expiry_s=600)
    make_s3_client(settings).create_bucket(Bucket=bucket)
    return settings


@pytest.fixture
def store(s3_settings: Settings) -> S3Storage:
    storage = make_storage(s3_settings)
    assert isinstance(storage, S3Storage)
    return storage


def bucket_keys(store: S3Storage) -> list[str]:
    answer: dict[str, Any] = store.client.list_objects_v2(Bucket=store.bucket)
    return sorted(o["Key"] for o in answer.get("Contents", []))


def pending_uploads(store: S3Storage) -> list[Any]:
    return store.client.list_multipart_uploads(Bucket=store.bucket).get("Uploads", [])


def test_put_file_get_and_metadata(store: S3Storage, tmp_path: Path) -> None:
    payload = os.urandom(300_000)
    src = tmp_path / "clip.mp4"
    src.write_bytes(payload)
    obj = store.put_file(src, "jobs/j1/video.mp4")
    assert (obj.size, obj.content_type) == (len(payload), "video/mp4")
    assert obj.sha256 == hashlib.sha256(payload).hexdigest()
    assert bucket_keys(store) == ["rf/jobs/j1/video.mp4"]  # prefixed; staging key removed
    head = store.client.head_object(Bucket=store.bucket, Key="rf/jobs/j1/video.mp4")
    assert head["ContentType"] == "video/mp4" and head["Metadata"]["sha256"] == obj.sha256
    assert store.exists("jobs/j1/video.mp4") and store.size("jobs/j1/video.mp4") == len(payload)
    out = store.get_file("jobs/j1/video.mp4", tmp_path / "down" / "v.mp4")
    assert out.read_bytes() == payload
    with store.open_read("jobs/j1/video.mp4") as body:
        assert body.read() == payload
    assert store.local_path("jobs/j1/video.mp4") is None
    store.check()


def test_large_file_goes_multipart(s3_settings: Settings, tmp_path: Path) -> None:
    from boto3.s3.transfer import TransferConfig

    store = S3Storage(make_s3_client(s3_settings), bucket=s3_settings.storage.s3_bucket, prefix="rf",
                      transfer_config=TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB))
    payload = os.urandom(11 * MIB)
    src = tmp_path / "big.bin"
    src.write_bytes(payload)
    obj = store.put_file(src, "jobs/big/out.bin")
    assert obj.sha256 == hashlib.sha256(payload).hexdigest()
    head = store.client.head_object(Bucket=store.bucket, Key="rf/jobs/big/out.bin")
    assert head["ContentLength"] == len(payload)
    assert "-" in head["ETag"]  # a multipart ETag ("<md5>-<parts>")
    assert store.get_file("jobs/big/out.bin", tmp_path / "back.bin").read_bytes() == payload
    assert bucket_keys(store) == ["rf/jobs/big/out.bin"]


def test_put_stream_small_and_multipart(s3_settings: Settings) -> None:
    store = S3Storage(make_s3_client(s3_settings), bucket=s3_settings.storage.s3_bucket, prefix="rf/",
                      part_size=5 * MIB)
    small = store.put_stream(iter([b"hello ", b"world"]), "files/a/hello.txt", max_bytes=100)
    assert small.size == 11 and small.content_type == "text/plain"
    block = os.urandom(1 * MIB)
    big = store.put_stream((block for _ in range(12)), "files/b/upload.mov", max_bytes=20 * MIB)
    assert big.size == 12 * MIB
    assert big.sha256 == hashlib.sha256(block * 12).hexdigest()
    head = store.client.head_object(Bucket=store.bucket, Key="rf/files/b/upload.mov")
    assert head["ContentLength"] == 12 * MIB and head["ContentType"] == "video/quicktime"
    assert bucket_keys(store) == ["rf/files/a/hello.txt", "rf/files/b/upload.mov"]
    assert pending_uploads(store) == []


def test_direct_upload_without_staging(s3_settings: Settings, tmp_path: Path) -> None:
    store = S3Storage(make_s3_client(s3_settings), bucket=s3_settings.storage.s3_bucket, prefix="rf/",
                      part_size=5 * MIB, stage_then_copy=False)
    src = tmp_path / "a.wav"
    src.write_bytes(b"RIFF" * 1000)
    assert store.put_file(src, "jobs/d/a.wav").size == 4000
    block = os.urandom(MIB)
    obj = store.put_stream((block for _ in range(11)), "jobs/d/b.mp4", max_bytes=20 * MIB)
    assert obj.sha256 == hashlib.sha256(block * 11).hexdigest()
    assert bucket_keys(store) == ["rf/jobs/d/a.wav", "rf/jobs/d/b.mp4"]
    assert store.client.head_object(Bucket=store.bucket, Key="rf/jobs/d/a.wav")["Metadata"]["sha256"] == \
        hashlib.sha256(b"RIFF" * 1000).hexdigest()
    with pytest.raises(PayloadTooLarge):
        store.put_stream((block for _ in range(30)), "jobs/d/c.mp4", max_bytes=12 * MIB)
    assert bucket_keys(store) == ["rf/jobs/d/a.wav", "rf/jobs/d/b.mp4"]
    assert pending_uploads(store) == []


def test_oversized_stream_leaves_nothing(s3_settings: Settings) -> None:
    store = S3Storage(make_s3_client(s3_settings), bucket=s3_settings.storage.s3_bucket, prefix="rf/",
                      part_size=5 * MIB)
    block = b"\0" * MIB
    with pytest.raises(PayloadTooLarge):  # two parts already uploaded when the cap trips
        store.put_stream((block for _ in range(20)), "files/c/too-big.bin", max_bytes=12 * MIB)
    with pytest.raises(PayloadTooLarge):  # tripped before any part: no multipart upload at all
        store.put_stream((block for _ in range(3)), "files/d/too-big.bin", max_bytes=2 * MIB)
    assert bucket_keys(store) == []
    assert pending_uploads(store) == []  # aborted, so no invisible parts are billed either


def test_failing_stream_is_aborted(store: S3Storage) -> None:
    def broken() -> Iterator[bytes]:
        yield b"x" * (9 * MIB)  # one full part sent
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        store.put_stream(broken(), "files/e/broken.bin", max_bytes=100 * MIB)
    assert bucket_keys(store) == []
    assert pending_uploads(store) == []


def test_presigned_url_downloads_with_filename(store: S3Storage) -> None:
    store.put_stream([b"caption text"], "jobs/j2/captions.srt", max_bytes=100)
    url = store.url("jobs/j2/captions.srt", filename="My captions ü.srt")
    assert url is not None and "X-Amz-Signature=" in url
    answer = httpx.get(url)
    assert answer.status_code == 200 and answer.content == b"caption text"
    disposition = answer.headers["content-disposition"]
    assert disposition.startswith("attachment;") and "UTF-8''My%20captions%20%C3%BC.srt" in disposition
    plain = store.url("jobs/j2/captions.srt")
    assert plain is not None and httpx.get(plain).content == b"caption text"


def test_public_base_url(s3_settings: Settings, endpoint: str) -> None:
    public = s3_settings.replace(s3_public_base_url=f"{endpoint}/{s3_settings.storage.s3_bucket}/")
    store = make_storage(public)
    assert isinstance(store, S3Storage)
    # What a CDN-fronted bucket has: anonymous read of objects.
    store.client.put_bucket_policy(Bucket=store.bucket, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": f"arn:aws:s3:::{store.bucket}/*"}]}))
    store.put_stream([b"public bytes"], "jobs/j3/a b.mp4", max_bytes=100)
    url = store.url("jobs/j3/a b.mp4", filename="ignored.mp4")
    assert url == f"{endpoint}/{s3_settings.storage.s3_bucket}/rf/jobs/j3/a%20b.mp4"
    assert httpx.get(url).content == b"public bytes"


def test_move_and_put_moved(store: S3Storage, tmp_path: Path) -> None:
    payload = b"uploaded by an agent " * 1000
    src = tmp_path / "received.part"
    src.write_bytes(payload)
    obj = store.put_moved(src, "agent-uploads/j1/1/v.mp4", "video/mp4")
    assert obj.sha256 == hashlib.sha256(payload).hexdigest() and not src.exists()
    moved = store.move("agent-uploads/j1/1/v.mp4", "jobs/j1/v.mp4", "video/mp4")
    assert (moved.size, moved.sha256) == (len(payload), obj.sha256)
    assert bucket_keys(store) == ["rf/jobs/j1/v.mp4"]
    with store.open_read("jobs/j1/v.mp4") as fh:
        assert fh.read() == payload


def test_a_presigned_put_is_committed_by_a_server_side_copy(store: S3Storage) -> None:
    """An agent's output on S3: PUT to a presigned URL by a machine without credentials, then moved."""
    url = store.upload_url("agent-uploads/j2/1/o.mp4", content_type="video/mp4", expires_s=600)
    assert url is not None and store.presigned_uploads
    data = b"straight to the bucket " * 2000
    assert httpx.put(url, content=data, headers={"Content-Type": "video/mp4"}, timeout=30).status_code == 200
    moved = store.move("agent-uploads/j2/1/o.mp4", "jobs/j2/o.mp4", "video/mp4")
    assert (moved.size, moved.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert bucket_keys(store) == ["rf/jobs/j2/o.mp4"]
    head = store.client.head_object(Bucket=store.bucket, Key="rf/jobs/j2/o.mp4")
    assert head["ContentType"] == "video/mp4" and head["Metadata"]["sha256"] == moved.sha256


def test_delete_and_delete_prefix(store: S3Storage) -> None:
    for key in ["jobs/ab/1.mp4", "jobs/ab/sub/2.srt", "jobs/abc/3.mp4", "files/x"]:
        store.put_stream([key.encode()], key, max_bytes=100)
    store.delete("files/x")
    store.delete("files/x")  # idempotent
    assert not store.exists("files/x")
    assert store.delete_prefix("jobs/ab/") == 2
    assert bucket_keys(store) == ["rf/jobs/abc/3.mp4"]
    assert store.delete_prefix("jobs/") == 1
    assert bucket_keys(store) == []
    with pytest.raises(ValueError):
        store.delete_prefix("")


def test_missing_keys_and_bad_keys(store: S3Storage, tmp_path: Path) -> None:
    assert not store.exists("nope.mp4")
    with pytest.raises(NotFound):
        store.get_file("nope.mp4", tmp_path / "n.mp4")
    assert [p.name for p in tmp_path.iterdir() if p.name != "data"] == []  # no partial download left
    with pytest.raises(NotFound):
        store.size("nope.mp4")
    with pytest.raises(NotFound):
        store.open_read("nope.mp4")
    with pytest.raises(ValueError):
        store.put_stream([b"x"], "../escape", max_bytes=10)


def test_check_fails_for_missing_bucket(s3_settings: Settings) -> None:
    store = make_storage(s3_settings.replace(s3_bucket="no-such-bucket-here"))
    with pytest.raises(ServiceUnavailable):
        store.check()


# ---- s3:// input references


def test_s3_refs_resolve_in_the_configured_bucket(store: S3Storage, s3_settings: Settings,
                                                  tmp_path: Path) -> None:
    store.client.put_object(Bucket=store.bucket, Key="incoming/clip one.mp4", Body=b"user media")
    resolve = make_resolver(s3_settings, store, lookup_file=lambda _id: None)
    dest = tmp_path / "inputs"
    dest.mkdir()
    path = resolve(f"s3://{store.bucket}/incoming/clip one.mp4", dest)
    assert path.parent == dest and path.suffix == ".mp4" and path.read_bytes() == b"user media"

    with pytest.raises(UrlNotAllowed) as wrong:
        resolve("s3://someone-elses-bucket/incoming/clip one.mp4", dest)
    assert store.bucket in wrong.value.message
    with pytest.raises(InputError) as missing:
        resolve(f"s3://{store.bucket}/incoming/absent.mp4", dest)
    assert missing.value.code == "input_not_found"
    with pytest.raises(InputError) as no_key:
        resolve(f"s3://{store.bucket}/", dest)
    assert no_key.value.code == "input_invalid"


def test_s3_refs_cannot_reach_service_objects_or_exceed_cap(store: S3Storage, s3_settings: Settings,
                                                            tmp_path: Path) -> None:
    store.put_stream([b"tenant A output"], "jobs/secret/video.mp4", max_bytes=100)
    resolve = make_resolver(s3_settings, store, lookup_file=lambda _id: None)
    with pytest.raises(UrlNotAllowed):
        resolve(f"s3://{store.bucket}/rf/jobs/secret/video.mp4", tmp_path)

    store.client.put_object(Bucket=store.bucket, Key="incoming/big.mov", Body=b"x" * 2000)
    small_cap = s3_settings.replace(max_fetch_bytes=1000)
    with pytest.raises(InputError) as too_big:
        make_resolver(small_cap, store, lookup_file=lambda _id: None)(f"s3://{store.bucket}/incoming/big.mov",
                                                                     tmp_path)
    assert too_big.value.code == "input_too_large"


def test_file_ids_resolve_through_s3(store: S3Storage, s3_settings: Settings, tmp_path: Path) -> None:
    store.put_stream([b"uploaded"], "files/t1/file_x/original.wav", max_bytes=100)
    file_id = "file_" + "a" * 32
    keys = {file_id: "files/t1/file_x/original.wav"}
    resolve = make_resolver(s3_settings, store, lookup_file=keys.get)
    path = resolve(file_id, tmp_path)
    assert path.name == f"{file_id}.wav" and path.read_bytes() == b"uploaded"


def test_s3_refs_refused_with_local_storage(settings: Settings, tmp_path: Path) -> None:
    resolve = make_resolver(settings, LocalStorage(settings.storage_dir), lookup_file=lambda _id: None)
    with pytest.raises(UrlNotAllowed) as refused:
        resolve("s3://bucket/key.mp4", tmp_path)
    assert "local folder" in refused.value.message
