"""GPU metrics from nvidia-smi: parsed per GPU, N/A fields left out, no nvidia-smi (or a failing one) gives
no GPU metrics and never a failed scrape; the exposition is promtool-valid."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from reelforge.engine.metrics import GpuCollector, parse_gpu_query
from tests.metrics_check import check_exposition

H200 = "0, NVIDIA H200, 1234, 143771, 37, 12, [N/A], [N/A]\n"  # no NVENC on Hopper data-centre parts
GEFORCE = ("0, NVIDIA GeForce RTX 4090, 8000, 24564, 91, 40, 3, 118.5\n"
           "1, NVIDIA GeForce RTX 4090, 10, 24564, 0, 0, 0, 0\n")


def scrape(run) -> dict:
    registry = CollectorRegistry()
    registry.register(GpuCollector(run=run))
    return check_exposition(generate_latest(registry).decode())


def test_gpu_query_lines_are_parsed_and_na_fields_left_out() -> None:
    [h200] = parse_gpu_query(H200)
    assert h200["name"] == "NVIDIA H200" and h200["memory.total"] == 143771.0
    assert "encoder.stats.sessionCount" not in h200
    assert [g["encoder.stats.sessionCount"] for g in parse_gpu_query(GEFORCE)] == [3.0, 0.0]
    assert parse_gpu_query("") == [] and parse_gpu_query("garbage\n") == []


def test_gpu_gauges_per_gpu() -> None:
    samples = scrape(lambda: GEFORCE)
    assert ({"gpu": "0", "name": "NVIDIA GeForce RTX 4090"}, 3.0) in samples["reelforge_gpu_encoder_sessions"]
    assert ({"gpu": "1", "name": "NVIDIA GeForce RTX 4090"}, 24564 * 1024**2) in samples[
        "reelforge_gpu_memory_total_bytes"]
    assert ({"gpu": "0", "name": "NVIDIA GeForce RTX 4090"}, 0.91) in samples["reelforge_gpu_utilization_ratio"]
    h200 = scrape(lambda: H200)
    assert "reelforge_gpu_encoder_sessions" not in h200 and "reelforge_gpu_memory_used_bytes" in h200


def test_no_gpu_or_a_failing_probe_gives_nothing() -> None:
    def broken() -> str:
        raise RuntimeError("driver gone")

    assert scrape(lambda: None) == {}
    assert scrape(broken) == {}
    assert isinstance(GpuCollector().gpus(), list)  # the real probe on this machine: a list, maybe empty


def test_the_grafana_dashboard_reads_only_metrics_that_exist() -> None:
    import json
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    dash = json.loads((root / "deploy" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    names = {re.sub(r"_(bucket|count|sum)$", "", n) for e in exprs for n in re.findall(r"reelforge_[a-z_]+", e)}
    source = "".join(p.read_text() for p in (root / "src" / "reelforge").rglob("*.py"))
    missing = sorted(n for n in names if f'"{n}"' not in source)
    assert len(names) >= 15 and missing == [], missing
    assert all(p["gridPos"]["w"] <= 24 for p in dash["panels"])


def test_a_celery_worker_reports_its_gpus_from_nvidia_smi() -> None:
    """What a worker answers to the `reelforge_resources` broadcast (the dashboard's Celery workers table)."""
    import os

    from reelforge.engine.celery_resources import machine_resources

    got = machine_resources(GpuCollector(run=lambda: GEFORCE))
    assert got["cpu_cores"] == (os.cpu_count() or 1)
    first, second = got["gpus"]
    assert first == {"index": "0", "name": "NVIDIA GeForce RTX 4090", "memory_total_mb": 24564.0,
                     "memory_used_mb": 8000.0, "utilization": 0.91, "nvenc_sessions_in_use": 3, "nvenc_sessions": 8}
    assert second["nvenc_sessions_in_use"] == 0 and second["utilization"] == 0.0
    [h200] = machine_resources(GpuCollector(run=lambda: H200))["gpus"]
    assert h200["nvenc_sessions"] == 0 and "nvenc_sessions_in_use" not in h200  # no NVENC on the card
    assert machine_resources(GpuCollector(run=lambda: None))["gpus"] == []
