"""Batches against moto's S3 server: a prefix of 30 objects -> 30 jobs, outputs under the destination pattern,
results.json/csv; dry run; re-run skips; kill -9 mid-batch resumes; presets and a remote config merge by
priority; bad sources, configs and manifests are clear 4xx with nothing created."""

from __future__ import annotations

import csv
import http.server
import io
import itertools
import json
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest

from tests.conftest import ffmpeg
from tests.integration.service import CLI_OVERHEAD_S, Service, moto_bucket
from tests.webhook_receiver import webhook_receiver

moto_server = pytest.importorskip("moto.server")


def s3_client(env: dict[str, str]) -> Any:
    return boto3.client("s3", endpoint_url=env["REELFORGE_S3_ENDPOINT_URL"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("media") / "clip.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=10:duration=1", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", str(path))
    return path


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory, media: Path) -> Iterator[tuple[Service, dict[str, str]]]:
    with moto_bucket() as env:
        client = s3_client(env)
        bucket = env["REELFORGE_S3_BUCKET"]
        data = media.read_bytes()
        for i in range(30):
            client.put_object(Bucket=bucket, Key=f"input/c1/clip{i:02d}.mp4", Body=data)
        client.put_object(Bucket=bucket, Key="input/c1/notes.txt", Body=b"not media")
        svc = Service(tmp_path_factory.mktemp("batch") / "data", REELFORGE_FETCH_ALLOW_PRIVATE="true",
                      REELFORGE_WORKERS="3", **env)
        svc.start()
        yield svc, env
        svc.stop()


def wait_batch(c: httpx.Client, batch_id: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        batch = c.get(f"/v1/batches/{batch_id}").json()
        if batch["status"] in ("succeeded", "failed", "cancelled"):
            return batch
        time.sleep(0.3)
    raise AssertionError(f"batch {batch_id} did not end: {batch}")


def batch_jobs(c: httpx.Client, batch_id: str) -> list[dict[str, Any]]:
    jobs, before = [], None
    while True:
        page = c.get("/v1/jobs", params={"limit": 200, **({"before": before} if before else {})}).json()
        jobs += [j for j in page["jobs"] if j["notes"].get("batch_id") == batch_id]
        before = page["next_before"]
        if before is None:
            return jobs


def test_prefix_of_30_objects_dry_run_run_results_and_rerun(s3):
    with webhook_receiver() as hooks:
        run_prefix_of_30_objects(s3, hooks)


def run_prefix_of_30_objects(s3: tuple[Service, dict[str, str]], hooks: Any) -> None:
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    spec = {"webhook_url": hooks.url, "prefix": f"s3://{bucket}/input/c1", "op": "probe", "extensions": [".mp4"],
            "destination": f"s3://{bucket}/out/c1", "filename": "{stem}_{index}.{output}{out_ext}",
            "max_concurrent": 3, "name": "c1"}
    with svc.client() as c:
        jobs_before = len(c.get("/v1/jobs", params={"limit": 200}).json()["jobs"])
        plan = c.post("/v1/batches", json={**spec, "dry_run": True})
        assert plan.status_code == 200, plan.text
        plan = plan.json()
        assert plan["total"] == 30 and plan["jobs"] == 30 and plan["skipped"] == 0
        assert plan["items"][3]["job"] == {"op": "probe", "queue": "cpu",
                                           "params": {"input": f"s3://{bucket}/input/c1/clip03.mp4"}}
        assert plan["explain"]["params.input"] == "default" and plan["explain"]["op"] == "flags"
        assert len(c.get("/v1/jobs", params={"limit": 200}).json()["jobs"]) == jobs_before  # dry run: no job
        assert c.get("/v1/batches").json()["batches"] == []

        created = c.post("/v1/batches", json=spec)
        assert created.status_code == 202, created.text
        batch = wait_batch(c, created.json()["id"])
        assert batch["status"] == "succeeded", batch
        assert batch["counts"]["succeeded"] == 30 and batch["total"] == 30
        assert len(batch_jobs(c, batch["id"])) == 30

        keys = {o["Key"] for o in s3_client(env).list_objects_v2(Bucket=bucket, Prefix="out/c1/")["Contents"]}
        assert {f"out/c1/clip{i:02d}_{i}.probe.json" for i in range(30)} | {"out/c1/results.json",
                                                                            "out/c1/results.csv"} == keys
        probe = json.loads(s3_client(env).get_object(Bucket=bucket, Key="out/c1/clip07_7.probe.json")["Body"].read())
        assert probe["streams"][0]["codec"] == "h264"

        results = c.get(f"/v1/batches/{batch['id']}/results").json()
        assert results["status"] == "succeeded" and len(results["items"]) == 30
        first = results["items"][0]
        assert first["source"] == f"s3://{bucket}/input/c1/clip00.mp4" and first["status"] == "succeeded"
        assert first["outputs"] == {"probe": f"s3://{bucket}/out/c1/clip00_0.probe.json"}
        assert first["etag"] and first["size"] > 0 and first["seconds"] is not None
        rows = list(csv.DictReader(io.StringIO(c.get(f"/v1/batches/{batch['id']}/results",
                                                     params={"format": "csv"}).text)))
        assert len(rows) == 30 and {r["status"] for r in rows} == {"succeeded"}
        assert rows[5]["outputs"] == f"probe=s3://{bucket}/out/c1/clip05_5.probe.json"
        stored = json.loads(s3_client(env).get_object(Bucket=bucket, Key="out/c1/results.json")["Body"].read())
        assert stored["items"] == results["items"]
        assert batch["results"]["json_key"] == f"batches/{batch['id']}/results.json"
        event = hooks.wait_for("batch.succeeded")
        assert event["batch_id"] == batch["id"] and event["counts"]["succeeded"] == 30
        assert event["results"]["csv"].endswith(f"/v1/batches/{batch['id']}/results?format=csv")

        # the same batch again: every item was done, nothing runs
        again = c.post("/v1/batches", json=spec).json()
        again = wait_batch(c, again["id"])
        assert again["status"] == "succeeded" and again["counts"]["skipped"] == 30, again
        assert batch_jobs(c, again["id"]) == []
        # a new object under the prefix: only it runs
        body = s3_client(env).get_object(Bucket=bucket, Key="input/c1/clip00.mp4")["Body"].read()
        s3_client(env).put_object(Bucket=bucket, Key="input/c1/clip99.mp4", Body=body)
        third = wait_batch(c, c.post("/v1/batches", json=spec).json()["id"])
        assert third["counts"]["skipped"] == 30 and third["counts"]["succeeded"] == 1, third
        assert len(batch_jobs(c, third["id"])) == 1
        s3_client(env).delete_object(Bucket=bucket, Key="input/c1/clip99.mp4")

        # pause, resume, cancel: pending items never run
        other = {**spec, "filename": "{stem}.x.{output}{out_ext}", "max_concurrent": 1, "webhook_url": None}
        run = c.post("/v1/batches", json={k: v for k, v in other.items() if v is not None}).json()
        assert c.post(f"/v1/batches/{run['id']}/pause").json()["status"] == "paused"
        assert c.post(f"/v1/batches/{run['id']}/resume").json()["status"] == "running"
        assert c.post(f"/v1/batches/{run['id']}/cancel").json()["status"] in ("cancelling", "cancelled")
        run = wait_batch(c, run["id"])
        assert run["status"] == "cancelled" and run["counts"]["cancelled"] >= 27, run
        assert c.post(f"/v1/batches/{run['id']}/resume").status_code == 409


def test_manifest_params_and_bounded_retries(s3):
    svc, _env = s3
    manifest = "input,param.key,param.fail_times\nhttps://example.com/a,once,1\nhttps://example.com/b,always,5\n"
    with svc.client() as c:
        created = c.post("/v1/batches", json={"op": "test_flaky", "manifest": manifest, "max_retries": 1,
                                              "params": {"key": "{stem}"}})
        assert created.status_code == 202, created.text
        assert "params.input" not in created.json()["explain"]  # the op reads no input
        batch = wait_batch(c, created.json()["id"])
        assert batch["status"] == "failed" and batch["counts"]["succeeded"] == 1 and batch["counts"]["failed"] == 1
        items = c.get(f"/v1/batches/{batch['id']}/items").json()["items"]
        assert [(i["row"], i["status"], i["tries"]) for i in items] == [(2, "succeeded", 2), (3, "failed", 2)]
        assert items[1]["error"]["code"] == "processing_failed"
        assert len(batch_jobs(c, batch["id"])) == 4  # two tries each, no more
        rows = list(csv.DictReader(io.StringIO(c.get(f"/v1/batches/{batch['id']}/results",
                                                     params={"format": "csv"}).text)))
        assert [(r["row"], r["status"], r["error_code"]) for r in rows] == [("2", "succeeded", ""),
                                                                            ("3", "failed", "processing_failed")]


def test_cli_dry_run_and_explain(s3):
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    run = svc.cli("batch", "run", "--prefix", f"s3://{bucket}/input/c1", "--op", "probe", "--glob", "clip0*",
                  "--dry-run")
    assert run.returncode == 0, run.stderr
    assert "10 items" in run.stderr and "Nothing was" in run.stderr
    assert json.loads(run.stdout[run.stdout.index("{"):]) == {"total": 10, "jobs": 10, "skipped": 0}
    explain = svc.cli("batch", "run", "--prefix", f"s3://{bucket}/input/c1", "--op", "probe", "--explain")
    assert explain.returncode == 0, explain.stderr
    assert "max_concurrent" in explain.stdout and "default" in explain.stdout and "flags" in explain.stdout


def test_cli_run_wait_status_results_and_cancel(s3, tmp_path):
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    run = svc.cli("batch", "run", "--prefix", f"s3://{bucket}/input/c1", "--op", "probe", "--glob", "clip2*",
                  "--destination", f"s3://{bucket}/out/cli", "--max-concurrent", "3", "--wait")
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout[run.stdout.index("{"):])
    assert answer["status"] == "succeeded" and answer["counts"]["succeeded"] == 10, answer
    assert "10/10" in run.stderr and "done 10 failed 0" in run.stderr  # the progress bar's last state
    status = svc.cli("batch", "status", answer["id"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout[status.stdout.index("{"):])["counts"]["succeeded"] == 10
    out = tmp_path / "results.csv"
    got = svc.cli("batch", "results", answer["id"], "--format", "csv", "--output", str(out))
    assert got.returncode == 0, got.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["source"] for r in rows] == [f"s3://{bucket}/input/c1/clip{i}.mp4" for i in range(20, 30)]
    assert {r["status"] for r in rows} == {"succeeded"}
    assert rows[0]["outputs"] == f"probe=s3://{bucket}/out/cli/clip20.probe.json"
    results = json.loads(svc.cli("batch", "results", answer["id"]).stdout)
    assert len(results["items"]) == 10

    # a slow batch (one job at a time) cancelled from the CLI: the pending items never run
    slow = svc.cli("batch", "run", "--prefix", f"s3://{bucket}/input/c1", "--op", "probe", "--glob", "clip1*",
                   "--destination", f"s3://{bucket}/out/cli-cancel", "--max-concurrent", "1")
    assert slow.returncode == 0, slow.stderr
    batch_id = json.loads(slow.stdout[slow.stdout.index("{"):])["id"]
    cancelled = svc.cli("batch", "cancel", batch_id)
    assert cancelled.returncode == 0, cancelled.stderr
    with svc.client() as c:
        batch = wait_batch(c, batch_id)
    assert batch["status"] == "cancelled" and batch["counts"]["cancelled"] >= 8, batch
    assert svc.cli("batch", "cancel", "bat_nope").returncode == 4  # an API 4xx: the documented exit code


def test_cli_layers_file_remote_s3_config_dotenv_environment_and_flags(s3, tmp_path):
    """The CLI's own layers: a config file, a remote config at an s3:// key (named in .env), the .env file
    under the environment, and flags, merged default < file < remote < env < flags (--explain)."""
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    s3_client(env).put_object(Bucket=bucket, Key="configs/batch.json",
                              Body=json.dumps({"max_retries": 2, "priority": 7, "timeout_s": 200}).encode())
    spec = tmp_path / "batch.toml"
    spec.write_text('name = "from file"\nmax_retries = 1\npriority = 1\nmax_concurrent = 2\ntimeout_s = 100\n')
    dotenv = tmp_path / ".env"
    dotenv.write_text(f"REELFORGE_BATCH_MAX_RETRIES=3\nREELFORGE_BATCH_REMOTE_CONFIG=s3://{bucket}/configs/batch.json\n")
    run = subprocess.run([sys.executable, "-m", "reelforge.cli", "batch", "run", str(spec), "--prefix",
                          f"s3://{bucket}/input/c1", "--op", "probe", "--max-concurrent", "4", "--explain"],
                         env={**svc.env, "REELFORGE_URL": svc.url, "REELFORGE_ENV_FILE": str(dotenv),
                              "REELFORGE_BATCH_PRIORITY": "4", "COLUMNS": "300"},
                         capture_output=True, text=True, timeout=CLI_OVERHEAD_S)
    assert run.returncode == 0, run.stderr
    rows = {cells[0]: cells[1:] for line in run.stdout.splitlines()
            if len(cells := [c.strip() for c in re.split(r"[│┃|]", line) if c.strip()]) == 3}
    env_label = f"env (environment, {dotenv})"
    assert {"name", "timeout_s", "max_retries", "priority", "max_concurrent", "op"} <= set(rows), run.stdout
    assert rows["name"] == ["from file", f"config file {spec}"]
    assert rows["timeout_s"] == ["200.0", f"remote config s3://{bucket}/configs/batch.json"]
    assert rows["max_retries"] == ["3", env_label] and rows["priority"] == ["4", env_label]
    assert rows["max_concurrent"] == ["4", "flags"] and rows["op"] == ["probe", "flags"]
    assert f"default < config file {spec} < remote config s3://{bucket}/configs/batch.json < {env_label} < flags" \
        in " ".join(run.stderr.split())


def test_item_webhooks_report_every_job_and_then_the_batch(s3):
    """item_webhooks: every job reports to the batch's webhook too; max_concurrent 1 runs the jobs one after
    the other (the service has 3 job hosts), each with the batch's priority."""
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    with webhook_receiver() as hooks, svc.client() as c:
        created = c.post("/v1/batches", json={"prefix": f"s3://{bucket}/input/c1", "op": "probe",
                                              "glob": "clip0[012].mp4", "webhook_url": hooks.url,
                                              "item_webhooks": True, "max_concurrent": 1, "priority": 3,
                                              "destination": f"s3://{bucket}/out/hooks"})
        assert created.status_code == 202, created.text
        batch = wait_batch(c, created.json()["id"])
        assert batch["status"] == "succeeded" and batch["counts"]["succeeded"] == 3, batch
        hooks.wait_for("batch.succeeded")
        jobs = batch_jobs(c, batch["id"])
        assert len(jobs) == 3 and {j["priority"] for j in jobs} == {3}
        for job in jobs:
            assert hooks.wait_for("job.succeeded", job["id"])["op"] == "probe"
        assert [e["type"] for e in hooks.got].count("batch.succeeded") == 1
    runs = sorted((datetime.fromisoformat(j["started_at"]), datetime.fromisoformat(j["finished_at"])) for j in jobs)
    assert all(prev[1] <= nxt[0] for prev, nxt in itertools.pairwise(runs)), runs  # never two at once


def test_a_list_of_uploaded_file_ids(s3, media):
    """`inputs` may name the tenant's uploaded files: one job per file, results keyed by the file id; an id
    that is no upload of this service is refused before anything is created."""
    svc, _env = s3
    with svc.client() as c:
        ids = [c.post("/v1/files", params={"filename": f"up{i}.mp4"}, content=media.read_bytes()).json()["id"]
               for i in range(2)]
        before = len(c.get("/v1/batches").json()["batches"])
        bad = c.post("/v1/batches", json={"op": "probe", "inputs": [ids[0], "file_0123456789abcdef0123456789abcdef"]})
        assert 400 <= bad.status_code < 500 and "error" in bad.json(), bad.text
        assert len(c.get("/v1/batches").json()["batches"]) == before
        created = c.post("/v1/batches", json={"op": "probe", "inputs": ids})
        assert created.status_code == 202, created.text
        batch = wait_batch(c, created.json()["id"])
        assert batch["status"] == "succeeded" and batch["counts"]["succeeded"] == 2, batch
        items = c.get(f"/v1/batches/{batch['id']}/results").json()["items"]
        assert [i["source"] for i in items] == ids
        for job in batch_jobs(c, batch["id"]):
            assert job["params"]["input"] in ids
            assert job["result"]["data"]["streams"][0]["width"] == 320


def test_dry_run_estimates_rented_capacity_from_the_ledger(tmp_path):
    """With rented capacity configured for the batch's queue, a dry run says how many instances the jobs may
    take within the budgets and what they would cost at the ledger's measured $ per job of the op."""
    data = tmp_path / "data"
    ledger = data / "capacity" / "ledger.jsonl"
    ledger.parent.mkdir(parents=True)
    ledger.write_text("".join(json.dumps({"t": 1.0, "ev": "job", "key": "k1", "op": "probe", "cost_usd": usd}) + "\n"
                              for usd in (0.01, 0.03)))
    svc = Service(data, REELFORGE_CAPACITY_PROVIDER="vast", REELFORGE_CAPACITY_IN_API="false",
                  REELFORGE_CAPACITY_QUEUES='["cpu"]', REELFORGE_CAPACITY_JOBS_PER_INSTANCE="2",
                  REELFORGE_CAPACITY_MAX_INSTANCES="2", REELFORGE_CAPACITY_MAX_DPH="1.5").start()
    try:
        inputs = [f"https://example.com/v{i}.mp4" for i in range(5)]
        with svc.client() as c:
            plan = c.post("/v1/batches", json={"op": "probe", "inputs": inputs, "dry_run": True})
            assert plan.status_code == 200, plan.text
            cap = plan.json()["capacity"]
            assert (cap["queues"], cap["jobs"], cap["instances"], cap["max_dph"]) == ({"cpu": 5}, 5, 2, 1.5)
            assert cap["usd_per_job"] == 0.02 and cap["estimate_usd"] == 0.1
            other = c.post("/v1/batches", json={"op": "test_flaky", "inputs": inputs, "params": {"key": "x"},
                                                "dry_run": True}).json()["capacity"]
            assert other["estimate_usd"] is None and "no test_flaky job" in other["basis"]
            assert c.get("/v1/batches").json()["batches"] == []
        run = svc.cli("batch", "run", "--op", "probe", *[a for i in inputs for a in ("--input", i)], "--dry-run")
        assert run.returncode == 0, run.stderr
        assert "about $0.10" in run.stderr and "up to 2 instances" in run.stderr
        assert json.loads(run.stdout[run.stdout.index("{"):])["capacity"]["estimate_usd"] == 0.1
    finally:
        svc.stop()


def test_bad_sources_manifests_and_templates_are_4xx_and_create_nothing(s3):
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    with svc.client() as c:
        batches_before = c.get("/v1/batches").json()["batches"]

        def refused(body: dict[str, Any], status: int, code: str) -> dict[str, Any]:
            resp = c.post("/v1/batches", json={"op": "probe", **body})
            assert resp.status_code == status, resp.text
            assert resp.json()["error"]["code"] == code, resp.text
            return resp.json()["error"]

        refused({"prefix": f"s3://{bucket}/input/nothing-here"}, 422, "source_empty")
        err = refused({"prefix": f"s3://{bucket}/input/c1", "extensions": [".mov"]}, 422, "source_empty")
        assert "31 left out by the filters" in err["message"]
        refused({"prefix": "s3://no-such-bucket-anywhere/x"}, 422, "source_bucket_not_allowed")
        refused({"prefix": "s3://no-such-bucket-anywhere/x", "s3_access_key_id": "testing",
                 "s3_secret_access_key": "testing", "s3_endpoint_url": env["REELFORGE_S3_ENDPOINT_URL"]},
                422, "source_bucket_not_found")
        refused({"prefix": f"s3://{bucket}/rf/jobs"}, 422, "source_bucket_not_allowed")  # the service's own folder
        refused({}, 422, "source_missing")
        err = refused({"manifest": "input,label\nhttps://example.com/a.mp4,one\n,two\nhttps://example.com/c.mp4,x,extra\n"},
                      422, "manifest_invalid")
        assert [d["row"] for d in err["details"]] == [3, 4]
        err = refused({"inputs": ["https://example.com/a.mp4", "not a ref"]}, 422, "batch_items_invalid")
        assert err["details"][0]["index"] == 1 and err["details"][0]["path"] == "params.input"
        err = refused({"inputs": ["https://example.com/a.mp4"], "destination": "out", "filename": "{nope}.json"},
                      422, "batch_items_invalid")
        assert "unknown placeholder {nope}" in err["details"][0]["message"]
        refused({"inputs": ["https://example.com/a.mp4"], "max_concurrent": 0}, 422, "invalid_request")
        refused({"inputs": ["https://example.com/a.mp4"], "destination": "a/../../jobs"}, 422, "destination_invalid")
        refused({"inputs": ["https://example.com/a.mp4"], "layers": [{"rank": "file", "label": "config file b.toml",
                                                                       "values": {"max_concurent": 2}}]},
                422, "invalid_config")
        assert c.get("/v1/batches").json()["batches"] == batches_before


class _ConfigServer:
    """A loopback HTTP server for remote config documents (the service allows loopback fetches only because
    the test sets REELFORGE_FETCH_ALLOW_PRIVATE=true)."""

    def __init__(self) -> None:
        self.docs: dict[str, bytes] = {}
        docs = self.docs

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = docs.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def close(self) -> None:
        self.server.shutdown()


def test_preset_and_remote_config_merge_by_priority(s3, tmp_path):
    svc, env = s3
    bucket = env["REELFORGE_S3_BUCKET"]
    remote = _ConfigServer()
    try:
        remote.docs["/batch.json"] = json.dumps({"max_concurrent": 7, "max_retries": 3, "priority": 2,
                                                 "glob": "clip1*"}).encode()
        remote.docs["/broken.json"] = b"{not json"
        preset = tmp_path / "high.toml"
        preset.write_text('op = "probe"\nmax_concurrent = 2\nmax_retries = 2\npriority = 1\nname = "from preset"\n')
        added = svc.cli("presets", "add", "high", "--from", str(preset))
        assert added.returncode == 0, added.stderr
        assert "high" in svc.cli("presets", "list").stdout
        with svc.client() as c:
            body = {"preset": "high", "prefix": f"s3://{bucket}/input/c1", "priority": 5, "dry_run": True,
                    "layers": [{"rank": "file", "label": "config file b.toml",
                                "values": {"remote_config": remote.url("/batch.json"), "max_retries": 9,
                                           "max_concurrent": 9, "name": "from file"}},
                               {"rank": "env", "label": "env", "values": {"max_retries": "4"}}]}
            plan = c.post("/v1/batches", json=body)
            assert plan.status_code == 200, plan.text
            plan = plan.json()
            cfg, why = plan["config"], plan["explain"]
            # default < preset < config file < remote config < env < flags
            assert (cfg["op"], why["op"]) == ("probe", "preset high")
            assert (cfg["name"], why["name"]) == ("from file", "config file b.toml")
            assert (cfg["max_concurrent"], why["max_concurrent"]) == (7, f"remote config {remote.url('/batch.json')}")
            assert (cfg["max_retries"], why["max_retries"]) == (4, "env")
            assert (cfg["priority"], why["priority"]) == (5, "flags")
            assert (cfg["filename"], why["filename"]) == ("{stem}.{output}{out_ext}", "default")
            assert plan["total"] == 10  # the remote config's glob
            assert plan["layers"] == ["preset high", "config file b.toml",
                                      f"remote config {remote.url('/batch.json')}", "env", "flags"]

            for path, code in (("/missing.json", "remote_config_unavailable"),
                               ("/broken.json", "remote_config_invalid")):
                bad = c.post("/v1/batches", json={**body, "layers": [{"rank": "file", "label": "config file b.toml",
                                                                      "values": {"remote_config": remote.url(path)}}]})
                assert bad.status_code == 422 and bad.json()["error"]["code"] == code, bad.text
                assert "remote config" in bad.json()["error"]["message"]
            missing = c.post("/v1/batches", json={**body, "preset": "nope"})
            assert missing.status_code == 404 and missing.json()["error"]["code"] == "preset_not_found"
        assert svc.cli("presets", "rm", "high").returncode == 0
        assert "high" not in svc.cli("presets", "list").stdout
    finally:
        remote.close()


def test_kill_9_mid_batch_resumes_without_running_an_item_twice(tmp_path, media):
    with moto_bucket() as env:
        client = s3_client(env)
        bucket = env["REELFORGE_S3_BUCKET"]
        for i in range(8):
            client.put_object(Bucket=bucket, Key=f"in/v{i:02d}.mp4", Body=media.read_bytes())
        svc = Service(tmp_path / "data", REELFORGE_FETCH_ALLOW_PRIVATE="true", REELFORGE_WORKERS="2", **env).start()
        try:
            with svc.client() as c:
                # the batch's own credentials: the job hosts read presigned GETs, not the service's storage
                created = c.post("/v1/batches", json={
                    "prefix": f"s3://{bucket}/in/", "op": "probe", "max_concurrent": 2,
                    "s3_endpoint_url": env["REELFORGE_S3_ENDPOINT_URL"], "s3_access_key_id": "testing",
                    "s3_secret_access_key": "testing", "destination": f"s3://{bucket}/out"})
                assert created.status_code == 202, created.text
                batch_id = created.json()["id"]
                assert created.json()["config"]["s3_secret_access_key"] == "***"
                deadline = time.monotonic() + 120
                while c.get(f"/v1/batches/{batch_id}").json()["counts"]["succeeded"] < 2:
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
            svc.stop(signal.SIGKILL)
            with svc.client() as c, pytest.raises(httpx.TransportError):  # not reachable now
                c.get("/health")
            svc.start()
            with svc.client() as c:
                batch = wait_batch(c, batch_id)
                assert batch["status"] == "succeeded" and batch["counts"]["succeeded"] == 8, batch
                jobs = batch_jobs(c, batch_id)
                per_item: dict[int, int] = {}
                for job in jobs:
                    if job["status"] == "succeeded":
                        per_item[job["notes"]["batch_item"]] = per_item.get(job["notes"]["batch_item"], 0) + 1
                        assert job["params"]["input"].startswith(env["REELFORGE_S3_ENDPOINT_URL"])  # presigned
                assert per_item == {i: 1 for i in range(8)}, per_item
                keys = {o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix="out/")["Contents"]}
                assert {f"out/v{i:02d}.probe.json" for i in range(8)} <= keys
        finally:
            svc.stop()
