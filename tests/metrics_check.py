"""Prometheus exposition checks for tests: `promtool check metrics` (Debian `prometheus`, installed by
scripts/ensure-system-deps.sh, which `make test` runs first). promtool is required: a weaker fallback (a
syntax-only parse) would let a lint failure pass unseen, so a missing promtool fails the test instead."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families


def check_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Assert `text` is valid and lint-clean per promtool; returns samples by name: [(labels, value)]."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: run scripts/ensure-system-deps.sh (Debian package `prometheus`)"
    done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"promtool: {done.stdout}{done.stderr}"
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return samples
