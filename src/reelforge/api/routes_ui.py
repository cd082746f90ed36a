"""The web dashboard at /ui and the OpenAPI pages (/docs, /redoc), all served from package files.

The dashboard is static (src/reelforge/web: HTML, CSS and ES modules, nothing built at run time) and talks
to the service only through the public /v1 API with the key the user typed, so it works the same against
the embedded and the Celery configuration. Swagger UI and ReDoc are vendored under web/vendor (versions
and licences in docs/LICENSES.md): the docs pages load nothing from a CDN, so they work offline.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

WEB_DIR = Path(str(files("reelforge") / "web"))
VENDOR = "/ui/vendor"
# the dashboard only talks to its own origin; previews are blob: URLs made from authenticated fetches
CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; style-src 'self'; "
       "script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

# the docs pages: FastAPI's HTML has an inline init script and the bundles inject styles; anything else they
# would fetch from elsewhere (ReDoc's footer logo from cdn.redoc.ly) is refused by the browser itself
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
            "img-src 'self' data: blob:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
            "frame-ancestors 'none'")

router = APIRouter(include_in_schema=False)


@router.get("/ui")
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return _docs(get_swagger_ui_html(
        openapi_url="/openapi.json", title="ReelForge API", swagger_js_url=f"{VENDOR}/swagger-ui/swagger-ui-bundle.js",
        swagger_css_url=f"{VENDOR}/swagger-ui/swagger-ui.css",
        swagger_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png",
        oauth2_redirect_url="/docs/oauth2-redirect",
        # no spec validation by validator.swagger.io (Swagger UI's default for non-local hosts)
        swagger_ui_parameters={"validatorUrl": None}))


@router.get("/docs/oauth2-redirect")
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return _docs(get_redoc_html(openapi_url="/openapi.json", title="ReelForge API",
                                redoc_js_url=f"{VENDOR}/redoc/redoc.standalone.js",
                                redoc_favicon_url=f"{VENDOR}/swagger-ui/favicon-32x32.png", with_google_fonts=False))


def _docs(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page


class DashboardFiles(StaticFiles):
    """index.html for /ui/, with a Content-Security-Policy: the dashboard runs no inline or foreign code."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response


def install_ui(app: FastAPI) -> None:
    """Serve the dashboard at /ui/ and the docs pages with the vendored assets (the app is created with
    docs_url=None and redoc_url=None so that FastAPI's CDN-loading pages are not registered)."""
    app.include_router(router)
    app.mount("/ui", DashboardFiles(directory=WEB_DIR, html=True), name="ui")
