"""make test never installs system packages: without a container engine the container tests are
reported as not run, with the one command that enables them (make ci-deps)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SKIP_LINE = "container tests: not run"


ENGINES = ("podman", "docker")


@pytest.fixture
def no_engine_path(tmp_path: Path) -> Path:
    """This PATH's commands without podman or docker, where `id -u` says root and apt-get records its calls."""
    directory = tmp_path / "bin"
    directory.mkdir()
    scripts = {"id": "echo 0", "apt-get": f'echo "$@" >> {tmp_path / "apt-get-called"}'}
    for name, body in scripts.items():
        (directory / name).write_text(f"#!/bin/bash\n{body}\n")
        (directory / name).chmod(0o755)
    for entry in reversed(os.environ["PATH"].split(os.pathsep)):  # the first on PATH wins, as in a shell
        for command in Path(entry).glob("*") if Path(entry).is_dir() else ():
            link = directory / command.name
            if command.name not in (*ENGINES, *scripts) and os.access(command, os.X_OK):
                link.unlink(missing_ok=True)
                link.symlink_to(command)
    return directory


def make_test_container(path: Path, **environment: str) -> subprocess.CompletedProcess[str]:
    kept = {name: value for name, value in os.environ.items() if not name.startswith(("DROVER_", "MAKE"))}
    make = shutil.which("make")
    assert make is not None
    return subprocess.run(
        [make, "--no-print-directory", "test-container"],
        cwd=ROOT,
        env={**kept, "PATH": str(path), **environment},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_a_container_engine_the_container_tests_are_not_run_and_nothing_is_installed(
    no_engine_path: Path,
) -> None:
    completed = make_test_container(no_engine_path)

    assert completed.returncode == 0, completed.stdout + completed.stderr
    output = completed.stdout + completed.stderr
    assert SKIP_LINE in output and "make ci-deps" in output
    assert not (no_engine_path.parent / "apt-get-called").exists()


def test_without_a_container_engine_drover_require_container_fails(no_engine_path: Path) -> None:
    completed = make_test_container(no_engine_path, DROVER_REQUIRE_CONTAINER="1")

    assert completed.returncode != 0
    assert "DROVER_REQUIRE_CONTAINER=1" in completed.stdout + completed.stderr
    assert not (no_engine_path.parent / "apt-get-called").exists()


def test_make_test_runs_the_container_tests_through_the_gate_and_ci_installs_the_tools_first() -> None:
    makefile = (ROOT / "Makefile").read_text()
    test_recipe = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "test-container" in test_recipe and "ci-deps" not in test_recipe
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert ci.index("make ci-deps") < ci.index("export DROVER_REQUIRE_CONTAINER=1") < ci.index("make test")
