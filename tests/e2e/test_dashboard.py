"""The web dashboard (/ui) and the docs pages driven in Debian's chromium, headless, through Playwright.

A real `reelforge serve` (embedded executor, SQLite, job hosts, ffmpeg) with API keys required; the browser
may reach nothing but loopback (every other request is aborted and recorded, and the tests assert there was
none). The dashboard only uses the public /v1 API, so this embedded configuration also stands for the
Celery one (same routes, same answers). Screenshots go to test-artifacts/dashboard/ (git-ignored).

No browser is downloaded: `playwright` drives /usr/bin/chromium (scripts/ensure-system-deps.sh installs it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from playwright import sync_api  # the dev extras; a missing one fails the module, never skips it

from tests.integration.service import REPO, Service, cli_timeout, wait_job

CHROMIUM = Path("/usr/bin/chromium")

ARTIFACTS = REPO / "test-artifacts" / "dashboard"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
FPS = 10  # tests/plugins/slow_ops.py encodes at 10 frames/s: "within a frame" is 0.1 s


def make_key(svc: Service, name: str) -> str:
    res = svc.cli("keys", "create", "--name", name)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, str, str]]:
    svc = Service(tmp_path_factory.mktemp("ui") / "data", REELFORGE_API_KEYS_REQUIRED="true")
    key, other = make_key(svc, "editor"), make_key(svc, "other")
    svc.start()
    yield svc, key, other
    svc.stop()


@pytest.fixture(scope="module")
def service(keyed: tuple[Service, str, str]) -> Service:
    return keyed[0]


@pytest.fixture(scope="module")
def key(keyed: tuple[Service, str, str]) -> str:
    return keyed[1]


class Browser:
    """One chromium for the module; every request is recorded, non-loopback ones are aborted."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.blocked: list[str] = []
        self.errors: list[str] = []
        self.contexts: list[Any] = []
        assert CHROMIUM.exists(), "needs Debian's chromium: run scripts/ensure-system-deps.sh (`make test` does)"
        self._pw = sync_api.sync_playwright().start()
        self.browser = self._pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                                args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"])

    def page(self, width: int = 1280, height: int = 900) -> Any:
        context = self.browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
        context.route("**/*", self._route)
        self.contexts.append(context)
        page = context.new_page()
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        return page

    def _route(self, route: Any) -> None:
        url = route.request.url
        host = urlsplit(url).hostname or ""
        if url.startswith(("blob:", "data:")) or host in LOOPBACK:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")

    def close_pages(self) -> None:
        for context in self.contexts:
            context.close()
        self.contexts.clear()

    def close(self) -> None:
        self.browser.close()
        self._pw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    b = Browser()
    yield b
    b.close()


@pytest.fixture(autouse=True)
def nothing_left_loopback(browser: Browser, key: str) -> Iterator[None]:
    yield
    browser.close_pages()
    assert browser.blocked == [], f"the page tried to reach the network: {browser.blocked}"
    assert not [u for u in browser.requests if key in u], "the API key appeared in a URL"


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def open_ui(browser: Browser, service: Service, key: str, route: str = "#/jobs", **size: int) -> Any:
    """Open the dashboard and enter the key (asked once per browser session)."""
    page = browser.page(**size)
    page.goto(f"{service.url}/ui/{route}")
    dialog = page.locator("#key-dialog")
    dialog.wait_for(state="visible")
    page.get_by_label("Key", exact=True).fill(key)
    page.get_by_role("button", name="Save").click()
    page.locator("#key-button", has_text="set").wait_for()
    assert page.evaluate("sessionStorage.getItem('reelforge.apiKey')") == key
    rendered(page)
    return page


def ffprobe_duration(data: bytes, tmp: Path) -> float:
    path = tmp / "out.mp4"
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return float(json.loads(out)["format"]["duration"])


