"""Chunked jobs on remote agents only (docs/CHUNKED.md, "On agents"): `reelforge serve` on local storage with
every queue mapped to agents, and two `reelforge agent` processes (no database, broker or storage settings).
A long render forks on an agent into as many picture chunks as the agents have slots, the chunks run on the
agents, the join runs on an agent from the chunks' files served by the API, and the video is the unchunked
render's; a chunked build's children read the files their parent made through the API too. A job token can
fork only its own op's children, naming only what its job names.

Small pictures and espeak's voice, so each job takes seconds on a shared 2-core machine."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.chunked_media import compare, make_sources, timeline
from tests.integration.service import Service, download, wait_job
from tests.integration.test_agents import AgentProc, agent, create_token

FPS, SIZE = 5, (160, 90)
# read by the agents, where the ops plan their chunks: a 30 s job is long enough to split, in chunks of >= 5 s
CHUNK_ENV = {"REELFORGE_CHUNK_THRESHOLD_S": "20", "REELFORGE_CHUNK_MIN_S": "5"}
SENTENCE = "The quick brown fox jumps over the lazy dog while the narrator keeps on talking about the weather."


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = Service(tmp_path_factory.mktemp("chunked_agents") / "data", REELFORGE_LEASE_TTL_S="5",
                      REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["agent"], "gpu": ["agent"]}), **CHUNK_ENV)
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
def sources(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    ids = {}
    with svc.client() as c:
        for name, path in make_sources(tmp_path_factory.mktemp("media")).items():
            with path.open("rb") as fh:
                ids[name] = str(c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"])
    return ids


@pytest.fixture(scope="module")
def agents(svc: Service, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    """Two agents of one slot each: the service sizes a job's chunks by them."""
    tmp = tmp_path_factory.mktemp("agent_boxes")
    env = {**CHUNK_ENV, "REELFORGE_WHISPER_MODEL": "packaged:tiny.en"}
    with agent(svc, tmp, "box1", env=env) as one, agent(svc, tmp, "box2", env=env) as two:
        one.wait_registered()
        two.wait_registered()
        yield [one, two]


def submit(c: httpx.Client, op: str, params: dict[str, Any]) -> str:
    res = c.post("/v1/jobs", json={"op": op, "params": params})
    assert res.status_code == 202, res.text
    return str(res.json()["id"])


def test_a_job_token_forks_only_its_own_ops_children_naming_its_own_inputs(svc: Service,
                                                                            sources: dict[str, str]) -> None:
    """No agent runs yet: the test claims the job itself, as an agent would, and asks for forks a rented
    machine must not get (the service's own workers could take those children)."""
    token = create_token(svc, "forger")
    with svc.client() as c:
        job_id = submit(c, "render", timeline(sources, total=30, fps=FPS, size="160x90"))
        other_id = submit(c, "probe", {"input": sources["music"]})  # another file of the same tenant
        claim = c.post("/v1/agent/claim", headers={"Authorization": f"Bearer {token}"},
                       json={"worker_id": "forger-1", "queues": [], "wait_s": 5}).json()["job"]
        if claim["job_id"] != job_id:  # the probe came first: claim again for the render
            claim = c.post("/v1/agent/claim", headers={"Authorization": f"Bearer {token}"},
                           json={"worker_id": "forger-2", "queues": [], "wait_s": 5}).json()["job"]
        assert claim["job_id"] == job_id and claim["workers"] >= 1 and claim["resumed"] is None
        auth = {"Authorization": f"Bearer {claim['token']}"}
        params = claim["params"]
        first_clip = params["timeline"]["tracks"][2]["clips"][0]["asset"]
        cases = {
            "another op": ({"op": "probe", "params": {"input": sources["clip"]}}, 400, "invalid_fork"),
            "a local path": ({"op": "render", "params": _with_src(params, "file:///etc/passwd")}, 422,
                             "invalid_params"),
            "another job's output": ({"op": "render", "params": _with_src(params, f"job://{other_id}/x")}, 422,
                                     "invalid_params"),
            "a file the job does not name": ({"op": "render", "params": _with_src(params, _unnamed(c))}, 400,
                                             "invalid_fork"),
            "a weight that is no number": ({"op": "render", "params": params, "weight": "x"}, 400, "invalid_fork"),
        }
        assert first_clip["src"] == sources["clip"]
        for why, (child, status, code) in cases.items():
            res = c.post(f"/v1/agent/jobs/{job_id}/fork", headers=auth, json={"children": [child]})
            assert res.status_code == status and res.json()["error"]["code"] == code, (why, res.text)
        # the job was not parked by any of them; a job ref its claim did not get is not served either
        assert c.get(f"/v1/jobs/{job_id}").json()["status"] == "running"
        res = c.get(f"/v1/agent/jobs/{job_id}/refs/{other_id}/report", headers=auth)
        assert res.status_code == 404 and res.json()["error"]["code"] == "input_not_found"
        released = c.post(f"/v1/agent/jobs/{job_id}/release", headers=auth,
                          json={"error": {"code": "worker_lost", "message": "test"}, "refund": True})
        assert released.status_code == 200
        for jid in (job_id, other_id):
            c.post(f"/v1/jobs/{jid}/cancel")
    assert svc.cli("agents", "token", "revoke", "forger").returncode == 0  # no slot of its own counted later


