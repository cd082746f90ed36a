"""A webhook receiver on a loopback port for tests: records every JSON body POSTed to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Hooks:
    url: str
    got: list[dict[str, Any]] = field(default_factory=list)

    def types(self, job_id: str) -> list[str]:
        return [e["type"] for e in self.got if e["job_id"] == job_id]

    def wait_for(self, kind: str, job_id: str | None = None, timeout: float = 10) -> dict[str, Any]:
        """The first event of this type (for this job, when given) received within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in list(self.got):
                if e["type"] == kind and (job_id is None or e["job_id"] == job_id):
                    return e
            time.sleep(0.02)
        raise AssertionError(f"no {kind} for {job_id or 'any job'}: {self.got}")


@contextmanager
def webhook_receiver() -> Iterator[Hooks]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    state = Hooks(url=f"http://127.0.0.1:{server.server_address[1]}/hook")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            state.got.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0")))))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server.RequestHandlerClass = Handler
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
