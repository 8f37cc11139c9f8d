"""SIGTERM (docker stop, a cancelled CI job, kill) is handled like Ctrl-C: cleanup, one line, exit 143.

The CLI in a child process against moto, with the AWS endpoint holding one request open until the
test has sent the signal: stopped before any write, and stopped half-way through a deploy. The Action
(entrypoint.py, also in the real container) is tested in tests/test_action_container.py.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.aws import Infrastructure, MotoServer
from tests.container.holding import holding_server

SETTINGS = """\
stages:
  staging:
    region_name: us-east-1
    function_name: fn
    compatible_runtime: python3.12
    function_file_patterns: ['^app/']
"""
STATIC_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
PROJECT = {
    "drover.yml": SETTINGS,
    "install/app/__init__.py": "",
    "install/app/main.py": "def handler(event, context):\n    return 'ok'\n",
    "install/dependency/__init__.py": "VERSION = '1.0'\n",
}


def write_project(directory: Path) -> None:
    for name, text in PROJECT.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


@pytest.mark.parametrize(
    ("hold", "expected"),
    [
        ("GET /2015-03-31/functions/fn", "drover: stopped by SIGTERM before any AWS write: nothing was changed"),
        ("PUT /2015-03-31/functions/fn/code", "drover: stopped by SIGTERM during the deploy of fn; written to AWS: "),
    ],
    ids=["before-any-write", "mid-deploy"],
)
def test_cli_sigterm_cleans_up_says_what_was_written_and_exits_143(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer, hold: str, expected: str
) -> None:
    write_project(tmp_path / "project")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    infra.function("fn")
    with holding_server(aws.endpoint, hold=hold) as endpoint:
        process = subprocess.Popen(
            [sys.executable, "-m", "drover", "--install-path", "install", "staging"],
            cwd=tmp_path / "project",
            env={
                "PATH": "/usr/bin:/bin",
                "TMPDIR": str(scratch),
                "AWS_ENDPOINT_URL": endpoint.endpoint,
                **STATIC_KEYS,
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert endpoint.arrived.wait(120), f"the run never reached {hold}"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    (line,) = stderr.splitlines()
    assert line.startswith(expected)
    if hold.startswith("PUT"):  # the layer was published before the held code update
        layer_arn = infra.layer_versions("fn-requirements")[0]["LayerVersionArn"]
        assert f"written to AWS: publish-layer {layer_arn}; not written: the remaining steps" in line
    assert "scratch files were removed" in line
    assert not list(scratch.iterdir())
    assert "drover:function-digest" not in infra.tags("fn")


def test_sigint_is_still_130_and_says_interrupted(tmp_path: Path, infra: Infrastructure, aws: MotoServer) -> None:
    write_project(tmp_path / "project")
    infra.function("fn")
    with holding_server(aws.endpoint, hold="GET /2015-03-31/functions/fn") as endpoint:
        process = subprocess.Popen(
            [sys.executable, "-m", "drover", "--install-path", "install", "staging"],
            cwd=tmp_path / "project",
            env={"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": endpoint.endpoint, **STATIC_KEYS},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert endpoint.arrived.wait(120)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert stderr.splitlines() == [
        "drover: interrupted before any AWS write: nothing was changed; scratch files were removed"
    ]


TWO_STAGES = """\
stages:
  api:
    region_name: us-east-1
    function_name: fn
    compatible_runtime: python3.12
    function_file_patterns: ['^app/']
  worker:
    region_name: us-east-1
    function_name: fn2
    compatible_runtime: python3.12
    function_file_patterns: ['^app/']
"""


def test_cli_sigterm_in_a_multi_stage_run_names_what_the_stages_wrote(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    write_project(tmp_path / "project")
    (tmp_path / "project" / "drover.yml").write_text(TWO_STAGES, encoding="utf-8")
    infra.function("fn")
    infra.function("fn2")
    with holding_server(aws.endpoint, hold="PUT /2015-03-31/functions/fn2/code") as endpoint:
        process = subprocess.Popen(
            [sys.executable, "-m", "drover", "--install-path", "install", "api", "worker"],
            cwd=tmp_path / "project",
            env={"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": endpoint.endpoint, **STATIC_KEYS},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert endpoint.arrived.wait(120), "the run never reached fn2's code update"
        process.send_signal(signal.SIGTERM)
        endpoint.release.set()  # the stage in flight finishes its request (it fails), then the run stops
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    line = stderr.splitlines()[-1]
    layer_arn = infra.layer_versions("fn2-requirements")[0]["LayerVersionArn"]
    assert "nothing was changed" not in line
    assert line.startswith("drover: stopped by SIGTERM during the deploy of "), line
    assert f"publish-layer {layer_arn}" in line


def test_cli_sigterm_during_a_promotion_names_what_was_written(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    write_project(tmp_path / "project")
    shared_layer = TWO_STAGES.replace(
        "    function_file_patterns", "    requirements_layer_name: deps\n    function_file_patterns"
    )
    shared_layer = shared_layer.replace(
        "function_name: fn\n",
        "function_name: fn\n    upload_bucket: {region_name: us-east-1, bucket_name: artifacts}\n",
    )
    (tmp_path / "project" / "drover.yml").write_text(shared_layer, encoding="utf-8")
    infra.bucket("artifacts")
    infra.function("fn")
    infra.function("fn2")
    environment = {"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": aws.endpoint, **STATIC_KEYS}
    command = [sys.executable, "-m", "drover", "--install-path", "install", "api"]
    deployed = subprocess.run(command, cwd=tmp_path / "project", env=environment, capture_output=True, text=True)
    assert deployed.returncode == 0, deployed.stderr
    with holding_server(aws.endpoint, hold="PUT /2015-03-31/functions/fn2/configuration") as endpoint:
        process = subprocess.Popen(
            [sys.executable, "-m", "drover", "--promote-from", "api", "worker"],
            cwd=tmp_path / "project",
            env={**environment, "AWS_ENDPOINT_URL": endpoint.endpoint},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if not endpoint.arrived.wait(30):
            process.kill()
            pytest.fail(f"the promotion never reached fn2's layers update: {process.communicate()}")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr
    line = stderr.splitlines()[-1]
    assert line.startswith("drover: stopped by SIGTERM during the deploy of fn2; written to AWS: update-code fn2"), line


def test_cli_failure_after_writes_names_what_was_written(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    """A deploy that fails half-way (the tag step, after the layer and the code): the error line must not leave
    the user believing nothing changed."""
    write_project(tmp_path / "project")
    infra.function("fn")
    with holding_server(aws.endpoint, hold="POST /2017-03-31/tags") as endpoint:
        endpoint.release.set()  # no holding: the tag request fails (503) at once, every retry
        process = subprocess.run(
            [sys.executable, "-m", "drover", "--install-path", "install", "staging"],
            cwd=tmp_path / "project",
            env={"PATH": "/usr/bin:/bin", "AWS_ENDPOINT_URL": endpoint.endpoint, **STATIC_KEYS},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert process.returncode == 1, process.stderr
    line = process.stderr.splitlines()[-1]
    layer_arn = infra.layer_versions("fn-requirements")[0]["LayerVersionArn"]
    assert line.startswith("drover: error: "), line
    assert f"written to AWS before the failure: publish-layer {layer_arn}, update-code fn, update-layers fn" in line
