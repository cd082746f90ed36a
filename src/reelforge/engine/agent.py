"""`reelforge agent`: a worker on any machine that reaches the service only over HTTPS.

It holds an agent token and nothing else — no database URL, no broker URL, no storage credentials. It
registers its resources (detected here, overridable on the command line), then each slot long-polls for
a job, runs it in a JobHost through the normal Runner (so a cancel kills the host's ffmpeg), and reports
through HttpControl. With `idle_exit_s`, it exits once no slot has had work for that long, so a rented
machine can be destroyed. A revoked token stops it at once (its running job is killed; the service
retries the job elsewhere).

How many jobs at once: `concurrency` when given, else what the GPU allows — one per NVENC session it
can hold and per 4 GB of VRAM (a transcription or matting model each), at least one; one without a GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from reelforge.config import Settings
from reelforge.engine.control_http import HttpControl, NoBacklog
from reelforge.engine.host import JobHost
from reelforge.engine.runner import Runner
from reelforge.engine.services import Services

log = logging.getLogger("reelforge.agent")
EXIT_REFUSED = 3


@dataclass
class Resources:
    gpu_name: str | None = None
    vram_gb: float = 0.0
    cuda: str | None = None
    nvenc_sessions: int = 0
    cpu_cores: int = 1

    def slots(self) -> int:
        if not self.gpu_name:
            return 1
        by_vram = int(self.vram_gb // 4) if self.vram_gb else 1
        by_nvenc = self.nvenc_sessions if self.nvenc_sessions else by_vram
        return max(1, min(by_vram, by_nvenc, self.cpu_cores))


def nvenc_sessions(gpu_name: str) -> int:
    """NVENC sessions a GPU can hold: none on the compute-only data-centre parts, the driver's consumer
    limit (8) on GeForce, unlimited (counted as 16) on professional cards."""
    name = gpu_name.upper()
    if re.search(r"\b(A100|H100|H200|H800|A800|B100|B200|V100)\b", name):
        return 0
    return 8 if "GEFORCE" in name else 16


def detect_resources() -> Resources:
    """This machine's CPU cores and, when `nvidia-smi` answers, its first GPU."""
    found = Resources(cpu_cores=os.cpu_count() or 1)
    if shutil.which("nvidia-smi") is None:
        return found
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits"],
                               capture_output=True, text=True, timeout=10, check=True).stdout
        banner = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return found
    return parse_nvidia_smi(query, banner, found)


def parse_nvidia_smi(query: str, banner: str, found: Resources) -> Resources:
    """`query`: `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` (one line per GPU,
    memory in MiB); `banner`: plain `nvidia-smi`, whose header names the CUDA version the driver supports."""
    first = query.strip().splitlines()[0] if query.strip() else ""
    name, sep, mem = first.rpartition(",")
    if not sep or not name.strip():
        return found
    found.gpu_name = name.strip()
    with contextlib.suppress(ValueError):
        found.vram_gb = round(float(mem.strip()) / 1024, 1)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", banner)
    found.cuda = cuda.group(1) if cuda else None
    found.nvenc_sessions = nvenc_sessions(found.gpu_name)
    return found


