"""Submission throughput and status latency of the embedded service (SQLite, local executor).

Starts `reelforge serve` on a free loopback port, then drives it with C concurrent clients for a fixed
time, at each of several concurrency levels in one run (default 20, 100 and 200; a fresh service and data
dir per level): phase 1 submits `probe` jobs (the executor runs them meanwhile, as in production);
phase 2 polls GET /v1/jobs/{id} of those jobs. The reference, measured in the same run with the same
client, is a bare FastAPI app on uvicorn answering an empty POST/GET: the ceiling of the stack on this
machine, so the ratio shows what the job store and validation cost.

    .venv/bin/python bench/bench_api.py [--clients 20,100,200] [--seconds 10]

The last lines compare the highest level with the lowest (throughput ratio, paced status p99). Each phase
also prints its load generator's CPU (`client cpu %`, of one core: wrk's, or this process's for the paced
client): on a 2-core machine the client shares the cores with the server, so a client that uses much of a
core caps what either stack can show.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.service import Service, free_port  # noqa: E402

REFERENCE_APP = '''
from fastapi import FastAPI
app = FastAPI()
@app.post("/v1/jobs", status_code=202)
def submit(body: dict) -> dict:
    return {"id": "x", "status": "queued"}
@app.get("/v1/jobs/{job_id}")
def status(job_id: str) -> dict:
    return {"id": job_id, "status": "queued"}
'''


SUBMIT_LUA = """
wrk.method = "POST"
wrk.path = "/v1/jobs"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '%s'
"""

STATUS_LUA = """
ids = {}
for line in io.lines("%s") do ids[#ids + 1] = line end
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/v1/jobs/" .. ids[(counter %% #ids) + 1])
end
"""

REPORT_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("RESULT %d %f %f %f %d\\n", summary.requests, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout))
end
"""


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path is None and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=False, capture_output=True)
        path = shutil.which("wrk")
    if path is None:
        sys.exit("bench_api needs wrk (apt-get install wrk): a Python load generator saturates 2 cores first")
    return path


