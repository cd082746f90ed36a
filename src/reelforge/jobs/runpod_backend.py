"""The `runpod` backend: jobs of queues mapped to it (compute.queue_backends) run on a RunPod serverless
endpoint whose handler executes job envelopes (engine/agent.py run_envelope; deploy/runpod/).

The service claims the job under a built-in agent identity (`agt_runpod`, visible and revocable in
`reelforge agents token list|revoke`) and sends its envelope — the same one an agent gets, with its job
token — to `/run`. The handler reports progress and the outcome over HTTPS with that job token, like an
agent. This side keeps the lease alive while RunPod queues the job (cold starts can take minutes),
forwards cancels to `/cancel`, and watches `/status`: a remote job that ends (FAILED, TIMED_OUT, vanished)
without the handler having finished it is released for another attempt. When RunPod cannot take a job
(unreachable, key refused, 5xx beyond the client's retries) the job is given back without spending an
attempt and RunPod is skipped for a while, so the next backend in the queue's list (e.g. local) runs it;
the job's notes say why (`last_worker_error`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from reelforge.config import Settings
from reelforge.engine.backends import AgentPresence, backend_for
from reelforge.engine.control import JobStatus
from reelforge.engine.metrics import JOBS_STARTED_REMOTE, REMOTE_QUEUE_DELAY
from reelforge.engine.runpod import RunPodClient, RunPodError, RunPodNotFound, RunPodUnavailable
from reelforge.jobs.agents import AgentJobs, JobGrant
from reelforge.jobs.store import Stores

log = logging.getLogger("reelforge.runpod")
AGENT_ID = "agt_runpod"
DOWN_FOR_S = 30.0
POLL_S = 1.0


@dataclass
class _Remote:
    grant: JobGrant
    remote_id: str
    cancel_sent: bool = False


class RunPodBackend:
    def __init__(self, settings: Settings, stores: Stores, agents: AgentJobs, presence: AgentPresence,
                 client: RunPodClient | None = None, max_in_flight: int = 8) -> None:
        conf = settings.compute
        self.settings = settings
        self.stores = stores
        self.agents = agents
        self.presence = presence
        self.client = client or RunPodClient(conf.runpod_endpoint_id, conf.runpod_api_key.get_secret_value(),
                                             base_url=conf.runpod_base_url, retries=2)
        self.max_in_flight = max_in_flight
        self.queues = [q for q, chain in conf.queue_backends.items() if "runpod" in chain]
        self._running: dict[str, _Remote] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.stores.agents.ensure_builtin(AGENT_ID, "runpod", self.queues)
        self._thread = threading.Thread(target=self._loop, name="reelforge-runpod", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._watch()
                while len(self._running) < self.max_in_flight and self._dispatch():
                    pass
            except Exception:
                log.exception("runpod backend loop failed")

    def _dispatch(self) -> bool:
        """Send one queued job to RunPod; False when there was none to send (or RunPod is down)."""
        queues = [q for q in self.queues if backend_for(self.settings, q, self.presence) == "runpod"]
        agent = self.stores.agents.get(AGENT_ID)
        if not queues or agent is None or agent.revoked:
            return False
        env = self.agents.claim(agent, "runpod", queues, {"gpu_name": "runpod", "vram_gb": 80}, record=False)
        if env is None:
            return False
        grant = self.agents.grant(env["token"], env["job_id"])
        try:
            remote = self.client.run({"envelope": env, "api": self.settings.service.public_url},
                                     execution_timeout_s=float(env["timeout_s"]) + 60)
        except RunPodError as exc:
            why = f"RunPod could not take the job ({exc}); it goes to the queue's next backend."
            self.presence.mark_down("runpod", DOWN_FOR_S, why)
            self.agents.release(grant, {"code": "backend_unavailable", "message": why}, refund=True)
            log.warning("%s: %s", env["job_id"], why)
            return False
        self.agents.note(grant, {"backend": "runpod", "remote_id": remote.id,
                                 "endpoint": self.settings.compute.runpod_endpoint_id})
        self._running[env["job_id"]] = _Remote(grant, remote.id)
        JOBS_STARTED_REMOTE.labels(backend="runpod", queue=env["queue"]).inc()
        return True

    def _watch(self) -> None:
        for job_id, remote in list(self._running.items()):
            lease = self.agents.renew(remote.grant)  # RunPod may keep it queued for a cold start
            if not lease.owned:
                self._running.pop(job_id, None)  # the handler finished it (or it was reclaimed)
                self._record(remote)
                continue
            if lease.cancel_requested and not remote.cancel_sent:
                remote.cancel_sent = True
                try:
                    self.client.cancel(remote.remote_id)
                except RunPodError as exc:
                    log.warning("cancel of %s on RunPod failed: %s", job_id, exc)
            try:
                status = self.client.status(remote.remote_id)
            except RunPodNotFound:
                self._running.pop(job_id, None)
                self.agents.release(remote.grant, {"code": "remote_lost", "message": "RunPod lost the job."})
                continue
            except RunPodUnavailable:
                continue  # try again next round; the lease is ours meanwhile
            if not status.terminal:
                continue
            self._running.pop(job_id, None)
            self.agents.note(remote.grant, {"runpod_status": status.status, "queue_delay_s": status.delay_s,
                                            "execution_s": status.execution_s})
            if status.delay_s is not None:
                REMOTE_QUEUE_DELAY.labels(backend="runpod").observe(status.delay_s)
            if status.status == "CANCELLED" and lease.cancel_requested:
                self.agents.finish(remote.grant, JobStatus.CANCELLED, None,
                                   {"code": "cancelled", "message": "The job was cancelled."})
            else:  # ended on RunPod without the handler finishing it: an infrastructure failure, retried
                self.agents.release(remote.grant, {"code": f"remote_{status.status.lower()}", "message":
                                    f"The job ended on RunPod as {status.status}"
                                    f"{': ' + status.error[:300] if status.error else ''}."})

    def _record(self, remote: _Remote) -> None:
        try:
            status = self.client.status(remote.remote_id)
        except RunPodError:
            return
        if status.delay_s is not None:
            REMOTE_QUEUE_DELAY.labels(backend="runpod").observe(status.delay_s)
        rec = self.stores.jobs.get_job(remote.grant.job_id)
        if rec is not None:
            self.stores.jobs.add_notes(rec.id, {"runpod_status": status.status, "queue_delay_s": status.delay_s,
                                                "execution_s": status.execution_s})
