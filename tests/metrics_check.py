"""Prometheus exposition checks for tests: `promtool check metrics` (Debian `prometheus`, installed by
scripts/ensure-system-deps.sh) when present, else prometheus_client's own parser (a weaker check: syntax only,
no lint)."""

from __future__ import annotations

import shutil
import subprocess

from prometheus_client.parser import text_string_to_metric_families


def check_exposition(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Assert `text` is valid (promtool: also lint-clean); returns samples by name: [(labels, value)]."""
    promtool = shutil.which("promtool")
    if promtool:
        done = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"promtool: {done.stdout}{done.stderr}"
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append((dict(s.labels), s.value))
    return samples
