"""The service with S3-compatible storage (moto's server on loopback): uploads, outputs and s3:// inputs."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import httpx
import pytest

from tests.integration.service import Service, moto_bucket, wait_job

moto_server = pytest.importorskip("moto.server")


@pytest.fixture(scope="module")
def s3_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str, str]]:
    with moto_bucket() as env:
        svc = Service(tmp_path_factory.mktemp("s3svc") / "data", **env)
        svc.start()
        yield svc, env["REELFORGE_S3_ENDPOINT_URL"], env["REELFORGE_S3_BUCKET"]
        svc.stop()


def test_outputs_land_in_the_bucket_with_presigned_urls(s3_service, make_video):
    svc, endpoint, bucket = s3_service
    with svc.client() as c:
        with make_video(duration=1.0).open("rb") as fh:
            fid = c.post("/v1/files", params={"filename": "in.mp4"}, content=fh).json()["id"]
        job = wait_job(c, c.post("/v1/jobs", json={"op": "probe", "params": {"input": fid}}).json()["id"])
        assert job["status"] == "succeeded", job
        out = job["result"]["outputs"]["probe"]
        assert out["key"].startswith("jobs/")
        assert out["url"].startswith(endpoint) and "Signature" in out["url"]
        body = httpx.get(out["url"]).json()  # the presigned URL works without our API
        assert body["streams"][0]["codec"] == "h264"
        redirect = c.get(f"/v1/jobs/{job['id']}/outputs/probe")
        assert redirect.status_code == 307
    keys = [o["Key"] for o in boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                           aws_access_key_id="testing", aws_secret_access_key="testing")
            .list_objects_v2(Bucket=bucket)["Contents"]]
    assert f"rf/{out['key']}" in keys
    assert not any(".partial" in k or "tmp" in k.split("/")[-1] for k in keys)


def test_s3_key_inputs_in_the_configured_bucket(s3_service, make_video):
    svc, endpoint, bucket = s3_service
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.upload_file(str(make_video(duration=1.5, name="src.mp4")), bucket, "incoming/src.mp4")
    with svc.client() as c:
        ok = wait_job(c, c.post("/v1/jobs", json={"op": "probe",
                                                  "params": {"input": f"s3://{bucket}/incoming/src.mp4"}}).json()["id"])
        # another bucket cannot be read with the service's credentials: refused at submit, not at run time
        other = c.post("/v1/jobs", json={"op": "probe", "params": {"input": "s3://someone-else/x.mp4"}})
    assert ok["status"] == "succeeded" and abs(ok["result"]["data"]["duration_s"] - 1.5) < 0.1
    assert other.status_code == 422, other.text
    err = other.json()["error"]
    assert err["code"] == "invalid_params" and err["details"][0]["path"] == "params.input"
    assert "someone-else" in err["details"][0]["message"] and bucket in err["details"][0]["message"]
