"""A small burst of queued GPU jobs, drained by rented capacity from the fake Vast.ai with real agents
(bench/bench_capacity_burst.py runs the 500-job version and prints the same figures)."""

from __future__ import annotations

from pathlib import Path

from tests.integration.capacity_burst import run_burst


def test_burst_within_budget_drains_and_destroys_everything(tmp_path: Path) -> None:
    r = run_burst(tmp_path, jobs=20, max_dph=2.0, timeout=240)
    print(f"\ninstances {r['instances']}, instance-hours {r['instance_hours']:.4f}, total ${r['total_usd']:.4f}, "
          f"${r['usd_per_job']:.5f} per job, drained in {r['seconds']} s\n{r['cost_cli']}")
    assert r["counts"].get("succeeded") == 20, r["counts"]
    assert r["max_dph_seen"] <= 2.0 + 1e-9  # at every instant, starting instances included
    assert r["live_after"] == 0 and not r["orphan_procs"]  # every instance destroyed, its agent gone with it
    assert "H100 SXM" not in r["gpus"]  # encode-heavy queue: never a GPU without NVENC
    notes = r["sample"]["notes"]
    assert notes["backend"] == "agent" and notes["cost_usd"] > 0 and notes["cost_instance"]
    fake = r["fake"]
    assert all(fake.key not in str(i.body) for i in fake.instances.values())  # the API key never left
    assert "reelforge_capacity_job_cost_usd" in r["metrics"]
    assert "reelforge_capacity_usd_per_video_minute" in r["metrics"]
    assert r["health"]["idle_shutdown"]["enabled"] and r["health"]["capacity"]["instances"] == []
    assert "test_gpu_tick" in r["cost_cli"] and "instance-hours" in r["cost_cli"]
