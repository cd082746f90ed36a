"""Hardening of the embedded service over real HTTP (uvicorn in a subprocess): oversized bodies get an
answer the client can read, /metrics follows its key setting, keys are listed by public prefix only,
/health reports free disk space, and uploads that do not fit on the disk get a 507."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import pytest

from tests.integration.service import Service

MAX_BODY = 100_000


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    svc = Service(tmp_path_factory.mktemp("res") / "data", REELFORGE_MAX_BODY_BYTES=str(MAX_BODY),
                  REELFORGE_API_KEYS_REQUIRED="true", REELFORGE_WORKERS="1")
    made = svc.cli("keys", "create", "--name", "acme")
    assert made.returncode == 0, made.stderr
    svc.start()
    yield svc, made.stdout.strip().splitlines()[-1]
    svc.stop()


@pytest.fixture(scope="module")
def service(keyed: tuple[Service, str]) -> Service:
    return keyed[0]


@pytest.fixture(scope="module")
def key(keyed: tuple[Service, str]) -> str:
    return keyed[1]


def _big_json(n: int) -> bytes:
    return b'{"op": "probe", "params": {"input": "' + b"a" * n + b'"}}'


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_body_over_the_limit_gets_a_413_the_client_reads(service: Service, key: str, chunked: bool):
    body = _big_json(40_000_000)  # 40 MB: far more than the socket buffers, so an unread body resets

    def chunks():
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    with httpx.Client(base_url=service.url, headers={"X-API-Key": key}, timeout=30) as c:
        resp = c.post("/v1/jobs", content=chunks() if chunked else body,
                      headers={"Content-Type": "application/json"})
        assert resp.status_code == 413, resp.text
        assert resp.json()["error"]["code"] == "payload_too_large"
        assert (resp.request.headers.get("transfer-encoding") == "chunked") is chunked
        # the connection is still usable (or was closed cleanly): the next request works
        assert c.get("/health").status_code == 200


def test_unauthenticated_large_body_gets_its_401(service: Service):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        resp = c.post("/v1/files", params={"filename": "x.bin"}, content=b"\0" * 40_000_000)
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "missing_api_key"


def test_metrics_need_a_key_when_keys_are_required(service: Service, key: str):
    with httpx.Client(base_url=service.url, timeout=30) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/metrics", headers={"X-API-Key": "rf_bogus_nope"}).status_code == 401
        ok = c.get("/metrics", headers={"X-API-Key": key})
    assert ok.status_code == 200 and "reelforge_queue_depth" in ok.text


def test_metrics_open_when_the_setting_says_so(tmp_path: Path):
    svc = Service(tmp_path / "data", REELFORGE_API_KEYS_REQUIRED="true", REELFORGE_METRICS_REQUIRE_KEY="false",
                  REELFORGE_WORKERS="1")
    assert svc.cli("keys", "create", "--name", "ops").returncode == 0
    svc.start()
    try:
        with httpx.Client(base_url=svc.url, timeout=30) as c:
            assert c.get("/metrics").status_code == 200
            assert c.get("/v1/jobs").status_code == 401  # the rest of the API still needs a key
    finally:
        svc.stop()


def test_keys_list_shows_the_public_prefix_only(service: Service, key: str):
    prefix, secret = key[:11], key[12:]
    assert prefix.startswith("rf_") and len(prefix) == 11 and len(secret) >= 40
    listed = service.cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    assert prefix in listed.stdout
    assert secret[:4] not in listed.stdout.replace(prefix, "")
    with httpx.Client(base_url=service.url, headers={"X-API-Key": key}, timeout=30) as c:
        assert c.get("/v1/jobs").status_code == 200


def test_migration_replaces_old_prefixes_that_held_part_of_the_key(tmp_path: Path):
    from sqlalchemy import create_engine

    from reelforge.jobs.migrate import upgrade

    db = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{db}")
    upgrade(engine, "0002")
    old_key = "rf_ABCDEFGsecretsecretsecret"
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO api_keys (id, name, tenant, key_hash, prefix, created_at, revoked) "
                     "VALUES ('key_1', 'a', 'a', 'h', ?, 0, 0)", (old_key[:10],))
    upgrade(engine)
    with sqlite3.connect(db) as conn:
        (prefix,) = conn.execute("SELECT prefix FROM api_keys WHERE id = 'key_1'").fetchone()
    assert prefix.startswith("rf_") and len(prefix) == 11 and "ABCDEFG" not in prefix


def test_health_reports_free_disk_space(service: Service):
    body = httpx.get(f"{service.url}/health", timeout=10).json()
    assert body["disk"]["free_bytes"] > 0 and body["disk"]["low"] is False
    assert body["status"] == "ok"


def test_health_degraded_below_the_threshold_and_upload_over_free_space_gets_507(tmp_path: Path,
                                                                                 make_video):
    from reelforge.diskspace import free_bytes

    tmp_path.joinpath("data").mkdir()
    huge = free_bytes(tmp_path) + 100 * 1024**3  # more than the disk has free: always "low", never fits
    svc = Service(tmp_path / "data", REELFORGE_DISK_LOW_BYTES=str(huge), REELFORGE_DISK_RESERVE_BYTES=str(huge),
                  REELFORGE_WORKERS="1").start()
    try:
        with svc.client() as c:
            health = c.get("/health")
            assert health.status_code == 200  # every part works: the service keeps answering
            assert health.json()["status"] == "degraded" and health.json()["disk"]["low"] is True
            video = make_video(duration=1)
            resp = c.post("/v1/files", params={"filename": "v.mp4"}, content=video.read_bytes())
            assert resp.status_code == 507, resp.text
            assert resp.json()["error"]["code"] == "disk_full"

            def chunks():
                yield video.read_bytes()

            resp = c.post("/v1/files", params={"filename": "v.mp4"}, content=chunks())  # chunked: no size
            assert resp.status_code == 507 and resp.json()["error"]["code"] == "disk_full"
            assert not list((tmp_path / "data" / "work" / "uploads").iterdir())  # nothing left behind
    finally:
        svc.stop()
