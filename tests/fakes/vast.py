"""A local fake of Vast.ai's REST API (the /api/v0 calls ReelForge uses), written from its documentation:
a small FastAPI app served by uvicorn on a loopback port, in a thread of the test process.

It keeps instance state (created -> loading -> running after `boot_s`, or as told), serves every offer it has
whatever the query says (the real API is known to drop filters), and can be told to misbehave: answer 429
with Retry-After, lose an offer between search and create, keep an instance `loading` forever, turn one
`exited`, use up the search quota. With `run_onstart`, a running instance's onstart script is started as a
local process (its own process group, the instance's env), so a real `reelforge agent` can come up "on" it;
destroying the instance kills that process group.

`timeline` records (time, $/h of all instances not destroyed) at every change, so a test can check a budget
at every instant.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse


def offer(id: int, gpu: str = "RTX 4090", dph: float = 0.4, **extra: Any) -> dict[str, Any]:
    """An offer as the search answers it (gpu_ram in MB, like the API)."""
    base = {"id": id, "ask_contract_id": id, "gpu_name": gpu, "num_gpus": 1, "gpu_ram": 24564, "dph_total": dph,
            "reliability2": 0.99, "verified": True, "rentable": True, "rented": False, "cuda_max_good": 12.4,
            "disk_space": 100.0, "inet_down": 800.0, "geolocation": "Texas, US", "machine_id": 1000 + id}
    return {**base, **extra}


@dataclass
class FakeInstance:
    id: int
    offer: dict[str, Any]
    body: dict[str, Any]
    created_at: float
    status: str = "created"
    destroyed_at: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    mode: str = "ok"  # ok | stuck | exit

    def api(self) -> dict[str, Any]:
        return {"id": self.id, "label": self.body.get("label"), "actual_status": self.status if self.status != "created"
                else None, "intended_status": "running", "cur_state": "running", "dph_total": self.offer["dph_total"],
                "gpu_name": self.offer["gpu_name"], "start_date": self.created_at, "status_msg": f"fake {self.status}",
                "machine_id": self.offer["machine_id"], "image_uuid": self.body.get("image")}


@dataclass
class FakeVast:
    key: str = "vast-test-key"
    offers: list[dict[str, Any]] = field(default_factory=list)
    boot_s: float = 0.5  # created -> loading -> running
    run_onstart: bool = False
    base_env: dict[str, str] = field(default_factory=dict)  # the "image's" environment for onstart processes
    work_dir: Path | None = None
    rate_limit: int = 0  # answer this many next requests with 429
    retry_after: str = "1"
    quota_exceeded: bool = False
    lose_after_search: set[int] = field(default_factory=set)  # rented by someone else right after a search
    taken_at_create: set[int] = field(default_factory=set)  # still listed, but the create fails
    stuck: set[int] = field(default_factory=set)  # instances on these offers stay `loading`
    exits: set[int] = field(default_factory=set)  # instances on these offers turn `exited` once running
    price_at_create: dict[int, float] = field(default_factory=dict)  # the price changes after the search
    instances: dict[int, FakeInstance] = field(default_factory=dict)
    timeline: list[tuple[float, float]] = field(default_factory=list)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, had our Authorization
    url: str = ""
    _log_tokens: dict[str, tuple[int, int]] = field(default_factory=dict)
    _next_id: int = 5000
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    # ---- state
    def live_dph(self) -> float:
        return round(sum(i.offer["dph_total"] for i in self.instances.values() if i.destroyed_at is None), 6)

    def live(self) -> list[FakeInstance]:
        return [i for i in self.instances.values() if i.destroyed_at is None]

    def _mark(self) -> None:
        self.timeline.append((time.time(), self.live_dph()))

    def step(self) -> None:
        """Move instances along (called every 0.1 s by the server thread)."""
        now = time.time()
        with self._lock:
            for inst in self.live():
                age = now - inst.created_at
                if inst.status == "created" and age >= self.boot_s / 2:
                    inst.status = "loading"
                elif inst.status == "loading" and age >= self.boot_s and inst.mode != "stuck":
                    inst.status = "exited" if inst.mode == "exit" else "running"
                    if inst.status == "running" and self.run_onstart:
                        self._start(inst)
                elif inst.status == "running" and inst.proc is not None and inst.proc.poll() is not None:
                    inst.status = "exited"

    def _start(self, inst: FakeInstance) -> None:
        assert self.work_dir is not None
        home = self.work_dir / f"instance-{inst.id}"
        home.mkdir(parents=True, exist_ok=True)
        inst.log = home / "onstart.log"
        env = {**self.base_env, **{k: str(v) for k, v in (inst.body.get("env") or {}).items()},
               "HOME": str(home), "REELFORGE_DATA_DIR": str(home / "data")}
        inst.proc = subprocess.Popen(["bash", "-c", inst.body.get("onstart") or "true"], env=env, cwd=str(home),
                                     stdout=inst.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)

    def destroy(self, inst: FakeInstance) -> None:
        inst.destroyed_at = time.time()
        inst.status = "destroyed"
        if inst.proc is not None and inst.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(inst.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                inst.proc.wait(timeout=10)
        self._mark()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for inst in self.live():
                if inst.proc is not None and inst.proc.poll() is None:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(inst.proc.pid, signal.SIGKILL)

    # ---- the app
    def app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def gate(request: Request, call_next: Any) -> Any:
            authed = request.headers.get("authorization") == f"Bearer {self.key}"
            self.requests.append((request.method, request.url.path, authed))
            if request.url.path.startswith("/logs/"):
                return await call_next(request)
            if not authed:
                return JSONResponse({"success": False, "error": "auth_error", "msg": "bad key"}, status_code=401)
            if self.rate_limit > 0:
                self.rate_limit -= 1
                return JSONResponse({"success": False, "error": "too_many_requests"}, status_code=429,
                                    headers={"Retry-After": self.retry_after})
            return await call_next(request)

        @app.post("/api/v0/bundles/")
        async def bundles(request: Request) -> Any:
            query = await request.json()
            if self.quota_exceeded:
                return JSONResponse({"success": False, "error": "search_quota_exceeded",
                                     "msg": "daily search quota exceeded"}, status_code=429,
                                    headers={"Retry-After": "86400"})
            with self._lock:
                wanted_id = (query.get("id") or {}).get("eq")
                shown = [dict(o) for o in self.offers if not o.get("rented")
                         and (wanted_id is None or o["id"] == wanted_id)]
                for o in shown:  # the re-check at create time sees the new price
                    if wanted_id is not None and o["id"] in self.price_at_create:
                        o["dph_total"] = self.price_at_create[o["id"]]
                if wanted_id is None:
                    for o in self.offers:
                        if o["id"] in self.lose_after_search:
                            o["rented"] = True
            return {"offers": shown}

        @app.put("/api/v0/asks/{offer_id}/")
        async def create(offer_id: int, request: Request) -> Any:
            body = await request.json()
            with self._lock:
                found = next((o for o in self.offers if o["id"] == offer_id), None)
                if found is None or found.get("rented") or offer_id in self.taken_at_create:
                    return JSONResponse({"success": False, "error": "no_such_ask",
                                         "msg": f"Instance type {offer_id} is no longer available."}, status_code=404)
                o = dict(found)
                if offer_id in self.price_at_create:
                    o["dph_total"] = self.price_at_create[offer_id]
                found["rented"] = True
                self._next_id += 1
                mode = "stuck" if offer_id in self.stuck else "exit" if offer_id in self.exits else "ok"
                inst = FakeInstance(self._next_id, o, body, time.time(), mode=mode)
                self.instances[inst.id] = inst
                self._mark()
            return {"success": True, "new_contract": inst.id}

        @app.get("/api/v0/instances/")
        async def list_instances() -> Any:
            return {"instances": [i.api() for i in self.live()]}

        @app.get("/api/v0/instances/{instance_id}/")
        async def show(instance_id: int) -> Any:
            inst = self.instances.get(instance_id)
            if inst is None or inst.destroyed_at is not None:
                return {"instances": None}
            return {"instances": inst.api()}

        @app.put("/api/v0/instances/request_logs/{instance_id}/")
        async def logs(instance_id: int) -> Any:
            inst = self.instances.get(instance_id)
            if inst is None:
                return JSONResponse({"success": False, "error": "no_such_instance"}, status_code=404)
            token = uuid.uuid4().hex
            self._log_tokens[token] = (instance_id, 1)
            return {"success": True, "result_url": f"{self.url}/logs/{token}.log"}

        @app.get("/logs/{name}")
        async def log_file(name: str) -> Any:
            token = name.removesuffix(".log")
            entry = self._log_tokens.get(token)
            if entry is None:
                return PlainTextResponse("no such key", status_code=404)
            instance_id, not_yet = entry
            if not_yet:  # S3 takes a moment before the object exists
                self._log_tokens[token] = (instance_id, not_yet - 1)
                return PlainTextResponse("not yet", status_code=404)
            inst = self.instances[instance_id]
            text = inst.log.read_text(errors="replace") if inst.log and inst.log.exists() else ""
            return PlainTextResponse(f"fake instance {instance_id} {inst.status}\n{text}")

        @app.delete("/api/v0/instances/{instance_id}/")
        async def destroy(instance_id: int) -> Any:
            with self._lock:
                inst = self.instances.get(instance_id)
                if inst is None or inst.destroyed_at is not None:
                    return JSONResponse({"success": False, "error": "no_such_instance"}, status_code=404)
            self.destroy(inst)
            return {"success": True}

        return app


@contextlib.contextmanager
def serve(fake: FakeVast) -> Any:
    """Run the fake on a free loopback port; yields it with `url` set (the API base is url + /api/v0)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    fake.url = f"http://127.0.0.1:{port}"
    server = uvicorn.Server(uvicorn.Config(fake.app(), log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()

    def stepper() -> None:
        while not fake._stop.wait(0.1):
            fake.step()

    ticker = threading.Thread(target=stepper, daemon=True)
    ticker.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield fake
    finally:
        fake.close()
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()
