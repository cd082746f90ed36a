"""What the engine's processes need, handed in by a composition root (api/app.py, cli.py); engine/ opens no
database itself.

`Services`: the parent side (the API process's executors, a Celery worker's main process): settings,
storage for outputs, and job control (engine/control.py) — the database implementation comes from
jobs/services.py. `HostServices`: inside a job host, only what an op's context needs (storage for its
inputs); uploaded-file ids come already resolved in the job's payload, so a host needs no database URL.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reelforge.config import Settings
from reelforge.engine.backends import AgentPresence
from reelforge.engine.control import JobBacklog, JobControl

if TYPE_CHECKING:
    from reelforge.runtime import Resolver
    from reelforge.storage.base import Storage


@dataclass
class Services:
    settings: Settings
    storage: Storage
    control: JobControl
    backlog: JobBacklog
    # which queues remote agents are polling (engine/backends.py): the local executor leaves those to them
    presence: AgentPresence = field(default_factory=AgentPresence)


class HostServices:
    """Inside a job host process: storage made lazily on first use, and a resolver per job."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._storage: Storage | None = None

    def storage(self) -> Storage:
        with self._lock:
            if self._storage is None:
                from reelforge.storage import make_storage

                self._storage = make_storage(self.settings)
            return self._storage

    def resolver_for(self, payload: dict[str, Any]) -> Resolver:
        """The job's input resolver: its uploaded files are the storage keys in payload["files"] (resolved
        for the job's tenant when it was claimed), URLs and s3:// are fetched as usual."""
        from reelforge.storage.fetch import make_resolver

        files: dict[str, dict[str, Any]] = payload.get("files") or {}
        access: dict[str, str] = payload.get("access") or {}
        storage: Storage | None = None
        if access:  # a remote agent's host: no storage credentials, inputs by URL (storage/url_files.py)
            from reelforge.storage.url_files import UrlFiles

            storage = UrlFiles({str(f["key"]): str(f["url"]) for f in files.values() if f.get("url")},
                               api=access.get("api", ""), token=access.get("token", ""),
                               max_bytes=self.settings.limits.max_fetch_bytes,
                               timeout_s=self.settings.limits.fetch_timeout_s)

        def lookup_file(file_id: str) -> str | None:
            ref = files.get(file_id)
            return str(ref["key"]) if ref and ref.get("key") else None

        def resolve(ref: str, dest: Any) -> Any:
            return make_resolver(self.settings, storage or self.storage(), lookup_file=lookup_file)(ref, dest)

        return resolve
