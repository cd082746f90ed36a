"""The long-lived objects a process needs (store, storage, webhooks), built once from Settings."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reelforge.config import Settings
from reelforge.jobs.store import Stores

if TYPE_CHECKING:
    from reelforge.jobs.store import FilesStore
    from reelforge.jobs.webhooks import WebhookSender
    from reelforge.ops.context import Resolver
    from reelforge.storage.base import Storage


@dataclass
class Services:
    """Parent side (API process, Celery worker main process): owns DB, storage and webhook delivery."""

    settings: Settings
    stores: Stores
    storage: Storage
    webhooks: WebhookSender
    _closed: bool = field(default=False, repr=False)

    @classmethod
    def create(cls, settings: Settings, *, migrate: bool = True) -> Services:
        from reelforge.jobs.webhooks import WebhookSender
        from reelforge.storage import make_storage

        settings.ensure_dirs()
        stores = Stores.open(settings.service.database_url.get_secret_value(), migrate=migrate)
        storage = make_storage(settings)
        sender = WebhookSender(settings, stores.webhooks.record_webhook_attempt, outbox=stores.webhooks)
        return cls(settings, stores, storage, sender)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.webhooks.close(timeout=5)
            self.stores.dispose()


class HostServices:
    """Inside a job host process: the pieces an op's context needs, made lazily on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._store: FilesStore | None = None
        self._storage: Storage | None = None

    def _ensure(self) -> tuple[FilesStore, Storage]:
        with self._lock:
            if self._store is None:
                from reelforge.jobs.store import Database, FilesStore
                from reelforge.storage import make_storage

                self._store = FilesStore(Database(self.settings.service.database_url.get_secret_value()))
                self._storage = make_storage(self.settings)
            assert self._storage is not None
            return self._store, self._storage

    def resolver_for(self, tenant: str) -> Resolver:
        from reelforge.storage.fetch import make_resolver

        def lookup_file(file_id: str) -> str | None:
            store, _ = self._ensure()
            rec = store.get_file(file_id, tenant)
            return rec.storage_key if rec else None

        def resolve(ref: str, dest: Any) -> Any:
            _, storage = self._ensure()
            return make_resolver(self.settings, storage, lookup_file=lookup_file)(ref, dest)

        return resolve
