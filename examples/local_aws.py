"""A local AWS API to try drover on: a moto server on 127.0.0.1 with the example's role, bucket and function.

    python examples/local_aws.py up [--port 5055]   # start it in the background, create the example, print exports
    python examples/local_aws.py up --function NAME [--runtime python3.12] [--arch arm64]
                                                    # ... and your own function NAME with its role NAME-role
    python examples/local_aws.py env                # print the export lines of the running server again
    python examples/local_aws.py down               # stop it, by the PID in its pid file

`make local [FUNCTION=NAME RUNTIME=python3.12 ARCH=arm64]` and `make local-down` run these; `eval "$(make -s local)"` sets the variables in your shell.
The port defaults to $LOCAL_AWS_PORT or 5055 (0 picks a free one); the pid file, the endpoint and the
server's log live in $LOCAL_AWS_STATE_DIR (default: .cache/local-aws in the repository).
examples/demo.py runs the same server and example infrastructure in-process. Needs boto3 and
moto[server] (the dev extra: `make venv`), and no drover code: it plays the user's infrastructure.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REGION = "us-east-1"
DEFAULT_PORT = 5055
DEFAULT_STATE_DIR = Path(__file__).resolve().parent.parent / ".cache" / "local-aws"
START_TIMEOUT_SECONDS = 60
ROLE, BUCKET, FUNCTION = "basic-lambda-role", "drover-examples", "basic-lambda"
TRUST_POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}
        ],
    }
)
# Variables that would send boto3 somewhere else than the local endpoint with the local keys.
CLEARED = ("AWS_PROFILE", "AWS_SESSION_TOKEN")


@dataclass(frozen=True)
class FunctionSpec:
    """A function the playground creates: the example's, or the user's (make local FUNCTION=...)."""

    name: str
    runtime: str = "python3.12"
    architecture: str = "x86_64"
    handler: str = "lambda_function.handler"
    variables: dict[str, str] = field(default_factory=dict)

    def description(self) -> str:
        """'python3.12, arm64, ' for the user's function; nothing for the example's (the defaults)."""
        return "" if self.variables else f"{self.runtime}, {self.architecture}, "


def local_environment(endpoint: str) -> dict[str, str]:
    """The variables that point boto3 (and so drover) at the local endpoint, with its dummy keys."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": REGION,
    }


def export_lines(endpoint: str) -> str:
    variables = " ".join(f"{name}={shlex.quote(value)}" for name, value in local_environment(endpoint).items())
    return f"export {variables}\nunset {' '.join(CLEARED)}\n"


def _clients(endpoint: str) -> tuple[Any, Any, Any]:
    import boto3

    session = boto3.Session(aws_access_key_id="local", aws_secret_access_key="local", region_name=REGION)
    return tuple(session.client(name, endpoint_url=endpoint) for name in ("iam", "s3", "lambda"))  # type: ignore[return-value]


def _ensure_role(iam: Any, name: str, created: list[str]) -> str:
    """The role's ARN; created (and noted in `created`) when missing."""
    try:
        return str(iam.get_role(RoleName=name)["Role"]["Arn"])
    except iam.exceptions.NoSuchEntityException:
        created.append(f"role {name}")
        return str(iam.create_role(RoleName=name, AssumeRolePolicyDocument=TRUST_POLICY)["Role"]["Arn"])


def _ensure_function(lambda_: Any, function: FunctionSpec, role: str, created: list[str]) -> None:
    """The function with placeholder code, as infrastructure code creates it before drover deploys to it."""
    try:
        lambda_.get_function(FunctionName=function.name)
        return
    except lambda_.exceptions.ResourceNotFoundException:
        pass
    placeholder = io.BytesIO()
    with zipfile.ZipFile(placeholder, "w") as archive:
        archive.writestr("placeholder.py", "def handler(event, context):\n    return None\n")
    lambda_.create_function(
        FunctionName=function.name,
        Runtime=function.runtime,
        Architectures=[function.architecture],
        Role=role,
        Handler=function.handler,
        Code={"ZipFile": placeholder.getvalue()},
        **({"Environment": {"Variables": function.variables}} if function.variables else {}),
    )
    created.append(f"function {function.name} ({function.description()}placeholder code)")