def run_copied(command: str, key: str) -> dict[str, Any]:
    """Run a command the page copied, as a user would paste it into bash (the `reelforge` of this Python)."""
    env = {**os.environ, "REELFORGE_API_KEY": key, "PATH": f"{Path(sys.executable).parent}{os.pathsep}"
                                                           f"{os.environ.get('PATH', '')}",
           "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env,
                          timeout=cli_timeout(shlex.split(command)))
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def until(page: Any, js: str, timeout: float = 30) -> Any:
    """Poll a JS expression until it is truthy (page.wait_for_function evaluates strings, which the
    dashboard's Content-Security-Policy rightly refuses; evaluate() of a function is not affected)."""
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(f"() => {js}")
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {js}; the page shows: {page.inner_text('main')[:2000]}")
        time.sleep(0.1)


def rendered(page: Any) -> None:
    """Wait until the dashboard has drawn the view of the current URL."""
    until(page, "!document.querySelector('main').dataset.rendering && "
                "document.querySelector('main').dataset.view === location.hash")


def job_id_of(page: Any) -> str:
    page.wait_for_url(re.compile(r".*#/job/job_[0-9a-f]+$"))
    rendered(page)
    return page.locator("#job-id").inner_text()


def test_submit_example_from_form_watch_progress_and_play_the_video(browser, service, key, tmp_path):
    page = open_ui(browser, service, key, "#/submit/probe")
    # the form is generated from GET /v1/ops and seeded with the op's shipped example
    example = httpx.get(f"{service.url}/v1/ops", headers={"X-API-Key": key}).json()
    probe = next(o for o in example["ops"] if o["name"] == "probe")
    assert page.get_by_label(re.compile("^Input")).input_value() == probe["example"]["input"]
    page.get_by_label("Operation", exact=True).select_option("test_slow")
    page.wait_for_url(re.compile(r".*#/submit/test_slow$"))
    rendered(page)
    assert page.get_by_label(re.compile("^Seconds")).input_value() == "2"
    assert page.get_by_label(re.compile("^Marker")).input_value() == "example"
    # every control of the form has a label (accessibility)
    unlabelled = page.evaluate("""[...document.querySelectorAll('main input, main select, main textarea')]
        .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')).map(e => e.id)""")
    assert unlabelled == []
    shot(page, "01-submit-form")
    page.get_by_role("button", name="Submit job").click()
    job_id = job_id_of(page)

    seen: list[int] = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        seen.append(page.locator("#job-status progress").evaluate("p => p.value"))
        if seen[-1] >= 100 and page.locator("#job-status [data-status=succeeded]").count():
            break
        if len(seen) == 15:
            shot(page, "02-job-running")
        time.sleep(0.1)
    values = [page.locator("#job-status progress").evaluate("p => p.value")]
    assert values[-1] == 100, seen
    assert page.locator("#job-pct").inner_text() == "100%"
    assert any(0 < v < 100 for v in seen), f"no live progress between 0 and 100 was shown: {sorted(set(seen))}"

    video = page.locator("#outputs video")
    video.wait_for()
    until(page, "document.querySelector('#outputs video').readyState >= 1")
    duration = video.evaluate("v => v.duration")
    job = httpx.get(f"{service.url}/v1/jobs/{job_id}", headers={"X-API-Key": key}).json()
    data = httpx.get(f"{service.url}/v1/jobs/{job_id}/outputs/video", headers={"X-API-Key": key}).content
    assert abs(duration - ffprobe_duration(data, tmp_path)) <= 1 / FPS
    assert job["status"] == "succeeded"
    # the stage timeline: the runner noted each stage, the page shows them with durations
    assert "encoding" in [name for name, _at in job["notes"]["stages"]]
    encoding = page.locator("#stages li[data-stage=encoding]").inner_text()
    assert re.fullmatch(r"encoding \d+\.\d s", encoding), encoding
    # it plays: the position moves
    video.evaluate("v => { v.muted = true; return v.play(); }")
    until(page, "document.querySelector('#outputs video').currentTime > 0.2", timeout=15)
    shot(page, "03-job-succeeded-video")

    # the download is the same bytes as the API's
    with page.expect_download() as dl:
        page.get_by_role("button", name=re.compile("^Download")).click()
    assert Path(dl.value.path()).read_bytes() == data

    # "Copy as curl" and "Copy as CLI": the copied commands, run by a shell with the key in the environment
    # (never in the command), submit the same job again
    for button, runs in (("Copy as curl", "curl"), ("Copy as CLI", "cli")):
        page.get_by_role("button", name=button).click()
        command = until(page, "document.getElementById('flash').dataset.copied")
        assert key not in command, command
        if runs == "curl":
            assert "$REELFORGE_API_KEY" in command, command
        again = run_copied(command, key)
        assert again["op"] == "test_slow" and again["params"] == job["params"] and again["id"] != job_id, again
        if runs == "cli":  # the CLI command waits for the job
            assert again["status"] == "succeeded"
        page.evaluate("delete document.getElementById('flash').dataset.copied")

    # the list shows it, and a filter on another status hides it
    page.get_by_role("link", name="Jobs", exact=True).click()
    rendered(page)
    row = page.locator(f"tr[data-job='{job_id}']")
    row.wait_for()
    assert row.get_attribute("data-status") == "succeeded"
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r".*status=failed"))
    rendered(page)
    assert page.locator(f"tr[data-job='{job_id}']").count() == 0
    shot(page, "04-jobs-filtered")


