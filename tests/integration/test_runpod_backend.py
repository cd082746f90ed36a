"""The `runpod` backend for real: `reelforge serve` sends jobs to a local fake of RunPod's serverless REST API,
whose "workers" run the real handler body (engine/agent.py run_envelope) on the envelope they are given,
reporting to the service over HTTP with the job token only. A fake that is down -> the job runs locally.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from reelforge.engine.runpod_worker import handler
from tests.integration.service import Service, free_port, wait_job

KEY = "rp_key_for_tests"


@dataclass
class FakeRunPod:
    workdir: Path
    url: str = ""
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    hold: bool = False  # jobs stay IN_QUEUE (no worker free)
    stall: dict[str, Any] | None = None  # jobs go IN_PROGRESS with this output (a handler's progress_update)
    # and stay so: a worker whose own reports to the service never get through
    fail_next: int = 0  # this many jobs end FAILED without running (a worker crash on RunPod)
    vanish_next: int = 0  # this many jobs are forgotten right after /run (their /status answers 404)
    cancels: list[str] = field(default_factory=list)
    test_mode: bool = False  # run the worker image's entry point under the runpod package's --test_input
    test_mode_logs: list[str] = field(default_factory=list)

    def start_job(self, job_id: str, payload: dict[str, Any]) -> None:
        job = self.jobs[job_id]
        if self.vanish_next:
            self.vanish_next -= 1
            del self.jobs[job_id]
            return
        if self.fail_next:
            self.fail_next -= 1
            job.update(status="FAILED", error="worker exited with code 137", delayTime=200)
            return
        if self.hold:
            return
        if self.stall is not None:
            job.update(status="IN_PROGRESS", delayTime=300, output=dict(self.stall))
            return

        def work() -> None:  # what RunPod does: call the worker image's handler with the job's input
            job.update(status="IN_PROGRESS", delayTime=300)
            out = self.run_test_mode(payload) if self.test_mode else handler({"id": job_id, "input": payload})
            job.update(status="COMPLETED", output=out, executionTime=1000)

        threading.Thread(target=work, daemon=True).start()


    def run_test_mode(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`python -m reelforge.engine.runpod_worker --test_input ...`: the runpod package's own local test mode,
        in an environment with a data folder and the test ops only (what the image would have)."""
        env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
        env.update(REELFORGE_DATA_DIR=str(self.workdir / "test-mode"), REELFORGE_PLUGINS="tests.plugins.slow_ops")
        proc = subprocess.run([sys.executable, "-m", "reelforge.engine.runpod_worker", "--test_input",
                               json.dumps({"input": payload})], env=env, capture_output=True, text=True,
                              timeout=float(payload["envelope"]["timeout_s"]) + 60)
        self.test_mode_logs.append(proc.stdout + proc.stderr)
        return {"returncode": proc.returncode}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeRunPod]:
    state = FakeRunPod(tmp_path_factory.mktemp("runpod"))
    # the worker image's environment: a data folder for its work, the test ops; nothing else
    env = pytest.MonkeyPatch()
    env.setenv("REELFORGE_DATA_DIR", str(state.workdir))
    env.setenv("REELFORGE_PLUGINS", "tests.plugins.slow_ops")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self.route()

        def do_POST(self) -> None:
            self.route()

        def route(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                return self.answer(401, {"error": "Unauthorized"})
            parts = self.path.split("/")[3:]  # /v2/<endpoint>/...
            if parts == ["run"]:
                job_id = f"rp-{uuid.uuid4().hex[:8]}"
                state.jobs[job_id] = {"id": job_id, "status": "IN_QUEUE"}
                state.start_job(job_id, body["input"])
                return self.answer(200, {"id": job_id, "status": "IN_QUEUE"})
            if len(parts) == 2 and parts[1] in state.jobs:
                job = state.jobs[parts[1]]
                if parts[0] == "cancel":
                    state.cancels.append(parts[1])
                    if job["status"] in ("IN_QUEUE", "IN_PROGRESS"):
                        job["status"] = "CANCELLED"
                return self.answer(200, dict(job))
            return self.answer(404, {"error": "not found"})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v2"
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()
    env.undo()


def runpod_service(data_dir: Path, base_url: str) -> Service:
    return Service(data_dir, REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["runpod", "local"]}),
                   REELFORGE_RUNPOD_ENDPOINT_ID="ep1", REELFORGE_RUNPOD_API_KEY=KEY,
                   REELFORGE_RUNPOD_BASE_URL=base_url)


