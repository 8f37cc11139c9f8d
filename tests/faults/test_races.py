"""Faults of the machine and the channels (issue 16, classes 4-6), injected at the exact point, run in-process.

- The filesystem changing underneath: a hook runs right after the walk (before any read) or inside it
  (between listing a directory and looking at an entry). Every read is checked against what the walk saw,
  never blocks, and every such case is one line, exit 2, "changed while packaging — rerun drover", with
  nothing left in --archive-dir.
- Interrupted archive writing (KeyboardInterrupt, or the SystemExit a SIGTERM handler raises): no
  `.partial`, no spool directory, nothing in --archive-dir.
- Output channels: stdout on a full device or a closed pipe is one error line, exit 1, no traceback; after
  a real deploy the line says what was done.
- The OIDC token fetch: http(s) only, the bearer token never crosses origins, an overall deadline; and no
  log line the Action prints can start a workflow command.
"""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover import archive, cli, core, github, packaging
from drover.retry import Backoff
from tests.aws import Infrastructure, MotoServer
from tests.github_fakes import _LocalHttpServer, oidc_server

STAGE = {
    "region_name": "us-east-1",
    "function_name": "fn",
    "compatible_runtime": "python3.12",
    "function_file_patterns": ["^app/"],
}
LARGE = archive.WHOLE_BUFFER_LIMIT + 1  # compressed whole one at a time, spooled (not in the thread buffer)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name, text in {
        "install/app/__init__.py": "",
        "install/app/main.py": "def handler(event, context):\n    return 'ok'\n",
        "install/dep/__init__.py": "VERSION = '1.0'\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    with open(root / "install" / "dep" / "model.bin", "wb") as stream:
        stream.truncate(LARGE)  # sparse
    (root / "drover.yml").write_text(yaml.safe_dump({"stages": {"staging": STAGE}}))
    return root


def run_cli(root: Path, monkeypatch: pytest.MonkeyPatch, *args: str) -> tuple[int, str, str]:
    monkeypatch.chdir(root)
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = cli.main(["--non-interactive", "--install-path", "install", *args, "staging"])
    return code, stdout.getvalue(), stderr.getvalue()