def test_cancel_a_long_job(browser, service, key):
    page = open_ui(browser, service, key, "#/submit/test_slow")
    page.get_by_label(re.compile("^Seconds")).fill("120")
    page.get_by_label(re.compile("^Marker")).fill("uicancel")
    page.get_by_role("button", name="Submit job").click()
    job_id = job_id_of(page)
    page.locator("#job-status [data-status=running]").wait_for(timeout=60_000)
    until(page, "document.querySelector('#job-status progress').value > 0", timeout=60)
    shot(page, "05-long-job-running")
    page.get_by_role("button", name="Cancel").click()
    page.locator("#job-status [data-status=cancelled]").wait_for(timeout=30_000)
    page.locator("#job-error .err-code", has_text="cancelled").wait_for()
    with service.client(key) as client:
        cancelled = wait_job(client, job_id, timeout=30)
        assert cancelled["status"] == "cancelled"
        assert page.get_by_role("button", name="Retry").is_enabled()
        shot(page, "06-long-job-cancelled")
        # Retry resubmits the same params as a new job, and the page moves to it
        page.get_by_role("button", name="Retry").click()
        page.wait_for_url(re.compile(rf".*#/job/(?!{job_id}$)job_[0-9a-f]+$"))
        rendered(page)
        retried = client.get(f"/v1/jobs/{page.locator('#job-id').inner_text()}").json()
        assert retried["params"] == cancelled["params"] and retried["notes"]["retry_of"] == job_id, retried
        page.locator("#job-status [data-status=running]").wait_for(timeout=60_000)
        page.get_by_role("button", name="Cancel").click()
        assert wait_job(client, retried["id"], timeout=30)["status"] == "cancelled"


def test_failed_job_shows_its_error_code_and_sentence(browser, service, key, tmp_path):
    not_media = tmp_path / "notes.mp4"
    not_media.write_bytes(b"this is not a video\n" * 2000)
    page = open_ui(browser, service, key, "#/submit/probe")
    page.get_by_label("File", exact=True).set_input_files(str(not_media))
    page.get_by_label("Put its id into").select_option("input")
    page.get_by_role("button", name="Upload").click()
    until(page, "!/^Uploading/.test(document.querySelector('#upload-result').textContent)")
    assert page.locator("#upload-id").count(), page.locator("#upload-result").inner_text()
    file_id = page.locator("#upload-id").inner_text()
    assert page.locator("#upload-progress").evaluate("p => p.value") == 100
    assert page.get_by_label(re.compile("^Input")).input_value() == file_id
    shot(page, "07-uploaded")
    page.get_by_role("button", name="Submit job").click()
    job_id = job_id_of(page)
    with service.client(key) as client:
        job = wait_job(client, job_id)
    assert job["status"] == "failed" and job["error"]["code"]
    page.locator("#job-error .err-code").wait_for(timeout=30_000)
    assert page.locator("#job-error .err-code").inner_text() == job["error"]["code"]
    assert page.locator("#job-error .err-message").inner_text() == job["error"]["message"]
    # and the stage it failed in (the job's own stage is now "failed")
    assert job["error"]["stage"] not in ("failed", None)
    assert f"(stage: {job['error']['stage']})" in page.locator("#job-error").inner_text()
    shot(page, "08-job-failed")
    # the list shows the code too
    page.goto(f"{service.url}/ui/#/jobs?status=failed")
    rendered(page)
    page.locator(f"tr[data-job='{job_id}'] .err-code", has_text=job["error"]["code"]).wait_for()


