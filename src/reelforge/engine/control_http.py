"""JobControl over HTTPS: what a remote agent (`reelforge agent`, engine/agent.py) runs jobs through.

The same Runner and JobHost as the service's own workers; only the seam differs. Claims long-poll the API
with the agent token (api/routes_agents.py); every report on a claimed job goes with that job's own token
from its envelope (jobs/agents.py), which can do nothing but report on that one job. Inputs are read by
URL (storage/url_files.py, in the job host); outputs are PUT by `uploads` (a Storage the Runner stores
outputs through) to the API, or on S3 storage straight to the bucket with a presigned PUT the API hands out,
and committed by the service when the job finishes. A job here may fork (docs/CHUNKED.md): the files it made for
its children are uploaded the same way, under `fork-<name>`, and POST .../fork commits them and queues the
children, which any worker of the queue may take, this agent's other slots included.

Network trouble never kills a job by itself: a renewal that cannot reach the API keeps the job running
(the service requeues it if the lease really runs out, and a late finish is then refused); a 401 — the
agent's token was revoked — stops the job at once and marks this control `refused`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from pathlib import Path
from typing import Any

import httpx

from reelforge.engine.control import FORK_UPLOAD_PREFIX, ClaimedJob, JobStatus, Lease, QueuedJob, StorageRef
from reelforge.storage.base import StoredObject, guess_content_type
from reelforge.storage.url_files import NoStorage

log = logging.getLogger("reelforge.agent")
CHUNK = 1024 * 1024
# an answer this recent on whether a job is cancelled stands for a cancel check (the runner checks every
# 0.5 s and reports progress as often, each answer saying it: one call instead of two)
FRESH_S = 0.45


class AgentRefused(Exception):
    """The API refused this agent's token (revoked or unknown): the agent must stop."""


