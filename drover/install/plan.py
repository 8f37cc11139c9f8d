"""The install plan (what one install command installs, and how), its command, and running it."""

from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from drover.errors import InstallError
from drover.install.backends import Installer, _run, failure_reason, missing_wheel
from drover.install.build import _build_local_project, _build_locked_sdist, _build_project, _build_pure_wheel
from drover.install.inputs import _locked_requirements, _project_lock
from drover.install.platforms import TargetPlatform, _canonical
from drover.install.request import InstallRequest
from drover.install.sources import _clean_copy, _file_digest
from drover.locks import PYLOCK_NAME, RequirementSet, pinned_requirement

MAX_SOURCE_BUILDS = 10


@dataclass
class _Plan:
    """What one install command installs, and how."""

    requirements: RequirementSet = field(default_factory=RequirementSet)
    lock: str | None = None
    locked_count: int = 0
    no_deps: bool = False
    project_wheel: Path | None = None
    wheels: list[Path] = field(default_factory=list)  # dependencies built from source as a fallback

    @property
    def require_hashes(self) -> bool:
        return self.requirements.hashed


def _build_local_projects(
    plan: _Plan,
    installer: Installer,
    platform: TargetPlatform,
    scratch: Path,
    env: Mapping[str, str],
    skip: Sequence[Path],
    *,
    verbose: bool,
) -> None:
    """Local project directories named by requirement lines are built (from clean copies) into wheels, and the lines
    name those wheels: uv installs wheels only, and pip then installs exactly what uv would."""
    for index, (directory, where) in enumerate(plan.requirements.directories.items()):
        copy = _clean_copy(directory, scratch / "local" / f"{index}-{directory.name}", skip)
        wheel = _build_local_project(
            copy, directory, where, installer, platform, scratch / "local-built" / str(index), env, verbose=verbose
        )
        hash_option = f" --hash=sha256:{_file_digest(wheel)}" if plan.require_hashes else ""
        plan.requirements.lines = [_point_at(line, directory, wheel, hash_option) for line in plan.requirements.lines]


def _point_at(line: str, directory: Path, wheel: Path, hash_option: str) -> str:
    """A requirement line naming directory (by path, or as a `name @ file:` URL) made to name its built wheel."""
    if line.split(" ")[0] == str(directory):
        line = str(wheel) + line[len(str(directory)) :]
    elif f"@ {directory.as_uri()}" in line:
        line = line.replace(f"@ {directory.as_uri()}", f"@ {wheel.as_uri()}", 1)
    else:
        return line
    return line if "--hash" in line else line + hash_option


def _plan(
    request: InstallRequest,
    inputs: RequirementSet,
    installer: Installer,
    platform: TargetPlatform,
    scratch: Path,
    env: Mapping[str, str],
) -> _Plan:
    plan = _Plan()
    locks: list[str] = []
    skip = request.outputs
    project = _clean_copy(request.source, scratch / "project", skip) if request.source is not None else None
    lock = _project_lock(request.source) if request.source is not None else None
    if request.source is not None and project is not None and lock is not None:
        locked = _locked_requirements(request.source, project, lock, platform, scratch, env, verbose=request.verbose)
        plan.requirements.add(locked)
        plan.locked_count += locked.kept
        plan.no_deps = True  # the lock is the whole closure
        locks.append(lock)
        if locked.hashed and request.requirements is not None:
            check_all_hashed(inputs, request.requirements, lock)
    plan.requirements.add(inputs)
    if inputs.hashed and request.requirements is not None:
        plan.locked_count += inputs.kept
        locks.append(
            f"{request.requirements.name}" + ("" if PYLOCK_NAME.match(request.requirements.name) else " (hashes)")
        )
    _build_local_projects(plan, installer, platform, scratch, env, skip, verbose=request.verbose)
    if project is not None:
        plan.project_wheel = _build_project(project, installer, scratch / "built", env, verbose=request.verbose)
    plan.lock = " + ".join(locks) or None
    return plan


