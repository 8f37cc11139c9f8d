"""The install request (what to install, into which target, for which runtime) and its result; the request's checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drover.errors import InstallError, did_you_mean


@dataclass(frozen=True)
class InstallRequest:
    target: Path
    source: Path | None
    requirements: Path | None
    runtime: str
    architecture: str
    exclude_runtime_packages: bool = False
    verbose: bool = False
    package_exclude_patterns: tuple[str, ...] = ()  # they decide which installed files reach the layer
    skip: tuple[Path, ...] = ()  # the run's outputs (archive dir, other installs): never read as the project's inputs

    @property
    def outputs(self) -> list[Path]:
        """Directories no walk of a project or local requirement reads: the target and the run's other outputs."""
        return [self.target, *self.skip]


@dataclass(frozen=True)
class InstallResult:
    skipped: bool
    installer: str
    lock: str | None
    key: str
    excluded_packages: tuple[str, ...]
    excluded_bytes: int
    seconds: float
    dependencies_skipped: bool = False  # only the project (if any) was installed: the lock's set is in the layer


def _suggestion(path: Path) -> str:
    """' — did you mean requirements.txt?' when a file of a close name is beside the missing one."""
    closest = did_you_mean(path)
    return f" — {closest.strip()}" if closest else ""


def check_request(request: InstallRequest) -> None:
    if request.source is None and request.requirements is None:
        raise InstallError("nothing to install: give an install source (project directory) or a requirements file")
    if request.source is not None and not request.source.is_dir():
        raise InstallError(f"install source {request.source} is not a directory{_suggestion(request.source)}")
    if request.source is not None and not any(
        (request.source / name).is_file() for name in ("pyproject.toml", "setup.py", "setup.cfg")
    ):
        raise InstallError(f"install source {request.source} has no pyproject.toml, setup.py or setup.cfg")
    if request.requirements is not None and not request.requirements.is_file():
        raise InstallError(
            f"requirements file {request.requirements} does not exist{_suggestion(request.requirements)}"
        )
    if request.target.exists() and not request.target.is_dir():
        raise InstallError(f"install path {request.target} exists and is not a directory")
    target = request.target.resolve()
    guarded = [Path.cwd(), Path.home()]
    guarded += [path for path in (request.source, request.requirements) if path is not None]
    for path in guarded:
        if path.resolve().is_relative_to(target):
            raise InstallError(
                f"install path {request.target} contains {path}; drover replaces the install path on every "
                f"install, so give it a directory of its own (e.g. build/lambda)"
            )
    if (target / ".git").exists():
        raise InstallError(f"install path {request.target} is a git checkout; give the install a directory of its own")