class HttpControl:
    """engine.control.JobControl for a worker that holds only an agent token."""

    def __init__(self, api: str, token: str = "", *, wait_s: float = 20.0, timeout_s: float = 30.0,
                 transport: httpx.BaseTransport | None = None,
                 on_progress: Callable[[float, str | None], None] | None = None) -> None:
        self.api = api.rstrip("/")
        self.on_progress = on_progress  # e.g. RunPod's progress_update, so its status shows it too
        self.wait_s = wait_s
        self.client = httpx.Client(base_url=self.api, timeout=timeout_s, trust_env=False, transport=transport,
                                   headers={"User-Agent": "ReelForge-agent/1"})
        self._agent_auth = {"Authorization": f"Bearer {token}"}
        self._envelopes: dict[str, dict[str, Any]] = {}
        self._cancels: set[str] = set()
        self._answered: dict[str, float] = {}  # job id -> when the API last said whether it is cancelled
        self._lock = threading.Lock()
        self.refused: str | None = None  # why the API refused this agent, once it has
        self.uploads = JobUploads(self)
        self.resources: dict[str, Any] = {}

    def close(self) -> None:
        self.client.close()

    # ---- agent-token calls
    def register(self, resources: dict[str, Any]) -> dict[str, Any]:
        self.resources = resources
        resp = self.client.post("/v1/agent/register", json={"resources": resources}, headers=self._agent_auth)
        self._check_agent(resp)
        resp.raise_for_status()
        info: dict[str, Any] = resp.json()
        return info

    def claim(self, job_id: str, worker_id: str) -> ClaimedJob | None:
        return None  # agents are given jobs by the service (claim_next); they never pick one by id

    def claim_next(self, worker_id: str, queues: Collection[str] | None = None, *,
                   wait_s: float | None = None, resources: dict[str, Any] | None = None) -> ClaimedJob | None:
        wait = self.wait_s if wait_s is None else wait_s
        body = {"worker_id": worker_id, "queues": list(queues or []), "resources": resources or self.resources,
                "wait_s": wait}
        try:
            resp = self.client.post("/v1/agent/claim", json=body, headers=self._agent_auth,
                                    timeout=httpx.Timeout(wait + 30.0))
        except httpx.TransportError as exc:
            log.warning("claim: cannot reach %s (%s)", self.api, exc)
            time.sleep(min(2.0, max(wait, 0.1)))
            return None
        self._check_agent(resp)
        if resp.status_code == 204:
            return None
        if resp.status_code >= 500:
            log.warning("claim: the API answered %s", resp.status_code)
            time.sleep(1.0)
            return None
        resp.raise_for_status()
        return self.adopt(resp.json()["job"])

    def adopt(self, env: dict[str, Any]) -> ClaimedJob:
        """The claimed job of an envelope the service handed out (by a claim here, or through a provider
        such as RunPod, whose handler gets the envelope as its input)."""
        with self._lock:
            self._envelopes[env["job_id"]] = env
        files = {fid: StorageRef(f["key"], self._absolute(f["url"])) for fid, f in env["files"].items()}
        return ClaimedJob(id=env["job_id"], op=env["op"], params=env["params"], tenant=env["tenant"],
                          queue=env["queue"], priority=env["priority"], attempts=env["attempt"],
                          max_attempts=env["max_attempts"], timeout_s=float(env["timeout_s"]), files=files,
                          access={"api": self.api, "token": env["token"]}, parent=env.get("parent"),
                          resumed=env.get("resumed"))

    def chunk_workers(self, job_id: str) -> int:
        """How many workers the service says could take this job's chunks (1 when it did not say)."""
        with self._lock:
            env = self._envelopes.get(job_id) or {}
        workers = env.get("workers")
        return max(1, workers) if isinstance(workers, int) else 1

    # ---- job-token calls
    def needs(self, job_id: str) -> dict[str, Any]:
        """What the service says a claimed job holds while it runs ({"gpu", "vram_gb", "nvenc"})."""
        with self._lock:
            env = self._envelopes.get(job_id) or {}
        needs = env.get("needs")
        return needs if isinstance(needs, dict) else {}

    def renew(self, job: ClaimedJob, worker_id: str) -> Lease:
        resp = self._job_call("POST", job.id, "renew")
        if resp is None:
            return Lease(True, job.id in self._cancels)  # unreachable: keep working, the lease decides
        if resp.status_code in (401, 403, 404):
            return Lease(False, False)
        data = resp.json()
        self._saw_cancel(job.id, data["cancel_requested"])
        return Lease(bool(data["owned"]), bool(data["cancel_requested"]))

    def cancel_requested(self, job: ClaimedJob) -> bool:
        if job.id in self._cancels:
            return True
        if time.monotonic() - self._answered.get(job.id, -1e9) < FRESH_S:
            return False  # a progress report or renewal just said "no cancel": no call of its own
        resp = self._job_call("GET", job.id, "cancel")
        if resp is None or resp.status_code != 200:
            return False
        return self._saw_cancel(job.id, resp.json().get("cancel_requested"))

    def progress(self, job: ClaimedJob, worker_id: str, fraction: float, stage: str | None) -> None:
        if self.on_progress is not None:
            try:
                self.on_progress(fraction, stage)
            except Exception:  # a provider's status relay must never fail the job
                log.debug("progress relay failed", exc_info=True)
        resp = self._job_call("POST", job.id, "progress", json={"fraction": max(0.0, min(1.0, fraction)),
                                                                "stage": stage})
        if resp is not None and resp.status_code == 200:
            self._saw_cancel(job.id, resp.json().get("cancel_requested"))

    def note(self, job: ClaimedJob, values: dict[str, Any]) -> None:
        self._job_call("POST", job.id, "notes", json={"values": values})

    def finish(self, job: ClaimedJob, worker_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> bool:
        resp = self._job_call("POST", job.id, "finish", retries=5,
                              json={"status": status.value, "result": result, "error": error})
        self._forget(job.id)
        return resp is not None and resp.status_code == 200 and bool(resp.json().get("ok"))

    def release(self, job: ClaimedJob, worker_id: str, error: dict[str, Any], *, refund: bool = False) -> JobStatus:
        resp = self._job_call("POST", job.id, "release", retries=5, json={"error": error, "refund": refund})
        self._forget(job.id)
        if resp is None or resp.status_code != 200:
            return JobStatus.QUEUED  # the service requeues it when the lease runs out
        return JobStatus(resp.json()["status"])

    def interrupted(self, job: ClaimedJob, worker_id: str) -> None:
        self._job_call("POST", job.id, "interrupted")

    can_fork = True  # the service checks and queues the children (jobs/agents.py fork)

    def fork(self, job: ClaimedJob, worker_id: str, children: list[dict[str, Any]],
             state: dict[str, Any], *, outputs: dict[str, Any] | None = None) -> list[str]:
        """The job waits for these children; `outputs`: its files for them, already uploaded (JobUploads).
        [] when this worker no longer owns the job; an error when the service refused the fork (the runner
        then gives the job back, to be tried again)."""
        resp = self._job_call("POST", job.id, "fork", retries=5,
                              json={"children": children, "state": state, "outputs": outputs or {}})
        if resp is None:
            raise RuntimeError("the fork could not reach the service")
        if resp.status_code in (401, 403, 404, 409):
            self._forget(job.id)
            return []
        if resp.status_code != 200:
            raise RuntimeError(f"the service refused the fork (HTTP {resp.status_code}: {resp.text[:300]})")
        self._forget(job.id)  # parked: this attempt is over, its children carry on
        return [str(c) for c in resp.json()["children"]]

    def on_queued(self, hand_on: Callable[[QueuedJob], None]) -> None:
        pass  # this control never queues a job by itself

    # ---- inside
    def envelope(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._envelopes[job_id]

    def _absolute(self, url: str) -> str:
        return url if url.startswith(("http://", "https://")) else f"{self.api}{url}"

    def _saw_cancel(self, job_id: str, flag: Any) -> bool:
        if flag:
            self._cancels.add(job_id)
        self._answered[job_id] = time.monotonic()
        return bool(flag)

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._envelopes.pop(job_id, None)
            self._cancels.discard(job_id)
            self._answered.pop(job_id, None)

    def _check_agent(self, resp: httpx.Response) -> None:
        if resp.status_code in (401, 403):
            try:
                message = resp.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = resp.text[:200]
            self.refused = message
            raise AgentRefused(message)

    def _job_call(self, method: str, job_id: str, what: str, *, retries: int = 1,
                  **kwargs: Any) -> httpx.Response | None:
        """A call with the job's token; None when the API could not be reached. A 401 means the agent's
        token was revoked: this control is marked refused (the agent stops after this job)."""
        try:
            env = self.envelope(job_id)
        except KeyError:
            return None
        headers = {"Authorization": f"Bearer {env['token']}"}
        for attempt in range(retries):
            try:
                resp = self.client.request(method, f"/v1/agent/jobs/{job_id}/{what}", headers=headers, **kwargs)
            except httpx.TransportError as exc:
                log.warning("%s %s: cannot reach the API (%s)", what, job_id, exc)
                if attempt + 1 < retries:
                    time.sleep(min(8.0, 0.5 * 2 ** attempt))
                continue
            if resp.status_code == 401:
                self.refused = "The API refused this agent's token."
            if resp.status_code >= 500 and attempt + 1 < retries:
                time.sleep(min(8.0, 0.5 * 2 ** attempt))
                continue
            return resp
        return None

    def upload(self, job_id: str, path: Path, content_type: str,
               name: str | None = None) -> tuple[dict[str, Any], str]:
        """Send one output (as `name`, else its file name): (the service's answer {size, sha256}, the SHA-256
        of what was sent), the file
        hashed as it is sent rather than read twice. S3 storage: PUT straight to the bucket with a presigned
        URL the service gives this job (the bytes never pass through the API; the service hashes them when
        it commits); otherwise, or when that fails, PUT to the job's upload route on the API."""
        env = self.envelope(job_id)
        size = path.stat().st_size
        name = name or path.name
        direct = self._upload_direct(env, job_id, path, name, content_type, size)
        if direct is not None:
            return direct
        headers = {"Authorization": f"Bearer {env['token']}", "Content-Type": content_type,
                   "Content-Length": str(size)}
        resp, sha = self._put(f"{env['uploads']}{name}", headers, path, "the service")
        data: dict[str, Any] = resp.json()
        return data, sha

    def _upload_direct(self, env: dict[str, Any], job_id: str, path: Path, name: str, content_type: str,
                       size: int) -> tuple[dict[str, Any], str] | None:
        if not env.get("output_urls"):
            return None
        resp = self._job_call("POST", job_id, f"output-urls/{name}", json={"content_type": content_type})
        if resp is None or resp.status_code != 200:
            log.info("%s: no direct upload URL for %s (%s): through the API", job_id, name,
                     resp.status_code if resp is not None else "unreachable")
            return None
        target = resp.json()
        if size > int(target.get("max_bytes") or 0):
            return None
        # the presigned URL carries its own signature: no token goes to the bucket
        headers = {**target.get("headers", {}), "Content-Length": str(size)}
        try:
            _, sha = self._put(str(target["url"]), headers, path, "the bucket")
        except RuntimeError as exc:
            log.warning("%s: direct upload of %s failed (%s): through the API", job_id, path.name, exc)
            return None
        return {"size": size, "sha256": sha}, sha

    def _put(self, url: str, headers: dict[str, str], path: Path, where: str) -> tuple[httpx.Response, str]:
        """PUT a file with retries on transport errors and 5xx: (the answer, the SHA-256 of what was sent)."""
        digest = hashlib.sha256()

        def body() -> Iterable[bytes]:
            nonlocal digest
            digest = hashlib.sha256()  # afresh for each try
            with path.open("rb") as fh:
                while chunk := fh.read(CHUNK):
                    digest.update(chunk)
                    yield chunk

        last: Exception | None = None
        for attempt in range(4):
            try:
                resp = self.client.put(url, content=body(), headers=headers,
                                       timeout=httpx.Timeout(30.0, write=300.0, read=300.0))
            except httpx.TransportError as exc:
                last = exc
                time.sleep(0.5 * 2 ** attempt)
                continue
            if resp.status_code >= 500:
                last = RuntimeError(f"HTTP {resp.status_code}")
                time.sleep(0.5 * 2 ** attempt)
                continue
            if resp.status_code >= 400:
                raise RuntimeError(f"{where} refused the output {path.name} (HTTP {resp.status_code}: "
                                   f"{resp.text[:200]})")
            return resp, digest.hexdigest()
        raise RuntimeError(f"the output {path.name} could not be uploaded to {where} ({last})")


class JobUploads(NoStorage):
    """The Runner's output storage on an agent: `jobs/<id>/<name>` goes to the API's upload route of that
    job (a temporary key the service commits on finish), `jobs/<id>/fork/<name>` (files for the job's
    children) there as `fork-<name>` (committed when it forks). Nothing else is stored here."""

    def __init__(self, control: HttpControl) -> None:
        self.control = control

    def put_file(self, src: Path, key: str, content_type: str | None = None) -> StoredObject:
        parts = key.split("/")
        if parts[0] != "jobs" or not (len(parts) == 3 or (len(parts) == 4 and parts[2] == "fork")):
            raise ValueError(f"an agent stores only job outputs, not {key!r}")
        ctype = guess_content_type(key, content_type)
        name = f"{FORK_UPLOAD_PREFIX}{parts[3]}" if len(parts) == 4 else None
        answer, sha = self.control.upload(parts[1], src, ctype, name)
        size = src.stat().st_size
        if answer.get("size") != size or answer.get("sha256") != sha:
            raise RuntimeError(f"the output {src.name} arrived damaged ({answer.get('size')} of {size} bytes)")
        return StoredObject(key=key, size=size, content_type=ctype, sha256=sha)


class NoBacklog:
    """An agent schedules nothing: the service requeues its lost jobs."""

    def reclaim_expired(self) -> list[tuple[str, JobStatus]]:
        return []

    def queued(self, limit: int = 1000) -> list[QueuedJob]:
        return []

    def find(self, job_id: str) -> QueuedJob | None:
        return None
