"""Stream raw frames out of one ffmpeg and into another, with bounded memory and cancel.

    source --ffmpeg(decode)--> raw rgb24 frames --python (numpy)--> raw rgba frames --ffmpeg(encode)--> file

`FramePipes` owns the ffmpeg processes of one job: a watcher thread kills all of them as soon as
`ctx.cancelled()` turns true (a blocked read or write then returns and JobCancelled is raised), and
leaving the `with` block kills whatever is still running, so an error never leaves an ffmpeg behind.
`FrameReader` reads exactly width*height*channels bytes per frame (a short frame at the end means the
decoder died); `FrameWriter` writes frames and, on close, waits for the encoder and checks its exit.
Errors carry the tail of ffmpeg's stderr. Argument lists are built by the pure functions below.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import queue
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import numpy as np

from reelforge.errors import JobCancelled, MediaError, ProcessingError
from reelforge.media.ffmpeg import ffprobe_bin, kill_process, open_ffmpeg_pipe, redact_paths
from reelforge.media.frame_size import FrameSize  # raw frames are sized with channels (rgb24 3, rgba 4)
from reelforge.media.inputs import probe_args

if TYPE_CHECKING:
    from reelforge.runtime import WorkContext

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_QUEUE_POLL_S = 0.1
_PIPE_BYTES = 1 << 20  # the unprivileged maximum on Linux; fewer wake-ups per 720p frame than 64 KiB


# ---------------------------------------------------------------- pure argument builders
def decode_args(source: Path, size: FrameSize, fps: str) -> list[str]:
    """Decode the first video stream to raw frames on stdout at a constant `fps` and the given size.

    The size is forced with `scale` so the byte count per frame is exactly what the reader expects even
    if the decoder's idea of the size differs from the probe's (rotation metadata, odd sizes).
    """
    return [
        "-i", str(source),
        "-map", "0:v:0", "-an", "-sn", "-dn",
        "-vf", f"scale={size.width}:{size.height}:flags=bicubic,setsar=1",
        "-fps_mode", "cfr", "-r", fps,
        "-f", "rawvideo", "-pix_fmt", size.pix_fmt, "pipe:1",
    ]


def rawvideo_input_args(size: FrameSize, fps: str) -> list[str]:
    """The input options that read raw frames of `size` from stdin (input #0 of an encoder command)."""
    return ["-f", "rawvideo", "-pix_fmt", size.pix_fmt, "-s", f"{size.width}x{size.height}",
            "-framerate", fps, "-i", "pipe:0"]


def rotation_of(source: Path, timeout_s: float = 30.0) -> int:
    """Display rotation of the first video stream in degrees (0, 90, 180, 270); phones record this way."""
    cmd = [ffprobe_bin(), "-v", "error", "-select_streams", "v:0", "-print_format", "json",
           "-show_entries", "stream_side_data=rotation:stream_tags=rotate", *probe_args(source)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, errors="replace")
        streams = json.loads(res.stdout or "{}").get("streams") or []
    except (subprocess.TimeoutExpired, ValueError):
        return 0
    if not streams:
        return 0
    s = streams[0]
    values = [sd.get("rotation") for sd in s.get("side_data_list") or []] + [(s.get("tags") or {}).get("rotate")]
    for v in values:
        try:
            return round(float(v)) % 360
        except (TypeError, ValueError):
            continue
    return 0


# ---------------------------------------------------------------- process group with cancel
@dataclass(frozen=True)
class _Failure:
    exc: BaseException


def _put(q: queue.Queue[object], item: object, stop: Callable[[], bool]) -> bool:
    """Put into a bounded queue without ever blocking past `stop()` turning true."""
    while not stop():
        try:
            q.put(item, timeout=_QUEUE_POLL_S)
            return True
        except queue.Full:
            continue
    return False


class PipedFfmpeg:
    """One ffmpeg child plus a thread that keeps the tail of its stderr (a full stderr pipe would block it).
    Also used by media/audio_pipe.py."""

    def __init__(self, proc: subprocess.Popen[bytes], role: str) -> None:
        self.proc = proc
        self.role = role
        self.tail: deque[str] = deque(maxlen=30)
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.tail.append(line)

    def stderr_tail(self) -> str:
        self._t.join(timeout=2)
        return redact_paths("\n".join(self.tail)[-1500:])


def grow_pipe(fd: int) -> None:
    """Ask Linux for a 1 MiB pipe (default 64 KiB): fewer, larger writes between us and ffmpeg."""
    with contextlib.suppress(OSError):
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)


