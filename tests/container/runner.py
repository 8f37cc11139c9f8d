"""The GitHub runner's way of running a Docker container action, replayed with podman.

From actions/runner (ContainerActionHandler + DockerCommandManager.DockerRun): the job's directories on
the host are mounted at /github/workspace, /github/file_commands, /github/home and /github/workflow;
`--workdir /github/workspace`; every input of action.yml is passed as INPUT_<NAME> (upper-cased, hyphens
kept) with its default filled in; GITHUB_OUTPUT and GITHUB_STEP_SUMMARY name fresh files under
/github/file_commands; RUNNER_TEMP is the host path and is not mounted; the process runs as root while
the host directories belong to the runner's user (uid 1001 on GitHub's hosted runners).

Two differences, both deliberate: `--network host` instead of the job's bridge network (the moto and
OIDC servers listen on the host's loopback), and no docker socket mount (there is no daemon here;
drover never uses it).
"""

from __future__ import annotations

import os
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.container import images
from tests.github_fakes import parse_github_output

ROOT = Path(__file__).resolve().parents[2]
RUNNER_UID = 1001  # the `runner` user of GitHub's hosted Ubuntu images


@dataclass
class ActionRun:
    returncode: int
    stdout: str
    stderr: str
    output_text: str
    summary: str

    @property
    def outputs(self) -> dict[str, str]:
        return parse_github_output(self.output_text)

    @property
    def error_lines(self) -> list[str]:
        """The error annotations, on stderr (never on stdout)."""
        assert not any(line.startswith("::error") for line in self.stdout.splitlines()), self.stdout
        return [line for line in self.stderr.splitlines() if line.startswith("::error")]

    @property
    def only_error(self) -> str:
        """The one line on stderr, an error annotation: no traceback, nothing else."""
        lines = self.stderr.splitlines()
        assert len(lines) == 1 and lines == self.error_lines, self.stderr
        return lines[0]


def action_inputs(given: dict[str, str]) -> dict[str, str]:
    """Every input of action.yml, as the runner passes them: the given value, else the default ("")."""
    declared: dict[str, dict[str, Any]] = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    unknown = set(given) - set(declared)
    assert not unknown, f"not inputs of action.yml: {unknown}"
    return {name: given.get(name, str(spec.get("default", ""))) for name, spec in declared.items()}


@dataclass
class PendingRun:
    """A started `podman run`: stop it like the runner cancels a job, then collect it."""

    runner: ContainerRunner
    name: str
    process: subprocess.Popen[str]
    output_file: Path
    summary_file: Path

    def signal(self, name: str) -> None:
        images.podman("kill", "--signal", name, self.name)

    def wait(self, timeout: float = 300) -> ActionRun:
        stdout, stderr = self.process.communicate(timeout=timeout)
        return ActionRun(
            self.process.returncode,
            stdout,
            stderr,
            self.output_file.read_text(encoding="utf-8"),
            self.summary_file.read_text(encoding="utf-8"),
        )


@dataclass
class ContainerRunner:
    """A runner's host directories under `root`, owned by `owner`, and `docker run` of `image` on them."""

    image: str
    root: Path
    # as root: the hosted runner's user; otherwise (rootless podman) this user, the only one we can chown to
    owner: int = field(default_factory=lambda: RUNNER_UID if os.geteuid() == 0 else os.getuid())
    runs: int = field(default=0)

    workspace = property(lambda self: self.root / "work" / "octo-app" / "octo-app")
    temp = property(lambda self: self.root / "work" / "_temp")
    file_commands = property(lambda self: self.temp / "_runner_file_commands")
    home = property(lambda self: self.temp / "_github_home")
    workflow = property(lambda self: self.temp / "_github_workflow")

    def __post_init__(self) -> None:
        for directory in (self.workspace, self.file_commands, self.home, self.workflow):
            directory.mkdir(parents=True, exist_ok=True)
        (self.workflow / "event.json").write_text("{}\n")

    def give_to_owner(self) -> None:
        """chown -R the runner's directories to its user, as on a hosted runner."""
        for path in [self.root, *self.root.rglob("*")]:
            os.lchown(path, self.owner, self.owner)

    def not_owned_by_runner(self) -> list[str]:
        """Files the container left in the runner's directories that the runner's user does not own."""
        return [
            f"{path} (uid {path.lstat().st_uid})"
            for path in [
                self.workspace,
                *self.workspace.rglob("*"),
                *self.file_commands.rglob("*"),
                *self.home.rglob("*"),
            ]
            if path.lstat().st_uid != self.owner
        ]

    def command(self, inputs: dict[str, str], env: dict[str, str], name: str) -> tuple[list[str], Path, Path]:
        step = uuid.uuid4()
        output_file = self.file_commands / f"set_output_{step}"
        summary_file = self.file_commands / f"step_summary_{step}"
        for path in (output_file, summary_file):
            path.touch()
            os.lchown(path, self.owner, self.owner)
        environment = {
            **{f"INPUT_{key.upper()}": value for key, value in action_inputs(inputs).items()},
            "HOME": "/github/home",
            "GITHUB_JOB": "deploy",
            "GITHUB_REPOSITORY": "octo-org/octo-app",
            "GITHUB_WORKSPACE": "/github/workspace",
            "GITHUB_EVENT_PATH": "/github/workflow/event.json",
            "GITHUB_OUTPUT": f"/github/file_commands/{output_file.name}",
            "GITHUB_STEP_SUMMARY": f"/github/file_commands/{summary_file.name}",
            "GITHUB_ACTIONS": "true",
            "CI": "true",
            "RUNNER_OS": "Linux",
            "RUNNER_TEMP": str(self.temp),  # the host's path: not mounted in the container
            **env,
        }
        command = [
            "run",
            "--name",
            name,
            "--label",
            "drover-action-test",
            "--workdir",
            "/github/workspace",
            "--rm",
            *[item for key, value in environment.items() for item in ("-e", f"{key}={value}")],
            "-v",
            f"{self.home}:/github/home",
            "-v",
            f"{self.workflow}:/github/workflow",
            "-v",
            f"{self.file_commands}:/github/file_commands",
            "-v",
            f"{self.workspace}:/github/workspace",
            "--network",
            "host",
            *images.platform_arguments(),
            self.image,
        ]
        return command, output_file, summary_file

    def start(self, inputs: dict[str, str], env: dict[str, str]) -> PendingRun:
        self.runs += 1
        name = f"drover-test-{uuid.uuid4().hex[:12]}"
        command, output_file, summary_file = self.command(inputs, env, name)
        process = subprocess.Popen(
            [images.podman_binary(), *command],
            env=images.podman_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        return PendingRun(self, name, process, output_file, summary_file)

    def run(self, inputs: dict[str, str], env: dict[str, str]) -> ActionRun:
        return self.start(inputs, env).wait()
