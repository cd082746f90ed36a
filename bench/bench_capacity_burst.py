"""A burst of queued GPU jobs drained by rented capacity, against the local fake of Vast.ai.

`reelforge serve` runs the capacity controller in its process; the fake's instances start real `reelforge
agent` processes from their onstart scripts (so the jobs really run, on this machine). Prints the budget
seen at every instant, how long the queue took to drain, instance-hours, total cost, $ per job, and the
ratio of the total to a reference measured in the same run: the jobs' own held time priced at the cheapest
admissible offer (what the work would cost with no boot, no idle, no overhead).

    PYTHONPATH=src .venv/bin/python bench/bench_capacity_burst.py [--jobs 500] [--budget 2.0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration.capacity_burst import run_burst  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--budget", type=float, default=2.0)
    ap.add_argument("--slots", type=int, default=1)
    ap.add_argument("--job-seconds", type=float, default=0.05)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rf-capacity-") as tmp:
        r = run_burst(Path(tmp), jobs=args.jobs, max_dph=args.budget, slots=args.slots,
                      job_seconds=args.job_seconds, timeout=1800)
        held = [float(line.split()[-1]) for line in r["metrics"].splitlines()
                if line.startswith(("reelforge_capacity_job_cost_usd{", "reelforge_capacity_job_cost_usd_total{"))]
    fake = r["fake"]
    print(f"jobs: {r['counts']}")
    rented = ", ".join(f"{i.offer['gpu_name']} ${i.offer['dph_total']:.2f}/h" for i in fake.instances.values())
    print(f"instances: {r['instances']} ({rented}), left alive: {r['live_after']}, "
          f"agent processes left: {len(r['orphan_procs'])}")
    print(f"highest $/h seen at any instant: {r['max_dph_seen']:.3f} (budget {args.budget:.2f})")
    print(f"drained (submit -> last instance destroyed): {r['seconds']} s")
    print(f"instance-hours: {r['instance_hours']:.4f}; total cost: ${r['total_usd']:.4f}; "
          f"$ per job: ${r['usd_per_job']:.6f}")
    cheapest = min(o["dph_total"] for o in fake.offers if o["gpu_name"] != "H100 SXM" and o.get("verified")
                   and o.get("reliability2", 1) >= 0.95)
    jobs_usd = sum(held)
    print(f"jobs' own share (held time x price / slots): ${jobs_usd:.4f}; cheapest admissible offer "
          f"${cheapest:.2f}/h")
    if jobs_usd > 0:
        print(f"ratio total / jobs' own share: {r['total_usd'] / jobs_usd:.2f}x (boot, idle before scale-to-zero, "
              "claim gaps)")
    print(r["cost_cli"])


if __name__ == "__main__":
    main()
