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
from reelforge.engine.agent import run_envelope


def handler(event: dict[str, Any]) -> dict[str, Any]:
    body = event.get("input") or {}
    envelope, api = body.get("envelope"), body.get("api")
    if not isinstance(envelope, dict) or not isinstance(api, str) or not api:
        return {"error": "The input must be {\"envelope\": {...}, \"api\": \"https://...\"} from a ReelForge service."}
    settings = Settings()
    settings.ensure_dirs()
    return run_envelope(settings, api, envelope)


def main() -> None:  # pragma: no cover - needs the runpod package (worker image only)
    import runpod

    from reelforge.ops.registry import load_plugins

    load_plugins(Settings().service.plugins)
    runpod.serverless.start({"handler": handler})


if __name__ == "__main__":  # pragma: no cover
    main()
