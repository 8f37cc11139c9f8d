"""Errors that point at the line: a function that does not exist names drover.yml's function_name and
region_name lines (or the option that set them) and the closest function names of that region."""

from __future__ import annotations

import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import yaml

from drover import cli
from tests.aws import Infrastructure

STAGE = {"region_name": "us-east-1", "compatible_runtime": "python3.12", "function_file_patterns": ["^app"]}


def deploy(project: Path, stages: dict[str, str], *args: str) -> tuple[int, str]:
    """drover's CLI in this process on a project whose stages deploy to these function names."""
    settings = {"stages": {name: {**STAGE, "function_name": function} for name, function in stages.items()}}
    (project / "drover.yml").write_text(yaml.safe_dump(settings, sort_keys=False))
    (project / "install" / "app").mkdir(parents=True, exist_ok=True)
    (project / "install" / "app" / "__init__.py").write_text("x = 1\n")
    stderr = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stderr(stderr), redirect_stdout(io.StringIO()):
        patch.chdir(project)
        code = cli.main(["--non-interactive", "--settings-file", "drover.yml", "--install-path", "install", *args])
    return code, stderr.getvalue()


def line_of(project: Path, text: str) -> int:
    return next(
        number for number, line in enumerate((project / "drover.yml").read_text().splitlines(), 1) if text in line
    )


def test_a_misspelt_function_names_its_drover_yml_lines_and_the_closest_names(
    tmp_path: Path, infra: Infrastructure
) -> None:
    for name in ("my-func", "my-fnc", "billing"):
        infra.function(name)

    code, stderr = deploy(tmp_path, {"staging": "my-fnuc"}, "staging")

    assert code == 1
    (line,) = stderr.splitlines()
    assert line.startswith("drover: error: function my-fnuc not found in region us-east-1"), line
    function_line, region_line = line_of(tmp_path, "function_name"), line_of(tmp_path, "region_name")
    assert (
        f"function_name at drover.yml:{function_line}:5" in line
        and f"region_name at drover.yml:{region_line}:5" in line
    )
    assert "did you mean my-fnc, my-func?" in line and "billing" not in line


def test_the_override_is_named_when_function_name_came_from_the_option(tmp_path: Path, infra: Infrastructure) -> None:
    infra.function("orders")

    code, stderr = deploy(tmp_path, {"staging": "orders"}, "--function-name", "order", "staging")

    assert code == 1
    assert "function_name at --function-name" in stderr and "did you mean orders?" in stderr


def test_several_stages_report_the_line_of_the_stage_that_failed(tmp_path: Path, infra: Infrastructure) -> None:
    infra.function("fn")

    code, stderr = deploy(tmp_path, {"good": "fn", "bad": "fnn"}, "good", "bad")

    assert code == 1
    failed = [line for line in stderr.splitlines() if "stage bad failed" in line]
    assert failed and "function_name at drover.yml:" in failed[0] and "did you mean fn?" in failed[0], stderr
