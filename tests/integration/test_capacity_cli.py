"""`reelforge capacity` against the fake Vast.ai: offers, up --dry-run, up, ls, logs, down, cost, and the
controller run alone — killed with SIGKILL, its instance is reaped by the next controller at start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from reelforge.config import Settings
from reelforge.jobs.store import Stores
from tests.fakes.vast import FakeVast, offer, serve

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake() -> Iterator[FakeVast]:
    state = FakeVast(boot_s=0.3, offers=[offer(103, "RTX 4090", 0.55), offer(104, "RTX 3090", 0.65),
                                         offer(105, "RTX 3090", 0.60), offer(101, "H100 SXM", 0.12, verified=False)])
    with serve(state) as running:
        yield running


def env_for(tmp: Path, fake: FakeVast, **extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "REELFORGE_DATA_DIR": str(tmp / "data"), "REELFORGE_PLUGINS": "tests.plugins.capacity_ops",
            "REELFORGE_CAPACITY_PROVIDER": "vast", "REELFORGE_VAST_API_KEY": fake.key,
            "REELFORGE_VAST_BASE_URL": f"{fake.url}/api/v0", "REELFORGE_CAPACITY_IMAGE": "reelforge:test",
            "REELFORGE_CAPACITY_DEPLOYMENT": "cli", "REELFORGE_CAPACITY_TICK_S": "0.3",
            "REELFORGE_CAPACITY_MAX_INSTANCES": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **extra}


def cli(env: dict[str, str], *args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "reelforge.cli", "capacity", *args], env=env, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout + res.stderr


def wait(cond, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_cli_and_reaper_after_kill_9(tmp_path: Path, fake: FakeVast) -> None:
    env = env_for(tmp_path, fake)
    listed = cli(env, "offers")
    assert "103" in listed and "104" in listed and "101" not in listed  # unverified: dropped here
    dry = cli(env, "up", "2", "--dry-run")
    assert "would start on offer 103" in dry and "dry run: nothing created" in dry and not fake.instances
    assert "1 instance(s), $0.550/h" in dry  # max_instances 1
    cli(env, "up", "1")
    (inst,) = fake.live()
    assert fake.key not in str(inst.body)
    key = inst.body["label"].rsplit(":", 1)[1]
    wait(lambda: inst.status == "running")
    listing = cli(env, "ls")
    assert key in listing and "running" in listing
    assert f"fake instance {inst.id}" in cli(env, "logs", key)
    assert "destroyed" in cli(env, "down", str(inst.id))
    assert not fake.live()
    cli(env, "up", "1")
    (again,) = fake.live()
    assert "would destroy" in cli(env, "down", "--all", "--dry-run") and again.destroyed_at is None
    assert "destroyed" in cli(env, "down", "--all")
    assert not fake.live()

    # the controller alone, with work queued: it starts an instance; SIGKILL leaves that instance behind
    settings = Settings(data_dir=tmp_path / "data")
    stores = Stores.open(settings.service.database_url.get_secret_value(), migrate=True)
    for _ in range(3):
        stores.jobs.create_job(tenant="t", op="test_gpu_tick", params={}, queue="gpu", timeout_s=60, max_attempts=2)
    log = (tmp_path / "ctl.log").open("ab")
    ctl = subprocess.Popen([sys.executable, "-m", "reelforge.cli", "capacity"], env=env, stdout=log,
                           stderr=subprocess.STDOUT, start_new_session=True)
    wait(lambda: len(fake.live()) == 1, 60)
    orphan = fake.live()[0]
    os.killpg(ctl.pid, signal.SIGKILL)
    ctl.wait(timeout=10)
    time.sleep(1.0)
    assert orphan.destroyed_at is None  # nobody destroys it: an orphan now
    ctl2 = subprocess.Popen([sys.executable, "-m", "reelforge.cli", "capacity"], stdout=log, stderr=subprocess.STDOUT,
                            env={**env, "REELFORGE_CAPACITY_MAX_INSTANCES": "0"}, start_new_session=True)
    try:
        wait(lambda: orphan.destroyed_at is not None, 60)  # reaped at start
        wait(lambda: stores.agents.list_tokens()[-1].revoked, 30)  # its agent token revoked right after
        assert stores.agents.list_tokens()[-1].name.startswith("vast-")
    finally:
        os.killpg(ctl2.pid, signal.SIGTERM)
        assert ctl2.wait(timeout=30) == 0
    assert "reaped orphan instance" in (tmp_path / "ctl.log").read_text()
    cost = cli(env, "cost")
    assert "instances: 3 (0 alive)" in cost and "instance-hours" in cost
    assert not fake.live() and max(d for _, d in fake.timeline) <= 0.65 + 1e-9  # one at a time (max_instances 1)