class FramePipes:
    """The ffmpeg children of one streaming job. Use as a context manager."""

    def __init__(self, ctx: WorkContext | None, poll_s: float = 0.2) -> None:
        self._ctx = ctx
        self._poll_s = poll_s
        self._procs: list[PipedFfmpeg] = []
        self._stop = threading.Event()
        self.cancelled = threading.Event()
        self._watcher = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> FramePipes:
        self._watcher.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self.kill_all()
        self._watcher.join(timeout=2)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll_s):
            if self._ctx is not None and self._ctx.cancelled():
                self.cancelled.set()
                self.kill_all()
                return

    def kill_all(self) -> None:
        for p in list(self._procs):
            for stream in (p.proc.stdin, p.proc.stdout):
                with contextlib.suppress(OSError, ValueError):
                    if stream is not None:
                        stream.close()
            kill_process(p.proc)

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set() or (self._ctx is not None and self._ctx.cancelled()):
            self.cancelled.set()
            self.kill_all()
            raise JobCancelled("The job was cancelled.")

    def pids(self) -> list[int]:
        return [p.proc.pid for p in self._procs]

    def reader(self, args: Sequence[str], size: FrameSize) -> FrameReader:
        self.raise_if_cancelled()
        proc = PipedFfmpeg(open_ffmpeg_pipe(args, read=True), "decoder")
        self._procs.append(proc)
        assert proc.proc.stdout is not None
        grow_pipe(proc.proc.stdout.fileno())
        return FrameReader(self, proc, size)

    def writer(self, args: Sequence[str], size: FrameSize) -> FrameWriter:
        self.raise_if_cancelled()
        proc = PipedFfmpeg(open_ffmpeg_pipe(args, write=True), "encoder")
        self._procs.append(proc)
        assert proc.proc.stdin is not None
        grow_pipe(proc.proc.stdin.fileno())
        return FrameWriter(self, proc, size)


class FrameReader:
    """Raw frames from a decoding ffmpeg, one exact-size buffer at a time."""

    def __init__(self, group: FramePipes, proc: PipedFfmpeg, size: FrameSize) -> None:
        self._g = group
        self._p = proc
        self.size = size
        self.frames_read = 0

    def _read_exact(self, buf: memoryview) -> int:
        stream = self._p.proc.stdout
        assert isinstance(stream, io.BufferedIOBase | io.RawIOBase)  # what Popen gives: both have readinto
        got = 0
        while got < len(buf):
            try:
                n = stream.readinto(buf[got:])
            except (OSError, ValueError):  # closed by the cancel watcher
                n = 0
            if not n:
                break
            got += n
        return got

    def read_batch(self, max_frames: int) -> np.ndarray | None:
        """Up to `max_frames` frames as (N,H,W,C) uint8, or None at the end of the stream."""
        s = self.size
        batch = np.empty((max_frames, s.height, s.width, s.channels), np.uint8)
        flat = batch.reshape(-1).data
        n = 0
        while n < max_frames:
            got = self._read_exact(flat[n * s.frame_bytes:(n + 1) * s.frame_bytes])
            if got == s.frame_bytes:
                n += 1
                continue
            self._g.raise_if_cancelled()
            if got:
                self._finish()  # raises with the decoder's own explanation if it has one
                raise MediaError("The video ended in the middle of a frame; it may be truncated.",
                                 code="media_decode_failed")
            break
        self.frames_read += n
        if n == 0:
            self._finish()
            return None
        return batch[:n]

    def batches(self, max_frames: int, prefetch: int = 0) -> Iterator[np.ndarray]:
        """Batches until the end. With `prefetch` > 0 a thread reads up to that many batches ahead, so
        decoding overlaps the caller's work (memory stays bounded by the queue)."""
        if prefetch <= 0:
            while (batch := self.read_batch(max_frames)) is not None:
                yield batch
            return
        q: queue.Queue[object] = queue.Queue(maxsize=prefetch)
        stop = threading.Event()

        def pump() -> None:
            try:
                while not stop.is_set():
                    batch = self.read_batch(max_frames)
                    if not _put(q, batch, stop.is_set) or batch is None:
                        return
            except BaseException as exc:  # handed to the consumer, raised there
                _put(q, _Failure(exc), stop.is_set)

        t = threading.Thread(target=pump, name="frame-reader", daemon=True)
        t.start()
        try:
            while True:
                item = q.get()
                if item is None:
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                assert isinstance(item, np.ndarray)
                yield item
        finally:
            stop.set()
            t.join(timeout=1)

    def _finish(self) -> None:
        rc = self._p.proc.wait()
        self._g.raise_if_cancelled()
        if rc != 0:
            tail = self._p.stderr_tail()
            raise MediaError(f"ffmpeg could not decode the video: {tail or 'exit code ' + str(rc)}",
                             code="media_decode_failed")


