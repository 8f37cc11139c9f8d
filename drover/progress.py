"""How long work reports that it moves, and the two ways adapters show it.

The engine (core, workflow, deploy) never prints: it reports to a `Progress` — one task at a time,
started with its total (bytes, and files when it counts them), advanced as bytes are done, then
finished. `NO_PROGRESS` (the default) ignores all of it. The adapters pick a renderer:

- `TerminalProgress`: tqdm bars on a terminal (bytes, rate, time left; a spinner and the elapsed
  time for work without a total). tqdm is imported when a bar is first shown, never before.
- `PlainProgress`: CI logs. No bars, no carriage returns: nothing for work shorter than `interval`
  seconds, then one plain line at most every `interval` seconds, and a last line when it ends.

Both take `advance` calls from worker threads.
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from tqdm import tqdm

MIB = 1 << 20
PLAIN_INTERVAL = 5.0
HEARTBEAT_SECONDS = 1.0
SPINNER_SECONDS = 0.2
SPINNER_DELAY = 1.0
SPINNER = "|/-\\"
FALLBACK_COLUMNS = 80  # the bar width when the terminal reports no size


class Progress(Protocol):
    def start(self, task: str, total: int | None = None, *, files: int | None = None) -> None:
        """A new task: total is in bytes (None: unknown, e.g. an install); files, when it counts them too."""

    def advance(self, amount: int, *, files: int = 0) -> None:
        """amount more bytes (and files) done; safe to call from any thread."""

    def finish(self) -> None:
        """The task ended (done or not)."""


class NoProgress:
    def start(self, task: str, total: int | None = None, *, files: int | None = None) -> None:
        pass

    def advance(self, amount: int, *, files: int = 0) -> None:
        pass

    def finish(self) -> None:
        pass


NO_PROGRESS: Progress = NoProgress()


@contextmanager
def tracked(progress: Progress, task: str, total: int | None = None, *, files: int | None = None) -> Iterator[None]:
    """start() now, finish() at the end of the block, also when it fails."""
    progress.start(task, total, files=files)
    try:
        yield
    finally:
        progress.finish()


class _Task:
    def __init__(self, name: str, total: int | None, files: int | None, started: float) -> None:
        self.name = name
        self.total = total
        self.files = files
        self.started = started
        self.done = 0
        self.files_done = 0


class _Ticker:
    """Calls tick() every `seconds` on a daemon thread until stopped (work that reports nothing still moves)."""

    def __init__(self, seconds: float, tick: Callable[[], None]) -> None:
        self._stop = threading.Event()
        self._seconds = seconds
        self._tick = tick
        self._thread = threading.Thread(target=self._run, name="drover-progress", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._seconds):
            self._tick()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()


class PlainProgress:
    """Progress as plain lines for CI logs: `Uploading requirements.zip: 32.0/61.2 MiB (52%)`.

    emit takes one line (no newline, no carriage return). clock is injectable for tests;
    heartbeat (seconds, or None for none) lets work that never advances, an install, still report.
    """

    def __init__(
        self,
        emit: Callable[[str], None],
        *,
        interval: float = PLAIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
        heartbeat: float | None = HEARTBEAT_SECONDS,
    ) -> None:
        self._emit = emit
        self._interval = interval
        self._clock = clock
        self._heartbeat = heartbeat
        self._lock = threading.Lock()
        self._task: _Task | None = None
        self._next_line = 0.0
        self._lines = 0
        self._ticker: _Ticker | None = None

    def start(self, task: str, total: int | None = None, *, files: int | None = None) -> None:
        self.finish()
        ticker = _Ticker(self._heartbeat, self.tick) if self._heartbeat is not None else None
        with self._lock:
            now = self._clock()
            self._task = _Task(task, total, files, now)
            self._next_line = now + self._interval
            self._lines = 0
            replaced, self._ticker = self._ticker, ticker
        if replaced is not None:  # another thread started a task meanwhile: its heartbeat must not outlive it
            replaced.stop()

    def advance(self, amount: int, *, files: int = 0) -> None:
        with self._lock:
            if self._task is None:
                return
            self._task.done += amount
            self._task.files_done += files
        self.tick()

    def tick(self) -> None:
        """Print the task's state when the interval has passed since its start or its last line."""
        with self._lock:
            task, now = self._task, self._clock()
            if task is None or now < self._next_line:
                return
            self._next_line = now + self._interval
            self._lines += 1
            self._say(self._describe(task, now))

    def finish(self) -> None:
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()
        with self._lock:
            task, self._task = self._task, None
            if task is not None and self._lines:  # long work says how it ended; short work stays silent
                self._say(self._describe(task, self._clock(), ended=True))

    def _say(self, line: str) -> None:
        """A log that cannot take a progress line (closed, full) must not stop the deploy."""
        with contextlib.suppress(OSError, ValueError):
            self._emit(line)

    @staticmethod
    def _describe(task: _Task, now: float, *, ended: bool = False) -> str:
        elapsed = now - task.started
        if task.total is None:
            return f"{task.name}: {'done in' if ended else 'running for'} {elapsed:.0f} s"
        parts = []
        if task.files is not None:
            parts.append(f"{task.files_done}/{task.files} files")
        share = f" ({task.done / task.total:.0%})" if task.total else ""
        parts.append(f"{task.done / MIB:.1f}/{task.total / MIB:.1f} MiB{share}")
        suffix = f" in {elapsed:.0f} s" if ended else ""
        return f"{task.name}: {', '.join(parts)}{suffix}"