def test_text_and_audio_outputs_preview_inline(browser, service, key):
    """Subtitles show as text (the stored bytes), speech as an audio player as long as the file."""
    words = [{"text": "Hello", "start": 0.0, "end": 0.4}, {"text": "world", "start": 0.45, "end": 0.9}]
    with service.client(key) as client:
        subs = client.post("/v1/jobs", json={"op": "subtitles", "params": {"words": words}}).json()["id"]
        speech = client.post("/v1/jobs", json={"op": "tts", "params": {"text": "Hello there.", "engine": "espeak",
                                                                        "word_timings": False}}).json()["id"]
        done = {job_id: wait_job(client, job_id) for job_id in (subs, speech)}
        assert all(j["status"] == "succeeded" for j in done.values()), done
        texts = {name: client.get(f"/v1/jobs/{subs}/outputs/{name}").text
                 for name in done[subs]["result"]["outputs"]}
        wav = client.get(f"/v1/jobs/{speech}/outputs/audio").content
    page = open_ui(browser, service, key, f"#/job/{subs}")
    for name, text in texts.items():
        pre = page.locator(f"#outputs [data-output='{name}'] pre.text")
        pre.wait_for()
        assert pre.inner_text().strip() == text.replace("\r\n", "\n").strip() and "Hello" in text, name
    shot(page, "17-subtitles-preview")
    page.goto(f"{service.url}/ui/#/job/{speech}")
    rendered(page)
    audio = page.locator("#outputs [data-output='audio'] audio")
    audio.wait_for()
    until(page, "document.querySelector('#outputs audio').readyState >= 1")
    tmp = ARTIFACTS / "speech.wav"
    tmp.write_bytes(wav)
    probed = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "json", str(tmp)],
                            capture_output=True, text=True, check=True).stdout
    assert abs(audio.evaluate("a => a.duration") - float(json.loads(probed)["format"]["duration"])) < 0.05
    shot(page, "18-audio-preview")


def test_a_tenant_sees_only_its_jobs(browser, keyed):
    service, key, other = keyed
    with service.client(other) as client:
        theirs = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.5}}).json()["id"]
    page = open_ui(browser, service, key)
    page.locator("table.jobs tbody tr").first.wait_for()
    assert page.locator(f"tr[data-job='{theirs}']").count() == 0
    page.get_by_label("Job id").fill(theirs)
    page.get_by_role("button", name="Open job").click()
    page.locator("#flash.bad", has_text="job_not_found").wait_for()


@pytest.fixture(scope="module")
def admin_key(service: Service) -> str:
    res = service.cli("keys", "create", "--name", "ops", "--admin")
    assert res.returncode == 0, res.stderr
    return res.stdout.strip().splitlines()[-1]


def test_an_admin_key_sees_every_tenant_and_filters_by_one(browser, keyed, admin_key):
    service, key, other = keyed
    ids = {}
    for name, k in (("editor", key), ("other", other)):
        with service.client(k) as client:
            ids[name] = client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.2}}).json()["id"]
    page = open_ui(browser, service, admin_key)
    assert "Admin key (tenant ops)" in page.locator("#admin-note").inner_text()
    assert "all tenants" in page.locator("#jobs-caption").inner_text()
    for name, job_id in ids.items():
        assert page.locator(f"tr[data-job='{job_id}'] .cell-tenant").inner_text() == name
    tenants = set(page.locator("table.jobs tbody tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.tenant)"))
    assert {"editor", "other"} <= tenants
    shot(page, "13-admin-all-tenants")
    # the tenant filter changes the rows: only "other"'s jobs, as many as the API lists for it
    page.get_by_label("Tenant").fill("other")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r".*tenant=other"))
    rendered(page)
    shown = page.locator("table.jobs tbody tr[data-job]").evaluate_all("rs => rs.map(r => r.dataset.tenant)")
    with service.client(admin_key) as client:
        theirs = client.get("/v1/jobs", params={"tenant": "other", "limit": 25}).json()["jobs"]
    assert shown == ["other"] * len(theirs) and len(theirs) >= 1
    assert page.locator(f"tr[data-job='{ids['editor']}']").count() == 0
    assert f"{len(theirs)} job(s) on this page · tenant other" == page.locator("#jobs-caption").inner_text()
    shot(page, "14-admin-tenant-filter")
    # the admin opens another tenant's job; an ordinary key has no tenant filter or column
    page.locator(f"tr[data-job='{ids['other']}'] a").click()
    rendered(page)
    assert "other" in page.locator("main").inner_text()
    mine = open_ui(browser, service, key)
    assert mine.locator("#f-tenant").count() == 0 and mine.locator(".cell-tenant").count() == 0
    assert mine.locator("#admin-note").count() == 0


