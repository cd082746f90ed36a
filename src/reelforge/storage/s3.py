"""Storage in an S3-compatible bucket (AWS S3, MinIO, Backblaze B2, Cloudflare R2) through boto3.

Every key is stored under `settings.storage.s3_prefix`. Writes go to `<prefix>.partial/<random>/<name>` first,
then a server-side copy commits the object under its real key and the temporary one is removed, so a
reader never finds a half-written output under a real key, even on S3-compatible gateways that write
in place (AWS S3 itself only shows an object once its PUT or multipart upload is complete, so
`stage_then_copy=False` is safe there and saves the copy). Large files use boto3's managed multipart
transfer; `put_stream` drives a multipart upload by hand so it can stop at `max_bytes` and abort, which
leaves nothing behind.

botocore errors are translated where they enter: a missing key becomes NotFound, anything else about
reaching or using the bucket becomes ServiceUnavailable.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import quote

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from reelforge.config import Settings
from reelforge.errors import InputError, NotFound, PayloadTooLarge, ServiceUnavailable, UrlNotAllowed
from reelforge.storage.base import (
    COPY_CHUNK,
    PARTIAL_DIR,
    Storage,
    StoredObject,
    guess_content_type,
    sha256_file,
    validate_key,
)

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MIN_PART_SIZE = 5 * MIB  # S3's minimum for every part but the last
MAX_PARTS = 10_000
UPLOAD_AHEAD = 2  # put_stream parts in flight while the next one is read
_MISSING_CODES = {"404", "NoSuchKey", "NotFound"}


def make_s3_client(settings: Settings) -> Any:
    """A boto3 S3 client for the configured endpoint; empty credentials fall back to boto3's chain."""
    conf = settings.storage
    return make_client(endpoint_url=conf.s3_endpoint_url, access_key_id=conf.s3_access_key_id,
                       secret_access_key=conf.s3_secret_access_key.get_secret_value(), region=conf.s3_region)


def make_client(*, endpoint_url: str, access_key_id: str, secret_access_key: str, region: str) -> Any:
    """A boto3 S3 client for an endpoint (the service's storage, or a batch's own bucket)."""
    custom_endpoint = bool(endpoint_url)
    options: dict[str, Any] = {
        "signature_version": "s3v4",
        "retries": {"max_attempts": 5, "mode": "standard"},
        "connect_timeout": 10,
        "read_timeout": 120,
        # MinIO and most self-hosted endpoints only answer path-style requests.
        "s3": {"addressing_style": "path" if custom_endpoint else "auto"},
    }
    if custom_endpoint:
        # botocore >= 1.36 adds CRC checksums to every upload by default, which several S3-compatible
        # services (older MinIO, B2, some R2 setups) reject; only send them where the API requires.
        options |= {"request_checksum_calculation": "when_required",
                    "response_checksum_validation": "when_required"}
    try:
        config = Config(**options)
    except TypeError:  # an older botocore without those options never added the checksums anyway
        options.pop("request_checksum_calculation", None)
        options.pop("response_checksum_validation", None)
        config = Config(**options)
    session = boto3.session.Session(
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        region_name=region or None,
    )
    return session.client("s3", endpoint_url=endpoint_url or None, config=config)


def content_disposition(filename: str) -> str:
    """`attachment` with an ASCII fallback name and the exact UTF-8 name (RFC 6266 / 5987)."""
    name = filename.replace("/", "_").replace("\\", "_")
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"%' else "_" for c in name) or "download"
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _is_missing(exc: ClientError) -> bool:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return str(error.get("Code")) in _MISSING_CODES or (status == 404 and error.get("Code") != "NoSuchBucket")


def _unavailable(exc: Exception, bucket: str) -> ServiceUnavailable:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        detail = f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    else:
        detail = str(exc)
    return ServiceUnavailable(f"S3 storage (bucket {bucket!r}) failed: {detail}.")