def create_example_infrastructure(endpoint: str) -> list[str]:
    """What a user's Terraform/CDK would do: a role, the bucket and the function with placeholder code.

    Idempotent: what exists already is left as it is. Returns what was created.
    """
    iam, s3, lambda_ = _clients(endpoint)
    created: list[str] = []
    role = _ensure_role(iam, ROLE, created)
    if BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=BUCKET)
        created.append(f"bucket {BUCKET}")
    example = FunctionSpec(FUNCTION, handler="basic_lambda.handler", variables={"OWNED_BY": "infrastructure"})
    _ensure_function(lambda_, example, role, created)
    return created


def create_user_function(endpoint: str, function: FunctionSpec) -> list[str]:
    """`make local FUNCTION=name`: that function and its role (NAME-role), for the user's own project."""
    iam, _, lambda_ = _clients(endpoint)
    created: list[str] = []
    role = _ensure_role(iam, f"{function.name}-role", created)
    _ensure_function(lambda_, function, role, created)
    return created


def package_name(function_name: str) -> str:
    """The Python package the user's code goes in: the function's name as an identifier (my-fn: my_fn)."""
    return re.sub(r"\W", "_", function_name)


def deploy_instructions(function: FunctionSpec) -> str:
    """How to deploy a project to the user's function: a drover.yml to copy, then the command."""
    package = package_name(function.name)
    return (
        f"to deploy your project to {function.name} (its handler is {function.handler}: {package}/__init__.py\n"
        f"defines handler(event, context)): with the exports below in your shell, this drover.yml\n"
        f"  stages:\n"
        f"    local:\n"
        f"      region_name: {REGION}\n"
        f"      function_name: {function.name}\n"
        f"      compatible_runtime: {function.runtime}\n"
        f"      architecture: {function.architecture}\n"
        f"      function_extra_paths:  # your code: the directory {package}/ beside drover.yml, kept by name\n"
        f"        - {{path: {package}, archive_path: {package}}}\n"
        f"      upload_bucket:  # the playground's bucket (promotion needs one)\n"
        f"        region_name: {REGION}\n"
        f"        bucket_name: {BUCKET}\n"
        f"then: drover --install-path build/lambda --requirements requirements.txt local\n"
        f"(your dependencies go into a layer; a project with pyproject.toml: leave out function_extra_paths and\n"
        f"use --install-source . instead of --requirements; docs/dependency-install.md 'Project shapes' shows each layout)"
    )


def start_in_process() -> tuple[Any, str]:
    """A moto server on a free loopback port in this process (for the demo): (server, endpoint)."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no per-request log lines
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


# -- the background server (make local / make local-down) -----------------------------------------


class State:
    """The files of a background server: its PID, its endpoint and its log."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.pid_file = directory / "server.pid"
        self.endpoint_file = directory / "endpoint"
        self.log_file = directory / "server.log"

    def pid(self) -> int | None:
        """The PID of our server if it is running (a stale or recycled PID counts as not running)."""
        try:
            pid = int(self.pid_file.read_text())
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return None
        return pid if Path(__file__).name.encode() in b" ".join(command) and b"serve" in command else None

    def endpoint(self) -> str | None:
        try:
            return self.endpoint_file.read_text().strip() or None
        except OSError:
            return None

    def clear(self) -> None:
        for path in (self.pid_file, self.endpoint_file):
            path.unlink(missing_ok=True)


