"""A burst of queued GPU jobs drained by rented capacity: `reelforge serve` with the capacity controller in
its process, pointed at the local fake of Vast.ai (tests/fakes/vast.py), whose instances start a real
`reelforge agent` process from their onstart script. Used by tests/integration/test_capacity_burst.py (small)
and bench/bench_capacity_burst.py (500 jobs)."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.fakes.vast import FakeVast, offer, serve
from tests.integration.service import Service

AGENT = (f"{sys.executable} -m reelforge.cli agent --api {{api}} --queues {{queues}} --concurrency {{slots}} "
         "--idle-exit {idle_exit} --gpu-name 'NVIDIA GeForce RTX 4090' --vram-gb 24 --nvenc-sessions 8")


def offers() -> list[dict[str, Any]]:
    return [
        offer(101, "H100 SXM", 0.12),  # cheapest, but no NVENC: never for this encode-heavy queue
        offer(102, "RTX 4090", 0.20, verified=False),  # filtered: unverified
        offer(103, "RTX 4090", 0.55),
        offer(104, "RTX 3090", 0.65),
        offer(105, "RTX 4090", 0.90),
        offer(106, "RTX 3090", 1.00),
        offer(107, "RTX 4090", 0.30, reliability2=0.5),  # filtered: unreliable host
    ]


def run_burst(tmp: Path, *, jobs: int, max_dph: float = 2.0, slots: int = 1, max_instances: int = 3,
              job_seconds: float = 0.05, timeout: float = 600, log: Any = print) -> dict[str, Any]:
    fake = FakeVast(offers=offers(), boot_s=1.0, run_onstart=True, work_dir=tmp / "instances", base_env={
        "PATH": os.environ["PATH"], "PYTHONPATH": os.environ.get("PYTHONPATH", ""), "HF_HUB_OFFLINE": "1",
        "REELFORGE_PLUGINS": "tests.plugins.capacity_ops", "REELFORGE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    repo = str(Path(__file__).resolve().parents[2])
    fake.base_env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, fake.base_env["PYTHONPATH"]) if p)
    with serve(fake):
        svc = Service(tmp / "data", REELFORGE_PLUGINS="tests.plugins.capacity_ops", REELFORGE_WORKERS="1",
                      REELFORGE_QUEUE_BACKENDS=json.dumps({"gpu": ["agent"]}), REELFORGE_LEASE_TTL_S="10",
                      REELFORGE_CAPACITY_PROVIDER="vast", REELFORGE_VAST_API_KEY=fake.key,
                      REELFORGE_VAST_BASE_URL=f"{fake.url}/api/v0", REELFORGE_CAPACITY_IMAGE="reelforge:test",
                      REELFORGE_CAPACITY_DEPLOYMENT="burst", REELFORGE_CAPACITY_ONSTART=AGENT,
                      REELFORGE_CAPACITY_MAX_DPH=str(max_dph), REELFORGE_CAPACITY_MAX_INSTANCES=str(max_instances),
                      REELFORGE_CAPACITY_SLOTS=str(slots), REELFORGE_CAPACITY_TICK_S="0.5",
                      REELFORGE_CAPACITY_IDLE_MINUTES="0.1", REELFORGE_CAPACITY_BOOT_TIMEOUT_S="90",
                      REELFORGE_CAPACITY_JOBS_PER_INSTANCE="10", REELFORGE_CAPACITY_MAX_DAY_USD="50",
                      REELFORGE_IDLE_SHUTDOWN_MINUTES="60", REELFORGE_IDLE_SHUTDOWN_COMMAND="true")
        svc.start()
        try:
            started = time.monotonic()
            ids = []
            with svc.client() as c:
                for _ in range(jobs):
                    resp = c.post("/v1/jobs", json={"op": "test_gpu_tick", "params": {"seconds": job_seconds}})
                    assert resp.status_code == 202, resp.text
                    ids.append(resp.json()["id"])
                log(f"submitted {jobs} jobs in {time.monotonic() - started:.1f} s")
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    counts = _counts(c)
                    if counts.get("queued", 0) + counts.get("running", 0) == 0 and fake.instances and not fake.live():
                        break
                    time.sleep(1.0)
                drained = time.monotonic() - started
                sample = c.get(f"/v1/jobs/{ids[len(ids) // 2]}").json()
                health = c.get("/health").json()
                metrics = c.get("/metrics").text
            cost = svc.cli("capacity", "cost")
        finally:
            svc.stop()
        now = time.time()
        hours = sum(((i.destroyed_at or now) - i.created_at) / 3600 for i in fake.instances.values())
        usd = sum(((i.destroyed_at or now) - i.created_at) / 3600 * i.offer["dph_total"]
                  for i in fake.instances.values())
        return {"jobs": jobs, "counts": counts, "seconds": round(drained, 1), "instances": len(fake.instances),
                "live_after": len(fake.live()), "gpus": sorted({i.offer["gpu_name"] for i in fake.instances.values()}),
                "max_dph_seen": max((d for _, d in fake.timeline), default=0.0), "instance_hours": hours,
                "total_usd": usd, "usd_per_job": usd / max(1, jobs), "sample": sample, "health": health,
                "metrics": metrics, "cost_cli": cost.stdout + cost.stderr, "fake": fake,
                "orphan_procs": [i.id for i in fake.instances.values() if i.proc is not None and i.proc.poll() is None]}


def _counts(c: httpx.Client) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in c.get("/metrics").text.splitlines():
        if line.startswith("reelforge_jobs{") and 'op="test_gpu_tick"' in line:
            label = 'status="' if 'status="' in line else 'state="'
            state = line.split(label, 1)[1].split('"', 1)[0]
            out[state] = out.get(state, 0) + int(float(line.rsplit(" ", 1)[1]))
    return out
