"""Which video encoder a job uses: NVENC when this worker can, libx264/libx265 otherwise, and CPU fallback.

API (what other modules use):

    choice = choose_video_encoder(ctx, "standard", codec="h264")   # -> EncoderChoice(name, args, hw)
    args = [..., *choice.args, ...]                                # "-c:v", name, preset/quality, pix_fmt

    # run an ffmpeg encode; NVENC if a session is free, else CPU; if NVENC fails mid-job (session limit,
    # driver error) the same command is rebuilt for the CPU encoder and rerun, and the fallback is noted
    used = encode_with_fallback(lambda c: [..., *c.args, out], ctx, "standard",
                                duration_s=10.0, span=(0, 1), stage="encoding")

    # the same for work that is not one run_ffmpeg call (e.g. frames piped into ffmpeg)
    result = with_encoder_fallback(lambda c: render(c), ctx, "standard")

Rules:
- NVENC is tried only when `settings.media.nvenc == "auto"` and a probe encode (one tiny lavfi frame) succeeds;
  the probe runs once per process and codec (cached).
- At most `settings.media.nvenc_max_sessions` NVENC encodes run at once in this process (consumer GPUs allow
  few sessions); when none is free the job encodes on the CPU instead of waiting.
- Quality presets `draft | standard | high` map to comparable settings for each encoder
  (the tables: `reelforge.media.codecs`).
- Every encode records `ctx.note(encoder=<name>)`; a fallback adds `encoder_fallback=<reason>`.
"""

from __future__ import annotations

import functools
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from reelforge.errors import JobCancelled, MediaError, ProcessingError
from reelforge.media.codecs import (
    CPU_ENCODERS,
    NVENC_ENCODERS,
    Quality,
    VideoCodec,
    mezzanine_x264_args,
    video_args,
)
from reelforge.media.ffmpeg import ffmpeg_bin, run_ffmpeg

if TYPE_CHECKING:
    from reelforge.runtime import WorkContext

T = TypeVar("T")


@dataclass(frozen=True)
class EncoderChoice:
    """An encoder and the ffmpeg output arguments that select it (`-c:v ... -pix_fmt yuv420p`)."""

    name: str
    codec: VideoCodec
    quality: Quality
    args: tuple[str, ...]
    hw: bool
    reason: str = ""


def encoder_args(name: str, codec: VideoCodec, quality: Quality) -> tuple[str, ...]:
    """The output arguments for encoder `name` at `quality` (the table lives in `reelforge.media.codecs`)."""
    return video_args(name, quality)


def cpu_encoder(codec: VideoCodec = "h264", quality: Quality = "standard", reason: str = "") -> EncoderChoice:
    name = CPU_ENCODERS[codec]
    return EncoderChoice(name, codec, quality, encoder_args(name, codec, quality), hw=False, reason=reason)


def intermediate_encoder(quality: Quality = "standard") -> EncoderChoice:
    """libx264 for a picture that is decoded and encoded again (codecs.mezzanine_x264_args): fast, near-lossless."""
    return EncoderChoice("libx264", "h264", quality, mezzanine_x264_args(quality), hw=False,
                         reason="an intermediate that is encoded again")


def nvenc_encoder(codec: VideoCodec = "h264", quality: Quality = "standard", reason: str = "") -> EncoderChoice:
    name = NVENC_ENCODERS[codec]
    return EncoderChoice(name, codec, quality, encoder_args(name, codec, quality), hw=True, reason=reason)


