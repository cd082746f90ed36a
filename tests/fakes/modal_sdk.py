"""A fake of the Modal client surface the `modal` backend uses (Function.from_name(...).spawn,
FunctionCall.from_id(...).get(timeout=0) / .cancel(), the real modal.exception types), written from
Modal's documentation.

A spawned call runs the real function body of engine/modal_app.py through Modal's own `.local()`, in a
separate process whose environment is what a Modal container would have: a data folder and the test ops,
no database, broker, storage or agent credentials. Loaded into `reelforge serve` as a plugin
(REELFORGE_PLUGINS=tests.fakes.modal_sdk); FAKE_MODAL_DIR names a folder where it records cancels, and
FAKE_MODAL_DOWN=1 makes every call fail as an unreachable Modal would. A job whose `marker` param starts with
"held" waits in Modal's queue (no container free) until it is cancelled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import modal.exception

from reelforge.engine import modal_client

APP = "reelforge-test"
BODY = ("import json, sys\n"
        "from reelforge.engine.modal_app import run_envelope\n"
        "print(json.dumps(run_envelope.local(json.load(sys.stdin))))\n")


def _container_env(workdir: Path) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH", "HF_HUB_OFFLINE")}
    return {**keep, "REELFORGE_DATA_DIR": str(workdir), "REELFORGE_PLUGINS": "tests.plugins.slow_ops"}


class FakeCall:
    def __init__(self, body: dict[str, Any], workdir: Path) -> None:
        self.object_id = f"fc-{uuid.uuid4().hex[:12]}"
        self.cancelled = False
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: tuple[bytes, bytes] | None = None
        marker = str(((body.get("envelope") or {}).get("params") or {}).get("marker", ""))
        if marker.startswith("held"):
            return  # queued: no container takes it
        self.proc = subprocess.Popen([sys.executable, "-c", BODY], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=_container_env(workdir / self.object_id))
        self._feeder = threading.Thread(target=self._talk, args=(json.dumps(body).encode(),), daemon=True)
        self._feeder.start()

    def _talk(self, data: bytes) -> None:
        assert self.proc is not None
        self._out = self.proc.communicate(data)

    def get(self, timeout: float | None = None) -> Any:
        if self.cancelled:
            raise modal.exception.InputCancellation("Input was cancelled by the user.")
        if self.proc is None or self.proc.poll() is None or self._out is None:
            raise modal.exception.TimeoutError("the call has not finished")
        out, err = self._out
        if self.proc.returncode != 0:
            raise modal.exception.RemoteError(err.decode(errors="replace")[-500:])
        return json.loads(out.decode().strip().splitlines()[-1])

    def cancel(self, terminate_containers: bool = False) -> None:
        self.cancelled = True
        if self.proc is not None:
            self.proc.kill()
        record = os.environ.get("FAKE_MODAL_DIR")
        if record:
            Path(record, f"cancelled-{self.object_id}").touch()


class FakeModal:
    exception = modal.exception

    def __init__(self) -> None:
        self.calls: dict[str, FakeCall] = {}
        self.workdir = Path(os.environ.get("FAKE_MODAL_DIR") or "/tmp/fake-modal")
        sdk = self

        class Function:
            @staticmethod
            def from_name(app_name: str, name: str, *, environment_name: str | None = None) -> Any:
                sdk._check()
                if app_name != APP or name != "run_envelope":
                    raise modal.exception.NotFoundError(f"App {app_name!r} has no function {name!r}")

                class Deployed:
                    @staticmethod
                    def spawn(body: dict[str, Any]) -> FakeCall:
                        call = FakeCall(body, sdk.workdir)
                        sdk.calls[call.object_id] = call
                        return call

                return Deployed

        class FunctionCall:
            @staticmethod
            def from_id(call_id: str) -> FakeCall:
                sdk._check()
                if call_id not in sdk.calls:
                    raise modal.exception.NotFoundError(f"no function call {call_id}")
                return sdk.calls[call_id]

        self.Function = Function
        self.FunctionCall = FunctionCall

    @staticmethod
    def _check() -> None:
        if os.environ.get("FAKE_MODAL_DOWN") == "1":
            raise modal.exception.ConnectionError("Could not connect to the Modal server.")


modal_client.use_sdk(FakeModal())
