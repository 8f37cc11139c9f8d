"""The README's "Use" section runs as written: every shell command in it, against `make local`'s server.

The commands run in one bash session (as a user types them) in a temporary copy of the repository's
Makefile and examples/, with this test's drover first on PATH, no AWS variables from outside, and
LOCAL_AWS_PORT=0 so the local server takes a free port. The example's tree must come out unchanged
apart from the outputs the README names (install/, dist/), and the server must be gone.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
EXAMPLE = Path("examples") / "basic_lambda"
OUTPUTS = {"install", "dist"}  # what the README says the commands leave in the example
SHELL_FENCES = ("sh", "bash", "console", "shell")


def section(markdown: str, heading: str) -> str:
    """The text under `## heading`, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, re.MULTILINE | re.DOTALL)
    assert match, f"no '## {heading}' section"
    return match.group(1)


def shell_commands(markdown: str) -> list[str]:
    """The commands of every sh/bash/console/shell block (console: only the `$ ` lines), in order."""
    commands = []
    for fence, body in re.findall(r"^```(\w*)\n(.*?)^```", markdown, re.MULTILINE | re.DOTALL):
        if fence not in SHELL_FENCES:
            continue
        for line in body.splitlines():
            if fence == "console":
                if line.startswith("$ "):
                    commands.append(line[2:])
            elif line.strip():
                commands.append(line)
    return commands


def tree(root: Path) -> dict[str, bytes]:
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts
    }


def copy_repository(destination: Path) -> None:
    """What the Use commands touch: the Makefile and examples/, with this checkout's venv."""
    shutil.copy(ROOT / "Makefile", destination / "Makefile")
    for name in ("pyproject.toml", "uv.lock"):  # the venv stamp's inputs, made old: make rebuilds nothing
        shutil.copy(ROOT / name, destination / name)
        os.utime(destination / name, (0, 0))
    shutil.copytree(ROOT / "examples", destination / "examples", ignore=shutil.ignore_patterns("__pycache__", *OUTPUTS))
    (destination / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)


def use_environment() -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("AWS_", "LOCAL_AWS_"))}
    environment["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{environment.get('PATH', '/usr/bin:/bin')}"
    environment["LOCAL_AWS_PORT"] = "0"  # tests never use fixed ports
    return environment


def test_the_use_section_has_commands_for_each_step() -> None:
    commands = shell_commands(section(README.read_text(encoding="utf-8"), "Use"))

    assert commands[0].startswith('eval "$(make -s local)"')
    assert commands[-1].startswith("cd ../.. && make local-down")
    for mode in ("--install-source", "--dry-run", "--package-only"):
        assert any(mode in command for command in commands), mode


def test_shell_commands_come_from_shell_blocks_only() -> None:
    markdown = "```sh\na  # x\n\nb\n```\n```yaml\nc: 1\n```\n```console\n$ d\noutput\n```\n"

    assert shell_commands(markdown) == ["a  # x", "b", "d"]


@pytest.mark.slow
@pytest.mark.network  # the example's build backend (flit_core) comes from the package index
@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.skipif(not (ROOT / ".venv" / ".synced").exists(), reason="no .venv built by make (make venv)")
def test_every_use_command_runs_against_the_local_aws_api(tmp_path: Path) -> None:
    repository = tmp_path / "repository"
    repository.mkdir()
    copy_repository(repository)
    commands = shell_commands(section(README.read_text(encoding="utf-8"), "Use"))
    script = "set -euo pipefail\n" + "\n".join(f"echo '+ '{_quote(command)}\n{command}" for command in commands)
    state = repository / ".cache" / "local-aws"
    example = repository / EXAMPLE
    before = tree(example)

    try:
        result = subprocess.run(
            ["bash", "-c", script],
            cwd=repository,
            env=use_environment(),
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        _stop_a_leftover_server(state)

    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Traceback" not in output
    assert "created role basic-lambda-role, bucket drover-examples, function basic-lambda" in result.stderr
    assert "Function 'basic-lambda' is up to date; nothing to do" in result.stdout  # the second deploy
    assert "stopped the local AWS API" in result.stderr
    assert not (state / "server.pid").exists()
    assert (example / "dist" / "function.zip").is_file()
    after = tree(example)
    assert {name: data for name, data in after.items() if name.split("/")[0] not in OUTPUTS} == before


def _quote(command: str) -> str:
    return "'" + command.replace("'", "'\\''") + "'"


def _stop_a_leftover_server(state: Path) -> None:
    """If the commands failed before `make local-down`, stop the server they started (PID checked)."""
    down = [sys.executable, str(ROOT / "examples" / "local_aws.py"), "down", "--state-dir", str(state)]
    subprocess.run(down, capture_output=True, timeout=60, check=False)