@functools.lru_cache(maxsize=8)
def nvenc_works(codec: VideoCodec = "h264", ffmpeg: str | None = None) -> bool:
    """Probe encode: one small black frame through the NVENC encoder. Cached per process and codec."""
    cmd = [ffmpeg or ffmpeg_bin(), "-hide_banner", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i",
           "color=c=black:s=256x256:r=1:d=1", "-frames:v", "1", "-c:v", NVENC_ENCODERS[codec], "-f", "null", "-"]
    try:
        res = subprocess.run(cmd, capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


# ---- NVENC session cap (process-wide)
_sessions_lock = threading.Lock()
_sessions: threading.BoundedSemaphore | None = None
_sessions_size = 0


def _session_pool(size: int) -> threading.BoundedSemaphore:
    global _sessions, _sessions_size
    with _sessions_lock:
        if _sessions is None or _sessions_size != size:
            # Settings are per process in practice; a new size (tests) starts a fresh pool.
            _sessions = threading.BoundedSemaphore(size)
            _sessions_size = size
        return _sessions


def choose_video_encoder(ctx: WorkContext, quality: Quality = "standard", codec: VideoCodec = "h264") -> EncoderChoice:
    """The encoder this worker prefers for a job (no session is reserved; see `encoder_session`)."""
    if ctx.settings.media.nvenc != "auto":
        return cpu_encoder(codec, quality, "NVENC disabled by settings")
    if nvenc_works(codec):
        return nvenc_encoder(codec, quality, "NVENC probe encode succeeded")
    return cpu_encoder(codec, quality, "NVENC unavailable on this worker")


@contextmanager
def encoder_session(ctx: WorkContext, quality: Quality = "standard", codec: VideoCodec = "h264",
                    *, prefer: EncoderChoice | None = None) -> Iterator[EncoderChoice]:
    """Hold an encoder for one encode: an NVENC session when preferred and free, else the CPU encoder."""
    choice = prefer or choose_video_encoder(ctx, quality, codec)
    if not choice.hw:
        yield choice
        return
    pool = _session_pool(ctx.settings.media.nvenc_max_sessions)
    if not pool.acquire(blocking=False):
        yield cpu_encoder(choice.codec, choice.quality, "all NVENC sessions busy")
        return
    try:
        yield choice
    finally:
        pool.release()


def with_encoder_fallback(work: Callable[[EncoderChoice], T], ctx: WorkContext, quality: Quality = "standard",
                          codec: VideoCodec = "h264", *, prefer: EncoderChoice | None = None) -> T:
    """Run `work(choice)`; if it fails on a hardware encoder, run it again on the CPU encoder.

    `work` must be rerunnable from scratch (it rewrites its own outputs). Cancellation never falls back.
    """
    with encoder_session(ctx, quality, codec, prefer=prefer) as choice:
        ctx.note(encoder=choice.name)
        if not choice.hw:
            return work(choice)
        try:
            return work(choice)
        except JobCancelled:
            raise
        except (ProcessingError, MediaError) as exc:
            reason = f"{choice.name} failed, re-encoded with {CPU_ENCODERS[choice.codec]}: {exc.message[-300:]}"
    ctx.check_cancelled()
    cpu = cpu_encoder(choice.codec, choice.quality, reason)
    ctx.note(encoder=cpu.name, encoder_fallback=reason)
    return work(cpu)


def encode_with_fallback(build_args: Callable[[EncoderChoice], list[str]], ctx: WorkContext,
                         quality: Quality = "standard", *, codec: VideoCodec = "h264",
                         duration_s: float | None = None, span: tuple[float, float] = (0.0, 1.0),
                         stage: str | None = "encoding", prefer: EncoderChoice | None = None) -> EncoderChoice:
    """Run one ffmpeg encode built by `build_args(choice)`, with NVENC->CPU fallback. Returns the choice used."""

    def work(choice: EncoderChoice) -> EncoderChoice:
        run_ffmpeg(build_args(choice), ctx, duration_s=duration_s, span=span, stage=stage)
        return choice

    return with_encoder_fallback(work, ctx, quality, codec, prefer=prefer)


def parallel_encodes(ctx: WorkContext, cpu_count: int, jobs: int) -> int:
    """How many encodes of one job to run at once: one per two cores on CPU (x264 already uses ~2 cores
    per 1080p stream), or the NVENC session cap when NVENC is in use."""
    per_cpu = max(1, cpu_count // 2)
    if choose_video_encoder(ctx).hw:
        per_cpu = max(per_cpu, ctx.settings.media.nvenc_max_sessions)
    return max(1, min(jobs, per_cpu))
