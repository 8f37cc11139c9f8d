"""Bad input, round three (issue 24): each case is an instance of a general rule.

Same promises as tests/bad_inputs/test_rules.py: exit 2, exactly one error line naming the value and the fix,
no traceback, no AWS write (CLI cases deploy against moto through the counting proxy), --archive-dir left as
it was. docs/bad-inputs.md lists every case ("Rules (round three, issue 24)").

The rules:
3. given but empty is not "not given": an explicit empty value of any CLI option or STAGE is an error;
5. a permission failure on a path the run must replace is an input problem naming the path and the fix;
6. in the Action every input check that needs no network runs before the OIDC token and STS requests;
7. --archive-dir below a regular file is refused before any work.
8. the project copy never follows a link out of the project.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover import cli, github
from tests.bad_inputs.inprocess import Completed, run_in_process
from tests.bad_inputs.test_bad_inputs import BASE_STAGE, Project, assert_table_lists, row_endings
from tests.github_fakes import CountingServer, counting_server, oidc_server
from tests.test_action_container import Runner, write_project

MAX_LINE = 1000
Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    expect: tuple[str, ...]
    setup: Setup | None = None
    unprivileged: bool = False  # a child process without root's DAC override (permissions apply)
    stages: tuple[str, ...] = ("staging",)


def case(case_id: str, args: tuple[str, ...], *expect: str, **options: Any) -> Any:
    return pytest.param(Case(case_id, args, expect, **options), id=case_id)


def read_only_parent(project: Path) -> None:
    """build/ in a directory this run cannot write (as one a root-run step left behind)."""
    (project / "locked" / "build").mkdir(parents=True)
    (project / "locked" / "build" / "old.py").write_text("")
    (project / "empty.txt").write_text("")
    (project / "locked").chmod(0o555)


def read_only_install_path(project: Path) -> None:
    """The install path itself read-only: it can be neither renamed away nor emptied."""
    (project / "build").mkdir()
    (project / "build" / "old.py").write_text("")
    (project / "empty.txt").write_text("")
    (project / "build").chmod(0o555)


def project_linking_out(project: Path) -> None:
    """An --install-source project whose module is a link to a file beside the project (issue 24.2)."""
    (project / "src" / "svc").mkdir(parents=True)
    (project / "src" / "pyproject.toml").write_text('[project]\nname = "svc"\nversion = "1"\n')
    (project / "shared.py").write_text("SECRET = 1\n")
    (project / "src" / "svc" / "shared.py").symlink_to("../../shared.py")


EMPTY = "the value is empty ('')"
CLI_CASES = [
    # rule 3: given but empty is an error, for every option and STAGE
    case("empty-function-name", ("--function-name", ""), f"argument --function-name: {EMPTY}", "leave the option out"),
    case("empty-region", ("--region", ""), f"argument --region: {EMPTY}", "leave the option out"),
    case("empty-alias", ("--alias", ""), f"argument --alias: {EMPTY}", "leave the option out"),
    case("blank-alias", ("--alias", " "), "argument --alias: the value is empty (' ')", "leave the option out"),
    case("empty-promote-from", ("--promote-from", ""), f"argument --promote-from: {EMPTY}", "leave the option out"),
    case("empty-settings-file", ("--settings-file", ""), f"argument --settings-file: {EMPTY}", "give a path"),
    case("empty-install-path", ("--install-path", ""), f"argument --install-path: {EMPTY}", "give a path"),
    case("empty-install-source", ("--install-source", ""), f"argument --install-source: {EMPTY}", "give a path"),
    case("empty-requirements", ("--requirements", ""), f"argument --requirements: {EMPTY}", "give a path"),
    case("empty-archive-dir", ("--archive-dir", ""), f"argument --archive-dir: {EMPTY}", "give a path"),
    case("empty-stage", (), f"argument STAGE: {EMPTY}", "give a value", stages=("",)),
    # rule 7: the archive dir is made with its parents, which must be directories
    case(
        "archive-dir-below-a-file",
        ("--archive-dir", "drover.yml/dist"),
        "--archive-dir drover.yml/dist: drover.yml is not a directory",
        "pick an --archive-dir whose parents are directories",
    ),
    # rule 5: permission failures are input problems with the path and the fix
    case(
        "install-path-in-a-read-only-directory",
        ("--requirements", "empty.txt", "--install-path", "locked/build", "--package-only"),
        "locked/.drover-install-",
        "permission denied — the run cannot replace the install path locked/build",
        "make it and its directory writable by this user",
        setup=read_only_parent,
        unprivileged=True,
    ),
    case(
        "install-path-read-only",
        ("--requirements", "empty.txt", "--install-path", "build", "--package-only"),
        "build/old.py: permission denied — the run cannot replace the install path build",
        "or give another --install-path",
        setup=read_only_install_path,
        unprivileged=True,
    ),
    # issue 24.2: the project is built from a copy of its own files, never of a link's target outside it
    case(
        "install-source-links-out-of-the-project",
        ("--install-source", "src", "--package-only"),
        "src/svc/shared.py is a link to",
        "outside the project",
        "copy what it needs into the project, or name that directory as a requirement",
        setup=project_linking_out,
    ),
]


def write_settings(root: Path) -> None:
    (root / "drover.yml").write_text(yaml.safe_dump({"stages": {"staging": BASE_STAGE}}, sort_keys=False))


def run_cli(root: Path, proxy: CountingServer, args: list[str], *, unprivileged: bool) -> Completed:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("PIP_", "AWS_ENDPOINT"))}
    environment["AWS_ENDPOINT_URL"] = proxy.endpoint
    if not unprivileged:
        return run_in_process(lambda: cli.main(args), cwd=root, env=environment)
    command = [sys.executable, "-m", "drover", *args]
    if os.geteuid() == 0:  # root writes anywhere: drop that power for the child
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a directory read-only")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    result = subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, timeout=120)
    return Completed(result.returncode, result.stdout, result.stderr)


def archive_dir_state(root: Path) -> list[str]:
    out = root / "out"
    return sorted(path.name for path in out.iterdir()) if out.is_dir() else []


def error_lines(stderr: str) -> list[str]:
    """The error line: progress lines (an install announcing itself) may come before it."""
    return [line for line in stderr.splitlines() if line.startswith("drover: error: ")]


@pytest.mark.parametrize("case", CLI_CASES)
def test_round3_cli_refuses_bad_input_before_any_write(case: Case, project: Project, proxy: CountingServer) -> None:
    project.infra.function("fn")
    write_settings(project.root)
    if case.setup:
        case.setup(project.root)
    before, archives_before = project.live_state(), archive_dir_state(project.root)
    args = ["--non-interactive", "--install-path", "install", "--archive-dir", "out", *case.args, *case.stages]

    try:
        outcome = run_cli(project.root, proxy, args, unprivileged=case.unprivileged)
    finally:
        for path in project.root.rglob("*"):
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o755)  # so the tmp_path can be removed

    assert outcome.returncode == 2, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    (line,) = error_lines(outcome.stderr)
    assert len(line) < MAX_LINE, f"{len(line)} characters"
    for fragment in case.expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert proxy.requests == [], f"{case.id} must fail before any AWS call: {proxy.requests}"
    assert project.live_state() == before
    assert archive_dir_state(project.root) == archives_before


# -- the Action: every pure check before the OIDC token and STS --------------------------------------------

ROLE = "arn:aws:iam::123456789012:role/deploy"
ACTION_EMPTY = "is empty — give a value, or leave it out of the step's `with:`"


def action_case(case_id: str, inputs: Mapping[str, str], *expect: str, stage: Mapping[str, Any] | None = None) -> Any:
    return pytest.param(inputs, stage or {}, expect, id=case_id)


ACTION_CASES = [
    # rule 3: given but empty (an explicit '' or an expression that evaluates to '') is an error
    *(
        action_case(f"action-empty-{name}", {name: ""}, f"::error::input '{name}' {ACTION_EMPTY}")
        for name in ("function-name", "region", "alias", "publish", "promote-from", "role-to-assume", "aws-region")
    ),
    *(
        action_case(f"action-empty-{name}", {name: " "}, f"::error::input '{name}' {ACTION_EMPTY}")
        for name in ("settings-file", "working-directory", "install-path", "dry-run", "audience")
    ),
    # rule 6: paths the run reads, checked before the OIDC token
    action_case(
        "action-extra-path-missing-before-oidc",
        {},
        "::error::function_extra_paths: 'nope' does not exist",
        "create it or fix function_extra_paths",
        stage={"function_extra_paths": ["nope"]},
    ),
    action_case(
        "action-install-path-empty-before-oidc",
        {"install-path": "empty"},
        "::error::install path empty holds no files to package",
        "pip install --target empty",
    ),
    action_case(
        "action-stage-requirements-missing-before-oidc",
        {"install-path": "build"},
        "::error::requirements file nope.txt does not exist (stage staging)",
        "create it or fix the path",
        stage={"requirements": "nope.txt"},
    ),
]


def run_action(runner: Runner, inputs: Mapping[str, str], extra: Mapping[str, str]) -> Completed:
    environment = runner.environment({"stage": "staging", **inputs}, dict(extra))
    return run_in_process(github.main, cwd=runner.workspace, env=environment)


@pytest.mark.parametrize(("inputs", "stage", "expect"), ACTION_CASES)
def test_round3_action_refuses_bad_input_before_the_oidc_token(
    tmp_path: Path, inputs: dict[str, str], stage: dict[str, Any], expect: tuple[str, ...]
) -> None:
    runner = Runner(tmp_path)
    settings = {"stages": {"staging": {**BASE_STAGE, "function_extra_paths": ["config"], **stage}}}
    write_project(runner.workspace, yaml.safe_dump(settings, sort_keys=False))
    (runner.workspace / "empty").mkdir()
    with oidc_server() as oidc, counting_server() as aws:
        extra = {
            "ACTIONS_ID_TOKEN_REQUEST_URL": oidc.url,
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": oidc.request_token,
            "AWS_ENDPOINT_URL": aws.endpoint,
            "DROVER_OIDC_ATTEMPTS": "1",
            "DROVER_STS_ATTEMPTS": "1",
        }
        outcome = run_action(runner, {"install-path": "install", "role-to-assume": ROLE, **inputs}, extra)
        assert oidc.requests == [] and aws.requests == [], "a pure input check came after a network call"
    assert outcome.returncode == 2, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    (line,) = outcome.stderr.splitlines()
    for fragment in expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert runner.output_file.read_text() == "" and runner.summary_file.read_text() == ""


def test_an_input_left_at_action_yml_default_is_not_given(tmp_path: Path) -> None:
    """The runner passes action.yml's default for an input left out of `with:`: NOT_GIVEN means the stage's."""
    runner = Runner(tmp_path)
    write_project(runner.workspace)
    environment = runner.environment({"stage": "staging", "function-name": github.NOT_GIVEN, "region": ""}, {})
    environment.pop("INPUT_REGION")  # a `uses: docker://` step: an input left out is absent
    saved = dict(os.environ)
    os.environ.update(environment)
    try:
        assert github.get_input("function-name") == "" and github.get_input("region") == ""
        assert github.get_input("settings-file") == "drover.yml" and github.get_flag("publish") is None
    finally:
        os.environ.clear()
        os.environ.update(saved)


# -- the table -----------------------------------------------------------------------------------


def table_rows() -> Mapping[str, str]:
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for param in CLI_CASES:
        rows[f"test_round3_cli_refuses_bad_input_before_any_write[{param.id}]"] = ("none", param.values[0].expect)
    for param in ACTION_CASES:
        rows[f"test_round3_action_refuses_bad_input_before_the_oidc_token[{param.id}]"] = ("none", param.values[2])
    return row_endings(rows)


def test_the_round_three_tables_in_docs_list_every_case() -> None:
    assert_table_lists(table_rows(), "test_round3_")