class FrameWriter:
    """Raw frames into an encoding ffmpeg; `close()` waits for it and checks that it succeeded.

    After `start_queue(depth)`, `write` hands batches to a thread (at most `depth` waiting), so the
    caller computes the next batch while the pipe drains into the encoder.
    """

    def __init__(self, group: FramePipes, proc: PipedFfmpeg, size: FrameSize) -> None:
        self._g = group
        self._p = proc
        self.size = size
        self.frames_written = 0
        self._q: queue.Queue[object] | None = None
        self._t: threading.Thread | None = None
        self._error: BaseException | None = None

    def start_queue(self, depth: int = 2) -> FrameWriter:
        self._q = queue.Queue(maxsize=max(1, depth))
        self._t = threading.Thread(target=self._pump, name="frame-writer", daemon=True)
        self._t.start()
        return self

    def _pump(self) -> None:
        assert self._q is not None
        while True:
            item = self._q.get()
            if item is None:
                return
            try:
                assert isinstance(item, np.ndarray)
                self._write_now(item)
            except BaseException as exc:  # raised to the caller at its next write/close
                self._error = exc
                return

    def _stopped(self) -> bool:
        return self._error is not None or self._g.cancelled.is_set()

    def write(self, frames: np.ndarray) -> None:
        """Write one frame (H,W,C) or a batch (N,H,W,C) of uint8 frames of this writer's size."""
        expect = self.size.frame_bytes
        if frames.dtype != np.uint8 or frames.size % expect:
            raise ProcessingError(f"frame buffer of {frames.size} bytes is not whole frames of {expect}",
                                  code="frame_size_mismatch")
        if self._q is None:
            self._write_now(frames)
            return
        self._raise_pending()
        _put(self._q, frames, self._stopped)
        self._raise_pending()

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error
        self._g.raise_if_cancelled()

    def _drain_queue(self) -> None:
        if self._q is None or self._t is None:
            return
        _put(self._q, None, self._stopped)
        while self._t.is_alive():
            self._g.raise_if_cancelled()
            self._t.join(timeout=_QUEUE_POLL_S)
        self._raise_pending()

    def _write_now(self, frames: np.ndarray) -> None:
        expect = self.size.frame_bytes
        stream = self._p.proc.stdin
        assert stream is not None
        try:
            stream.write(np.ascontiguousarray(frames).reshape(-1).data)
        except (BrokenPipeError, OSError, ValueError) as exc:
            self._g.raise_if_cancelled()
            rc = self._p.proc.wait()
            raise ProcessingError(f"the encoder stopped (exit {rc}): {self._p.stderr_tail()}",
                                  code="ffmpeg_failed") from exc
        self.frames_written += frames.size // expect

    def close(self, timeout_s: float = 600.0) -> None:
        self._drain_queue()
        stream = self._p.proc.stdin
        with contextlib.suppress(OSError, ValueError):
            if stream is not None:
                stream.close()
        deadline = time.monotonic() + timeout_s
        while self._p.proc.poll() is None:
            self._g.raise_if_cancelled()
            if time.monotonic() > deadline:
                kill_process(self._p.proc)
                raise ProcessingError("the encoder did not finish in time", code="ffmpeg_timeout")
            time.sleep(0.05)
        self._g.raise_if_cancelled()
        rc = self._p.proc.returncode
        if rc != 0:
            raise ProcessingError(f"ffmpeg failed to encode (exit {rc}): {self._p.stderr_tail()}",
                                  code="ffmpeg_failed")
