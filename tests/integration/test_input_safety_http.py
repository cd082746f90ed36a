"""Issue 11 over HTTP: uploads that point at other files, protocol URLs, oversized videos, control characters
and local paths in errors, against a real `reelforge serve`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ffmpeg
from tests.integration.service import Service, wait_job

SRT = "1\n00:00:00,000 --> 00:00:01,000\nHello\n"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory):
    svc = Service(tmp_path_factory.mktemp("svc") / "data").start()
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def client(service: Service):
    with service.client() as c:
        yield c


def upload(client: httpx.Client, path: Path, name: str | None = None) -> str:
    with path.open("rb") as fh:
        resp = client.post("/v1/files", params={"filename": name or path.name}, content=fh)
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


@pytest.fixture(scope="module")
def canary(service: Service) -> Path:
    """A red frame with a 1 kHz tone, outside the service's data folder."""
    secret = service.data_dir.parent / "secret"
    secret.mkdir(exist_ok=True)
    path = secret / "canary.ts"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=160x120:r=25:d=3", "-f", "lavfi", "-i", "sine=frequency=1000:d=3",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path))
    return path


def _playlist(segment: str) -> str:
    return f"#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3.0,\n{segment}\n#EXT-X-ENDLIST\n"


def _jobs(file_id: str) -> dict[str, dict[str, Any]]:
    return {
        "probe": {"input": file_id},
        "caption": {"input": file_id, "subtitles_text": SRT},
        "loop": {"input": file_id, "duration_s": 1},
        "concat": {"inputs": [file_id, file_id]},
        "render": {"timeline": {"tracks": [{"clips": [{"asset": {"type": "video", "src": file_id}, "start": 0,
                                                        "length": 1}]}]}, "output": {"size": "160x120"}},
    }


@pytest.mark.parametrize("kind", ["abs", "file_url", "traversal", "ffconcat"])
@pytest.mark.parametrize("name", ["list.m3u8", "clip.mp4"])
def test_uploaded_playlists_never_read_local_files(kind: str, name: str, client: httpx.Client, canary: Path,
                                                   tmp_path: Path) -> None:
    up = tmp_path / "upload.txt"
    deep = "../" * 30 + str(canary).lstrip("/")  # from wherever the job's copy lands, up to / and down again
    up.write_text({"abs": _playlist(str(canary)), "file_url": _playlist(f"file://{canary}"),
                   "traversal": _playlist(deep), "ffconcat": f"ffconcat version 1.0\nfile '{canary}'\n"}[kind])
    file_id = upload(client, up, name)
    for op, params in _jobs(file_id).items():
        resp = client.post("/v1/jobs", json={"op": op, "params": params})
        assert resp.status_code == 202, resp.text
        job = wait_job(client, resp.json()["id"])
        assert job["status"] == "failed", (op, job)
        assert job["error"]["code"] == "input_format_not_allowed", (op, job["error"])
        assert file_id in job["error"]["message"] and str(canary) not in job["error"]["message"]


@pytest.mark.parametrize("ref", ["concat:/etc/hosts|/etc/hosts", "subfile,,start,0,end,0,,:/etc/hosts",
                                 "data:video/mp4;base64,AAAA", "file:///etc/hosts", "pipe:0", "/etc/hosts",
                                 "../../etc/hosts"])
def test_protocol_urls_and_paths_are_refused_at_submit(ref: str, client: httpx.Client) -> None:
    for op, params in _jobs(ref).items():
        resp = client.post("/v1/jobs", json={"op": op, "params": params})
        assert resp.status_code == 422, (op, resp.text)
        assert resp.json()["error"]["code"] == "invalid_params"


def test_an_8k_upload_is_refused_by_every_op(client: httpx.Client, tmp_path: Path) -> None:
    big = tmp_path / "8k.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=7680x4320:r=2:d=1", "-c:v", "libx264", "-preset", "ultrafast",
           "-pix_fmt", "yuv420p", str(big))
    file_id = upload(client, big)
    for op, params in _jobs(file_id).items():
        job = wait_job(client, client.post("/v1/jobs", json={"op": op, "params": params}).json()["id"])
        if op == "probe":  # metadata only: described, with the cap it is over
            assert job["status"] == "succeeded"
            assert job["result"]["data"]["limits"]["problems"][0]["code"] == "video_too_large"
            continue
        assert job["status"] == "failed" and job["error"]["code"] == "video_too_large", (op, job)


@pytest.mark.parametrize(("op", "params", "field"), [
    ("tts", {"text": "Hello\u0000world", "engine": "piper"}, "params.text"),
    ("caption", {"input": "file_" + "0" * 32, "subtitles_text": SRT.replace("Hello", "He\u0007llo")},
     "params.subtitles_text"),
    ("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "text", "text": "a\u001bb"}, "start": 0,
                                                    "length": 1}]}]}}, "params.timeline"),
    ("build", {"script": "Hi\u0000.", "backgrounds": ["file_" + "0" * 32]}, "params.script"),
])
def test_control_characters_in_text_are_a_422_naming_the_field(op: str, params: dict[str, Any], field: str,
                                                                client: httpx.Client) -> None:
    resp = client.post("/v1/jobs", json={"op": op, "params": params})
    assert resp.status_code == 422, resp.text
    details = resp.json()["error"]["details"]
    assert field in {d["path"] for d in details}, details
    assert any("control character" in d["message"] for d in details), details


def test_errors_carry_no_local_paths(client: httpx.Client, service: Service, tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x01 not a video at all" * 100)
    truncated = tmp_path / "cut.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=s=160x120:r=25:d=2", "-c:v", "libx264", "-preset", "ultrafast",
           str(truncated))
    truncated.write_bytes(truncated.read_bytes()[:2000])
    data_dir = str(service.data_dir.resolve())
    for path in (junk, truncated):
        file_id = upload(client, path)
        for op, params in _jobs(file_id).items():
            job = wait_job(client, client.post("/v1/jobs", json={"op": op, "params": params}).json()["id"])
            assert job["status"] == "failed", (op, job)
            message = job["error"]["message"]
            assert data_dir not in message and "/work/" not in message and "/tmp/" not in message, (op, message)


def test_no_job_succeeds_with_an_empty_output(client: httpx.Client, tmp_path: Path) -> None:
    y4m = tmp_path / "cut.y4m"  # its only frame cut short: ffmpeg writes a 262-byte MP4 without streams
    y4m.write_bytes(b"YUV4MPEG2 W64 H48 F25:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(1000))
    jobs = [
        ("caption", {"input": upload(client, y4m), "subtitles_text": SRT}),
        ("render", {"timeline": {"tracks": [{"clips": [{"asset": {"type": "text", "text": "hi"}, "start": 0,
                                                        "length": 1e-9}]}]}, "output": {"size": "160x120"}}),
    ]
    for op, params in jobs:
        resp = client.post("/v1/jobs", json={"op": op, "params": params})
        assert resp.status_code == 202, resp.text
        job = wait_job(client, resp.json()["id"])
        assert job["status"] == "failed" and job["error"]["code"] == "output_invalid", (op, job)
        assert job["attempts"] == 1 and not job.get("result"), job
