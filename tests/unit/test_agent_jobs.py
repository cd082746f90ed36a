"""The service side of remote agents, in-process: job tokens, queue scope, resource fit, output commit.

Real SQLite job database and local storage; the HTTP layer and real agent processes are in
tests/integration/test_agents.py.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelforge.config import Settings
from reelforge.engine.control import JobStatus
from reelforge.errors import AuthError, Conflict, ReelForgeError
from reelforge.jobs.agents import AgentJobs, AgentResources
from reelforge.jobs.service import JobCreate, JobService
from reelforge.jobs.services import JobServices
from reelforge.ops.registry import load_plugins
from reelforge.ops.resources import Resources


class NoExecutor:
    def submit(self, job: object) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        pass


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[JobServices, JobService, AgentJobs]]:
    settings = Settings(data_dir=tmp_path / "data", plugins="tests.plugins.slow_ops")
    load_plugins(settings.service.plugins)
    services = JobServices.create(settings)
    agents = AgentJobs(settings, services.stores, services.storage, services.control)
    yield services, services.job_service(NoExecutor()), agents
    services.close()


def test_tokens_are_hashed_scoped_and_revocable(env: tuple[JobServices, JobService, AgentJobs]) -> None:
    services, _, agents = env
    token, rec = services.stores.agents.create_token("box1", ["gpu"])
    assert rec.queues == ("gpu",)
    listed = services.stores.agents.list_tokens()[0]
    assert token not in repr(listed)
    assert agents.authenticate(token).id == rec.id
    assert agents.allowed_queues(rec, []) == ["gpu"]
    with pytest.raises(ReelForgeError) as err:
        agents.allowed_queues(rec, ["gpu", "cpu"])
    assert err.value.http_status == 403 and err.value.code == "queue_not_allowed"
    assert services.stores.agents.revoke("box1") == 1
    with pytest.raises(AuthError):
        agents.authenticate(token)


def test_a_job_token_reports_on_its_own_job_only(env: tuple[JobServices, JobService, AgentJobs]) -> None:
    services, service, agents = env
    _, rec = services.stores.agents.create_token("box1", ["cpu"])
    one, _ = service.submit("t1", JobCreate(op="test_slow", params={"seconds": 1}))
    two, _ = service.submit("t1", JobCreate(op="test_slow", params={"seconds": 1}))
    envelope = agents.claim(rec, "w1", ["cpu"], {})
    assert envelope is not None and envelope["job_id"] == one.id
    assert envelope["worker_id"].startswith(f"agent:{rec.id}:")
    grant = agents.grant(envelope["token"], one.id)
    assert agents.renew(grant).owned
    notes = service.get("t1", one.id).notes
    assert notes["backend"] == "agent" and notes["agent"] == "box1" and notes["queue_delay_s"] >= 0
    with pytest.raises(AuthError):  # the same token names another job
        agents.grant(envelope["token"], two.id)
    forged = envelope["token"][:-4] + ("0000" if not envelope["token"].endswith("0000") else "1111")
    with pytest.raises(AuthError):
        agents.grant(forged, one.id)
    with pytest.raises(AuthError):
        agents.grant("rfj.bm90.a", one.id)
    # a finish reporting an output that never arrived fails the job rather than pointing at nothing
    assert agents.finish(grant, JobStatus.SUCCEEDED, {"outputs": {"video": {
        "filename": "v.mp4", "size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}}}, None)
    failed = service.get("t1", one.id)
    assert failed.status == JobStatus.FAILED and failed.error["code"] == "output_incomplete"  # type: ignore[index]
    # a late duplicate from that attempt is ignored
    assert not agents.finish(grant, JobStatus.SUCCEEDED, {"outputs": {}}, None)
    with pytest.raises(Conflict):
        agents.upload_key(grant, "v.mp4")
    # revoking the agent's token refuses its job tokens at once
    second = agents.claim(rec, "w1", ["cpu"], {})
    assert second is not None
    services.stores.agents.revoke(rec.id)
    with pytest.raises(AuthError):
        agents.grant(second["token"], second["job_id"])


def test_outputs_are_committed_only_when_complete(env: tuple[JobServices, JobService, AgentJobs],
                                                  tmp_path: Path) -> None:
    services, service, agents = env
    _, rec = services.stores.agents.create_token("box1", ["cpu"])
    job, _ = service.submit("t1", JobCreate(op="test_slow", params={"seconds": 1}))
    envelope = agents.claim(rec, "w1", ["cpu"], {})
    assert envelope is not None
    grant = agents.grant(envelope["token"], job.id)
    data = b"\x00\x01video bytes" * 100
    part = tmp_path / "v.mp4"
    part.write_bytes(data)
    temp_key = agents.upload_key(grant, "v.mp4")
    services.storage.put_file(part, temp_key, "video/mp4")
    assert not services.storage.exists(f"jobs/{job.id}/v.mp4")  # not before finish
    meta = {"filename": "v.mp4", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
            "content_type": "video/mp4"}
    assert agents.finish(grant, JobStatus.SUCCEEDED, {"outputs": {"video": meta}, "data": {"x": 1}}, None)
    done = service.get("t1", job.id)
    assert done.status == JobStatus.SUCCEEDED
    out = done.result["outputs"]["video"]  # type: ignore[index]
    assert out["key"] == f"jobs/{job.id}/v.mp4" and out["size"] == len(data)
    local = services.storage.local_path(out["key"])
    assert local is not None and local.read_bytes() == data
    assert not services.storage.exists(temp_key)  # the temporary upload is gone


def test_resource_fit() -> None:
    none = AgentResources()
    big = AgentResources(gpu_name="L40S", vram_gb=48)
    small = AgentResources(gpu_name="T4", vram_gb=16)
    need = Resources(gpu="required", vram_gb=24)
    assert not none.fits(need) and not small.fits(need) and big.fits(need)
    assert none.fits(Resources(gpu="preferred", vram_gb=2)) and none.fits(Resources())


def test_memory_held_by_an_agents_running_jobs_counts() -> None:
    need = Resources(gpu="required", vram_gb=12)
    busy = AgentResources(gpu_name="L4", vram_gb=24, vram_free_gb=8)
    assert not busy.fits(need)  # 24 GB in all, 16 held by its other job
    assert AgentResources(gpu_name="L4", vram_gb=24, vram_free_gb=12).fits(need)
    assert busy.fits(Resources())  # CPU work needs no GPU memory
    assert not busy.fits(Resources(gpu="preferred", vram_gb=10))  # would run on its GPU: waits for memory
    small = AgentResources(gpu_name="T4", vram_gb=8, vram_free_gb=0)
    assert small.fits(Resources(gpu="preferred", vram_gb=10))  # never fits that GPU: runs on the CPU there
    assert AgentResources.from_dict({"gpu_name": "L4", "vram_gb": 24, "vram_free_gb": 8}) == busy


def test_presence_counts_agents_seen_by_other_processes() -> None:
    from reelforge.engine.backends import AgentPresence

    asked: list[float] = []

    def shared(within_s: float) -> set[str]:
        asked.append(within_s)
        return {"gpu"}

    presence = AgentPresence(shared)
    assert presence.alive("gpu", 30) and not presence.alive("cpu", 30)
    assert asked == [30]  # answered from a short cache afterwards: claims ask on every poll
    presence.seen(["cpu"])
    assert presence.alive("cpu", 30)


def test_a_jobs_chunk_workers_are_the_live_agents_slots_for_its_queue(
        env: tuple[JobServices, JobService, AgentJobs]) -> None:
    """The envelope's `workers` (docs/CHUNKED.md, "On agents"): the slots the agents of the job's queue
    declared, of those seen within agent_alive_s and not revoked; 1 for a child."""
    services, service, agents = env
    store = services.stores.agents
    _, big = store.create_token("big", ["cpu", "gpu"])
    _, small = store.create_token("small", ["cpu"])
    _, other = store.create_token("other", ["gpu"])
    _, silent = store.create_token("silent", ["cpu"])  # never polled
    for rec, slots in ((big, 3), (small, None), (other, 5)):
        agents.register(rec, {"cpu_cores": 4, **({"slots": slots} if slots else {})})
    job, _ = service.submit("t1", JobCreate(op="test_slow", params={"seconds": 1}))
    envelope = agents.claim(big, "w1", ["cpu"], {})
    assert envelope is not None and envelope["job_id"] == job.id
    assert envelope["workers"] == 3 + 1 and envelope["parent"] is None and envelope["resumed"] is None
    store.revoke("small")
    assert silent.last_seen_at is None and store.live_slots("cpu", 0.0) == 3
    assert store.live_slots("gpu", 0.0) == 8
