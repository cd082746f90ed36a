"""Settings: flat and grouped spellings, sources and their precedence, refusal of unknown names, secrets."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from reelforge.config import FLAT_NAMES, ConfigError, Settings, redact_url

REPO = Path(__file__).resolve().parents[2]
SECRETS = {"s3_secret_access_key": "s3-secret-Zq8", "webhook_secret": "hook-secret-Y7w",
           "database_url": "postgresql+psycopg://rf:db-pass-X3k@127.0.0.1:5432/test",
           "broker_url": "redis://:broker-pass-W2j@127.0.0.1:6379/9"}


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No REELFORGE_* from the caller's shell and no ./.env of the checkout: each test says what it sets."""
    for name in list(os.environ):
        if name.upper().startswith("REELFORGE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_flat_and_grouped_keywords_give_equal_settings(tmp_path: Path):
    flat = Settings(data_dir=tmp_path / "d", workers=1, max_video_pixels=320 * 200, storage="s3", s3_bucket="b",
                    webhook_secret="w", device="cpu", whisper_model="packaged:tiny.en", op_routes={"render": "x"})
    grouped = Settings(service={"data_dir": tmp_path / "d"}, compute={"workers": 1, "op_routes": {"render": "x"}},
                       limits={"max_video_pixels": 320 * 200}, storage={"backend": "s3", "s3_bucket": "b"},
                       security={"webhook_secret": "w"}, media={"device": "cpu"},
                       models={"whisper_model": "packaged:tiny.en"})
    assert flat == grouped
    assert flat.limits.max_video_pixels == 64_000 and flat.storage.backend == "s3" and flat.compute.workers == 1
    assert flat.security.webhook_secret.get_secret_value() == "w"


def test_flat_and_grouped_environment_names_give_equal_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    flat_env = {"REELFORGE_DATA_DIR": str(tmp_path / "d"), "REELFORGE_MAX_FETCH_BYTES": "1000",
                "REELFORGE_STORAGE": "s3", "REELFORGE_S3_BUCKET": "b", "REELFORGE_FETCH_ALLOW_PRIVATE": "true",
                "REELFORGE_API_KEYS_REQUIRED": "", "REELFORGE_OP_ROUTES": '{"render": "nvenc"}'}
    for k, v in flat_env.items():
        monkeypatch.setenv(k, v)
    flat = Settings()
    for k in flat_env:
        monkeypatch.delenv(k)
    grouped_env = {"REELFORGE_SERVICE__DATA_DIR": str(tmp_path / "d"), "REELFORGE_LIMITS__MAX_FETCH_BYTES": "1000",
                   "REELFORGE_STORAGE__BACKEND": "s3", "REELFORGE_STORAGE__S3_BUCKET": "b",
                   "reelforge_limits__fetch_allow_private": "true", "REELFORGE_SECURITY__API_KEYS_REQUIRED": "",
                   "REELFORGE_COMPUTE__OP_ROUTES": '{"render": "nvenc"}'}
    for k, v in grouped_env.items():
        monkeypatch.setenv(k, v)
    grouped = Settings()
    assert flat == grouped
    assert flat.limits.max_fetch_bytes == 1000 and flat.limits.fetch_allow_private is True
    assert flat.security.api_keys_required is None and flat.compute.op_routes == {"render": "nvenc"}


def test_flat_and_grouped_toml_give_equal_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    flat, grouped = tmp_path / "flat.toml", tmp_path / "grouped.toml"
    flat.write_text(f'data_dir = "{tmp_path / "d"}"\nmax_fetch_bytes = 1000\nstorage = "s3"\ns3_bucket = "b"\n'
                    '[op_routes]\nrender = "nvenc"\n')
    grouped.write_text(f'[service]\ndata_dir = "{tmp_path / "d"}"\n[limits]\nmax_fetch_bytes = 1000\n'
                       '[storage]\nbackend = "s3"\ns3_bucket = "b"\n[compute.op_routes]\nrender = "nvenc"\n')
    monkeypatch.setenv("REELFORGE_CONFIG", str(flat))
    a = Settings()
    monkeypatch.setenv("REELFORGE_CONFIG", str(grouped))
    b = Settings()
    assert a == b and a.limits.max_fetch_bytes == 1000 and a.compute.op_routes == {"render": "nvenc"}


def test_every_flat_name_is_one_field():
    fields = {(g, f) for g, f in FLAT_NAMES.values()}
    assert len(fields) == len(FLAT_NAMES)
    assert fields == {(g, f) for g in Settings.model_fields
                      for f in type(getattr(Settings(), g)).model_fields}


def test_precedence_keywords_env_dotenv_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    toml = tmp_path / "rf.toml"
    toml.write_text("[compute]\nworkers = 4\nmax_attempts = 4\nthreads_per_job = 4\nheartbeat_s = 4\n")
    (tmp_path / ".env").write_text("REELFORGE_WORKERS=3\nREELFORGE_COMPUTE__MAX_ATTEMPTS=3\n"
                                   "REELFORGE_THREADS_PER_JOB=3\nPOSTGRES_PASSWORD=not-ours\n")
    monkeypatch.setenv("REELFORGE_CONFIG", str(toml))
    monkeypatch.setenv("REELFORGE_COMPUTE__WORKERS", "2")
    monkeypatch.setenv("REELFORGE_MAX_ATTEMPTS", "2")
    s = Settings(workers=1)
    assert (s.compute.workers, s.compute.max_attempts, s.compute.threads_per_job, s.compute.heartbeat_s) == \
        (1, 2, 3, 4.0)


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / ".env").write_text("REELFORGE_PORT=8123\nREELFORGE_WEBHOOK_SECRET='from dotenv'\n")
    s = Settings()
    assert s.service.port == 8123 and s.security.webhook_secret.get_secret_value() == "from dotenv"
    monkeypatch.setenv("REELFORGE_PORT", "8124")
    assert Settings().service.port == 8124
    other = tmp_path / "elsewhere.env"
    other.write_text("REELFORGE_LIMITS__MAX_BODY_BYTES=77\n")
    monkeypatch.setenv("REELFORGE_ENV_FILE", str(other))
    s = Settings()
    assert s.limits.max_body_bytes == 77 and s.service.port == 8124  # ./.env is not read then
    assert s.security.webhook_secret.get_secret_value() == ""


