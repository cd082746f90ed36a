"""The long-lived objects of a process that holds the job database, built once from Settings.

`JobServices.create(settings)`: the stores, storage, the webhook sender and the database job control;
`.engine` is what the engine gets (engine/services.py Services: settings, storage, control). The API
(api/app.py) and the Celery worker (cli.py `worker`) are the composition roots that build one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from reelforge.config import Settings
from reelforge.engine.backends import REMOTE_FUNCTIONS
from reelforge.engine.services import Services
from reelforge.jobs.batcher import StatusReader, SubmitBatcher
from reelforge.jobs.control import DatabaseControl
from reelforge.jobs.service import HandOff, JobService
from reelforge.jobs.store import Stores
from reelforge.jobs.webhooks import WebhookSender
from reelforge.storage.base import Storage


@dataclass
class JobServices:
    settings: Settings
    stores: Stores
    storage: Storage
    webhooks: WebhookSender
    control: DatabaseControl
    engine: Services = field(init=False)
    _closed: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        self.engine = Services(self.settings, self.storage, self.control, self.control)
        agents, builtin = self.stores.agents, [f"agt_{name}" for name in REMOTE_FUNCTIONS]
        # agents polling another API process of this deployment count as present here too
        self.engine.presence.shared = lambda within_s: agents.polled_queues(time.time() - within_s, builtin)

    @classmethod
    def create(cls, settings: Settings, *, migrate: bool = True) -> JobServices:
        from reelforge.storage import make_storage

        settings.ensure_dirs()
        stores = Stores.open(settings.service.database_url.get_secret_value(), migrate=migrate)
        storage = make_storage(settings)
        sender = WebhookSender(settings, stores.webhooks.record_webhook_attempt, outbox=stores.webhooks)
        return cls(settings, stores, storage, sender, DatabaseControl(settings, stores, storage, sender))

    def job_service(self, executor: HandOff, batcher: SubmitBatcher | None = None,
                    reader: StatusReader | None = None) -> JobService:
        """The submit/cancel/retry/read path on these stores, handing new jobs to `executor`."""
        return JobService(self.settings, self.stores, storage=self.storage, webhooks=self.webhooks,
                          executor=executor, batcher=batcher, reader=reader)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.webhooks.close(timeout=5)
            self.stores.dispose()
