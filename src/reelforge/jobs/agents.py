"""The service side of remote agents (`reelforge agent`): tokens, claims, job envelopes, committed outputs.

An agent authenticates with an agent token (store_agents.py: worker role, queue-scoped, hashed). When it
claims a job it gets an *envelope* — everything the job needs and nothing more:

    op, params, attempt, timeout_s, deadline       what to run and until when
    files    {ref: {key, url}}                     each uploaded input (by file id), and each file another job
                                                   made for this one (by `job://` ref: its parent's fork files,
                                                   or, for a parent joining, its children's outputs), as a
                                                   presigned GET (S3) or a path on the API that serves that one
                                                   file to that one job
    parent, resumed, workers                       fork-join (docs/CHUNKED.md): the job's parent; a joining
                                                   parent's children and saved state; how many workers could
                                                   take its chunks (the agents' slots for its queue)
    uploads  a path on the API where each output is PUT (to a temporary key of this attempt)
    output_urls  S3 storage only: where to ask for a presigned PUT of an output to that same temporary key,
             so its bytes go straight to the bucket
    token    a job token: HMAC-signed (job, attempt, worker, expiry); it can report on that one job only,
             and only while the agent's own token is valid (revoking it stops the job's reports at once)

A job on an agent may fork (POST .../fork): the files it made for its children are uploaded like outputs and
committed under the job's `fork/` folder, and each child must be the job's own op with params that validate as
a client's would, naming only what the job itself names or those files, so a rented machine cannot make the
service's own workers read anything its job could not.

Outputs are committed only on finish: each uploaded temporary object is moved to the job's output key
(Storage.move: renamed on local storage; hashed and copied by S3 itself on S3) and checked against the size
and SHA-256 the agent reported; a missing or different one fails the job.
Every call goes through DatabaseControl, so webhooks, leases and retries are those of any other worker.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from reelforge.config import Settings
from reelforge.engine.control import FORK_UPLOAD_PREFIX, ClaimedJob, JobStatus, Lease
from reelforge.engine.metrics import JOBS_STARTED_REMOTE, REMOTE_COLD_STARTS, REMOTE_QUEUE_DELAY
from reelforge.errors import AuthError, Conflict, NotFound, ReelForgeError, UserError, invalid_params, job_error
from reelforge.jobs.control import DatabaseControl
from reelforge.jobs.store import Stores
from reelforge.jobs.store_agents import AgentTokenRecord
from reelforge.ops.params import submit_context
from reelforge.ops.registry import get_operation
from reelforge.ops.resources import Resources
from reelforge.refs import file_ids_in, input_refs_in, job_output_ref, parse_ref
from reelforge.storage.base import MAX_PRESIGNED_PUT, Storage

UPLOAD_PREFIX = "agent-uploads"
_FILENAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]{0,199}$")
CANDIDATES = 20  # queued jobs looked at per claim when choosing one whose resources fit the agent
MAX_CHILDREN = 65  # a fork's children: at most 64 chunks (the ops' `chunks` limit) and the sound


class QueueNotAllowed(ReelForgeError):
    http_status = 403


@dataclass(frozen=True)
class AgentResources:
    """What an agent declared at registration (detected on its machine, or given on its command line)."""

    gpu_name: str | None = None
    vram_gb: float = 0.0
    cuda: str | None = None
    nvenc_sessions: int = 0  # 0: no NVENC
    cpu_cores: int = 1
    slots: int = 1  # jobs it runs at once
    # GPU memory not held by the agent's running jobs, sent with each claim (None: all of vram_gb)
    vram_free_gb: float | None = None

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AgentResources:
        d = data or {}
        free = d.get("vram_free_gb")
        return cls(gpu_name=d.get("gpu_name") or None, vram_gb=float(d.get("vram_gb") or 0),
                   cuda=d.get("cuda") or None, nvenc_sessions=int(d.get("nvenc_sessions") or 0),
                   cpu_cores=max(1, int(d.get("cpu_cores") or 1)), slots=max(1, int(d.get("slots") or 1)),
                   vram_free_gb=float(free) if isinstance(free, int | float) else None)

    def fits(self, need: Resources) -> bool:
        """A job goes only where it can run: a GPU-required op needs a GPU with enough memory; ops that
        merely prefer a GPU run anywhere (on the CPU where there is none). On a GPU big enough for the job,
        the memory the agent's other jobs hold counts: the job waits rather than share a full GPU."""
        free = self.vram_gb if self.vram_free_gb is None else min(self.vram_free_gb, self.vram_gb)
        on_gpu = self.gpu_name is not None and self.vram_gb >= need.vram_gb
        if need.gpu == "required":
            return on_gpu and free >= need.vram_gb
        if need.gpu == "preferred" and on_gpu:
            return free >= need.vram_gb
        return True


