"""The HTTPS job control remote agents talk to (engine/control_http.py is the client; jobs/agents.py the logic).

    POST /v1/agent/register                      agent token: declare resources, learn lease timings
    POST /v1/agent/claim                         agent token: long-poll for a job of the given queues
    POST /v1/agent/jobs/{id}/renew               job token: renew the lease -> {owned, cancel_requested}
    GET  /v1/agent/jobs/{id}/cancel              job token: {cancel_requested}
    POST /v1/agent/jobs/{id}/progress            job token: fraction + stage -> {cancel_requested}
    POST /v1/agent/jobs/{id}/notes               job token: facts about how it ran (encoder, GPU, ...)
    POST /v1/agent/jobs/{id}/finish              job token: terminal state; outputs committed here
    POST /v1/agent/jobs/{id}/interrupted         job token: the agent is stopping (the attempt will not count)
    POST /v1/agent/jobs/{id}/release             job token: no verdict (host crashed): retry elsewhere
    GET  /v1/agent/jobs/{id}/files/{file_id}     job token: one of the job's uploaded inputs
    GET  /v1/agent/jobs/{id}/refs/{job}/{name}   job token: a file another job made for this one (job://)
    POST /v1/agent/jobs/{id}/fork                job token: wait for child jobs (their files uploaded first)
    PUT  /v1/agent/jobs/{id}/outputs/{filename}  job token: one output, to a temporary key of this attempt
    POST /v1/agent/jobs/{id}/output-urls/{name}  job token: S3 only, a presigned PUT to that same temporary key

Tokens go as `Authorization: Bearer`. The long poll asks the database once per interval, each time in its
own short session: no connection is held while it waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

from reelforge.api.auth import agent_token_doc, extract_key
from reelforge.engine.control import JobStatus
from reelforge.errors import PayloadTooLarge, UserError
from reelforge.jobs.agents import AgentJobs, JobGrant
from reelforge.refs import job_output_ref

router = APIRouter(prefix="/v1/agent", tags=["agents"], dependencies=[Depends(agent_token_doc)])
POLL_INTERVAL_S = 0.25


class ClaimWake:
    """Wakes the agents' long polls in this process when a job is queued here, so a claim does not wait
    for the next poll interval (a job queued by another API process is still found by the poll)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def current(self) -> asyncio.Event:
        """Taken before a claim looks: a job queued after that sets it, so the wait that follows ends."""
        return self._event

    def notify(self) -> None:
        """From any thread (the submit path runs in the threadpool)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: the service is stopping
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()


class WakingHandOff:
    """An executor as the submit path sees it (jobs/service.py HandOff), also waking the agents' polls."""

    def __init__(self, executor: Any, wake: ClaimWake) -> None:
        self.executor = executor
        self.wake = wake

    def submit(self, job: Any) -> None:
        try:
            self.executor.submit(job)
        finally:
            self.wake.notify()

    def cancel(self, job_id: str) -> None:
        self.executor.cancel(job_id)


class Register(BaseModel):
    resources: dict[str, Any] = Field(default_factory=dict)


class Claim(BaseModel):
    worker_id: str = Field(min_length=1, max_length=60, pattern=r"^[A-Za-z0-9_.:-]+$")
    queues: list[str] = Field(default_factory=list, max_length=20)
    resources: dict[str, Any] = Field(default_factory=dict)
    wait_s: float = Field(default=20.0, ge=0, le=60)


class ProgressIn(BaseModel):
    fraction: float = Field(ge=0, le=1)
    stage: str | None = Field(default=None, max_length=200)


class NotesIn(BaseModel):
    values: dict[str, Any]


class FinishIn(BaseModel):
    status: Literal["succeeded", "failed", "cancelled", "timed_out"]
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


class ReleaseIn(BaseModel):
    error: dict[str, Any]
    refund: bool = False


def _agents(request: Request) -> AgentJobs:
    agents: AgentJobs = request.app.state.agents
    return agents


async def _grant(request: Request, job_id: str) -> JobGrant:
    return await run_in_threadpool(_agents(request).grant, extract_key(request), job_id)


@router.post("/register", summary="An agent declares its resources")
async def register(body: Register, request: Request) -> dict[str, Any]:
    agents = _agents(request)
    agent = await run_in_threadpool(agents.authenticate, extract_key(request))
    return await run_in_threadpool(agents.register, agent, body.resources)


@router.post("/claim", summary="Long-poll for a job", response_model=None)
async def claim(body: Claim, request: Request) -> dict[str, Any] | Response:
    agents = _agents(request)
    presence = request.app.state.services.engine.presence
    token = extract_key(request)
    wake: ClaimWake | None = getattr(request.app.state, "claim_wake", None)
    deadline = time.monotonic() + body.wait_s
    while True:
        woken = wake.current() if wake is not None else None
        agent = await run_in_threadpool(agents.authenticate, token)  # revoked -> 401 at once, even mid-poll
        queues = agents.allowed_queues(agent, body.queues)
        presence.seen(queues)
        envelope = await run_in_threadpool(agents.claim, agent, body.worker_id, queues, body.resources)
        if envelope is not None:
            return {"job": envelope}
        left = deadline - time.monotonic()
        if left <= 0:
            return Response(status_code=204)
        # the next look: when a job is queued in this process, else after the poll interval
        if woken is None:
            await asyncio.sleep(POLL_INTERVAL_S)
        else:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(POLL_INTERVAL_S, left))
        # an agent that stopped mid-poll must not be handed a job it will never run (it would hold the job
        # until its lease ran out and cost it an attempt): look for the hang-up before every further claim
        if await request.is_disconnected():
            return Response(status_code=204)


