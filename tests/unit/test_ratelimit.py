"""Per-key rate limits: token buckets in memory and on Redis, and the 429 a client sees."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from reelforge.api.ratelimit import MemoryBuckets, RateLimiter, RedisBuckets, backend_for
from reelforge.config import Settings
from reelforge.errors import RateLimited

REDIS_URL = "redis://127.0.0.1:6379/12"  # this suite's own Redis database


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_memory_bucket_allows_the_burst_then_the_rate():
    clock = Clock()
    buckets = MemoryBuckets(clock)
    assert [buckets.take("k", rate=2.0, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("k", rate=2.0, burst=3) == pytest.approx(0.5)  # the next token in 1/rate s
    assert buckets.take("other", rate=2.0, burst=3) == 0.0  # each key has its own bucket
    clock.now += 0.5
    assert buckets.take("k", rate=2.0, burst=3) == 0.0
    clock.now += 100  # refills up to the burst, no further
    assert [buckets.take("k", rate=2.0, burst=3) for _ in range(4)][-1] > 0


def test_limiter_raises_rate_limited_with_retry_after(tmp_path: Path):
    settings = Settings(data_dir=tmp_path, submit_rate_per_s=0.5, submit_burst=1, upload_rate_per_s=0)
    limiter = RateLimiter(settings, MemoryBuckets(Clock()))
    limiter.check("submit", "key:a")
    with pytest.raises(RateLimited) as info:
        limiter.check("submit", "key:a")
    assert info.value.http_status == 429 and info.value.code == "rate_limited"
    assert info.value.headers == {"Retry-After": "2"}
    for _ in range(50):
        limiter.check("upload", "key:a")  # rate 0: that limit is off


def test_backend_follows_the_settings(tmp_path: Path):
    assert backend_for(Settings(data_dir=tmp_path)) == ("memory", "")
    assert backend_for(Settings(data_dir=tmp_path, executor="celery", broker_url="redis://r:6379/1")) == (
        "redis", "redis://r:6379/1")
    assert backend_for(Settings(data_dir=tmp_path, executor="celery", broker_url="amqp://x")) == ("memory", "")
    assert backend_for(Settings(data_dir=tmp_path, rate_limit_redis_url="redis://q/2")) == ("redis", "redis://q/2")
    assert backend_for(Settings(data_dir=tmp_path, executor="celery", broker_url="redis://r/1",
                                rate_limit_backend="memory")) == ("memory", "")


def test_api_answers_429_with_retry_after_and_the_error_body(tmp_path: Path):
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app

    app = create_app(Settings(data_dir=tmp_path / "data", workers=1, submit_rate_per_s=0.01, submit_burst=2,
                              upload_rate_per_s=0.01, upload_burst=1))
    with TestClient(app) as client:
        body = {"op": "probe", "params": {"input": "https://example.com/a.mp4"}}
        assert [client.post("/v1/jobs", json=body).status_code for _ in range(2)] == [202, 202]
        limited = client.post("/v1/jobs", json=body)
        assert client.post("/v1/files", params={"filename": "a.bin"}, content=b"x").status_code == 201
        upload_limited = client.post("/v1/files", params={"filename": "a.bin"}, content=b"x")
        assert client.get("/v1/jobs").status_code == 200  # reads are not limited
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limited"
    assert upload_limited.status_code == 429 and "upload" in upload_limited.json()["error"]["message"]


def test_every_front_door_that_submits_shares_the_keys_submit_limit(tmp_path: Path):
    """The earlier API, the overlay call, Shotstack edits and batches submit work too: each takes a token of
    the same bucket, and a limited call answers 429 with Retry-After in its own front door's shape."""
    from fastapi.testclient import TestClient

    from reelforge.api.app import create_app

    app = create_app(Settings(data_dir=tmp_path / "data", workers=1, submit_rate_per_s=0.001, submit_burst=1))
    edit = {"timeline": {"tracks": [{"clips": [{"asset": {"type": "title", "text": "hi"}, "start": 0,
                                                 "length": 1}]}]}, "output": {"format": "mp4", "resolution": "sd"}}
    calls = {
        "legacy": ("/video/addaudio?async=true", {"url_video": "https://example.com/v.mp4",
                                                   "url_audio": "https://example.com/a.mp3", "path": "out"}),
        "overlay": ("/overlay?async=true", {"video_url": "https://example.com/v.mp4"}),
        "shotstack": ("/edit/v1/render", edit),
        "batch": ("/v1/batches", {"op": "probe", "inputs": ["https://example.com/a.mp4"]}),
    }
    with TestClient(app) as client:
        assert client.post("/v1/jobs", json={"op": "probe", "params": {"input": "https://example.com/a.mp4"}}
                           ).status_code == 202  # the one token of the burst
        answers = {name: client.post(path, json=body) for name, (path, body) in calls.items()}
    for name, resp in answers.items():
        assert resp.status_code == 429, (name, resp.text)
        assert int(resp.headers["retry-after"]) >= 1, name
    assert answers["legacy"].json()["error_code"] == "rate_limited"  # the earlier API's {error, message} shape
    assert answers["overlay"].json()["error_code"] == "rate_limited"
    assert answers["shotstack"].json()["success"] is False  # Shotstack's envelope
    assert answers["batch"].json()["error"]["code"] == "rate_limited"


@pytest.mark.services
def test_redis_buckets_hold_across_processes():
    """Two limiters (two API processes) on one Redis share each key's bucket."""
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.RedisError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    prefix = f"reelforge-test:{uuid.uuid4().hex}:"
    one, two = RedisBuckets(REDIS_URL, prefix=prefix), RedisBuckets(REDIS_URL, prefix=prefix)
    waits = [b.take("submit:key:x", rate=0.01, burst=3) for b in (one, two, one, two)]
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] > 0
    assert two.take("submit:key:y", rate=0.01, burst=3) == 0.0


def test_redis_down_falls_back_to_this_process():
    buckets = RedisBuckets("redis://127.0.0.1:1/0")  # nothing listens on port 1
    assert buckets.take("k", rate=1.0, burst=1) == 0.0
    assert buckets.take("k", rate=1.0, burst=1) > 0
