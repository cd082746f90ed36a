"""The users' earlier APIs over a real service with S3 storage (moto on loopback): seed 004's /video/*,
/transcribe and /job/{id} with the request bodies of its README, and seed 003's overlay call.

Each answer has the documented shape, and the media really is at `path/output_filename` in the bucket
(under the service prefix and the tenant's delivery root)."""

from __future__ import annotations

import functools
import json
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import ffmpeg
from tests.integration.service import Service, moto_bucket

pytest.importorskip("moto.server")
ROOT = "rf/delivered/local/"  # S3_PREFIX rf/ + delivery_root delivered/{tenant}/ (no key: tenant "local")


def drawn_person(w: int = 320, h: int = 180) -> np.ndarray:
    """A cartoon head and shoulders on a plain wall (BGR): enough of a person for the segmentation models."""
    img = np.full((h, w, 3), (200, 210, 220), np.uint8)
    cx = w // 2
    cv2.ellipse(img, (cx, h + 10), (int(w * 0.28), int(h * 0.45)), 0, 180, 360, (40, 60, 150), -1)  # shirt
    cv2.rectangle(img, (cx - 12, int(h * 0.55)), (cx + 12, int(h * 0.7)), (120, 160, 210), -1)  # neck
    cv2.ellipse(img, (cx, int(h * 0.38)), (int(h * 0.15), int(h * 0.2)), 0, 0, 360, (130, 170, 225), -1)  # face
    cv2.ellipse(img, (cx, int(h * 0.27)), (int(h * 0.16), int(h * 0.12)), 0, 180, 360, (30, 30, 40), -1)  # hair
    for dx in (-10, 10):
        cv2.circle(img, (cx + dx, int(h * 0.36)), 3, (20, 20, 20), -1)
    cv2.ellipse(img, (cx, int(h * 0.47)), (9, 4), 0, 0, 180, (60, 60, 160), -1)
    return img


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A loopback web server with small inputs; yields its base URL."""
    d = tmp_path_factory.mktemp("media")
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=2", "-f", "lavfi", "-i",
           "sine=frequency=440:duration=2:sample_rate=48000", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(d / "video.mp4"))
    cv2.imwrite(str(d / "person.png"), drawn_person())
    ffmpeg("-loop", "1", "-framerate", "10", "-i", str(d / "person.png"), "-t", "1", "-c:v", "libx264", "-preset",
           "ultrafast", "-pix_fmt", "yuv420p", str(d / "head.mp4"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=1:sample_rate=48000", str(d / "audio.wav"))
    for i, src in enumerate(("testsrc2", "smptebars"), start=1):
        ffmpeg("-f", "lavfi", "-i", f"{src}=size=480x270:duration=1", "-frames:v", "1", str(d / f"photo{i}.png"))
    (d / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,500\nOlá, legenda\n")
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(d / "speech.wav"),
                    "Hello world. This is a short test of the transcription."], check=True)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(d)))
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_port}"
    srv.shutdown()


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Any, str]]:
    with moto_bucket() as env:
        service = Service(tmp_path_factory.mktemp("legacy") / "data", REELFORGE_FETCH_ALLOW_PRIVATE="true",
                          REELFORGE_WHISPER_MODEL="packaged:tiny.en", REELFORGE_LEGACY_SYNC_WAIT_S="120", **env)
        service.start()
        s3 = boto3.client("s3", endpoint_url=env["REELFORGE_S3_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        yield service, s3, env["REELFORGE_S3_BUCKET"]
        service.stop()


def probe(data: bytes, tmp: Path, name: str) -> dict[str, Any]:
    path = tmp / name
    path.write_bytes(data)
    out = subprocess.run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def key_of(url: str) -> str:
    """The object key a presigned (path-style) URL names, without the bucket."""
    return unquote(urlsplit(url).path).split("/", 2)[2]


def check_envelope(body: dict[str, Any], message: str) -> None:
    assert body["code"] == 200 and body["message"] == message
    ex = body["execution"]
    assert ex["startTime"].endswith("Z") and ex["endTime"].endswith("Z")
    assert ex["durationMs"] >= 0 and abs(ex["durationSeconds"] * 1000 - ex["durationMs"]) < 1
    assert body["stats"]["jobId"] and body["stats"]["executionTime"] == ex["durationMs"]


def test_caption_from_the_readme_body(svc, media, tmp_path):
    service, s3, bucket = svc
    body = {"url_video": f"{media}/video.mp4", "url_srt": f"{media}/subs.srt",
            "path": "Project Name/Video Title/videos/", "output_filename": "video_legendado.mp4"}
    with service.client() as c:
        r = c.post("/video/caption", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    check_envelope(out, "Video caption completed and uploaded to S3 successfully")
    assert key_of(out["video_url"]) == ROOT + "Project Name/Video Title/videos/video_legendado.mp4"
    data = s3.get_object(Bucket=bucket, Key=ROOT + "Project Name/Video Title/videos/video_legendado.mp4")["Body"].read()
    assert httpx.get(out["video_url"]).content == data  # the URL the client gets reads that object
    info = probe(data, tmp_path, "cap.mp4")
    assert info["streams"][0]["codec_name"] == "h264" and abs(float(info["format"]["duration"]) - 2) < 0.2


def test_img2vid_one_job_per_image_at_1080p24(svc, media, tmp_path):
    service, s3, bucket = svc
    body = {"images": [{"id": "img-1", "image_url": f"{media}/photo1.png", "duracao": 0.5},
                       {"id": "img-2", "image_url": f"{media}/photo2.png", "duracao": 0.75}],
            "path": "Project Name/Video Title/videos/temp/"}
    with service.client() as c:
        r = c.post("/video/img2vid", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        again = c.get(f"/job/{out['stats']['jobId']}").json()
    check_envelope(out, "Images converted to videos and uploaded to S3 successfully")
    assert [(v["id"], v["filename"]) for v in out["videos"]] == [("img-1", "video_1.mp4"), ("img-2", "video_2.mp4")]
    assert out["stats"]["total"] == 2 and out["stats"]["processed"] == 2
    for v, seconds in zip(out["videos"], (0.5, 0.75), strict=True):
        key = ROOT + "Project Name/Video Title/videos/temp/" + v["filename"]
        assert key_of(v["video_url"]) == key
        stream = probe(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), tmp_path, v["filename"])["streams"][0]
        assert (stream["width"], stream["height"], stream["r_frame_rate"]) == (1920, 1080, "24/1")
        assert abs(float(stream["duration"]) - seconds) < 0.05
    assert again["status"] == "COMPLETED" and again["id"] == out["stats"]["jobId"]
    assert [v["filename"] for v in again["output"]["videos"]] == ["video_1.mp4", "video_2.mp4"]


def test_addaudio_is_as_long_as_the_shorter_input(svc, media, tmp_path):
    service, s3, bucket = svc
    body = {"url_video": f"{media}/video.mp4", "url_audio": f"{media}/audio.wav",
            "path": "Project Name/Video Title/videos/", "output_filename": "video_com_audio.mp4"}
    with service.client() as c:
        r = c.post("/video/addaudio", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    check_envelope(out, "Video addaudio completed and uploaded to S3 successfully")
    key = ROOT + "Project Name/Video Title/videos/video_com_audio.mp4"
    assert key_of(out["video_url"]) == key
    info = probe(s3.get_object(Bucket=bucket, Key=key)["Body"].read(), tmp_path, "aa.mp4")
    assert {s["codec_type"] for s in info["streams"]} == {"video", "audio"}
    assert abs(float(info["format"]["duration"]) - 1.0) < 0.15


def test_transcribe_writes_srt_ass_and_words(svc, media):
    service, s3, bucket = svc
    with service.client() as c:
        r = c.post("/transcribe", json={"audio_url": f"{media}/speech.wav", "path": "Project/transcricao/",
                                        "model": "large-v3", "language": "en"})
    assert r.status_code == 200, r.text
    out = r.json()
    check_envelope(out, "Transcription completed and uploaded to S3 successfully")
    assert "hello" in out["transcription"]["text"].lower()
    assert out["model"]["requested"] == "large-v3" and out["model"]["used"] == "packaged:tiny.en"
    assert "not offered" in out["model"]["note"]
    files = {"segments.srt": out["files"]["segments"]["srt"], "karaoke.ass": out["files"]["karaoke"]["ass"],
             "words.json": out["files"]["words"]["json"]}
    for name, url in files.items():
        assert key_of(url) == ROOT + "Project/transcricao/" + name
    words = json.loads(s3.get_object(Bucket=bucket, Key=ROOT + "Project/transcricao/words.json")["Body"].read())
    assert words
    ass = s3.get_object(Bucket=bucket, Key=ROOT + "Project/transcricao/karaoke.ass")["Body"].read().decode()
    assert "\\k" in ass  # karaoke timing tags


def test_async_mode_returns_the_job_id_at_once(svc, media):
    service, _s3, _bucket = svc
    body = {"url_video": f"{media}/video.mp4", "url_audio": f"{media}/audio.wav", "path": "async/",
            "output_filename": "a.mp4"}
    with service.client() as c:
        first = c.post("/video/addaudio", params={"async": "true"}, json=body)
        second = c.post("/video/addaudio", headers={"Prefer": "respond-async"},
                        json={**body, "output_filename": "b.mp4"})
        for r in (first, second):
            assert r.status_code == 202, r.text
            assert r.json()["status"] in ("IN_QUEUE", "IN_PROGRESS") and r.json()["statusUrl"].startswith("/job/")
        for r, name in ((first, "a.mp4"), (second, "b.mp4")):
            deadline = time.monotonic() + 60
            while (status := c.get(f"/job/{r.json()['jobId']}").json())["status"] != "COMPLETED":
                assert status["status"] in ("IN_QUEUE", "IN_PROGRESS") and time.monotonic() < deadline, status
                time.sleep(0.2)
            assert key_of(status["output"]["video_url"]) == ROOT + "async/" + name


def test_the_earlier_health_routes_answer_the_services_health(svc):
    service, _s3, _bucket = svc
    with service.client() as c:
        own = c.get("/health").json()
        for route in ("/health", "/transcribe/health", "/runpod/health"):
            r = c.get(route, headers={"X-API-Key": ""})  # no key needed, as before
            assert r.status_code == 200 and r.json()["status"] == "ok", (route, r.text)
            assert r.json()["checks"].keys() == own["checks"].keys()


def test_missing_fields_and_unsafe_paths_are_400(svc, media):
    service, _s3, _bucket = svc
    expected = {"/video/caption": "url_video, url_srt, path, and output_filename are required",
                "/video/addaudio": "url_video, url_audio, path, and output_filename are required",
                "/video/img2vid": "images array is required with at least one image",
                "/transcribe": "audio_url and path are required"}
    with service.client() as c:
        for route, message in expected.items():
            r = c.post(route, json={})
            assert r.status_code == 400 and r.json()["error"] == "Bad Request" and r.json()["message"] == message
        base = {"url_video": f"{media}/video.mp4", "url_audio": f"{media}/audio.wav", "output_filename": "x.mp4"}
        for path in ("../other-tenant/", "/etc/", "a/../../b/", "s3://bucket/"):
            r = c.post("/video/addaudio", json={**base, "path": path})
            assert r.status_code == 400 and "output_paths" in r.json()["message"], (path, r.text)
        r = c.post("/video/addaudio", json={**base, "path": "ok/", "output_filename": "../x.mp4"})
        assert r.status_code == 400
        r = c.post("/video/img2vid", json={"images": [{"id": "a", "image_url": f"{media}/photo1.png"}], "path": "p/"})
        assert r.status_code == 400 and "duracao" in r.json()["message"]
        r = c.get("/job/job_" + "0" * 32)
        assert r.status_code == 404 and r.json()["error"] == "Not Found"
        r = c.post("/video/caption", json={}, headers={"X-API-Key": "rf_not_a_key"})
        assert r.status_code == 401 and r.json()["error"] == "Unauthorized"


def test_a_job_failing_on_the_users_input_is_4xx_with_its_code(svc, media):
    """The job really runs and fails; who caused it picks the status: the user's input -> 422 (as the native
    API answers an input or media error), with the job's own code and id, never a 500."""
    service, _s3, _bucket = svc
    cases = {"no_video_stream": {"url_video": f"{media}/subs.srt", "url_audio": f"{media}/audio.wav"},
             "input_fetch_failed": {"url_video": f"{media}/missing.mp4", "url_audio": f"{media}/audio.wav"}}
    with service.client() as c:
        for name, urls in cases.items():
            r = c.post("/video/addaudio", json={**urls, "path": "bad/", "output_filename": f"{name}.mp4"})
            out = r.json()
            assert r.status_code == 422, (name, r.text)
            assert out["error"] == "Unprocessable Entity" and out["code"] == 422 and out["status"] == "FAILED"
            assert out["error_code"] == name and out["message"] and out["jobId"].startswith("job_"), out
            job = c.get(f"/job/{out['jobId']}").json()
            assert job["status"] == "FAILED" and job["error_code"] == name and job["error"] == out["message"]


