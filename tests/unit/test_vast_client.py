"""The Vast.ai client against the local fake of Vast.ai's documented API (tests/fakes/vast.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from reelforge.engine.vast import OfferFilter, OfferTaken, SearchQuotaExceeded, VastAuthError, VastClient
from tests.fakes.vast import FakeVast, offer, serve


@pytest.fixture
def fake() -> Iterator[FakeVast]:
    state = FakeVast(offers=[
        offer(1, "RTX 4090", 0.45),
        offer(2, "RTX 3090", 0.22),
        offer(3, "RTX 3090", 0.18, verified=False),  # cheapest, but unverified
        offer(4, "H100 SXM", 0.15),  # another GPU than asked
        offer(5, "RTX 3090", 0.20, reliability2=0.80),
        offer(6, "RTX 3090", 0.19, gpu_ram=8192),  # too little VRAM
        offer(7, "RTX 3090", 0.21, geolocation="Lagos, NG"),
        offer(8, "RTX 3090", 0.21, inet_down=20.0),
        offer(9, "RTX 3090", 2.50),
    ])
    with serve(state) as running:
        yield running


def client(fake: FakeVast, **kw: object) -> VastClient:
    return VastClient(SecretStr(fake.key), base_url=f"{fake.url}/api/v0", timeout_s=5, backoff_s=0.05, **kw)  # type: ignore[arg-type]


FILTER = OfferFilter(gpu_names=("RTX 3090", "RTX 4090"), min_gpu_ram_gb=16, max_dph=1.0, min_reliability=0.95,
                     min_inet_down_mbps=100, geolocations=("US",))


def test_search_refilters_every_field_and_sorts_by_price(fake: FakeVast) -> None:
    c = client(fake)
    offers = c.search_offers(FILTER)
    assert [o.id for o in offers] == [2, 1]  # 3-9 each fail one field the API was asked to filter on
    assert offers[0].gpu_ram_gb == pytest.approx(24.0, abs=0.1)
    loose = c.search_offers(OfferFilter())
    assert 3 not in {o.id for o in loose} and len(loose) == 8  # only the unverified one is dropped
    assert FILTER.why_not(next(o for o in loose if o.id == 4)) == "GPU H100 SXM"
    c.close()


def test_create_watch_logs_destroy(fake: FakeVast) -> None:
    c = client(fake)
    iid = c.create_instance(2, image="img", disk_gb=20, env={"A": "1"}, label="reelforge:t:k1", onstart="echo hi")
    assert fake.instances[iid].body["cancel_unavail"] is True
    seen = set()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        inst = c.instance(iid)
        assert inst is not None
        seen.add(inst.actual_status)
        if inst.actual_status == "running":
            break
        time.sleep(0.1)
    assert "running" in seen and inst.label == "reelforge:t:k1"
    assert [i.id for i in c.instances()] == [iid]
    assert f"fake instance {iid}" in c.logs(iid)
    # the log URL is fetched without the API key
    assert all(not authed for method, path, authed in fake.requests if path.startswith("/logs/"))
    assert c.destroy(iid) is True
    assert c.destroy(iid) is False
    assert c.instance(iid) is None
    with pytest.raises(OfferTaken):
        c.create_instance(2, image="img", disk_gb=20, env={}, label="x", onstart="true")  # rented now
    c.close()


def test_429_retry_after_is_honoured(fake: FakeVast) -> None:
    slept: list[float] = []
    fake.rate_limit, fake.retry_after = 2, "3"
    c = client(fake, sleep=slept.append)
    assert c.search_offers(FILTER)
    assert slept == [3.0, 3.0]
    c.close()


def test_search_quota_and_wrong_key(fake: FakeVast) -> None:
    fake.quota_exceeded = True
    c = client(fake)
    with pytest.raises(SearchQuotaExceeded) as exc:
        c.search_offers(FILTER)
    assert exc.value.until > time.time() and "UTC" in str(exc.value)
    bad = VastClient(SecretStr("wrong"), base_url=f"{fake.url}/api/v0", timeout_s=5)
    with pytest.raises(VastAuthError) as err:
        bad.instances()
    assert "wrong" not in str(err.value) and "wrong" not in repr(bad)
    c.close()
    bad.close()