class Agent:
    def __init__(self, settings: Settings, control: HttpControl, *, queues: list[str], resources: Resources,
                 concurrency: int | None = None, idle_exit_s: float | None = None) -> None:
        self.settings = settings
        self.control = control
        self.queues = queues
        self.resources = resources
        self.concurrency = concurrency or resources.slots()
        self.idle_exit_s = idle_exit_s
        self._stop = threading.Event()
        self._busy = 0
        self._last_work = time.monotonic()
        self._lock = threading.Lock()
        self._hosts: list[JobHost] = []
        # GPU memory held by running jobs; one claim is in flight at a time, so each claim states the
        # memory really free (two slots polling at once could otherwise both take a job for the same GB)
        self._vram_held = 0.0
        self._claiming = threading.Lock()
        self.worker_prefix = f"{socket.gethostname()[:20]}:{os.getpid()}:{uuid.uuid4().hex[:4]}"

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> int:
        # `slots`: how many jobs it runs at once, which the service counts when it sizes a job's chunks
        info = self.control.register({**asdict(self.resources), "slots": self.concurrency})
        # the service's lease timings, so this agent renews as often as the service expects
        self.settings = self.settings.replace(heartbeat_s=float(info["heartbeat_s"]),
                                              lease_ttl_s=float(info["lease_ttl_s"]))
        log.info("agent %s registered: queues=%s slots=%d resources=%s", info["name"], ",".join(self.queues),
                 self.concurrency, asdict(self.resources))
        services = Services(self.settings, self.control.uploads, self.control, NoBacklog())
        runner = Runner(services)
        threads = []
        for i in range(self.concurrency):
            host = JobHost(self.settings)
            self._hosts.append(host)
            t = threading.Thread(target=self._slot, args=(i, host, runner), name=f"agent-slot-{i}", daemon=True)
            t.start()
            threads.append(t)
        try:
            while not self._stop.wait(0.2):
                if self.control.refused:
                    log.error("the service refused this agent: %s", self.control.refused)
                    self._stop.set()
                elif self._idle_too_long():
                    log.info("no work for %.0f s: exiting", self.idle_exit_s)
                    self._stop.set()
        finally:
            self._stop.set()
            # each slot's runner sees `stopping`: it marks its job interrupted, kills the host and gives the
            # job back without spending an attempt; a slot still stuck after that has its host killed here
            deadline = time.monotonic() + 20
            for t in threads:
                t.join(timeout=max(0.1, deadline - time.monotonic()))
            for host in self._hosts:
                host.close()
            self.control.close()
        return EXIT_REFUSED if self.control.refused else 0

    def claim_resources(self) -> dict[str, Any]:
        """The declared resources, with the GPU memory the running jobs do not hold."""
        with self._lock:
            free = max(0.0, self.resources.vram_gb - self._vram_held)
        return {**asdict(self.resources), "slots": self.concurrency, "vram_free_gb": round(free, 2)}

    def hold(self, job_id: str) -> float:
        """Count a claimed job's GPU memory as held until it ends (a CPU-only job, or this agent has no GPU:
        nothing)."""
        needs = self.control.needs(job_id)
        vram = float(needs.get("vram_gb") or 0.0)
        if not self.resources.gpu_name or needs.get("gpu") not in ("preferred", "required") \
                or vram > self.resources.vram_gb:
            return 0.0
        with self._lock:
            self._vram_held += vram
        return vram

    def _idle_too_long(self) -> bool:
        if self.idle_exit_s is None:
            return False
        with self._lock:
            return self._busy == 0 and time.monotonic() - self._last_work >= self.idle_exit_s

    def _slot(self, index: int, host: JobHost, runner: Runner) -> None:
        worker_id = f"{self.worker_prefix}:{index}"
        while not self._stop.is_set() and not self.control.refused:
            wait = self.control.wait_s
            if self.idle_exit_s is not None:
                wait = max(0.5, min(wait, self.idle_exit_s))
            try:
                with self._claiming:
                    job = self.control.claim_next(worker_id, self.queues, wait_s=wait,
                                                  resources=self.claim_resources())
                    held = self.hold(job.id) if job is not None else 0.0
            except Exception:
                if self.control.refused:
                    return
                log.exception("claim failed")
                time.sleep(1.0)
                continue
            if job is None:
                continue
            with self._lock:
                self._busy += 1
            try:
                log.info("running %s (%s, attempt %d)", job.id, job.op, job.attempts)
                status = runner.run_claimed(job, host, worker_id, stopping=self._stop.is_set,
                                            local_cancel=lambda _id: bool(self.control.refused),
                                            workers=self.control.chunk_workers(job.id))
                log.info("%s -> %s", job.id, status.value)
            except Exception:
                log.exception("slot %d failed on %s", index, job.id)
            finally:
                with self._lock:
                    self._busy -= 1
                    self._vram_held = max(0.0, self._vram_held - held)
                    self._last_work = time.monotonic()


def install_signal_handlers(agent: Agent) -> None:
    def handler(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        agent.stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def run_envelope(settings: Settings, api: str, envelope: dict[str, Any], *,
                 on_progress: Callable[[float, str | None], None] | None = None) -> dict[str, Any]:
    """Run one job from its envelope and report through the job token only (a RunPod or Modal handler's
    body: the provider hands the envelope over, no agent token exists there). Returns the final status."""
    control = HttpControl(api, on_progress=on_progress)
    host = JobHost(settings)
    try:
        job = control.adopt(envelope)
        services = Services(settings, control.uploads, control, NoBacklog())
        status = Runner(services).run_claimed(job, host, envelope["worker_id"],
                                              workers=control.chunk_workers(job.id))
        return {"job_id": job.id, "status": status.value}
    finally:
        host.close()
        control.close()
