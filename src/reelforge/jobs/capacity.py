"""Rented GPU capacity: the controller loop that reads the world, asks engine/capacity.py `decide()` what to
do, and does it on Vast.ai (engine/vast.py) — instances found, started, watched and destroyed within the
budgets, each running `reelforge agent` for one queue with an agent token made for that instance alone.

One tick (every `capacity.tick_s`):
  1. the orphan reaper, at start and every `reap_every_s`: our deployment's instances (label
     `reelforge:<deployment>:<key>`) that this controller does not know — left by a crashed controller — are
     destroyed, their agent tokens revoked, their ledger entries closed;
  2. each known instance's status from GET /instances/{id}/; whether its agent registered (its token's
     last_seen_at) and how many jobs it runs now (running jobs' lease owners `agent:<token id>:...`);
  3. the cost of every job an instance finished: price x seconds the job held a slot of it (claim to
     finish) / slots, written to the job's notes (`cost_usd`, `cost_instance`, ...); when the instance is
     destroyed its boot time (creation to registration) is shared out over the jobs it ran (`cost_boot_usd`);
  4. the queues' depths and the queued jobs' resources (NVENC share, VRAM), offers searched (at most once a
     minute per queue; not at all after `search_quota_exceeded` until the next UTC day) and ranked;
  5. `decide()`; its actions carried out: a create re-checks the offer's price first and goes on to the next
     offer when one is taken; a destroy revokes the instance's agent token.

Every instance, job cost and destroy is appended to a ledger (data_dir/capacity/ledger.jsonl): the day's
spend is computed from it (so a restarted controller still knows what today cost), `reelforge capacity
cost` reads it, and /metrics exports it (CapacityCollector).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from reelforge.config import Settings
from reelforge.engine.capacity import (
    Budget,
    Create,
    Destroy,
    Hold,
    InstanceView,
    Limits,
    QueueWork,
    RankedOffer,
    decide,
    rank_offers,
    spend,
)
from reelforge.engine.vast import (
    Instance,
    OfferFilter,
    OfferTaken,
    SearchQuotaExceeded,
    VastClient,
    VastError,
)
from reelforge.jobs.store import Stores
from reelforge.ops.registry import get_operation

log = logging.getLogger("reelforge.capacity")
OFFERS_TTL_S = 60.0
DEFAULT_JOB_S = 60.0
CREATE_GRACE_S = 600.0  # longer than any create call with its retries: a record without an id older is dead


def label_prefix(deployment: str) -> str:
    return f"reelforge:{deployment}:"


def token_name(key: str) -> str:
    return f"vast-{key}"


def ledger_path(settings: Settings) -> Path:
    return settings.service.data_dir / "capacity" / "ledger.jsonl"


def day_start(now: float) -> float:
    d = dt.datetime.fromtimestamp(now, dt.UTC).date()
    return dt.datetime(d.year, d.month, d.day, tzinfo=dt.UTC).timestamp()


# ------------------------------------------------------------------ the ledger
class Ledger:
    """Append-only JSON lines: what was rented, when, at what price, and what each job cost."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def append(self, event: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"t": round(time.time(), 3), **event}, sort_keys=True)
        with self._lock, self.path.open("a") as fh:
            fh.write(line + "\n")

    def events(self) -> Iterator[dict[str, Any]]:
        if not self.path.exists():
            return
        with self.path.open() as fh:
            for line in fh:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue  # a torn last line after a crash
                if isinstance(ev, dict):
                    yield ev

    def summary(self, now: float | None = None) -> LedgerSummary:
        now = time.time() if now is None else now
        out = LedgerSummary()
        for ev in self.events():
            kind, key = ev.get("ev"), str(ev.get("key") or "")
            if kind == "create":
                out.instances[key] = {"key": key, "vast_id": ev.get("vast_id"), "queue": ev.get("queue"),
                                      "gpu": ev.get("gpu"), "dph": float(ev.get("dph") or 0.0),
                                      "agent_id": ev.get("agent_id"), "by": ev.get("by"),
                                      "created_at": float(ev["t"]), "destroyed_at": None, "reason": None,
                                      "registered_at": None, "jobs": 0}
            elif kind == "created" and key in out.instances:
                out.instances[key]["vast_id"] = ev.get("vast_id")
            elif kind == "create_failed":
                out.instances.pop(key, None)  # the provider never rented it: nothing to pay
            elif kind == "register" and key in out.instances:
                out.instances[key]["registered_at"] = float(ev["t"])
            elif kind == "destroy" and key in out.instances and out.instances[key]["destroyed_at"] is None:
                out.instances[key]["destroyed_at"] = float(ev["t"])
                out.instances[key]["reason"] = ev.get("reason")
            elif kind == "job":
                op = str(ev.get("op") or "?")
                cost = float(ev.get("cost_usd") or 0.0)
                out.jobs += 1
                out.job_usd += cost
                out.by_op.setdefault(op, [0, 0.0, 0.0])
                out.by_op[op][0] += 1
                out.by_op[op][1] += cost
                out.by_op[op][2] += float(ev.get("video_s") or 0.0)
                if ev.get("batch"):
                    out.by_batch[str(ev["batch"])] = out.by_batch.get(str(ev["batch"]), 0.0) + cost
                if key in out.instances:
                    out.instances[key]["jobs"] += 1
            elif kind == "boot_share":
                share = float(ev.get("usd") or 0.0)
                out.job_usd += share
                op = str(ev.get("op") or "?")
                if op in out.by_op:
                    out.by_op[op][1] += share
                if ev.get("batch"):
                    out.by_batch[str(ev["batch"])] = out.by_batch.get(str(ev["batch"]), 0.0) + share
        for inst in out.instances.values():
            end = inst["destroyed_at"] if inst["destroyed_at"] is not None else now
            inst["hours"] = max(0.0, end - inst["created_at"]) / 3600
            inst["usd"] = spend(inst["dph"], inst["created_at"], end)
        return out

    def spent_since(self, start: float, now: float) -> float:
        total = 0.0
        for inst in self.summary(now).instances.values():
            end = inst["destroyed_at"] if inst["destroyed_at"] is not None else now
            total += spend(inst["dph"], max(start, inst["created_at"]), end)
        return total


