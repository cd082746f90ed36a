"""jobs/service.py, the one submit/cancel/retry/read path, on a real SQLite job store (no web framework)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from reelforge.config import Settings
from reelforge.errors import Conflict, InputError, InvalidParams, NotFound
from reelforge.jobs.batcher import SubmitBatcher
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import JobRecord, Stores
from reelforge.jobs.webhooks import WebhookSender
from reelforge.storage import make_storage
from tests.webhook_receiver import Hooks, webhook_receiver

FILE_A = "file_" + "a" * 32


@dataclass
class Executor:
    """Stands in for the executor only: the service's contract with it is submit(job) and cancel(id)."""

    submitted: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)

    def submit(self, job: JobRecord) -> None:
        self.submitted.append(job.id)

    def cancel(self, job_id: str) -> None:
        self.cancelled.append(job_id)


@pytest.fixture
def hooks() -> Iterator[Hooks]:
    with webhook_receiver() as receiver:
        yield receiver


@dataclass
class World:
    service: JobService
    stores: Stores
    executor: Executor
    settings: Settings


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    settings = Settings(data_dir=tmp_path / "data", fetch_allow_private=True, max_timeout_s=600)
    settings.ensure_dirs()
    stores = Stores.open(f"sqlite:///{tmp_path / 'jobs.db'}", migrate=True)
    webhooks = WebhookSender(settings, stores.webhooks.record_webhook_attempt, outbox=stores.webhooks,
                             schedule=[0.01])
    executor = Executor()
    service = JobService(settings, stores, storage=make_storage(settings), webhooks=webhooks, executor=executor)
    yield World(service, stores, executor, settings)
    webhooks.close(timeout=2)
    stores.dispose()


def probe(**kw: Any) -> JobCreate:
    return JobCreate(op="probe", params={"input": kw.pop("input", "https://example.com/a.mp4")}, **kw)


def test_submit_validates_stores_and_hands_over(world: World) -> None:
    job, created = world.service.submit("t1", probe(priority=3))
    assert created and job.status == JobStatus.QUEUED and job.priority == 3
    assert world.executor.submitted == [job.id]
    assert world.service.get("t1", job.id).id == job.id
    assert job.timeout_s > 0 and job.max_attempts == world.settings.compute.max_attempts


def test_invalid_params_are_422_with_the_field_path(world: World) -> None:
    with pytest.raises(InvalidParams) as err:
        world.service.submit("t1", JobCreate(op="probe", params={"input": 5}))
    assert err.value.http_status == 422
    assert err.value.details[0]["path"] == "params.input"
    assert world.executor.submitted == []


def test_timeout_above_the_cap_and_bad_webhook_are_refused(world: World) -> None:
    with pytest.raises(InvalidParams, match="at most 600"):
        world.service.submit("t1", probe(timeout_s=601))
    with pytest.raises(InvalidParams) as err:
        world.service.submit("t1", probe(webhook_url="ftp://example.com/x"))
    assert err.value.code == "invalid_webhook_url"


def test_another_tenants_file_reads_as_missing(world: World) -> None:
    world.stores.files.create_file(tenant="t1", filename="a.mp4", content_type="video/mp4", size=1, sha256="0",
                            storage_key="uploads/a.mp4", file_id=FILE_A)
    job, _ = world.service.submit("t1", probe(input=FILE_A))
    assert job.params["input"] == FILE_A
    with pytest.raises(InputError) as err:
        world.service.submit("t2", probe(input=FILE_A))
    assert err.value.code == "input_not_found"


def test_idempotency_key_from_body_or_header(world: World) -> None:
    first, created = world.service.submit("t1", probe(idempotency_key="k1"))
    again, created_again = world.service.submit("t1", probe(), idempotency_key="k1")
    assert created and not created_again and again.id == first.id
    assert world.executor.submitted == [first.id]
    other_tenant, created_other = world.service.submit("t2", probe(idempotency_key="k1"))
    assert created_other and other_tenant.id != first.id
    with pytest.raises(Conflict) as err:
        world.service.submit("t1", probe(input="https://example.com/b.mp4", idempotency_key="k1"))
    assert err.value.code == "idempotency_conflict"


def test_submit_async_goes_through_the_group_commit_batcher(world: World) -> None:
    batcher = SubmitBatcher(world.stores.jobs, world.executor.submit, files=world.stores.files)
    world.service.batcher = batcher

    async def many() -> list[tuple[JobRecord, bool]]:
        return await asyncio.gather(*(world.service.submit_async("t1", probe()) for _ in range(20)))

    try:
        results = asyncio.run(many())
    finally:
        batcher.close()
    assert all(created for _, created in results)
    assert sorted(world.executor.submitted) == sorted(j.id for j, _ in results)
    assert len(world.service.list_jobs("t1", limit=50)) == 20


