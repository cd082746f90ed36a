"""Storage for uploads and outputs (local folder or S3-compatible bucket) and safe input fetching.

    make_storage(settings) -> Storage        the configured backend
    storage.fetch.make_resolver(...)         turns input references into local files for a job
    storage.urlguard                         which URLs may be fetched at all
"""

from __future__ import annotations

from reelforge.config import Settings
from reelforge.storage.base import Storage, StoredObject, validate_key
from reelforge.storage.local import LocalStorage

__all__ = ["LocalStorage", "Storage", "StoredObject", "make_storage", "validate_key"]


def make_storage(settings: Settings) -> Storage:
    """The storage backend named by `settings.storage.backend` (boto3 is only imported for S3)."""
    if settings.storage.backend == "s3":
        from reelforge.storage.s3 import S3Storage

        return S3Storage.from_settings(settings)
    return LocalStorage(settings.storage_dir)
