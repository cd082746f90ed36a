"""HTML + CSS to a transparent PNG with a headless chromium (Debian's, driven through Playwright).

Used by `render`'s html assets. The page is static: JavaScript is off and every request the page makes
(images, fonts, stylesheets by URL) is refused, so rendering user HTML cannot reach any address from
the worker; only `data:` URLs load. Results are cached by content: the same html, css, size, background
and position give the same file, rendered once.
"""

from __future__ import annotations

import hashlib
import html as html_lib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelforge.errors import MediaError

RENDERER_VERSION = 1  # part of the cache key: bump when the page template changes
_FLEX = {  # position of the content inside its box -> (justify-content, align-items)
    "center": ("center", "center"), "top": ("center", "flex-start"), "bottom": ("center", "flex-end"),
    "left": ("flex-start", "center"), "right": ("flex-end", "center"), "topLeft": ("flex-start", "flex-start"),
    "topRight": ("flex-end", "flex-start"), "bottomLeft": ("flex-start", "flex-end"),
    "bottomRight": ("flex-end", "flex-end"),
}


@dataclass(frozen=True)
class HtmlPicture:
    html: str
    css: str
    width: int
    height: int
    background: str | None = None  # a CSS colour; None: transparent
    position: str = "center"

    def key(self) -> str:
        blob = json.dumps([RENDERER_VERSION, self.html, self.css, self.width, self.height, self.background,
                           self.position], ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()

    def page(self) -> str:
        justify, align = _FLEX[self.position]
        background = self.background or "transparent"
        # the user's css comes last so it can style its own elements; </style> inside it cannot close ours
        css = self.css.replace("</", "<\\/")
        return ("<!doctype html><html><head><meta charset=\"utf-8\"><style>"
                f"html,body{{margin:0;padding:0;width:{self.width}px;height:{self.height}px;overflow:hidden;"
                f"background:{html_lib.escape(background)};}}"
                f"body{{display:flex;justify-content:{justify};align-items:{align};"
                "font-family:'DejaVu Sans',sans-serif;}"
                f"</style><style>{css}</style></head><body><div>{self.html}</div></body></html>")


def render_html(picture: HtmlPicture, cache_dir: Path, chromium: Path, timeout_s: float = 30.0) -> Path:
    """The PNG of `picture` (width x height, transparent where the page is), from the cache when there."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    out = cache_dir / f"{picture.key()}.png"
    if out.exists() and out.stat().st_size > 0:
        return out
    if not chromium.exists():
        raise MediaError(f"html assets need a headless chromium at {chromium} (scripts/ensure-system-deps.sh "
                         "installs Debian's).", code="html_renderer_missing")
    try:
        from playwright import sync_api
    except ImportError:
        raise MediaError("html assets need the `playwright` package (pip install 'reelforge[html]').",
                         code="html_renderer_missing") from None
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(chromium), headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
            try:
                context = browser.new_context(viewport={"width": picture.width, "height": picture.height},
                                              java_script_enabled=False, device_scale_factor=1)
                context.route("**/*", _only_data_urls)
                page = context.new_page()
                page.set_content(picture.page(), timeout=timeout_s * 1000, wait_until="load")
                page.screenshot(path=str(tmp), type="png", omit_background=True, timeout=timeout_s * 1000,
                                clip={"x": 0, "y": 0, "width": picture.width, "height": picture.height})
            finally:
                browser.close()
    except MediaError:
        raise
    except Exception as exc:  # playwright raises its own Error/TimeoutError types
        tmp.unlink(missing_ok=True)
        raise MediaError(f"The html asset could not be rendered ({str(exc).splitlines()[0][:200]}).",
                         code="html_render_failed") from None
    tmp.replace(out)
    return out


def _only_data_urls(route: Any) -> None:
    if route.request.url.startswith("data:"):
        route.continue_()
    else:
        route.abort("blockedbyclient")
