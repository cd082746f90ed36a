"""Creating a 10,000-item batch: listing a prefix on moto's S3 server + validating every item + writing the
rows; then feeding all of them into job rows through JobService (max_concurrent = the whole batch).

Goal (issue 15): creation < 30 s and < 300 MB peak RSS on this machine. References measured in the same run:
the bare listing (boto3 list_objects_v2 pages, nothing else) and a bare bulk insert of as many job rows
(JobsStore.insert_jobs), so the ratios say what the batch machinery adds.

moto's server runs in a child process (its memory is not ours). Nothing runs the jobs (a null executor).

    .venv/bin/python bench/bench_batch.py [--items 10000] [--database-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NullExecutor:
    def submit(self, job: Any) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        pass


BUCKET = "bench-batch"
# moto's server in a child process, its bucket filled through moto's own backend (putting 10,000 objects over
# HTTP takes minutes on a loaded 2-core machine; listing them over HTTP is what is measured)
MOTO_CHILD = """
import sys, time
from moto.server import ThreadedMotoServer
from moto.s3.models import s3_backends
port, bucket, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
server.start()
backend = s3_backends["123456789012"]["aws"]
backend.create_bucket(bucket, "us-east-1")
for i in range(n):
    backend.put_object(bucket, f"input/c1/clip{i:05d}.mp4", b"x" * 64)
print("ready", flush=True)
while True:
    time.sleep(3600)
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=10_000)
    ap.add_argument("--database-url", default="")
    args = ap.parse_args()

    port = free_port()
    moto = subprocess.Popen([sys.executable, "-c", MOTO_CHILD, str(port), BUCKET, str(args.items)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        assert moto.stdout is not None
        t = time.perf_counter()
        line = moto.stdout.readline()  # "ready" once the objects are in
        assert line.strip() == b"ready", line
        print(f"setup: {args.items} objects in moto in {time.perf_counter() - t:.1f} s", file=sys.stderr)
        run(args, endpoint)
    finally:
        os.killpg(moto.pid, signal.SIGTERM)
        moto.wait(timeout=10)


def run(args: argparse.Namespace, endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    bucket = BUCKET

    tmp = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    env = {"REELFORGE_DATA_DIR": str(tmp / "data"), "REELFORGE_STORAGE": "s3", "REELFORGE_S3_ENDPOINT_URL": endpoint,
           "REELFORGE_S3_BUCKET": bucket, "REELFORGE_S3_ACCESS_KEY_ID": "testing",
           "REELFORGE_S3_SECRET_ACCESS_KEY": "testing", "REELFORGE_FETCH_ALLOW_PRIVATE": "true"}
    if args.database_url:
        env["REELFORGE_DATABASE_URL"] = args.database_url
    os.environ.update(env)

    from reelforge.config import Settings
    from reelforge.jobs.batches import BatchCreate, BatchFeeder, BatchService
    from reelforge.jobs.services import JobServices
    from reelforge.ops.registry import get_operation

    settings = Settings()
    services = JobServices.create(settings)
    jobs = services.job_service(NullExecutor())
    batches = BatchService(settings, services.stores, storage=services.storage, jobs=jobs, webhooks=None)
    feeder = BatchFeeder(batches)  # not started: stepped by hand below
    get_operation("probe")  # the op registry, loaded once at the service's start
    base_rss = current_rss_mb()

    # reference 1: the bare listing
    t = time.perf_counter()
    n = sum(len(p.get("Contents", [])) for p in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                                            Prefix="input/c1"))
    bare_list_s = time.perf_counter() - t
    assert n == args.items

    body = BatchCreate(prefix=f"s3://{bucket}/input/c1", op="probe", max_concurrent=args.items,
                       destination=f"s3://{bucket}/out/c1")
    # dry run (listing + validation, nothing written), then the real create
    t = time.perf_counter()
    plan = batches.plan("bench", body)
    plan_s = time.perf_counter() - t
    assert len(plan.items) == args.items
    t = time.perf_counter()
    view = batches.create("bench", body)
    create_s = time.perf_counter() - t
    create_peak = rss_mb()
    assert view["total"] == args.items

    # feeding: every item becomes a job row through JobService.submit (one step, nothing runs them)
    t = time.perf_counter()
    feeder.step(view["id"])
    feed_s = time.perf_counter() - t
    counts = services.stores.batches.counts(view["id"])
    assert counts["submitted"] == args.items, counts

    # reference 2: as many job rows in one bulk insert, no validation
    values = [services.stores.jobs.new_job_values(tenant="ref", op="probe", params={"input": f"s3://{bucket}/k{i}"},
                                                  queue="cpu", timeout_s=120, max_attempts=3)
              for i in range(args.items)]
    t = time.perf_counter()
    services.stores.jobs.insert_jobs(values)
    bare_insert_s = time.perf_counter() - t
    services.close()

    result = {
        "items": args.items, "database": "postgresql" if args.database_url else "sqlite",
        "load_avg": os.getloadavg(),
        "create_s": round(create_s, 2), "plan_s": round(plan_s, 2), "plan_timings": {
            k: round(v, 2) for k, v in plan.timings.items()},
        "bare_listing_s": round(bare_list_s, 2), "create_vs_bare_listing": round(create_s / bare_list_s, 2),
        "peak_rss_mb_after_create": round(create_peak), "rss_mb_before": round(base_rss),
        "feed_to_job_rows_s": round(feed_s, 2), "bare_bulk_insert_s": round(bare_insert_s, 2),
        "feed_vs_bare_insert": round(feed_s / bare_insert_s, 1), "peak_rss_mb_end": round(rss_mb()),
        "goals": {"create_s < 30": create_s < 30, "peak_rss_mb < 300": create_peak < 300},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
