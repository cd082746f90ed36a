"""The modal backend's client: Modal's answers (real modal.exception types) mapped onto RemoteStatus and
the infrastructure errors the backend falls back on, and the Modal function's body through `.local()`."""

from __future__ import annotations

from typing import Any

import pytest

modal = pytest.importorskip("modal")

from reelforge.engine import modal_client  # noqa: E402
from reelforge.engine.modal_client import ModalClient  # noqa: E402
from reelforge.engine.remote import RemoteAuthError, RemoteNotFound, RemoteUnavailable  # noqa: E402


class Call:
    def __init__(self, outcome: Any) -> None:
        self.object_id = "fc-1"
        self.outcome = outcome
        self.cancelled = False

    def get(self, timeout: float | None = None) -> Any:
        assert timeout == 0  # polled, never waited on
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = True


class SDK:
    exception = modal.exception

    def __init__(self, call: Call, *, lookup_error: Exception | None = None) -> None:
        sdk = self
        self.call = call
        self.spawned: list[dict[str, Any]] = []

        class Function:
            @staticmethod
            def from_name(app: str, name: str, *, environment_name: str | None = None) -> Any:
                if lookup_error is not None:
                    raise lookup_error

                class Deployed:
                    @staticmethod
                    def spawn(body: dict[str, Any]) -> Call:
                        sdk.spawned.append(body)
                        return call

                return Deployed

        class FunctionCall:
            @staticmethod
            def from_id(call_id: str) -> Call:
                return call

        self.Function, self.FunctionCall = Function, FunctionCall


@pytest.fixture
def use(monkeypatch: pytest.MonkeyPatch):
    def install(sdk: SDK) -> ModalClient:
        monkeypatch.setattr(modal_client, "_SDK", sdk)
        return ModalClient("reelforge", "run_envelope")

    return install


@pytest.mark.parametrize(("outcome", "status"), [
    (modal.exception.TimeoutError("not yet"), "IN_PROGRESS"),
    ({"job_id": "job_1", "status": "succeeded"}, "COMPLETED"),
    (modal.exception.FunctionTimeoutError("ran past 3600 s"), "TIMED_OUT"),
    (modal.exception.InputCancellation("cancelled"), "CANCELLED"),
    (RuntimeError("container exited 137"), "FAILED"),
])
def test_call_outcomes(use, outcome: Any, status: str) -> None:
    client = use(SDK(Call(outcome)))
    started = client.run({"envelope": {}, "api": "https://x"})
    assert started.id == "fc-1" and started.status == "IN_QUEUE"
    answer = client.status("fc-1")
    assert answer.status == status and answer.terminal == (status != "IN_PROGRESS")
    if status == "COMPLETED":
        assert answer.output == {"job_id": "job_1", "status": "succeeded"}
    if status == "FAILED":
        assert "137" in (answer.error or "")


@pytest.mark.parametrize(("error", "ours"), [
    (modal.exception.AuthError("token refused"), RemoteAuthError),
    (modal.exception.NotFoundError("no app reelforge"), RemoteNotFound),
    (modal.exception.ConnectionError("unreachable"), RemoteUnavailable),
    (modal.exception.InvalidError("odd"), RemoteUnavailable),
])
def test_infrastructure_errors_are_told_apart(use, error: Exception, ours: type[Exception]) -> None:
    client = use(SDK(Call(None), lookup_error=error))
    with pytest.raises(ours):
        client.run({"envelope": {}, "api": "https://x"})


def test_expired_results_are_not_found_and_cancel_reaches_the_call(use) -> None:
    call = Call(modal.exception.OutputExpiredError("gone"))
    client = use(SDK(call))
    with pytest.raises(RemoteNotFound):
        client.status("fc-1")
    client.cancel("fc-1")
    assert call.cancelled


def test_the_function_body_runs_through_modal_local() -> None:
    from reelforge.engine.modal_app import app, run_envelope

    assert isinstance(run_envelope, modal.Function) and app.name
    assert "envelope" in run_envelope.local({"prompt": "no envelope"})["error"]
