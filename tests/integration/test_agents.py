"""Remote agents for real: `reelforge serve` and `reelforge agent` as separate processes on loopback.

The agents' environment has no database URL, no broker URL and no storage credentials (asserted); they
reach the service only through /v1/agent with an agent token. The service maps every queue to agents
(compute.queue_backends), so its own local slots take nothing: whatever runs, an agent ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.service import Service, download, pids_with, wait_job

SPEECH = "The weather is lovely today. We are going to the beach this afternoon."
FORBIDDEN = ("DATABASE", "BROKER", "REDIS", "S3_", "AWS_", "CELERY", "POSTGRES", "PG")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("agents") / "data", REELFORGE_WHISPER_MODEL="packaged:tiny.en",
                  REELFORGE_DEVICE="cpu",
                  REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["agent"], "gpu": ["agent"]}), REELFORGE_LEASE_TTL_S="5")
    svc.start()
    yield svc
    svc.stop()


class AgentProc:
    def __init__(self, svc: Service, token: str, data_dir: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log = data_dir.parent / f"{data_dir.name}.log"
        # only what a rented box would have: no database, broker or storage settings at all
        self.env = {"PATH": os.environ["PATH"], "HOME": str(data_dir), "PYTHONPATH": svc.env["PYTHONPATH"],
                    "REELFORGE_DATA_DIR": str(data_dir), "REELFORGE_PLUGINS": "tests.plugins.slow_ops",
                    "REELFORGE_WHISPER_MODEL": "packaged:tiny.en", "REELFORGE_DEVICE": "cpu",
                    "HF_HUB_OFFLINE": "1", "REELFORGE_AGENT_TOKEN": token, **(env or {})}
        assert not [k for k in self.env if any(f in k.upper() for f in FORBIDDEN)]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reelforge.cli", "agent", "--api", svc.url, "--queues", "cpu,gpu",
             "--concurrency", "1", *extra], env=self.env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True, cwd=str(data_dir))
        assert "DATABASE_URL" not in "".join(Path(f"/proc/{self.proc.pid}/environ").read_bytes().decode(
            errors="replace").split("\0")).upper()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)

    def wait_registered(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while "registered" not in self.output() and time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def create_token(svc: Service, name: str, queues: str = "cpu,gpu") -> str:
    res = svc.cli("agents", "token", "create", "--name", name, "--queues", queues)
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip().splitlines()[-1]
    assert token.startswith("rfa_")
    return token


@contextlib.contextmanager
def agent(svc: Service, tmp: Path, name: str, *extra: str, token: str | None = None,
          env: dict[str, str] | None = None) -> Iterator[AgentProc]:
    proc = AgentProc(svc, token or create_token(svc, name), tmp / name, *extra, env=env)
    try:
        yield proc
    finally:
        proc.stop()


def upload(c: httpx.Client, path: Path) -> str:
    resp = c.post("/v1/files", params={"filename": path.name}, content=path.read_bytes())
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def submit(c: httpx.Client, op: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = c.post("/v1/jobs", json={"op": op, "params": params})
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         check=True, capture_output=True, text=True).stdout
    return dict(json.loads(out))


def wait_done(c: httpx.Client, job_id: str, box: AgentProc, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "failed", "cancelled", "timed_out"):
            return dict(job)
        assert box.proc.poll() is None, box.output()
        time.sleep(0.2)
    raise AssertionError(f"{job_id} did not finish: {job}\n{box.output()}")


def wait_running(c: httpx.Client, job_id: str, marker: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if job["status"] == "running" and pids_with(marker):
            return dict(job)
        assert job["status"] in ("queued", "running"), job
        time.sleep(0.1)
    raise AssertionError(f"{job_id} never ran an ffmpeg with {marker}")


def test_an_agent_without_credentials_runs_probe_kenburns_and_transcription(stack: Service, tmp_path: Path,
                                                                             make_video, make_image) -> None:
    speech = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(speech), "--stdin"], input=SPEECH.encode(),
                   check=True)
    with stack.client() as c:
        video = upload(c, make_video(duration=1.5, size="320x240", fps=25))
        image = upload(c, make_image(size="640x480"))
        audio = upload(c, speech)
        probe = submit(c, "probe", {"input": video})
        clip = submit(c, "img2vid", {"images": [image], "size": "320x240", "fps": 25, "duration_s": 2.0})
        asr = submit(c, "transcribe", {"input": audio, "language": "en"})
        facts = submit(c, "test_host_facts", {})
        assert asr["queue"] == "gpu" and probe["queue"] == "cpu"
        time.sleep(1.5)  # the service's own slots leave agent queues alone
        assert c.get(f"/v1/jobs/{probe['id']}").json()["status"] == "queued"

        with agent(stack, tmp_path, "box1") as box:
            done = {j["id"]: wait_done(c, j["id"], box, timeout=240) for j in (probe, clip, asr, facts)}
            assert box.proc.poll() is None, box.output()

        for job in done.values():
            assert job["status"] == "succeeded", (job, box.output())
            assert job["notes"]["backend"] == "agent" and job["notes"]["agent"] == "box1"
        assert done[probe["id"]]["result"]["data"]["duration_s"] == pytest.approx(1.5, abs=0.1)

        out = download(c, done[clip["id"]], "clip_001", tmp_path / "clip.mp4")
        info = ffprobe(out)
        streams = [s for s in info["streams"] if s["codec_type"] == "video"]
        assert (streams[0]["width"], streams[0]["height"]) == (320, 240)
        assert float(info["format"]["duration"]) == pytest.approx(2.0, abs=0.1)
        meta = done[clip["id"]]["result"]["outputs"]["clip_001"]
        assert meta["size"] == out.stat().st_size and meta["key"].startswith(f"jobs/{clip['id']}/")

        text = done[asr["id"]]["result"]["data"]["text"].lower()
        assert "beach" in text and "afternoon" in text
        assert "beach" in download(c, done[asr["id"]], "transcript", tmp_path / "t.txt").read_text().lower()
        assert "-->" in download(c, done[asr["id"]], "segments_srt", tmp_path / "t.srt").read_text()

        # the agent's job host loaded no database code, and the agent made no database of its own
        assert done[facts["id"]]["result"]["data"]["database_modules"] == []
        assert not list(box.data_dir.rglob("reelforge.db*"))
        metrics = c.get("/metrics").text
        assert 'reelforge_jobs_started_remote_total{backend="agent",queue="gpu"} 1.0' in metrics
        assert 'reelforge_remote_queue_delay_seconds_count{backend="agent"}' in metrics
        # the fresh agent loaded whisper for the transcription: a cold start, and the job's timeline says so
        assert any(s[0] == "loading_model" for s in done[asr["id"]]["notes"]["stages"])
        assert 'reelforge_remote_cold_starts_total{backend="agent"} 1.0' in metrics
        # outputs were committed: no temporary agent uploads remain in the service's storage
        assert not list((stack.data_dir / "storage").glob("agent-uploads/*/*/*"))


def test_cancel_reaches_an_agents_job_within_5_s(stack: Service, tmp_path: Path) -> None:
    with stack.client() as c, agent(stack, tmp_path, "box-cancel") as box:
        job = submit(c, "test_slow", {"seconds": 60, "marker": "agentcancel"})
        wait_running(c, job["id"], "agentcancel")
        started = time.monotonic()
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
        done = wait_job(c, job["id"], timeout=10)
        took = time.monotonic() - started
        assert done["status"] == "cancelled", done
        assert took < 5, took
        deadline = time.monotonic() + 5
        while pids_with("agentcancel") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids_with("agentcancel") == []  # the agent's job host killed its ffmpeg
        assert box.proc.poll() is None, box.output()


def test_a_killed_agents_job_is_retried_on_a_second_agent(stack: Service, tmp_path: Path) -> None:
    with stack.client() as c:
        job = submit(c, "test_slow", {"seconds": 4, "marker": "agentkill"})
        with agent(stack, tmp_path, "box-a") as first:
            running = wait_running(c, job["id"], "agentkill")
            assert running["notes"]["agent"] == "box-a"
            os.kill(first.proc.pid, signal.SIGKILL)  # the agent only: as if its machine vanished
            first.proc.wait(timeout=5)
        for pid in pids_with("agentkill"):  # its orphaned ffmpeg (a vanished machine takes it along)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with agent(stack, tmp_path, "box-b") as second:
            done = wait_done(c, job["id"], second, timeout=90)
            assert done["status"] == "succeeded", (done, second.output())
        # (>= 2: on a loaded test machine a renewal can miss the short test lease and cost one more try)
        assert done["attempts"] >= 2 and done["notes"]["agent"] == "box-b"
        assert done["notes"]["last_worker_error"]["code"] == "worker_lost"


def test_a_revoked_token_is_refused_at_once_even_mid_job(stack: Service, tmp_path: Path) -> None:
    token = create_token(stack, "box-revoked")
    with stack.client() as c, agent(stack, tmp_path, "box-revoked", token=token) as box:
        job = submit(c, "test_slow", {"seconds": 60, "marker": "agentrevoke"})
        wait_running(c, job["id"], "agentrevoke")
        listed = stack.cli("agents", "token", "list")
        assert "box-revoked" in listed.stdout and "False" in listed.stdout
        assert stack.cli("agents", "token", "revoke", "box-revoked").returncode == 0
        started = time.monotonic()
        refused = httpx.post(f"{stack.url}/v1/agent/claim", headers={"Authorization": f"Bearer {token}"},
                             json={"worker_id": "probe", "queues": ["cpu"], "wait_s": 0}, timeout=10)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_agent_token"
        box.proc.wait(timeout=10)  # the agent stops: its job's reports are refused too
        assert box.proc.returncode == 3, box.output()
        assert time.monotonic() - started < 10
        deadline = time.monotonic() + 5
        while pids_with("agentrevoke") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert pids_with("agentrevoke") == []
        # the job is not lost: back in the queue for another agent once its lease runs out
        assert wait_job(c, job["id"], timeout=20, until={"queued"})["attempts"] == 1
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)


def test_jobs_go_only_to_agents_whose_resources_fit(stack: Service, tmp_path: Path) -> None:
    with stack.client() as c:
        job = submit(c, "test_needs_gpu", {})
        assert job["queue"] == "gpu"
        with agent(stack, tmp_path, "box-cpu", "--gpu-name", "", "--vram-gb", "0", "--idle-exit", "0.05") as small:
            assert small.proc.wait(timeout=30) == 0  # found nothing it can run, went idle, exited
        assert c.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
        with agent(stack, tmp_path, "box-big", "--gpu-name", "Test GPU 16G", "--vram-gb", "16",
                   "--cuda", "12.4", "--nvenc-sessions", "3") as big:
            done = wait_done(c, job["id"], big, timeout=60)
        assert done["status"] == "succeeded", done
        assert done["notes"]["agent"] == "box-big" and done["notes"]["gpu"] == "Test GPU 16G"
        assert done["notes"]["cuda"] == "12.4"
        listed = stack.cli("agents", "token", "list").stdout
        assert "box-big" in listed and "Test GPU 16G" in listed


def test_an_agents_gpu_memory_bounds_what_runs_at_once(stack: Service, tmp_path: Path) -> None:
    """Two 12 GB jobs on a 16 GB agent with two slots run one after the other; a CPU job runs beside them."""
    with stack.client() as c:
        gpu = [submit(c, "test_gpu_slow", {"seconds": 3}) for _ in range(2)]
        cpu = submit(c, "test_slow", {"seconds": 2, "marker": "besidegpu"})
        with agent(stack, tmp_path, "box-16g", "--gpu-name", "Test GPU 16G", "--vram-gb", "16",
                   "--nvenc-sessions", "3", "--concurrency", "2") as box:
            done = [wait_done(c, j["id"], box, timeout=60) for j in [*gpu, cpu]]
    assert all(d["status"] == "succeeded" for d in done), done
    spans = sorted((d["started_at"], d["finished_at"]) for d in done[:2])
    assert spans[1][0] >= spans[0][1], spans  # the second GPU job waited for the first one's memory
    first_gpu, cpu_job = done[0], done[2]
    overlap = min(first_gpu["finished_at"], cpu_job["finished_at"]) > max(first_gpu["started_at"],
                                                                           cpu_job["started_at"])
    second = done[1]
    overlap = overlap or min(second["finished_at"], cpu_job["finished_at"]) > max(second["started_at"],
                                                                                 cpu_job["started_at"])
    assert overlap  # a job that needs no GPU memory took the other slot meanwhile


def test_a_stopped_agent_gives_its_job_back_without_spending_an_attempt(stack: Service, tmp_path: Path) -> None:
    with stack.client() as c:
        job = submit(c, "test_slow", {"seconds": 60, "marker": "agentterm"})
        with agent(stack, tmp_path, "box-term") as box:
            wait_running(c, job["id"], "agentterm")
            os.killpg(box.proc.pid, signal.SIGTERM)
            assert box.proc.wait(timeout=30) == 0, box.output()
        back = wait_job(c, job["id"], timeout=10, until={"queued"})
        assert back["attempts"] == 0  # the attempt was given back: a stop is not the job's fault
        assert pids_with("agentterm") == []
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)


def test_a_queue_mapped_to_agent_then_local_runs_locally_when_no_agent_is_around(tmp_path: Path) -> None:
    svc = Service(tmp_path / "data", REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["agent", "local"]}),
                  REELFORGE_AGENT_ALIVE_S="2")
    svc.start()
    try:
        with svc.client() as c:
            first = submit(c, "test_slow", {"seconds": 0.5})
            assert wait_job(c, first["id"], timeout=60)["status"] == "succeeded"  # no agent: local slots
            assert c.get(f"/v1/jobs/{first['id']}").json()["notes"]["backend"] == "local"
            with agent(svc, tmp_path, "box-fallback") as box:
                box.wait_registered()
                time.sleep(0.5)  # the agent is polling now: the local slots leave cpu to it
                second = submit(c, "test_slow", {"seconds": 0.5})
                done = wait_done(c, second["id"], box, timeout=60)
            assert done["status"] == "succeeded" and done["notes"]["agent"] == "box-fallback"
    finally:
        svc.stop()


def test_an_agent_polling_one_api_process_counts_in_the_others(tmp_path: Path) -> None:
    """Two API processes on one database: the agent long-polls the first; a job submitted to the second is
    left to the agent by the second's local slots (gpu = ["agent", "local"] holds across processes)."""
    backends = json.dumps({"cpu": ["agent", "local"]})
    first = Service(tmp_path / "data", REELFORGE_QUEUE_BACKENDS=backends, REELFORGE_AGENT_ALIVE_S="5")
    first.start()
    second = Service(tmp_path / "data", REELFORGE_QUEUE_BACKENDS=backends, REELFORGE_AGENT_ALIVE_S="5")
    second.start()
    try:
        with agent(first, tmp_path, "box-shared") as box, second.client() as c:
            box.wait_registered()
            time.sleep(3.0)  # the agent's polls reach the store; the second process reads them
            job = submit(c, "test_slow", {"seconds": 0.5, "marker": "sharedpresence"})
            done = wait_done(c, job["id"], box, timeout=60)
        assert done["status"] == "succeeded", done
        assert done["notes"]["backend"] == "agent" and done["notes"]["agent"] == "box-shared"
    finally:
        second.stop()
        first.stop()


