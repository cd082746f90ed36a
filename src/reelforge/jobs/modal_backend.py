"""The `modal` backend: jobs of queues mapped to it (compute.queue_backends) run as one call each of the
Modal function deployed from engine/modal_app.py (seed 003's A10G function, with its "Modal down -> local
CPU" fallback when the queue's list goes on to `local`).

The loop is the shared remote-function backend (jobs/remote_backend.py); engine/modal_client.py talks
to Modal.
"""

from __future__ import annotations

from reelforge.config import Settings
from reelforge.engine.backends import AgentPresence
from reelforge.engine.modal_client import ModalClient
from reelforge.jobs.agents import AgentJobs
from reelforge.jobs.remote_backend import RemoteFunctionBackend
from reelforge.jobs.store import Stores

AGENT_ID = "agt_modal"


class ModalBackend(RemoteFunctionBackend):
    def __init__(self, settings: Settings, stores: Stores, agents: AgentJobs, presence: AgentPresence,
                 client: ModalClient | None = None, max_in_flight: int = 8) -> None:
        conf = settings.compute
        client = client or ModalClient(conf.modal_app, conf.modal_function, environment=conf.modal_environment)
        super().__init__("modal", "Modal", settings, stores, agents, presence, client,
                         resources={"gpu_name": "modal", "vram_gb": 24, "nvenc": True},
                         identity={"modal_app": conf.modal_app, "modal_function": conf.modal_function},
                         max_in_flight=max_in_flight)
