"""The one writer for the standard streams, used by the CLI and the Action.

A stream can fail in several ways: closed before the run (sys.stdout is None), closed during it (ValueError:
I/O operation on closed file), a full disk (ENOSPC), a reader gone (EPIPE), a bad descriptor (EBADF). Each is
turned into one OSError here, so the adapters handle every failure where they already handle OSError, and
say the same truthful thing with the same exit code whichever way the stream failed.
"""

from __future__ import annotations

import errno
import os
import sys
from typing import TextIO


def write(stream: TextIO | None, text: str) -> None:
    """Write text and flush; any failure of the stream is raised as an OSError."""
    if stream is None:
        raise OSError(errno.EBADF, "the stream is closed")
    try:
        stream.write(text)
        stream.flush()
    except ValueError as error:  # I/O operation on closed file
        raise OSError(errno.EBADF, "the stream is closed") from error


def try_write(stream: TextIO | None, text: str) -> bool:
    """Write text and flush; False when the stream failed (nothing more can be said on it)."""
    try:
        write(stream, text)
    except OSError:
        return False
    return True


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit cannot fail again with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            if sys.stdout is not None:
                os.dup2(devnull, sys.stdout.fileno())
            else:
                os.dup2(devnull, 1)
        finally:
            os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no descriptor (a StringIO, a closed file): nothing to flush
        pass


class SafeStream:
    """A file-like stream for log handlers that writes through write() and drops what cannot be written:
    a log line is never worth a traceback (logging's own error report would fail on the same stream)."""

    def __init__(self, name: str) -> None:
        self.name = name  # "stdout" or "stderr": looked up at each write (tests and adapters swap them)

    def write(self, text: str) -> int:
        try_write(getattr(sys, self.name), text)
        return len(text)

    def flush(self) -> None:
        pass
