"""The entry point of the RunPod worker image (deploy/Dockerfile.runpod): `python -m reelforge.engine.runpod_worker`.

RunPod calls `handler(event)` with the `input` the service's runpod backend sent to `/run`:
{"envelope": <the job's envelope>, "api": <the service's base URL>}. The handler runs the job through
the normal Runner and JobHost and reports to the service with the envelope's job token only — the image
holds no database, broker, storage or agent credentials. Progress also goes to RunPod's status output
(`progress_update`) when the `runpod` package is there. The package is imported only in `main`: it is an
optional extra (`pip install 'reelforge[runpod]'`) installed in the worker image, never in the API's.
"""

from __future__ import annotations

from typing import Any

from reelforge.config import Settings
from reelforge.engine.remote import handle_remote_input


def handler(event: dict[str, Any]) -> dict[str, Any]:
    return handle_remote_input(event.get("input"))


def handler_with_progress(event: dict[str, Any]) -> dict[str, Any]:
    """handler, also relaying progress into RunPod's own job status (what /status shows while IN_PROGRESS)."""
    import runpod

    def relay(fraction: float, stage: str | None) -> None:
        runpod.serverless.progress_update(event, {"progress": round(fraction, 3), "stage": stage})

    return handle_remote_input(event.get("input"), on_progress=relay)


def main() -> None:
    """RunPod's worker loop; `--test_input '{"input": ...}'` (the package's local test mode) runs one event."""
    import runpod

    from reelforge.ops.registry import load_plugins

    load_plugins(Settings().service.plugins)
    runpod.serverless.start({"handler": handler_with_progress})


if __name__ == "__main__":  # pragma: no cover
    main()
