"""What a Celery worker reports about itself: the `reelforge_resources` inspect command.

Celery workers talk to the API only through the broker, so the dashboard's workers view (GET /v1/workers) asks
them there: a broadcast of this command, answered by every live worker with its queues, pool size, running
tasks and this machine's resources (CPU cores; per GPU from nvidia-smi: name, memory used/total, utilisation,
NVENC sessions in use and the card's session limit). Registered when this module is imported (celery_app
imports it), so `celery -A reelforge.engine.celery_app inspect reelforge_resources` works from a shell too.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery
from celery.app.control import flatten_reply
from celery.worker import state as worker_state
from celery.worker.control import inspect_command

from reelforge.engine.metrics import GpuCollector

log = logging.getLogger("reelforge.celery")
COMMAND = "reelforge_resources"
_GPUS = GpuCollector(ttl_s=5.0)  # nvidia-smi at most every 5 s however often the dashboard asks


def machine_resources(gpus: GpuCollector = _GPUS) -> dict[str, Any]:
    """This machine's CPU cores and GPUs (an empty list without nvidia-smi)."""
    from reelforge.engine.agent import nvenc_sessions  # the agent's rule for a card's NVENC session limit

    found = []
    for gpu in gpus.gpus():
        entry: dict[str, Any] = {"index": gpu["index"], "name": gpu["name"]}
        if "memory.total" in gpu:
            entry["memory_total_mb"] = gpu["memory.total"]
        if "memory.used" in gpu:
            entry["memory_used_mb"] = gpu["memory.used"]
        if "utilization.gpu" in gpu:
            entry["utilization"] = gpu["utilization.gpu"] / 100
        if "encoder.stats.sessionCount" in gpu:  # left out by nvidia-smi on cards without NVENC
            entry["nvenc_sessions_in_use"] = int(gpu["encoder.stats.sessionCount"])
        entry["nvenc_sessions"] = nvenc_sessions(gpu["name"])
        found.append(entry)
    return {"cpu_cores": os.cpu_count() or 1, "gpus": found}


@inspect_command(name=COMMAND)
def reelforge_resources(state: Any) -> dict[str, Any]:
    """The worker's side of the broadcast (runs in the worker's consumer)."""
    consumer = state.consumer
    queues = [q.name for q in consumer.task_consumer.queues] if consumer.task_consumer else []
    return {"queues": sorted(queues), "concurrency": getattr(consumer.pool, "limit", None),
            "running": len(worker_state.active_requests), **machine_resources()}


def celery_workers(app: Celery, timeout_s: float = 1.0) -> list[dict[str, Any]]:
    """Every live worker's answer, by name (what waits `timeout_s` for the answers: the broker round trip)."""
    replies = flatten_reply(app.control.broadcast(COMMAND, reply=True, timeout=timeout_s) or [])
    return [{"name": name, **reply} for name, reply in sorted(replies.items()) if isinstance(reply, dict)]
