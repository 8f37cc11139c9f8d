"""The Action as the runner runs it: entrypoint.py in a child process with a container's clean environment.

The environment holds only PATH, HOME, the INPUT_* variables (hyphens kept), the GITHUB_* files in a
temp directory laid out like /github/..., RUNNER_TEMP, the OIDC request variables pointing at a local
token server, and AWS_ENDPOINT_URL pointing at the moto server (STS through a recording stand-in).
The end of the file runs the real image the same way, with podman (`make test-container`):
tests/container/ builds it and replays the runner's `docker run`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from drover import github
from tests.aws import Infrastructure, MotoServer
from tests.container import images
from tests.container.holding import holding_server
from tests.container.runner import ActionRun, ContainerRunner
from tests.github_fakes import (
    ACCESS_DENIED,
    THROTTLED,
    FakeOidcServer,
    FakeSts,
    counting_server,
    fake_sts,
    oidc_server,
    parse_github_output,
    refused_url,
)

ROOT = Path(__file__).resolve().parent.parent
ENTRYPOINT = ROOT / "entrypoint.py"
DROVER = ROOT / "drover"
ROLE = "arn:aws:iam::123456789012:role/drover-deploy"
SETTINGS = """\
stages:
  staging:
    region_name: us-east-1
    function_name: fn
    compatible_runtime: python3.12
    function_file_patterns:
      - '^app/'
    function_extra_paths:
      - config