@pytest.fixture(scope="module")
def stack(fake: FakeRunPod, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = runpod_service(tmp_path_factory.mktemp("rp-service") / "data", fake.url)
    svc.start()
    yield svc
    svc.stop()


def submit(c: httpx.Client, op: str, params: dict[str, Any]) -> dict[str, Any]:
    resp = c.post("/v1/jobs", json={"op": op, "params": params})
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


def test_a_job_runs_on_runpod_and_reports_with_its_job_token(stack: Service, fake: FakeRunPod,
                                                              tmp_path: Path) -> None:
    with stack.client() as c:
        job = submit(c, "test_slow", {"seconds": 1, "marker": "runpodok"})
        done = wait_job(c, job["id"], timeout=90)
        assert done["status"] == "succeeded", done
        assert done["notes"]["backend"] == "runpod" and done["notes"]["remote_id"] in fake.jobs
        resp = c.get(f"/v1/jobs/{job['id']}/outputs/video")
        assert resp.status_code == 200
        (tmp_path / "v.mp4").write_bytes(resp.content)
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", str(tmp_path / "v.mp4")],
                                     check=True, capture_output=True, text=True).stdout)
    assert float(info["format"]["duration"]) == pytest.approx(1.0, abs=0.15)
    listed = stack.cli("agents", "token", "list").stdout
    assert "agt_runpod" in listed  # the backend's identity: visible, revocable
    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    assert 'reelforge_jobs_started_remote_total{backend="runpod",queue="cpu"}' in metrics


def test_a_cancel_reaches_a_job_runpod_still_queues(stack: Service, fake: FakeRunPod) -> None:
    fake.hold = True
    try:
        with stack.client() as c:
            job = submit(c, "test_slow", {"seconds": 1, "marker": "runpodheld"})
            deadline = time.monotonic() + 30
            while c.get(f"/v1/jobs/{job['id']}").json()["status"] != "running" and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1.5)
            remote_id = c.get(f"/v1/jobs/{job['id']}").json()["notes"]["remote_id"]
            started = time.monotonic()
            assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
            done = wait_job(c, job["id"], timeout=10)
            assert done["status"] == "cancelled", done
            assert time.monotonic() - started < 5
            assert remote_id in fake.cancels
    finally:
        fake.hold = False


def test_progress_is_read_from_runpods_status_output(stack: Service, fake: FakeRunPod) -> None:
    """The IN_PROGRESS status' output (what the handler sent with progress_update) reaches the job when the
    handler's own reports do not; then a cancel ends it on RunPod."""
    fake.stall = {"progress": 0.4, "stage": "encoding"}
    try:
        with stack.client() as c:
            job = submit(c, "test_slow", {"seconds": 1, "marker": "runpodstall"})
            deadline = time.monotonic() + 30
            view = c.get(f"/v1/jobs/{job['id']}").json()
            while view["progress"] < 0.4 and time.monotonic() < deadline:
                time.sleep(0.2)
                view = c.get(f"/v1/jobs/{job['id']}").json()
            assert view["status"] == "running" and view["progress"] == 0.4 and view["stage"] == "encoding", view
            assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
            done = wait_job(c, job["id"], timeout=10)
            assert done["status"] == "cancelled", done
            assert view["notes"]["remote_id"] in fake.cancels
    finally:
        fake.stall = None


