"""Docs stay true to the code: every setting is documented, deploy files use real settings."""

from __future__ import annotations

import re
from pathlib import Path

from reelforge.config import ENV_PREFIX, FLAT_NAMES, setting_env_names

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
