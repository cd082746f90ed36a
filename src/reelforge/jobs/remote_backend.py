"""A remote-function backend: jobs of the queues mapped to it (compute.queue_backends) run as one provider
call each (RunPod serverless /run, a Modal function spawn), the call running the job's envelope
(engine/remote.py handle_remote_input) and reporting with the envelope's job token, like an agent.

The service claims the job under the backend's built-in agent identity (`agt_runpod`, `agt_modal`,
visible and revocable in `reelforge agents token list|revoke`) and hands the envelope over. This side
keeps the lease alive while the provider queues the call (cold starts can take minutes), forwards
cancels, and watches the call: one that ends (FAILED, TIMED_OUT, vanished) without the handler having
finished the job is released for another attempt. When the provider cannot take a job (unreachable,
credentials refused, 5xx beyond the client's retries) the job is given back without spending an attempt
and the backend is skipped for a while, so the next backend in the queue's list (e.g. local) runs it; the
job's notes say why (`last_worker_error`).

The identity declares `max_in_flight` as its slots and is marked seen while the backend runs, so a long job
of its queues is planned in as many chunks (docs/CHUNKED.md, "On agents"): each chunk is one more call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from reelforge.config import Settings
from reelforge.engine.backends import AgentPresence, backend_for
from reelforge.engine.control import JobStatus
from reelforge.engine.metrics import JOBS_STARTED_REMOTE, REMOTE_QUEUE_DELAY
from reelforge.engine.remote import RemoteError, RemoteFunctions, RemoteNotFound, RemoteUnavailable
from reelforge.jobs.agents import AgentJobs, JobGrant
from reelforge.jobs.store import Stores

log = logging.getLogger("reelforge.remote")
DOWN_FOR_S = 30.0
POLL_S = 1.0


@dataclass
class _Call:
    grant: JobGrant
    remote_id: str
    cancel_sent: bool = False
    relayed: float = 0.0  # the highest progress taken from the provider's status output


class RemoteFunctionBackend:
    def __init__(self, name: str, label: str, settings: Settings, stores: Stores, agents: AgentJobs,
                 presence: AgentPresence, client: RemoteFunctions, *, resources: dict[str, Any],
                 identity: dict[str, Any], execution_margin_s: float = 60.0, max_in_flight: int = 8) -> None:
        self.name = name  # the backend's name in compute.queue_backends
        self.label = label  # how messages name the provider
        self.agent_id = f"agt_{name}"
        self.settings = settings
        self.stores = stores
        self.agents = agents
        self.presence = presence
        self.client = client
        self.resources = resources  # what the provider's machines offer (placement checks them)
        self.identity = identity  # noted on each job: which endpoint / app ran it
        self.execution_margin_s = execution_margin_s
        self.max_in_flight = max_in_flight
        self.queues = [q for q, chain in settings.compute.queue_backends.items() if name in chain]
        self._running: dict[str, _Call] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen_at = 0.0

    def start(self) -> None:
        self.stores.agents.ensure_builtin(self.agent_id, self.name, self.queues)
        self.stores.agents.seen(self.agent_id, {**self.resources, "slots": self.max_in_flight})
        self._seen_at = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name=f"reelforge-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.client.close()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                if time.monotonic() - self._seen_at >= self.settings.compute.agent_alive_s / 4:
                    self._seen_at = time.monotonic()
                    self.stores.agents.seen(self.agent_id)  # live: its slots count for chunk planning
                self._watch()
                while len(self._running) < self.max_in_flight and self._dispatch():
                    pass
            except Exception:
                log.exception("%s backend loop failed", self.name)

    def _dispatch(self) -> bool:
        """Hand one queued job to the provider; False when there was none (or the provider is down)."""
        queues = [q for q in self.queues if backend_for(self.settings, q, self.presence) == self.name]
        agent = self.stores.agents.get(self.agent_id)
        if not queues or agent is None or agent.revoked:
            return False
        env = self.agents.claim(agent, self.name, queues, self.resources, record=False)
        if env is None:
            return False
        grant = self.agents.grant(env["token"], env["job_id"])
        try:
            call = self.client.run({"envelope": env, "api": self.settings.service.public_url},
                                   execution_timeout_s=float(env["timeout_s"]) + self.execution_margin_s)
        except RemoteError as exc:
            why = f"{self.label} could not take the job ({exc}); it goes to the queue's next backend."
            self.presence.mark_down(self.name, DOWN_FOR_S, why)
            self.agents.release(grant, {"code": "backend_unavailable", "message": why}, refund=True)
            log.warning("%s: %s", env["job_id"], why)
            return False
        self.agents.note(grant, {"backend": self.name, "remote_id": call.id, **self.identity})
        self._running[env["job_id"]] = _Call(grant, call.id)
        JOBS_STARTED_REMOTE.labels(backend=self.name, queue=env["queue"]).inc()
        return True

    def _watch(self) -> None:
        for job_id, call in list(self._running.items()):
            lease = self.agents.renew(call.grant)  # the provider may keep it queued for a cold start
            if not lease.owned:
                self._running.pop(job_id, None)  # the handler finished it (or it was reclaimed)
                self._record(call)
                continue
            if lease.cancel_requested and not call.cancel_sent:
                call.cancel_sent = True
                try:
                    self.client.cancel(call.remote_id)
                except RemoteError as exc:
                    log.warning("cancel of %s on %s failed: %s", job_id, self.label, exc)
            try:
                status = self.client.status(call.remote_id)
            except RemoteNotFound:
                self._running.pop(job_id, None)
                self.agents.release(call.grant, {"code": "remote_lost",
                                                 "message": f"{self.label} lost the job."})
                continue
            except RemoteUnavailable:
                continue  # try again next round; the lease is ours meanwhile
            if not status.terminal:
                self._relay_progress(call, status.output)
                continue
            self._running.pop(job_id, None)
            self.agents.note(call.grant, {f"{self.name}_status": status.status, "queue_delay_s": status.delay_s,
                                          "execution_s": status.execution_s})
            if status.delay_s is not None:
                REMOTE_QUEUE_DELAY.labels(backend=self.name).observe(status.delay_s)
            if status.status == "CANCELLED" and lease.cancel_requested:
                self.agents.finish(call.grant, JobStatus.CANCELLED, None,
                                   {"code": "cancelled", "message": "The job was cancelled."})
            else:  # ended remotely without the handler finishing it: an infrastructure failure, retried
                self.agents.release(call.grant, {"code": f"remote_{status.status.lower()}", "message":
                                    f"The job ended on {self.label} as {status.status}"
                                    f"{': ' + status.error[:300] if status.error else ''}."})

    def _relay_progress(self, call: _Call, output: Any) -> None:
        """The provider's own view of a running call (RunPod: what the handler last sent with `progress_update`,
        in the IN_PROGRESS status' output) is forwarded when it is ahead of what the job shows. The handler's
        reports with its job token come first and sooner; this keeps a job's progress moving when those do not
        get through (a worker whose route to the API is slow or cut), and never moves it back."""
        if not isinstance(output, dict):
            return
        fraction, stage = output.get("progress"), output.get("stage")
        if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 <= fraction <= 1:
            return
        if fraction <= call.relayed:
            return
        call.relayed = float(fraction)
        rec = self.stores.jobs.get_job(call.grant.job_id)
        if rec is None or rec.progress >= fraction:
            return
        self.agents.progress(call.grant, float(fraction), stage[:200] if isinstance(stage, str) else None)

    def _record(self, call: _Call) -> None:
        try:
            status = self.client.status(call.remote_id)
        except RemoteError:
            return
        if status.delay_s is not None:
            REMOTE_QUEUE_DELAY.labels(backend=self.name).observe(status.delay_s)
        rec = self.stores.jobs.get_job(call.grant.job_id)
        if rec is not None:
            self.stores.jobs.add_notes(rec.id, {f"{self.name}_status": status.status,
                                                "queue_delay_s": status.delay_s, "execution_s": status.execution_s})