def test_a_job_that_dies_on_runpod_is_retried(stack: Service, fake: FakeRunPod) -> None:
    fake.fail_next = 1
    with stack.client() as c:
        job = submit(c, "test_slow", {"seconds": 0.5, "marker": "runpodretry"})
        done = wait_job(c, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["notes"]["last_worker_error"]["code"] == "remote_failed"
    assert "137" in done["notes"]["last_worker_error"]["message"]


def test_a_job_runpod_loses_is_retried(stack: Service, fake: FakeRunPod) -> None:
    fake.vanish_next = 1
    with stack.client() as c:
        job = submit(c, "test_slow", {"seconds": 0.5, "marker": "runpodvanish"})
        done = wait_job(c, job["id"], timeout=90)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2 and done["notes"]["backend"] == "runpod"
    assert done["notes"]["last_worker_error"]["code"] == "remote_lost"


def test_the_image_entry_point_in_runpods_test_mode_runs_an_envelope(stack: Service, fake: FakeRunPod) -> None:
    pytest.importorskip("runpod")
    fake.test_mode = True
    try:
        with stack.client() as c:
            job = submit(c, "test_slow", {"seconds": 1, "marker": "runpodtestmode"})
            done = wait_job(c, job["id"], timeout=120)
        assert done["status"] == "succeeded", (done, fake.test_mode_logs[-1:])
        remote = fake.jobs[done["notes"]["remote_id"]]
        deadline = time.monotonic() + 60  # the job is reported before the worker process exits
        while remote["status"] != "COMPLETED" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        fake.test_mode = False
    log = fake.test_mode_logs[-1]
    assert "test_input set" in log and "'status': 'succeeded'" in log  # runpod's own runner ran our handler
    assert fake.jobs[done["notes"]["remote_id"]]["output"] == {"returncode": 0}


def test_a_long_render_on_runpod_is_split_into_as_many_calls_as_the_backend_runs_at_once(
        stack: Service, fake: FakeRunPod, tmp_path: Path) -> None:
    """docs/CHUNKED.md "On agents": the backend declares its 8 calls in flight as slots, so a 64 s render
    with no `chunks` forks on RunPod into 4 chunks (capped by the 15 s minimum) and the sound, each a RunPod
    call, and is joined by one more; the whole video comes back."""
    from tests.chunked_media import make_sources, timeline

    files = make_sources(tmp_path / "media")
    with stack.client() as c:
        ids = {}
        for name, path in files.items():
            with path.open("rb") as fh:
                ids[name] = str(c.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"])
        calls = len(fake.jobs)
        job = submit(c, "render", timeline(ids, total=64, fps=5, size="160x90"))
        done = wait_job(c, job["id"], timeout=300)
        assert done["status"] == "succeeded", done
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in done["notes"]["fork"]["children"]]
        (tmp_path / "joined.mp4").write_bytes(c.get(f"/v1/jobs/{job['id']}/outputs/render").content)
    assert done["result"]["data"]["chunks"] == 4 and len(children) == 5
    assert all(ch["status"] == "succeeded" and ch["notes"]["backend"] == "runpod" for ch in children), children
    assert len(fake.jobs) - calls == 7  # the fork, 4 chunks, the sound, the join: one call each
    probe = json.loads(subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries", "stream=codec_type,nb_read_frames,duration",
         "-of", "json", str(tmp_path / "joined.mp4")], check=True, capture_output=True, text=True).stdout)
    streams = {st["codec_type"]: st for st in probe["streams"]}
    assert int(streams["video"]["nb_read_frames"]) == 64 * 5
    assert float(streams["audio"]["duration"]) == pytest.approx(64, abs=0.05)


def test_the_handler_refuses_input_that_is_no_envelope() -> None:
    assert "envelope" in handler({"id": "x", "input": {"prompt": "hi"}})["error"]


def test_runpod_down_falls_back_to_local_and_says_why(tmp_path: Path) -> None:
    svc = runpod_service(tmp_path / "data", f"http://127.0.0.1:{free_port()}/v2")  # nothing listens there
    svc.start()
    try:
        with svc.client() as c:
            job = submit(c, "test_slow", {"seconds": 0.5, "marker": "runpoddown"})
            done = wait_job(c, job["id"], timeout=90)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1  # the refused hand-over did not spend an attempt
        why = done["notes"]["last_worker_error"]
        assert why["code"] == "backend_unavailable" and "RunPod" in why["message"]
        assert done["notes"]["backend"] == "local"  # it ran on the service's own slots
    finally:
        svc.stop()
