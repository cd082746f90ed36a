"""What the remote-function backends (RunPod serverless, Modal) share: the provider-neutral view of a
remote call, the errors that tell infrastructure trouble apart from a job's own failure, and the body
every provider's entry point runs.

A provider client (engine/runpod.py, engine/modal_client.py) maps its own answers onto RemoteStatus, whose
statuses are RunPod's vocabulary (IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT): the
backend loop (jobs/remote_backend.py) is then one piece of code for every provider.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from reelforge.config import Settings

CallStatus = Literal["IN_QUEUE", "IN_PROGRESS", "COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"]
TERMINAL_STATUSES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMED_OUT"})


class RemoteError(Exception):
    """Any failure to talk to the provider (not a job's own failure)."""


class RemoteUnavailable(RemoteError):
    """Unreachable, overloaded or failing after the retries: fall back to the queue's next backend."""


class RemoteAuthError(RemoteError):
    """The provider refused our credentials: retrying will not help, falling back will."""


class RemoteNotFound(RemoteError):
    """No such function, endpoint or call (e.g. a result the provider has expired)."""


@dataclass(frozen=True)
class RemoteStatus:
    id: str
    status: CallStatus
    delay_s: float | None = None  # time in the provider's queue (cold start included), when it says
    execution_s: float | None = None
    output: Any = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def progress(self) -> float | None:
        """The fraction a handler reported ({"progress": x, ...}) while IN_PROGRESS, when the provider relays it."""
        out = self.output
        if self.status == "IN_PROGRESS" and isinstance(out, dict) and isinstance(out.get("progress"), int | float):
            return max(0.0, min(1.0, float(out["progress"])))
        return None


class RemoteFunctions(Protocol):
    """A provider that runs one envelope per call."""

    def run(self, payload: dict[str, Any], *, execution_timeout_s: float | None = None) -> RemoteStatus: ...

    def status(self, call_id: str) -> RemoteStatus: ...

    def cancel(self, call_id: str) -> Any: ...

    def close(self) -> None: ...


def handle_remote_input(body: Any, on_progress: Callable[[float, str | None], None] | None = None) -> dict[str, Any]:
    """The body of every provider's entry point: {"envelope": ..., "api": ...} -> run the job, reporting to
    the service with the envelope's job token only (engine/agent.py run_envelope)."""
    from reelforge.engine.agent import run_envelope

    body = body if isinstance(body, dict) else {}
    envelope, api = body.get("envelope"), body.get("api")
    if not isinstance(envelope, dict) or not isinstance(api, str) or not api:
        return {"error": "The input must be {\"envelope\": {...}, \"api\": \"https://...\"} from a ReelForge service."}
    settings = Settings()
    settings.ensure_dirs()
    return run_envelope(settings, api, envelope, on_progress=on_progress)
