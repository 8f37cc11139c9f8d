"""Progress of long work: bars on a terminal, plain throttled lines in CI logs, nothing with --quiet."""

from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from drover import Drover, RunOptions
from drover.archive import write_zip
from drover.progress import NO_PROGRESS, PlainProgress, TerminalProgress, tracked
from drover.settings import load_settings
from tests.aws import REGION, Infrastructure
from tests.conftest import hashed_tree
from tests.deploy_support import Project

ROOT = Path(__file__).resolve().parent.parent
MIB = 1 << 20


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass
class RecordingProgress:
    """Every call the engine makes, in order: ("start", task, total, files) | ("advance", n, files) | ("finish",)."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, task: str, total: int | None = None, *, files: int | None = None) -> None:
        with self.lock:
            self.events.append(("start", task, total, files))

    def advance(self, amount: int, *, files: int = 0) -> None:
        with self.lock:
            self.events.append(("advance", amount, files))

    def finish(self) -> None:
        with self.lock:
            self.events.append(("finish",))

    def tasks(self) -> dict[str, dict[str, Any]]:
        """Per task: its total, files, the bytes and files advanced, and whether it finished."""
        tasks: dict[str, dict[str, Any]] = {}
        current: dict[str, Any] | None = None
        for event in self.events:
            if event[0] == "start":
                current = tasks[event[1]] = {"total": event[2], "files": event[3], "done": 0, "files_done": 0}
            elif event[0] == "advance":
                assert current is not None, "advance outside a task"
                current["done"] += event[1]
                current["files_done"] += event[2]
            elif event[0] == "sending":  # a request leaves (only those inside a task matter)
                if current is not None:
                    current.setdefault("done_before_sending", []).append(current["done"])
            else:
                assert current is not None, "finish outside a task"
                current["finished"] = True
                current = None
        return tasks


# -- the plain-line renderer (CI logs) ---------------------------------------------------------


def plain(clock: FakeClock) -> tuple[PlainProgress, list[str]]:
    lines: list[str] = []
    return PlainProgress(lines.append, clock=clock, heartbeat=None), lines


def test_plain_lines_come_at_most_every_interval_and_a_last_line_says_how_it_ended() -> None:
    clock = FakeClock()
    progress, lines = plain(clock)
    progress.start("Uploading requirements.zip", 64 * MIB)
    clock.now += 1
    progress.advance(16 * MIB)
    assert lines == [], "nothing in the first seconds"
    clock.now += 4
    progress.advance(16 * MIB)
    assert lines == ["Uploading requirements.zip: 32.0/64.0 MiB (50%)"]
    clock.now += 2
    progress.advance(8 * MIB)
    progress.tick()
    assert len(lines) == 1, "at most one line per interval"
    clock.now += 3
    progress.advance(8 * MIB)
    assert lines[-1] == "Uploading requirements.zip: 48.0/64.0 MiB (75%)"
    clock.now += 2
    progress.advance(16 * MIB)
    progress.finish()
    assert lines[-1] == "Uploading requirements.zip: 64.0/64.0 MiB (100%) in 12 s"
    assert len(lines) == 3
    assert not any("\r" in line or "\n" in line for line in lines)


def test_plain_work_shorter_than_the_interval_prints_nothing() -> None:
    clock = FakeClock()
    progress, lines = plain(clock)
    with tracked(progress, "Packaging function.zip", 10 * MIB, files=3):
        clock.now += 4.9
        progress.advance(10 * MIB, files=3)
    assert lines == []


def test_plain_lines_count_files_and_work_without_a_total_says_how_long_it_runs() -> None:
    clock = FakeClock()
    progress, lines = plain(clock)
    progress.start("Packaging requirements.zip", 4 * MIB, files=2000)
    clock.now += 5
    progress.advance(MIB, files=500)
    progress.start("Installing packages")  # a new task ends the last one
    clock.now += 6
    progress.tick()
    clock.now += 4
    progress.finish()
    assert lines == [
        "Packaging requirements.zip: 500/2000 files, 1.0/4.0 MiB (25%)",
        "Packaging requirements.zip: 500/2000 files, 1.0/4.0 MiB (25%) in 5 s",
        "Installing packages: running for 6 s",
        "Installing packages: done in 10 s",
    ]


def test_plain_advances_from_many_threads_all_count() -> None:
    clock = FakeClock()
    progress, lines = plain(clock)
    progress.start("Packaging requirements.zip", 8000, files=8000)

    def work() -> None:
        for _ in range(1000):
            progress.advance(1, files=1)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    clock.now += 5
    progress.tick()
    assert lines == ["Packaging requirements.zip: 8000/8000 files, 0.0/0.0 MiB (100%)"]


def test_plain_heartbeat_reports_work_that_never_advances() -> None:
    clock = FakeClock()
    lines: list[str] = []
    said = threading.Event()

    def emit(line: str) -> None:
        lines.append(line)
        said.set()

    progress = PlainProgress(emit, clock=clock, heartbeat=0.01)
    progress.start("Installing packages")
    clock.now += 7
    assert said.wait(30), "the heartbeat thread never ticked"
    progress.finish()
    assert lines[0] == "Installing packages: running for 7 s"
    assert lines[-1] == "Installing packages: done in 7 s"
    assert not any(thread.name == "drover-progress" for thread in threading.enumerate())


# -- the terminal renderer (tqdm) --------------------------------------------------------------


def test_terminal_bar_shows_bytes_files_and_reaches_100_percent() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    with tracked(progress, "Packaging requirements.zip", 2 * MIB, files=4):
        for _ in range(4):
            progress.advance(MIB // 2, files=1)
    output = stream.getvalue()
    assert "\r" in output, "a bar redraws in place"
    final = output.rsplit("\r", 1)[-1]
    assert final.startswith("Packaging requirements.zip: 100%")
    assert "2.00M/2.00M" in final and "4/4 files" in final


def test_terminal_work_without_a_total_that_ends_within_a_second_leaves_nothing() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    with tracked(progress, "Hashing files"):
        pass
    assert stream.getvalue() == ""


def test_terminal_spinner_turns_while_work_reports_nothing_then_says_done() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream)
    progress.start("Installing packages")
    marks: set[str] = set()
    for _ in range(6000):  # it shows after a second, then turns every 0.2 s: up to 60 s on a busy machine
        marks = set(re.findall(r"\rInstalling packages ([|/\\-]) \d+ s", stream.getvalue()))
        if len(marks) >= 2:
            break
        threading.Event().wait(0.01)
    progress.finish()
    assert len(marks) >= 2, stream.getvalue()
    assert re.search(r"\rInstalling packages: done in \d+ s\n$", stream.getvalue())


def test_importing_the_adapters_does_not_import_tqdm() -> None:
    code = "import sys, drover.cli, drover.github; assert 'tqdm' not in sys.modules, 'tqdm imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


# -- the engine reports; it never prints -------------------------------------------------------


def test_write_zip_reports_each_file_from_the_workers(tmp_path: Path, make_tree: Any) -> None:
    make_tree(tmp_path / "tree", {f"pkg/module{index}.py": b"x = 1\n" * (index + 1) for index in range(300)})
    files = hashed_tree(tmp_path / "tree")
    sizes: list[int] = []
    threads: set[int] = set()

    def on_file(size: int) -> None:
        sizes.append(size)
        threads.add(threading.get_ident())

    archive = write_zip(tmp_path / "out.zip", files, workers=2, on_file=on_file)

    assert sorted(sizes) == sorted(item.size for item in files)
    assert archive.file_count == len(sizes)
    assert threading.get_ident() not in threads


@pytest.fixture
def project(tmp_path: Path, infra: Infrastructure) -> Project:
    project = Project(tmp_path)
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v1'\n")
    project.write("dep/__init__.py", "VERSION = 1\n")
    (project.install / "dep" / "blob.bin").write_bytes(os.urandom(2 * MIB))  # incompressible: a 2 MiB upload
    infra.function()
    return project


def test_a_deploy_reports_packaging_and_each_s3_upload_byte_for_byte(project: Project, infra: Infrastructure) -> None:
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    progress = RecordingProgress()
    project.hooks.append(  # when botocore starts sending a PutObject, after it has read the body to sign it
        lambda clients: clients.session.events.register(
            "before-send.s3.PutObject", lambda **_: progress.events.append(("sending",))
        )
    )

    result = project.deploy(progress=progress)

    tasks = progress.tasks()
    assert tasks["Packaging requirements.zip"]["done"] == result.requirements_unzipped_size
    assert tasks["Packaging requirements.zip"]["files_done"] == result.requirements_file_count == 2
    for name, size in (("requirements.zip", result.requirements_size), ("function.zip", result.function_size)):
        upload = tasks[f"Uploading {name}"]
        # over plain HTTP botocore reads the body once to sign it: only the bytes sent count, each once
        assert upload.pop("done_before_sending") == [0]
        assert upload == {"total": size, "files": None, "done": size, "files_done": 0, "finished": True}
    s3 = infra.client("s3")
    for digest, size in ((result.requirements_digest, result.requirements_size), (result.function_digest, None)):
        head = s3.head_object(Bucket="deploy-artifacts", Key=f"{digest}.zip", ChecksumMode="ENABLED")
        assert head["ChecksumSHA256"], "the upload still carries its SHA-256"
        assert size is None or head["ContentLength"] == size
    assert [event for event in progress.events if event[0] != "advance"][-1] == ("finish",)


def test_a_direct_upload_reports_the_request_bytes_sent_as_archive_bytes(project: Project) -> None:
    progress = RecordingProgress()
    project.hooks.append(  # when botocore starts sending the request, after signing it
        lambda clients: clients.session.events.register(
            "before-send.lambda", lambda **_: progress.events.append(("sending",))
        )
    )

    result = project.deploy(progress=progress)

    tasks = progress.tasks()
    for name, size in (("requirements.zip", result.requirements_size), ("function.zip", result.function_size)):
        upload = tasks[f"Uploading {name}"]
        assert upload.pop("done_before_sending") == [0]
        assert upload == {"total": size, "files": None, "done": size, "files_done": 0, "finished": True}
    advances = [event[1] for event in progress.events if event[0] == "advance"]
    assert len(advances) > 10, "the 2 MiB layer zip (2.7 MiB as base64) is reported as it is sent, in pieces"
    assert result.bytes_uploaded == result.function_size + result.requirements_size


def test_the_action_prints_plain_progress_inside_the_phase_group(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    from drover import github

    settings = load_settings(project.write_settings())
    progress = PlainProgress(github.progress_line, interval=0.0, heartbeat=None)  # every tick prints a line
    drover = Drover(settings, "test", options=RunOptions(working_directory=project.root, progress=progress))
    drover.timings = github.GroupedTimings()
    drover.update(project.install)

    output = capsys.readouterr().out
    assert "\r" not in output
    deploy_group = output.split("::group::Deploy\n", 1)[1].split("::endgroup::", 1)[0]
    assert re.search(r"^Uploading requirements\.zip: 2\.\d/2\.\d MiB \(100%\)$", deploy_group, re.MULTILINE)
    compare_group = output.split("::group::Compare with the live function\n", 1)[1].split("::endgroup::", 1)[0]
    assert "Packaging requirements.zip: 2/2 files, 2.0/2.0 MiB (100%)" in compare_group


# -- the CLI: under a pseudo-terminal, in a CI log, quiet ---------------------------------------


def run_in_pty(args: list[str], cwd: Path) -> tuple[int, str, str]:
    """Run drover with a pseudo-terminal (100 columns) as stdin and stderr, stdout a pipe.

    The terminal's output processing is off, so every carriage return read is one drover wrote.
    """
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    child = subprocess.Popen(
        [sys.executable, "-m", "drover", *args], cwd=cwd, stdin=slave, stderr=slave, stdout=subprocess.PIPE
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    stdout, _ = child.communicate(timeout=120)
    return child.returncode, stdout.decode(), b"".join(chunks).decode("utf-8", "replace")


@pytest.fixture
def s3_project(project: Project, infra: Infrastructure) -> Project:
    infra.bucket("deploy-artifacts")
    project.stage["upload_bucket"] = {"region_name": REGION, "bucket_name": "deploy-artifacts"}
    project.write_settings()
    return project


def test_in_a_terminal_each_upload_bar_reaches_100_percent_and_stdout_stays_one_json_object(
    s3_project: Project,
) -> None:
    code, stdout, terminal = run_in_pty(["--install-path", "install", "--json", "test"], s3_project.root)

    assert code == 0, terminal
    document = json.loads(stdout)
    assert stdout.count("\n") == 1 and document["requirements_updated"]
    bars = [line.rsplit("\r", 1)[-1] for line in terminal.split("\n")]
    upload = next(bar for bar in bars if bar.startswith("Uploading requirements.zip"))
    assert re.match(r"Uploading requirements\.zip: 100%\|█+\| 2\.\d\dM/2\.\d\dM \[", upload), upload
    assert any(bar.startswith("Uploading function.zip: 100%") for bar in bars), terminal
    assert any(bar.startswith("Packaging requirements.zip: 100%") and "2/2 files" in bar for bar in bars)
    assert "\r" in terminal, "bars redraw in place"


def test_non_interactive_in_a_terminal_draws_no_bar(s3_project: Project) -> None:
    code, _, terminal = run_in_pty(["--install-path", "install", "--non-interactive", "test"], s3_project.root)

    assert code == 0, terminal
    assert "\r" not in terminal and "%|" not in terminal


def test_quiet_in_a_terminal_shows_no_progress(s3_project: Project) -> None:
    code, _, terminal = run_in_pty(["--install-path", "install", "--quiet", "test"], s3_project.root)

    assert code == 0, terminal
    assert terminal == ""


FAST_LINES = """\
import functools, sys
import drover.cli, drover.progress
drover.cli.PlainProgress = functools.partial(drover.progress.PlainProgress, interval=0.0, heartbeat=None)
sys.argv[0] = "drover"
raise SystemExit(drover.cli.main())
"""


def run_with_a_line_per_tick(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real CLI in a CI log (pipes, no terminal), with the plain interval at 0 so every advance prints."""
    return subprocess.run(
        [sys.executable, "-c", FAST_LINES, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_in_a_ci_log_progress_is_plain_lines_on_stderr_without_carriage_returns(s3_project: Project) -> None:
    result = run_with_a_line_per_tick("--install-path", "install", "--json", "test", cwd=s3_project.root)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["requirements_updated"]
    assert "\r" not in result.stderr
    lines = result.stderr.splitlines()
    assert "Uploading requirements.zip: 2.0/2.0 MiB (100%)" in lines, result.stderr
    assert any(re.fullmatch(r"Uploading requirements\.zip: [01]\.\d/2\.0 MiB \(\d+%\)", line) for line in lines)
    assert "Packaging requirements.zip: 2/2 files, 2.0/2.0 MiB (100%)" in lines


def test_quiet_in_a_ci_log_prints_no_progress(s3_project: Project) -> None:
    result = run_with_a_line_per_tick("--install-path", "install", "--quiet", "test", cwd=s3_project.root)

    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""


def test_no_progress_is_the_default() -> None:
    assert RunOptions().progress is NO_PROGRESS


def test_a_log_that_cannot_take_a_progress_line_does_not_stop_the_work() -> None:
    clock = FakeClock()

    def closed(line: str) -> None:
        raise OSError(32, "Broken pipe")

    progress = PlainProgress(closed, clock=clock, heartbeat=None)
    progress.start("Uploading function.zip", MIB)
    clock.now += 6
    progress.advance(MIB)
    progress.finish()


def test_a_terminal_that_reports_no_size_gets_bars_80_columns_wide() -> None:
    """`script`, `expect`, `docker run -t` before a resize: the terminal says 0x0; bars fall back to 80 columns."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
    attributes = termios.tcgetattr(slave)
    attributes[1] &= ~termios.OPOST
    termios.tcsetattr(slave, termios.TCSANOW, attributes)
    with open(slave, "w", encoding="utf-8", closefd=True) as stream:
        progress = TerminalProgress(stream)
        with tracked(progress, "Packaging requirements.zip", 2 * MIB, files=4):
            for _ in range(4):
                progress.advance(MIB // 2, files=1)
    os.set_blocking(master, False)
    output = os.read(master, 65536).decode()
    os.close(master)

    final = output.rstrip("\n").rsplit("\r", 1)[-1]
    assert final.startswith("Packaging requirements.zip: 100%|"), repr(output)
    assert len(final) == 80, repr(final)
