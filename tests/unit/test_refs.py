"""The one input-reference grammar: what each form parses to, and who relies on it agreeing."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from reelforge.errors import UrlNotAllowed
from reelforge.ops.context import OpContext
from reelforge.refs import FILE_ID_RE, MediaRef, is_file_id, parse_ref, scheme_of
from reelforge.storage import LocalStorage

FILE_ID = "file_" + "0123456789abcdef" * 2


@pytest.mark.parametrize(("text", "kind"), [
    (FILE_ID, "file"),
    ("https://example.com/a.mp4", "url"),
    ("HTTP://example.com/a.mp4", "url"),  # schemes are case-insensitive
    ("s3://bucket/in/a.mp4", "s3"),
    ("step://voice/audio", "step"),
    ("file:///tmp/a.mp4", "local"),
    ("/tmp/a.mp4", "other"),
    ("ftp://example.com/a.mp4", "other"),
    ("file_" + "0" * 31, "other"),  # one hex digit short
    ("FILE_" + "0" * 32, "other"),  # ids are lower case
])
def test_each_form_has_one_kind(text: str, kind: str) -> None:
    assert parse_ref(text).kind == kind


def test_parts_of_s3_and_step_refs() -> None:
    s3 = parse_ref("s3://media/incoming/clip one.mp4")
    assert (s3.bucket, s3.key) == ("media", "incoming/clip one.mp4")
    assert parse_ref("s3://media/").key == ""
    step = parse_ref("step://voice/audio")
    assert (step.step, step.output, step.is_step_output) == ("voice", "audio", True)
    assert not parse_ref("step://voice").is_step_output
    assert not parse_ref("step://voice/a/b").is_step_output


def test_a_file_id_is_the_whole_string() -> None:
    assert is_file_id(FILE_ID)
    for text in (FILE_ID + "\n", FILE_ID + "x", " " + FILE_ID, None, 7):
        assert not is_file_id(text)
    # the regex export agrees whether callers use match or fullmatch
    assert FILE_ID_RE.match(FILE_ID + "\n") is None and FILE_ID_RE.match(FILE_ID + "0") is None


def test_scheme_of() -> None:
    assert scheme_of("S3://b/k") == "s3"
    assert scheme_of("no scheme") == ""
    assert scheme_of("a b://x") == ""


class _Model(BaseModel):
    src: MediaRef


def test_media_ref_at_submit_time_accepts_client_forms_only() -> None:
    api = {"source": "api"}
    for ok in (FILE_ID, "https://example.com/a.mp4", "s3://b/k.mp4", "step://a/b"):
        assert _Model.model_validate({"src": ok}, context=api).src == ok
    for bad in ("/etc/passwd", "file:///etc/passwd", "ftp://example.com/a", "http://127.0.0.1/x"):
        with pytest.raises(ValidationError):
            _Model.model_validate({"src": bad}, context=api)
    assert _Model.model_validate({"src": " /tmp/a.mp4 "}).src == "/tmp/a.mp4"  # tests and local use
    with pytest.raises(ValidationError):
        _Model.model_validate({"src": "  "})


def test_local_storage_refuses_s3_references_through_the_interface(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "s")
    with pytest.raises(UrlNotAllowed, match="s3:// inputs need S3 storage"):
        store.head_external("bucket", "key.mp4")
    with pytest.raises(UrlNotAllowed, match="s3:// inputs need S3 storage"):
        store.read_external("bucket", "key.mp4", tmp_path / "x.mp4")


def test_a_child_context_reports_notes_to_the_job(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []
    job = OpContext.for_test(tmp_path / "job", on_note=seen.append)
    step = job.child(tmp_path / "job" / "steps" / "a", resolver=lambda ref, dest: Path(ref),
                     on_progress=None, is_cancelled=lambda: False)
    step.note(encoder="libx264")
    assert job.notes == {"encoder": "libx264"} and step.notes is job.notes
    assert seen == [{"encoder": "libx264"}]
    assert step.fetch("/some/where.mp4") == Path("/some/where.mp4")  # its own resolver
    assert step.workdir.is_dir() and step.job_id == job.job_id
