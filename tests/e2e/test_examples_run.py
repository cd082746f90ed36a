"""Every example runs as the README says: make_media.sh, then `reelforge submit examples/x.json --wait`."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.service import Service, cli_timeout

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAX_WAIT_S = 600  # what one example may take on a loaded machine (the CLI stops waiting after this)
WAIT_ARGS = ("--wait", "--max-wait", str(MAX_WAIT_S))
# the test's own limit follows from the CLI call's (which follows from MAX_WAIT_S), plus the module's media
# and server start-up for the first test
pytestmark = [pytest.mark.slow, pytest.mark.timeout(cli_timeout(WAIT_ARGS) + 120)]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("examples")
    shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("media"))
    subprocess.run(["bash", str(root / "examples" / "make_media.sh")], check=True, capture_output=True)
    svc = Service(root / "data", REELFORGE_ACCESS_LOG="false").start()
    yield root / "examples", svc
    svc.stop()


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_example_runs_to_success(workspace, name: str):
    if name == "generate.json":  # needs a real model folder; tests/integration/test_generate_api.py runs tiny ones
        pytest.skip("generate needs an operator's model folder (docs/GENERATE.md)")
    folder, svc = workspace
    res = svc.cli("submit", str(folder / name), *WAIT_ARGS)
    assert res.returncode == 0, res.stderr[-2000:]
    job = json.loads(res.stdout)
    assert job["status"] == "succeeded"
    assert job["result"]["outputs"], job
