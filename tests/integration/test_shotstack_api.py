"""The Shotstack-compatible Edit API over HTTP, driven by the official `shotstack-sdk` client.

A real `reelforge serve` renders Shotstack's published kinds of example edits (title + image + video with
a soundtrack, a Ken Burns slideshow, a luma matte transition, filters, html text, merge fields) at the
preview resolution, 1-2 s long; the outputs are checked for size, fps and duration, and on frame pixels
for track order, offsets and fit. The callback gets Shotstack's body; unsupported fields are refused by
name.
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.conftest import ffmpeg
from tests.integration.service import Service

shotstack_sdk = pytest.importorskip("shotstack_sdk")
from shotstack_sdk.api import edit_api  # noqa: E402
from shotstack_sdk.model.clip import Clip  # noqa: E402
from shotstack_sdk.model.edit import Edit  # noqa: E402
from shotstack_sdk.model.image_asset import ImageAsset  # noqa: E402
from shotstack_sdk.model.offset import Offset  # noqa: E402
from shotstack_sdk.model.output import Output  # noqa: E402
from shotstack_sdk.model.soundtrack import Soundtrack  # noqa: E402
from shotstack_sdk.model.timeline import Timeline  # noqa: E402
from shotstack_sdk.model.title_asset import TitleAsset  # noqa: E402
from shotstack_sdk.model.track import Track  # noqa: E402
from shotstack_sdk.model.transition import Transition  # noqa: E402
from shotstack_sdk.model.video_asset import VideoAsset  # noqa: E402

from tests.webhook_receiver import webhook_receiver  # noqa: E402

W, H = 512, 288  # Shotstack's `preview` resolution (15 fps)
CHROMIUM = Path("/usr/bin/chromium")
KEY: dict[str, str] = {}  # the API key the client sends as x-api-key (made by the service fixture)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Test media on a loopback HTTP server (Shotstack assets are URLs)."""
    d = tmp_path_factory.mktemp("media")
    ffmpeg("-f", "lavfi", "-i", "color=c=blue:s=320x240:r=15:d=3", "-f", "lavfi", "-i", "sine=f=440:d=3",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest",
           str(d / "blue.mp4"))
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=200x200", "-frames:v", "1", str(d / "red.png"))
    ffmpeg("-f", "lavfi", "-i", "color=c=green:s=400x100", "-frames:v", "1", str(d / "wide.png"))
    ffmpeg("-f", "lavfi", "-i", "sine=f=220:d=4", "-c:a", "libmp3lame", str(d / "music.mp3"))
    # a luma matte: the left half white (shows the clip), the right half black
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=160x90,drawbox=x=0:y=0:w=80:h=90:c=white:t=fill",
           "-frames:v", "1", str(d / "luma.png"))
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(d))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("svc") / "data", REELFORGE_FETCH_ALLOW_PRIVATE="true",
                  REELFORGE_WORKERS="2", REELFORGE_PLUGINS="").start()
    made = svc.cli("keys", "create", "--name", "shotstack-client")
    assert made.returncode == 0, made.stderr
    KEY["key"] = made.stdout.strip().splitlines()[-1]
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def api(service: Service) -> Iterator[Any]:
    config = shotstack_sdk.Configuration(host=f"{service.url}/edit/stage")
    config.api_key["DeveloperKey"] = KEY["key"]
    with shotstack_sdk.ApiClient(config) as client:
        yield edit_api.EditApi(client)


def post(service: Service, edit: dict[str, Any]) -> str:
    r = httpx.post(f"{service.url}/edit/v1/render", json=edit, headers={"x-api-key": KEY["key"]}, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["response"]["id"])


def wait_done(service: Service, render_id: str, timeout: float = 240) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    seen = set()
    while time.monotonic() < deadline:
        body = httpx.get(f"{service.url}/edit/v1/render/{render_id}", headers={"x-api-key": KEY["key"]},
                         timeout=10).json()
        status = body["response"]["status"]
        seen.add(status)
        if status in ("done", "failed"):
            assert status == "done", body
            assert seen <= {"queued", "fetching", "rendering", "saving", "done"}
            return dict(body["response"])
        time.sleep(0.3)
    raise AssertionError(f"render {render_id} did not finish")


