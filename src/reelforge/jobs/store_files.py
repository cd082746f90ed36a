"""Uploaded files: their metadata rows (the bytes are in storage under `storage_key`)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select

from reelforge.jobs.db import _Store
from reelforge.jobs.models import FileRow


def new_file_id() -> str:
    return f"file_{uuid.uuid4().hex}"


@dataclass(frozen=True)
class FileRecord:
    id: str
    tenant: str
    filename: str
    content_type: str
    size: int
    sha256: str
    storage_key: str
    created_at: float



class FilesStore(_Store):
    def create_file(self, *, tenant: str, filename: str, content_type: str, size: int, sha256: str,
                    storage_key: str, file_id: str | None = None) -> FileRecord:
        row = FileRow(id=file_id or new_file_id(), tenant=tenant, filename=filename, content_type=content_type,
                      size=size, sha256=sha256, storage_key=storage_key, created_at=time.time())
        with self.session() as s, s.begin():
            s.add(row)
        return self._file(row)

    @staticmethod
    def _file(row: FileRow) -> FileRecord:
        return FileRecord(row.id, row.tenant, row.filename, row.content_type, row.size, row.sha256,
                          row.storage_key, row.created_at)

    def get_file(self, file_id: str, tenant: str | None) -> FileRecord | None:
        with self.session() as s:
            row = s.get(FileRow, file_id)
            if row is None or (tenant is not None and row.tenant != tenant):
                return None
            return self._file(row)

    def storage_keys(self, file_ids: Iterable[str], tenant: str) -> dict[str, str]:
        """{file id: storage key} for those of `file_ids` that are this tenant's, in one query."""
        ids = list(dict.fromkeys(file_ids))
        if not ids:
            return {}
        with self.session() as s:
            rows = s.execute(select(FileRow.id, FileRow.storage_key)
                             .where(FileRow.id.in_(ids), FileRow.tenant == tenant)).all()
        return {file_id: key for file_id, key in rows}
