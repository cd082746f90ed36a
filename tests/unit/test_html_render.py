"""media/html.py: the page renders transparent, runs no JavaScript and reaches no address (SSRF), and is cached."""

from __future__ import annotations

import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from reelforge.media.html import HtmlPicture, render_html

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


def rgba(path: Path, w: int, h: int) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "rgba", "-"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(h, w, 4).astype(int)


def test_static_offline_transparent_and_cached(tmp_path: Path) -> None:
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    html = (f'<link rel="stylesheet" href="{base}/a.css"><div style="width:4px;height:4px;overflow:hidden">'
            f'<img src="{base}/b.png"><iframe src="{base}/c"></iframe></div>'
            '<div id="box"></div><script>document.body.style.background="red"</script>')
    css = f"#box{{width:40px;height:40px;background:#00ff00;background-image:url({base}/d.png)}}"
    picture = HtmlPicture(html, css, 200, 100, position="topLeft")
    try:
        out = render_html(picture, tmp_path / "cache", CHROMIUM)
    finally:
        server.shutdown()
    assert hits == []  # nothing fetched from any address
    px = rgba(out, 200, 100)
    assert px[95, 195, 3] == 0  # transparent where the page is empty: the script did not run
    greens = np.argwhere((px[:, :, 1] > 200) & (px[:, :, 0] < 60) & (px[:, :, 3] > 200))
    assert len(greens) > 1000  # the styled box is drawn
    mtime = out.stat().st_mtime_ns
    assert render_html(picture, tmp_path / "cache", CHROMIUM) == out and out.stat().st_mtime_ns == mtime
