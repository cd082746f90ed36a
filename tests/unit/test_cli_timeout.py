"""A CLI call's subprocess limit follows from the wait it asks for (tests/integration/service.py)."""

from __future__ import annotations

from reelforge import cli
from tests.integration.service import CLI_DEFAULT_MAX_WAIT_S, CLI_OVERHEAD_S, cli_timeout


def test_the_limit_follows_from_max_wait():
    assert cli_timeout(("status", "job_x")) == CLI_OVERHEAD_S
    assert cli_timeout(("submit", "x.json", "--wait", "--max-wait", "600")) == 600 + CLI_OVERHEAD_S
    assert cli_timeout(("submit", "x.json", "--wait", "--max-wait=30")) == 30 + CLI_OVERHEAD_S
    assert cli_timeout(("submit", "x.json", "--wait")) == CLI_DEFAULT_MAX_WAIT_S + CLI_OVERHEAD_S
    assert cli.DEFAULT_MAX_WAIT_S == CLI_DEFAULT_MAX_WAIT_S  # the CLI's own default, not a second guess
