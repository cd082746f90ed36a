"""One ffmpeg audio encode fed with mono PCM while the audio is still being made.

Speech comes sentence by sentence; encoding it only once the last sentence is spoken puts the whole encode
(~18 CPU s for 15 minutes of 48 kHz AAC, one thread) after the synthesis. Fed as it grows, the encoder works
beside the synthesis and is done moments after it. The samples are the 16-bit PCM a wav of the same audio
holds, so the encoded file is the one encoding that wav gives.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reelforge.errors import ProcessingError
from reelforge.media.ffmpeg import kill_process, open_ffmpeg_pipe, redact_paths

_PIPE_BYTES = 1 << 20  # ~24 s of 22 kHz 16-bit mono: a sentence is handed over in one write
_F_SETPIPE_SZ = 1031


def pcm16(samples: np.ndarray) -> bytes:
    """float32 in [-1, 1] -> little-endian 16-bit PCM (as write_wav stores it)."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()


class PcmEncoder:
    """Started by the first `write` (which fixes the rate); `close()` waits and checks the encode, `abort()`
    stops it. `output_args` are ffmpeg's arguments after the raw mono input (codec, rate, container)."""

    def __init__(self, output_args: Sequence[str], out: Path) -> None:
        self._output_args = list(output_args)
        self._out = out
        self._proc: subprocess.Popen[bytes] | None = None
        self._tail: deque[str] = deque(maxlen=30)
        self._drain: threading.Thread | None = None
        self.rate = 0

    def _start(self, rate: int) -> None:
        args = ["-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", *self._output_args, str(self._out)]
        proc = self._proc = open_ffmpeg_pipe(args, write=True)
        with contextlib.suppress(OSError, ImportError):
            import fcntl

            assert proc.stdin is not None
            fcntl.fcntl(proc.stdin.fileno(), _F_SETPIPE_SZ, _PIPE_BYTES)
        self._drain = threading.Thread(target=self._read_stderr, daemon=True)
        self._drain.start()
        self.rate = rate

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in self._proc.stderr:
            self._tail.append(raw.decode("utf-8", "replace").rstrip())

    def write(self, samples: np.ndarray, rate: int) -> None:
        if self._proc is None:
            self._start(rate)
        elif rate != self.rate:
            raise ValueError("one encode takes one sample rate")
        assert self._proc is not None and self._proc.stdin is not None
        try:
            self._proc.stdin.write(pcm16(samples))
        except BrokenPipeError:
            self.close()  # ffmpeg stopped early: its exit status and stderr say why
            raise ProcessingError("ffmpeg stopped while encoding the speech.", code="ffmpeg_failed") from None

    def close(self) -> Path:
        """Wait for the encode; the output file is complete when this returns."""
        if self._proc is None:
            raise ProcessingError("No audio was given to encode.", code="empty_output")
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        rc = self._proc.wait()
        if self._drain is not None:
            self._drain.join(timeout=2)
        if rc != 0:
            msg = redact_paths("\n".join(self._tail)[-1500:])
            raise ProcessingError(f"ffmpeg failed encoding the speech (exit {rc}): {msg}", code="ffmpeg_failed")
        return self._out

    def abort(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(OSError, ValueError):
                if self._proc.stdin is not None:
                    self._proc.stdin.close()
            kill_process(self._proc)
