"""Prometheus metrics observed in-process (durations, outcomes, waits); state counts are read from the store
(api/routes_system.py); GPU figures from nvidia-smi at scrape time. Every label that names an outcome is
called `status` (a job's status, a webhook outcome, an HTTP status code).

Every process that runs jobs can export them: the API on its /metrics, a Celery worker on its own port
(`reelforge worker --metrics-port`, setting `worker_metrics_port`). With PROMETHEUS_MULTIPROC_DIR set (an
empty folder shared by the processes of one machine), prometheus_client keeps each process's metrics in
files there and any of these endpoints exports the sum over them.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger("reelforge.metrics")

JOB_DURATION = Histogram(
    "reelforge_job_duration_seconds", "Wall time of jobs run by this process, by op and outcome",
    ["op", "status"], buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600),
)
JOB_FINISHED = Counter("reelforge_jobs_finished_total", "Jobs finished by this process", ["op", "status"])
JOBS_SUBMITTED = Counter("reelforge_jobs_submitted_total", "Jobs accepted by this API process", ["op"])
# remote work as the service sees it (agents and RunPod): claims by backend, time jobs waited before one
JOBS_STARTED_REMOTE = Counter("reelforge_jobs_started_remote_total", "Jobs handed to remote backends by this API "
                              "process", ["backend", "queue"])
REMOTE_QUEUE_DELAY = Histogram(
    "reelforge_remote_queue_delay_seconds", "Time from submit to a remote backend's claim (agents), or RunPod's "
    "own queue time (cold starts included)", ["backend"], buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900),
)
REMOTE_COLD_STARTS = Counter(
    "reelforge_remote_cold_starts_total", "Remote jobs that finished after loading their model cold where they "
    "ran (a `loading_model` stage: a fresh agent, container or function), by backend", ["backend"])
# webhooks (jobs/webhooks.py): each try by its result (delivered | retrying | failed), each event's end
# (delivered | failed | superseded: a newer event of its job went instead), request time, events waiting
WEBHOOK_ATTEMPTS = Counter("reelforge_webhook_attempts_total", "Webhook delivery tries by this process, by event "
                           "type and result", ["event", "status"])
WEBHOOK_DELIVERIES = Counter("reelforge_webhook_deliveries_total", "Webhook events concluded by this process, by "
                             "event type and outcome", ["event", "status"])
WEBHOOK_REQUEST_SECONDS = Histogram("reelforge_webhook_request_duration_seconds", "Time of one webhook request",
                                    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WEBHOOK_PENDING = Gauge("reelforge_webhook_pending", "Webhook events queued or waiting for a retry in this process",
                        multiprocess_mode="livesum")

# time from submit to a job's first claim, by queue (every executor and backend: observed by the process that
# claims it through the database job control)
QUEUE_WAIT = Histogram("reelforge_queue_wait_seconds", "Time jobs waited in their queue before their first "
                       "claim", ["queue"], buckets=(0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 1800, 3600))

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess() -> bool:
    """prometheus_client's multiprocess mode: every process writes its metrics to files in this folder (set
    before any process starts; emptied by the operator at deploy), and an exporter adds them all up."""
    return bool(os.environ.get(MULTIPROC_ENV))


def process_registry() -> CollectorRegistry:
    """What this process exports of the in-process metrics: its own (the default registry), or, in
    multiprocess mode, every process's that shares the folder."""
    if not multiprocess():
        return REGISTRY
    from prometheus_client import multiprocess as mp

    registry = CollectorRegistry()
    mp.MultiProcessCollector(registry)
    return registry


# ---- GPUs, read from nvidia-smi at scrape time (absent or failing: nothing, never an error)
GPU_QUERY = ("index,name,memory.used,memory.total,utilization.gpu,utilization.memory,"
             "encoder.stats.sessionCount,encoder.stats.averageFps")


def parse_gpu_query(text: str) -> list[dict[str, Any]]:
    """`nvidia-smi --query-gpu=<GPU_QUERY> --format=csv,noheader,nounits` -> one dict per GPU; values that
    read "[N/A]" / "[Not Supported]" (e.g. the encoder fields of a GPU without NVENC) are left out."""
    fields = GPU_QUERY.split(",")
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != len(fields):
            continue
        gpu: dict[str, Any] = {"index": parts[0], "name": parts[1]}
        for key, raw in zip(fields[2:], parts[2:], strict=True):
            try:
                gpu[key] = float(raw)
            except ValueError:
                continue
        gpus.append(gpu)
    return gpus


class GpuCollector:
    """reelforge_gpu_* gauges per GPU of this machine: memory used/total (bytes), utilisation of the GPU and
    of its memory (0..1), NVENC sessions and their average fps. Cached for `ttl_s`; no nvidia-smi (or one
    that fails or hangs past `timeout_s`): no GPU metrics."""

    def __init__(self, ttl_s: float = 10.0, timeout_s: float = 5.0,
                 run: Callable[[], str | None] | None = None) -> None:
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._run = run or self._nvidia_smi
        self._lock = threading.Lock()
        self._at = -1e9
        self._gpus: list[dict[str, Any]] = []

    def _nvidia_smi(self) -> str | None:
        if shutil.which("nvidia-smi") is None:
            return None
        try:
            return subprocess.run(["nvidia-smi", f"--query-gpu={GPU_QUERY}", "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=self.timeout_s, check=True).stdout
        except (OSError, subprocess.SubprocessError):
            return None

    def gpus(self) -> list[dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._at > self.ttl_s:
                self._at = time.monotonic()
                try:
                    text = self._run()
                    self._gpus = parse_gpu_query(text) if text else []
                except Exception:  # a scrape must never fail because of a GPU probe
                    log.exception("nvidia-smi query failed")
                    self._gpus = []
            return list(self._gpus)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gpus = self.gpus()
        if not gpus:
            return
        specs = [("reelforge_gpu_memory_used_bytes", "GPU memory in use", "memory.used", 1024**2),
                 ("reelforge_gpu_memory_total_bytes", "GPU memory in all", "memory.total", 1024**2),
                 ("reelforge_gpu_utilization_ratio", "GPU busy time over the last sample period (0..1)",
                  "utilization.gpu", 0.01),
                 ("reelforge_gpu_memory_utilization_ratio", "GPU memory controller busy time (0..1)",
                  "utilization.memory", 0.01),
                 ("reelforge_gpu_encoder_sessions", "NVENC encoder sessions open on the GPU",
                  "encoder.stats.sessionCount", 1),
                 ("reelforge_gpu_encoder_fps", "Average fps of the GPU's NVENC sessions",
                  "encoder.stats.averageFps", 1)]
        for name, doc, key, scale in specs:
            family = GaugeMetricFamily(name, doc, labels=["gpu", "name"])
            for gpu in gpus:
                if key in gpu:
                    family.add_metric([gpu["index"], gpu["name"]], gpu[key] * scale)
            if family.samples:
                yield family


def serve_metrics(port: int, host: str = "127.0.0.1") -> int:
    """A /metrics HTTP endpoint for this process (a Celery worker): its own metrics (or, in multiprocess
    mode, every process's sharing the folder) and this machine's GPUs. Returns the bound port."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    registry.register(_Merged(process_registry()))
    registry.register(GpuCollector())
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return int(server.server_port)


class _Merged:
    """Another registry's metrics as one collector."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterator[Any]:
        yield from self.source.collect()
