"""SIGTERM handled like SIGINT (Ctrl-C), for the CLI and the Action.

`docker stop` and a cancelled workflow run send SIGTERM to the container's PID 1, which Python
ignores-by-default there (no handler, PID 1): the run would be killed later without cleanup. The handler
turns it into an exception, so `finally` blocks remove scratch files and the adapter reports what was
and was not written to AWS, then exits 128 + 15.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Sequence
from types import FrameType

from drover.models import DeployResult


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived."""


def handle_sigterm() -> None:
    """From now on SIGTERM raises Terminated (only the main thread may set handlers: elsewhere, no-op)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the cleanup
    raise Terminated


def exit_code(error: KeyboardInterrupt) -> int:
    return 128 + (signal.SIGTERM if isinstance(error, Terminated) else signal.SIGINT)


def interruption_message(error: KeyboardInterrupt, progress: Sequence[DeployResult | None]) -> str:
    """What happened, what was written to AWS and what was not, and what to do.

    progress: the result of every stage the run had started (one, or each of a multi-stage run)."""
    how = "stopped by SIGTERM" if isinstance(error, Terminated) else "interrupted"
    deploys = [result for result in progress if result is not None and result.mode == "deploy"]
    if not deploys:
        return f"drover: {how} before any AWS write: nothing was changed; scratch files were removed"
    done = written_steps(deploys)
    written = f"written to AWS: {', '.join(done)}" if done else "no AWS write had completed"
    functions = ", ".join(result.function_name for result in deploys)
    return (
        f"drover: {how} during the deploy of {functions}; {written}; "
        "not written: the remaining steps (a request in flight may or may not have been applied); "
        "scratch files were removed. Run again: drover skips what is already live"
    )


READ_ONLY_STEPS = frozenset({"smoke-test", "check-alarms"})  # done steps that wrote nothing to AWS


def written_steps(progress: Sequence[DeployResult | None]) -> list[str]:
    """Each step a deploy (or several) completed, as `kind target`: what exists in AWS now."""
    return [
        f"{action.action} {_written(action.action, action.target, result)}"
        for result in progress
        if result is not None and result.mode == "deploy"
        for action in result.actions
        if action.done and action.action not in READ_ONLY_STEPS
    ]


def failure_note(progress: Sequence[DeployResult | None]) -> str:
    """What a failed run wrote before it failed (nothing when it wrote nothing): the error line's ending."""
    done = written_steps(progress)
    return f" (written to AWS before the failure: {', '.join(done)}; run again once fixed)" if done else ""


def _written(kind: str, target: str, progress: DeployResult) -> str:
    """A published layer is named by the version ARN it got, so the message says exactly what exists now."""
    return progress.requirements_layer_arn or target if kind == "publish-layer" else target