def check_all_hashed(inputs: RequirementSet, requirements: Path, lock: str) -> None:
    """A hash-pinned lock puts the installer in hash-checking mode for every line: extra requirements need hashes."""
    unhashed = [line for line in inputs.lines if not line.startswith("-") and "--hash" not in line]
    if not unhashed:
        return
    shown = ", ".join(unhashed[:3]) + (f" and {len(unhashed) - 3} more" if len(unhashed) > 3 else "")
    raise InstallError(
        f"{requirements} has requirements without hashes ({shown}), but {lock} pins every package by hash and an "
        "install checks hashes for all or none — add hashes to it (uv pip compile --generate-hashes, or pip-compile "
        "--generate-hashes), or move these requirements into the project's dependencies and lock again"
    )


def _install_command(
    plan: _Plan, installer: Installer, platform: TargetPlatform, staging: Path, scratch: Path
) -> list[str]:
    requirements = scratch / "install-requirements.txt"
    lines = [str(wheel) for wheel in plan.wheels]  # wheels first: pip ignores a wheel after a same-name requirement
    if plan.project_wheel is not None:
        hash_option = f" --hash=sha256:{_file_digest(plan.project_wheel)}" if plan.require_hashes else ""
        lines.append(f"{plan.project_wheel}{hash_option}")
    lines += plan.requirements.lines
    if plan.requirements.constraints:
        constraints = scratch / "constraints.txt"
        constraints.write_text("\n".join(plan.requirements.constraints) + "\n", encoding="utf-8")
        lines.append(f"-c {constraints}")
    requirements.write_text("\n".join(lines) + "\n", encoding="utf-8")
    command = installer.install_command(platform, staging, requirements, no_deps=plan.no_deps)
    if plan.require_hashes:
        command.append("--require-hashes")
    return command


def _run_install(
    plan: _Plan,
    installer: Installer,
    platform: TargetPlatform,
    staging: Path,
    scratch: Path,
    env: Mapping[str, str],
    *,
    verbose: bool,
) -> None:
    """Install the plan; a dependency without a usable wheel gets one pure-Python source build try."""
    built: set[str] = set()
    while True:
        shutil.rmtree(staging, ignore_errors=True)
        run = _run(_install_command(plan, installer, platform, staging, scratch), env, verbose=verbose)
        if run.returncode == 0:
            return
        reason = failure_reason(run.output)
        missing = missing_wheel(run.output)
        if missing is None:
            raise InstallError(f"installing dependencies for {platform.label} with {installer.name} failed: {reason}")
        name = _canonical(missing.name)
        if not missing.exists:
            raise InstallError(f"{missing.requirement} was not found in the package index ({reason})")
        locked = _locked_line(plan, name) if plan.lock is not None else None
        if locked is not None and name not in built and len(built) < MAX_SOURCE_BUILDS:
            built.add(name)
            wheel = _build_locked_sdist(locked, platform, scratch / "sources", env, installer, verbose=verbose)
            plan.requirements.lines = [_built_line(line, locked, wheel) for line in plan.requirements.lines]
            continue
        if plan.lock is not None or name in built or len(built) >= MAX_SOURCE_BUILDS:
            raise InstallError(
                f"no wheel of {missing.requirement} for {platform.label} ({reason}) — pin a version that ships "
                f"{platform.newest_tag} wheels, or deploy to an architecture it has wheels for"
            )
        built.add(name)
        plan.wheels.append(
            _build_pure_wheel(missing, platform, scratch / "sources", env, installer, verbose=verbose, reason=reason)
        )


def _locked_line(plan: _Plan, name: str) -> str | None:
    """The plan's hash-pinned `name==version --hash=…` line for a package, if the lock pins it so."""
    for line in plan.requirements.lines:
        package = pinned_requirement(line)
        if package is not None and package.name == name:
            return line
    return None


def _built_line(line: str, locked: str, wheel: Path) -> str:
    """The locked line replaced by the wheel built from its sdist, pinned by that wheel's own hash."""
    if line != locked:
        return line
    package = pinned_requirement(locked)
    assert package is not None
    extras = f"[{','.join(package.extras)}]" if package.extras else ""
    return f"{package.name}{extras} @ {wheel.as_uri()} --hash=sha256:{_file_digest(wheel)}"
