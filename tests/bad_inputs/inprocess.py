"""Run an adapter's main() in this process the way a child process would run it: own cwd, own environment.

A child process costs an interpreter start and the imports of boto3 and drover (most of a bad-input
case's time); a bad input fails in milliseconds. So most cases call main() here, with the working
directory, os.environ, stdout and stderr swapped for the call and restored after it. A few cases per
adapter still run as real child processes (test_bad_inputs.py), so the entry points stay covered.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Completed:
    """What subprocess.run(capture_output=True, text=True) would return: the exit code and the output."""

    returncode: int
    stdout: str
    stderr: str


def run_in_process(main: Callable[[], int], *, cwd: Path, env: Mapping[str, str]) -> Completed:
    saved_environment, saved_cwd, saved_logging = dict(os.environ), Path.cwd(), _drover_logging()
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with redirect_stdout(stdout), redirect_stderr(stderr):
            try:
                code = main()
            except SystemExit as exit_:  # argparse exits on bad usage, as the child process would
                code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_environment)
        for logger, (handlers, level, propagate) in saved_logging.items():  # main() configures its own
            logger.handlers[:], logger.level, logger.propagate = handlers, level, propagate
    return Completed(code, stdout.getvalue(), stderr.getvalue())


def _drover_logging() -> dict[logging.Logger, tuple[list[logging.Handler], int, bool]]:
    loggers = [logging.getLogger("drover")]
    loggers += [logging.getLogger(name) for name in logging.root.manager.loggerDict if name.startswith("drover.")]
    return {logger: (list(logger.handlers), logger.level, logger.propagate) for logger in loggers}
