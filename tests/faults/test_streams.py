"""Stream failures (issue 24, item 4): every way stdout or stderr can fail gives the same truthful last line
and exit code. The CLI runs in-process with sys.stdout/sys.stderr replaced by streams that are fine, missing
(None: the descriptor was closed before the start), closed (ValueError), full (ENOSPC), a broken pipe (EPIPE)
or fail on flush (EIO); every combination, a successful package-only run and a bad input, with and without
--json. docs/faults.md lists the class.
"""

from __future__ import annotations

import errno
import io
import itertools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from drover import cli

STAGE = {
    "region_name": "us-east-1",
    "function_name": "fn",
    "compatible_runtime": "python3.12",
    "function_file_patterns": ["^app/"],
}


class FailingStream(io.StringIO):
    def __init__(self, error: OSError, *, on_flush: bool = False) -> None:
        super().__init__()
        self.error, self.on_flush = error, on_flush

    def write(self, text: str) -> int:
        if not self.on_flush:
            raise self.error
        return super().write(text)

    def flush(self) -> None:
        if self.on_flush:
            raise self.error


def closed_stream() -> io.StringIO:
    stream = io.StringIO()
    stream.close()
    return stream


STREAMS: dict[str, Callable[[], io.StringIO | None]] = {
    "ok": io.StringIO,
    "missing": lambda: None,
    "closed": closed_stream,
    "full": lambda: FailingStream(OSError(errno.ENOSPC, "No space left on device")),
    "broken-pipe": lambda: FailingStream(BrokenPipeError(errno.EPIPE, "Broken pipe")),
    "flush-fails": lambda: FailingStream(OSError(errno.EIO, "Input/output error"), on_flush=True),
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "install" / "app").mkdir(parents=True)
    (tmp_path / "install" / "app" / "main.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "drover.yml").write_text(yaml.safe_dump({"stages": {"staging": STAGE}}))
    return tmp_path


def run(args: list[str], stdout: str, stderr: str) -> tuple[int, object, object]:
    out, err = STREAMS[stdout](), STREAMS[stderr]()
    saved = sys.stdout, sys.stderr, list(logging.getLogger("drover").handlers)
    sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
    try:
        code = cli.main(args)
    except SystemExit as exited:
        code = exited.code if isinstance(exited.code, int) else 1
    finally:
        sys.stdout, sys.stderr, logging.getLogger("drover").handlers[:] = saved
    return code, out, err


def text_of(stream: object) -> str | None:
    """What a stream that works received; None for a failing one."""
    if type(stream) is io.StringIO and not stream.closed:
        return stream.getvalue()
    return None


@pytest.mark.parametrize("json_output", [False, True], ids=["text", "json"])
@pytest.mark.parametrize("scenario", ["success", "bad-input"])
def test_every_stream_failure_gives_the_same_last_line_and_exit_code(
    project: Path, monkeypatch: pytest.MonkeyPatch, scenario: str, json_output: bool
) -> None:
    monkeypatch.chdir(project)
    base = ["--non-interactive", "--install-path", "install", "--package-only", *(["--json"] if json_output else [])]
    args = [*base, *(["--function-name", "bad name"] if scenario == "bad-input" else []), "staging"]
    for stdout, stderr in itertools.product(STREAMS, STREAMS):
        case = f"stdout {stdout}, stderr {stderr}"

        code, out, err = run(args, stdout, stderr)

        written, errors = text_of(out), text_of(err)
        if scenario == "bad-input":
            assert code == 2, case
            if errors is not None:
                last = errors.splitlines()[-1]
                assert last.startswith("drover: error: ") and "is not a valid Lambda function name" in last, case
            if json_output and written is not None:
                assert json.loads(written)["error"]["exit_code"] == 2, case
            continue
        assert code == (0 if written is not None else 1), case
        if written is None and errors is not None:
            last = errors.splitlines()[-1]
            assert last.startswith("drover: error: the run finished, but its report could not be written"), case
        if written is not None and json_output:
            assert json.loads(written)["function_digest"], case
        if written is not None and not json_output:
            assert "Function archive" in written or "function" in written.lower(), case
        assert "Traceback" not in (errors or ""), case


def test_the_action_gives_exit_2_and_its_annotation_whatever_its_streams_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad Action input with every combination of failing streams: exit 2, the annotation when stderr works."""
    from drover import github
    from tests.test_action_container import Runner, write_project

    runner = Runner(tmp_path)
    write_project(runner.workspace)
    environment = runner.environment({"stage": "staging", "install-path": "install", "function-name": "bad name"}, {})
    for name in [name for name in __import__("os").environ if name.startswith(("INPUT_", "GITHUB_"))]:
        monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(runner.workspace)
    for stdout, stderr in itertools.product(STREAMS, STREAMS):
        out, err = STREAMS[stdout](), STREAMS[stderr]()
        saved = sys.stdout, sys.stderr, list(logging.getLogger("drover").handlers)
        sys.stdout, sys.stderr = out, err  # type: ignore[assignment]
        try:
            code = github.main()
        finally:
            sys.stdout, sys.stderr, logging.getLogger("drover").handlers[:] = saved
        case = f"stdout {stdout}, stderr {stderr}"
        assert code == 2, case
        errors = text_of(err)
        if errors is not None:
            assert errors.splitlines()[-1].startswith("::error::"), case
            assert "'bad name' is not a valid Lambda function name" in errors, case