@dataclass(frozen=True)
class JobGrant:
    """What a valid job token says: this worker may report on this attempt of this job."""

    job_id: str
    attempt: int
    worker_id: str
    agent_id: str


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def check_filename(name: str) -> str:
    if not _FILENAME.match(name) or ".." in name:
        raise UserError(f"Output file name {name[:60]!r} is not allowed (letters, digits, '.', '_', '-').",
                        code="invalid_output_name")
    return name


class AgentJobs:
    def __init__(self, settings: Settings, stores: Stores, storage: Storage, control: DatabaseControl) -> None:
        self.settings = settings
        self.stores = stores
        self.storage = storage
        self.control = control
        self._key = hashlib.sha256(b"reelforge-agent-job-token:" + settings.resolved_webhook_secret().encode()).digest()
        self._touched: dict[str, float] = {}  # agent id -> when its poll was last written to the store

    # ---- agent tokens
    def authenticate(self, token: str | None) -> AgentTokenRecord:
        agent = self.stores.agents.agent_for_token(token) if token else None
        if agent is None:
            raise AuthError("The agent token is not valid (unknown or revoked).", code="invalid_agent_token")
        return agent

    def register(self, agent: AgentTokenRecord, resources: dict[str, Any]) -> dict[str, Any]:
        declared = AgentResources.from_dict(resources)
        self.stores.agents.seen(agent.id, {**declared.__dict__})
        return {"agent_id": agent.id, "name": agent.name, "queues": list(agent.queues),
                "lease_ttl_s": self.settings.compute.lease_ttl_s, "heartbeat_s": self.settings.compute.heartbeat_s}

    def allowed_queues(self, agent: AgentTokenRecord, asked: Iterable[str]) -> list[str]:
        asked = list(dict.fromkeys(asked))
        refused = [q for q in asked if q not in agent.queues]
        if refused:
            raise QueueNotAllowed(f"This agent token may not take jobs of queue(s) {', '.join(refused)} "
                                  f"(allowed: {', '.join(agent.queues)}).", code="queue_not_allowed")
        return asked or list(agent.queues)

    def _touch(self, agent: AgentTokenRecord) -> None:
        """Record that this agent polls (for the other API processes' presence), at most every few seconds."""
        now = time.monotonic()
        if now - self._touched.get(agent.id, -1e9) >= max(1.0, self.settings.compute.agent_alive_s / 4):
            self._touched[agent.id] = now
            self.stores.agents.seen(agent.id)

    def worker_prefix(self, agent: AgentTokenRecord) -> str:
        return f"agent:{agent.id}:"

    # ---- claims
    def claim(self, agent: AgentTokenRecord, worker_id: str, queues: list[str],
              resources: dict[str, Any], *, record: bool = True) -> dict[str, Any] | None:
        """Claim one queued job of these queues whose op's resources fit the agent; its envelope, or None.
        `record`: note on the job which agent took it (a backend that may still hand it back notes later)."""
        if record:
            self._touch(agent)
        if not worker_id.startswith(self.worker_prefix(agent)):
            worker_id = f"{self.worker_prefix(agent)}{worker_id}"[:100]
        fit = AgentResources.from_dict(resources)
        for job_id, op, params in self.stores.jobs.queued_candidates(queues, CANDIDATES):
            try:
                need = get_operation(op).resources_for(params)
            except Exception:
                continue  # an op this service no longer knows: its own workers fail it with a sentence
            if not fit.fits(need):
                continue
            job = self.control.claim(job_id, worker_id)
            if job is not None and not record:
                return self.envelope(job, worker_id, agent, need)
            if job is not None:
                rec = self.stores.jobs.get_job(job_id)
                delay = round(time.time() - rec.created_at, 3) if rec is not None else None
                self.control.note(job, {"backend": "agent", "agent": agent.name, "agent_id": agent.id,
                                        "worker": worker_id, "gpu": fit.gpu_name, "cuda": fit.cuda,
                                        "queue_delay_s": delay, "claimed_at": round(time.time(), 3)})
                JOBS_STARTED_REMOTE.labels(backend="agent", queue=job.queue).inc()
                if delay is not None:
                    REMOTE_QUEUE_DELAY.labels(backend="agent").observe(delay)
                return self.envelope(job, worker_id, agent, need)
        return None

    def envelope(self, job: ClaimedJob, worker_id: str, agent: AgentTokenRecord,
                 need: Resources | None = None) -> dict[str, Any]:
        now = time.time()
        deadline = now + job.timeout_s
        token = self._sign(job.id, job.attempts, worker_id, deadline + self.settings.compute.lease_ttl_s + 300)
        files = {}
        for fid, ref in job.files.items():
            # S3: a presigned GET; local storage: the API serves this one file to this one job's token
            url = ref.url if ref.url and ref.url.startswith(("http://", "https://")) else \
                f"/v1/agent/jobs/{job.id}/{_file_path(fid)}"
            files[fid] = {"key": ref.key, "url": url}
        return {"job_id": job.id, "op": job.op, "params": job.params, "tenant": job.tenant, "queue": job.queue,
                "priority": job.priority, "attempt": job.attempts, "max_attempts": job.max_attempts,
                "timeout_s": job.timeout_s, "deadline": deadline, "worker_id": worker_id, "token": token,
                "files": files, "uploads": f"/v1/agent/jobs/{job.id}/outputs/",
                # S3: each output may be PUT straight to the bucket, to a URL asked for here (none on local
                # storage: outputs go to `uploads`)
                "output_urls": f"/v1/agent/jobs/{job.id}/output-urls/" if self.storage.presigned_uploads else None,
                # what the job holds while it runs: an agent counts it against its GPU memory
                "needs": (need or Resources()).model_dump(include={"gpu", "vram_gb", "nvenc"}),
                "parent": job.parent, "resumed": job.resumed, "workers": self.chunk_workers(job)}

    def chunk_workers(self, job: ClaimedJob) -> int:
        """How many workers could take this job's chunks, were it to fork: the service's `chunk_workers`, else
        the slots of the agents that asked for work of its queue lately (1 for a child or a joining parent,
        which never fork)."""
        if job.parent is not None or job.resumed is not None:
            return 1
        compute = self.settings.compute
        if compute.chunk_workers:
            return compute.chunk_workers
        return max(1, self.stores.agents.live_slots(job.queue, time.time() - compute.agent_alive_s))

    # ---- job tokens
    def _sign(self, job_id: str, attempt: int, worker_id: str, expires: float) -> str:
        body = _b64(f"{job_id}|{attempt}|{worker_id}|{int(expires)}".encode())
        sig = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()
        return f"rfj.{body}.{sig}"

    def grant(self, token: str | None, job_id: str) -> JobGrant:
        """The job token's grant for this job; AuthError when it is forged, expired, for another job, or its
        agent's token was revoked."""
        bad = AuthError("The job token is not valid for this job.", code="invalid_job_token")
        if not token or not token.startswith("rfj."):
            raise bad
        try:
            _, body, sig = token.split(".")
            if not hmac.compare_digest(sig, hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()):
                raise bad
            jid, attempt, worker_id, expires = _unb64(body).decode().split("|")
        except (ValueError, UnicodeDecodeError):
            raise bad from None
        if jid != job_id or float(expires) < time.time():
            raise bad
        agent_id = worker_id.split(":")[1] if worker_id.startswith("agent:") else ""
        agent = self.stores.agents.get(agent_id)
        if agent is None or agent.revoked:
            raise AuthError("The agent's token was revoked.", code="invalid_agent_token")
        return JobGrant(job_id, int(attempt), worker_id, agent_id)

    def _job(self, grant: JobGrant) -> ClaimedJob | None:
        """The job as the granted attempt knows it, or None when that attempt no longer owns it."""
        rec = self.stores.jobs.get_job(grant.job_id)
        if rec is None or rec.status != JobStatus.RUNNING or rec.lease_owner != grant.worker_id \
                or rec.attempts != grant.attempt:
            return None
        return ClaimedJob(id=rec.id, op=rec.op, params=rec.params, tenant=rec.tenant, queue=rec.queue,
                          priority=rec.priority, attempts=rec.attempts, max_attempts=rec.max_attempts,
                          timeout_s=rec.timeout_s, output_keys=rec.output_keys,
                          # a chunk's reports move its parent on (its progress, and its join once all end)
                          parent=rec.notes.get("parent"))

    def _owned(self, grant: JobGrant) -> ClaimedJob:
        job = self._job(grant)
        if job is None:
            raise Conflict("This worker no longer owns the job (its lease ran out or it ended).",
                           code="job_not_owned")
        return job

    # ---- reports (each answers whether a cancel was asked, so the agent learns it with no extra call)
    def renew(self, grant: JobGrant) -> Lease:
        job = self._job(grant)
        if job is None:
            return Lease(False, self.stores.jobs.cancel_requested(grant.job_id))
        return self.control.renew(job, grant.worker_id)

    def cancel_requested(self, grant: JobGrant) -> bool:
        return self.stores.jobs.cancel_requested(grant.job_id)

    def progress(self, grant: JobGrant, fraction: float, stage: str | None) -> bool:
        job = self._job(grant)
        if job is not None:
            self.control.progress(job, grant.worker_id, fraction, stage)
        return self.cancel_requested(grant)

    def note(self, grant: JobGrant, values: dict[str, Any]) -> None:
        job = self._job(grant)
        if job is not None:
            self.control.note(job, values)

    def interrupted(self, grant: JobGrant) -> None:
        job = self._job(grant)
        if job is not None:
            self.control.interrupted(job, grant.worker_id)

    def release(self, grant: JobGrant, error: dict[str, Any], refund: bool = False) -> JobStatus:
        job = self._job(grant)
        self._drop_uploads(grant)
        if job is None:
            rec = self.stores.jobs.get_job(grant.job_id)
            return rec.status if rec is not None else JobStatus.FAILED
        return self.control.release(job, grant.worker_id, error, refund=refund)

    def finish(self, grant: JobGrant, status: JobStatus, result: dict[str, Any] | None,
               error: dict[str, Any] | None) -> bool:
        job = self._job(grant)
        if job is None:  # a late duplicate completion: ignored, and its uploads with it
            self._drop_uploads(grant)
            return False
        if status == JobStatus.SUCCEEDED:
            try:
                outputs = self._commit(grant, job, (result or {}).get("outputs") or {})
            except UserError as exc:
                self._drop_uploads(grant)
                return self.control.finish(job, grant.worker_id, JobStatus.FAILED, error=job_error(exc))
            result = {"outputs": outputs, "data": (result or {}).get("data") or {}}
        self._drop_uploads(grant)
        self._count_cold_start(job.id)
        return self.control.finish(job, grant.worker_id, status, result=result, error=error)

    def _count_cold_start(self, job_id: str) -> None:
        """A remote job whose stage timeline shows a model loaded cold: a cold start of its backend."""
        rec = self.stores.jobs.get_job(job_id)
        notes = rec.notes if rec is not None else {}
        stages = notes.get("stages") or []
        if any(isinstance(s, list) and s and s[0] == "loading_model" for s in stages):
            REMOTE_COLD_STARTS.labels(backend=str(notes.get("backend") or "agent")).inc()

    # ---- files
    def input_file(self, grant: JobGrant, file_id: str) -> tuple[str, str]:
        """(storage key, filename) of an uploaded input this job's params name, for this job's tenant."""
        job = self._owned(grant)
        if file_id not in file_ids_in(job.params):
            raise NotFound(f"Input file {file_id!r} was not found.", code="input_not_found")
        rec = self.stores.files.get_file(file_id, job.tenant)
        if rec is None:
            raise NotFound(f"Input file {file_id!r} was not found.", code="input_not_found")
        return rec.storage_key, rec.filename

    def job_file(self, grant: JobGrant, ref: str) -> tuple[str, str]:
        """(storage key, filename) of a file another job made for this one (`job://<job>/<name>`): one its
        claim got in `files`, and nothing else."""
        job = self._owned(grant)
        where = self.control.readable_files(job.id).get(ref) if parse_ref(ref).kind == "job" else None
        if where is None:
            raise NotFound(f"Input {ref[:120]!r} was not found.", code="input_not_found")
        return where.key, where.key.rsplit("/", 1)[-1]

    def fork(self, grant: JobGrant, children: list[dict[str, Any]], state: dict[str, Any],
             outputs: dict[str, Any]) -> list[str]:
        """The job waits for these child jobs (engine/control.JobControl.fork), after its uploaded fork files
        are committed. Each child is checked as a client's job would be, and may name only the inputs its
        parent names and these files: a remote worker can ask for the parent's chunks, nothing more."""
        job = self._owned(grant)
        if not children or len(children) > MAX_CHILDREN:
            raise UserError(f"A fork has 1 to {MAX_CHILDREN} children, not {len(children)}.", code="invalid_fork")
        names = {check_filename(str(name)): meta for name, meta in outputs.items()}
        shared = {job_output_ref(job.id, name) for name in names}
        own = set(input_refs_in(job.params))
        op = get_operation(job.op)
        context = {**submit_context(self.settings), "job_refs": frozenset(shared)}
        checked = []
        for child in children:
            if child.get("op") != job.op or not isinstance(child.get("params"), dict):
                raise UserError(f"A child of a {job.op} job must be a {job.op} job with params.", code="invalid_fork")
            try:
                params = op.params_model.model_validate(child["params"], context=context)
            except ValidationError as exc:
                raise invalid_params(exc, prefix="children.params") from None
            foreign = [t for t in input_refs_in(child["params"]) if t not in own and t not in shared]
            if foreign:
                raise UserError(f"A child names {foreign[0][:120]!r}, which its parent does not.",
                                code="invalid_fork")
            weight = child.get("weight", 1)
            if not isinstance(weight, int | float) or not 0 <= weight < 1e9:
                raise UserError("A child's weight is its share of the parent's work: a number, 0 or more.",
                                code="invalid_fork")
            checked.append({"op": job.op, "params": params.model_dump(mode="json"), "weight": weight})
        committed = {}
        for name, meta in names.items():
            filename = check_filename(str((meta or {}).get("filename") or ""))
            committed[name] = self._commit_one(grant, f"jobs/{job.id}/fork/{filename}",
                                               f"{FORK_UPLOAD_PREFIX}{filename}", name, meta)
        return self.control.fork(job, grant.worker_id, checked, state, outputs=committed)

    def upload_key(self, grant: JobGrant, filename: str) -> str:
        self._owned(grant)
        return f"{UPLOAD_PREFIX}/{grant.job_id}/{grant.attempt}/{check_filename(filename)}"

    def output_url(self, grant: JobGrant, filename: str, content_type: str) -> dict[str, Any]:
        """Where this attempt may PUT one output straight into storage (the same temporary key as the upload
        route's, committed on finish alike), valid until the job's token expires."""
        key = self.upload_key(grant, filename)
        job = self._owned(grant)
        url = self.storage.upload_url(key, content_type=content_type,
                                      expires_s=int(job.timeout_s + self.settings.compute.lease_ttl_s + 300))
        if url is None:
            raise NotFound("This service takes outputs only through its upload route.", code="no_output_url")
        return {"url": url, "headers": {"Content-Type": content_type}, "max_bytes": MAX_PRESIGNED_PUT}

    def _commit(self, grant: JobGrant, job: ClaimedJob, outputs: dict[str, Any]) -> dict[str, Any]:
        committed: dict[str, Any] = {}
        for name, meta in outputs.items():
            filename = check_filename(str((meta or {}).get("filename") or ""))
            committed[name] = self._commit_one(grant, job.output_key(name, filename), filename, name, meta)
        return committed

    def _commit_one(self, grant: JobGrant, key: str, uploaded: str, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        """Move this attempt's upload `uploaded` to `key`, checked against the size and SHA-256 reported."""
        temp = f"{UPLOAD_PREFIX}/{grant.job_id}/{grant.attempt}/{check_filename(uploaded)}"
        if not self.storage.exists(temp):
            raise UserError(f"Output {name!r} was reported but never uploaded.", code="output_incomplete")
        # moved, not copied (local storage renames): the upload is this attempt's and ends here anyway
        obj = self.storage.move(temp, key, meta.get("content_type"))
        if obj.size != meta.get("size") or obj.sha256 != meta.get("sha256"):
            self.storage.delete(obj.key)
            raise UserError(f"Output {name!r} arrived incomplete ({obj.size} bytes, the worker reported "
                            f"{meta.get('size')}).", code="output_incomplete")
        return {"key": obj.key, "filename": key.rsplit("/", 1)[-1], "size": obj.size,
                "content_type": obj.content_type, "sha256": obj.sha256}

    def _drop_uploads(self, grant: JobGrant) -> None:
        self.storage.delete_prefix(f"{UPLOAD_PREFIX}/{grant.job_id}/{grant.attempt}/")


def _file_path(ref: str) -> str:
    """The API path (under the job's) that serves one of a job's `files` on local storage."""
    if parse_ref(ref).kind == "job":
        other, _, name = ref[len("job://"):].partition("/")
        return f"refs/{other}/{name}"
    return f"files/{ref}"

