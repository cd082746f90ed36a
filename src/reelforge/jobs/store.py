"""The job stores, one small class per aggregate, sharing one Database (engine + session factory):

    jobs      store_jobs.py      JobsStore      submit, read, claim, lease, progress, finish, retry, cancel
    files     store_files.py     FilesStore     uploaded files' metadata
    keys      store_keys.py      KeysStore      API keys (hashed) -> tenants
    webhooks  store_webhooks.py  WebhooksStore  delivery attempts and the terminal-event outbox
    agents    store_agents.py    AgentsStore    remote agents' tokens (hashed, queue-scoped) and declared resources
    batches   store_batches.py   BatchesStore   batch runs, their items (keyed by source, etag, size) and presets

`Stores.open(url)` makes all six on one connection pool; a process that needs one aggregate may build
just that one on a Database of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelforge.jobs.db import Database, make_engine
from reelforge.jobs.store_agents import AgentsStore, AgentTokenRecord
from reelforge.jobs.store_batches import BatchesStore
from reelforge.jobs.store_files import FileRecord, FilesStore, new_file_id
from reelforge.jobs.store_jobs import JobRecord, JobsStore, new_job_id
from reelforge.jobs.store_keys import ApiKeyRecord, KeysStore, new_key_prefix
from reelforge.jobs.store_webhooks import WebhooksStore

__all__ = ["AgentTokenRecord", "AgentsStore", "ApiKeyRecord", "BatchesStore", "Database", "FileRecord",
           "FilesStore", "JobRecord", "JobsStore", "KeysStore", "Stores", "WebhooksStore", "make_engine",
           "new_file_id", "new_job_id", "new_key_prefix"]


@dataclass(frozen=True)
class Stores:
    db: Database
    jobs: JobsStore
    files: FilesStore
    keys: KeysStore
    webhooks: WebhooksStore
    agents: AgentsStore
    batches: BatchesStore

    @classmethod
    def open(cls, url: str, *, migrate: bool = False) -> Stores:
        db = Database(url)
        if migrate:
            db.migrate()
        return cls(db, JobsStore(db), FilesStore(db), KeysStore(db), WebhooksStore(db), AgentsStore(db),
                   BatchesStore(db))

    def ping(self) -> None:
        self.db.ping()

    def dispose(self) -> None:
        self.db.dispose()
