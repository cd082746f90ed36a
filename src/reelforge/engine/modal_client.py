"""The service side of the `modal` backend: a deployed Modal function (engine/modal_app.py) is spawned once
per job with its envelope, polled with `FunctionCall.get(timeout=0)` and cancelled with `cancel()`.

Modal's SDK (an optional extra, `pip install 'reelforge[modal]'`) reads its credentials from the
service's own environment or ~/.modal.toml (MODAL_TOKEN_ID / MODAL_TOKEN_SECRET); they never go into a
job. Its answers are mapped onto the provider-neutral RemoteStatus (engine/remote.py):

    get(timeout=0) returns          COMPLETED (the handler's {"job_id", "status"})
    modal.exception.TimeoutError    still IN_PROGRESS (Modal does not tell queued from running here)
    FunctionTimeoutError            TIMED_OUT
    InputCancellation / cancelled   CANCELLED
    NotFoundError, OutputExpired    RemoteNotFound
    AuthError                       RemoteAuthError
    ConnectionError, InternalError  RemoteUnavailable
    any other exception             FAILED (the remote body raised: an infrastructure failure for us,
                                    since the handler reports a job's own errors through the job token)
"""

from __future__ import annotations

import time
from typing import Any

from reelforge.engine.remote import RemoteAuthError, RemoteNotFound, RemoteStatus, RemoteUnavailable

_SDK: Any = None  # a stand-in for the `modal` module (tests: a fake with the same surface)


def use_sdk(sdk: Any) -> None:
    """Talk to `sdk` instead of the `modal` package (its Function.from_name, FunctionCall.from_id, exception)."""
    global _SDK
    _SDK = sdk


def _sdk() -> Any:
    if _SDK is not None:
        return _SDK
    try:
        import modal
    except ImportError as exc:
        raise RemoteUnavailable("The modal package is not installed on the service "
                                "(pip install 'reelforge[modal]').") from exc
    return modal


class ModalClient:
    def __init__(self, app_name: str, function_name: str, *, environment: str = "") -> None:
        self.app_name = app_name
        self.function_name = function_name
        self.environment = environment or None
        self._started: dict[str, float] = {}

    def close(self) -> None:
        pass

    def run(self, payload: dict[str, Any], *, execution_timeout_s: float | None = None) -> RemoteStatus:
        # the function's own timeout (set at deploy time, engine/modal_app.py) bounds the run; the service's
        # lease and the job's timeout bound it from this side
        sdk = _sdk()
        with self._errors(sdk):
            fn = sdk.Function.from_name(self.app_name, self.function_name, environment_name=self.environment)
            call = fn.spawn(payload)
        call_id = str(call.object_id)
        self._started[call_id] = time.monotonic()
        return RemoteStatus(id=call_id, status="IN_QUEUE")

    def status(self, call_id: str) -> RemoteStatus:
        sdk = _sdk()
        exc_types = sdk.exception
        started = self._started.get(call_id)
        elapsed = time.monotonic() - started if started is not None else None
        with self._errors(sdk):
            call = sdk.FunctionCall.from_id(call_id)
        try:
            output = call.get(timeout=0)
        except exc_types.FunctionTimeoutError as exc:
            return self._ended(call_id, "TIMED_OUT", elapsed, error=str(exc))
        except exc_types.OutputExpiredError as exc:
            raise RemoteNotFound(f"Modal no longer has call {call_id} ({exc}).") from exc
        except exc_types.TimeoutError:
            return RemoteStatus(id=call_id, status="IN_PROGRESS")
        except exc_types.InputCancellation as exc:
            return self._ended(call_id, "CANCELLED", elapsed, error=str(exc) or "cancelled")
        except Exception as exc:
            infra = infra_error(exc_types, exc)
            if infra is not None:
                raise infra from exc
            status = "CANCELLED" if "cancel" in str(exc).lower() else "FAILED"
            return self._ended(call_id, status, elapsed, error=f"{type(exc).__name__}: {exc}"[:500])
        return self._ended(call_id, "COMPLETED", elapsed, output=output)

    def cancel(self, call_id: str) -> None:
        sdk = _sdk()
        with self._errors(sdk):
            sdk.FunctionCall.from_id(call_id).cancel()

    def _ended(self, call_id: str, status: Any, elapsed: float | None, *, output: Any = None,
               error: str | None = None) -> RemoteStatus:
        self._started.pop(call_id, None)
        return RemoteStatus(id=call_id, status=status, execution_s=elapsed, output=output, error=error)

    @staticmethod
    def _errors(sdk: Any) -> _ModalErrors:
        return _ModalErrors(sdk.exception)


def infra_error(t: Any, exc: BaseException) -> Exception | None:
    """Modal's infrastructure exceptions (types from `t`, the SDK's exception module) -> ours; None otherwise."""
    if isinstance(exc, t.AuthError):
        return RemoteAuthError(f"Modal refused the service's token ({exc}).")
    if isinstance(exc, t.NotFoundError):
        return RemoteNotFound(f"Modal has no such app, function or call ({exc}).")
    if isinstance(exc, t.ConnectionError | t.InternalFailure | OSError):
        return RemoteUnavailable(f"Modal is unreachable ({type(exc).__name__}: {exc}).")
    return None


class _ModalErrors:
    """infra_error around an SDK call that is not a result: any other Modal error is unavailability too."""

    def __init__(self, exc_types: Any) -> None:
        self.t = exc_types

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            return
        mapped = infra_error(self.t, exc)
        if mapped is None and isinstance(exc, self.t.Error):
            mapped = RemoteUnavailable(f"Modal failed ({type(exc).__name__}: {exc}).")
        if mapped is not None:
            raise mapped from exc
