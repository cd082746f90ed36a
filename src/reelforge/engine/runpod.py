"""A client for RunPod serverless endpoints' REST API (https://api.runpod.ai/v2/<endpoint id>), with httpx.

    POST /run                 {"input": ..., "policy": {"executionTimeout": ms, "ttl": ms}} -> {"id", "status"}
    GET  /status/<id>         {"id", "status", "delayTime" ms, "executionTime" ms, "output", "error"}
    POST /cancel/<id>         {"id", "status"}
    GET  /health              {"jobs": {"inQueue", "inProgress", ...}, "workers": {"idle", "running", ...}}
    POST /purge-queue         {"removed", "status"}

Statuses: IN_QUEUE, IN_PROGRESS, COMPLETED, FAILED, CANCELLED, TIMED_OUT. While IN_PROGRESS, `output`
carries what the worker's handler last sent with `progress_update`.

Infrastructure trouble is told apart from a job's own failure, so a caller can retry or fall back:
429 waits for Retry-After (capped), 5xx and transport errors are retried with exponential backoff, and
what remains after the retries is `RunPodUnavailable`; 401/403 is `RunPodAuthError` (a wrong or revoked
key: retrying will not help, falling back will). This is the service-side building block of the `runpod`
backend (issue 13); the `runpod` package itself is only needed inside the worker image.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from reelforge.engine.remote import (
    TERMINAL_STATUSES,
    CallStatus,
    RemoteAuthError,
    RemoteError,
    RemoteNotFound,
    RemoteStatus,
    RemoteUnavailable,
)

__all__ = ["RemoteStatus", "RunPodAuthError", "RunPodClient", "RunPodError", "RunPodNotFound", "RunPodUnavailable"]

RunPodStatus = CallStatus
DEFAULT_BASE_URL = "https://api.runpod.ai/v2"
MAX_RETRY_AFTER_S = 30.0


class RunPodError(RemoteError):
    """Any failure to talk to RunPod (not a job's own failure)."""


class RunPodUnavailable(RunPodError, RemoteUnavailable):
    """Unreachable, overloaded (429 beyond its patience) or failing (5xx) after the retries."""


class RunPodAuthError(RunPodError, RemoteAuthError):
    """The API key was refused (401/403)."""


class RunPodNotFound(RunPodError, RemoteNotFound):
    """No such endpoint or job (e.g. a job RunPod has forgotten: results expire)."""


def _ms(value: Any) -> float | None:
    return float(value) / 1000.0 if isinstance(value, int | float) else None


class RunPodClient:
    def __init__(self, endpoint_id: str, api_key: str, *, base_url: str = DEFAULT_BASE_URL,
                 timeout_s: float = 15.0, retries: int = 4, backoff_s: float = 0.5,
                 sleep: Callable[[float], None] = time.sleep, transport: httpx.BaseTransport | None = None) -> None:
        self.endpoint = f"{base_url.rstrip('/')}/{endpoint_id}"
        self.retries = retries
        self.backoff_s = backoff_s
        self.sleep = sleep
        self.client = httpx.Client(timeout=timeout_s, trust_env=False, transport=transport,
                                   headers={"Authorization": f"Bearer {api_key}", "User-Agent": "ReelForge/1"})

    def close(self) -> None:
        self.client.close()

    # ---- the documented operations
    def run(self, payload: dict[str, Any], *, execution_timeout_s: float | None = None,
            ttl_s: float | None = None) -> RemoteStatus:
        """Queue a job. `ttl_s` bounds its whole life on RunPod (queue included); RunPod's default is 24 h."""
        body: dict[str, Any] = {"input": payload}
        policy = {}
        if execution_timeout_s is not None:
            policy["executionTimeout"] = int(execution_timeout_s * 1000)
        if ttl_s is not None:
            policy["ttl"] = int(ttl_s * 1000)
        if policy:
            body["policy"] = policy
        return self._status(self._request("POST", "/run", json=body))

    def status(self, job_id: str) -> RemoteStatus:
        return self._status(self._request("GET", f"/status/{job_id}"))

    def cancel(self, job_id: str) -> RemoteStatus:
        return self._status(self._request("POST", f"/cancel/{job_id}"))

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def purge_queue(self) -> int:
        return int(self._request("POST", "/purge-queue").get("removed") or 0)

    # ---- inside
    @staticmethod
    def _status(data: dict[str, Any]) -> RemoteStatus:
        status = str(data.get("status") or "")
        if status not in ("IN_QUEUE", "IN_PROGRESS", *TERMINAL_STATUSES):
            raise RunPodUnavailable(f"RunPod answered an unknown job status {status[:40]!r}.")
        error = data.get("error")
        return RemoteStatus(id=str(data.get("id") or ""), status=status,  # type: ignore[arg-type]
                            delay_s=_ms(data.get("delayTime")), execution_s=_ms(data.get("executionTime")),
                            output=data.get("output"), error=str(error) if error is not None else None, raw=data)

    def _request(self, method: str, path: str, *, json: Any = None) -> dict[str, Any]:
        last = "no answer"
        for attempt in range(self.retries + 1):
            final = attempt == self.retries
            try:
                resp = self.client.request(method, f"{self.endpoint}{path}", json=json)
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                if not final:
                    self.sleep(self.backoff_s * 2 ** attempt)
                continue
            if resp.status_code in (401, 403):
                raise RunPodAuthError(f"RunPod refused the API key (HTTP {resp.status_code}).")
            if resp.status_code == 404:
                raise RunPodNotFound(f"RunPod has no {path.split('/')[1]} here (HTTP 404).")
            if resp.status_code == 429:
                last = "HTTP 429 (rate limited)"
                if not final:
                    self.sleep(self._retry_after(resp, attempt))
                continue
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                if not final:
                    self.sleep(self.backoff_s * 2 ** attempt)
                continue
            if resp.status_code >= 400:
                raise RunPodError(f"RunPod refused the request (HTTP {resp.status_code}: {resp.text[:200]}).")
            try:
                data = resp.json()
            except ValueError:
                raise RunPodUnavailable("RunPod answered something that is not JSON.") from None
            if not isinstance(data, dict):
                raise RunPodUnavailable("RunPod answered an unexpected JSON value.")
            return data
        raise RunPodUnavailable(f"RunPod is unavailable after {self.retries + 1} tries ({last}).")

    def _retry_after(self, resp: httpx.Response, attempt: int) -> float:
        value = resp.headers.get("retry-after", "")
        try:
            wait = float(value)
        except ValueError:
            wait = self.backoff_s * 2 ** attempt
        return max(0.0, min(MAX_RETRY_AFTER_S, wait))
