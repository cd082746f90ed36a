"""The CLI as shell scripts use it: distinct exit codes, JSON and full ids when piped, waiting on the event
stream, one-line usage errors, `--version`, JSON `-p` values, and the entry point running main()."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.integration.service import Service, cli_timeout

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
PYTHONPATH = os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")])


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reelforge.cli", *args], capture_output=True, text=True,
                          timeout=cli_timeout(args), env={**os.environ, "PYTHONPATH": PYTHONPATH, **(env or {})})


@pytest.fixture(scope="module")
def svc(tmp_path_factory: pytest.TempPathFactory):
    service = Service(tmp_path_factory.mktemp("cli") / "data").start()  # access log on: the test reads it
    yield service
    service.stop()


def test_usage_errors_are_one_line_and_exit_2(tmp_path: Path):
    bad = run_cli("submit", "--op", "probe", "--params", "{not json", "--url", "http://127.0.0.1:9")
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "--params is not valid JSON" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr
    job_file = tmp_path / "job.json"
    job_file.write_text("{\"op\": ")
    assert run_cli("submit", str(job_file)).returncode == 2
    assert run_cli("submit", "--no-such-option").returncode == 2  # click's own usage error


def test_version_and_unreachable():
    from reelforge import __version__

    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"reelforge {__version__}"
    down = run_cli("status", "job_x", "--url", "http://127.0.0.1:9")
    assert down.returncode == 3 and "Cannot reach ReelForge" in down.stderr


def test_exit_codes_json_values_and_the_event_stream(svc: Service, tmp_path: Path):
    # -p values are JSON: seconds=1 is the number 1 (the API would refuse the string "1")
    ok = svc.cli("submit", "--op", "test_slow", "-p", "seconds=1", "-p", "marker=cli1", "--wait", "--max-wait", "120")
    assert ok.returncode == 0, ok.stderr
    job = json.loads(ok.stdout)
    assert job["status"] == "succeeded" and job["params"]["seconds"] == 1
    # it waited on the job's event stream, not by polling the job
    log = svc.log.read_text()
    assert f"GET /v1/jobs/{job['id']}/events" in log
    assert len(re.findall(rf'"GET /v1/jobs/{job["id"]} HTTP', log)) <= 1

    refused = svc.cli("submit", "--op", "test_slow", "-p", "seconds=-1")
    assert refused.returncode == 4 and "params.seconds" in refused.stderr

    slow = svc.cli("submit", "--op", "test_slow", "-p", "seconds=30", "-p", "marker=cli2", "--wait", "--max-wait", "1")
    assert slow.returncode == 6, slow.stderr
    slow_id = json.loads(slow.stdout)["id"]
    assert svc.cli("cancel", slow_id).returncode == 0

    bad = tmp_path / "not-media.txt"
    bad.write_text("not a video")
    failed = svc.cli("submit", "--op", "probe", "-p", f"input=@{bad}", "--wait", "--max-wait", "120")
    assert failed.returncode == 1, failed.stderr
    failed_id = json.loads(failed.stdout)["id"]
    again = svc.cli("status", failed_id, "--wait")
    assert again.returncode == 1 and json.loads(again.stdout)["status"] == "failed"
    assert svc.cli("status", failed_id).returncode == 0  # showing a failed job is not an error

    listed = svc.cli("list", "--json", "--limit", "50")
    assert listed.returncode == 0
    ids = {j["id"] for j in json.loads(listed.stdout)["jobs"]}
    assert {job["id"], slow_id, failed_id} <= ids
    piped = svc.cli("list", "--limit", "50")  # stdout is a pipe: full ids, tab-separated
    rows = [line.split("\t") for line in piped.stdout.splitlines()]
    assert {job["id"], slow_id, failed_id} <= {row[0] for row in rows} and all(len(r) == 6 for r in rows)


def test_entry_point_runs_main_which_sets_the_offline_default():
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["reelforge"] == "reelforge.cli:main"
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    code = ("import os, sys\nsys.argv = ['reelforge', '--version']\nfrom reelforge.cli import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\nprint(os.environ.get('HF_HUB_OFFLINE'))\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**env, "PYTHONPATH": PYTHONPATH})
    assert res.stdout.strip().endswith("1"), res.stdout + res.stderr


def test_migrate_creates_the_schema_and_exits(tmp_path: Path):
    res = run_cli("migrate", env={"REELFORGE_DATA_DIR": str(tmp_path / "data")})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "data" / "reelforge.db").is_file()
