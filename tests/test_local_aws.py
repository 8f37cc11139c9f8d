"""examples/local_aws.py (make local / make local-down) and examples/demo.py, which shares it.

Each server here takes a free port (--port 0) and keeps its pid file in the test's temp directory.
"""

from __future__ import annotations

import itertools
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "examples" / "local_aws.py"


def local_aws(command: str, state: Path, *options: str) -> subprocess.CompletedProcess[str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "LOCAL_AWS_"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), command, "--state-dir", str(state), *options],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


def exports(stdout: str) -> dict[str, str]:
    """The variables of the `export A=1 B=2` line (stdout holds nothing else but the `unset` line)."""
    export, unset = stdout.splitlines()
    assert export.startswith("export ") and unset == "unset AWS_PROFILE AWS_SESSION_TOKEN"
    return dict(item.split("=", 1) for item in export.removeprefix("export ").split())


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]


def test_up_creates_the_example_then_reuses_the_server_and_down_stops_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = local_aws("up", state, "--port", "0")
    try:
        assert first.returncode == 0, first.stderr
        variables = exports(first.stdout)
        pid = int((state / "server.pid").read_text())
        assert alive(pid)
        assert "created role basic-lambda-role, bucket drover-examples, function basic-lambda" in first.stderr

        again = local_aws("up", state, "--port", "0")

        assert again.returncode == 0, again.stderr
        assert exports(again.stdout) == variables  # the same server, not a second one
        assert "already running" in again.stderr and "exist" in again.stderr
        session = boto3.Session(
            aws_access_key_id=variables["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=variables["AWS_SECRET_ACCESS_KEY"],
            region_name=variables["AWS_DEFAULT_REGION"],
        )
        client = session.client("lambda", endpoint_url=variables["AWS_ENDPOINT_URL"])
        function = client.get_function(FunctionName="basic-lambda")["Configuration"]
        assert function["Runtime"] == "python3.12" and function["Handler"] == "basic_lambda.handler"
        assert local_aws("env", state).stdout == first.stdout
    finally:
        down = local_aws("down", state)

    assert down.returncode == 0, down.stderr
    assert f"stopped the local AWS API (PID {pid})" in down.stderr
    assert not alive(pid)
    assert not (state / "server.pid").exists()
    stopped = local_aws("down", state)
    assert (stopped.returncode, stopped.stderr) == (0, "the local AWS API is not running\n")
    assert local_aws("env", state).returncode == 1


def test_a_port_in_use_is_one_clear_line_and_leaves_nothing_running(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = local_aws("up", tmp_path / "state", "--port", str(port))

    assert result.returncode == 1
    assert result.stdout == ""  # nothing for eval to set
    assert result.stderr.splitlines()[-1] == (
        f"error: port {port} on 127.0.0.1 is in use: make local LOCAL_AWS_PORT=N picks another (0: any free port)"
    )
    assert not (tmp_path / "state" / "server.pid").exists()


@pytest.mark.slow
@pytest.mark.network  # the example's build backend (flit_core) comes from the package index
def test_the_demo_deploys_twice_and_the_second_run_changes_nothing() -> None:
    environment = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '')}"

    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "demo.py")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    changes = [line for line in result.stdout.splitlines() if line.startswith("--> changed: ")]
    assert len(changes) == 2
    assert changes[0] != "--> changed: " and "nothing" not in changes[0]
    assert changes[1].startswith("--> changed: nothing")


def deploy_settings(stderr: str) -> str:
    """The drover.yml that `make local FUNCTION=...` prints (the indented lines after 'this drover.yml')."""
    lines = stderr.split("this drover.yml", 1)[1].splitlines()[1:]
    return "\n".join(line[2:] for line in itertools.takewhile(lambda line: line.startswith("  "), lines)) + "\n"


@pytest.mark.slow
def test_make_local_function_creates_it_with_its_role_and_the_printed_settings_deploy_to_it(tmp_path: Path) -> None:
    state = tmp_path / "state"
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "MAKE"))}
    environment.update(LOCAL_AWS_STATE_DIR=str(state), LOCAL_AWS_PORT="0")
    make = [shutil.which("make") or "make", "-s", "--no-print-directory", "local"]
    arguments = ["FUNCTION=my-fn", "RUNTIME=python3.12", "ARCH=arm64"]
    up = subprocess.run([*make, *arguments], cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    try:
        assert up.returncode == 0, up.stderr
        variables = exports(up.stdout)
        assert "role my-fn-role, function my-fn (python3.12, arm64, placeholder code)" in up.stderr
        assert "function basic-lambda" in up.stderr  # the example's, besides
        client = boto3.Session(
            region_name="us-east-1", aws_access_key_id="local", aws_secret_access_key="local"
        ).client("lambda", endpoint_url=variables["AWS_ENDPOINT_URL"])
        function = client.get_function(FunctionName="my-fn")["Configuration"]
        assert (function["Runtime"], function["Architectures"]) == ("python3.12", ["arm64"])
        assert function["Role"].endswith(":role/my-fn-role")
        project = tmp_path / "project"
        (project / "my_fn").mkdir(parents=True)
        (project / "my_fn" / "__init__.py").write_text("def handler(event, context):\n    return 'ok'\n")
        (project / "requirements.txt").write_text("# no dependencies\n")
        (project / "drover.yml").write_text(deploy_settings(up.stderr))
        command = up.stderr.split("then: ", 1)[1].splitlines()[0].split()
        assert command[0] == "drover"
        deploy = subprocess.run(
            [str(Path(sys.executable).parent / "drover"), *command[1:]],
            cwd=project,
            env={**environment, **variables},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert deploy.returncode == 0, deploy.stdout + deploy.stderr
        code = client.get_function(FunctionName="my-fn")["Configuration"]["CodeSha256"]
        assert code != function["CodeSha256"]  # drover replaced the placeholder
    finally:
        local_aws("down", state)