class S3Storage(Storage):
    def __init__(self, client: Any, *, bucket: str, prefix: str = "", public_base_url: str = "",
                 presign_expiry_s: int = 86400, part_size: int = 8 * MIB,
                 transfer_config: TransferConfig | None = None, stage_then_copy: bool = True,
                 presign_client: Any = None) -> None:
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes (an S3 rule)")
        self.client = client
        # presigned URLs are signed for the endpoint clients use (signing sends nothing: no connection is made)
        self.presign_client = presign_client or client
        self.bucket = bucket
        prefix = prefix.lstrip("/")
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.public_base_url = public_base_url.rstrip("/")
        self.presign_expiry_s = presign_expiry_s
        self.part_size = part_size
        # Staging + copy is the storage contract (temporary key, committed when complete). AWS S3 itself
        # already shows an object only once its PUT / multipart upload completes, so there it buys
        # nothing but costs a server-side copy (bench/results/storage.md); it matters for S3-compatible
        # gateways that write in place. False uploads straight to the key.
        self.stage_then_copy = stage_then_copy
        self.transfer_config = transfer_config or TransferConfig(
            multipart_threshold=16 * MIB, multipart_chunksize=16 * MIB, max_concurrency=4)

    @classmethod
    def from_settings(cls, settings: Settings, client: Any = None) -> S3Storage:
        conf = settings.storage
        presign = None
        if conf.s3_presign_endpoint_url and conf.s3_presign_endpoint_url != conf.s3_endpoint_url:
            presign = make_client(endpoint_url=conf.s3_presign_endpoint_url, access_key_id=conf.s3_access_key_id,
                                  secret_access_key=conf.s3_secret_access_key.get_secret_value(),
                                  region=conf.s3_region)
        return cls(client or make_s3_client(settings), bucket=conf.s3_bucket, prefix=conf.s3_prefix,
                   public_base_url=conf.s3_public_base_url, presign_expiry_s=conf.s3_presign_expiry_s,
                   presign_client=presign)

    # ---- helpers
    def _full(self, key: str) -> str:
        return self.prefix + validate_key(key)

    def _partial_key(self, key: str) -> str:
        return f"{self.prefix}{PARTIAL_DIR}/{uuid.uuid4().hex}/{key.rsplit('/', 1)[-1]}"

    def _head(self, full_key: str, shown_key: str) -> dict[str, Any]:
        with self._reading(shown_key):
            return cast(dict[str, Any], self.client.head_object(Bucket=self.bucket, Key=full_key))

    @contextlib.contextmanager
    def _reading(self, shown_key: str) -> Iterator[None]:
        """Translate S3 errors of a read: a missing object is NotFound, anything else ServiceUnavailable."""
        try:
            yield
        except ClientError as exc:
            if _is_missing(exc):
                raise NotFound(f"Stored object {shown_key!r} does not exist.") from exc
            raise _unavailable(exc, self.bucket) from exc
        except BotoCoreError as exc:
            raise _unavailable(exc, self.bucket) from exc

    def _delete_quietly(self, full_key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=full_key)
        except (ClientError, BotoCoreError) as exc:  # a stray staging object is harmless; log it
            log.warning("could not remove staging object %s: %s", full_key, exc)

    def _target(self, key: str) -> str:
        return self._partial_key(key) if self.stage_then_copy else self._full(key)

    def _commit(self, target: str, key: str, size: int, sha256: str, content_type: str) -> StoredObject:
        """Server-side copy from the staging key to the real key (multipart copy above 16 MiB)."""
        if self.stage_then_copy:
            self.client.copy(
                {"Bucket": self.bucket, "Key": target}, self.bucket, self._full(key),
                ExtraArgs={"ContentType": content_type, "Metadata": {"sha256": sha256},
                           "MetadataDirective": "REPLACE"},
                Config=self.transfer_config,
            )
        return StoredObject(key=key, size=size, content_type=content_type, sha256=sha256)

    # ---- writing
    def put_file(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        self._full(key)
        src = Path(src)
        ctype = guess_content_type(key, content_type)
        sha = sha256_file(src)
        size = src.stat().st_size
        target = self._target(key)
        try:
            self.client.upload_file(str(src), self.bucket, target, Config=self.transfer_config,
                                    ExtraArgs={"ContentType": ctype, "Metadata": {"sha256": sha}})
            return self._commit(target, key, size, sha, ctype)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc
        except Exception as exc:  # s3transfer wraps some failures in its own exception types
            if type(exc).__module__.startswith(("boto3", "s3transfer")):
                raise _unavailable(exc, self.bucket) from exc
            raise
        finally:
            if self.stage_then_copy:
                self._delete_quietly(target)

    def put_stream(self, chunks: Iterable[bytes], key: str, *, max_bytes: int,
                   content_type: str | None = None) -> StoredObject:
        self._full(key)
        ctype = guess_content_type(key, content_type)
        # Stay under S3's 10,000-part limit even for the largest allowed upload.
        part_size = max(self.part_size, math.ceil(max_bytes / (MAX_PARTS - 1)))
        target = self._target(key)
        upload_id: str | None = None
        parts: list[Future[dict[str, Any]]] = []
        digest = hashlib.sha256()
        size = 0
        buf = bytearray()
        # Parts upload in the background while the next one is read from the client: at most
        # UPLOAD_AHEAD parts in flight, so one upload holds at most (UPLOAD_AHEAD + 1) parts in memory.
        pool = ThreadPoolExecutor(max_workers=UPLOAD_AHEAD, thread_name_prefix="s3-part")

        def upload_part(number: int, data: bytes) -> dict[str, Any]:
            answer = self.client.upload_part(Bucket=self.bucket, Key=target, UploadId=upload_id,
                                             PartNumber=number, Body=data)
            return {"PartNumber": number, "ETag": answer["ETag"]}

        def send_part(data: bytes) -> None:
            nonlocal upload_id
            if upload_id is None:  # created lazily: small uploads become one plain PUT
                upload_id = self.client.create_multipart_upload(
                    Bucket=self.bucket, Key=target, ContentType=ctype)["UploadId"]
            in_flight = [f for f in parts if not f.done()]
            if len(in_flight) >= UPLOAD_AHEAD:
                wait(in_flight, return_when=FIRST_COMPLETED)
            for done in (f for f in parts if f.done()):
                done.result()  # surface a failed part now rather than at the end
            parts.append(pool.submit(upload_part, len(parts) + 1, data))

        completed = False
        try:
            for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(f"The upload is larger than the limit of {max_bytes} bytes.")
                digest.update(chunk)
                buf += chunk
                while len(buf) >= part_size:
                    send_part(bytes(buf[:part_size]))
                    del buf[:part_size]
            sha = digest.hexdigest()
            if upload_id is None:
                self.client.put_object(Bucket=self.bucket, Key=target, Body=bytes(buf), ContentType=ctype,
                                       Metadata={"sha256": sha})
            else:
                if buf:
                    send_part(bytes(buf))
                done_parts = [f.result() for f in parts]
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id,
                                                      MultipartUpload={"Parts": done_parts})
            completed = True
            return self._commit(target, key, size, sha, ctype)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # no part may land after the abort below
            if upload_id is not None and not completed:
                try:
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id)
                except (ClientError, BotoCoreError) as exc:
                    log.warning("could not abort multipart upload %s: %s", upload_id, exc)
            if completed and self.stage_then_copy:
                self._delete_quietly(target)

    # ---- reading
    def _download(self, full_key: str, shown_key: str, dest: Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.part")
        try:
            with self._reading(shown_key):
                self.client.download_file(self.bucket, full_key, str(tmp), Config=self.transfer_config)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest

    def get_file(self, key: str, dest: Path) -> Path:
        return self._download(self._full(key), key, dest)

    def _external_key(self, bucket: str, key: str, allow_service_prefix: bool) -> str:
        if bucket != self.bucket:
            raise UrlNotAllowed(f"s3:// inputs must be in the configured bucket {self.bucket!r}, not {bucket!r}.")
        if not key or key.endswith("/"):
            raise InputError(f"The reference 's3://{bucket}/{key}' names no object key.", code="input_invalid")
        if self.prefix and key.startswith(self.prefix) and not allow_service_prefix:
            raise UrlNotAllowed(f"s3:// inputs cannot point inside the service's own folder "
                                f"{self.prefix!r}; use the uploaded file's id instead.")
        return key

    def head_external(self, bucket: str, key: str, *, allow_service_prefix: bool = False) -> int:
        key = self._external_key(bucket, key, allow_service_prefix)
        return int(self._head(key, key).get("ContentLength", 0))

    def read_external(self, bucket: str, key: str, dest: Path, *, allow_service_prefix: bool = False) -> Path:
        key = self._external_key(bucket, key, allow_service_prefix)
        return self._download(key, key, dest)

    def open_read(self, key: str) -> BinaryIO:
        with self._reading(key):
            answer = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
        return cast(BinaryIO, answer["Body"])

    def exists(self, key: str) -> bool:
        try:
            self._head(self._full(key), key)
        except NotFound:
            return False
        return True

    def size(self, key: str) -> int:
        return int(self._head(self._full(key), key)["ContentLength"])

    # ---- deleting
    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc

    def _list(self, full_prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full_prefix):
            yield from page.get("Contents", [])

    def _delete_keys(self, keys: list[str]) -> int:
        count = 0
        for start in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[start:start + 1000]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise ServiceUnavailable(
                    f"S3 storage could not delete {len(answer['Errors'])} objects "
                    f"(first: {first.get('Key')!r}, {first.get('Code')}).")
            count += len(batch)
        return count

    def delete_prefix(self, prefix: str) -> int:
        validate_key(prefix, prefix=True)
        staging = f"{self.prefix}{PARTIAL_DIR}/"
        try:
            keys = [o["Key"] for o in self._list(self.prefix + prefix) if not o["Key"].startswith(staging)]
            return self._delete_keys(keys)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc

    def purge_partials(self, max_age_s: float = 86400.0) -> int:
        """Remove staging objects left by crashed writers (older than `max_age_s`)."""
        cutoff = datetime.now(UTC) - timedelta(seconds=max_age_s)
        try:
            staged = self._list(f"{self.prefix}{PARTIAL_DIR}/")
            keys = [o["Key"] for o in staged if o["LastModified"] < cutoff]
            return self._delete_keys(keys)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc

    # ---- agents' outputs: PUT straight to the bucket, committed by a server-side copy
    presigned_uploads = True

    def upload_url(self, key: str, *, content_type: str, expires_s: int) -> str | None:
        params = {"Bucket": self.bucket, "Key": self._full(key), "ContentType": content_type}
        try:
            return cast(str, self.presign_client.generate_presigned_url(
                "put_object", Params=params, ExpiresIn=max(60, min(int(expires_s), 7 * 86400))))
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc

    def move(self, src: str, dest: str, content_type: str | None = None) -> StoredObject:
        """The bytes under `src` are read once here, to hash them, then S3 copies them to `dest` itself
        (only if `src` is still the object that was hashed: its ETag) and `src` is removed."""
        full_src, full_dest = self._full(src), self._full(dest)
        ctype = guess_content_type(dest, content_type)
        digest = hashlib.sha256()
        size = 0
        with self._reading(src):
            answer = self.client.get_object(Bucket=self.bucket, Key=full_src)
            with contextlib.closing(answer["Body"]) as body:
                while chunk := body.read(COPY_CHUNK):
                    size += len(chunk)
                    digest.update(chunk)
        sha = digest.hexdigest()
        try:
            self.client.copy({"Bucket": self.bucket, "Key": full_src}, self.bucket, full_dest,
                             ExtraArgs={"ContentType": ctype, "Metadata": {"sha256": sha},
                                        "MetadataDirective": "REPLACE", "CopySourceIfMatch": answer["ETag"]},
                             Config=self.transfer_config)
            self.client.delete_object(Bucket=self.bucket, Key=full_src)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc
        return StoredObject(key=dest, size=size, content_type=ctype, sha256=sha)

    # ---- serving
    def url(self, key: str, *, filename: str | None = None) -> str | None:
        full = self._full(key)
        if self.public_base_url:
            # A CDN / R2 public domain mapped to the bucket root: no signature, no Content-Disposition.
            return f"{self.public_base_url}/{quote(full, safe='/~')}"
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": full}
        if filename:
            params["ResponseContentDisposition"] = content_disposition(filename)
        try:
            return cast(str, self.presign_client.generate_presigned_url(
                "get_object", Params=params, ExpiresIn=self.presign_expiry_s))
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc

    def check(self) -> None:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise _unavailable(exc, self.bucket) from exc
