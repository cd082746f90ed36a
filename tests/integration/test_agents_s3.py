"""An agent with no storage credentials against a service on S3 storage (moto's server on loopback): its
job reads the uploaded input through a presigned GET straight from the bucket, its output goes with a
presigned PUT straight to a temporary key in the bucket (never through the API), and the service commits
it on finish (hashed, then copied by S3 itself)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from tests.integration.service import Service, moto_bucket
from tests.integration.test_agents import agent, ffprobe, submit, upload, wait_done

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str, str]]:
    with moto_bucket() as env:
        svc = Service(tmp_path_factory.mktemp("s3agents") / "data", **env,
                      REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["agent"], "gpu": ["agent"]}))
        svc.start()
        yield svc, env["REELFORGE_S3_ENDPOINT_URL"], env["REELFORGE_S3_BUCKET"]
        svc.stop()


def test_an_agent_reads_presigned_inputs_and_its_outputs_are_committed_to_the_bucket(
        s3_stack: tuple[Service, str, str], tmp_path: Path, make_video) -> None:
    svc, endpoint, bucket = s3_stack
    with svc.client() as c:
        video = upload(c, make_video(duration=1.0, size="320x240", fps=25))
        job = submit(c, "loop", {"input": video, "duration_s": 2.5, "mode": "forward"})
        with agent(svc, tmp_path, "box-s3") as box:
            assert not [k for k in box.env if "S3" in k or "AWS" in k]
            done = wait_done(c, job["id"], box, timeout=120)
        assert done["status"] == "succeeded", (done, box.output())
        out = done["result"]["outputs"]["video"]
        assert out["url"].startswith(endpoint) and "Signature" in out["url"]
        metrics = c.get("/metrics").text
    # the output's bytes went to the bucket, not through the API's upload route
    asked = [line for line in metrics.splitlines() if line.startswith("reelforge_http_requests_total")
             and "/output-urls/" in line and 'status="200"' in line]
    assert asked and not [line for line in metrics.splitlines() if line.startswith("reelforge_http_requests_total")
                          and "/outputs/{filename}" in line and 'method="PUT"' in line]
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"rf/{out['key']}" in keys
    assert not [k for k in keys if "agent-uploads" in k]  # the temporary upload was committed and removed
    local = tmp_path / "out.mp4"
    s3.download_file(bucket, f"rf/{out['key']}", str(local))
    assert abs(float(ffprobe(local)["format"]["duration"]) - 2.5) < 0.1
    assert local.stat().st_size == out["size"]
    assert hashlib.sha256(local.read_bytes()).hexdigest() == out["sha256"]  # what the service hashed on commit


def test_a_chunked_build_on_an_agent_moves_its_files_through_the_bucket_only(
        s3_stack: tuple[Service, str, str], tmp_path: Path, make_video) -> None:
    """docs/CHUNKED.md "On agents" on S3: the files the parent makes for its chunks go to the bucket with
    presigned PUTs (committed under its fork/ folder when it forks), the chunks read them and the join reads
    the chunks with presigned GETs; none of it passes through the API."""
    svc, endpoint, bucket = s3_stack
    script = " ".join(["The quick brown fox jumps over the lazy dog while the narrator talks on."] * 4)
    env = {"REELFORGE_CHUNK_THRESHOLD_S": "10", "REELFORGE_CHUNK_MIN_S": "5"}
    with svc.client() as c:
        background = upload(c, make_video(duration=2.0, size="192x108", fps=25))
        job = submit(c, "build", {"script": script, "voice": {"engine": "espeak"}, "backgrounds": [background],
                                  "size": "320x180", "fps": 10, "quality": "draft", "chunks": 2})
        with agent(svc, tmp_path, "box-s3-chunks", env=env) as box:
            done = wait_done(c, job["id"], box, timeout=300)
        assert done["status"] == "succeeded", (done, box.output())
        children = [c.get(f"/v1/jobs/{cid}").json() for cid in done["notes"]["fork"]["children"]]
        metrics = c.get("/metrics").text
    assert done["result"]["data"]["chunks"] == 2 and len(children) == 3
    assert all(ch["status"] == "succeeded" and ch["notes"]["backend"] == "agent" for ch in children)
    fork_keys = {meta["key"] for meta in done["notes"]["fork"]["outputs"].values()}
    assert {k.rsplit("/", 1)[-1].split(".")[0] for k in fork_keys} == {"narration", "background", "ass", "srt"}
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]}
    assert {f"rf/{k}" for k in fork_keys} <= keys and all(f"/jobs/{done['id']}/fork/" in f"/{k}" for k in fork_keys)
    through_api = [line for line in metrics.splitlines() if line.startswith("reelforge_http_requests_total")
                   and ("/outputs/{filename}" in line or "/refs/" in line or "/files/{file_id}" in line)]
    assert not through_api, through_api
    video = tmp_path / "built.mp4"
    s3.download_file(bucket, f"rf/{done['result']['outputs']['video']['key']}", str(video))
    streams = {s["codec_type"]: s for s in ffprobe(video)["streams"]}
    assert sorted(streams) == ["audio", "video"]
    assert abs(float(ffprobe(video)["format"]["duration"]) - done["result"]["data"]["duration_s"]) < 0.15