def serve(port: int, state: State) -> int:
    """Run in the background child: serve moto on 127.0.0.1:port until SIGTERM."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    app = DomainDispatcherApplication(create_backend_app)
    server = make_server("127.0.0.1", port, app, threaded=True, request_handler=MotoRequestHandler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    written = state.endpoint_file.with_suffix(".tmp")
    written.write_text(f"http://127.0.0.1:{server.server_address[1]}\n")
    written.replace(state.endpoint_file)  # the parent sees a complete endpoint or none
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def up(port: int, state: State, function: FunctionSpec | None = None) -> int:
    state.directory.mkdir(parents=True, exist_ok=True)
    endpoint = state.endpoint() if state.pid() else None
    if endpoint is None:
        state.clear()
        endpoint = _start_background(port, state)
        if endpoint is None:
            return 1
        say(f"local AWS API (moto server, PID {state.pid()}) at {endpoint}; stop it with: make local-down")
    else:
        say(f"local AWS API already running at {endpoint} (PID {state.pid()})")
    invoke_without_docker(endpoint)
    created = create_example_infrastructure(endpoint)
    say(f"created {', '.join(created)}" if created else "the example's role, bucket and function exist")
    if function is not None:
        created = create_user_function(endpoint, function)
        say(f"created {', '.join(created)}" if created else f"{function.name} and its role exist")
        say(deploy_instructions(function))
    say('set these in your shell (or run: eval "$(make -s local)"):')
    sys.stdout.write(export_lines(endpoint))
    return 0


def _start_background(port: int, state: State) -> str | None:
    command = [sys.executable, str(Path(__file__).resolve()), "serve", "--port", str(port)]
    command += ["--state-dir", str(state.directory)]
    with open(state.log_file, "wb") as log:
        child = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, close_fds=True
        )
    state.pid_file.write_text(f"{child.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and child.poll() is None:
        endpoint = state.endpoint()
        if endpoint is not None and _answers(endpoint):
            return endpoint
        time.sleep(0.1)
    if child.poll() is None:
        child.terminate()
        child.wait()
    state.clear()
    log_tail = state.log_file.read_text(errors="replace").strip().splitlines()[-3:]
    if any("in use" in line for line in log_tail):
        say(f"error: port {port} on 127.0.0.1 is in use: make local LOCAL_AWS_PORT=N picks another (0: any free port)")
    else:
        say(f"error: the local AWS API did not start: {' / '.join(log_tail)} (log: {state.log_file})")
    return None


def invoke_without_docker(endpoint: str) -> None:
    """Lambda Invoke answers without a container runtime (moto echoes the event): a rollout's smoke test runs."""
    body = json.dumps({"lambda": {"use_docker": False}}).encode()
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def _answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/moto-api/data.json", timeout=2):
            return True
    except OSError:
        return False


def down(state: State) -> int:
    pid = state.pid()
    if pid is None:
        state.clear()
        say("the local AWS API is not running")
        return 0
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if state.pid() is None:
            break
        time.sleep(0.1)
    else:
        say(f"error: the local AWS API (PID {pid}) did not stop after SIGTERM")
        return 1
    state.clear()
    say(f"stopped the local AWS API (PID {pid})")
    return 0


def env(state: State) -> int:
    endpoint = state.endpoint() if state.pid() else None
    if endpoint is None:
        say("error: the local AWS API is not running: start it with make local")
        return 1
    sys.stdout.write(export_lines(endpoint))
    return 0


def say(message: str) -> None:
    """Messages go to stderr: stdout holds only the export lines, for eval."""
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["up", "down", "env", "serve"])
    parser.add_argument("--port", type=int, default=int(os.environ.get("LOCAL_AWS_PORT") or DEFAULT_PORT))
    parser.add_argument(
        "--state-dir", type=Path, default=Path(os.environ.get("LOCAL_AWS_STATE_DIR") or DEFAULT_STATE_DIR)
    )
    parser.add_argument("--function", help="up: also create this function and its role NAME-role")
    parser.add_argument("--runtime", default="python3.12", help="--function's runtime (default python3.12)")
    parser.add_argument("--arch", default="x86_64", choices=["x86_64", "arm64"], help="--function's architecture")
    args = parser.parse_args(argv)
    state = State(args.state_dir.resolve())
    if args.command == "serve":
        return serve(args.port, state)
    function = (
        FunctionSpec(args.function, args.runtime, args.arch, handler=f"{package_name(args.function)}.handler")
        if args.function
        else None
    )
    return {"up": lambda: up(args.port, state, function), "down": lambda: down(state), "env": lambda: env(state)}[
        args.command
    ]()


if __name__ == "__main__":
    sys.exit(main())
