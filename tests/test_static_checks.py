"""The linters CI runs, in the test suite: actionlint, hadolint, check-jsonschema, zizmor (offline).

Each is a dev dependency (pyproject.toml), so it is installed in the venv; a test skips only when
the tool's binary is truly missing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
EXAMPLE_WORKFLOW = ROOT / "examples" / "workflow.yml"


def tool(name: str) -> str:
    """The tool next to this interpreter (the venv), else on PATH; skip when it is nowhere."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (it is a dev dependency: make venv)")
    return found


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_workflows_exist() -> None:
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "release.yml"]
    assert EXAMPLE_WORKFLOW.is_file()


def test_actionlint() -> None:
    result = run(tool("actionlint"), "-no-color", *WORKFLOWS, EXAMPLE_WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint() -> None:
    result = run(tool("hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_action_yml_matches_the_actions_schema() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-actions", "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflows_match_the_workflows_schema() -> None:
    result = run(tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *WORKFLOWS, EXAMPLE_WORKFLOW)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_has_no_findings() -> None:
    result = run(tool("zizmor"), "--offline", "--no-progress", ".github/workflows", EXAMPLE_WORKFLOW, "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "No findings to report" in result.stdout


def test_third_party_actions_are_pinned_by_full_sha_with_a_version_comment() -> None:
    """zizmor checks pins too; this also demands the version comment and forbids pull_request_target."""
    for path in [*WORKFLOWS, EXAMPLE_WORKFLOW]:
        text = path.read_text(encoding="utf-8")
        assert "pull_request_target" not in text, path
        for line in text.splitlines():
            match = re.search(r"uses:\s*([^\s#]+)(.*)", line)
            if not match or match[1].startswith(("./", "OWNER/")):
                continue
            assert re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", match[1]), f"{path.name}: {line.strip()}"
            assert re.match(r"\s+# v\d+\.\d+\.\d+", match[2]), f"{path.name}: no version comment: {line.strip()}"


def test_run_scripts_never_expand_expressions() -> None:
    """Untrusted values reach run: scripts only through env: (template injection)."""
    for path in [*WORKFLOWS, EXAMPLE_WORKFLOW]:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job_name, job in document["jobs"].items():
            for step in job.get("steps", []):
                assert "${{" not in step.get("run", ""), f"{path.name}: job {job_name}: {step.get('name')}"