"""
FAST_RETRIES = {"DROVER_RETRY_BASE_SECONDS": "0.01", "DROVER_OIDC_TIMEOUT_SECONDS": "2"}


@dataclass
class Runner:
    """A /github tree in a temp directory and the container environment around entrypoint.py."""

    root: Path

    def __post_init__(self) -> None:
        for directory in (self.workspace, self.file_commands, self.runner_temp, self.home):
            directory.mkdir(parents=True, exist_ok=True)
        self.output_file.touch()
        self.summary_file.touch()

    workspace = property(lambda self: self.root / "github" / "workspace")
    file_commands = property(lambda self: self.root / "github" / "file_commands")
    runner_temp = property(lambda self: self.root / "github" / "runner_temp")
    home = property(lambda self: self.root / "github" / "home")
    output_file = property(lambda self: self.file_commands / "set_output_0c1f")
    summary_file = property(lambda self: self.file_commands / "step_summary_0c1f")

    def environment(self, inputs: dict[str, str], extra: dict[str, str], github_files: bool = True) -> dict[str, str]:
        env = {
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.home),
            "RUNNER_TEMP": str(self.runner_temp),
        }
        if github_files:
            env.update(
                {
                    "GITHUB_ACTIONS": "true",
                    "GITHUB_WORKSPACE": str(self.workspace),
                    "GITHUB_OUTPUT": str(self.output_file),
                    "GITHUB_STEP_SUMMARY": str(self.summary_file),
                }
            )
        env.update({f"INPUT_{name.upper()}": value for name, value in inputs.items()})
        env.update(extra)
        return env

    def run(self, inputs: dict[str, str], *, github_files: bool = True, **extra: str) -> ActionRun:
        completed = subprocess.run(
            [sys.executable, str(ENTRYPOINT)],
            cwd=self.workspace,
            env=self.environment({"stage": "staging", **inputs}, extra, github_files),
            capture_output=True,
            text=True,
            timeout=120,
        )
        return ActionRun(
            completed.returncode,
            completed.stdout,
            completed.stderr,
            self.output_file.read_text(encoding="utf-8"),
            self.summary_file.read_text(encoding="utf-8"),
        )


def write_project(directory: Path, settings: str = SETTINGS) -> None:
    """drover.yml, an extra path, and an install directory as `pip install --target` would leave it."""
    files = {
        "drover.yml": settings,
        "config/settings.json": '{"debug": false}\n',
        "install/app/__init__.py": "",
        "install/app/main.py": "def handler(event, context):\n    return 'ok'\n",
        "install/dependency/__init__.py": "VERSION = '1.0'\n",
    }
    for name, text in files.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def with_handler_beside_the_config(container: ContainerRunner) -> None:
    """A run whose install path holds only dependencies takes its handler from an extra path: a function
    archive without a Python file is refused."""
    (container.workspace / "config" / "handler.py").write_text("def handler(event, context):\n    return 'ok'\n")
    container.give_to_owner()


@pytest.fixture
def runner(tmp_path: Path) -> Runner:
    runner = Runner(tmp_path)
    write_project(runner.workspace)
    return runner


@pytest.fixture
def oidc() -> Iterator[FakeOidcServer]:
    with oidc_server() as server:
        yield server


@pytest.fixture
def sts(aws: MotoServer) -> Iterator[FakeSts]:
    with fake_sts(aws.endpoint) as server:
        yield server


def oidc_environment(oidc: FakeOidcServer, sts: FakeSts, aws: MotoServer) -> dict[str, str]:
    return {
        "ACTIONS_ID_TOKEN_REQUEST_URL": oidc.url,
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc.request_token,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_ENDPOINT_URL_STS": sts.endpoint,
        **FAST_RETRIES,
    }


def assert_masked_before_use(run: ActionRun, secrets: dict[str, str]) -> None:
    """Each secret appears in stdout only in its ::add-mask:: line, and nowhere else at all."""
    lines = run.stdout.splitlines()
    for name, secret in secrets.items():
        assert secret, name
        holding = [index for index, line in enumerate(lines) if secret in line]
        assert holding, f"{name} was never masked"
        assert all(lines[index] == f"::add-mask::{secret}" for index in holding), f"{name} printed unmasked"
        for where, text in (("stderr", run.stderr), ("outputs", run.output_text), ("summary", run.summary)):
            assert secret not in text, f"{name} appears in {where}"


def test_oidc_deploy_end_to_end(
    runner: Runner, infra: Infrastructure, aws: MotoServer, oidc: FakeOidcServer, sts: FakeSts
) -> None:
    service = runner.workspace / "service"
    write_project(service)
    infra.function("fn")
    run = runner.run(
        {
            "working-directory": "service",
            "install-path": "install",
            "role-to-assume": ROLE,
            "role-session-name": "deploy-main",
            "role-duration-seconds": "1800",
        },
        **oidc_environment(oidc, sts, aws),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stderr == ""

    # the OIDC request: right audience (added to the URL's own query), bearer request token
    assert len(oidc.requests) == 1
    assert oidc.requests[0].query == {"api-version": ["2.0"], "audience": ["sts.amazonaws.com"]}
    assert oidc.requests[0].authorization == f"bearer {oidc.request_token}"
    # STS got that token, the role, the session name and duration
    (sts_request,) = sts.requests
    assert sts_request["WebIdentityToken"] == [oidc.tokens[0]]
    assert sts_request["RoleArn"] == [ROLE]
    assert (sts_request["RoleSessionName"], sts_request["DurationSeconds"]) == (["deploy-main"], ["1800"])

    # no secret anywhere, each masked before any other line could carry it
    (issued,) = sts.issued
    secrets = {
        "OIDC token": oidc.tokens[0],
        "request token": oidc.request_token,
        "access key id": issued.access_key_id,
        "secret key": issued.secret_access_key,
        "session token": issued.session_token,
    }
    assert_masked_before_use(run, secrets)
    lines = run.stdout.splitlines()
    assert lines.index(f"::add-mask::{oidc.tokens[0]}") < next(
        index for index, line in enumerate(lines) if line.startswith("Got an OIDC token")
    )
    assert lines.index(f"::add-mask::{issued.session_token}") < next(
        index for index, line in enumerate(lines) if line.startswith("Assumed ")
    )

    # every output, result-json parses and agrees with the live function
    outputs = run.outputs
    assert set(outputs) == set(github.OUTPUT_NAMES)
    result = json.loads(outputs["result-json"])
    live = infra.configuration("fn")
    assert outputs["function-arn"] == live["FunctionArn"] == result["function_arn"]
    assert outputs["code-sha256"] == live["CodeSha256"] == result["code_sha256"]
    assert [layer["Arn"] for layer in live["Layers"]] == [outputs["requirements-layer-arn"]]
    assert outputs["requirements-layer-arn"].startswith("arn:aws:lambda:us-east-1:123456789012:layer:fn-requirements:")
    assert (outputs["function-updated"], outputs["requirements-updated"], outputs["configuration-updated"]) == (
        "true",
        "true",
        "true",
    )
    assert outputs["version"] == ""
    assert outputs["function-digest"] == result["function_digest"] == infra.tags("fn")["drover:function-digest"]
    assert result["function_file_count"] == 3  # app/__init__.py, app/main.py, config/settings.json (working dir)

    # phases in groups, then the summary
    for title in ("AWS credentials: GitHub OIDC token → STS", "Read the live function", "Deploy"):
        assert f"::group::{title}" in lines
    assert run.stdout.count("::group::") == run.stdout.count("::endgroup::")
    assert run.summary.startswith("### drover deployed fn (staging)")
    assert f"| Function ARN | {live['FunctionArn']} |" in run.summary
    assert "| update-code | fn |" in run.summary
    assert not list(runner.runner_temp.iterdir())  # install-path was given: no fresh directory


def test_missing_id_token_permission_is_a_clear_error_before_any_aws_call(runner: Runner) -> None:
    with counting_server() as aws_endpoint:
        run = runner.run({"install-path": "install", "role-to-assume": ROLE}, AWS_ENDPOINT_URL=aws_endpoint.endpoint)
        assert aws_endpoint.requests == []
    assert run.returncode == 2
    error = run.only_error
    assert error.startswith("::error::role-to-assume is set, but the job cannot request an OIDC token")
    assert error.endswith("add `permissions: id-token: write` to the job")
    assert run.output_text == "" and run.summary == ""
    assert "Traceback" not in run.stderr + run.stdout


@pytest.mark.parametrize("failure", ["down", "slow", "erroring"])
def test_oidc_endpoint_trouble_is_retried_then_a_clear_error(runner: Runner, failure: str) -> None:
    extra = {**FAST_RETRIES, "DROVER_OIDC_ATTEMPTS": "3", "DROVER_OIDC_TIMEOUT_SECONDS": "0.3"}
    options = {"down": {}, "slow": {"slow_first": 99, "delay": 1.0}, "erroring": {"fail_first": 99}}[failure]
    with oidc_server(**options) as server, counting_server() as aws_endpoint:
        url = refused_url() if failure == "down" else server.url
        run = runner.run(
            {"install-path": "install", "role-to-assume": ROLE},
            ACTIONS_ID_TOKEN_REQUEST_URL=url,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN=server.request_token,
            AWS_ENDPOINT_URL=aws_endpoint.endpoint,
            **extra,
        )
        assert aws_endpoint.requests == []
        assert len(server.requests) == (0 if failure == "down" else 3)
    assert run.returncode == 1
    error = run.only_error
    assert error.startswith("::error::could not get an OIDC token from GitHub after 3 attempts")
    if failure == "erroring":
        assert error.endswith("attempts: HTTP 500 Internal Server Error")
    else:
        assert "(timeout 0.3 s each)" in error
    assert run.stdout.count("OIDC token request failed") == 2  # two retries were logged
    assert server.request_token not in run.stdout.replace(f"::add-mask::{server.request_token}", "")


def test_sts_access_denied_is_not_retried_and_shows_the_token_claims(
    runner: Runner, aws: MotoServer, oidc: FakeOidcServer
) -> None:
    with fake_sts(aws.endpoint, [ACCESS_DENIED, ACCESS_DENIED]) as sts:
        run = runner.run(
            {"install-path": "install", "role-to-assume": ROLE, "audience": "my-audience"},
            **oidc_environment(oidc, sts, aws),
        )
        assert len(sts.requests) == 1
    assert run.returncode == 1
    error = run.only_error
    assert f"STS refused to let this workflow assume {ROLE} (AccessDenied: Not authorized" in error
    for claim in (
        "sub=repo:octo-org/octo-app:environment:staging",
        "aud=my-audience",
        "repository=octo-org/octo-app",
        "ref=refs/heads/main",
        "environment=staging",
    ):
        assert claim in error
    assert oidc.requests[0].query["audience"] == ["my-audience"]
    assert_masked_before_use(run, {"OIDC token": oidc.tokens[0]})
    assert run.output_text == ""


def test_sts_throttling_is_retried_then_the_deploy_goes_on(
    runner: Runner, infra: Infrastructure, aws: MotoServer, oidc: FakeOidcServer
) -> None:
    infra.function("fn")
    with fake_sts(aws.endpoint, [THROTTLED, THROTTLED]) as sts:
        run = runner.run({"install-path": "install", "role-to-assume": ROLE}, **oidc_environment(oidc, sts, aws))
        assert len(sts.requests) == 3
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.stdout.count("AssumeRoleWithWebIdentity failed (Throttling: Rate exceeded)") == 2
    assert run.outputs["function-updated"] == "true"


@pytest.mark.parametrize(("working_directory", "file"), [(".", "drover.yml"), ("service", "service/drover.yml")])
def test_settings_error_is_an_annotation_with_file_line_and_column(
    runner: Runner, working_directory: str, file: str
) -> None:
    write_project(runner.workspace / working_directory, SETTINGS.replace("    region_name:", "    region:"))
    with counting_server() as aws_endpoint:
        run = runner.run(
            {"working-directory": working_directory, "install-path": "install"}, AWS_ENDPOINT_URL=aws_endpoint.endpoint
        )
        assert aws_endpoint.requests == []
    assert run.returncode == 2
    error = run.only_error
    assert error.startswith(f"::error file={file},line=3,col=5::")
    assert "stage 'staging': key 'region'" in error and "did you mean 'region_name'?" in error


def test_unknown_stage_names_the_known_ones(runner: Runner) -> None:
    run = runner.run({"stage": "prod", "install-path": "install"})
    assert run.returncode == 2
    assert run.only_error == "::error file=drover.yml::drover.yml: unknown stage 'prod' — stages defined: staging"


def test_a_traceback_only_with_runner_debug(runner: Runner) -> None:
    quiet = runner.run({"stage": "prod", "install-path": "install"})
    debug = runner.run({"stage": "prod", "install-path": "install"}, RUNNER_DEBUG="1")
    assert "Traceback" not in quiet.stdout + quiet.stderr
    assert "Traceback (most recent call last)" in debug.stderr and "SettingsError" in debug.stderr
    assert debug.returncode == quiet.returncode == 2


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"role-duration-seconds": "60"}, "::error::input 'role-duration-seconds' is '60'"),
        ({"role-session-name": "a b"}, "::error::input 'role-session-name' is 'a b'"),
        ({"stage": ""}, "::error::input 'stage' is required"),
    ],
)
def test_invalid_inputs_exit_2_before_any_call(
    runner: Runner, oidc: FakeOidcServer, inputs: dict[str, str], message: str
) -> None:
    with counting_server() as aws_endpoint:
        run = runner.run(
            {"install-path": "install", "role-to-assume": ROLE, **inputs},
            ACTIONS_ID_TOKEN_REQUEST_URL=oidc.url,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN=oidc.request_token,
            AWS_ENDPOINT_URL=aws_endpoint.endpoint,
        )
        assert aws_endpoint.requests == []
    assert run.returncode == 2
    assert oidc.requests == []
    assert run.only_error.startswith(message)


def test_dry_run_reports_and_writes_nothing(
    runner: Runner, infra: Infrastructure, aws: MotoServer, oidc: FakeOidcServer, sts: FakeSts
) -> None:
    infra.function("fn")
    before = infra.configuration("fn")
    run = runner.run(
        {"install-path": "install", "role-to-assume": ROLE, "dry-run": "true"}, **oidc_environment(oidc, sts, aws)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    after = infra.configuration("fn")
    assert (after["CodeSha256"], after.get("Layers", [])) == (before["CodeSha256"], before.get("Layers", []))
    assert infra.layer_versions("fn-requirements") == []
    assert "drover:function-digest" not in infra.tags("fn")
    outputs = run.outputs
    assert (outputs["function-updated"], outputs["requirements-updated"], outputs["configuration-updated"]) == (
        "false",
        "false",
        "false",
    )
    assert outputs["code-sha256"] == before["CodeSha256"]
    result = json.loads(outputs["result-json"])
    assert result["mode"] == "dry-run"
    assert {action["action"] for action in result["actions"]} >= {"publish-layer", "update-code", "update-layers"}
    assert not any(action["done"] for action in result["actions"])
    assert "nothing was changed" in run.summary and "| would do |" in run.summary


def test_without_github_outputs_go_to_stdout(runner: Runner, infra: Infrastructure, aws: MotoServer) -> None:
    """The `docker run -e INPUT_STAGE=staging -e AWS_...` recipe: no GITHUB_* files, static keys."""
    infra.function("fn")
    run = runner.run(
        {"install-path": "install"},
        github_files=False,
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    assert run.returncode == 0, run.stdout + run.stderr
    tail = run.stdout[run.stdout.index("function-arn=") :]
    outputs = parse_github_output(tail)
    assert set(outputs) == set(github.OUTPUT_NAMES)
    assert outputs["function-updated"] == "true"
    assert json.loads(outputs["result-json"])["function_arn"] == infra.configuration("fn")["FunctionArn"]
    assert run.output_text == "" and run.summary == ""


def write_wheel(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel (py3-none-any) with a correct RECORD."""
    info = f"{name}-{version}.dist-info"
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def test_requirements_install_into_a_fresh_directory_under_runner_temp(
    runner: Runner, infra: Infrastructure, aws: MotoServer, tmp_path: Path
) -> None:
    """No install-path: drover installs `requirements` (relative to working-directory) under $RUNNER_TEMP."""
    wheelhouse = tmp_path / "wheelhouse"
    wheelhouse.mkdir()
    write_wheel(wheelhouse, "tinydep", "1.0", {"tinydep/__init__.py": "VALUE = 42\n"})
    service = runner.workspace / "service"
    write_project(service)
    (service / "config" / "handler.py").write_text("def handler(event, context):\n    return 42\n")  # the code
    (service / "requirements.txt").write_text("tinydep==1.0\n", encoding="utf-8")
    (tmp_path / "uv.toml").write_text(f'no-index = true\nfind-links = ["{wheelhouse}"]\n', encoding="utf-8")
    infra.function("fn")
    run = runner.run(
        {"working-directory": "service", "requirements": "requirements.txt"},
        AWS_ENDPOINT_URL=aws.endpoint,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        UV_CONFIG_FILE=str(tmp_path / "uv.toml"),
        UV_CACHE_DIR=str(tmp_path / "uv-cache"),
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_INDEX="1",
        PIP_FIND_LINKS=str(wheelhouse),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "::group::Install" in run.stdout.splitlines()
    (install_path,) = runner.runner_temp.iterdir()
    assert install_path.name.startswith("drover-install-")
    assert (install_path / "tinydep" / "__init__.py").read_text() == "VALUE = 42\n"
    result = json.loads(run.outputs["result-json"])
    assert result["requirements_file_count"] >= 1 and result["function_file_count"] == 2  # config/: handler, settings
    assert "install" in result["timings"]
    assert run.outputs["requirements-updated"] == "true"


def test_sigterm_mid_deploy_reports_what_was_written_and_exits_143(
    runner: Runner, infra: Infrastructure, aws: MotoServer
) -> None:
    """What the runner's cancel and `docker stop` send: handled like Ctrl-C, not ignored."""
    infra.function("fn")
    scratch = runner.root / "scratch"
    scratch.mkdir()
    with holding_server(aws.endpoint, hold=UPDATE_CODE) as endpoint:
        process = subprocess.Popen(
            [sys.executable, str(ENTRYPOINT)],
            cwd=runner.workspace,
            env=runner.environment(
                {"stage": "staging", "install-path": "install"},
                {
                    "AWS_ENDPOINT_URL": endpoint.endpoint,
                    "AWS_ACCESS_KEY_ID": "testing",
                    "AWS_SECRET_ACCESS_KEY": "t",
                    "TMPDIR": str(scratch),
                },
            ),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert endpoint.arrived.wait(120), "the deploy never reached UpdateFunctionCode"
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=120)
    run = ActionRun(process.returncode, stdout, stderr, runner.output_file.read_text(), runner.summary_file.read_text())
    assert_stopped_mid_deploy(run, infra)
    assert not list(scratch.iterdir())  # the archives' scratch directory was removed


def assert_stopped_mid_deploy(run: ActionRun, infra: Infrastructure) -> None:
    assert run.returncode == 143, run.stdout + run.stderr
    error = run.only_error
    layer_arn = infra.layer_versions("fn-requirements")[0]["LayerVersionArn"]
    assert error.startswith("::error::drover: stopped by SIGTERM during the deploy of fn; ")
    assert f"written to AWS: publish-layer {layer_arn}; not written: the remaining steps" in error
    assert "scratch files were removed" in error
    assert run.output_text == "" and run.summary == ""
    assert "drover:function-digest" not in infra.tags("fn")  # the tag comes last: a rerun redoes the rest


# -- the real image, run as the GitHub runner runs it (podman) ------------------------------------


UPDATE_CODE = "PUT /2015-03-31/functions/fn/code"
TINYDEP_REQUIREMENTS = "tinydep==1.0\n"


@pytest.fixture(scope="session")
def action_image() -> str:
    """The Action image built from the Dockerfile (base built locally when no registry is reachable)."""
    try:
        return images.action_image()
    except images.ContainerUnavailable as error:
        if os.environ.get("DROVER_REQUIRE_CONTAINER") == "1":
            pytest.fail(f"DROVER_REQUIRE_CONTAINER=1 but {error}")
        pytest.skip(str(error))


@pytest.fixture
def container(action_image: str, tmp_path: Path) -> ContainerRunner:
    """A hosted runner's directories (owned by uid 1001) holding the project, and the image to run on them."""
    runner = ContainerRunner(action_image, tmp_path / "runner")
    write_project(runner.workspace)
    (runner.workspace / "requirements.txt").write_text(TINYDEP_REQUIREMENTS, encoding="utf-8")
    wheelhouse = runner.workspace / "wheelhouse"
    wheelhouse.mkdir()
    write_wheel(wheelhouse, "tinydep", "1.0", {"tinydep/__init__.py": "VALUE = 42\n"})
    # the index is this directory: installers in the container reach no package registry
    (runner.workspace / "uv.toml").write_text('no-index = true\nfind-links = ["/github/workspace/wheelhouse"]\n')
    runner.give_to_owner()
    return runner


OFFLINE_INSTALL = {
    "UV_CONFIG_FILE": "/github/workspace/uv.toml",
    "PIP_NO_INDEX": "1",
    "PIP_FIND_LINKS": "/github/workspace/wheelhouse",
}
STATIC_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.mark.container
def test_container_deploys_with_oidc_then_a_second_run_changes_nothing(
    container: ContainerRunner, infra: Infrastructure, aws: MotoServer, oidc: FakeOidcServer
) -> None:
    infra.function("fn")
    with_handler_beside_the_config(container)  # the install path holds only the dependency
    inputs = {"stage": "staging", "install-path": "build", "requirements": "requirements.txt", "role-to-assume": ROLE}
    with fake_sts(aws.endpoint) as sts, counting_server(aws.endpoint) as counted:
        environment = {
            **oidc_environment(oidc, sts, aws),
            "AWS_ENDPOINT_URL": counted.endpoint,
            **OFFLINE_INSTALL,
        }
        first = container.run(inputs, environment)
        assert first.returncode == 0, first.stdout + first.stderr
        first_writes = list(counted.writes)
        counted.requests.clear()
        second = container.run(inputs, environment)
        assert second.returncode == 0, second.stdout + second.stderr
        assert counted.writes == []  # the second run only read
    assert first.stderr == "" and second.stderr == ""
    assert len(first_writes) >= 3  # layer, code, configuration, tags

    # the installer ran in the container, into the install path inside the workspace
    assert (container.workspace / "build" / "tinydep" / "__init__.py").read_text() == "VALUE = 42\n"
    assert "::group::Install" in first.stdout.splitlines()

    # every output, in agreement with the live function
    outputs = first.outputs
    assert set(outputs) == set(github.OUTPUT_NAMES)
    live = infra.configuration("fn")
    result = json.loads(outputs["result-json"])
    assert outputs["function-arn"] == live["FunctionArn"] == result["function_arn"]
    assert outputs["code-sha256"] == live["CodeSha256"]
    assert [layer["Arn"] for layer in live["Layers"]] == [outputs["requirements-layer-arn"]]
    assert outputs["function-digest"] == infra.tags("fn")["drover:function-digest"]
    assert outputs["requirements-digest"] == result["requirements_digest"] != ""
    assert (outputs["function-updated"], outputs["requirements-updated"], outputs["configuration-updated"]) == (
        "true",
        "true",
        "true",
    )
    assert outputs["version"] == ""
    again = second.outputs
    assert (again["function-updated"], again["requirements-updated"], again["configuration-updated"]) == (
        "false",
        "false",
        "false",
    )
    assert again["code-sha256"] == outputs["code-sha256"]
    assert again["requirements-layer-arn"] == outputs["requirements-layer-arn"]

    # the step summary
    assert first.summary.startswith("### drover deployed fn (staging)")
    assert f"| Function ARN | {live['FunctionArn']} |" in first.summary
    assert "| update-code | fn |" in first.summary
    assert second.summary.startswith("### drover") and "update-code" not in second.summary

    # masks: each secret only ever in its ::add-mask:: line
    for run, token_index in ((first, 0), (second, 1)):
        issued = sts.issued[token_index]
        assert_masked_before_use(
            run,
            {
                "OIDC token": oidc.tokens[token_index],
                "request token": oidc.request_token,
                "access key id": issued.access_key_id,
                "secret key": issued.secret_access_key,
                "session token": issued.session_token,
            },
        )

    # nothing root-owned in the runner's directories
    assert container.not_owned_by_runner() == []


@pytest.mark.container
@pytest.mark.parametrize(
    ("case", "code", "error"),
    [
        ("unknown stage", 2, "::error file=drover.yml::drover.yml: unknown stage 'prod' — stages defined: staging"),
        ("no such function", 1, "::error::function fn not found in region us-east-1 (function_name at drover.yml:"),
    ],
)
def test_container_failure_is_one_error_line_and_the_exit_code(
    container: ContainerRunner, aws: MotoServer, case: str, code: int, error: str
) -> None:
    stage = "prod" if case == "unknown stage" else "staging"
    run = container.run({"stage": stage, "install-path": "install"}, {"AWS_ENDPOINT_URL": aws.endpoint, **STATIC_KEYS})
    assert run.returncode == code, run.stdout + run.stderr
    assert run.only_error.startswith(error)
    assert run.output_text == "" and run.summary == ""
    assert container.not_owned_by_runner() == []


@pytest.mark.container
def test_container_stopped_mid_deploy_exits_143_and_says_what_was_written(
    container: ContainerRunner, infra: Infrastructure, aws: MotoServer
) -> None:
    """`podman kill --signal TERM` is what `docker stop` and a cancelled job send to the Action (PID 1)."""
    infra.function("fn")
    with holding_server(aws.endpoint, hold=UPDATE_CODE) as endpoint:
        pending = container.start(
            {"stage": "staging", "install-path": "install"}, {"AWS_ENDPOINT_URL": endpoint.endpoint, **STATIC_KEYS}
        )
        try:
            assert endpoint.arrived.wait(120), "the deploy never reached UpdateFunctionCode"
            pending.signal("TERM")
            run = pending.wait(timeout=120)
        finally:
            if pending.process.poll() is None:
                pending.process.kill()
    assert_stopped_mid_deploy(run, infra)
    assert container.not_owned_by_runner() == []


@pytest.mark.container
def test_container_the_docs_docker_run_recipe(
    action_image: str, container: ContainerRunner, infra: Infrastructure, aws: MotoServer
) -> None:
    """docs/action.md's `docker run` outside GitHub: no GITHUB_* files (outputs on stdout), HOME=/root."""
    infra.function("fn")
    with_handler_beside_the_config(container)
    environment = {"INPUT_STAGE": "staging", "INPUT_INSTALL-PATH": "build", "INPUT_REQUIREMENTS": "requirements.txt"}
    environment |= {"AWS_ENDPOINT_URL": aws.endpoint, **STATIC_KEYS, **OFFLINE_INSTALL}
    ran = images.podman(
        "run",
        "--rm",
        "-v",
        f"{container.workspace}:/github/workspace",
        "-w",
        "/github/workspace",
        *[item for name, value in environment.items() for item in ("-e", f"{name}={value}")],
        "--network",
        "host",
        *images.platform_arguments(),
        action_image,
        check=False,
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    outputs = parse_github_output(ran.stdout[ran.stdout.index("function-arn=") :])
    assert set(outputs) == set(github.OUTPUT_NAMES)
    assert outputs["code-sha256"] == infra.configuration("fn")["CodeSha256"]
    assert (container.workspace / "build" / "tinydep" / "__init__.py").is_file()
    assert container.not_owned_by_runner() == []


@pytest.mark.container
def test_image_holds_only_what_the_code_uses(action_image: str) -> None:
    """botocore keeps the models of the services drover calls; every package over 1 MB is imported."""
    script = """
import json, pathlib, sys, importlib.util
import re, drover.cli, drover.github, drover.deploy, drover.install, drover.workflow, pip._internal.cli.main
import drover.packaging
drover.packaging.user_match(re.compile('(a|aa)+$'), 'aaa')  # a pattern that could backtrack: the bounded engine
import botocore
site = pathlib.Path(botocore.__file__).parents[1]
sizes = {p.name: sum(f.stat().st_size for f in p.rglob('*') if f.is_file()) for p in site.iterdir() if p.is_dir()}
big = sorted(name for name, size in sizes.items() if size > 1_000_000 and not name.endswith('-info'))
services = sorted(p.name for p in (site / 'botocore' / 'data').iterdir() if p.is_dir())
print(json.dumps({'big': big, 'imported': sorted(set(big) & set(sys.modules)), 'services': services}))
"""
    completed = images.podman(
        "run", "--rm", *images.platform_arguments(), "--entrypoint", "/opt/venv/bin/python", action_image, "-c", script
    )
    found = json.loads(completed.stdout)
    assert found["big"] == found["imported"], "packages over 1 MB that no drover code path imports"
    called = set(re.findall(r'(?:client|call)\("([a-z0-9-]+)"', "".join(p.read_text() for p in DROVER.rglob("*.py"))))
    assert "lambda" in called, called  # the pattern still finds the calls
    assert called <= set(found["services"]), "the image lacks the botocore model of a service drover calls"


@pytest.mark.container
def test_image_trusts_the_extra_ca_certificates_it_was_built_with(action_image: str) -> None:
    """EXTRA_CA_CERTS (here: the host's TLS-intercepting proxy CA) is in the bundle every installer reads."""
    extra = "" if os.environ.get("DROVER_TEST_IMAGE") else images.host_ca_bundle()  # what the build was given
    shown = images.podman(
        "run", "--rm", *images.platform_arguments(), "--entrypoint", "sh", action_image, "-c", 'cat "$SSL_CERT_FILE"'
    ).stdout
    assert shown.count("-----BEGIN CERTIFICATE-----") > 100  # the system's roots, SSL_CERT_FILE is that bundle
    bodies = re.findall(r"-----BEGIN CERTIFICATE-----\n(.+?)-----END CERTIFICATE-----", extra, re.DOTALL)
    assert len(bodies) == extra.count("-----BEGIN CERTIFICATE-----")
    assert all(body in shown for body in bodies)


def test_branches_build_the_dockerfile_and_release_pins_that_line_to_the_image_digest() -> None:
    """action.yml on a branch builds the Dockerfile; release.yml rewrites exactly that line to the pushed digest."""
    action = (ROOT / "action.yml").read_text(encoding="utf-8")
    release = (ROOT / ".github" / "workflows" / "release.yml").read_text(encoding="utf-8")
    assert action.splitlines().count("  image: Dockerfile") == 1
    assert 'sed -i "s|^  image: Dockerfile\\$|  image: $reference|" action.yml' in release
    assert 'reference="docker://$IMAGE@$DIGEST"' in release
    assert "platforms: linux/amd64,linux/arm64" in release
    # the image is tested before it is pushed, on both architectures
    steps = (
        release.index("Container tests on the linux/amd64 image"),
        release.index("Container tests on the linux/arm64"),
    )
    assert max(steps) < release.index("Push both architectures")
