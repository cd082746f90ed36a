"""/ui, /docs and /redoc are served from package files: no CDN, every referenced asset is there (no browser
needed; tests/e2e/test_dashboard.py drives them in chromium)."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from reelforge.api.app import create_app
from reelforge.config import Settings


def client(tmp_path: Path) -> TestClient:
    # no `with`: the lifespan (database, executor) is not needed to serve static pages
    return TestClient(create_app(Settings(data_dir=tmp_path)))


def test_ui_is_served_with_a_strict_content_security_policy(tmp_path: Path) -> None:
    c = client(tmp_path)
    first = c.get("/ui", follow_redirects=False)
    assert first.status_code == 307 and first.headers["location"] == "/ui/"
    page = c.get("/ui/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp and "unsafe" not in csp
    for src in re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.text):
        assert c.get(src).status_code == 200, src
    js = c.get("/ui/js/app.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]
    # every module the shell imports is there
    for module in re.findall(r'from "\./([a-z]+\.js)"', js.text):
        assert c.get(f"/ui/js/{module}").status_code == 200, module


def test_docs_pages_load_only_local_assets(tmp_path: Path) -> None:
    c = client(tmp_path)
    for path, asset in (("/docs", "/ui/vendor/swagger-ui/swagger-ui-bundle.js"),
                        ("/redoc", "/ui/vendor/redoc/redoc.standalone.js")):
        page = c.get(path)
        assert page.status_code == 200
        assert asset in page.text
        assert not re.search(r'(?:src|href)="https?://', page.text), page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        got = c.get(asset)
        assert got.status_code == 200 and len(got.content) > 100_000
    assert '"validatorUrl": null' in c.get("/docs").text
    # FastAPI's own CDN-loading pages are not registered next to ours
    assert c.app.docs_url is None and c.app.redoc_url is None  # type: ignore[attr-defined]