@router.post("/jobs/{job_id}/renew")
async def renew(job_id: str, request: Request) -> dict[str, Any]:
    grant = await _grant(request, job_id)
    lease = await run_in_threadpool(_agents(request).renew, grant)
    return {"owned": lease.owned, "cancel_requested": lease.cancel_requested}


@router.get("/jobs/{job_id}/cancel")
async def cancel_requested(job_id: str, request: Request) -> dict[str, Any]:
    grant = await _grant(request, job_id)
    return {"cancel_requested": await run_in_threadpool(_agents(request).cancel_requested, grant)}


@router.post("/jobs/{job_id}/progress")
async def progress(job_id: str, body: ProgressIn, request: Request) -> dict[str, Any]:
    grant = await _grant(request, job_id)
    cancel = await run_in_threadpool(_agents(request).progress, grant, body.fraction, body.stage)
    return {"cancel_requested": cancel}


@router.post("/jobs/{job_id}/notes", status_code=204)
async def notes(job_id: str, body: NotesIn, request: Request) -> Response:
    grant = await _grant(request, job_id)
    await run_in_threadpool(_agents(request).note, grant, body.values)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/finish")
async def finish(job_id: str, body: FinishIn, request: Request) -> dict[str, Any]:
    grant = await _grant(request, job_id)
    ok = await run_in_threadpool(_agents(request).finish, grant, JobStatus(body.status), body.result, body.error)
    return {"ok": ok}


@router.post("/jobs/{job_id}/interrupted", status_code=204)
async def interrupted(job_id: str, request: Request) -> Response:
    grant = await _grant(request, job_id)
    await run_in_threadpool(_agents(request).interrupted, grant)
    return Response(status_code=204)


@router.post("/jobs/{job_id}/release")
async def release(job_id: str, body: ReleaseIn, request: Request) -> dict[str, Any]:
    grant = await _grant(request, job_id)
    status = await run_in_threadpool(_agents(request).release, grant, body.error, body.refund)
    return {"status": status.value}


@router.get("/jobs/{job_id}/files/{file_id}", response_model=None)
async def input_file(job_id: str, file_id: str, request: Request) -> FileResponse | RedirectResponse:
    agents = _agents(request)
    grant = await _grant(request, job_id)
    key, filename = await run_in_threadpool(agents.input_file, grant, file_id)
    return _serve(agents, key, filename)


def _serve(agents: AgentJobs, key: str, filename: str) -> FileResponse | RedirectResponse:
    local = agents.storage.local_path(key)
    if local is not None:
        return FileResponse(local, filename=filename)
    url = agents.storage.url(key, filename=filename)
    if not url:
        raise UserError("This input cannot be served.", code="input_unavailable")
    return RedirectResponse(url, status_code=307)


@router.get("/jobs/{job_id}/refs/{ref_job}/{name}", response_model=None)
async def job_file(job_id: str, ref_job: str, name: str, request: Request) -> FileResponse | RedirectResponse:
    """A file another job made for this one: its parent's fork files, or a joining parent's children's
    outputs (`job://<ref_job>/<name>` in its envelope's `files`)."""
    agents = _agents(request)
    grant = await _grant(request, job_id)
    key, filename = await run_in_threadpool(agents.job_file, grant, job_output_ref(ref_job, name))
    return _serve(agents, key, filename)


class ForkIn(BaseModel):
    children: list[dict[str, Any]] = Field(max_length=200)
    state: dict[str, Any] = Field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict, max_length=50)


@router.post("/jobs/{job_id}/fork")
async def fork(job_id: str, body: ForkIn, request: Request) -> dict[str, Any]:
    """The job waits for these child jobs (each the job's own op, checked as a client's job would be); the
    files it made for them were uploaded first, like outputs, and are committed now."""
    grant = await _grant(request, job_id)
    children = await run_in_threadpool(_agents(request).fork, grant, body.children, body.state, body.outputs)
    return {"children": children}


class OutputUrlIn(BaseModel):
    content_type: str = Field(default="application/octet-stream", min_length=1, max_length=200)


@router.post("/jobs/{job_id}/output-urls/{filename}")
async def output_url(job_id: str, filename: str, body: OutputUrlIn, request: Request) -> dict[str, Any]:
    """S3 storage: a presigned PUT for one output, so its bytes go to the bucket, not through the API."""
    agents = _agents(request)
    grant = await _grant(request, job_id)
    return await run_in_threadpool(agents.output_url, grant, filename, body.content_type)


@router.put("/jobs/{job_id}/outputs/{filename}")
async def upload_output(job_id: str, filename: str, request: Request) -> dict[str, Any]:
    agents = _agents(request)
    grant = await _grant(request, job_id)
    key = await run_in_threadpool(agents.upload_key, grant, filename)
    settings = request.app.state.settings
    cap = settings.limits.max_upload_bytes
    tmp_dir = settings.work_dir / "agent-uploads"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / uuid.uuid4().hex
    try:
        size = 0
        with tmp.open("wb") as fh:
            async for chunk in request.stream():
                size += len(chunk)
                if size > cap:
                    raise PayloadTooLarge(f"The output is larger than the limit of {cap} bytes.",
                                          code="output_too_large")
                fh.write(chunk)
        ctype = request.headers.get("content-type") or None
        # handed over, not copied: local storage renames the received file into place
        obj = await run_in_threadpool(agents.storage.put_moved, tmp, key, ctype)
    finally:
        tmp.unlink(missing_ok=True)
    return {"size": obj.size, "sha256": obj.sha256}
