"""Rented capacity, the pure part: which offers are worth taking for a queue's work, and `decide()` — from
queue depths, the queued jobs' resources, our instances and their states, the budgets, the limits and the
offers' prices, the actions to take now (create on an offer, destroy an instance) and why nothing more is done.

No I/O here: jobs/capacity.py reads the world, calls `decide`, and carries the actions out.

Money rules, all counted with instances still starting (they are billed from creation):
- the $/hour of every live instance together never exceeds `max_dph`: a create that would cross it is not made;
- the day's spend (what was spent since UTC midnight + what the live instances will cost over the next
  `day_margin_s`) never exceeds `max_day_usd`: creates that would cross it are not made, and when the live
  instances would cross it, the most expensive are destroyed first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from reelforge.engine.agent import nvenc_sessions
from reelforge.engine.vast import BROKEN, Offer

# Relative throughput of GPU classes for ReelForge's work (whisper, matting, encodes), RTX 3090 = 1.0.
# Rough figures: they order offers by expected cost of the queued work, not promise speeds.
GPU_SPEED: tuple[tuple[str, float], ...] = (
    (r"H200", 2.7), (r"H100", 2.5), (r"B200", 3.0), (r"A100", 1.6), (r"5090", 2.0), (r"4090", 1.6),
    (r"RTX 6000 ADA|6000ADA|L40S?", 1.5), (r"4080", 1.25), (r"A6000", 1.0), (r"3090", 1.0), (r"5080", 1.4),
    (r"3080", 0.85), (r"A5000", 0.8), (r"4070", 0.8), (r"V100", 0.8), (r"A10\b|A10G", 0.75), (r"L4\b", 0.7),
    (r"3070", 0.65), (r"A4000", 0.6), (r"4060", 0.55), (r"3060", 0.5), (r"T4\b", 0.35),
)
DEFAULT_SPEED = 0.7
ENCODE_HEAVY_SHARE = 0.5  # a queue whose queued jobs encode with NVENC at least this often is "encode-heavy"
NO_NVENC_PENALTY = 3.0  # an NVENC encode falls back to x264 on the CPU: this much slower


def gpu_speed(gpu_name: str) -> float:
    name = gpu_name.upper()
    return next((s for pattern, s in GPU_SPEED if re.search(pattern, name)), DEFAULT_SPEED)


def has_nvenc(gpu_name: str) -> bool:
    return nvenc_sessions(gpu_name) > 0


@dataclass(frozen=True)
class QueueWork:
    """A queue's waiting work, as the job store and the ops' resources describe it."""

    queue: str
    queued: int = 0
    running: int = 0
    nvenc_jobs: int = 0  # queued jobs whose op encodes with NVENC when it can
    max_vram_gb: float = 0.0  # the most VRAM a queued job needs on a GPU
    gpu_required: int = 0  # queued jobs that cannot run without a GPU
    job_s: float = 60.0  # expected seconds per job on the reference GPU (from finished jobs, else a default)

    @property
    def encode_heavy(self) -> bool:
        return self.queued > 0 and self.nvenc_jobs >= ENCODE_HEAVY_SHARE * self.queued


@dataclass(frozen=True)
class RankedOffer:
    offer: Offer
    expected_usd: float  # what draining the queued work on one such instance is expected to cost
    expected_h: float


def rank_offers(offers: Iterable[Offer], work: QueueWork, *, slots: int, boot_s: float) -> list[RankedOffer]:
    """Offers that can run this work, cheapest expected cost of the queued work first (not cheapest $/h):
    a faster GPU at a higher price wins when it finishes sooner for less. GPUs without NVENC
    (A100/H100/H200...) are never chosen for an encode-heavy queue; GPUs with too little VRAM never."""
    jobs = max(1, work.queued)
    out = []
    for o in offers:
        nvenc = has_nvenc(o.gpu_name)
        if work.encode_heavy and not nvenc:
            continue
        if o.gpu_ram_gb + 0.05 < work.max_vram_gb:
            continue
        per_job = work.job_s / gpu_speed(o.gpu_name)
        if not nvenc and work.nvenc_jobs:
            share = work.nvenc_jobs / jobs
            per_job *= 1 + share * (NO_NVENC_PENALTY - 1)
        hours = (boot_s + jobs * per_job / max(1, slots)) / 3600
        out.append(RankedOffer(o, round(o.dph_total * hours, 6), hours))
    return sorted(out, key=lambda r: (r.expected_usd, r.offer.dph_total, r.offer.id))


InstanceState = Literal["starting", "running", "broken", "gone"]


@dataclass(frozen=True)
class InstanceView:
    """One of our instances as the controller knows it."""

    key: str  # our name for it (its label's last part, its agent token's name)
    queue: str
    dph: float
    created_at: float
    status: str = ""  # Vast.ai's actual_status ("" while provisioning)
    status_since: float | None = None  # since when it has had this status
    registered_at: float | None = None  # its agent registered with the service
    last_busy_at: float | None = None  # the last moment a job ran on it
    busy: int = 0  # jobs running on it now
    vast_id: int | None = None


@dataclass(frozen=True)
class Limits:
    max_instances: int = 3
    max_instances_per_queue: int = 3
    max_dph: float = 2.0
    max_day_usd: float = 20.0
    max_lifetime_s: float = 12 * 3600.0
    idle_s: float = 600.0
    boot_timeout_s: float = 900.0
    broken_grace_s: float = 120.0  # offline/unknown this long -> destroyed (exited: at once)
    jobs_per_instance: int = 20  # queued jobs per instance before another one is worth starting
    slots: int = 1
    day_margin_s: float = 300.0  # the day budget keeps this much of every live instance's time in reserve


@dataclass(frozen=True)
class Budget:
    spent_today_usd: float = 0.0  # since UTC midnight, live instances counted up to now


@dataclass(frozen=True)
class Create:
    queue: str
    offer: Offer
    expected_usd: float
    reason: str
    kind: Literal["create"] = "create"


@dataclass(frozen=True)
class Destroy:
    key: str
    reason: str
    kind: Literal["destroy"] = "destroy"


@dataclass(frozen=True)
class Hold:
    """Work is waiting but nothing more is started: why (shown by `capacity ls` and in the log)."""

    queue: str
    reason: str
    kind: Literal["hold"] = "hold"


Action = Create | Destroy | Hold


@dataclass
class _Plan:
    actions: list[Action] = field(default_factory=list)
    live: dict[str, InstanceView] = field(default_factory=dict)

    @property
    def dph(self) -> float:
        return sum(i.dph for i in self.live.values())

    def destroy(self, inst: InstanceView, reason: str) -> None:
        self.live.pop(inst.key, None)
        self.actions.append(Destroy(inst.key, reason))


def _destroy_reason(i: InstanceView, lim: Limits, now: float) -> str | None:
    age = now - i.created_at
    if i.status in BROKEN:
        since = now - (i.status_since if i.status_since is not None else now)
        never_up = i.registered_at is None and age >= lim.boot_timeout_s
        if i.status == "exited" or since >= lim.broken_grace_s or never_up:
            return f"instance is {i.status}"
    if i.registered_at is None and age >= lim.boot_timeout_s:
        return f"its agent did not register within {lim.boot_timeout_s:.0f} s (status {i.status or 'none'})"
    if age >= lim.max_lifetime_s:
        return f"reached the maximum lifetime ({lim.max_lifetime_s / 3600:.2f} h)"
    if i.registered_at is not None and i.busy == 0:
        idle = now - max(i.registered_at, i.last_busy_at or 0.0)
        if idle >= lim.idle_s:
            return f"idle for {idle / 60:.1f} min"
    return None


def decide(work: Mapping[str, QueueWork], instances: Sequence[InstanceView],
           offers: Mapping[str, Sequence[RankedOffer]], limits: Limits, budget: Budget, now: float) -> list[Action]:
    """The actions to take now. Pure: the same inputs give the same actions."""
    plan = _Plan(live={i.key: i for i in instances})
    for inst in instances:
        why = _destroy_reason(inst, limits, now)
        if why:
            plan.destroy(inst, why)

    margin_h = limits.day_margin_s / 3600
    # the day budget: live instances are destroyed (dearest first, idle before busy) before it is crossed
    for inst in sorted(plan.live.values(), key=lambda i: (i.busy > 0, -i.dph, i.created_at)):
        if budget.spent_today_usd + plan.dph * margin_h <= limits.max_day_usd:
            break
        plan.destroy(inst, f"the day budget (${limits.max_day_usd:.2f}) would be exceeded")

    taken: set[int] = set()
    create_h = (limits.day_margin_s + limits.boot_timeout_s) / 3600
    for queue in sorted(work):
        w = work[queue]
        mine = [i for i in plan.live.values() if i.queue == queue]
        if w.queued <= 0:
            continue
        want = min(math.ceil((w.queued + w.running) / max(1, limits.jobs_per_instance)),
                   limits.max_instances_per_queue)
        held: str | None = None
        while len(mine) < want:
            if len(plan.live) >= limits.max_instances:
                held = f"at the instance limit ({limits.max_instances})"
                break
            choice: RankedOffer | None = None
            for ranked in offers.get(queue, ()):
                o = ranked.offer
                if o.id in taken:
                    continue
                if plan.dph + o.dph_total > limits.max_dph + 1e-9:
                    held = held or f"the hourly budget (${limits.max_dph:.2f}/h) leaves no room"
                    continue
                if budget.spent_today_usd + (plan.dph + o.dph_total) * create_h > limits.max_day_usd + 1e-9:
                    held = held or f"the day budget (${limits.max_day_usd:.2f}) leaves no room"
                    continue
                choice = ranked
                break
            if choice is None:
                held = held or "no offer matches the filters"
                break
            taken.add(choice.offer.id)
            view = InstanceView(key=f"new-{choice.offer.id}", queue=queue, dph=choice.offer.dph_total, created_at=now)
            plan.live[view.key] = view
            mine.append(view)
            plan.actions.append(Create(queue, choice.offer, choice.expected_usd,
                                       f"{w.queued} queued, {len(mine) - 1} instance(s) for {queue}"))
        if held and len(mine) < want:
            plan.actions.append(Hold(queue, held))
    return plan.actions


def spend(dph: float, start: float, end: float) -> float:
    """Dollars an instance at `dph` costs between two instants."""
    return max(0.0, end - start) * dph / 3600
