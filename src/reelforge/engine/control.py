"""The job-control seam: everything a running job needs from wherever the job's state lives.

The runner, the local executor and the Celery worker talk only to these protocols, never to a database:

    JobControl   worker side: claim a job (its uploaded-file ids already resolved to storage references),
                 renew its lease (and learn whether a cancel was asked), report progress + stage and notes,
                 finish it with outputs or an error, or release it for another attempt
    JobBacklog   scheduler side (the API process's executors): requeue jobs whose worker vanished, list
                 queued jobs to (re)send to a broker

The database implementation is jobs/control.py (DatabaseControl), wired in by the composition roots
(api/app.py, cli.py). Webhook events (running, progress, terminal) are the implementation's business, so
a different implementation — e.g. over HTTPS for a worker that holds no database credentials — sends
them the same way without the runner knowing.

Job states live here too (jobs/states.py re-exports them): they are the vocabulary of this seam.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.TIMED_OUT})
ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})
# a remote worker uploads the files a job makes for its children under this prefix (apart from its outputs)
FORK_UPLOAD_PREFIX = "fork-"


@dataclass(frozen=True)
class StorageRef:
    """Where an uploaded file's bytes are: its key in the service's storage, and for storage that can sign
    one (S3), a presigned GET URL a host without storage credentials could read instead."""

    key: str
    url: str | None = None


@dataclass(frozen=True)
class ClaimedJob:
    """A job this worker now owns, with everything its job host needs: the host opens no database."""

    id: str
    op: str
    params: dict[str, Any]
    tenant: str
    queue: str
    priority: int
    attempts: int  # this attempt's number, from 1
    max_attempts: int
    timeout_s: float
    files: dict[str, StorageRef] = field(default_factory=dict)  # every uploaded file id the params name
    # how a host without storage credentials reads `files` by URL: {"api": base URL, "token": the job's
    # token}, sent as a Bearer header only to URLs under `api` (never to a presigned URL). Empty on the
    # service's own workers, whose hosts read storage directly.
    access: dict[str, str] = field(default_factory=dict)
    # output name -> the storage key it is committed under (chosen at submit, e.g. a front door's
    # path/filename under the tenant's delivery root); every other output goes to jobs/<id>/<filename>
    output_keys: dict[str, str] = field(default_factory=dict)

    def output_key(self, name: str, filename: str) -> str:
        """Where output `name` (written locally as `filename`) is stored."""
        return self.output_keys.get(name) or f"jobs/{self.id}/{filename}"
    # fork-join (docs/CHUNKED.md): the job this one is a child of; and for a parent run again after its
    # children all succeeded, {"state": what its first run saved, "children": [{"id", "outputs": {name:
    # "job://<child>/<name>" (in `files`)}, "data"}], "outputs": {name: "job://<self>/<name>"} (the files
    # its first run stored for its children, in `files`)}
    parent: str | None = None
    resumed: dict[str, Any] | None = None

    def host_payload(self, workdir: str) -> dict[str, Any]:
        """The one message a job host gets for this job (plain data: it crosses a process boundary)."""
        return {"job_id": self.id, "op": self.op, "params": self.params, "tenant": self.tenant,
                "workdir": workdir, "attempt": self.attempts,
                "files": {fid: {"key": ref.key, "url": ref.url} for fid, ref in self.files.items()},
                "access": dict(self.access), "resumed": self.resumed}


class QueuedJob(Protocol):
    """What an executor needs to hand a job on (jobs' records and ClaimedJob both fit)."""

    @property
    def id(self) -> str: ...

    @property
    def op(self) -> str: ...

    @property
    def queue(self) -> str: ...

    @property
    def priority(self) -> int: ...


class Lease(NamedTuple):
    owned: bool  # False: the lease ran out and another worker may own the job now
    cancel_requested: bool


class JobControl(Protocol):
    def claim(self, job_id: str, worker_id: str) -> ClaimedJob | None:
        """Take this job if it is queued (or running under an expired lease); None if someone else has it."""
        ...

    def claim_next(self, worker_id: str, queues: Collection[str] | None = None) -> ClaimedJob | None:
        """Take the highest-priority, oldest queued job (of these queues), if any."""
        ...

    def renew(self, job: ClaimedJob, worker_id: str) -> Lease: ...

    def cancel_requested(self, job: ClaimedJob) -> bool: ...

    def progress(self, job: ClaimedJob, worker_id: str, fraction: float, stage: str | None) -> None: ...

    def note(self, job: ClaimedJob, values: dict[str, Any]) -> None:
        """Merge facts about how the job ran (encoder, device, ...) into its notes."""
        ...

    def finish(self, job: ClaimedJob, worker_id: str, status: JobStatus, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None) -> bool:
        """Move the owned job to a terminal state; False if this worker no longer owns it."""
        ...

    def release(self, job: ClaimedJob, worker_id: str, error: dict[str, Any], *, refund: bool = False) -> JobStatus:
        """The attempt ended without a verdict (worker lost, host crashed): queue the job again, or fail it
        when out of attempts. `refund`: the attempt does not count (the service was shutting down)."""
        ...

    def interrupted(self, job: ClaimedJob, worker_id: str) -> None:
        """Record, before the job's host is killed, that this worker is shutting down: when the job is
        released later, by this worker or by a reclaim after this process died, the attempt does not count."""
        ...

    # fork-join (docs/CHUNKED.md). `can_fork`: whether fork() works here (an op is told, and plans for one
    # job when it does not)
    can_fork: bool

    def fork(self, job: ClaimedJob, worker_id: str, children: list[dict[str, Any]],
             state: dict[str, Any], *, outputs: dict[str, Any] | None = None) -> list[str]:
        """The owned job waits for these child jobs ({"op", "params", "weight"}; same tenant, queue, priority
        and timeout); it is queued again, with their results in `resumed`, once they all succeeded, and
        fails (or is cancelled) with the first that does not. The children are handed to the `on_queued`
        callback. Returns their ids; [] if this worker no longer owns the job. `outputs`: files the job
        stored for its children ({name: {"key", ...}}, as outputs are stored): a child whose params name
        `job://<job id>/<name>` gets it in its `files`, and the resumed job gets them all (in `files`, and
        as refs in `resumed["outputs"]`)."""
        ...

    def on_queued(self, hand_on: Callable[[QueuedJob], None]) -> None:
        """Call `hand_on` with every job this control queues by itself (a fork's children, a parent whose
        children all succeeded), so the executor of this process sends it on."""
        ...


class JobBacklog(Protocol):
    def reclaim_expired(self) -> list[tuple[str, JobStatus]]:
        """Requeue (or fail, when out of attempts) every running job whose lease ran out."""
        ...

    def queued(self, limit: int = 1000) -> list[QueuedJob]:
        """Queued jobs, highest priority and oldest first."""
        ...

    def find(self, job_id: str) -> QueuedJob | None: ...
