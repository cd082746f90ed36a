"""A user's bucket, for batch runs: list a prefix, read a small object, presign a GET, write an object.

Two ways to reach it: the batch's own credentials and endpoint (`Bucket.connect`), or the service's own
storage client (`Bucket.of_storage`, S3 storage only). With the service's client the service's own folder
(`s3_prefix`, where every tenant's uploads and outputs live) is refused for reading and writing, as for
`s3://` job inputs. A user-given endpoint must be a public address (storage/urlguard.py), so a batch
cannot make the service talk to its own network; the check cannot stop a later DNS change (boto3 resolves
the name itself), so operators who care also keep the service's egress to the Internet only.

botocore errors become 4xx UserErrors naming the bucket: wrong credentials, a missing bucket, access
refused, an unreachable endpoint. Nothing here knows about batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

from reelforge.errors import InputError, UrlNotAllowed, UserError
from reelforge.storage.s3 import S3Storage, make_client
from reelforge.storage.urlguard import check_resolved_host

_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                     "AuthorizationHeaderMalformed", "InvalidSecurity"}
_DENIED_CODES = {"AccessDenied", "AllAccessDisabled", "AccountProblem", "403", "Forbidden"}
_MISSING_BUCKET = {"NoSuchBucket"}
_MISSING_KEY = {"NoSuchKey", "404", "NotFound"}


class SourceError(UserError):
    """The batch's bucket cannot be used as asked (a 422 with a code naming why)."""

    code = "source_unreadable"
    http_status = 422


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    etag: str
    size: int
    mtime: float  # unix seconds


def split_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix"); ValueError for anything else."""
    if not url.startswith("s3://"):
        raise ValueError("must start with s3://")
    bucket, _, key = url[5:].partition("/")
    if not bucket or "/" in bucket or any(c.isspace() for c in bucket):
        raise ValueError("names no bucket")
    return bucket, key


class Bucket:
    def __init__(self, client: Any, bucket: str, *, guarded_prefix: str = "") -> None:
        self.client = client
        self.bucket = bucket
        self.guarded_prefix = guarded_prefix  # the service's own folder (service credentials only)

    @classmethod
    def connect(cls, bucket: str, *, endpoint_url: str, access_key_id: str, secret_access_key: str,
                region: str = "us-east-1", allow_private: bool = False) -> Bucket:
        if endpoint_url:
            try:
                check_resolved_host(endpoint_url, allow_private=allow_private)
            except UrlNotAllowed as exc:
                raise SourceError(f"The S3 endpoint {endpoint_url!r} is not allowed: {exc.message}",
                                  code="source_endpoint_not_allowed") from None
        client = make_client(endpoint_url=endpoint_url, access_key_id=access_key_id,
                             secret_access_key=secret_access_key, region=region)
        return cls(client, bucket)

    @classmethod
    def of_storage(cls, storage: Any, bucket: str) -> Bucket:
        if not isinstance(storage, S3Storage):
            raise SourceError("This service stores files in a local folder, so a bucket prefix needs its own "
                              "credentials (s3_access_key_id, s3_secret_access_key, s3_endpoint_url).",
                              code="source_needs_credentials")
        if bucket != storage.bucket:
            raise SourceError(f"Without credentials of its own a batch can only read the service's bucket "
                              f"{storage.bucket!r}, not {bucket!r}.", code="source_bucket_not_allowed")
        return cls(storage.client, bucket, guarded_prefix=storage.prefix)

    # ---- errors
    def _check_key(self, key: str) -> None:
        if self.guarded_prefix and (key.startswith(self.guarded_prefix) or self.guarded_prefix.startswith(key)):
            raise SourceError(f"s3://{self.bucket}/{key} lies in (or contains) the service's own folder "
                              f"{self.guarded_prefix!r}, which batches cannot read or write.",
                              code="source_bucket_not_allowed")

    def _error(self, exc: Exception, what: str) -> UserError:
        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in _CREDENTIAL_CODES:
                return SourceError(f"The bucket {self.bucket!r} refused the credentials ({code}) while {what}.",
                                   code="source_bad_credentials")
            if code in _MISSING_BUCKET:
                return SourceError(f"There is no bucket {self.bucket!r}.", code="source_bucket_not_found")
            if code in _DENIED_CODES or status == 403:
                return SourceError(f"Access to the bucket {self.bucket!r} was refused ({code or status}) while "
                                   f"{what}.", code="source_access_denied")
            if code in _MISSING_KEY or status == 404:
                return InputError(f"No object {what} in the bucket {self.bucket!r}.", code="source_not_found")
            return SourceError(f"The bucket {self.bucket!r} could not be read ({code or status}) while {what}.")
        if isinstance(exc, EndpointConnectionError):
            return SourceError(f"The S3 endpoint of bucket {self.bucket!r} cannot be reached.",
                               code="source_unreachable")
        return SourceError(f"The bucket {self.bucket!r} could not be used while {what}: {exc}.")

    # ---- reading
    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under `prefix` (a plain S3 prefix), in key order, page by page."""
        self._check_key(prefix)
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield ObjectInfo(key=obj["Key"], etag=str(obj.get("ETag", "")).strip('"'),
                                     size=int(obj.get("Size", 0)), mtime=obj["LastModified"].timestamp())
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"listing {prefix!r}") from exc

    def read_bytes(self, key: str, max_bytes: int) -> bytes:
        """A small object's bytes (a config or manifest); larger than max_bytes is refused."""
        self._check_key(key)
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=key)
            length = int(answer.get("ContentLength") or 0)
            if length > max_bytes:
                raise InputError(f"s3://{self.bucket}/{key} is larger than {max_bytes} bytes.",
                                 code="source_too_large")
            body: BinaryIO = answer["Body"]
            data = body.read(max_bytes + 1)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"reading {key!r}") from exc
        if len(data) > max_bytes:
            raise InputError(f"s3://{self.bucket}/{key} is larger than {max_bytes} bytes.", code="source_too_large")
        return data

    def presign_get(self, key: str, expiry_s: int) -> str:
        self._check_key(key)
        try:
            return str(self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket, "Key": key},
                                                           ExpiresIn=expiry_s))
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"signing {key!r}") from exc

    def check_writable(self, prefix: str) -> None:
        """The destination prefix is allowed (the service's own folder is not) and its bucket answers."""
        self._check_key(prefix)
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, "checking the destination") from exc

    # ---- writing
    def put(self, key: str, body: BinaryIO | bytes, content_type: str) -> None:
        self._check_key(key)
        try:
            if isinstance(body, bytes):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)
            else:
                self.client.upload_fileobj(body, self.bucket, key, ExtraArgs={"ContentType": content_type})
        except (ClientError, BotoCoreError) as exc:
            raise self._error(exc, f"writing {key!r}") from exc
