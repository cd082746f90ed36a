"""The embedded service end to end over real HTTP: uvicorn + SQLite + local executor + job hosts + ffmpeg."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest

from reelforge.jobs.webhooks import verify
from tests.integration.service import Service, parent_pid, pids_with, wait_job


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    svc = Service(tmp_path_factory.mktemp("svc") / "data", REELFORGE_FETCH_ALLOW_PRIVATE="true").start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def client(service: Service):
    with service.client() as c:
        yield c


def upload(client: httpx.Client, path: Path) -> str:
    with path.open("rb") as fh:
        resp = client.post("/v1/files", params={"filename": path.name}, content=fh)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_health_reports_every_part(client):
    body = client.get("/health").json()
    assert body["status"] == "ok", body
    assert set(body["checks"]) == {"store", "storage", "executor", "ffmpeg"}


def test_probe_end_to_end_via_upload(client, make_video):
    file_id = upload(client, make_video(duration=2.0, size="320x240", fps=25))
    resp = client.post("/v1/jobs", json={"op": "probe", "params": {"input": file_id}})
    assert resp.status_code == 202, resp.text
    job = wait_job(client, resp.json()["id"])
    assert job["status"] == "succeeded", job
    assert abs(job["result"]["data"]["duration_s"] - 2.0) < 0.1
    out = job["result"]["outputs"]["probe"]
    got = client.get(out["url"].removeprefix(str(client.base_url).rstrip("/")))
    assert got.status_code == 200
    assert json.loads(got.content)["streams"][0]["width"] == 320
    assert job["progress"] == 1.0 and job["attempts"] == 1


def test_probe_from_url_on_loopback_when_private_allowed(client, make_video, tmp_path):
    video = make_video(duration=1.0, name="served.mp4")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = video.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{srv.server_port}/clip.mp4"
        job = wait_job(client, client.post("/v1/jobs", json={"op": "probe", "params": {"input": url}}).json()["id"])
        assert job["status"] == "succeeded", job
        assert job["result"]["data"]["streams"][0]["codec"] == "h264"
    finally:
        srv.shutdown()


def test_bad_requests_get_clear_4xx(client, tmp_path):
    r = client.post("/v1/jobs", json={"op": "nope", "params": {}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_op"
    assert "probe" in r.json()["error"]["message"]
    r = client.post("/v1/jobs", json={"op": "probe", "params": {"input": 5, "extra": 1}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_params"
    paths = {d["path"] for d in r.json()["error"]["details"]}
    assert {"params.input", "params.extra"} <= paths
    r = client.post("/v1/jobs", json={"op": "probe", "params": {"input": "/etc/passwd"}})
    assert r.status_code == 422
    r = client.post("/v1/jobs", json={"op": "probe", "params": {"input": "file_" + "0" * 32}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "input_not_found"
    r = client.post("/v1/jobs", content=b"{" + b" " * 2_000_000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"
    r = client.post("/v1/jobs", content=b"not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.get("/v1/jobs/job_doesnotexist")
    assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
    r = client.post("/v1/jobs", json={"op": "probe", "params": {"input": "ftp://example.com/x.mp4"}})
    assert r.status_code == 422


def test_non_media_input_fails_job_with_code(client, tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("definitely not a video")
    job = wait_job(client, client.post("/v1/jobs", json={"op": "probe", "params": {"input": upload(client, txt)}}
                                       ).json()["id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "not_media"
    assert "not a readable media file" in job["error"]["message"]


def test_retry_a_failed_job_runs_it_again_as_a_new_job(client, service: Service, tmp_path):
    txt = tmp_path / "retry.txt"
    txt.write_text("still not a video")
    failed = wait_job(client, client.post("/v1/jobs", json={"op": "probe", "params": {"input": upload(client, txt)}}
                                          ).json()["id"])
    assert failed["status"] == "failed"
    r = client.post(f"/v1/jobs/{failed['id']}/retry")
    assert r.status_code == 202, r.text
    retried = r.json()
    assert retried["id"] != failed["id"] and retried["notes"]["retry_of"] == failed["id"]
    assert client.post(f"/v1/jobs/{failed['id']}/retry").json()["id"] == retried["id"]
    by_cli = service.cli("retry", failed["id"])  # the CLI is an HTTP client of the same route
    assert by_cli.returncode == 0, by_cli.stderr
    assert json.loads(by_cli.stdout)["id"] == retried["id"]
    done = wait_job(client, retried["id"])
    assert done["status"] == "failed" and done["error"]["code"] == "not_media" and done["attempts"] == 1
    queued = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 30}}).json()
    r = client.post(f"/v1/jobs/{queued['id']}/retry")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_retryable"
    client.post(f"/v1/jobs/{queued['id']}/cancel")
    assert client.post("/v1/jobs/job_doesnotexist/retry").status_code == 404


def test_idempotency_key_returns_the_same_job(client, make_video):
    file_id = upload(client, make_video(duration=1.0, name="idem.mp4"))
    body = {"op": "probe", "params": {"input": file_id}, "idempotency_key": f"k-{uuid.uuid4()}"}
    a, b = client.post("/v1/jobs", json=body).json(), client.post("/v1/jobs", json=body).json()
    assert a["id"] == b["id"]
    body["params"] = {"input": upload(client, make_video(duration=1.0, name="idem2.mp4"))}
    assert client.post("/v1/jobs", json=body).status_code == 409


def test_cancel_kills_ffmpeg_within_two_seconds_and_leaves_no_outputs(client):
    marker = f"cancel{uuid.uuid4().hex[:8]}"
    job = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 60, "marker": marker}}).json()
    wait_job(client, job["id"], until={"running"})
    deadline = time.monotonic() + 20
    while not pids_with(f"comment={marker}") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pids_with(f"comment={marker}"), "ffmpeg never started"
    t0 = time.monotonic()
    assert client.post(f"/v1/jobs/{job['id']}/cancel").status_code == 200
    done = wait_job(client, job["id"], timeout=10)
    while pids_with(f"comment={marker}") and time.monotonic() - t0 < 5:
        time.sleep(0.05)
    elapsed = time.monotonic() - t0
    assert done["status"] == "cancelled"
    assert not pids_with(f"comment={marker}"), "ffmpeg survived the cancel"
    assert elapsed < 2.5, elapsed
    assert done["result"] is None


def test_killed_worker_process_is_retried_and_succeeds(client):
    marker = f"kill{uuid.uuid4().hex[:8]}"
    job = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 3, "marker": marker}}).json()
    deadline = time.monotonic() + 30
    while not pids_with(f"comment={marker}") and time.monotonic() < deadline:
        time.sleep(0.05)
    ffmpeg_pid = pids_with(f"comment={marker}")[0]
    host_pid = parent_pid(ffmpeg_pid)
    os.killpg(host_pid, signal.SIGKILL)  # the job host and its ffmpeg die mid-job, as with an OOM kill
    done = wait_job(client, job["id"], timeout=60)
    assert done["status"] == "succeeded", done
    assert done["attempts"] == 2
    assert done["notes"]["last_worker_error"]["code"] == "worker_lost"


def test_timeout_marks_job_timed_out(client):
    marker = f"timeout{uuid.uuid4().hex[:8]}"
    job = client.post("/v1/jobs", json={"op": "test_slow", "timeout_s": 1.5,
                                        "params": {"seconds": 30, "marker": marker}}).json()
    done = wait_job(client, job["id"], timeout=30)
    assert done["status"] == "timed_out"
    assert done["error"]["code"] == "timed_out"
    time.sleep(0.5)
    assert not pids_with(f"comment={marker}")


def test_events_stream_progress_until_done(client):
    job = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 2}}).json()
    events = []
    with client.stream("GET", f"/v1/jobs/{job['id']}/events", timeout=60) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        for line in resp.iter_lines():
            if line.startswith("event:"):
                events.append(line.split(":", 1)[1].strip())
    assert events[-1] == "done"
    assert "progress" in events


def test_list_and_filter(client):
    r = client.get("/v1/jobs", params={"status": "succeeded", "limit": 2})
    assert r.status_code == 200
    jobs = r.json()["jobs"]
    assert jobs and all(j["status"] == "succeeded" for j in jobs)
    assert client.get("/v1/jobs", params={"status": "bogus"}).status_code == 422


def test_metrics_expose_job_states(client):
    text = client.get("/metrics").text
    assert "reelforge_jobs{" in text and "reelforge_queue_depth" in text
    assert "reelforge_job_duration_seconds_bucket" in text


def test_webhook_events_are_signed(client, service: Service):
    received: list[tuple[dict[str, str], bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        job = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 1},
                                            "webhook_url": f"http://127.0.0.1:{srv.server_port}/hook"}).json()
        wait_job(client, job["id"])
        deadline = time.monotonic() + 10
        while not any(json.loads(b)["type"] == "job.succeeded" for _, b in received) and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        srv.shutdown()
    secret = (service.data_dir / "webhook_secret").read_text().strip()
    types = [json.loads(b)["type"] for _, b in received]
    assert types[0] == "job.running" and types[-1] == "job.succeeded"
    for headers, body in received:
        lower = {k.lower(): v for k, v in headers.items()}
        assert verify(secret, lower["x-reelforge-timestamp"], body, lower["x-reelforge-signature"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the attempt is recorded just after the receiver answers
        shown = client.get(f"/v1/jobs/{job['id']}").json()["webhook_attempts"]
        if any(a["event"] == "job.succeeded" and a["status_code"] == 200 for a in shown):
            break
        time.sleep(0.1)
    else:
        raise AssertionError(f"terminal delivery not recorded: {shown}")


def test_pipeline_graph_errors_name_the_field(client):
    steps = [{"id": "a", "op": "probe", "params": {"input": {"ref": "b.probe"}}},
             {"id": "b", "op": "probe", "params": {"input": {"ref": "a.probe"}}}]
    r = client.post("/v1/jobs", json={"op": "pipeline", "params": {"steps": steps}})
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["code"] == "cyclic_ref" and "a -> b -> a" in err["message"]
    assert err["details"][0]["path"] == "params.steps[0].params.input"


def test_discovery_lists_ops_and_voices(client):
    ops = {o["name"]: o for o in client.get("/v1/ops").json()["ops"]}
    assert {"probe", "tts", "transcribe", "img2vid", "loop", "overlay", "build", "render"} <= set(ops)
    assert ops["probe"]["params_schema"]["properties"]["input"]
    voices = client.get("/v1/voices").json()["voices"]
    engines = {v["engine"] for v in voices}
    assert {"piper", "espeak"} <= engines, voices[:3]
