"""API keys and tenants, the SSRF guard at submit time, bind safety, and restarts that keep queued jobs."""

from __future__ import annotations

import subprocess
import sys
import uuid

import httpx
import pytest

from tests.integration.service import Service, wait_job


def make_key(svc: Service, name: str) -> str:
    res = svc.cli("keys", "create", "--name", name)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    service = Service(tmp_path_factory.mktemp("tenants") / "data", REELFORGE_MAX_UPLOAD_BYTES="1000000")
    service.start()
    yield service
    service.stop()


def test_an_admin_key_sees_every_tenant_and_filters_by_one(svc: Service):
    res = svc.cli("keys", "create", "--name", "ops", "--admin")
    assert res.returncode == 0 and "admin key" in res.stderr + res.stdout, res.stderr
    admin = res.stdout.strip().splitlines()[-1]
    carol, dave = make_key(svc, "carol"), make_key(svc, "dave")
    assert "True" in svc.cli("keys", "list").stdout  # the admin column
    with svc.client(admin) as adm, svc.client(carol) as c, svc.client(dave) as d:
        cj = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 60}}).json()
        dj = d.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.1}}).json()
        assert cj["tenant"] == "carol" and dj["tenant"] == "dave"
        me = adm.get("/v1/me").json()
        assert me["tenant"] == "ops" and me["admin"] is True and {"carol", "dave", "ops"} <= set(me["tenants"])
        assert c.get("/v1/me").json() == {"tenant": "carol", "admin": False, "tenants": None}
        every = {j["id"] for j in adm.get("/v1/jobs", params={"limit": 200}).json()["jobs"]}
        assert {cj["id"], dj["id"]} <= every
        only = adm.get("/v1/jobs", params={"tenant": "dave"}).json()["jobs"]
        assert [j["id"] for j in only] == [dj["id"]]
        # an ordinary key may name its own tenant only
        assert [j["id"] for j in d.get("/v1/jobs", params={"tenant": "dave"}).json()["jobs"]] == [dj["id"]]
        refused = d.get("/v1/jobs", params={"tenant": "carol"})
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "admin_key_required"
        assert d.get(f"/v1/jobs/{cj['id']}").status_code == 404
        # the admin reads, cancels and retries another tenant's job; the retry stays that tenant's
        assert adm.get(f"/v1/jobs/{cj['id']}").json()["tenant"] == "carol"
        assert adm.post(f"/v1/jobs/{cj['id']}/cancel").status_code == 200
        assert wait_job(adm, cj["id"])["status"] == "cancelled"
        again = adm.post(f"/v1/jobs/{cj['id']}/retry").json()
        assert again["tenant"] == "carol" and again["notes"]["retry_of"] == cj["id"]
        assert c.get(f"/v1/jobs/{again['id']}").status_code == 200
        c.post(f"/v1/jobs/{again['id']}/cancel")
        # what the admin submits is its own tenant's
        mine = adm.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.1}}).json()
        assert mine["tenant"] == "ops" and c.get(f"/v1/jobs/{mine['id']}").status_code == 404


def test_tenants_cannot_see_each_others_jobs_or_files(svc: Service, make_video):
    alice, bob = make_key(svc, "alice"), make_key(svc, "bob")
    with svc.client(alice) as a, svc.client(bob) as b:
        with make_video(duration=1.0).open("rb") as fh:
            fid = a.post("/v1/files", params={"filename": "a.mp4"}, content=fh).json()["id"]
        job = a.post("/v1/jobs", json={"op": "probe", "params": {"input": fid}}).json()
        assert wait_job(a, job["id"])["status"] == "succeeded"
        assert b.get(f"/v1/jobs/{job['id']}").status_code == 404
        assert b.post(f"/v1/jobs/{job['id']}/cancel").status_code == 404
        assert b.get(f"/v1/jobs/{job['id']}/outputs/probe").status_code == 404
        assert b.get(f"/v1/files/{fid}").status_code == 404
        assert b.get(f"/v1/files/{fid}/content").status_code == 404
        r = b.post("/v1/jobs", json={"op": "probe", "params": {"input": fid}})
        assert r.status_code == 422 and r.json()["error"]["code"] == "input_not_found"
        assert all(j["id"] != job["id"] for j in b.get("/v1/jobs").json()["jobs"])
        assert a.get(f"/v1/jobs/{job['id']}/outputs/probe").status_code == 200
    with svc.client("rf_wrong") as bad:
        r = bad.get("/v1/jobs")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/x.mp4", "http://localhost:8000/x.mp4", "http://10.0.0.5/x.mp4", "http://192.168.1.1/a",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/x.mp4", "http://[::ffff:127.0.0.1]/x",
    "http://2130706433/x.mp4", "file:///etc/passwd", "gopher://example.com/", "http://user:pw@example.com/x",
])
def test_private_and_odd_urls_are_refused_at_submit(svc: Service, url: str):
    with svc.client() as c:
        r = c.post("/v1/jobs", json={"op": "probe", "params": {"input": url}})
    assert r.status_code == 422, (url, r.text)
    assert r.json()["error"]["details"][0]["path"] == "params.input"