def test_a_call_longer_than_the_wait_is_504_with_the_job_id(svc, media):
    service, _s3, _bucket = svc
    body = {"images": [{"id": "slow", "image_url": f"{media}/photo1.png", "duracao": 20}], "path": "slow/"}
    with service.client() as c:
        r = c.post("/video/img2vid", json=body, headers={"Prefer": "wait=0.3"})
        assert r.status_code == 504, r.text
        out = r.json()
        assert out["error"] == "Gateway Timeout" and out["jobId"].startswith("i2v_") and out["jobId"] in out["message"]
        assert c.get(f"/job/{out['jobId']}").json()["status"] in ("IN_QUEUE", "IN_PROGRESS")
        assert c.post(f"/job/{out['jobId']}/cancel").status_code == 200
        deadline = time.monotonic() + 30
        while (status := c.get(f"/job/{out['jobId']}").json())["status"] != "CANCELLED":
            assert time.monotonic() < deadline, status
            time.sleep(0.2)


def test_seed003_overlay_call_gives_a_transparent_overlay(svc, media, tmp_path):
    service, _s3, _bucket = svc
    body = {"video_url": f"{media}/head.mp4", "container": "mov", "threshold": 0.6, "feather": 7,
            "engine": "rembg", "rembg_model": "u2net_human_seg", "shape": "circle", "circle_radius": 0.35,
            "circle_center_x": 0.5, "circle_center_y": 0.5}
    with service.client() as c:
        r = c.post("/overlay", json=body)
        assert r.status_code == 200, r.text
        out = r.json()
        job = c.get(f"/v1/jobs/{out['job_id']}").json()
    assert out["status"] == "success" and out["processing_time"] >= 0 and abs(out["duration"] - 1.0) < 0.15
    assert job["params"]["engine"] == "rvm" and job["params"]["output"] == "mov"  # best engine installed here
    assert job["params"]["radius"] == 0.35 and job["params"]["feather"] == 7
    assert job["notes"]["engine_requested"] == "rembg:u2net_human_seg" and "rvm" in job["notes"]["engine_mapping"]
    path = tmp_path / "overlay.mov"
    path.write_bytes(httpx.get(out["overlay_url"]).content)
    stream = probe(path.read_bytes(), tmp_path, "o.mov")["streams"][0]
    assert stream["codec_name"] == "prores" and stream["pix_fmt"].startswith("yuva")
    # the circle's bounding box: the person opaque in the middle, the wall and the corners transparent
    w, h = stream["width"], stream["height"]
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "rgba", "-"], capture_output=True, check=True).stdout
    alpha = np.frombuffer(raw, np.uint8)[3::4].reshape(h, w)
    assert alpha[h // 2, w // 2] > 200 and alpha[0, 0] == 0 and alpha[-1, -1] == 0
    assert alpha[h // 2, 2] == 0  # the wall beside the head, inside the circle's box
    assert 0.1 < (alpha > 128).mean() < 0.9


def test_each_tenant_delivers_into_its_own_folder(svc, media):
    service, _s3, _bucket = svc
    made = service.cli("keys", "create", "--name", "alice")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    body = {"url_video": f"{media}/video.mp4", "url_audio": f"{media}/audio.wav", "path": "Project/",
            "output_filename": "same-name.mp4"}
    with service.client(key) as alice, service.client() as local:
        r = alice.post("/video/addaudio", json=body)
        assert r.status_code == 200, r.text
        assert key_of(r.json()["video_url"]) == "rf/delivered/alice/Project/same-name.mp4"
        job_id = r.json()["stats"]["jobId"]
        assert local.get(f"/job/{job_id}").status_code == 404  # another tenant's id reads as missing
        assert local.post(f"/job/{job_id}/cancel").status_code == 404