def _with_src(params: dict[str, Any], src: str) -> dict[str, Any]:
    changed = json.loads(json.dumps(params))
    changed["timeline"]["tracks"][2]["clips"][0]["asset"]["src"] = src
    return changed


def _unnamed(c: httpx.Client) -> str:
    res = c.post("/v1/files", params={"filename": "other.txt"}, content=b"not this job's")
    assert res.status_code == 201, res.text
    return str(res.json()["id"])


def test_a_render_forks_runs_and_joins_on_agents_and_is_the_unchunked_render(
        svc: Service, sources: dict[str, str], agents: list[AgentProc], tmp_path: Path) -> None:
    with svc.client() as c:
        ref = wait_job(c, submit(c, "render", timeline(sources, fps=FPS, size="160x90", chunks=1)), timeout=300)
        assert ref["status"] == "succeeded", ref
        # no `chunks`: as many as the agents' slots (two agents of one slot)
        chunked = wait_job(c, submit(c, "render", timeline(sources, fps=FPS, size="160x90")), timeout=300)
        assert chunked["status"] == "succeeded", (chunked, agents[0].output(), agents[1].output())
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in chunked["notes"]["fork"]["children"]]
        ref_path = download(c, ref, "render", tmp_path / "ref.mp4")
        chunked_path = download(c, chunked, "render", tmp_path / "chunked.mp4")
    assert chunked["result"]["data"]["chunks"] == 2 and len(children) == 3  # two pictures and the sound
    assert all(ch["status"] == "succeeded" and ch["notes"]["parent"] == chunked["id"] for ch in children)
    # every run was an agent's: the fork, each chunk, and the join (the parent's notes name the last)
    assert all(job["notes"]["backend"] == "agent" and job["notes"]["agent"] in ("box1", "box2")
               for job in (*children, chunked)), [(j["id"], j["notes"]) for j in (*children, chunked)]
    starts = [ch["params"]["chunk"]["start_frame"] for ch in children[:2]]
    m = compare(ref_path, chunked_path, joins=starts[1:], size=SIZE)
    assert m["frames"] == (900, 900) and m["monotonic"]
    assert m["keyframes"] == m["keyframes_ref"] == list(range(0, 900, 10))
    assert m["min_psnr"] == 99.0  # every frame identical, as on the service's own workers
    assert m["samples"][0] == m["samples"][1] and m["audio_max_diff"] < 1e-3, m


def test_a_chunked_builds_children_read_their_parents_files_through_the_api(
        svc: Service, agents: list[AgentProc], tmp_path: Path) -> None:
    """Local storage: the narration, subtitles and background the parent made reach the children on the
    agents by the job-file route (before, such a child failed with input_not_found)."""
    background = tmp_path / "background.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=s=192x108:r=25:d=3.3",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(background)], check=True)
    with svc.client() as c:
        with background.open("rb") as fh:
            bg = str(c.post("/v1/files", params={"filename": "background.mp4"}, content=fh).json()["id"])
        params = {"script": " ".join([SENTENCE] * 5), "voice": {"engine": "espeak", "sentence_pause_s": 0.2},
                  "backgrounds": [bg], "size": "320x180", "fps": 10, "quality": "draft"}
        ref = wait_job(c, submit(c, "build", {**params, "chunks": 1}), timeout=600)
        assert ref["status"] == "succeeded", ref
        chunked = wait_job(c, submit(c, "build", {**params, "chunks": 2}), timeout=600)
        assert chunked["status"] == "succeeded", (chunked, agents[0].output(), agents[1].output())
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in chunked["notes"]["fork"]["children"]]
        paths = [download(c, job, "video", tmp_path / f"{job['id']}.mp4") for job in (ref, chunked)]
    assert chunked["result"]["data"]["frames"] == ref["result"]["data"]["frames"]
    assert chunked["result"]["data"]["chunks"] == 2 and len(children) == 3
    assert set(chunked["notes"]["fork"]["outputs"]) == {"narration", "background", "ass", "srt"}
    assert children[0]["params"]["compose"]["narration"] == f"job://{chunked['id']}/narration"
    assert all(ch["status"] == "succeeded" and ch["notes"]["backend"] == "agent" for ch in children), children
    starts = [ch["params"]["chunk"]["start_frame"] for ch in children[:2]]
    m = compare(paths[0], paths[1], joins=starts[1:], size=(320, 180))
    assert m["frames"][0] == m["frames"][1] and m["frames"][0] > 20 * 10, m["frames"]
    assert m["min_psnr"] == 99.0 and m["samples"][0] == m["samples"][1] and m["audio_max_diff"] == 0.0, m
