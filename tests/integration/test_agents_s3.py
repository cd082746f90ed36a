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
