"""The dashboard against the Celery scale-out configuration: API + a Celery worker on Redis, jobs in
PostgreSQL, keys required; Debian's chromium through Playwright, loopback only (as in test_dashboard.py).

Run under `flock /tmp/reelforge-services.lock` with the other service tests (its own Redis db, 14).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import pytest

from tests.e2e.test_dashboard import CHROMIUM, Browser, job_id_of, make_key, open_ui, rendered, shot
from tests.integration.service import Service

redis = pytest.importorskip("redis")
pytestmark = [pytest.mark.services,
              pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")]
REDIS_DB = 14  # its own database on the shared Redis


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str]]:
    from tests.integration.pg import temp_database
    from tests.integration.test_celery_postgres import worker

    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()
    with temp_database() as db_url:
        svc = Service(tmp_path_factory.mktemp("uicelery") / "data", REELFORGE_EXECUTOR="celery",
                      REELFORGE_DATABASE_URL=db_url, REELFORGE_BROKER_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
                      REELFORGE_API_KEYS_REQUIRED="true")
        key = make_key(svc, "editor")
        svc.start()
        with worker(svc, "cpu,gpu"):
            yield svc, key
        svc.stop()
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    b = Browser()
    yield b
    b.close()


def test_dashboard_on_celery_submit_progress_cancel_and_system(browser, stack):
    svc, key = stack
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
    page.locator("#outputs video").wait_for()
    shot(page, "celery-01-job-succeeded")
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
    assert "Celery workers do not report" in page.locator("#workers-note").inner_text()
    shot(page, "celery-02-system")
    assert browser.blocked == []