def package(root: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    code, _, stderr = run_cli(root, monkeypatch, "--package-only", "--archive-dir", "out")
    return code, stderr


def after_the_walk(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Run change right after the walk and partition, before any file is read."""
    original = packaging.layout_package

    def hooked(*args: Any, **kwargs: Any) -> packaging.PackageLayout:
        layout = original(*args, **kwargs)
        change()
        return layout

    monkeypatch.setattr(core, "layout_package", hooked)


def after_listing(monkeypatch: pytest.MonkeyPatch, directory_name: str, change: Callable[[], None]) -> None:
    """Run change right after the walk lists a directory (before it looks at the entries)."""
    original = packaging._list_directory

    def hooked(directory: str) -> list[os.DirEntry[str]]:
        entries = original(directory)
        if os.path.basename(directory) == directory_name:
            change()
        return entries

    monkeypatch.setattr(packaging, "_list_directory", hooked)


def assert_one_race_line(code: int, stderr: str, *fragments: str) -> None:
    assert code == 2, stderr
    assert "Traceback" not in stderr
    (line,) = stderr.splitlines()
    assert line.startswith("drover: error: ") and line.endswith("— rerun drover"), line
    assert "changed while packaging" in line, line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"


def nothing_left(root: Path) -> list[str]:
    out = root / "out"
    return sorted(path.name for path in out.iterdir()) if out.exists() else []


# -- the filesystem changing underneath ----------------------------------------------------------


def test_a_file_removed_after_the_walk(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    after_the_walk(monkeypatch, (project / "install" / "app" / "main.py").unlink)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "install/app/main.py changed while packaging (it was removed)")
    assert nothing_left(project) == []


def test_a_large_streamed_file_removed_after_the_walk(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    after_the_walk(monkeypatch, (project / "install" / "dep" / "model.bin").unlink)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "model.bin changed while packaging (it was removed)")
    assert nothing_left(project) == []


def test_a_small_file_that_grows_after_the_walk(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def grow() -> None:
        with open(project / "install" / "app" / "main.py", "a") as stream:
            stream.write("# more\n")

    after_the_walk(monkeypatch, grow)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "main.py changed while packaging (45 bytes when listed, 52 bytes now)")
    assert nothing_left(project) == []


def test_a_large_streamed_file_that_grows_after_the_walk(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Was archived silently (small files were checked, streamed ones were not)."""

    def grow() -> None:
        with open(project / "install" / "dep" / "model.bin", "ab") as stream:
            stream.write(b"more")

    after_the_walk(monkeypatch, grow)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, f"model.bin changed while packaging ({LARGE} bytes when listed")
    assert nothing_left(project) == []


def test_a_file_replaced_by_a_fifo_does_not_block(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """open() of a FIFO without a writer blocks forever; drover opens O_NONBLOCK and fstat refuses it."""

    def replace() -> None:
        (project / "install" / "app" / "main.py").unlink()
        os.mkfifo(project / "install" / "app" / "main.py")

    after_the_walk(monkeypatch, replace)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "main.py changed while packaging (no longer a regular file)")
    assert nothing_left(project) == []


def test_a_file_replaced_by_another_of_the_same_size(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def replace() -> None:
        source = project / "install" / "app" / "main.py"
        other = project / "install" / "app" / "other.tmp"
        other.write_bytes(b"x" * source.stat().st_size)
        os.replace(other, source)

    after_the_walk(monkeypatch, replace)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "main.py changed while packaging (replaced by another file)")


def test_a_file_rewritten_in_place_with_the_same_size(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def rewrite() -> None:
        source = project / "install" / "app" / "main.py"
        info = source.stat()
        with open(source, "r+b") as stream:
            stream.write(b"X")
        os.utime(source, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000_000))

    after_the_walk(monkeypatch, rewrite)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "main.py changed while packaging (modified since it was listed)")


def test_a_file_removed_between_listing_and_stat(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    after_listing(monkeypatch, "app", (project / "install" / "app" / "main.py").unlink)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "install/app/main.py changed while packaging (it was removed)")


