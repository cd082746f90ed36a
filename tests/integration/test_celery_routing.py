"""Op routing for real: API + Celery workers on Redis, jobs in PostgreSQL; which worker gets which job.

A worker consuming only the `gpu` queue must receive overlay (engine rvm) and transcribe, and never a
cpu job; a queue named only in `op_routes` (`gpu-24g`) is a real Celery queue a worker can consume.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.pg import temp_database
from tests.integration.service import Service, wait_job
from tests.integration.test_celery_postgres import upload, worker

pytestmark = pytest.mark.services
REDIS_DB = 13  # test_celery_postgres uses 11
ROUTES = {"subtitles": "gpu-24g", "overlay.shape=rect": "cpu"}
SPEECH = "The weather is lovely today. We are going to the beach this afternoon."


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    with temp_database() as db_url:
        svc = Service(tmp_path_factory.mktemp("routing") / "data", REELFORGE_EXECUTOR="celery",
                      REELFORGE_DATABASE_URL=db_url, REELFORGE_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
                      REELFORGE_OP_ROUTES=json.dumps(ROUTES), REELFORGE_WHISPER_MODEL="packaged:tiny.en",
                      REELFORGE_DEVICE="cpu")
        svc.start()
        yield svc
        svc.stop()
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


def speech_wav(tmp_path: Path) -> Path:
    out = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(out), "--stdin"], input=SPEECH.encode(),
                   check=True)
    return out


def submit(c: httpx.Client, op: str, params: dict) -> dict:
    resp = c.post("/v1/jobs", json={"op": op, "params": params})
    assert resp.status_code == 202, resp.text
    return resp.json()


def test_ops_list_resources_and_routed_queues(stack: Service):
    with stack.client() as c:
        ops = {o["name"]: o for o in c.get("/v1/ops").json()["ops"]}
        schema = c.get("/openapi.json").json()
    assert ops["transcribe"]["queue"] == "gpu"
    assert ops["transcribe"]["resources"] == {"gpu": "preferred", "vram_gb": 2.0, "nvenc": False, "cpu_only": False}
    assert ops["probe"]["queue"] == "cpu" and ops["probe"]["resources"]["cpu_only"] is True
    # overlay: mediapipe (the default) on cpu, rvm on gpu; the operator's condition shows as a variant too
    overlay = ops["overlay"]
    assert overlay["queue"] == "cpu" and overlay["resources"]["gpu"] == "none" and overlay["resources"]["nvenc"]
    variants = {json.dumps(v["when"], sort_keys=True): v for v in overlay["variants"]}
    assert variants['{"engine": "rvm"}']["queue"] == "gpu"
    assert variants['{"engine": "rvm"}']["resources"]["gpu"] == "preferred"
    assert variants['{"shape": "rect"}']["queue"] == "cpu"
    # encodes run where x264 runs: the cpu queue (see engine/routing.py)
    assert ops["render"]["queue"] == "cpu" and ops["render"]["resources"]["nvenc"] is True
    assert ops["build"]["queue"] == "cpu"
    assert {json.dumps(v["when"]): v["queue"] for v in ops["build"]["variants"]} == {'{"head.engine": "rvm"}': "gpu"}
    # the configured override moved subtitles off its default queue
    assert ops["subtitles"]["queue"] == "gpu-24g" and ops["subtitles"]["resources"]["cpu_only"] is True
    listed = schema["paths"]["/v1/ops"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert listed == {"$ref": "#/components/schemas/OpList"}
    assert set(schema["components"]["schemas"]["Resources"]["properties"]) >= {"gpu", "vram_gb", "nvenc"}


def test_gpu_worker_takes_overlay_rvm_and_transcribe_but_not_cpu_jobs(stack: Service, make_video, tmp_path):
    with stack.client() as c:
        video = upload(c, make_video(duration=1.0, size="320x240", fps=10, audio=False))
        speech = upload(c, speech_wav(tmp_path))
        cpu_job = submit(c, "probe", {"input": video})
        rect = submit(c, "overlay", {"input": video, "engine": "rvm", "shape": "rect"})  # routed to cpu
        rvm = submit(c, "overlay", {"input": video, "engine": "rvm", "shape": "circle"})
        asr = submit(c, "transcribe", {"input": speech, "language": "en"})
        assert (cpu_job["queue"], rect["queue"], rvm["queue"], asr["queue"]) == ("cpu", "cpu", "gpu", "gpu")

        with worker(stack, queues="gpu"):
            done_rvm = wait_job(c, rvm["id"], timeout=240)
            done_asr = wait_job(c, asr["id"], timeout=240)
            time.sleep(2)  # a gpu-only worker that took a cpu job would have claimed it by now
            assert c.get(f"/v1/jobs/{cpu_job['id']}").json()["status"] == "queued"
            assert c.get(f"/v1/jobs/{rect['id']}").json()["status"] == "queued"

        assert done_rvm["status"] == "succeeded", done_rvm
        data = done_rvm["result"]["data"]
        assert data["engine"] == "rvm" and data["frames"] == 10
        assert done_rvm["result"]["outputs"]["overlay"]["size"] > 0
        assert done_asr["status"] == "succeeded", done_asr
        assert "beach" in done_asr["result"]["data"]["text"].lower()

        with worker(stack, queues="cpu"):  # the cpu jobs were waiting on the broker, not lost
            assert wait_job(c, cpu_job["id"], timeout=120)["status"] == "succeeded"
            assert wait_job(c, rect["id"], timeout=240)["status"] == "succeeded"


def test_a_queue_named_only_in_op_routes_is_consumable(stack: Service):
    words = [{"text": "Hello", "start": 0.0, "end": 0.4}, {"text": "world", "start": 0.45, "end": 0.9}]
    with stack.client() as c:
        job = submit(c, "subtitles", {"words": words})
        assert job["queue"] == "gpu-24g"
        with worker(stack, queues="gpu-24g"):
            done = wait_job(c, job["id"], timeout=120)
    assert done["status"] == "succeeded", done
    assert done["result"]["data"]["words"] == 2