def download(url: str, dest: Path) -> Path:
    # local storage: the URL is this service's download route, which wants the key (S3: a plain URL)
    r = httpx.get(url, headers={"x-api-key": KEY["key"]}, timeout=30, follow_redirects=True)
    assert r.status_code == 200, r.text
    dest.write_bytes(r.content)
    return dest


def probe(path: Path) -> dict[str, Any]:
    import json
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries",
                          "stream=codec_type,width,height,r_frame_rate:format=duration", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return dict(json.loads(out))


def frame(path: Path, t: float, size: tuple[int, int] = (W, H)) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{t}", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgb24", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(size[1], size[0], 3).astype(int)


def close(px: np.ndarray, rgb: tuple[int, int, int], tol: int = 40) -> bool:
    return bool(np.abs(px - np.array(rgb)).max() <= tol)


def check_video(path: Path, size: tuple[int, int], fps: str, duration: float) -> None:
    info = probe(path)
    video = next(s for s in info["streams"] if s["codec_type"] == "video")
    assert (video["width"], video["height"]) == size
    assert video["r_frame_rate"] == fps
    assert abs(float(info["format"]["duration"]) - duration) < 0.15


def test_sdk_title_image_video_with_soundtrack_and_callback(service: Service, api: Any, media: str,
                                                            tmp_path: Path) -> None:
    """Shotstack's hello-world shape, built with the SDK's own models: tracks first on top, fit, offsets."""
    with webhook_receiver() as hooks:
        title = Clip(asset=TitleAsset(text="HELLO", style="minimal", size="small"), start=0.0, length=2.0,
                     position="top")
        # a red square over the top-left corner, offset right (x +) and *up* (y + is up in Shotstack)
        image = Clip(asset=ImageAsset(src=f"{media}/red.png"), start=0.0, length=2.0, fit="none", scale=0.5,
                     position="bottomLeft", offset=Offset(x=0.1, y=0.1))
        # a 320x240 video fitted by crop (the default): fills the whole 512x288 frame
        video = Clip(asset=VideoAsset(src=f"{media}/blue.mp4", volume=0.5), start=0.0, length=2.0,
                     transition=Transition(_in="fade"))
        edit = Edit(timeline=Timeline(background="#000000", soundtrack=Soundtrack(src=f"{media}/music.mp3",
                                                                                 effect="fadeOut"),
                                      tracks=[Track(clips=[title]), Track(clips=[image]), Track(clips=[video])]),
                    output=Output(format="mp4", resolution="preview"), callback=hooks.url)
        queued = api.post_render(edit)
        assert queued["success"] is True and queued["response"]["message"]
        render_id = queued["response"]["id"]
        done = wait_done(service, render_id)
        got = api.get_render(render_id, data=True, merged=True)  # the SDK parses our answer with its models
        assert got["response"]["status"] == "done" and got["response"]["url"] == done["url"]
        assert got["response"]["data"]["output"]["resolution"] == "preview"
        assert done["duration"] == 2.0 and done["owner"] and done["created"].endswith("Z")
        cb = hooks.wait_for("edit", timeout=20)
        assert (cb["id"], cb["status"], cb["action"], cb["url"]) == (render_id, "done", "render", done["url"])
        assert done["id"] == render_id
        assert [e["type"] for e in hooks.got] == ["edit"]  # only the end: no running/progress posts
    out = download(done["url"], tmp_path / "hello.mp4")
    check_video(out, (W, H), "15/1", 2.0)
    assert any(s["codec_type"] == "audio" for s in probe(out)["streams"])
    img = frame(out, 1.5)
    assert close(img[H // 2, W // 2], (0, 0, 255))  # crop fit: the blue video fills the frame
    assert close(img[5, 5], (0, 0, 255)) and close(img[H - 5, W - 5], (0, 0, 255))
    # the 200x200 square scaled by 0.5 = 100x100, bottom-left, moved 0.1*W right and 0.1*H up
    x0, y1 = round(0.1 * W), H - round(0.1 * H)
    assert close(img[y1 - 50, x0 + 50], (255, 0, 0))
    assert close(img[y1 - 50, x0 - 10], (0, 0, 255)) and close(img[y1 + 10, x0 + 50], (0, 0, 255))
    # the title is on top of the video at the top (white pixels there), nothing white below the middle
    assert (img[: H // 4] > 200).all(axis=2).sum() > 20
    assert (img[H // 2:] > 200).all(axis=2).sum() == 0


def test_published_examples_render(service: Service, media: str, tmp_path: Path) -> None:
    """Ken Burns slideshow, luma matte, filters, html text and merge fields, submitted together."""
    preview = {"format": "mp4", "resolution": "preview"}
    edits: dict[str, dict[str, Any]] = {
        "kenburns": {"timeline": {"tracks": [{"clips": [
            {"asset": {"type": "image", "src": f"{media}/wide.png"}, "start": 0, "length": 1, "effect": "zoomIn",
             "transition": {"out": "fade"}},
            {"asset": {"type": "image", "src": f"{media}/red.png"}, "start": 1, "length": 1,
             "effect": "slideLeftFast", "transition": {"in": "fadeFast"}}]}]}, "output": preview},
        "luma": {"timeline": {"background": "#00FF00", "tracks": [{"clips": [
            {"asset": {"type": "luma", "src": f"{media}/luma.png"}, "start": 0, "length": 1},
            {"asset": {"type": "video", "src": f"{media}/blue.mp4"}, "start": 0, "length": 1}]}]},
            "output": preview},
        "filters": {"timeline": {"tracks": [
            {"clips": [{"asset": {"type": "image", "src": f"{media}/red.png"}, "start": 0, "length": 1,
                        "filter": "greyscale", "fit": "cover"}]}]}, "output": preview},
        "merge": {"timeline": {"background": "{{ BG }}", "tracks": [{"clips": [
            {"asset": {"type": "title", "text": "Hi {{ NAME }}", "size": "large"}, "start": 0,
             "length": "{{ LEN }}"}]}]}, "output": {**preview, "format": "{{ FORMAT }}"},
            "merge": [{"find": "BG", "replace": "#FFFF00"}, {"find": "NAME", "replace": "Ann"},
                      {"find": "LEN", "replace": 1}, {"find": "FORMAT", "replace": "mp4"}]},
    }
    if CHROMIUM.exists():
        edits["html"] = {"timeline": {"background": "#000000", "tracks": [{"clips": [
            {"asset": {"type": "html", "width": 200, "height": 100, "position": "center",
                       "html": "<p>Hello</p>", "css": "p{color:#ffffff;font-size:40px;margin:0}"},
             "start": 0, "length": 1, "position": "topRight"}]}]}, "output": preview}
    ids = {name: post(service, e) for name, e in edits.items()}
    outs = {name: download(wait_done(service, rid)["url"], tmp_path / f"{name}.mp4") for name, rid in ids.items()}
    check_video(outs["kenburns"], (W, H), "15/1", 2.0)
    for name in ("luma", "filters", "merge", *(["html"] if "html" in outs else [])):
        check_video(outs[name], (W, H), "15/1", 1.0)
    luma = frame(outs["luma"], 0.5)
    assert close(luma[H // 2, W // 4], (0, 0, 255)) and close(luma[H // 2, 3 * W // 4], (0, 255, 0))
    grey = frame(outs["filters"], 0.5)[H // 2, W // 2]
    assert abs(grey[0] - grey[1]) < 12 and abs(grey[1] - grey[2]) < 12 and 40 < grey[0] < 140
    merged = frame(outs["merge"], 0.5)
    assert close(merged[3, 3], (255, 255, 0))
    if "html" in outs:
        html = frame(outs["html"], 0.5)
        assert (html[:100, W - 200:] > 200).all(axis=2).sum() > 30  # white text in the top-right box
        assert (html[:, : W - 200] > 200).all(axis=2).sum() == 0


def test_unsupported_fields_are_refused_by_name(service: Service, media: str) -> None:
    edit = {"timeline": {"tracks": [{"clips": [{"asset": {"type": "image", "src": f"{media}/red.png"}, "start": 0,
                                                "length": 1, "transform": {"skew": {"x": 0.2}}}]}]},
            "output": {"format": "mp4", "resolution": "preview"}}
    r = httpx.post(f"{service.url}/edit/v1/render", json=edit, headers={"x-api-key": KEY["key"]}, timeout=10)
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False and body["response"]["field"] == "timeline.tracks[0].clips[0].transform.skew"
    r = httpx.get(f"{service.url}/edit/v1/render/job_nope", headers={"x-api-key": KEY["key"]}, timeout=10)
    assert r.status_code == 404 and r.json()["success"] is False