def test_unknown_names_and_missing_files_refuse_with_the_nearest_name(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch):
    toml = tmp_path / "rf.toml"
    toml.write_text("max_fetch_byte = 10\n")
    monkeypatch.setenv("REELFORGE_CONFIG", str(toml))
    with pytest.raises(ConfigError, match=r"unknown key max_fetch_byte in config file .*rf\.toml; "
                                          r"did you mean max_fetch_bytes\?"):
        Settings()
    toml.write_text("[limits]\nmax_fetch_byte = 10\n")
    with pytest.raises(ConfigError, match=r"unknown key limits\.max_fetch_byte .*did you mean limits\.max_fetch_bytes"):
        Settings()
    toml.write_text("[limit]\nmax_fetch_bytes = 10\n")
    with pytest.raises(ConfigError, match=r"unknown key limit .*did you mean limits\?"):
        Settings()
    monkeypatch.setenv("REELFORGE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"REELFORGE_CONFIG names .*nope\.toml, which does not exist"):
        Settings()
    monkeypatch.delenv("REELFORGE_CONFIG")
    monkeypatch.setenv("REELFORGE_WEBHOK_SECRET", "x")
    with pytest.raises(ConfigError, match=r"unknown setting REELFORGE_WEBHOK_SECRET in the environment; "
                                          r"did you mean REELFORGE_WEBHOOK_SECRET\?"):
        Settings()
    monkeypatch.delenv("REELFORGE_WEBHOK_SECRET")
    (tmp_path / ".env").write_text("REELFORGE_LIMITS__MAX_FECH_BYTES=1\n")
    with pytest.raises(ConfigError, match=r"unknown setting REELFORGE_LIMITS__MAX_FECH_BYTES in .env; "
                                          r"did you mean REELFORGE_LIMITS__MAX_FETCH_BYTES\?"):
        Settings()
    monkeypatch.setenv("REELFORGE_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(ConfigError, match=r"REELFORGE_ENV_FILE names .*missing\.env, which does not exist"):
        Settings()
    monkeypatch.delenv("REELFORGE_ENV_FILE")
    (tmp_path / ".env").unlink()
    with pytest.raises(ConfigError, match="given twice"):
        Settings(workers=1, compute={"workers": 2})


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.upper().startswith("REELFORGE_")}
    base["PYTHONPATH"] = f"{REPO / 'src'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return subprocess.run([sys.executable, "-m", "reelforge.cli", *args], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**base, "REELFORGE_DATA_DIR": str(tmp_path / "d"), **env})


def _one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("reelforge: configuration error: ")
    return lines[0]


def test_serve_refuses_a_config_file_with_an_unknown_key(tmp_path: Path):
    toml = tmp_path / "reelforge.toml"
    toml.write_text("[limits]\nmax_upload_byte = 5\n")
    line = _one_line_refusal(_cli(tmp_path, "serve", REELFORGE_CONFIG=str(toml)))
    assert f"unknown key limits.max_upload_byte in config file {toml}" in line
    assert "did you mean limits.max_upload_bytes?" in line


def test_serve_refuses_a_missing_config_file(tmp_path: Path):
    line = _one_line_refusal(_cli(tmp_path, "serve", REELFORGE_CONFIG=str(tmp_path / "gone.toml")))
    assert f"REELFORGE_CONFIG names {tmp_path / 'gone.toml'}, which does not exist" in line


def test_serve_and_worker_refuse_an_unknown_environment_variable(tmp_path: Path):
    for command in ("serve", "worker"):
        line = _one_line_refusal(_cli(tmp_path, command, REELFORGE_MAX_VIDEO_PIXEL="100"))
        assert "unknown setting REELFORGE_MAX_VIDEO_PIXEL in the environment" in line
        assert "did you mean REELFORGE_MAX_VIDEO_PIXELS?" in line


def test_serve_refuses_an_invalid_value_in_one_line(tmp_path: Path):
    line = _one_line_refusal(_cli(tmp_path, "serve", REELFORGE_LIMITS__MAX_FETCH_BYTES="lots"))
    assert "limits.max_fetch_bytes" in line


def test_secrets_are_never_shown(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    s = Settings(data_dir=tmp_path / "d", workers=1, storage="s3", s3_bucket="b", **SECRETS)
    shown = repr(s.public_dict()) + repr(s) + str(s) + repr(s.model_dump()) + s.model_dump_json()
    for secret in ("s3-secret-Zq8", "hook-secret-Y7w", "db-pass-X3k", "broker-pass-W2j"):
        assert secret not in shown
    assert s.public_dict()["service"]["database_url"] == "postgresql+psycopg://rf:***@127.0.0.1:5432/test"
    assert s.public_dict()["storage"]["s3_secret_access_key"] == "**********"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"


def test_the_job_host_hand_over_keeps_secrets(tmp_path: Path):
    s = Settings(data_dir=tmp_path / "d", workers=1, storage="s3", s3_bucket="b", **SECRETS)
    data = s.handover_dict()
    child = Settings.from_handover(data)
    assert child == s
    assert child.storage.s3_secret_access_key.get_secret_value() == "s3-secret-Zq8"
    assert child.compute.broker_url.get_secret_value() == SECRETS["broker_url"]
    assert child.service.database_url.get_secret_value() == SECRETS["database_url"]


def test_secrets_stay_out_of_http_answers_and_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    from reelforge.api.app import create_app

    secrets = {k: v for k, v in SECRETS.items() if k in ("webhook_secret", "broker_url")}
    s = Settings(data_dir=tmp_path / "d", workers=1, **secrets)
    caplog.set_level(logging.DEBUG)
    with TestClient(create_app(s)) as client:
        bodies = [client.get(path).text for path in ("/health", "/v1/ops", "/openapi.json", "/metrics")]
        job = client.post("/v1/jobs", json={"op": "probe", "params": {"input": "https://127.0.0.1:9/x.mp4"}})
        bodies.append(job.text)
    text = "\n".join(bodies) + caplog.text
    assert "hook-secret-Y7w" not in text and "broker-pass-W2j" not in text
