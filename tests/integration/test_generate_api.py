"""`generate` through the real service on CPU: tiny random-weight SVD, LTX, Wan and CogVideoX
pipelines saved to folders.

One job host (WORKERS=1) so warmth is observable: the first job loads, the second has no loading_model
stage, a cancel mid-denoise keeps the host (and its warm model). GENERATE_VRAM_GB=2 is the declared budget,
so a 512x512x25 request is refused before anything loads. One torch thread per job: tiny models on a busy
2-core machine run many times faster on one (models/generate_pipe.py).
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("diffusers")

from reelforge.media.ffmpeg import ffprobe_bin
from tests.integration.service import Service, wait_job

SMALL = {"frames": 3, "fps": 6, "width": 64, "height": 64, "steps": 2, "guidance": 1.0, "seed": 5}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from reelforge.models.generate_tiny import TINY

    root = tmp_path_factory.mktemp("gen-models")
    return {family: save(root / f"tiny-{family}") for family, save in TINY.items()}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path]):
    configured = {f"tiny-{family}": {"folder": str(folder), "family": family} for family, folder in models.items()}
    svc = Service(tmp_path_factory.mktemp("gen-svc") / "data", REELFORGE_WORKERS="1",
                  REELFORGE_GENERATE_MODELS=json.dumps(configured), REELFORGE_GENERATE_VRAM_GB="2",
                  REELFORGE_DEVICE="cpu", REELFORGE_THREADS_PER_JOB="1").start()
    try:
        with svc.client() as c:
            yield c
    finally:
        svc.stop()


@pytest.fixture(scope="module")
def image_id(client: httpx.Client, tmp_path_factory: pytest.TempPathFactory) -> str:
    img = tmp_path_factory.mktemp("gen-img") / "first.png"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=s=320x180", "-frames:v", "1", str(img)],
                   check=True)
    resp = client.post("/v1/files", params={"filename": img.name}, content=img.read_bytes())
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def submit(client: httpx.Client, **params: object) -> str:
    resp = client.post("/v1/jobs", json={"op": "generate", "params": params})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def stages(job: dict) -> list[str]:
    return [s[0] for s in job["notes"].get("stages", [])]


def probe_video(client: httpx.Client, job: dict, tmp: Path) -> dict:
    url = job["result"]["outputs"]["video"]["url"]
    out = tmp / f"{job['id']}.mp4"
    out.write_bytes(client.get(url.removeprefix(str(client.base_url).rstrip("/"))).content)
    res = subprocess.run([ffprobe_bin(), "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,r_frame_rate,nb_read_frames", "-of", "json", str(out)],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout)["streams"][0]


def test_first_job_loads_reports_every_step_and_makes_the_requested_mp4(client, image_id, tmp_path):
    job = wait_job(client, submit(client, image=image_id, model="tiny-svd", **SMALL), timeout=240)
    assert job["status"] == "succeeded", job
    seen = stages(job)
    assert seen[:3] == ["fetching", "loading_model", "preparing_image"], seen
    assert seen[3:] == ["denoising 1/2", "denoising 2/2", "decoding", "encoding"], seen
    stream = probe_video(client, job, tmp_path)
    assert (stream["width"], stream["height"], stream["r_frame_rate"], int(stream["nb_read_frames"])) == \
        (64, 64, "6/1", 3)
    data = job["result"]["data"]
    assert data["device"] == "cpu" and data["offload"] == "none" and data["warm"] is False
    assert job["notes"]["generate_note"].startswith("running on CPU: slow")


def test_second_job_is_warm_and_the_same_seed_gives_the_same_frames(client, image_id):
    first = client.get("/v1/jobs", params={"op": "generate", "status": "succeeded"}).json()
    first = next(j for j in (first["jobs"] if isinstance(first, dict) else first)
                 if j["params"].get("model") == "tiny-svd")
    again = wait_job(client, submit(client, image=image_id, model="tiny-svd", **SMALL), timeout=120)
    assert again["status"] == "succeeded", again
    assert "loading_model" not in stages(again), stages(again)
    assert again["result"]["data"]["warm"] is True
    assert again["result"]["data"]["frames_sha256"] == first["result"]["data"]["frames_sha256"]
    other = wait_job(client, submit(client, image=image_id, model="tiny-svd", **{**SMALL, "seed": 6}), timeout=120)
    assert other["status"] == "succeeded", other
    assert other["result"]["data"]["frames_sha256"] != first["result"]["data"]["frames_sha256"]


def test_cancel_mid_denoise_ends_cancelled_within_two_seconds_and_keeps_the_model_warm(client, image_id):
    job_id = submit(client, image=image_id, model="tiny-svd", **{**SMALL, "steps": 150})
    running = wait_job(client, job_id, timeout=120, until={"running"})
    deadline = time.monotonic() + 60
    while not (running.get("stage") or "").startswith("denoising ") and time.monotonic() < deadline:
        time.sleep(0.05)
        running = client.get(f"/v1/jobs/{job_id}").json()
    assert (running.get("stage") or "").startswith("denoising "), running
    asked = time.monotonic()
    assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
    done = wait_job(client, job_id, timeout=10)
    took = time.monotonic() - asked
    assert done["status"] == "cancelled", done
    assert took < 2.0, f"cancel took {took:.2f} s"
    after = wait_job(client, submit(client, image=image_id, model="tiny-svd", **SMALL), timeout=120)
    assert after["status"] == "succeeded" and "loading_model" not in stages(after), stages(after)


def test_ltx_with_a_prompt_then_interpolated_and_upscaled_by_ffmpeg(client, image_id, tmp_path):
    job = wait_job(client, submit(client, image=image_id, model="tiny-ltx", prompt="a red bird flies",
                                  negative_prompt="blue", output_fps=12, output_size="128x96",
                                  **{**SMALL, "frames": 5, "guidance": 3.0}), timeout=240)
    assert job["status"] == "succeeded", job
    data = job["result"]["data"]
    assert data["generated_frames"] == 9 and data["frames"] == 5  # LTX makes 8k+1 frames; the first 5 are kept
    stream = probe_video(client, job, tmp_path)
    assert (stream["width"], stream["height"], stream["r_frame_rate"]) == (128, 96, "12/1")
    assert 9 <= int(stream["nb_read_frames"]) <= 10  # 5 frames at 6 fps blended up to 12 fps


def test_wan_with_a_prompt_makes_the_requested_clip(client, image_id, tmp_path):
    job = wait_job(client, submit(client, image=image_id, model="tiny-wan", prompt="a dog walks", fit="contain",
                                  **{**SMALL, "frames": 5, "guidance": 3.0}), timeout=240)
    assert job["status"] == "succeeded", job
    assert job["result"]["data"]["generated_frames"] == 5  # 4k+1
    stream = probe_video(client, job, tmp_path)
    assert (stream["width"], stream["height"], stream["r_frame_rate"], int(stream["nb_read_frames"])) == \
        (64, 64, "6/1", 5)


def test_cogvideox_keeps_the_requested_frames_of_its_8k_plus_1(client, image_id, tmp_path):
    job = wait_job(client, submit(client, image=image_id, model="tiny-cogvideox", prompt="the sea", **SMALL),
                   timeout=240)
    assert job["status"] == "succeeded", job
    assert job["result"]["data"]["generated_frames"] == 9 and job["result"]["data"]["frames"] == 3
    stream = probe_video(client, job, tmp_path)
    assert (stream["width"], stream["height"], int(stream["nb_read_frames"])) == (64, 64, 3)


def test_too_large_for_the_declared_memory_and_unknown_model_are_clear_errors(client, image_id):
    big = wait_job(client, submit(client, image=image_id, model="tiny-svd",
                                  **{**SMALL, "width": 512, "height": 512, "frames": 25}), timeout=60)
    assert big["status"] == "failed", big
    assert big["error"]["code"] == "generate_too_large", big["error"]
    assert "2.0 GB declared (GENERATE_VRAM_GB)" in big["error"]["message"], big["error"]
    assert "loading_model" not in stages(big)
    missing = wait_job(client, submit(client, image=image_id, model="nope", **SMALL), timeout=60)
    assert missing["status"] == "failed" and missing["error"]["code"] == "model_not_configured", missing
    assert "tiny-cogvideox, tiny-ltx, tiny-svd, tiny-wan" in missing["error"]["message"]
