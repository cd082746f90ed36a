"""The capacity controller's pure part: offer ranking and decide() (no I/O)."""

from __future__ import annotations

from reelforge.engine.capacity import (
    Budget,
    Create,
    Destroy,
    Hold,
    InstanceView,
    Limits,
    QueueWork,
    decide,
    rank_offers,
)
from reelforge.engine.vast import Offer

NOW = 1_000_000.0


def off(id: int, gpu: str, dph: float, vram: float = 24) -> Offer:
    return Offer(id=id, gpu_name=gpu, num_gpus=1, gpu_ram_gb=vram, dph_total=dph, reliability=0.99, verified=True,
                 rentable=True, rented=False, cuda=12.4, disk_gb=100, inet_down_mbps=500, geolocation="US")


def test_ranking_by_expected_cost_and_never_no_nvenc_for_encodes() -> None:
    offers = [off(1, "RTX 3060", 0.10), off(2, "RTX 4090", 0.30), off(3, "H100 SXM", 0.20), off(4, "A100", 0.12),
              off(5, "RTX 3090", 0.25, vram=8)]
    encodes = QueueWork("gpu", queued=100, nvenc_jobs=80, job_s=60, max_vram_gb=10)
    ranked = [r.offer.id for r in rank_offers(offers, encodes, slots=1, boot_s=120)]
    assert 3 not in ranked and 4 not in ranked  # no NVENC on A100/H100 for an encode-heavy queue
    assert 5 not in ranked  # too little VRAM
    # per job: 3060 at 0.5x speed costs 0.10*120 s; 4090 at 1.6x costs 0.30*37.5 s: the 4090 is cheaper overall
    assert ranked == [2, 1]
    whisper = QueueWork("gpu", queued=100, nvenc_jobs=0, job_s=60)
    assert rank_offers(offers, whisper, slots=1, boot_s=120)[0].offer.id == 4  # A100: fast and cheap, no encodes


def ranked(*offers: Offer, work: QueueWork) -> dict[str, list]:
    return {"gpu": rank_offers(offers, work, slots=1, boot_s=60)}


def test_scale_up_within_hourly_budget_counting_starting_instances() -> None:
    work = {"gpu": QueueWork("gpu", queued=500, job_s=30)}
    lim = Limits(max_instances=5, max_instances_per_queue=5, max_dph=2.0, max_day_usd=100, jobs_per_instance=10)
    starting = InstanceView("a", "gpu", dph=0.9, created_at=NOW - 10, status="loading")
    offers = ranked(off(1, "RTX 4090", 0.6), off(2, "RTX 4090", 0.5), off(3, "RTX 4090", 0.7), work=work["gpu"])
    actions = decide(work, [starting], offers, lim, Budget(0), NOW)
    creates = [a for a in actions if isinstance(a, Create)]
    assert sum(c.offer.dph_total for c in creates) + 0.9 <= 2.0
    assert [c.offer.id for c in creates] == [2, 1]  # 0.9 + 0.5 + 0.6 = 2.0; the 0.7 would cross it
    assert any(isinstance(a, Hold) and "hourly budget" in a.reason for a in actions)


def test_day_budget_blocks_creates_and_destroys_before_it_is_crossed() -> None:
    work = {"gpu": QueueWork("gpu", queued=50)}
    lim = Limits(max_day_usd=10.0, day_margin_s=600, boot_timeout_s=600)
    offers = ranked(off(1, "RTX 4090", 0.5), work=work["gpu"])
    assert [a.kind for a in decide(work, [], offers, lim, Budget(9.9), NOW)] == ["hold"]
    live = [InstanceView("a", "gpu", dph=1.0, created_at=NOW - 3600, registered_at=NOW - 3500, busy=1),
            InstanceView("b", "gpu", dph=0.5, created_at=NOW - 3600, registered_at=NOW - 3500, busy=0,
                         last_busy_at=NOW)]
    actions = decide({"gpu": QueueWork("gpu")}, live, {}, lim, Budget(9.8), NOW)
    # 9.8 + 1.5 * 600/3600 = 10.05 > 10: the idle one goes first; then 9.8 + 1.0/6 = 9.97 fits
    assert actions == [Destroy("b", "the day budget ($10.00) would be exceeded")]


def test_destroys_stuck_broken_idle_and_old_instances() -> None:
    lim = Limits(boot_timeout_s=300, idle_s=600, max_lifetime_s=7200, broken_grace_s=60)
    views = [
        InstanceView("stuck", "gpu", 0.3, created_at=NOW - 301, status="loading"),
        InstanceView("booting", "gpu", 0.3, created_at=NOW - 100, status="loading"),
        InstanceView("exited", "gpu", 0.3, created_at=NOW - 100, status="exited", status_since=NOW - 1),
        InstanceView("offline", "gpu", 0.3, created_at=NOW - 1000, status="offline", status_since=NOW - 30,
                     registered_at=NOW - 900, last_busy_at=NOW),
        InstanceView("idle", "gpu", 0.3, created_at=NOW - 2000, status="running", registered_at=NOW - 1900,
                     last_busy_at=NOW - 601),
        InstanceView("busy-old", "gpu", 0.3, created_at=NOW - 7201, status="running", registered_at=NOW - 7000,
                     busy=1),
        InstanceView("working", "gpu", 0.3, created_at=NOW - 2000, status="running", registered_at=NOW - 1900,
                     busy=1),
    ]
    gone = {a.key: a.reason for a in decide({}, views, {}, lim, Budget(0), NOW) if isinstance(a, Destroy)}
    assert set(gone) == {"stuck", "exited", "idle", "busy-old"}
    assert "register within 300" in gone["stuck"] and "maximum lifetime" in gone["busy-old"]


def test_limits_per_queue_and_in_all_and_no_offer() -> None:
    work = {"gpu": QueueWork("gpu", queued=1000), "gpu-24g": QueueWork("gpu-24g", queued=1000)}
    lim = Limits(max_instances=3, max_instances_per_queue=2, max_dph=100, max_day_usd=1000, jobs_per_instance=1)
    offers = {q: rank_offers([off(i + (10 if q == "gpu" else 20), "RTX 4090", 0.3) for i in range(5)], work[q],
                             slots=1, boot_s=60) for q in work}
    actions = decide(work, [], offers, lim, Budget(0), NOW)
    creates = [a for a in actions if isinstance(a, Create)]
    assert len(creates) == 3 and sum(a.queue == "gpu" for a in creates) == 2
    assert len({a.offer.id for a in creates}) == 3
    assert [a.kind for a in decide({"gpu": QueueWork("gpu", queued=3)}, [], {"gpu": []}, lim, Budget(0), NOW)] \
        == ["hold"]