def test_one_batch_checks_each_jobs_files_for_its_tenant_and_keeps_idempotency(world: World,
                                                                               tmp_path: Path) -> None:
    """Submits of one event-loop turn are one batch: each job's files are checked for its own tenant (one bad
    job does not fail the others), a key used twice in the batch gives one job, and every job answered is
    committed (read back through another connection pool)."""
    world.stores.files.create_file(tenant="t1", filename="a.mp4", content_type="video/mp4", size=1, sha256="0",
                                   storage_key="uploads/a.mp4", file_id=FILE_A)
    batcher = SubmitBatcher(world.stores.jobs, world.executor.submit, files=world.stores.files)
    world.service.batcher = batcher
    service = world.service

    async def one_turn() -> list[Any]:
        return await asyncio.gather(
            *(service.submit_async("t1", probe(input=FILE_A)) for _ in range(5)),
            service.submit_async("t2", probe(input=FILE_A)),  # t1's file: missing for t2
            service.submit_async("t1", probe(input="file_" + "b" * 32)),  # no such upload
            service.submit_async("t1", probe(idempotency_key="k1")),
            service.submit_async("t1", probe(), idempotency_key="k1"),
            return_exceptions=True)

    try:
        results = asyncio.run(one_turn())
    finally:
        batcher.close()
    plain, refused, keyed = results[:5], results[5:7], results[7:]
    assert all(created for _, created in plain)
    for exc in refused:
        assert isinstance(exc, InputError) and exc.code == "input_not_found"
    (first, first_created), (again, again_created) = keyed
    assert first_created and not again_created and again.id == first.id
    created_ids = sorted([j.id for j, _ in plain] + [first.id])
    assert sorted(world.executor.submitted) == created_ids
    other = Stores.open(f"sqlite:///{tmp_path / 'jobs.db'}")
    try:
        assert sorted(other.jobs.get_jobs(created_ids)) == created_ids
        assert {j.tenant for j in other.jobs.get_jobs(created_ids).values()} == {"t1"}
    finally:
        other.dispose()


def test_cancel_a_queued_job_tells_its_webhook(world: World, hooks: Hooks) -> None:
    job, _ = world.service.submit("t1", probe(webhook_url=hooks.url))
    cancelled = world.service.cancel("t1", job.id)
    assert cancelled.status == JobStatus.CANCELLED and cancelled.error["code"] == "cancelled"
    event = hooks.wait_for("job.cancelled")
    assert event["job_id"] == job.id and event["status"] == "cancelled"
    assert world.executor.cancelled == []  # nothing was running


def test_cancel_a_running_job_asks_its_executor(world: World) -> None:
    job, _ = world.service.submit("t1", probe())
    assert world.stores.jobs.claim(job.id, "w1", 30) is not None
    flagged = world.service.cancel("t1", job.id)
    assert flagged.status == JobStatus.RUNNING and flagged.cancel_requested
    assert world.executor.cancelled == [job.id]


def test_cancel_someone_elses_job_is_404(world: World) -> None:
    job, _ = world.service.submit("t1", probe())
    with pytest.raises(NotFound):
        world.service.cancel("t2", job.id)
    assert world.service.get("t1", job.id).status == JobStatus.QUEUED


def test_retry_makes_a_new_job_once(world: World) -> None:
    job, _ = world.service.submit("t1", probe(priority=2, timeout_s=30))
    world.service.cancel("t1", job.id)
    retried, created = world.service.retry("t1", job.id)
    assert created and retried.id != job.id and retried.status == JobStatus.QUEUED
    assert retried.notes["retry_of"] == job.id
    assert (retried.params, retried.priority, retried.timeout_s) == (job.params, 2, 30)
    assert retried.attempts == 0
    again, created_again = world.service.retry("t1", job.id)
    assert again.id == retried.id and not created_again
    assert world.service.get("t1", job.id).status == JobStatus.CANCELLED  # the original keeps its history


def test_retry_of_a_failed_job_after_its_attempts(world: World) -> None:
    job, _ = world.service.submit("t1", probe())
    world.stores.jobs.claim(job.id, "w1", 30)
    world.stores.jobs.finish(job.id, "w1", JobStatus.FAILED, error={"code": "x", "message": "broke"})
    retried, _ = world.service.retry("t1", job.id)
    assert retried.status == JobStatus.QUEUED and retried.notes["retry_of"] == job.id


def test_only_finished_unsuccessful_jobs_can_be_retried(world: World) -> None:
    job, _ = world.service.submit("t1", probe())
    with pytest.raises(Conflict) as err:
        world.service.retry("t1", job.id)
    assert err.value.code == "job_not_retryable" and err.value.http_status == 409
    with pytest.raises(NotFound):
        world.service.retry("t2", job.id)


def test_outputs_and_their_urls(world: World) -> None:
    job, _ = world.service.submit("t1", probe())
    world.stores.jobs.claim(job.id, "w1", 30)
    meta = {"key": f"jobs/{job.id}/probe.json", "filename": "probe.json", "size": 2,
            "content_type": "application/json", "sha256": "0"}
    world.stores.jobs.finish(job.id, "w1", JobStatus.SUCCEEDED, result={"outputs": {"probe": meta}, "data": {}})
    assert world.service.output("t1", job.id, "probe")["key"] == meta["key"]
    done = world.service.get("t1", job.id)
    assert world.service.output_url(done, "probe", meta).endswith(f"/v1/jobs/{job.id}/outputs/probe")
    with pytest.raises(NotFound) as err:
        world.service.output("t1", job.id, "nope")
    assert err.value.code == "output_not_found"


def test_a_front_door_job_keeps_its_webhook_format_through_cancel_and_retry(world: World, hooks: Hooks) -> None:
    notes = {"frontdoor": "shotstack", "webhook_format": "shotstack", "shotstack_edit": {"timeline": {}}}
    job, _ = asyncio.run(world.service.submit_async("t1", probe(webhook_url=hooks.url), notes=notes))
    world.service.cancel("t1", job.id)  # queued: the service itself sends the end
    body = hooks.wait_for("edit")
    assert (body["action"], body["status"], body["owner"]) == ("render", "failed", "t1")
    assert body["id"].replace("-", "") == job.id.removeprefix("job_")
    retried, _ = world.service.retry("t1", job.id)
    assert {k: retried.notes[k] for k in notes} == notes and retried.notes["retry_of"] == job.id
