"""The job stores split by aggregate (jobs, files, keys, webhooks) on one Database, on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelforge.errors import Conflict
from reelforge.jobs.states import JobStatus
from reelforge.jobs.store import Database, FilesStore, JobsStore, KeysStore, Stores, WebhooksStore


@pytest.fixture(params=["sqlite", "postgresql"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    from tests.integration.pg import temp_database

    with contextlib.ExitStack() as stack:
        url = (f"sqlite:///{tmp_path / 'jobs.db'}" if request.param == "sqlite"
               else stack.enter_context(temp_database()))
        s = Stores.open(url, migrate=True)
        yield s
        s.dispose()


def new_job(jobs: JobsStore, tenant: str = "t1", **kw: object) -> str:
    job, created = jobs.create_job(tenant=tenant, op="probe", params={"input": "https://example.com/a.mp4"},
                                   queue="cpu", timeout_s=30, max_attempts=2, **kw)  # type: ignore[arg-type]
    assert created
    return job.id


def test_the_aggregates_share_one_connection_pool(stores: Stores) -> None:
    assert {id(stores.jobs.engine), id(stores.files.engine), id(stores.keys.engine),
            id(stores.webhooks.engine)} == {id(stores.db.engine)}
    stores.ping()


def test_one_aggregate_alone_on_its_own_database(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'one.db'}")
    db.migrate()
    keys = KeysStore(db)
    plaintext, rec = keys.create_api_key("alice")
    assert keys.tenant_for_key(plaintext) == "alice" and plaintext.startswith(rec.prefix + "_")
    db.dispose()


def test_a_failed_job_keeps_the_stage_it_failed_in(stores: Stores) -> None:
    job_id = new_job(stores.jobs)
    assert stores.jobs.claim(job_id, "w", 30) is not None
    stores.jobs.update_progress(job_id, "w", 0.4, "encoding")
    assert stores.jobs.finish(job_id, "w", JobStatus.FAILED, error={"code": "ffmpeg_failed", "message": "It broke."})
    job = stores.jobs.get_job(job_id)
    assert job is not None and job.stage == "failed"
    assert job.error == {"code": "ffmpeg_failed", "message": "It broke.", "stage": "encoding"}


def test_jobs_claim_is_compare_and_set(stores: Stores) -> None:
    job_id = new_job(stores.jobs)
    won: list[str] = []

    def claim(worker: str) -> None:
        if stores.jobs.claim(job_id, worker, 30) is not None:
            won.append(worker)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1
    job = stores.jobs.get_job(job_id)
    assert job is not None and job.status == JobStatus.RUNNING and job.lease_owner == won[0] and job.attempts == 1
    assert stores.jobs.heartbeat(job_id, won[0], 30) == (True, False)
    assert stores.jobs.heartbeat(job_id, "someone-else", 30)[0] is False
    assert stores.jobs.finish(job_id, won[0], JobStatus.SUCCEEDED, result={"outputs": {}, "data": {}})
    assert stores.jobs.get_job(job_id).status == JobStatus.SUCCEEDED  # type: ignore[union-attr]


def test_jobs_release_for_retry_then_give_up(stores: Stores) -> None:
    job_id = new_job(stores.jobs)
    lost = {"code": "worker_lost", "message": "gone."}
    stores.jobs.claim(job_id, "w1", 30)
    assert stores.jobs.release_for_retry(job_id, "w1", lost) == JobStatus.QUEUED
    stores.jobs.claim(job_id, "w2", 30)
    assert stores.jobs.release_for_retry(job_id, "w2", lost, refund=True) == JobStatus.QUEUED
    assert stores.jobs.get_job(job_id).attempts == 1  # type: ignore[union-attr]
    stores.jobs.claim(job_id, "w3", 30)
    assert stores.jobs.release_for_retry(job_id, "w3", lost) == JobStatus.FAILED
    failed = stores.jobs.get_job(job_id)
    assert failed is not None and "Gave up after 2 attempts" in failed.error["message"]  # type: ignore[index]


def test_jobs_idempotency_key_is_per_tenant(stores: Stores) -> None:
    a = new_job(stores.jobs, idempotency_key="k")
    again, created = stores.jobs.create_job(tenant="t1", op="probe", params={"input": "https://example.com/a.mp4"},
                                            queue="cpu", timeout_s=30, max_attempts=2, idempotency_key="k")
    assert again.id == a and not created
    assert new_job(stores.jobs, tenant="t2", idempotency_key="k") != a
    with pytest.raises(Conflict):
        stores.jobs.create_job(tenant="t1", op="probe", params={"input": "https://example.com/b.mp4"},
                               queue="cpu", timeout_s=30, max_attempts=2, idempotency_key="k")


def test_files_are_per_tenant(stores: Stores) -> None:
    files: FilesStore = stores.files
    a = files.create_file(tenant="t1", filename="a.mp4", content_type="video/mp4", size=3, sha256="x",
                          storage_key="uploads/t1/a.mp4")
    b = files.create_file(tenant="t2", filename="b.mp4", content_type="video/mp4", size=3, sha256="y",
                          storage_key="uploads/t2/b.mp4")
    assert files.get_file(a.id, "t1") == a and files.get_file(a.id, "t2") is None
    assert files.storage_keys([a.id, b.id, a.id, "file_" + "0" * 32], "t1") == {a.id: "uploads/t1/a.mp4"}
    assert files.storage_keys([], "t1") == {}


def test_keys_revoke_and_count(stores: Stores) -> None:
    keys = stores.keys
    assert not keys.any_api_keys()
    plaintext, rec = keys.create_api_key("bob", tenant="acme")
    assert keys.any_api_keys() and keys.tenant_for_key(plaintext) == "acme"
    assert [k.id for k in keys.list_api_keys()] == [rec.id]
    assert keys.revoke_api_key(rec.id) and not keys.revoke_api_key("key_nope")
    assert keys.tenant_for_key(plaintext) is None and not keys.any_api_keys()


def test_webhook_attempts_and_outbox(stores: Stores) -> None:
    hooks: WebhooksStore = stores.webhooks
    hooks.record_webhook_attempt("job_1", {"event": "job.running", "attempt": 1, "status_code": 204})
    hooks.record_webhook_attempt("job_1", {"event": "job.succeeded", "attempt": 2, "error": "timeout"})
    got = hooks.webhook_attempts("job_1")
    assert [(a["event"], a["attempt"], a["status_code"]) for a in got] == [("job.running", 1, 204),
                                                                          ("job.succeeded", 2, None)]
    item = hooks.outbox_add("job_1", "http://127.0.0.1:9/h", "job.succeeded", "state", b"{}", claim_s=0.0)
    [stale] = hooks.outbox_claim_stale(claim_s=60)
    assert stale["id"] == item and stale["body"] == b"{}"
    assert hooks.outbox_claim_stale(claim_s=60) == []  # claimed by the first caller
    hooks.outbox_done(item, "delivered")
    assert hooks.outbox_prune(older_than_s=-1) == 1


def test_batched_status_reads_match_single_reads_and_keep_tenants_apart(stores: Stores) -> None:
    import asyncio

    from reelforge.jobs.batcher import StatusReader

    plain = new_job(stores.jobs, "t1")
    other = new_job(stores.jobs, "t2")
    hooked = new_job(stores.jobs, "t1", webhook_url="https://example.com/hook")
    quiet = new_job(stores.jobs, "t1", webhook_url="https://example.com/hook")
    stores.webhooks.record_webhook_attempt(hooked, {"event": "job.running", "attempt": 1, "status_code": 204})
    stores.webhooks.record_webhook_attempt(hooked, {"event": "job.running", "attempt": 2, "error": "timeout"})
    asks = [("t1", plain), ("t2", plain), ("t2", other), ("t1", other), (None, other), ("t1", hooked),
            ("t2", hooked), ("t1", quiet), ("t1", "job_missing"), ("t1", plain)]
    reader = StatusReader(stores.jobs, stores.webhooks, max_batch=3)  # several batches from one loop turn

    async def read_all() -> list[object]:
        return list(await asyncio.gather(*(reader.get(t, j) for t, j in asks)))

    try:
        got = asyncio.run(read_all())
    finally:
        reader.close()
    for (tenant, job_id), (job, attempts) in zip(asks, got, strict=True):  # type: ignore[misc]
        single = stores.jobs.get_job(job_id, tenant)
        assert job == single, (tenant, job_id)
        assert attempts == (stores.webhooks.webhook_attempts(job_id) if single and single.webhook_url else None)
    assert [j is not None for j, _ in got] == [True, False, True, False, True, True, False, True, False, True]  # type: ignore[misc]
    assert [a["attempt"] for a in got[5][1]] == [1, 2] and got[7][1] == []  # type: ignore[index]


def test_job_ids_are_random_128_bit_hex_and_a_forked_child_never_repeats_the_parents() -> None:
    import os
    import re

    from reelforge.jobs.store_jobs import new_job_id

    ids = [new_job_id() for _ in range(1000)]  # several reads of the buffered randomness
    assert len(set(ids)) == 1000 and all(re.fullmatch(r"job_[0-9a-f]{32}", i) for i in ids)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the ids it makes next, sent back
        os.write(write, " ".join(new_job_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as fh:
        child = fh.read().split()
    parent = [new_job_id() for _ in range(10)]  # what the parent's buffer hands out next
    assert len(child) == 10 and not set(child) & set(parent + ids)
