"""The container's privilege drop (issue 24, item 9). entrypoint.py opens $GITHUB_OUTPUT and
$GITHUB_STEP_SUMMARY before it switches to the workspace's owner: on a self-hosted runner they may be root's
while the workspace is not. The drop itself needs the image (tests/test_action_container.py); here the files
are made unreachable by their paths once opened (the directory moved away), which is what the dropped user
meets, and the Action must still write through what the entrypoint opened. Nothing it creates stays root's.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType

import pytest

from drover import github
from tests.aws import Infrastructure, MotoServer
from tests.bad_inputs.inprocess import run_in_process
from tests.github_fakes import parse_github_output
from tests.test_action_container import ENTRYPOINT, Runner, write_project

OWNER = 65534


def load_entrypoint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("drover_entrypoint", ENTRYPOINT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_action_writes_through_the_files_opened_before_the_drop(
    tmp_path: Path, aws: MotoServer, infra: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    infra.function("fn")
    runner = Runner(tmp_path)
    write_project(runner.workspace)
    environment = runner.environment(
        {"stage": "staging", "install-path": "install", "dry-run": "true"},
        {"AWS_ENDPOINT_URL": aws.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"},
    )
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv(github.FILE_COMMAND_FDS, raising=False)
    load_entrypoint().open_file_commands()  # as root, before the drop
    moved = tmp_path / "out-of-reach"
    runner.file_commands.rename(moved)  # the paths no longer open, as for a user without access to them

    outcome = run_in_process(github.main, cwd=runner.workspace, env=dict(os.environ))

    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
    outputs = parse_github_output((moved / runner.output_file.name).read_text())
    assert outputs["function-arn"].endswith(":function:fn")
    assert (moved / runner.summary_file.name).read_text()


def test_a_missing_file_command_file_is_not_created_by_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_OUTPUT", str(tmp_path / "missing"))
    monkeypatch.delenv("GITHUB_STEP_SUMMARY", raising=False)
    monkeypatch.delenv(github.FILE_COMMAND_FDS, raising=False)

    load_entrypoint().open_file_commands()

    assert not (tmp_path / "missing").exists()
    assert github.FILE_COMMAND_FDS not in os.environ


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_runner_temp_and_its_new_parents_belong_to_the_workspace_owner(tmp_path: Path) -> None:
    temp = tmp_path / "work" / "_temp" / "drover"

    load_entrypoint().make_owned_directory(temp, OWNER, OWNER)

    assert [path.stat().st_uid for path in (temp, temp.parent, temp.parent.parent)] == [OWNER] * 3
    assert tmp_path.stat().st_uid == 0  # an existing parent is left as it was