def test_pages_older_and_newer(browser, service, key):
    with service.client(key) as client:
        for _ in range(3):
            assert client.post("/v1/jobs", json={"op": "test_slow", "params": {"seconds": 0.2}}).status_code == 202
        newest = [j["id"] for j in client.get("/v1/jobs", params={"limit": 4}).json()["jobs"]]
    page = open_ui(browser, service, key, "#/jobs?limit=2")

    def shown() -> list[str]:
        return page.locator("table.jobs tbody tr[data-job]").evaluate_all("rows => rows.map(r => r.dataset.job)")

    assert shown() == newest[:2]
    assert page.locator("#newer").count() == 0
    page.locator("#older").click()
    rendered(page)
    assert shown() == newest[2:4]
    page.locator("#newer").click()
    rendered(page)
    assert shown() == newest[:2]
    # the time and operation filters: created in the last hour + test_slow shows these jobs; created before
    # 2020 shows none (the API's since/before/op filters, read back from the URL into the form)
    page.goto(f"{service.url}/ui/#/jobs")
    rendered(page)
    page.get_by_label("Operation").select_option("test_slow")
    page.get_by_label("Created", exact=True).select_option("3600")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r".*op=test_slow.*since=3600|.*since=3600.*op=test_slow"))
    rendered(page)
    assert set(newest[:3]) <= set(shown())
    ops = page.locator("table.jobs tbody tr[data-job] td[data-label=Op]").all_inner_texts()
    assert ops and set(ops) == {"test_slow"}, ops
    assert page.get_by_label("Created", exact=True).input_value() == "3600"
    page.get_by_label("Created before").fill("2020-01-01T00:00")
    page.get_by_role("button", name="Apply filters").click()
    page.wait_for_url(re.compile(r".*before=\d+"))
    rendered(page)
    assert shown() == []


def test_phone_width_and_keyboard(browser, service, key):
    page = open_ui(browser, service, key, width=390, height=844)
    page.locator("table.jobs tbody tr").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "09-jobs-phone")
    page.goto(f"{service.url}/ui/#/system")
    rendered(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "10-system-phone")
    # keyboard: the first Tab lands on the skip link, which moves focus to the content
    page.goto(f"{service.url}/ui/#/jobs")
    page.reload()
    rendered(page)
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "f-status"
    # the list is read again every 10 s: what is being typed in a filter keeps its value and the focus
    page.get_by_label("Job id").fill("job_typing")
    before = page.locator("#job-results table").evaluate("t => (t.dataset.gen = 'old')")
    until(page, "!document.querySelector('#job-results table').dataset.gen", timeout=20)  # a new table
    assert before == "old"
    assert page.evaluate("document.activeElement.id") == "f-job-id"
    assert page.get_by_label("Job id").input_value() == "job_typing"


