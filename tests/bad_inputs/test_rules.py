"""Bad input, round two (issue 16): each case is an instance of a general rule, run IN-PROCESS.

Same promises as tests/bad_inputs/test_bad_inputs.py (exit 2, exactly one `drover: error:` line naming the
file/key/value and the fix, no traceback, no AWS write, --archive-dir left as it was), but `drover.cli.main`
and `drover.github.main` run in the test's own process with captured streams: the suite stays fast. CLI
cases deploy against the moto server through the counting proxy; Action cases against an endpoint that
refuses and counts every request. docs/bad-inputs.md lists every case ("Rules" sections).

The rules:
1. every value is validated whole (fullmatch: `$` would let "fn\\n" through) and before the first write;
2. every input has a bound with a clear error (settings size, echoed values, alias expansion, pattern time,
   symlinked directory visits);
3. --archive-dir is checked before any work and is never read as input;
7. in the Action every path resolves inside $GITHUB_WORKSPACE, and inputs keep to their grammar.
"""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Mapping
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover import cli, github, packaging
from tests.aws import REGION
from tests.bad_inputs.test_bad_inputs import BASE_STAGE, Project, assert_table_lists, row_endings
from tests.github_fakes import CountingServer, counting_server
from tests.test_action_container import Runner, write_project

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "bad-inputs.md"
MAX_LINE = 1000  # an error line is short whatever the input: values are cut in the middle
Setup = Callable[[Path], None]


@dataclass(frozen=True)
class Rule:
    id: str
    expect: tuple[str, ...]
    stage: Mapping[str, Any] = field(default_factory=dict)
    settings: str | bytes | None = None
    setup: Setup | None = None
    args: tuple[str, ...] = ()
    stage_name: str = "staging"
    reads: bool = False  # AWS reads may come before the error; writes never


def rule(rule_id: str, *expect: str, **options: Any) -> Any:
    return pytest.param(Rule(rule_id, expect, **options), id=rule_id)


def stage_yaml(name: str) -> str:
    return (
        f"stages:\n  {name}:\n    region_name: us-east-1\n    function_name: fn\n    compatible_runtime: python3.12\n"
    )


# -- project changes -----------------------------------------------------------------------------


def backtracking_name(project: Path) -> None:
    (project / "install" / ("a" * 45 + "!")).write_text("x\n")


def symlink_dag(project: Path) -> None:
    """25 levels, each with two links to the next: 2**25 paths to the last level, 26 real directories."""
    base = project / "install" / "dep"
    for level in range(26):
        (base / f"l{level:02d}").mkdir()
        (base / f"l{level:02d}" / "m.py").write_text("")
    for level in range(25):
        for link in ("a", "b"):
            (base / f"l{level:02d}" / link).symlink_to(f"../l{level + 1:02d}", target_is_directory=True)


