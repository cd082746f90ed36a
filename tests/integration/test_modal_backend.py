"""The `modal` backend for real: `reelforge serve` spawns the Modal function of engine/modal_app.py through a
fake of Modal's client (tests/fakes/modal_sdk.py), whose calls run the function's own body with Modal's
`.local()` in a separate process holding no credentials, reporting to the service with the job token.
A Modal that is unreachable -> the job runs on the service's own slots and says why (seed 003's fallback).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.service import Service, wait_job

pytest.importorskip("modal")


def modal_service(tmp: Path, **env: Any) -> Service:
    (tmp / "modal").mkdir(parents=True, exist_ok=True)
    return Service(tmp / "data", REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["modal", "local"]}),
                   REELFORGE_MODAL_APP="reelforge-test",
                   REELFORGE_PLUGINS="tests.plugins.slow_ops,tests.fakes.modal_sdk",
                   FAKE_MODAL_DIR=str(tmp / "modal"), **env)


def submit(c: httpx.Client, params: dict[str, Any]) -> dict[str, Any]:
    resp = c.post("/v1/jobs", json={"op": "test_slow", "params": params})
    assert resp.status_code == 202, resp.text
    return dict(resp.json())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("modal-stack")
    svc = modal_service(tmp)
    svc.start()
    yield svc, tmp
    svc.stop()


def test_a_job_runs_as_a_modal_call(stack, tmp_path: Path) -> None:
    svc, _ = stack
    with svc.client() as c:
        job = submit(c, {"seconds": 1, "marker": "modalok"})
        done = wait_job(c, job["id"], timeout=90)
        assert done["status"] == "succeeded", done
        assert done["notes"]["backend"] == "modal" and done["notes"]["remote_id"].startswith("fc-")
        assert done["notes"]["modal_app"] == "reelforge-test"
        resp = c.get(f"/v1/jobs/{job['id']}/outputs/video")
        assert resp.status_code == 200
    (tmp_path / "v.mp4").write_bytes(resp.content)
    info = json.loads(subprocess.run(["ffprobe", "-v", "error", "-show_format", "-of", "json", str(tmp_path / "v.mp4")],
                                     check=True, capture_output=True, text=True).stdout)
    assert float(info["format"]["duration"]) == pytest.approx(1.0, abs=0.15)
    assert "agt_modal" in svc.cli("agents", "token", "list").stdout


def wait_running(c: httpx.Client, job_id: str, *, progress: bool) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        state = dict(c.get(f"/v1/jobs/{job_id}").json())
        if state["status"] == "running" and "remote_id" in state["notes"] and (
                not progress or state.get("progress", 0) > 0):
            return state
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not start on Modal")


def test_a_cancel_stops_a_running_modal_call(stack) -> None:
    svc, _ = stack
    with svc.client() as c:
        job = submit(c, {"seconds": 30, "marker": "modalcancel"})
        wait_running(c, job["id"], progress=True)  # the call's handler is reporting progress
        started = time.monotonic()
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
        done = wait_job(c, job["id"], timeout=10)
        assert done["status"] == "cancelled", done
        assert time.monotonic() - started < 5


def test_a_cancel_reaches_a_call_modal_still_queues(stack) -> None:
    svc, tmp = stack
    with svc.client() as c:
        job = submit(c, {"seconds": 1, "marker": "heldcall"})
        remote_id = wait_running(c, job["id"], progress=False)["notes"]["remote_id"]
        started = time.monotonic()
        assert c.post(f"/v1/jobs/{job['id']}/cancel").status_code in (200, 202)
        done = wait_job(c, job["id"], timeout=10)
        assert done["status"] == "cancelled", done
        assert time.monotonic() - started < 5
    assert (tmp / "modal" / f"cancelled-{remote_id}").exists()  # Modal's cancel() was called on the call


def test_modal_down_falls_back_to_local_and_says_why(tmp_path: Path) -> None:
    svc = modal_service(tmp_path, FAKE_MODAL_DOWN="1")
    svc.start()
    try:
        with svc.client() as c:
            done = wait_job(c, submit(c, {"seconds": 0.5, "marker": "modaldown"})["id"], timeout=90)
        assert done["status"] == "succeeded", done
        assert done["attempts"] == 1  # the refused hand-over did not spend an attempt
        why = done["notes"]["last_worker_error"]
        assert why["code"] == "backend_unavailable" and "Modal" in why["message"]
        assert done["notes"]["backend"] == "local"
    finally:
        svc.stop()
