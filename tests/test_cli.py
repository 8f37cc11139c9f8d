"""The `drover` command end to end (python -m drover in a child process), in --package-only mode."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import drover
from drover.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "basic_lambda"
JSON_KEYS = {
    "stage",
    "function_digest",
    "requirements_digest",
    "function_archive",
    "requirements_archive",
    "function_size",
    "requirements_size",
    "function_file_count",
    "requirements_file_count",
}
GENERATED_SETTINGS = """\
stages:
  dev:
    region_name: us-east-1
    function_name: generated
    compatible_runtime: python3.12
    function_file_patterns: ['^app/']
"""


def run_drover(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "drover", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=60
    )


def parse_json_stdout(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.endswith("\n"), result.stdout
    document = json.loads(result.stdout)
    assert isinstance(document, dict)
    return document


def assert_one_error_line(result: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert result.returncode == code, result.stderr
    if "--json" in result.args:  # with --json, stdout holds one {"error": ...} object
        assert json.loads(result.stdout)["error"]["exit_code"] == code
    else:
        assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("drover: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def example(tmp_path) -> Path:
    """A copy of examples/basic_lambda plus install/, as `pip install --target install` would leave it."""
    project = tmp_path / "example"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("install", "dist"))  # what the README leaves
    shutil.copytree(EXAMPLE / "basic_lambda" / "basic_lambda", tmp_path / "install" / "basic_lambda")
    return project


@pytest.fixture
def generated(tmp_path, make_tree) -> Path:
    """A generated project with function files and requirements (a fake dependency)."""
    project = tmp_path / "generated"
    make_tree(
        project / "install",
        {
            "app/__init__.py": b"",
            "app/main.py": b"import requests_like\n\ndef handler(event, context):\n    return 1\n",
            "requests_like/__init__.py": b"VERSION = '1.0'\n" * 100,
            "requests_like/__pycache__/__init__.cpython-312.pyc": b"\0" * 32,
            "requests_like-1.0.dist-info/METADATA": b"Name: requests_like\n",
            "bin/tool": (b"#!/bin/sh\n", 0o755),
        },
    )
    (project / "drover.yml").write_text(GENERATED_SETTINGS)
    return project


def test_package_only_json_on_the_example(example, tmp_path, valid_zip):
    archives = tmp_path / "archives"

    result = run_drover(
        "--settings-file",
        "drover.yml",
        "--install-path",
        tmp_path / "install",
        "--package-only",
        "--json",
        "--archive-dir",
        archives,
        "staging",
        cwd=example,
    )

    document = parse_json_stdout(result)
    assert set(document) >= JSON_KEYS
    assert document["stage"] == "staging"
    assert re.fullmatch(r"[0-9a-f]{64}", document["function_digest"])
    assert document["requirements_digest"] is None
    assert document["requirements_archive"] is None
    assert document["requirements_size"] is None
    assert document["requirements_file_count"] == 0
    assert document["function_file_count"] == 2
    function_zip = Path(document["function_archive"])
    assert function_zip.resolve() == (archives / "function.zip").resolve()
    assert document["function_size"] == function_zip.stat().st_size
    assert sorted(path.name for path in archives.iterdir()) == ["function.zip"]
    with valid_zip(function_zip) as opened:
        assert opened.namelist() == ["basic_lambda/__init__.py", "instance/config.json"]
        assert opened.read("instance/config.json") == (EXAMPLE / "instance" / "config.json").read_bytes()
    assert "Requirements digest: None" in result.stderr.splitlines()
    assert f"Function digest: {document['function_digest']}" in result.stderr.splitlines()


def test_text_mode_prints_the_seed_digest_lines_on_stdout(example, tmp_path):
    json_result = run_drover("--install-path", tmp_path / "install", "--package-only", "--json", "staging", cwd=example)
    digest = parse_json_stdout(json_result)["function_digest"]

    result = run_drover("--install-path", tmp_path / "install", "--package-only", "staging", cwd=example)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["Requirements digest: None", f"Function digest: {digest}"]
    assert "Requirements digest" not in result.stderr
    with pytest.raises(json.JSONDecodeError):
        json.loads(result.stdout)


def test_package_only_json_on_a_generated_tree_with_requirements(generated, tmp_path, valid_zip):
    archives = tmp_path / "archives"

    result = run_drover(
        "--install-path", "install", "--package-only", "--json", "--archive-dir", archives, "dev", cwd=generated
    )

    document = parse_json_stdout(result)
    assert set(document) >= JSON_KEYS
    assert re.fullmatch(r"[0-9a-f]{64}", document["requirements_digest"])
    assert document["requirements_digest"] != document["function_digest"]
    assert (document["function_file_count"], document["requirements_file_count"]) == (2, 3)
    assert sorted(path.name for path in archives.iterdir()) == ["function.zip", "requirements.zip"]
    with valid_zip(Path(document["function_archive"])) as opened:
        assert opened.namelist() == ["app/__init__.py", "app/main.py"]
        assert opened.read("app/main.py") == (generated / "install" / "app" / "main.py").read_bytes()
    requirements_zip = Path(document["requirements_archive"])
    assert document["requirements_size"] == requirements_zip.stat().st_size
    with valid_zip(requirements_zip) as opened:
        assert opened.namelist() == [
            "python/bin/tool",
            "python/requests_like-1.0.dist-info/METADATA",
            "python/requests_like/__init__.py",
        ]
        assert opened.getinfo("python/bin/tool").external_attr >> 16 == 0o100755
    assert f"Requirements digest: {document['requirements_digest']}" in result.stderr.splitlines()


def test_without_archive_dir_paths_are_null_but_sizes_are_reported(generated):
    result = run_drover("--install-path", "install", "--package-only", "--json", "dev", cwd=generated)

    document = parse_json_stdout(result)
    assert document["function_archive"] is None
    assert document["requirements_archive"] is None
    assert document["function_size"] > 0
    assert document["requirements_size"] > 0
    assert sorted(path.name for path in generated.iterdir()) == ["drover.yml", "install"]  # nothing left behind


def test_same_command_twice_gives_identical_archives(generated, tmp_path):
    outputs = []
    for run in ("first", "second"):
        result = run_drover(
            "--install-path",
            "install",
            "--package-only",
            "--json",
            "--archive-dir",
            tmp_path / run,
            "dev",
            cwd=generated,
        )
        outputs.append(parse_json_stdout(result))

    for name in ("function.zip", "requirements.zip"):
        assert (tmp_path / "first" / name).read_bytes() == (tmp_path / "second" / name).read_bytes()
    assert outputs[0]["function_digest"] == outputs[1]["function_digest"]
    assert outputs[0]["requirements_digest"] == outputs[1]["requirements_digest"]


def test_archives_match_across_copies_of_the_tree(generated, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(generated, copy)  # new inodes, new mtimes, other absolute path
    results = [
        run_drover("--install-path", "install", "--package-only", "--json", "--archive-dir", "out", "dev", cwd=root)
        for root in (generated, copy)
    ]

    first, second = (parse_json_stdout(result) for result in results)

    assert (generated / "out" / "function.zip").read_bytes() == (copy / "out" / "function.zip").read_bytes()
    assert first["function_digest"] == second["function_digest"]


def test_bad_settings_exit_2_with_one_error_line(generated):
    (generated / "drover.yml").write_text(
        GENERATED_SETTINGS.replace("compatible_runtime: python3.12", "compatible_runtime: python2.7")
    )

    result = run_drover("--install-path", "install", "--package-only", "--json", "dev", cwd=generated)

    line = assert_one_error_line(result)
    assert "drover.yml:5:5:" in line
    assert "compatible_runtime" in line


def test_yaml_syntax_error_exits_2_with_one_error_line(generated):
    (generated / "drover.yml").write_text("stages:\n  dev: [\n")

    line = assert_one_error_line(run_drover("--install-path", "install", "--package-only", "dev", cwd=generated))

    assert "YAML syntax error" in line


def test_missing_settings_file_exits_2(generated):
    line = assert_one_error_line(
        run_drover("--settings-file", "nope.yml", "--install-path", "install", "--package-only", "dev", cwd=generated)
    )

    assert "nope.yml" in line


def test_unknown_stage_exits_2_naming_the_stages(generated):
    line = assert_one_error_line(run_drover("--install-path", "install", "--package-only", "prod", cwd=generated))

    assert "unknown stage 'prod'" in line
    assert "dev" in line


def test_missing_install_path_exits_2(generated):
    line = assert_one_error_line(
        run_drover("--install-path", "missing", "--package-only", "--json", "dev", cwd=generated)
    )

    assert "missing" in line


def test_packaging_error_exits_2(generated):
    (generated / "install" / "app" / "escape.py").symlink_to("/etc/hostname")

    line = assert_one_error_line(run_drover("--install-path", "install", "--package-only", "dev", cwd=generated))

    assert "escape.py" in line


@pytest.mark.parametrize(
    "args",
    [
        ["--package-only"],
        ["--no-such-flag", "dev"],
        ["--verbose", "--quiet", "dev"],
        ["dev", "extra-positional"],
    ],
    ids=["no-stage", "unknown-flag", "exclusive-flags", "extra-argument"],
)
def test_bad_usage_exits_2_with_one_line(generated, args):
    assert_one_error_line(run_drover(*args, cwd=generated))


def test_version_prints_the_package_version(tmp_path):
    result = run_drover("--version", cwd=tmp_path)

    assert result.returncode == 0
    assert result.stdout.strip() == f"drover {drover.__version__} (drover-action)"  # not drover 0.7.1 from PyPI
    assert re.fullmatch(r"\d+\.\d+\.\d+.*", drover.__version__)


def test_the_distribution_named_by_version_is_the_one_pyproject_builds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]

    assert project["name"] == drover.DISTRIBUTION == "drover-action"
    assert project["scripts"] == {"drover": "drover.__main__:main"}


def test_help_shows_each_mode_the_exit_codes_the_environment_and_the_default_install_path(tmp_path):
    result = run_drover("--help", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    for mode in ("--dry-run staging", "--package-only --archive-dir dist staging", "--json staging"):
        assert f"drover --install-path install {mode}" in text
    assert "drover --install-path install staging deploy stage" in text
    for code, meaning in (("0", "success"), ("1", "the deploy failed"), ("2", "bad input"), ("130", "interrupted")):
        assert f" {code} {meaning}" in text
    assert "143: terminated (SIGTERM)" in text
    for variable in ("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION"):
        assert variable in text
    assert "default: the working directory" in text
    assert "--install-path defaults to the working directory" in text


def help_examples() -> list[list[str]]:
    lines = build_parser().epilog.splitlines()  # type: ignore[union-attr]
    return [shlex.split(line)[1:] for line in lines if line.startswith("  drover ")]


def test_every_help_example_is_a_valid_command_line():
    examples = help_examples()

    assert len(examples) == 5
    for arguments in examples:
        parsed = build_parser().parse_args(arguments)  # exits 2 on an invalid one
        assert parsed.stages == ["staging"]


def test_the_default_install_path_warns_and_names_what_it_packages(example, tmp_path):
    (example / "notes.txt").write_text("not for Lambda\n")

    result = run_drover("--package-only", "--archive-dir", tmp_path / "out", "--json", "staging", cwd=example)

    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("warning")] == [
        "warning: packaging the working directory (.gitignore, basic_lambda/, drover.yml, instance/, notes.txt) because "
        "--install-path is not given: pass --install-path DIR (e.g. the directory pip install --target filled)"
    ]
    with zipfile.ZipFile(tmp_path / "out" / "requirements.zip") as layer:
        assert {"python/drover.yml", "python/notes.txt"} <= set(layer.namelist())  # what the warning is about


def test_an_install_path_or_a_settings_file_elsewhere_gives_no_warning(generated, tmp_path):
    with_path = run_drover(
        "--install-path",
        ".",
        "--settings-file",
        generated / "drover.yml",
        "--package-only",
        "--quiet",
        "dev",
        cwd=generated / "install",
    )
    explicit = run_drover("--install-path", "install", "--package-only", "--quiet", "dev", cwd=generated)

    assert (with_path.returncode, with_path.stderr) == (0, "")
    assert (explicit.returncode, explicit.stderr) == (0, "")


def test_quiet_json_still_prints_the_json_object(generated):
    result = run_drover("--install-path", "install", "--package-only", "--json", "--quiet", "dev", cwd=generated)

    assert parse_json_stdout(result)["stage"] == "dev"
    assert result.stderr == ""


def test_help_says_a_dry_run_never_replaces_the_install_path():
    text = " ".join(build_parser().format_help().split())
    assert "the install path is never replaced" in text and "'no changes'" in text