def test_private_webhook_url_is_refused(svc: Service):
    with svc.client() as c:
        r = c.post("/v1/jobs", json={"op": "probe", "params": {"input": "https://example.com/a.mp4"},
                                     "webhook_url": "http://127.0.0.1:9/hook"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_webhook_url"


def test_public_bind_without_keys_refuses_to_start(tmp_path):
    env = Service(tmp_path / "data").env | {"REELFORGE_HOST": "0.0.0.0"}
    res = subprocess.run([sys.executable, "-m", "reelforge.cli", "serve"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode != 0
    assert "without an API key" in (res.stdout + res.stderr)


def test_restart_keeps_queued_and_interrupted_jobs(tmp_path):
    svc = Service(tmp_path / "data", REELFORGE_WORKERS="1").start()
    try:
        with svc.client() as c:
            slow = c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 3,
                                                                          "marker": uuid.uuid4().hex[:8]}}).json()
            wait_job(c, slow["id"], until={"running"})
            queued = [c.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.5}}).json()
                      for _ in range(2)]
            assert all(c.get(f"/v1/jobs/{q['id']}").json()["status"] == "queued" for q in queued)
    finally:
        svc.stop()  # the running job is interrupted, the queued ones never started
    svc.start()
    try:
        with svc.client() as c:
            for job in [slow, *queued]:
                assert wait_job(c, job["id"], timeout=90)["status"] == "succeeded"
            final = c.get(f"/v1/jobs/{slow['id']}").json()
            # interrupted by the shutdown and run again after the restart
            assert final["notes"]["last_worker_error"]["code"] == "worker_lost", final
            assert final["attempts"] >= 1, final
    finally:
        svc.stop()


def test_cli_submit_wait_uploads_local_files_and_prints_urls(svc: Service, make_video, tmp_path):
    video = make_video(duration=1.0, name="cli.mp4")
    job_file = tmp_path / "job.json"
    job_file.write_text('{"op": "probe", "params": {"input": "@cli.mp4"}}')
    res = svc.cli("submit", str(job_file), "--wait")
    assert res.returncode == 0, res.stderr
    assert "succeeded" in res.stderr and "/v1/jobs/" in res.stderr
    assert video.exists()
    bad = svc.cli("submit", "--op", "probe", "--params", '{"input": "http://10.1.1.1/x"}')
    assert bad.returncode == 4 and "params.input" in bad.stderr  # the service refused it (a 4xx)


def test_unreachable_service_gives_a_clear_cli_error(tmp_path):
    res = subprocess.run([sys.executable, "-m", "reelforge.cli", "status", "job_x", "--url", "http://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and "Cannot reach ReelForge" in res.stderr
    assert httpx  # imported for type clarity in helpers


def test_upload_over_the_cap_is_refused_and_leaves_nothing(svc: Service):
    with svc.client() as c:
        r = c.post("/v1/files", params={"filename": "big.bin"}, content=b"x" * 1_200_000)
        assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"

        def chunks():  # no Content-Length: the cap must hold while streaming
            for _ in range(30):
                yield b"y" * 65536

        r = c.post("/v1/files", params={"filename": "big2.bin"}, content=chunks())
        assert r.status_code == 413
        r = c.post("/v1/files", params={"filename": "empty.bin"}, content=b"")
        assert r.status_code == 400 and r.json()["error"]["code"] == "empty_upload"
    leftovers = list((svc.data_dir / "work" / "uploads").glob("*"))
    assert leftovers == []
    assert not any((svc.data_dir / "storage").rglob("big*.bin"))