@dataclass
class LedgerSummary:
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: int = 0
    job_usd: float = 0.0
    by_op: dict[str, list[Any]] = field(default_factory=dict)  # op -> [jobs, usd, video seconds]
    by_batch: dict[str, float] = field(default_factory=dict)

    @property
    def instance_hours(self) -> float:
        return sum(i["hours"] for i in self.instances.values())

    @property
    def total_usd(self) -> float:
        return sum(i["usd"] for i in self.instances.values())

    def open(self) -> list[dict[str, Any]]:
        return [i for i in self.instances.values() if i["destroyed_at"] is None]


def batch_estimate(settings: Settings, op: str, jobs_by_queue: dict[str, int]) -> dict[str, Any] | None:
    """What a batch's jobs would take of rented capacity, for a dry run: the instances the controller may start
    for them within its limits and, when jobs of this op have run on rented instances before, their cost at
    the ledger's measured $ per job (boot shares included). The provider is not asked (a dry run must not search
    offers, and live prices move): None when no capacity is configured or none of the jobs' queues is rented."""
    cap = settings.capacity
    rented = {q: n for q, n in jobs_by_queue.items() if n and q in cap.queues}
    if not cap.provider or not rented:
        return None
    jobs = sum(rented.values())
    wanted = sum(min(cap.max_instances_per_queue, -(-n // cap.jobs_per_instance)) for n in rented.values())
    count, usd, _video_s = Ledger(ledger_path(settings)).summary().by_op.get(op) or (0, 0.0, 0.0)
    per_job = usd / count if count else None
    basis = (f"{count} earlier {op} jobs on rented instances cost ${per_job:.6f} each (capacity ledger)"
             if per_job is not None else f"no {op} job has run on rented capacity yet: no cost estimate")
    return {"provider": cap.provider, "queues": rented, "jobs": jobs, "instances": min(cap.max_instances, wanted),
            "max_dph": cap.max_dph, "max_day_usd": cap.max_day_usd,
            "usd_per_job": None if per_job is None else round(per_job, 6),
            "estimate_usd": None if per_job is None else round(per_job * jobs, 4), "basis": basis}


class CapacityCollector:
    """/metrics: rented capacity from the ledger (so it is right whichever process runs the controller)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def collect(self) -> Any:
        s = self.ledger.summary()
        live = s.open()
        yield GaugeMetricFamily("reelforge_capacity_instances", "Rented instances alive now", value=len(live))
        yield GaugeMetricFamily("reelforge_capacity_dollars_per_hour", "$/hour of the rented instances alive now",
                                value=sum(i["dph"] for i in live))
        yield CounterMetricFamily("reelforge_capacity_instance_hours", "Instance-hours rented", value=s.instance_hours)
        yield CounterMetricFamily("reelforge_capacity_spent_usd", "Dollars spent on rented instances",
                                  value=s.total_usd)
        cost = CounterMetricFamily("reelforge_capacity_job_cost_usd", "Dollars of rented time jobs used, by op",
                                   labels=["op"])
        per_min = GaugeMetricFamily("reelforge_capacity_usd_per_video_minute",
                                    "Dollars of rented time per finished video minute, by op", labels=["op"])
        for op, (_n, usd, video_s) in sorted(s.by_op.items()):
            cost.add_metric([op], usd)
            if video_s > 0:
                per_min.add_metric([op], usd / (video_s / 60))
        yield cost
        yield per_min


# ------------------------------------------------------------------ the controller
@dataclass
class Tracked:
    key: str
    queue: str
    offer_id: int
    dph: float
    gpu: str
    created_at: float
    agent_id: str
    vast_id: int | None = None
    status: str = ""
    status_since: float | None = None
    registered_at: float | None = None
    last_busy_at: float | None = None
    busy: int = 0
    jobs: list[tuple[str, str, str | None]] = field(default_factory=list)  # (job id, op, batch) it ran

    def view(self) -> InstanceView:
        return InstanceView(key=self.key, queue=self.queue, dph=self.dph, created_at=self.created_at,
                            status=self.status, status_since=self.status_since, registered_at=self.registered_at,
                            last_busy_at=self.last_busy_at, busy=self.busy, vast_id=self.vast_id)


def offer_filter(settings: Settings, min_vram_gb: float = 0.0) -> OfferFilter:
    c = settings.capacity
    return OfferFilter(gpu_names=tuple(c.gpu_names), min_gpu_ram_gb=max(c.min_gpu_ram_gb, min_vram_gb),
                       max_dph=min(c.max_offer_dph, c.max_dph), min_reliability=c.min_reliability,
                       verified=c.verified_only, min_cuda=c.min_cuda, min_disk_gb=c.disk_gb,
                       min_inet_down_mbps=c.min_inet_down_mbps, geolocations=tuple(c.geolocations))


def limits_from(settings: Settings) -> Limits:
    c = settings.capacity
    return Limits(max_instances=c.max_instances, max_instances_per_queue=c.max_instances_per_queue,
                  max_dph=c.max_dph, max_day_usd=c.max_day_usd, max_lifetime_s=c.max_lifetime_h * 3600,
                  idle_s=c.idle_minutes * 60, boot_timeout_s=c.boot_timeout_s, broken_grace_s=c.broken_grace_s,
                  jobs_per_instance=c.jobs_per_instance, slots=c.slots,
                  day_margin_s=max(3 * c.tick_s, 60.0))


class CapacityController:
    def __init__(self, settings: Settings, stores: Stores, client: VastClient | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        c = settings.capacity
        self.settings = settings
        self.stores = stores
        self.client = client or VastClient(c.vast_api_key, base_url=c.vast_base_url)
        self.clock = clock
        self.ledger = Ledger(ledger_path(settings))
        self.limits = limits_from(settings)
        self.prefix = label_prefix(c.deployment)
        self.known: dict[str, Tracked] = {}
        self.holds: dict[str, str] = {}
        self.search_blocked_until = 0.0
        self.search_note: str | None = None
        self._offers: dict[str, tuple[float, list[RankedOffer]]] = {}
        self._next_reap = 0.0
        self._cost_cursor = clock() - 60
        self._job_s: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the loop
    def start(self) -> None:
        self._check_config()
        self._thread = threading.Thread(target=self.run, name="reelforge-capacity", daemon=True)
        self._thread.start()

    def run(self) -> None:
        log.info("capacity controller for %s: queues %s, at most %d instance(s), $%.2f/h, $%.2f/day",
                 self.prefix.rstrip(":"), ",".join(self.settings.capacity.queues), self.limits.max_instances,
                 self.limits.max_dph, self.limits.max_day_usd)
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("capacity tick failed")
            self._stop.wait(self.settings.capacity.tick_s)

    def stop(self, destroy: bool | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.settings.capacity.destroy_on_stop if destroy is None else destroy:
            for t in list(self.known.values()):
                self._destroy(t, "the controller stopped")
        self.client.close()

    def _check_config(self) -> None:
        c = self.settings.capacity
        if not c.vast_api_key.get_secret_value():
            raise ValueError("capacity.provider is vast but REELFORGE_VAST_API_KEY is not set")
        if not c.image:
            raise ValueError("capacity.provider is vast but REELFORGE_CAPACITY_IMAGE (a Docker image with "
                             "ReelForge and ffmpeg) is not set")

    def tick(self) -> list[Any]:
        now = self.clock()
        if now >= self._next_reap:
            self.reap()
            self._next_reap = now + self.settings.capacity.reap_every_s
        self._adopt()
        self._refresh(now)
        self._record_costs()
        work = self._work()
        offers = self._ranked_offers(work, now)
        actions = self._decide(work, offers, now)
        self._apply(actions, work, now)
        return actions

    def _decide(self, work: dict[str, QueueWork], offers: dict[str, list[RankedOffer]], now: float) -> list[Any]:
        budget = Budget(spent_today_usd=self.ledger.spent_since(day_start(now), now))
        return decide(work, [t.view() for t in self.known.values()], offers, self.limits, budget, now)

    # ---- reading the world
    def _refresh(self, now: float) -> None:
        owners = self.stores.jobs.running_owners()
        for t in list(self.known.values()):
            if t.vast_id is not None:
                try:
                    inst = self.client.instance(t.vast_id)
                except VastError as exc:  # unknown this tick: the last status stands
                    log.warning("vast: status of %s unknown: %s", t.key, exc)
                else:
                    if inst is None:
                        log.warning("vast: instance %s (%s) is gone", t.key, t.vast_id)
                        self._forget(t, "Vast.ai no longer has it")
                        continue
                    if inst.actual_status != t.status:
                        t.status, t.status_since = inst.actual_status, now
            if t.registered_at is None:
                rec = self.stores.agents.get(t.agent_id)
                if rec is not None and rec.last_seen_at is not None:
                    t.registered_at = rec.last_seen_at
                    self.ledger.append({"ev": "register", "key": t.key})
                    log.info("capacity: %s registered after %.0f s", t.key, rec.last_seen_at - t.created_at)
            prefix = f"agent:{t.agent_id}:"
            t.busy = sum(1 for o in owners if o.startswith(prefix))
            if t.busy:
                t.last_busy_at = now

    def _record_costs(self) -> None:
        by_agent = {t.agent_id: t for t in self.known.values()}
        if not by_agent:
            self._cost_cursor = max(self._cost_cursor, self.clock() - 60)
            return
        for job in self.stores.jobs.finished_since(self._cost_cursor):
            self._cost_cursor = max(self._cost_cursor, job.finished_at or 0.0)
            t = by_agent.get(str(job.notes.get("agent_id") or ""))
            if t is None or "cost_usd" in job.notes or job.finished_at is None:
                continue
            claimed = job.notes.get("claimed_at")
            start = float(claimed) if isinstance(claimed, int | float) else (job.started_at or job.finished_at)
            held = max(0.0, job.finished_at - start)
            cost = round(t.dph * held / 3600 / self.limits.slots, 6)
            video_s = (job.result or {}).get("data", {}).get("duration_s") if job.status.value == "succeeded" \
                else None
            batch = job.notes.get("batch_id")
            self.stores.jobs.add_notes(job.id, {"cost_usd": cost, "cost_instance": t.key, "cost_dph": t.dph,
                                                "cost_held_s": round(held, 3), "cost_gpu": t.gpu})
            self.ledger.append({"ev": "job", "key": t.key, "job_id": job.id, "op": job.op, "cost_usd": cost,
                                "held_s": round(held, 3), "status": job.status.value, "batch": batch,
                                "video_s": float(video_s) if isinstance(video_s, int | float) else 0.0})
            t.jobs.append((job.id, job.op, str(batch) if batch else None))
            t.last_busy_at = max(t.last_busy_at or 0.0, job.finished_at)
            ema = self._job_s.get(t.queue)
            speed_adj = held  # seconds on this GPU; good enough as the queue's per-job estimate
            self._job_s[t.queue] = speed_adj if ema is None else 0.8 * ema + 0.2 * speed_adj

    def _work(self) -> dict[str, QueueWork]:
        queues = list(self.settings.capacity.queues)
        counts = self.stores.jobs.queue_counts(queues)
        out = {}
        for q in queues:
            queued, running = counts.get(q, (0, 0))
            nvenc = required = 0
            vram = 0.0
            for _id, op, params in self.stores.jobs.queued_candidates([q], 200) if queued else []:
                try:
                    need = get_operation(op).resources_for(params)
                except Exception:
                    continue
                nvenc += int(need.nvenc)
                required += int(need.gpu == "required")
                vram = max(vram, need.vram_gb)
            sample = min(queued, 200) or 1
            scale = queued / sample
            out[q] = QueueWork(queue=q, queued=queued, running=running, nvenc_jobs=round(nvenc * scale),
                               max_vram_gb=vram, gpu_required=round(required * scale),
                               job_s=self._job_s.get(q, DEFAULT_JOB_S))
        return out

    def _ranked_offers(self, work: dict[str, QueueWork], now: float) -> dict[str, list[RankedOffer]]:
        out: dict[str, list[RankedOffer]] = {}
        for q, w in work.items():
            cached = self._offers.get(q)
            if w.queued <= 0:
                out[q] = cached[1] if cached else []
                continue
            if cached is None or now - cached[0] >= OFFERS_TTL_S:
                offers = self.search(offer_filter(self.settings, w.max_vram_gb), now)
                if offers is not None:
                    ranked = rank_offers(offers, w, slots=self.limits.slots,
                                         boot_s=min(self.limits.boot_timeout_s, 300.0))
                    self._offers[q] = (now, ranked)
                    cached = self._offers[q]
            out[q] = cached[1] if cached else []
        return out

    def search(self, flt: OfferFilter, now: float | None = None) -> list[Any] | None:
        """Offers for the filter, or None while searching is blocked (the daily quota)."""
        now = self.clock() if now is None else now
        if now < self.search_blocked_until:
            return None
        try:
            return self.client.search_offers(flt)
        except SearchQuotaExceeded as exc:
            self.search_blocked_until = exc.until
            self.search_note = str(exc)
            log.error("capacity: %s Running instances are still watched; none is started.", exc)
            return None
        except VastError as exc:
            log.warning("capacity: offer search failed: %s", exc)
            return None

    # ---- acting
    def _apply(self, actions: list[Any], work: dict[str, QueueWork], now: float) -> None:
        self.holds = {}
        for a in actions:
            if isinstance(a, Destroy) and a.key in self.known:
                self._destroy(self.known[a.key], a.reason)
        creates = [a for a in actions if isinstance(a, Create)]
        for a in actions:
            if isinstance(a, Hold):
                if self.holds.get(a.queue) != a.reason:
                    log.info("capacity: %s: not starting more: %s", a.queue, a.reason)
                self.holds[a.queue] = a.reason
        if self.search_note and now >= self.search_blocked_until:
            self.search_note = None  # a new UTC day: searching again
        if self.search_note:
            for q, w in work.items():
                if w.queued:
                    self.holds[q] = self.search_note
        tries = 0
        while creates and tries < 10:
            a = creates.pop(0)
            tries += 1
            if not self._create(a, now):
                # taken or dearer than budgeted: drop it from the offers and decide again without it
                self._drop_offer(a.queue, a.offer.id)
                offers = {q: v[1] for q, v in self._offers.items()}
                creates = [x for x in self._decide(work, offers, now) if isinstance(x, Create)]

    def _drop_offer(self, queue: str, offer_id: int) -> None:
        for q, (at, ranked) in list(self._offers.items()):
            self._offers[q] = (at, [r for r in ranked if r.offer.id != offer_id])

    def _create(self, a: Create, now: float, by: str = "controller") -> bool:
        c = self.settings.capacity
        try:
            fresh = self.client.offer(a.offer.id)  # the price re-checked at create time
        except VastError as exc:
            log.warning("capacity: offer %s could not be re-checked: %s", a.offer.id, exc)
            return False
        if fresh is None:
            log.info("capacity: offer %s was taken before we could create: trying the next", a.offer.id)
            return False
        live_dph = sum(t.dph for t in self.known.values())
        if fresh.dph_total > a.offer.dph_total + 1e-9 and (
                live_dph + fresh.dph_total > self.limits.max_dph + 1e-9 or fresh.dph_total > c.max_offer_dph):
            log.info("capacity: offer %s now costs $%.3f/h (was $%.3f): over budget, trying the next", a.offer.id,
                     fresh.dph_total, a.offer.dph_total)
            return False
        key = uuid.uuid4().hex[:10]
        token, rec = self.stores.agents.create_token(token_name(key), [a.queue])
        api = (c.agent_api_url or self.settings.service.public_url).rstrip("/")
        onstart = c.onstart.format(api=shlex.quote(api), queues=shlex.quote(a.queue), slots=c.slots,
                                   idle_exit=f"{c.idle_minutes:g}")
        env = {"REELFORGE_AGENT_TOKEN": token, "REELFORGE_AGENT_API": api}
        t = Tracked(key=key, queue=a.queue, offer_id=fresh.id, dph=fresh.dph_total, gpu=fresh.gpu_name,
                    created_at=now, agent_id=rec.id)
        # recorded before the provider is asked: a process killed between the two leaves a record the reaper
        # closes with the instance (its cost counted), not an instance the ledger never heard of
        self.ledger.append({"ev": "create", "key": key, "vast_id": None, "queue": a.queue, "dph": t.dph,
                            "gpu": t.gpu, "offer_id": fresh.id, "agent_id": rec.id, "by": by})
        try:
            t.vast_id = self.client.create_instance(fresh.id, image=c.image, disk_gb=c.disk_gb, env=env,
                                                    label=f"{self.prefix}{key}", onstart=onstart, runtype=c.runtype)
        except OfferTaken as exc:
            self.stores.agents.revoke(rec.id)
            self.ledger.append({"ev": "create_failed", "key": key, "reason": "offer taken"})
            log.info("capacity: offer %s was taken (%s): trying the next", fresh.id, exc)
            return False
        except VastError as exc:
            self.stores.agents.revoke(rec.id)
            self.ledger.append({"ev": "create_failed", "key": key, "reason": str(exc)[:200]})
            log.warning("capacity: create on offer %s failed: %s", fresh.id, exc)
            return True  # not the offer's fault: no retry on another one this tick
        self.known[key] = t
        self.ledger.append({"ev": "created", "key": key, "vast_id": t.vast_id})
        log.info("capacity: started %s (vast %s, %s, $%.3f/h) for %s: %s", key, t.vast_id, t.gpu, t.dph, a.queue,
                 a.reason)
        return True

    def up(self, n: int, queue: str, *, dry_run: bool = False) -> list[RankedOffer]:
        """Start n instances for a queue now (`reelforge capacity up`), within the limits and the hourly
        budget (counting every live instance of this deployment); the offers chosen. Dry run: none started."""
        now = self.clock()
        live = [i for i in self.client.instances() if i.label.startswith(self.prefix)]
        dph = sum(i.dph_total for i in live)
        w = self._work().get(queue) or QueueWork(queue)
        w = QueueWork(queue, queued=max(1, w.queued), running=w.running, nvenc_jobs=w.nvenc_jobs,
                      max_vram_gb=w.max_vram_gb, gpu_required=w.gpu_required, job_s=w.job_s)
        offers = self.search(offer_filter(self.settings, w.max_vram_gb), now) or []
        ranked = rank_offers(offers, w, slots=self.limits.slots, boot_s=min(self.limits.boot_timeout_s, 300.0))
        chosen: list[RankedOffer] = []
        for r in ranked:
            if len(chosen) >= n or len(live) + len(chosen) >= self.limits.max_instances:
                break
            if dph + r.offer.dph_total > self.limits.max_dph + 1e-9:
                continue
            if not dry_run:
                self._create(Create(queue, r.offer, r.expected_usd, "capacity up"), now, by="up")
            if dry_run or any(t.offer_id == r.offer.id for t in self.known.values()):
                chosen.append(r)
                dph += r.offer.dph_total
        return chosen

    def down(self, ids: list[str] | None) -> list[str]:
        """Destroy our instances by key or Vast.ai id (None: all of this deployment's); what was destroyed."""
        gone = []
        opened = {i["key"]: i for i in self.ledger.summary().open()}
        for inst in self.client.instances():
            if not inst.label.startswith(self.prefix):
                continue
            key = inst.label[len(self.prefix):]
            if ids is not None and key not in ids and str(inst.id) not in ids:
                continue
            self.client.destroy(inst.id)  # False: already gone, which is as good
            agent = (opened.get(key) or {}).get("agent_id")
            self.stores.agents.revoke(str(agent) if agent else token_name(key))
            self.ledger.append({"ev": "destroy", "key": key, "vast_id": inst.id, "reason": "capacity down"})
            gone.append(f"{key} (vast {inst.id})")
        return gone

    def _destroy(self, t: Tracked, reason: str) -> None:
        if t.vast_id is not None:
            try:
                self.client.destroy(t.vast_id)
            except VastError as exc:
                log.error("capacity: destroying %s (vast %s) failed: %s; will try again", t.key, t.vast_id, exc)
                return
        log.info("capacity: destroyed %s (vast %s): %s", t.key, t.vast_id, reason)
        self._forget(t, reason)

    def _forget(self, t: Tracked, reason: str) -> None:
        self.stores.agents.revoke(t.agent_id)
        self._record_costs()
        self.known.pop(t.key, None)
        now = self.clock()
        self.ledger.append({"ev": "destroy", "key": t.key, "vast_id": t.vast_id, "reason": reason})
        boot_end = t.registered_at if t.registered_at is not None else now
        boot_usd = spend(t.dph, t.created_at, boot_end)
        if t.jobs and boot_usd > 0:
            share = round(boot_usd / len(t.jobs), 6)
            for job_id, op, batch in t.jobs:
                rec = self.stores.jobs.get_job(job_id)
                if rec is not None:
                    base = float(rec.notes.get("cost_usd") or 0.0)
                    self.stores.jobs.add_notes(job_id, {"cost_boot_usd": share, "cost_usd": round(base + share, 6)})
                self.ledger.append({"ev": "boot_share", "key": t.key, "job_id": job_id, "op": op, "usd": share,
                                    "batch": batch})

    def _adopt(self, live: list[Instance] | None = None) -> None:
        """Watch instances `reelforge capacity up` started from another process (they are in the ledger),
        so they count against the budgets from the next tick on. With the provider's list, one whose create
        call is still under way there (recorded, no id yet) is found by its label."""
        by_key = {i.label[len(self.prefix):]: i.id for i in live or [] if i.label.startswith(self.prefix)}
        for made in self.ledger.summary().open():
            key = str(made["key"])
            vast_id = made.get("vast_id") or by_key.get(key)
            if key not in self.known and made.get("by") == "up" and made.get("agent_id") and vast_id:
                self.known[key] = Tracked(key=key, queue=str(made["queue"]), offer_id=0, dph=float(made["dph"]),
                                          gpu=str(made["gpu"] or ""), created_at=float(made["created_at"]),
                                          agent_id=str(made["agent_id"]), vast_id=int(vast_id),
                                          registered_at=made.get("registered_at"))
                log.info("capacity: adopted %s (vast %s), started by `capacity up`", key, vast_id)

    def reap(self) -> int:
        """Destroy our deployment's instances this controller does not know; how many."""
        try:
            instances = self.client.instances()
        except VastError as exc:
            log.warning("capacity: reaper could not list instances: %s", exc)
            return 0
        self._adopt(instances)  # started by `reelforge capacity up` (another process): watched, not reaped
        mine = {t.vast_id for t in self.known.values()}
        recorded = self.ledger.summary().instances
        reaped = 0
        for inst in instances:
            if not inst.label.startswith(self.prefix) or inst.id in mine:
                continue
            key = inst.label[len(self.prefix):]
            try:
                self.client.destroy(inst.id)
            except VastError as exc:
                log.error("capacity: reaper could not destroy %s: %s", inst.id, exc)
                continue
            reaped += 1
            self.stores.agents.revoke(token_name(key))
            if key not in recorded:  # rented with no record (an older release, a lost ledger): its cost still counts
                self.ledger.append({"ev": "create", "key": key, "vast_id": inst.id, "dph": inst.dph_total,
                                    "gpu": inst.gpu_name, "t": inst.start_date or time.time(),
                                    "by": "found by the reaper"})
            self.ledger.append({"ev": "destroy", "key": key, "vast_id": inst.id, "reason": "orphan (reaped)"})
            log.warning("capacity: reaped orphan instance %s (%s, label %s)", inst.id, inst.actual_status, inst.label)
        # ledger entries of instances that no longer exist anywhere are closed too (a crash lost their destroy)
        live_ids = {i.id for i in instances}
        live_keys = {i.label[len(self.prefix):] for i in instances if i.label.startswith(self.prefix)}
        for open_inst in self.ledger.summary().open():
            key = open_inst["key"]
            if key in self.known or key in live_keys or open_inst["vast_id"] in live_ids:
                continue
            if open_inst["vast_id"] is None:
                # recorded, then the process died before the provider answered, and no instance carries the
                # label: it was never rented -- unless a create call is still under way elsewhere, so wait
                if time.time() - open_inst["created_at"] > CREATE_GRACE_S:  # the ledger's clock
                    self.ledger.append({"ev": "create_failed", "key": key, "reason": "never rented (reaper)"})
                continue
            self.ledger.append({"ev": "destroy", "key": key, "vast_id": open_inst["vast_id"],
                                "reason": "gone (found closed by the reaper)"})
        return reaped

    def status(self) -> dict[str, Any]:
        return {"instances": [{"key": t.key, "vast_id": t.vast_id, "queue": t.queue, "gpu": t.gpu, "dph": t.dph,
                               "status": t.status, "registered": t.registered_at is not None, "busy": t.busy}
                              for t in list(self.known.values())],
                "holds": dict(self.holds), "search_blocked_until": self.search_blocked_until or None}

