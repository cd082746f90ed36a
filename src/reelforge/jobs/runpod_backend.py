"""The `runpod` backend: jobs of queues mapped to it (compute.queue_backends) run on a RunPod serverless
endpoint whose handler executes job envelopes (engine/runpod_worker.py; deploy/Dockerfile.runpod).

The loop is the shared remote-function backend (jobs/remote_backend.py); this module only says how to
reach RunPod (engine/runpod.py) and what its machines offer.
"""

from __future__ import annotations

from typing import Any

from reelforge.config import Settings
from reelforge.engine.backends import AgentPresence
from reelforge.engine.remote import RemoteStatus
from reelforge.engine.runpod import RunPodClient
from reelforge.jobs.agents import AgentJobs
from reelforge.jobs.remote_backend import RemoteFunctionBackend
from reelforge.jobs.store import Stores

AGENT_ID = "agt_runpod"


class _RunPodCalls:
    """RunPodClient with the service's ttl on every /run."""

    def __init__(self, client: RunPodClient, ttl_s: float) -> None:
        self.client = client
        self.ttl_s = ttl_s

    def run(self, payload: dict[str, Any], *, execution_timeout_s: float | None = None) -> RemoteStatus:
        return self.client.run(payload, execution_timeout_s=execution_timeout_s, ttl_s=self.ttl_s)

    def status(self, call_id: str) -> RemoteStatus:
        return self.client.status(call_id)

    def cancel(self, call_id: str) -> RemoteStatus:
        return self.client.cancel(call_id)

    def close(self) -> None:
        self.client.close()


class RunPodBackend(RemoteFunctionBackend):
    def __init__(self, settings: Settings, stores: Stores, agents: AgentJobs, presence: AgentPresence,
                 client: RunPodClient | None = None, max_in_flight: int = 8) -> None:
        conf = settings.compute
        client = client or RunPodClient(conf.runpod_endpoint_id, conf.runpod_api_key.get_secret_value(),
                                        base_url=conf.runpod_base_url, retries=2)
        super().__init__("runpod", "RunPod", settings, stores, agents, presence,
                         _RunPodCalls(client, conf.runpod_ttl_s),
                         resources={"gpu_name": "runpod", "vram_gb": 80},
                         identity={"endpoint": conf.runpod_endpoint_id}, max_in_flight=max_in_flight)
