"""The Modal app of the `modal` backend: deploy it once with `modal deploy -m reelforge.engine.modal_app`.

Its one function runs a job envelope (engine/remote.py handle_remote_input) on a Modal GPU container and
reports to the service over HTTPS with the envelope's job token only: the container holds no database,
broker, storage or agent credentials, and the Modal token stays on the service. The service spawns it by
name (settings `MODAL_APP`, `MODAL_FUNCTION`; engine/modal_client.py).

Deploy-time choices come from the deploying shell's environment (not the service's settings):
REELFORGE_MODAL_APP (app name, default "reelforge"), REELFORGE_MODAL_GPU (default "A10G", seed 003's GPU;
"L4", "A100-40GB", "H100", ... — only A10G/L4/T4-class GPUs have NVENC), REELFORGE_MODAL_TIMEOUT_S
(default 3600: the longest job this function may run, model loading included).
This module imports the `modal` package (the `modal` extra); nothing else in ReelForge imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import modal

from reelforge.engine.remote import handle_remote_input

APP_NAME = os.environ.get("REELFORGE_MODAL_APP", "reelforge")
FUNCTION_NAME = "run_envelope"
GPU = os.environ.get("REELFORGE_MODAL_GPU", "A10G")
TIMEOUT_S = int(os.environ.get("REELFORGE_MODAL_TIMEOUT_S", "3600"))

PYPROJECT = Path(__file__).resolve().parents[3] / "pyproject.toml"  # deployed from a checkout of ReelForge
# Debian's ffmpeg (NVENC-capable build) and the fonts/espeak the ops use; ReelForge from this checkout
image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install("ffmpeg", "espeak-ng", "fonts-dejavu-core")
    .pip_install_from_pyproject(str(PYPROJECT))
    .env({"REELFORGE_DATA_DIR": "/tmp/reelforge"})
    .add_local_python_source("reelforge")
)
app = modal.App(APP_NAME, image=image)


@app.function(name=FUNCTION_NAME, gpu=GPU, timeout=TIMEOUT_S, retries=0, max_containers=10)
def run_envelope(body: dict[str, Any]) -> dict[str, Any]:
    """One job: `body` is {"envelope": ..., "api": ...} as the service's modal backend spawns it."""
    return handle_remote_input(body)