def test_a_user_error_found_on_the_agent_fails_the_job_with_its_code(stack: Service, tmp_path: Path,
                                                                     make_video) -> None:
    """Bad input found only where the job runs is the user's error: the job fails with the op's own code at
    once, with no retry (a retry would find the same input)."""
    with stack.client() as c:
        silent = upload(c, make_video(duration=1.0, size="160x120", audio=False, name="silent.mp4"))
        job = submit(c, "transcribe", {"input": silent, "language": "en"})
        with agent(stack, tmp_path, "box-usererror") as box:
            done = wait_done(c, job["id"], box, timeout=120)
    assert done["status"] == "failed", done
    assert done["error"]["code"] == "no_audio_stream" and "audio" in done["error"]["message"]
    assert done["attempts"] == 1 and done["notes"]["agent"] == "box-usererror"


def make_key(svc: Service, name: str) -> str:
    res = svc.cli("keys", "create", "--name", name)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_an_agent_sees_only_the_inputs_of_the_jobs_it_is_given(stack: Service, make_image) -> None:
    """The job token reads the inputs its job names and nothing else: not the same tenant's other files, not
    another tenant's, not another job's; the agent token opens none of the tenants' API."""
    token = create_token(stack, "box-scope", "cpu")
    agent_auth = {"Authorization": f"Bearer {token}"}
    alice, bob = make_key(stack, "alice-scope"), make_key(stack, "bob-scope")
    with stack.client(alice) as a, stack.client(bob) as b:
        mine = make_image(size="64x48", name="mine.png")
        mine_id, unnamed_id = upload(a, mine), upload(a, make_image(size="32x24", name="other.png"))
        theirs_id = upload(b, make_image(size="48x32", name="theirs.png"))
        job = submit(a, "img2vid", {"images": [mine_id], "size": "64x48", "fps": 10, "duration_s": 0.5})
        claimed = httpx.post(f"{stack.url}/v1/agent/claim", headers=agent_auth, timeout=30,
                             json={"worker_id": "scope", "queues": ["cpu"], "wait_s": 10})
        assert claimed.status_code == 200, claimed.text
        env = claimed.json()["job"]
        assert env["job_id"] == job["id"] and set(env["files"]) == {mine_id}
        job_auth = {"Authorization": f"Bearer {env['token']}"}
        files = f"{stack.url}/v1/agent/jobs/{job['id']}/files"
        got = httpx.get(f"{stack.url}{env['files'][mine_id]['url']}", headers=job_auth, timeout=30)
        assert got.status_code == 200 and got.content == mine.read_bytes()
        for other in (unnamed_id, theirs_id):
            refused = httpx.get(f"{files}/{other}", headers=job_auth, timeout=30)
            assert refused.status_code == 404 and refused.json()["error"]["code"] == "input_not_found"
        their_job = submit(b, "test_slow", {"seconds": 0.1})
        wrong_job = httpx.get(f"{stack.url}/v1/agent/jobs/{their_job['id']}/files/{theirs_id}", headers=job_auth,
                              timeout=30)
        assert wrong_job.status_code == 401 and wrong_job.json()["error"]["code"] == "invalid_job_token"
        assert httpx.get(f"{files}/{mine_id}", headers=agent_auth, timeout=30).status_code == 401
        assert httpx.get(f"{stack.url}/v1/jobs", headers={"X-API-Key": token}, timeout=30).status_code == 401
        finished = httpx.post(f"{stack.url}/v1/agent/jobs/{job['id']}/finish", headers=job_auth, timeout=30,
                              json={"status": "failed", "error": {"code": "test_over", "message": "Done."}})
        assert finished.status_code == 200 and finished.json()["ok"] is True
        assert a.get(f"/v1/jobs/{job['id']}").json()["status"] == "failed"
        assert b.post(f"/v1/jobs/{their_job['id']}/cancel").status_code in (200, 202)