def wrk_run(url: str, clients: int, seconds: float, script: str, tmp: Path) -> dict[str, float]:
    lua = tmp / f"s{abs(hash(script))}.lua"
    lua.write_text(script + REPORT_LUA)
    before = _children_cpu()
    res = subprocess.run([ensure_wrk(), "-t", "2", "-c", str(clients), "-d", f"{int(seconds)}s", "--timeout", "10s",
                          "-s", str(lua), url], capture_output=True, text=True, check=True)
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT"))
    n, dur, p50, p99, errors = line.split()[1:]
    # wrk is the only child reaped meanwhile: its CPU time, as a share of one core over the phase
    client_cpu = (_children_cpu() - before) / float(dur) * 100
    return {"rps": int(n) / float(dur), "p50": float(p50), "p99": float(p99), "errors": int(errors),
            "client cpu %": client_cpu}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def paced_status(url: str, clients: int, seconds: float, ids: list[str], interval_s: float) -> dict[str, float]:
    """Each client polls a job's status every interval_s over its own keep-alive connection (how real
    clients poll), measuring latency under that offered load. Raw asyncio streams: an HTTP client library
    would itself saturate a core at these rates and measure its own overhead."""
    host, port = url.removeprefix("http://").split(":")
    lat: list[float] = []
    errors = 0

    async def one(i: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, int(port))
        await asyncio.sleep(interval_s * i / clients)  # spread the clients over the interval
        end = time.perf_counter() + seconds
        n = 0
        while time.perf_counter() < end:
            t0 = time.perf_counter()
            writer.write(f"GET /v1/jobs/{ids[(i + n) % len(ids)]} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(ln.split(b":")[1] for ln in head.split(b"\r\n")
                              if ln.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t0)
            errors += not head.startswith(b"HTTP/1.1 2")
            n += 1
            await asyncio.sleep(max(0.0, interval_s - (time.perf_counter() - t0)))
        writer.close()

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(clients)))
    client_cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0) * 100  # this process: the client
    lat.sort()
    return {"rps": len(lat) / seconds, "p50": lat[len(lat) // 2] * 1000, "p99": lat[int(len(lat) * 0.99)] * 1000,
            "errors": errors, "client cpu %": client_cpu}


def measure(url: str, clients: int, seconds: float, body: dict, ids_file: Path, tmp: Path) -> dict:
    submit = wrk_run(url, clients, seconds, SUBMIT_LUA % json.dumps(body), tmp)
    status = wrk_run(url, clients, seconds, STATUS_LUA % ids_file, tmp)
    ids = ids_file.read_text().split()
    paced = asyncio.run(paced_status(url, clients, seconds, ids, 0.5))
    return {"submit": submit, "status": status, "paced status": paced}


def start_reference(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (tmp / "refapp.py").write_text(REFERENCE_APP)
    ref = subprocess.Popen([sys.executable, "-m", "uvicorn", "refapp:app", "--port", str(port), "--log-level",
                            "warning", "--no-access-log"], cwd=tmp, env={**os.environ, "PYTHONPATH": str(tmp)})
    for _ in range(100):
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/jobs/x", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.1)
    return ref, f"http://127.0.0.1:{port}"


def measure_reelforge(tmp: Path, clients: int, seconds: int, media: Path) -> tuple[dict, str]:
    """A fresh service (new data dir) per concurrency level, so each level starts from the same store."""
    data = tmp / f"data-{clients}"
    svc = Service(data, REELFORGE_LEASE_TTL_S="20", REELFORGE_HEARTBEAT_S="2", REELFORGE_ACCESS_LOG="false",
                  REELFORGE_SUBMIT_RATE_PER_S="0", REELFORGE_UPLOAD_RATE_PER_S="0")  # saturation, not limits
    svc.env.pop("REELFORGE_WORKERS")
    svc.start()
    try:
        with svc.client() as c, media.open("rb") as fh:
            fid = c.post("/v1/files", params={"filename": "in.mp4"}, content=fh).json()["id"]
            seed = [c.post("/v1/jobs", json={"op": "probe", "params": {"input": fid}}).json()["id"] for _ in range(50)]
        ids_file = tmp / f"ids-{clients}.txt"
        ids_file.write_text("\n".join(seed) + "\n")
        res = measure(svc.url, clients, seconds, {"op": "probe", "params": {"input": fid}}, ids_file, tmp)
        with svc.client() as c:
            queued = c.get("/metrics").text
    finally:
        svc.stop()
        shutil.rmtree(data, ignore_errors=True)
    depths = [float(ln.split()[-1]) for ln in queued.splitlines() if ln.startswith("reelforge_queue_depth{")]
    depth = str(int(sum(depths))) if depths else "?"
    return res, depth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", default="20,100,200", help="comma-separated concurrency levels, one run")
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    levels = [int(c) for c in str(args.clients).split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="rf-bench-api-"))
    ensure_wrk()
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc2=size=320x240:duration=1",
                    "-t", "1", str(tmp / "in.mp4")], check=True)
    load_start = os.getloadavg()[0]

    # Per level: the reference (the bare stack, same uvicorn, same load generator), then ReelForge with
    # embedded defaults (access log off, as behind a reverse proxy that logs). Interleaved, so that a shared
    # machine's load drifting over the run weighs on both sides of each ratio alike.
    ref, ref_url = start_reference(tmp)
    ref_res: dict[int, dict] = {}
    res: dict[int, dict] = {}
    depth: dict[int, str] = {}
    (tmp / "ref_ids.txt").write_text("x\n")
    try:
        for n in levels:
            ref_res[n] = measure(ref_url, n, args.seconds, {"op": "probe", "params": {}}, tmp / "ref_ids.txt", tmp)
            res[n], depth[n] = measure_reelforge(tmp, n, args.seconds, tmp / "in.mp4")
    finally:
        ref.terminate()
        ref.wait()

    print(f"clients={args.clients} seconds={args.seconds} cores={os.cpu_count()} "
          f"load={load_start:.2f} -> {os.getloadavg()[0]:.2f}")
    for n in levels:
        print(f"\n== {n} clients (queue depth at the end: {depth[n]})")
        print(f"{'':24}{'reelforge':>12}{'bare stack':>12}{'ratio':>8}")
        for phase in ("submit", "status", "paced status"):
            r, b = res[n][phase], ref_res[n][phase]
            print(f"{phase + ' req/s':24}{r['rps']:12.0f}{b['rps']:12.0f}{r['rps'] / b['rps']:8.2f}")
            print(f"{phase + ' p50 ms':24}{r['p50']:12.1f}{b['p50']:12.1f}")
            print(f"{phase + ' p99 ms':24}{r['p99']:12.1f}{b['p99']:12.1f}")
            print(f"{phase + ' errors':24}{r['errors']:12d}{b['errors']:12d}")
            print(f"{phase + ' client cpu %':24}{r['client cpu %']:12.0f}{b['client cpu %']:12.0f}")
    lo, hi = levels[0], levels[-1]
    print(f"\n== scaling {lo} -> {hi} clients (goal: throughput >= 0.9x; paced status p99 < 100 ms at {hi})")
    for phase in ("submit", "status"):
        r_ratio = res[hi][phase]["rps"] / res[lo][phase]["rps"]
        b_ratio = ref_res[hi][phase]["rps"] / ref_res[lo][phase]["rps"]
        print(f"{phase + ' req/s':24}{res[lo][phase]['rps']:8.0f} -> {res[hi][phase]['rps']:6.0f}  x{r_ratio:.2f}"
              f"   (bare stack x{b_ratio:.2f})")
    print(f"{'paced status p99 ms':24}" + "  ".join(f"{n}: {res[n]['paced status']['p99']:.1f}" for n in levels))
    print("submit/status: closed loop, every client sends its next request at once (saturation);")
    print("paced status: each of the clients polls every 0.5 s (offered load = clients * 2 req/s)")


if __name__ == "__main__":
    main()
