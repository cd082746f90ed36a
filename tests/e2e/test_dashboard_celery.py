"""The dashboard against the Celery scale-out configuration: API + a Celery worker on Redis, jobs in
PostgreSQL, keys required; Debian's chromium through Playwright, loopback only (as in test_dashboard.py).

Run under `flock /tmp/reelforge-services.lock` with the other service tests (its own Redis db, 14).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator

import pytest
import redis

from tests.e2e.test_dashboard import (
    FPS,
    Browser,
    ffprobe_duration,
    job_id_of,
    make_key,
    open_ui,
    rendered,
    shot,
    until,
)
from tests.integration.service import Service, wait_job

pytestmark = pytest.mark.services
REDIS_DB = 14  # its own database on the shared Redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str, str]]:
    from tests.integration.pg import temp_database
    from tests.integration.test_celery_postgres import worker

    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    with temp_database() as db_url:
        svc = Service(tmp_path_factory.mktemp("uicelery") / "data", REELFORGE_EXECUTOR="celery",
                      REELFORGE_DATABASE_URL=db_url, REELFORGE_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
                      REELFORGE_API_KEYS_REQUIRED="true")
        key = make_key(svc, "editor")
        admin = svc.cli("keys", "create", "--name", "ops", "--admin")
        assert admin.returncode == 0, admin.stderr
        svc.start()
        with worker(svc, "cpu,gpu"):
            yield svc, key, admin.stdout.strip().splitlines()[-1]
        svc.stop()
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def test_dashboard_on_celery_submit_progress_play_fail_retry_cancel_and_system(browser, stack, tmp_path):
    svc, key, admin_key = stack
    page = open_ui(browser, svc, key, "#/submit/test_slow")
    page.get_by_role("button", name="Submit job").click()
    job_id = job_id_of(page)
    seen: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        seen.append(page.locator("#job-status progress").evaluate("p => p.value"))
        if seen[-1] >= 100 and page.locator("#job-status [data-status=succeeded]").count():
            break
        time.sleep(0.1)
    assert seen[-1] == 100 and any(0 < v < 100 for v in seen), sorted(set(seen))
    # the output plays in the page, as long as the file the worker wrote (ffprobe), within a frame
    page.locator("#outputs video").wait_for()
    until(page, "document.querySelector('#outputs video').readyState >= 1")
    with svc.client(key) as client:
        data = client.get(f"/v1/jobs/{job_id}/outputs/video").content
    assert abs(page.locator("#outputs video").evaluate("v => v.duration") - ffprobe_duration(data, tmp_path)) <= 1 / FPS
    shot(page, "celery-01-job-succeeded")
    # a failed job (a probe of a file that is not media, run by the worker) shows its code, sentence and stage
    not_media = tmp_path / "notes.mp4"
    not_media.write_bytes(b"this is not a video\n" * 2000)
    page.goto(f"{svc.url}/ui/#/submit/probe")
    rendered(page)
    page.get_by_label("File", exact=True).set_input_files(str(not_media))
    page.get_by_label("Put its id into").select_option("input")
    page.get_by_role("button", name="Upload").click()
    page.locator("#upload-id").wait_for()
    page.get_by_role("button", name="Submit job").click()
    failed_id = job_id_of(page)
    with svc.client(key) as client:
        failed = wait_job(client, failed_id, timeout=120)
    assert failed["status"] == "failed", failed
    page.locator("#job-error .err-code").wait_for(timeout=30_000)
    assert page.locator("#job-error .err-code").inner_text() == failed["error"]["code"]
    assert page.locator("#job-error .err-message").inner_text() == failed["error"]["message"]
    assert f"(stage: {failed['error']['stage']})" in page.locator("#job-error").inner_text()
    # Retry: the same params again as a new job, which the worker runs (and fails the same way)
    page.get_by_role("button", name="Retry").click()
    page.wait_for_url(re.compile(rf".*#/job/(?!{failed_id}$)job_[0-9a-f]+$"))
    rendered(page)
    with svc.client(key) as client:
        retried = wait_job(client, page.locator("#job-id").inner_text(), timeout=120)
    assert retried["notes"]["retry_of"] == failed_id and retried["params"] == failed["params"], retried
    page.locator("#job-error .err-code", has_text=failed["error"]["code"]).wait_for(timeout=30_000)
    shot(page, "celery-02-job-failed-retried")
    # a long job is cancelled from the page, through the broker to the worker
    page.goto(f"{svc.url}/ui/#/submit/test_slow")
    rendered(page)
    page.get_by_label(re.compile("^Seconds")).fill("120")
    page.get_by_role("button", name="Submit job").click()
    long_id = job_id_of(page)
    page.locator("#job-status [data-status=running]").wait_for(timeout=60_000)
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-status [data-status=cancelled]").wait_for(timeout=60_000)
    # the list shows both, and the system page names the Celery executor
    page.goto(f"{svc.url}/ui/#/jobs")
    rendered(page)
    assert page.locator(f"tr[data-job='{job_id}']").get_attribute("data-status") == "succeeded"
    assert page.locator(f"tr[data-job='{long_id}']").get_attribute("data-status") == "cancelled"
    page.goto(f"{svc.url}/ui/#/system")
    rendered(page)
    assert "celery" in page.locator("main").inner_text()
    assert "shown to an admin key" in page.locator("#workers-note").inner_text()  # an ordinary key
    # an admin key sees the live worker as it answered over the broker: its queues, pool and this machine
    page = open_ui(browser, svc, admin_key, "#/system")
    row = page.locator("#celery-workers tbody tr[data-worker]")
    row.first.wait_for()
    assert row.count() == 1
    cells = row.locator("td").all_inner_texts()
    assert cells[1:5] == ["cpu, gpu", "1", "0", str(os.cpu_count())], cells
    if shutil.which("nvidia-smi") is None:  # no GPU here: said so, not left blank
        assert cells[5:] == ["none", "—", "—", "—"], cells
    else:
        assert cells[5] not in ("", "none") and " of " in cells[6], cells
    shot(page, "celery-03-system")
    assert browser.blocked == []
