"""The earlier APIs' translation pieces without a server: output paths under the tenant's delivery root,
the seed-003 overlay names, seed-004 request bodies -> JobCreate, group statuses, and an agent's commit of
a job whose outputs are named."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from reelforge.api.legacy_common import failed_status
from reelforge.config import Settings
from reelforge.engine.control import JobStatus
from reelforge.errors import (
    InvalidParams,
    MediaError,
    ProcessingError,
    UserError,
    job_error,
    job_error_status,
)
from reelforge.formats import seed003, seed004
from reelforge.formats.seed004 import overall_status
from reelforge.jobs.agents import AgentJobs
from reelforge.jobs.service import JobCreate
from reelforge.jobs.services import JobServices
from reelforge.jobs.store import JobRecord
from reelforge.models.segmentation import best_person_engine
from reelforge.ops.overlay import OverlayParams
from reelforge.ops.registry import load_plugins
from reelforge.storage.delivery import delivery_key, relative_path, tenant_segment

ROOT = "delivered/{tenant}/"


@pytest.mark.parametrize("path", ["../x.mp4", "/abs/x.mp4", "a//b.mp4", "a/./b.mp4", "C:/x.mp4", "a\\b.mp4",
                                  "s3://bucket/x.mp4", "a/\x01.mp4", ""])
def test_unsafe_output_paths_are_refused(path: str) -> None:
    with pytest.raises(ValueError):
        delivery_key(ROOT, "acme", path)


def test_output_paths_land_in_the_tenants_own_folder() -> None:
    assert delivery_key(ROOT, "acme", "Project Name/videos/a b.mp4") == "delivered/acme/Project Name/videos/a b.mp4"
    assert relative_path("Project/videos/", "x.mp4") == "Project/videos/x.mp4"
    with pytest.raises(ValueError):
        relative_path("ok/", "../x.mp4")
    # a tenant name that is not one plain segment cannot alias another tenant's folder
    assert tenant_segment("a/b") != "a" and "/" not in tenant_segment("a/b")
    assert delivery_key(ROOT, "a/b", "x.mp4") != delivery_key(ROOT, "a", "b/x.mp4")


@pytest.mark.parametrize("root", ["{tenant}/", "jobs/{tenant}/", "out/", "/out/{tenant}/", "out/../{tenant}/",
                                  "out/{tenant}/{tenant}/"])
def test_delivery_roots_that_would_share_or_escape_are_refused(root: str) -> None:
    with pytest.raises(ValueError):
        Settings(delivery_root=root)
    assert Settings(delivery_root="clientes/{tenant}").storage.delivery_root == "clientes/{tenant}/"


def test_seed003_names_map_onto_the_overlay_op() -> None:
    p = OverlayParams.model_validate({
        "video_url": "https://example.com/head.mp4", "container": "webm", "threshold": 0.6, "feather": 7,
        "engine": "rembg", "rembg_model": "u2netp", "shape": "rect", "circle_radius": 0.3,
        "circle_center_x": 0.4, "circle_center_y": 0.6})
    assert (str(p.input), p.output, p.radius, p.cx, p.cy, p.shape) == (
        "https://example.com/head.mp4", "webm", 0.3, 0.4, 0.6, "rect")
    assert p.engine == best_person_engine() and p.engine_requested == "rembg:u2netp"
    again = OverlayParams.model_validate(p.model_dump(mode="json"))  # as a job host reads the stored params
    assert again.engine_requested == "rembg:u2netp" and again.engine == p.engine
    # the original ignored rembg_model unless engine was rembg
    plain = OverlayParams.model_validate({"video_url": "https://example.com/h.mp4", "rembg_model": "u2netp"})
    assert plain.engine == "mediapipe" and plain.engine_requested is None


@pytest.mark.parametrize("bad", [
    {"video_url": "https://example.com/h.mp4", "input": "https://example.com/h.mp4"},
    {"video_url": "https://example.com/h.mp4", "engine": "rembg", "rembg_model": "nope"},
    {"video_url": "https://example.com/h.mp4", "container": "gif"},
])
def test_seed003_mistakes_are_validation_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        OverlayParams.model_validate(bad)


def test_seed004_bodies_become_native_jobs() -> None:
    [cap] = seed004.caption_jobs({"url_video": "https://e.com/v.mp4", "url_srt": "https://e.com/s.srt",
                                  "path": "P/videos", "output_filename": "out.mp4"})
    assert cap.op == "caption" and cap.output_paths == {"video": "P/videos/out.mp4"}
    assert cap.notes["seed004"]["kind"] == "caption"
    group = seed004.group_id("0" * 20, 2)
    jobs = seed004.img2vid_jobs({"images": [{"id": "a", "image_url": "https://e.com/1.jpg", "duracao": 6.48},
                                            {"id": "b", "image_url": "https://e.com/2.jpg", "duracao": 5}],
                                 "path": "P/videos/temp/"}, group)
    assert [j.output_paths for j in jobs] == [{"clip_001": "P/videos/temp/video_1.mp4"},
                                              {"clip_001": "P/videos/temp/video_2.mp4"}]
    assert [j.idempotency_key for j in jobs] == [seed004.member_key(group, 1), seed004.member_key(group, 2)]
    assert seed004.group_size(group) == 2 and seed004.group_size("job_" + "0" * 32) is None
    first = jobs[0].params
    assert (first["size"], first["fps"], first["zoom"]) == ("1920x1080", 24, 0.324)
    assert first["images"][0]["duration_s"] == 6.48
    [asr] = seed004.transcribe_jobs({"audio_url": "https://e.com/a.mp3", "path": "T", "model": "tiny.en"},
                                    {"base", "tiny.en"})
    assert asr.params["model"] == "tiny.en" and asr.output_paths == {
        "segments_srt": "T/segments.srt", "captions": "T/karaoke.ass", "words": "T/words.json"}
    [asr] = seed004.transcribe_jobs({"audio_url": "https://e.com/a.mp3", "path": "T", "model": "turbo"}, {"base"})
    assert "model" not in asr.params and "not offered" in asr.notes["seed004"]["model_note"]
    [audio] = seed004.addaudio_jobs({"url_video": "https://e.com/v.mp4", "url_audio": "https://e.com/a.mp3",
                                     "path": "P/", "output_filename": "x.mp4"})
    assert audio.params["fit"] == "shortest"
    with pytest.raises(UserError) as err:
        seed004.img2vid_jobs({"images": [{"id": "a", "image_url": "https://e.com/1.jpg", "duracao": True}],
                              "path": "p/"}, "g")
    assert err.value.http_status == 400
    with pytest.raises(UserError) as err:
        seed004.caption_jobs({"url_video": "https://e.com/v.mp4"})
    assert err.value.message == "url_video, url_srt, path, and output_filename are required"


def test_seed003_call_gets_the_functions_defaults() -> None:
    params = seed003.overlay_params({"video_url": "https://e.com/h.mp4", "engine": "rembg"})
    assert (params["container"], params["threshold"], params["feather"], params["rembg_model"]) == (
        "mov", 0.6, 7, "u2net_human_seg")
    p = OverlayParams.model_validate(params)
    assert p.output == "mov" and p.radius == 0.35 and p.engine_requested == "rembg:u2net_human_seg"
    with pytest.raises(UserError):
        seed003.overlay_params({"container": "mov"})


def _job(status: JobStatus) -> JobRecord:
    return JobRecord(id="j", tenant="t", op="img2vid", params={}, queue="cpu", status=status, stage=None,
                     progress=0.0, priority=0, timeout_s=1, idempotency_key=None, webhook_url=None, created_at=0,
                     started_at=None, finished_at=None, updated_at=0, attempts=0, max_attempts=1,
                     lease_owner=None, lease_expires_at=None, cancel_requested=False)


def test_a_group_of_jobs_has_one_status() -> None:
    q, r, s, f = (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED)
    cases = {(q, q): q, (q, s): r, (r, f): r, (s, f): f, (s, s): s, (s, JobStatus.CANCELLED): JobStatus.CANCELLED}
    for statuses, want in cases.items():
        assert overall_status([_job(x) for x in statuses]) == want


@pytest.mark.parametrize(("status", "error", "want"), [
    (JobStatus.FAILED, {"code": "not_media", "message": "m", "http_status": 422}, 422),  # the user's input
    (JobStatus.FAILED, {"code": "missing_fields", "message": "m", "http_status": 400}, 400),
    (JobStatus.FAILED, {"code": "input_too_large", "message": "m", "http_status": 413}, 400),
    (JobStatus.FAILED, {"code": "input_not_found", "message": "m", "http_status": 404}, 400),
    (JobStatus.FAILED, {"code": "invalid_params", "message": "m"}, 422),  # a row stored before http_status
    (JobStatus.FAILED, {"code": "ffmpeg_failed", "message": "m", "http_status": 500}, 500),  # ours
    (JobStatus.FAILED, {"code": "model_unavailable", "message": "m", "http_status": 500}, 500),
    (JobStatus.FAILED, {"code": "disk_full", "message": "m", "http_status": 507}, 500),
    (JobStatus.FAILED, {"code": "worker_lost", "message": "worker lost"}, 500),
    (JobStatus.FAILED, {"code": "internal_error", "message": "m"}, 500),
    (JobStatus.FAILED, None, 500),
    (JobStatus.CANCELLED, {"code": "cancelled", "message": "m", "http_status": 499}, 409),
    (JobStatus.TIMED_OUT, {"code": "timed_out", "message": "m"}, 504),
])
def test_a_failed_job_is_answered_by_who_caused_it(status: JobStatus, error: dict[str, object] | None,
                                                   want: int) -> None:
    assert failed_status(status, error) == want


def test_a_jobs_stored_error_keeps_its_http_status() -> None:
    assert job_error(MediaError("Not a video.", code="not_media")) == {
        "code": "not_media", "message": "Not a video.", "http_status": 422}
    assert job_error(ProcessingError("ffmpeg broke.", code="ffmpeg_failed"))["http_status"] == 500
    assert job_error_status(job_error(UserError("No."))) == 400


class NoExecutor:
    def submit(self, job: object) -> None:
        pass

    def cancel(self, job_id: str) -> None:
        pass


def test_named_outputs_through_the_service_and_an_agent(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", plugins="tests.plugins.slow_ops")
    load_plugins(settings.service.plugins)
    services = JobServices.create(settings)
    try:
        service = services.job_service(NoExecutor())
        with pytest.raises(InvalidParams) as err:
            service.submit("acme", JobCreate(op="test_slow", params={"seconds": 1},
                                             output_paths={"video": "../bob/x.mp4"}))
        assert err.value.code == "invalid_output_path" and "output_paths.video" in err.value.message
        job, _ = service.submit("acme", JobCreate(op="test_slow", params={"seconds": 1},
                                                  output_paths={"video": "Project/out.mp4"}))
        assert job.output_keys == {"video": "delivered/acme/Project/out.mp4"}
        agents = AgentJobs(settings, services.stores, services.storage, services.control)
        _, rec = services.stores.agents.create_token("box1", ["cpu"])
        envelope = agents.claim(rec, "w1", ["cpu"], {})
        assert envelope is not None
        grant = agents.grant(envelope["token"], job.id)
        data = b"video" * 50
        (tmp_path / "v.mp4").write_bytes(data)
        services.storage.put_file(tmp_path / "v.mp4", agents.upload_key(grant, "v.mp4"), "video/mp4")
        meta = {"filename": "v.mp4", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "content_type": "video/mp4"}
        assert agents.finish(grant, JobStatus.SUCCEEDED, {"outputs": {"video": meta}}, None)
        out = service.get("acme", job.id).result["outputs"]["video"]  # type: ignore[index]
        assert (out["key"], out["filename"]) == ("delivered/acme/Project/out.mp4", "out.mp4")
        assert services.storage.open_read(out["key"]).read() == data
        # a retry lands in the same place
        other, _ = service.submit("acme", JobCreate(op="test_slow", params={"seconds": 1},
                                                    output_paths={"video": "Project/again.mp4"}))
        service.cancel("acme", other.id)
        retried, _ = service.retry("acme", other.id)
        assert retried.output_keys == {"video": "delivered/acme/Project/again.mp4"}
    finally:
        services.close()