def test_a_directory_removed_before_it_is_listed(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def remove() -> None:
        for path in (project / "install" / "app").iterdir():
            path.unlink()
        (project / "install" / "app").rmdir()

    after_listing(monkeypatch, "install", remove)
    code, stderr = package(project, monkeypatch)
    assert_one_race_line(code, stderr, "install/app changed while packaging (it was removed)")


# -- interrupted archive writing -----------------------------------------------------------------


@pytest.mark.parametrize("raised", [KeyboardInterrupt, SystemExit], ids=["KeyboardInterrupt", "SystemExit"])
def test_archive_writing_interrupted_leaves_no_partial(
    project: Path, monkeypatch: pytest.MonkeyPatch, raised: type[BaseException]
) -> None:
    """SIGINT raises KeyboardInterrupt, a SIGTERM handler SystemExit: the writer removes its .partial and
    spool directory on any exception, and --archive-dir gets nothing."""
    original = archive._compress_large

    def interrupted(package_file: packaging.PackageFile, spool_dir: Path) -> Any:
        original(package_file, spool_dir)  # a spool file exists now
        assert list(spool_dir.iterdir())
        raise raised()

    monkeypatch.setattr(archive, "_compress_large", interrupted)
    if raised is SystemExit:
        with pytest.raises(SystemExit):
            package(project, monkeypatch)
    else:
        code, stderr = package(project, monkeypatch)
        assert code == 130
        assert stderr.startswith("drover: interrupted before any AWS write")
    assert nothing_left(project) == []


# -- output channels -----------------------------------------------------------------------------


@contextmanager
def stdout_to(stream: Any) -> Iterator[io.StringIO]:
    stderr = io.StringIO()
    with redirect_stdout(stream), redirect_stderr(stderr):
        yield stderr


def test_json_on_a_full_device_is_one_error_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    with open("/dev/full", "w") as full, stdout_to(full) as stderr:
        code = cli.main(["--quiet", "--install-path", "install", "--package-only", "--json", "staging"])
    assert code == 1
    (line,) = stderr.getvalue().splitlines()
    assert line == "drover: error: the run finished, but its report could not be written: No space left on device"


def test_json_into_a_closed_pipe_is_one_error_line(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(project)
    read_end, write_end = os.pipe()
    os.close(read_end)
    with os.fdopen(write_end, "w") as pipe, stdout_to(pipe) as stderr:
        code = cli.main(["--quiet", "--install-path", "install", "--package-only", "--json", "staging"])
    assert code == 1
    (line,) = stderr.getvalue().splitlines()
    assert line == "drover: error: the run finished, but its report could not be written: Broken pipe"


@pytest.mark.parametrize("channel", ["full-device", "closed-pipe"])
def test_json_to_a_broken_stdout_in_a_child_process(project: Path, channel: str) -> None:
    """The same through `python -m drover`: no traceback, also not from the interpreter's flush at exit."""
    command = [
        sys.executable,
        "-m",
        "drover",
        "--quiet",
        "--install-path",
        "install",
        "--package-only",
        "--json",
        "staging",
    ]
    if channel == "full-device":
        with open("/dev/full", "w") as full:
            result = subprocess.run(command, cwd=project, stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    else:
        child = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert child.stdout is not None
        child.stdout.close()  # the reader went away (e.g. `| head -c0`)
        _, errors = child.communicate(timeout=60)
        result = subprocess.CompletedProcess(command, child.returncode, "", errors)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("drover: error: the run finished, but its report could not be written: ")


def test_a_deploy_whose_report_cannot_be_written_says_what_it_did(
    project: Path, monkeypatch: pytest.MonkeyPatch, aws: MotoServer, infra: Infrastructure
) -> None:
    infra.function("fn")
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint)
    monkeypatch.chdir(project)
    with open("/dev/full", "w") as full, stdout_to(full) as stderr:
        code = cli.main(["--non-interactive", "--quiet", "--install-path", "install", "--json", "staging"])
    assert code == 1
    (line,) = stderr.getvalue().splitlines()
    assert line.startswith("drover: error: the run finished; it did: publish-layer fn-requirements, update-code fn")
    assert "update-code fn, update-layers fn, tag fn," in line
    assert line.endswith("but its report could not be written: No space left on device")
    assert infra.configuration()["CodeSize"] > 0


# -- the OIDC token fetch ------------------------------------------------------------------------


class Redirecting(_LocalHttpServer):
    """Answers /start with a 302 to `location` (or to its own /token without one); /token with a token."""

    def __init__(self, location: str | None = None) -> None:
        self.location = location
        self.requests: list[str | None] = []
        self._start_server()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.headers.get("Authorization"))
                if self.path.startswith("/token"):
                    body = b'{"value": "same-origin-token"}'
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self.send_response(302)
                self.send_header("Location", server.location or f"http://127.0.0.1:{server.port}/token")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


class Dripping(_LocalHttpServer):
    """A token endpoint that sends its body one byte every `pause` seconds."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.stopped = threading.Event()
        self._start_server()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = b'{"value": "' + b"x" * 1000 + b'"}'
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for byte in body:
                    if server.stopped.wait(server.pause):
                        return
                    try:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                    except OSError:
                        return

            def log_message(self, *args: Any) -> None:
                pass

        return Handler


def one_attempt() -> Backoff:
    return Backoff(attempts=1, base=0.0, sleep=lambda seconds: None)


def test_a_redirect_to_another_origin_never_gets_the_bearer_token() -> None:
    with oidc_server() as elsewhere:
        redirecting = Redirecting(elsewhere.url).start()
        try:
            url = f"http://localhost:{redirecting.port}/start?api-version=2.0"  # localhost: another origin
            request = github.IdTokenRequest(url, elsewhere.request_token)
            with pytest.raises(github.CredentialsError, match="redirected to another origin"):
                github.fetch_id_token(request, "sts.amazonaws.com", timeout=5, backoff=one_attempt())
        finally:
            redirecting.stop()
        assert len(redirecting.requests) == 1
        assert elsewhere.requests == []


def test_a_redirect_within_the_origin_is_followed() -> None:
    server = Redirecting().start()
    try:
        request = github.IdTokenRequest(f"http://127.0.0.1:{server.port}/start?api-version=2.0", "t")
        token = github.fetch_id_token(request, "sts.amazonaws.com", timeout=5, backoff=one_attempt())
    finally:
        server.stop()
    assert token == "same-origin-token"
    assert server.requests == ["bearer t", "bearer t"]


def test_a_file_url_is_not_a_token_endpoint(tmp_path: Path) -> None:
    secret = tmp_path / "token.json"
    secret.write_text('{"value": "read from a file"}')
    request = github.IdTokenRequest(secret.as_uri() + "?x=1", "t")
    with pytest.raises(github.CredentialsError, match="ACTIONS_ID_TOKEN_REQUEST_URL is not an http"):
        github.fetch_id_token(request, "sts.amazonaws.com", timeout=5, backoff=one_attempt())


def test_a_dripping_endpoint_is_cut_at_the_overall_deadline() -> None:
    """Each byte comes within the per-read timeout (5 s), so only the overall deadline can stop it; without
    it the whole body (1,000+ bytes at 0.2 s each) would arrive and the fetch would succeed."""
    server = Dripping(pause=0.2).start()
    try:
        request = github.IdTokenRequest(f"http://127.0.0.1:{server.port}/token?api-version=2.0", "t")
        with pytest.raises(github.CredentialsError, match=r"in at most 1 s|within the 1 s deadline") as raised:
            github.fetch_id_token(request, "sts.amazonaws.com", timeout=5, backoff=one_attempt(), deadline=1.0)
        assert "Traceback" not in str(raised.value)
    finally:
        server.stopped.set()
        server.stop()


def test_no_logged_line_can_start_a_workflow_command(capsys: pytest.CaptureFixture[str]) -> None:
    """A token's aud claim (or any value) with a line break cannot become ::add-mask:: or ::error::."""
    github.configure_logging(debug=False)
    claims = {"sub": "repo:o/r", "aud": "sts\n::add-mask::hidden\n  ::error::injected\n##[warning]old syntax"}
    logging.getLogger("drover").info("Got an OIDC token for audience %s (%s)", "sts", github.describe_claims(claims))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4
    assert not any(line.lstrip().startswith(("::", "##[")) for line in lines), lines
    assert lines[1] == "> ::add-mask::hidden"


SIGTERM_CHILD = """
import signal, sys
from drover import cli
signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))  # what the adapters' handler does
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_real_sigterm_while_the_archive_is_written_leaves_nothing(project: Path) -> None:
    """A child with a SIGTERM handler that exits (as the adapters install) is signalled once its .partial
    exists: the writer's cleanup runs, and --archive-dir holds no .partial, spool or scratch directory."""
    for number in range(3):
        with open(project / "install" / "dep" / f"blob{number}.bin", "wb") as stream:
            stream.write(os.urandom(40 << 20))  # incompressible: the write takes a while
    command = [sys.executable, "-c", SIGTERM_CHILD, "--quiet", "--install-path", "install"]
    command += ["--package-only", "--archive-dir", "out", "staging"]
    child = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        while child.poll() is None and not list((project / "out").glob(".drover-*/**/.*.partial")):
            time.sleep(0.01)
        assert child.poll() is None, "the child finished before it could be signalled"
        child.terminate()
        _, errors = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 128 + 15, errors
    assert "Traceback" not in errors
    assert nothing_left(project) == []