def path_too_long(project: Path) -> None:
    """Nested 200-character directory names, 4,400 characters in all: longer than PATH_MAX (4096)."""
    descriptor = os.open(project / "install" / "dep", os.O_RDONLY)
    try:
        for _ in range(22):
            os.mkdir("d" * 200, dir_fd=descriptor)
            inner = os.open("d" * 200, os.O_RDONLY, dir_fd=descriptor)
            os.close(descriptor)
            descriptor = inner
        os.close(os.open("deep.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=descriptor))
    finally:
        os.close(descriptor)


def settings_fifo(project: Path) -> None:
    (project / "drover.yml").unlink()
    os.mkfifo(project / "drover.yml")


def oversized_settings(project: Path) -> None:
    with open(project / "drover.yml", "a") as stream:
        stream.write("#" * (1 << 20) + "\n")


def archive_dir_file(project: Path) -> None:
    (project / "out").write_text("not a directory\n")


def archive_dir_linked_to_install(project: Path) -> None:
    (project / "linked").symlink_to("install", target_is_directory=True)


def archive_dir_holds_directory(project: Path) -> None:
    (project / "out" / "function.zip").mkdir(parents=True)


# -- the cases -----------------------------------------------------------------------------------

LAYER_ARN = "arn:aws:lambda:us-east-1:123456789012:layer:extension:1"

CLI_RULES = [
    # rule 1: validated whole, before the first write
    rule(
        "function-name-trailing-newline",
        "key 'function_name'",
        "'fn\\n' is not a valid Lambda function name",
        stage={"function_name": "fn\n"},
    ),
    rule("alias-trailing-newline", "key 'alias'", "'live\\n' is not a valid alias name", stage={"alias": "live\n"}),
    rule(
        "cli-alias-trailing-newline",
        "alias 'live\\n' is not a valid alias name",
        "letters, digits, - and _",
        args=("--alias", "live\n"),
    ),
    rule(
        "region-trailing-newline",
        "key 'region_name'",
        "'us-east-1\\n' is not a valid AWS region name",
        stage={"region_name": "us-east-1\n"},
    ),
    rule(
        "layer-arn-trailing-newline",
        "key 'supplemental_layer_arns'",
        "is not a valid layer version ARN",
        stage={"supplemental_layer_arns": [LAYER_ARN + "\n"]},
    ),
    rule(
        "bucket-name-trailing-newline",
        "key 'upload_bucket.bucket_name'",
        "'artifacts\\n' is not a valid S3 bucket name",
        stage={"upload_bucket": {"region_name": REGION, "bucket_name": "artifacts\n"}},
    ),
    rule(
        "layer-name-trailing-newline",
        "key 'requirements_layer_name'",
        "'deps\\n' is not a valid layer name",
        stage={"requirements_layer_name": "deps\n"},
    ),
    rule(
        "function-arn-in-another-region",
        "function_name arn:aws:lambda:eu-west-1:123456789012:function:fn is an ARN in region eu-west-1",
        "region_name is us-east-1 — make them match",
        stage={"function_name": "arn:aws:lambda:eu-west-1:123456789012:function:fn"},
    ),
    rule(
        "runtime-deprecated",
        "key 'compatible_runtime'",
        "'python3.8' is a deprecated Lambda runtime",
        "use one of python3.9, python3.10",
        stage={"compatible_runtime": "python3.8"},
    ),
    rule(
        "runtime-unknown",
        "key 'compatible_runtime'",
        "'python3.99' is not a Python runtime Lambda supports",
        "python3.14",
        stage={"compatible_runtime": "python3.99"},
    ),
    rule(
        "stage-name-boolean",
        "drover.yml:2:3: stage name off is read by YAML as a boolean",
        "quote it: 'off':",
        settings=stage_yaml("off"),
        stage_name="off",
    ),
    rule(
        "stage-name-number",
        "drover.yml:2:3: stage name 2024 is read by YAML as a number",
        "quote it: '2024':",
        settings=stage_yaml("2024"),
        stage_name="2024",
    ),
    rule(
        "stage-name-null",
        "drover.yml:2:3: stage name ~ is read by YAML as null",
        "quote it",
        settings=stage_yaml("~"),
        stage_name="~",
    ),
    rule(
        "stage-name-date",
        "drover.yml:2:3: stage name 2024-01-31 is read by YAML as a date",
        "quote it",
        settings=stage_yaml("2024-01-31"),
        stage_name="2024-01-31",
    ),
    # rule 2: bounded work and echo
    rule(
        "settings-over-1-mib",
        "drover.yml: larger than 1048576 bytes, the limit for a settings file",
        "is it the right file?",
        setup=oversized_settings,
    ),
    rule(
        "settings-dev-zero",
        "/dev/zero: not a regular file",
        "point --settings-file at the YAML file",
        args=("--settings-file", "/dev/zero"),
    ),
    rule(
        "settings-fifo",
        "drover.yml: not a regular file (a FIFO, device or socket)",
        "point --settings-file at the YAML file",
        setup=settings_fifo,
    ),
    rule(
        "huge-value-shortened",
        "key 'function_name'",
        "(1000002 characters) is not a valid Lambda function name",
        stage={"function_name": "x" * 1_000_000},
    ),
    rule(
        "pattern-backtracks",
        "pattern '(a|aa)+$' took more than 1 s to match the file name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!'",
        "simplify it",
        stage={"package_exclude_patterns": ["(a|aa)+$"]},
        setup=backtracking_name,
        reads=True,
    ),
    rule(
        "function-pattern-backtracks",
        "pattern '(a|aa)+$' took more than 1 s to match the file name",
        "simplify it",
        stage={"function_file_patterns": ["(a|aa)+$"]},
        setup=backtracking_name,
        reads=True,
    ),
    rule(
        "symlink-dag",
        "is reached through more than 16 symlinked paths",
        "remove the extra links",
        setup=symlink_dag,
        reads=True,
    ),
    rule(
        "path-longer-than-path-max",
        "path longer than the system allows (PATH_MAX 4096)",
        "shorten the directory names or exclude it",
        setup=path_too_long,
        reads=True,
    ),
    # rule 3: the archive dir is never an input, and is checked before any work
    rule(
        "archive-dir-is-the-install-path",
        "--archive-dir install is the install path (install)",
        "the archives would package themselves",
        args=("--archive-dir", "install"),
    ),
    rule(
        "archive-dir-dot-with-install-path-dot",
        "--archive-dir . is the install path (.)",
        "keep them in a directory outside the inputs",
        args=("--install-path", ".", "--archive-dir", "."),
    ),
    rule(
        "archive-dir-symlink-to-the-install-path",
        "--archive-dir linked is the install path (install)",
        "the archives would package themselves",
        args=("--archive-dir", "linked"),
        setup=archive_dir_linked_to_install,
    ),
    rule(
        "archive-dir-is-an-extra-path",
        "--archive-dir instance is function_extra_paths entry 'instance'",
        "the archives would package themselves",
        args=("--archive-dir", "instance"),
    ),
    rule(
        "archive-dir-inside-an-extra-path",
        "--archive-dir instance/dist is inside function_extra_paths entry 'instance'",
        "the archives would package themselves",
        args=("--archive-dir", "instance/dist"),
    ),
    rule(
        "archive-dir-is-a-file",
        "--archive-dir out exists and is not a directory",
        "remove it or pick another",
        setup=archive_dir_file,
    ),
    rule(
        "archive-dir-holds-a-directory-function-zip",
        "--archive-dir out: function.zip exists and is not a regular file",
        "remove it or pick another --archive-dir",
        setup=archive_dir_holds_directory,
    ),
]

ACTION_RULES = [
    pytest.param(
        {"audience": "sts.amazonaws.com\n::error::pwned"},
        None,
        ("::error::input 'audience' is 'sts.amazonaws.com\\n::error::pwned'", "printable ASCII without spaces"),
        id="action-audience-injects-a-command",
    ),
    pytest.param(
        {"audience": "sts amazonaws"},
        None,
        ("::error::input 'audience' is 'sts amazonaws'", "without spaces or line breaks"),
        id="action-audience-with-a-space",
    ),
    pytest.param(
        {"working-directory": ".."},
        None,
        ("::error::working-directory '..' resolves to", "outside the workspace"),
        id="action-working-directory-outside",
    ),
    pytest.param(
        {"working-directory": "linked"},
        None,
        ("::error::working-directory 'linked' resolves to '/etc'", "outside the workspace"),
        id="action-working-directory-symlink-outside",
    ),
    pytest.param(
        {"settings-file": "linked/hostname"},
        None,
        ("::error::settings-file", "linked/hostname' resolves to '/etc/hostname'", "outside the workspace"),
        id="action-settings-file-through-a-symlink",
    ),
    pytest.param(
        {"alias": "live\n::error::pwned"},
        None,
        ("::error::alias 'live\\n::error::pwned' is not a valid alias name",),
        id="action-alias-with-a-line-break",
    ),
    pytest.param(
        {"settings-file": "/etc/hostname"},
        None,
        ("::error::settings-file '/etc/hostname' resolves to", "outside the workspace"),
        id="action-settings-file-outside",
    ),
    pytest.param(
        {"install-path": "/etc"},
        None,
        ("::error::install-path '/etc' resolves to '/etc'", "in the Action every path must stay inside"),
        id="action-install-path-outside",
    ),
    pytest.param(
        {"install-source": "../.."},
        None,
        ("::error::install-source '../..' resolves to", "outside the workspace"),
        id="action-install-source-outside",
    ),
    pytest.param(
        {"requirements": "/etc/hostname"},
        None,
        ("::error::requirements '/etc/hostname' resolves to", "outside the workspace"),
        id="action-requirements-outside",
    ),
    pytest.param(
        {"requirements": "nested-outside.txt"},  # the file holds "-r linked/hostname" (linked -> /etc)
        None,
        ("::error::requirements file", "linked/hostname resolves to '/etc/hostname'", "outside the workspace"),
        id="action-nested-requirements-outside",
    ),
    pytest.param(
        {},
        {"function_extra_paths": ["/etc"]},
        ("::error::function_extra_paths entry '/etc'", "outside the workspace"),
        id="action-extra-path-absolute",
    ),
    pytest.param(
        {},
        {"function_extra_paths": ["linked"]},
        ("::error::function_extra_paths entry 'linked'", "resolves to '/etc'", "outside the workspace"),
        id="action-extra-path-symlink-outside",
    ),
    pytest.param(
        {"github-output": "missing/dir/output"},
        None,
        ("::error::$GITHUB_OUTPUT", "cannot be written: No such file or directory"),
        id="action-github-output-unwritable",
    ),
    pytest.param(
        {"github-step-summary": "."},
        None,
        ("::error::$GITHUB_STEP_SUMMARY", "cannot be written: Is a directory"),
        id="action-step-summary-is-a-directory",
    ),
]


# -- running the CLI in-process ------------------------------------------------------------------


@dataclass
class Outcome:
    code: int
    stdout: str
    stderr: str

    @property
    def only_error(self) -> str:
        lines = self.stderr.splitlines()
        assert len(lines) == 1, self.stderr
        return lines[0]


def run_cli(root: Path, args: list[str], monkeypatch: pytest.MonkeyPatch, endpoint: str | None = None) -> Outcome:
    """drover.cli.main in this process, in root, with stdout and stderr captured."""
    monkeypatch.chdir(root)
    for name in [name for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")]:
        monkeypatch.delenv(name)
    if endpoint is not None:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = cli.main(args)
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


def write_settings(project: Project, case: Rule) -> None:
    if case.settings is not None:
        data = case.settings.encode() if isinstance(case.settings, str) else case.settings
        (project.root / "drover.yml").write_bytes(data)
        return
    stage = {key: value for key, value in {**BASE_STAGE, **case.stage}.items() if value is not None}
    (project.root / "drover.yml").write_text(yaml.safe_dump({"stages": {"staging": stage}}, sort_keys=False))


def archive_dir_state(root: Path) -> list[str]:
    out = root / "out"
    if not out.exists():
        return []
    return sorted(path.name for path in out.iterdir()) if out.is_dir() else ["<file>"]


@pytest.mark.parametrize("case", CLI_RULES)
def test_rule_refuses_bad_input_before_any_write(
    case: Rule, project: Project, proxy: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.infra.function("fn")
    write_settings(project, case)
    if case.setup:
        case.setup(project.root)
    before, archives_before = project.live_state(), archive_dir_state(project.root)
    args = ["--non-interactive", "--install-path", "install", "--archive-dir", "out", *case.args, case.stage_name]

    outcome = run_cli(project.root, args, monkeypatch, proxy.endpoint)

    assert outcome.code == 2, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    line = outcome.only_error
    assert line.startswith("drover: error: "), line
    assert len(line) < MAX_LINE, f"{len(line)} characters"
    for fragment in case.expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert proxy.writes == [], proxy.writes
    if not case.reads:
        assert proxy.requests == [], f"{case.id} must fail before any AWS call: {proxy.requests}"
    assert project.live_state() == before
    assert archive_dir_state(project.root) == archives_before


def test_with_json_an_error_is_one_error_object_on_stdout(
    project: Project, proxy: CountingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_settings(project, Rule("x", (), stage={"function_name": "fn\n"}))

    outcome = run_cli(project.root, ["--install-path", "install", "--json", "staging"], monkeypatch, proxy.endpoint)

    assert outcome.code == 2
    (line,) = outcome.stdout.splitlines()
    error = json.loads(line)["error"]
    assert error["code"] == "SettingsError" and error["exit_code"] == 2
    assert "'fn\\n' is not a valid Lambda function name" in error["message"]
    assert outcome.only_error == f"drover: error: {error['message']}"
    assert proxy.requests == []


def test_with_json_a_usage_error_is_one_error_object_too(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(project.root, ["--json", "--stage", "x", "staging"], monkeypatch)
    assert exited.value.code == 2


def test_with_json_a_usage_error_prints_the_error_object(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "drover", "--json", "--stage", "x", "staging"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert json.loads(result.stdout) == {
        "error": {
            "code": "UsageError",
            "exit_code": 2,
            "message": "unrecognized arguments: --stage (see drover --help)",  # x and staging are STAGE names
        }
    }
    assert result.stderr == "drover: error: unrecognized arguments: --stage (see drover --help)\n"


# -- must work -----------------------------------------------------------------------------------


def test_an_honest_1000_stage_file_loads_and_packages(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """The alias guard counts what aliases add, not the nodes written out: 1,000 stages (~7,000 nodes) load."""
    stages = {f"stage{number:04d}": {**BASE_STAGE, "function_name": f"fn{number}"} for number in range(1000)}
    (project.root / "drover.yml").write_text(yaml.safe_dump({"stages": stages}, sort_keys=False))

    outcome = run_cli(project.root, ["--install-path", "install", "--package-only", "--json", "stage0999"], monkeypatch)

    assert outcome.code == 0, outcome.stderr
    assert json.loads(outcome.stdout)["function_name"] == "fn999"


def test_a_stale_archive_of_an_earlier_run_is_removed(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    """--archive-dir ends with exactly this run's archives: here a function archive only."""
    stage = {**BASE_STAGE, "function_file_patterns": ["^"], "function_extra_paths": []}
    (project.root / "drover.yml").write_text(yaml.safe_dump({"stages": {"staging": stage}}))
    (project.root / "out").mkdir()
    for name in ("function.zip", "requirements.zip"):
        (project.root / "out" / name).write_bytes(b"an earlier run's archive")
    args = ["--install-path", "install", "--package-only", "--archive-dir", "out", "--json", "staging"]

    outcome = run_cli(project.root, args, monkeypatch)

    assert outcome.code == 0, outcome.stderr
    document = json.loads(outcome.stdout)
    assert document["requirements_archive"] is None and document["function_archive"]
    assert archive_dir_state(project.root) == ["function.zip"]
    assert (project.root / "out" / "function.zip").read_bytes()[:2] == b"PK"


def test_an_archive_dir_of_a_deploy_is_validated_in_a_child_process_too(project: Project) -> None:
    """One subprocess case: the same rule through `python -m drover`."""
    write_settings(project, Rule("x", ()))
    command = [sys.executable, "-m", "drover", "--install-path", "install", "--archive-dir", "install", "staging"]
    result = subprocess.run(command, cwd=project.root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("drover: error: --archive-dir install is the install path")
    assert len(result.stderr.splitlines()) == 1 and result.stdout == ""


# -- user patterns: re semantics, bounded time ----------------------------------------------------


@pytest.mark.parametrize(
    "pattern", [r".*__pycache__.*", r"^app/", r"^(app|handler)/.*\.py$", r"^app/(?!tests/)", r"[a-z]+\.py$", r"(ab)+"]
)
def test_patterns_that_cannot_backtrack_badly_run_on_re(pattern: str) -> None:
    assert not packaging.may_backtrack(re.compile(pattern))


@pytest.mark.parametrize("pattern", [r"(a|aa)+$", r"(\w+\s?)*$", r"(.*a){12}", r".*a.*a.*a", r"(a)\1", r"(?=(a+)+$)b"])
def test_patterns_that_may_backtrack_run_bounded(pattern: str) -> None:
    assert packaging.may_backtrack(re.compile(pattern))


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        (r"(a|aa)+$", "aaaa"),
        (r"(a|aa)+$", "aaab"),
        (r"(a|pp)+$", "app\n"),  # re's $ matches before a final newline; the bounded engine must agree
        (r"(?i)APP/(\w+)*\.py", "app/x.py"),
        (r"(\w+\s?)*$", "café au lait"),
        (r"(?=(a+)+$)a", "aaa"),
    ],
)
def test_the_bounded_engine_keeps_re_match_semantics(pattern: str, name: str) -> None:
    compiled = re.compile(pattern)
    assert packaging.may_backtrack(compiled)
    assert packaging.user_match(compiled, name) == (compiled.match(name) is not None)


# -- the Action in-process -----------------------------------------------------------------------


def run_action(runner: Runner, inputs: Mapping[str, str], monkeypatch: pytest.MonkeyPatch, **extra: str) -> Outcome:
    """drover.github.main in this process, with the container's environment."""
    for name in list(os.environ):
        if name.startswith(("INPUT_", "GITHUB_", "ACTIONS_", "AWS_ENDPOINT_URL")):
            monkeypatch.delenv(name)
    files = {"github-output": "GITHUB_OUTPUT", "github-step-summary": "GITHUB_STEP_SUMMARY"}
    overrides = {files[name]: value for name, value in inputs.items() if name in files}
    inputs = {name: value for name, value in inputs.items() if name not in files}
    environment = runner.environment({"stage": "staging", **inputs}, {**extra, **overrides})
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(runner.workspace)
    stdout, stderr = io.StringIO(), io.StringIO()
    with redirect_stdout(stdout), redirect_stderr(stderr):
        code = github.main()
    return Outcome(code, stdout.getvalue(), stderr.getvalue())


@pytest.mark.parametrize(("inputs", "stage_changes", "expect"), ACTION_RULES)
def test_action_rule_refuses_bad_input_before_any_call(
    tmp_path: Path,
    inputs: dict[str, str],
    stage_changes: dict[str, Any] | None,
    expect: tuple[str, ...],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    runner = Runner(tmp_path)
    settings = None
    if stage_changes:
        stage = {**BASE_STAGE, "function_extra_paths": ["config"], **stage_changes}
        settings = yaml.safe_dump({"stages": {"staging": stage}}, sort_keys=False)
    write_project(runner.workspace, *([settings] if settings else []))
    (runner.workspace / "linked").symlink_to("/etc", target_is_directory=True)
    (runner.workspace / "nested-outside.txt").write_text("-r linked/hostname\n")
    with counting_server() as aws_endpoint:
        outcome = run_action(
            runner,
            {"install-path": "install", **inputs},
            monkeypatch,
            AWS_ENDPOINT_URL=aws_endpoint.endpoint,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
        )
        assert aws_endpoint.requests == []
    assert outcome.code == 2, outcome.stdout + outcome.stderr
    assert "Traceback" not in outcome.stdout + outcome.stderr
    line = outcome.only_error
    for fragment in expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert not any(line.startswith("::") for line in outcome.stdout.splitlines()), outcome.stdout
    assert runner.output_file.read_text() == "" and runner.summary_file.read_text() == ""
    assert not list(runner.runner_temp.iterdir())


# -- the table -----------------------------------------------------------------------------------


def table_rows() -> dict[str, str]:
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for param in CLI_RULES:
        case = param.values[0]
        rows[f"test_rule_refuses_bad_input_before_any_write[{case.id}]"] = (
            "reads only" if case.reads else "none",
            case.expect,
        )
    for param in ACTION_RULES:
        rows[f"test_action_rule_refuses_bad_input_before_any_call[{param.id}]"] = ("none", param.values[2])
    return row_endings(rows)


def test_the_rules_tables_in_docs_list_every_case() -> None:
    assert_table_lists(table_rows(), "test_rule_refuses_", "test_action_rule_refuses_")