class TerminalProgress:
    """tqdm bars on a terminal stream (stderr). A log line clears the bar first: see clear_for_log.

    Work without a total (an install, hashing) shows a spinner and its time, from SPINNER_DELAY
    seconds on: a step that ends sooner leaves no line behind.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._bar: tqdm[Any] | None = None
        self._task: _Task | None = None
        self._ticker: _Ticker | None = None
        self._turns = 0

    def start(self, task: str, total: int | None = None, *, files: int | None = None) -> None:
        self.finish()
        with self._lock:
            self._task = _Task(task, total, files, time.monotonic())
            if total is not None:
                self._bar = self._open_bar(self._task)
        self._ticker = _Ticker(SPINNER_SECONDS, self._refresh)

    def advance(self, amount: int, *, files: int = 0) -> None:
        with self._lock:
            if self._bar is None or self._task is None:
                return
            self._task.files_done += files
            if files:
                self._label()
            self._bar.update(amount)

    def finish(self) -> None:
        with self._lock:
            ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.stop()
        with self._lock:
            bar, self._bar = self._bar, None
            if bar is not None:
                self._label(bar, spinning=False)
                bar.close()
            self._task = None

    def clear_for_log(self, record: object = None) -> bool:
        """A logging filter: wipe the bar before a log line is written; the next refresh redraws it below."""
        with self._lock:
            if self._bar is not None:
                self._bar.clear()
        return True

    def _open_bar(self, task: _Task) -> tqdm[Any]:
        from tqdm import tqdm  # only now: runs that show no bar never import it

        width = self._width()
        if task.total is None:
            return tqdm(desc=self._spinner_text(task), file=self._stream, bar_format="{desc}", **width)
        return tqdm(
            desc=task.name,
            total=task.total,
            postfix=f"0/{task.files} files" if task.files is not None else None,
            file=self._stream,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            mininterval=SPINNER_SECONDS,
            **width,
        )

    def _width(self) -> dict[str, Any]:
        """Follow the terminal's width, or FALLBACK_COLUMNS when it reports none (0x0: `script`, `expect`,
        `docker run -t` before a resize), where tqdm would draw empty lines."""
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError, io.UnsupportedOperation):
            columns = None
        return {"ncols": FALLBACK_COLUMNS} if columns == 0 else {"dynamic_ncols": True}

    def _refresh(self) -> None:
        with self._lock:
            task = self._task
            if task is None:
                return
            if self._bar is None:
                if time.monotonic() - task.started < SPINNER_DELAY:
                    return
                self._bar = self._open_bar(task)
            self._turns += 1
            self._label()
            self._bar.refresh()

    def _spinner_text(self, task: _Task, *, spinning: bool = True) -> str:
        elapsed = time.monotonic() - task.started
        if not spinning:
            return f"{task.name}: done in {elapsed:.0f} s"
        return f"{task.name} {SPINNER[self._turns % len(SPINNER)]} {elapsed:.0f} s"

    def _label(self, bar: tqdm[Any] | None = None, *, spinning: bool = True) -> None:
        bar = bar if bar is not None else self._bar
        task = self._task
        if bar is None or task is None:
            return
        if task.total is None:
            bar.set_description_str(self._spinner_text(task, spinning=spinning), refresh=False)
        elif task.files is not None:
            bar.set_postfix_str(f"{task.files_done}/{task.files} files", refresh=False)