def test_workers_and_capacity(browser, service, key, admin_key):
    # an ordinary key sees the queues but not the fleet
    page = open_ui(browser, service, key, "#/system")
    page.locator("#queues tr[data-queue=cpu]").wait_for()
    assert "test_slow" in page.locator("#queues tr[data-queue=cpu]").inner_text()
    assert "admin_key_required" in page.locator("#fleet-refused").inner_text()
    assert "local" in page.locator("main").inner_text()
    # a remote agent declares its resources; the admin's panel shows them, and no rented capacity (none set up)
    res = service.cli("agents", "token", "create", "--name", "box-4090", "--queues", "gpu")
    assert res.returncode == 0, res.stderr
    token = res.stdout.strip().splitlines()[-1]
    declared = {"gpu_name": "NVIDIA GeForce RTX 4090", "vram_gb": 24, "nvenc_sessions": 5, "cpu_cores": 16}
    reg = httpx.post(f"{service.url}/v1/agent/register", json={"resources": declared},
                     headers={"Authorization": f"Bearer {token}"})
    assert reg.status_code == 200, reg.text
    page = open_ui(browser, service, admin_key, "#/system")
    row = page.locator("#agents tr[data-agent=box-4090]")
    row.wait_for()
    cells = row.locator("td").all_inner_texts()
    assert cells[:7] == ["box-4090", "gpu", "online", "NVIDIA GeForce RTX 4090", "24 GB", "5", "16"], cells
    assert page.locator("#agents tbody tr[data-agent]").count() == 1
    assert "No RunPod or Modal backend" in page.locator("#backends").inner_text()
    assert "No rented capacity" in page.locator("#capacity-empty").inner_text()
    assert "Spent today (UTC)" in page.locator("main").inner_text()
    shot(page, "11-system")


def test_batches_list_and_progress(browser, service, key, make_video, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video\n" * 100)
    with service.client(key) as client:
        ids = []
        clips = [make_video(duration=1.0, size="160x90", name=n) for n in ("v.mp4", "w.mp4")]
        for path in (*clips, bad):
            with path.open("rb") as fh:
                ids.append(client.post("/v1/files", params={"filename": path.name}, content=fh).json()["id"])
        made = client.post("/v1/batches", json={"op": "probe", "inputs": ids, "name": "ui-batch"})
        assert made.status_code == 202, made.text
        batch_id = made.json()["id"]
        deadline = time.monotonic() + 90
        while (b := client.get(f"/v1/batches/{batch_id}").json())["status"] == "running":
            assert time.monotonic() < deadline, b
            time.sleep(0.5)
    assert b["counts"]["succeeded"] == 2 and b["counts"]["failed"] == 1, b
    page = open_ui(browser, service, key, "#/batches")
    row = page.locator(f"#batches tr[data-batch='{batch_id}']")
    row.wait_for()
    assert "ui-batch" in row.inner_text() and row.locator(".pct").inner_text() == "100%"
    assert row.locator(".cell-counts").inner_text() == "3 — 2 succeeded, 1 failed"
    shot(page, "15-batches")
    row.locator("a").click()
    rendered(page)
    assert page.locator("#batch-counts dd[data-state=succeeded]").inner_text() == "2"
    assert page.locator("#batch-counts dd[data-state=failed]").inner_text() == "1"
    assert page.locator("#batch-items tbody tr").count() == 3
    failed = page.locator("#batch-items tr[data-status=failed]")
    assert failed.count() == 1 and ":" in failed.locator("td").nth(4).inner_text()
    shot(page, "16-batch")
    # the item's job link opens the job
    page.locator("#batch-items tr[data-status=succeeded] a").first.click()
    rendered(page)
    assert page.locator("#job-id").inner_text().startswith("job_")


@pytest.mark.parametrize("path,ready", [("/docs", ".swagger-ui .opblock-tag"), ("/redoc", ".redoc-wrap .menu-content")])
def test_docs_render_without_network(browser, service, path, ready):
    page = browser.page()
    page.goto(f"{service.url}{path}")
    page.locator(ready).first.wait_for(timeout=30_000)
    assert "Submit a job" in page.locator("body").inner_text()
    # nothing but loopback was asked for (the page's CSP refuses ReDoc's logo from cdn.redoc.ly before any
    # request is made; the autouse fixture checks that the network saw nothing else)
    shot(page, f"12-docs{path.replace('/', '-')}")


def test_ui_files_are_package_data():
    """The wheel carries the dashboard: every file under web/ matches a package-data pattern."""
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["reelforge"]
    web = REPO / "src" / "reelforge"
    files = [p.relative_to(web) for p in (web / "web").rglob("*") if p.is_file()]
    assert files and all(any(f.match(pat) for pat in patterns) for f in files), files
    assert shutil.which("chromium") or CHROMIUM.exists()
