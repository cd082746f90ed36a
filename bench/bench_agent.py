"""Benchmark the remote-agent envelope's overhead: one Ken Burns clip through `reelforge agent` vs the
service's own embedded local executor, same service, same machine.

    .venv/bin/python bench/bench_agent.py                      # 10 s 1080p30 clip, 3 runs of each
    .venv/bin/python bench/bench_agent.py --reps 5 --write bench/results/agent.md

One `reelforge serve` (local storage, one local slot, queue `cpu` mapped to ["agent", "local"] with a short
AGENT_ALIVE_S) and, for the agent runs, one `reelforge agent` process on loopback with no database, broker
or storage settings in its environment (as in tests/integration/test_agents.py). The agent reads the
image through the API's per-job file route and PUTs its output to the API's one-job upload URL; the
service commits it on finish (size + SHA-256). That is the whole envelope path.

    local   the agent is stopped (and seen gone): the service's local slot runs the job
    agent   an agent is polling: it claims the job, runs it in its job host, uploads, finishes

Runs alternate local/agent in an ABBA order, so a change of machine load hits both alike. Before the
first run of each kind, a short warm-up job brings up the job host (the agent is started once per block
of agent runs and warmed each time). Both sides run with JOB_NICE=0 and the same THREADS_PER_JOB. Wall
time is the service's own record, created_at -> finished_at (submit to committed), and each job's notes
are checked for the backend that ran it. The 1-minute load average is sampled per run.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "src"))

from tests.integration.service import Service, stop_group, wait_job  # noqa: E402

ALIVE_S = 2.0
COMMON_ENV = {"REELFORGE_JOB_NICE": "0", "REELFORGE_THREADS_PER_JOB": "2", "REELFORGE_DEVICE": "cpu",
              "HF_HUB_OFFLINE": "1"}


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def agent_process(svc: Service, token: str, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(data_dir), "PYTHONPATH": svc.env["PYTHONPATH"],
           "REELFORGE_DATA_DIR": str(data_dir), "REELFORGE_AGENT_TOKEN": token, **COMMON_ENV}
    log = (data_dir.parent / "agent.log").open("ab")
    proc = subprocess.Popen([sys.executable, "-m", "reelforge.cli", "agent", "--api", svc.url, "--queues", "cpu",
                             "--concurrency", "1"], env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True, cwd=str(data_dir))
    try:
        yield proc
    finally:
        stop_group(proc, 30)
        time.sleep(ALIVE_S + 1.0)  # the service sees the agent gone: its local slot takes `cpu` again


def run_job(c: httpx.Client, params: dict[str, Any], expect: str | None) -> dict[str, Any]:
    load = loadavg()
    resp = c.post("/v1/jobs", json={"op": "img2vid", "params": params})
    assert resp.status_code == 202, resp.text
    job = wait_job(c, resp.json()["id"], timeout=1800)
    assert job["status"] == "succeeded", job
    backend = job["notes"].get("backend")
    assert expect is None or backend == expect, (backend, expect, job["notes"])
    run_s = ts(job["finished_at"]) - ts(job["started_at"])
    op_s = float(job["notes"].get("op_s") or 0.0)
    return {"kind": backend, "wall_s": ts(job["finished_at"]) - ts(job["created_at"]), "run_s": run_s,
            "queue_s": ts(job["started_at"]) - ts(job["created_at"]), "op_s": op_s, "tail_s": run_s - op_s,
            "load": round((load + loadavg()) / 2, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=3, help="timed runs of each kind")
    ap.add_argument("--heartbeat-s", type=float, default=2.0,
                    help="lease renewal interval (the service's default 2 s; the test helper's 0.5 s makes four "
                         "times the renewals, each an HTTP call for an agent)")
    ap.add_argument("--write", type=Path, help="append a markdown section to this file")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-agent-") as tmpdir:
        tmp = Path(tmpdir)
        image = tmp / "photo.png"
        w, h = args.size.split("x")
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"mandelbrot=s={int(w) * 3 // 2}x"
                        f"{int(h) * 3 // 2}", "-frames:v", "1", str(image)], check=True)
        svc = Service(tmp / "data", REELFORGE_WORKERS="1", REELFORGE_AGENT_ALIVE_S=str(ALIVE_S),
                      REELFORGE_HEARTBEAT_S=str(args.heartbeat_s), REELFORGE_LEASE_TTL_S="20",
                      REELFORGE_QUEUE_BACKENDS=json.dumps({"cpu": ["agent", "local"]}), **COMMON_ENV)
        svc.start()
        try:
            made = svc.cli("agents", "token", "create", "--name", "bench", "--queues", "cpu")
            assert made.returncode == 0, made.stderr
            token = made.stdout.strip().splitlines()[-1]
            with svc.client() as c:
                up = c.post("/v1/files", params={"filename": image.name}, content=image.read_bytes())
                assert up.status_code == 201, up.text
                file_id = up.json()["id"]
                timed = {"images": [file_id], "size": args.size, "fps": args.fps, "duration_s": args.seconds,
                         "effect": "zoom_in"}
                warm = {"images": [file_id], "size": "320x180", "fps": 25, "duration_s": 0.5}
                order = ["local", "agent", "agent", "local"] * ((args.reps + 1) // 2)
                order = order[: 2 * args.reps]
                runs: list[dict[str, Any]] = []
                run_job(c, warm, "local")
                # one untimed full-size run first: the first 1080p render of a run pays for cold caches (it
                # took twice the time of the later ones), and it would fall on the first kind only
                run_job(c, timed, "local")
                i = 0
                while i < len(order):
                    kind = order[i]
                    block = 1
                    while i + block < len(order) and order[i + block] == kind:
                        block += 1
                    if kind == "local":
                        for _ in range(block):
                            runs.append(run_job(c, timed, "local"))
                            print(runs[-1], flush=True)
                    else:
                        with agent_process(svc, token, tmp / "agent") as proc:
                            deadline = time.monotonic() + 60
                            while "registered" not in (tmp / "agent.log").read_text(errors="replace"):
                                assert proc.poll() is None and time.monotonic() < deadline, "agent did not start"
                                time.sleep(0.1)
                            # warm its job host; until its first long poll is seen, the local slot may
                            # take the warm-up (a loaded machine): then warm again
                            for _ in range(10):
                                time.sleep(1.0)
                                if run_job(c, warm, None)["kind"] == "agent":
                                    break
                            for _ in range(block):
                                time.sleep(0.5)  # the agent is back on its long poll
                                runs.append(run_job(c, timed, "agent"))
                                print(runs[-1], flush=True)
                    i += block
        finally:
            svc.stop()

    med = {k: statistics.median(r["wall_s"] for r in runs if r["kind"] == k) for k in ("local", "agent")}
    loads = [r["load"] for r in runs]

    def med_of(field: str) -> dict[str, float]:
        return {k: statistics.median(r[field] for r in runs if r["kind"] == k) for k in ("local", "agent")}

    ratio = med["agent"] / med["local"]
    lines = [
        f"## agent envelope overhead, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"img2vid, one image, {args.seconds:g} s {args.size}@{args.fps} Ken Burns (zoom_in), x264, "
        f"{args.reps} timed runs of each kind, alternating ABBA, lease renewed every {args.heartbeat_s:g} s; "
        f"{os.cpu_count()} cores, 1-min load "
        f"{min(loads)}-{max(loads)} during the runs.",
        "",
        "| run | kind | wall s (submit -> committed) | queued s | started -> finished s | op in its host s "
        "| worker's own s | load |",
        "|---|---|---|---|---|---|---|---|",
        *[f"| {n + 1} | {r['kind']} | {r['wall_s']:.2f} | {r['queue_s']:.2f} | {r['run_s']:.2f} | {r['op_s']:.2f} "
          f"| {r['tail_s']:.2f} | {r['load']} |" for n, r in enumerate(runs)],
        "",
        f"Median wall: local {med['local']:.2f} s, agent {med['agent']:.2f} s -> **agent / local = {ratio:.3f}x** "
        f"(goal <= 1.10x: {'yes' if ratio <= 1.10 else 'no'}).",
        "",
        "| median of | local s | agent s |",
        "|---|---|---|",
        *[f"| {label} | {m['local']:.2f} | {m['agent']:.2f} |" for label, m in (
            ("wall (submit -> committed)", med), ("queued (submit -> claimed)", med_of("queue_s")),
            ("started -> finished", med_of("run_s")), ("op in its host", med_of("op_s")),
            ("worker's own (hand-over, storing outputs, finish)", med_of("tail_s")))],
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with args.write.open("a") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
