"""The install's inputs read for the target: the requirements file (pylock.toml included) and the project's lock."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from drover.errors import InstallError
from drover.install.backends import _run, _uv, failure_reason
from drover.install.platforms import TargetPlatform, _environment
from drover.install.request import InstallRequest
from drover.locks import (
    PYLOCK_NAME,
    RequirementSet,
    poetry_lock_requirements,
    project_name,
    pylock_requirements,
    read_requirement_lines,
    read_requirements,
    uv_lock_problem,
    uv_workspace_root,
)


def _read_inputs(request: InstallRequest, platform: TargetPlatform) -> RequirementSet:
    """The requirements file read for the target (pylock.toml included); empty without one."""
    if request.requirements is None:
        return RequirementSet()
    requirements = request.requirements.resolve()
    if PYLOCK_NAME.match(requirements.name):
        result = RequirementSet(files=[requirements])
        lines = pylock_requirements(requirements, _environment(platform), platform.wheel_tags())
        result.add(
            read_requirement_lines(lines, _environment(platform), base=requirements.parent, origin=str(requirements))
        )
        return result
    return read_requirements(requirements, _environment(platform))


_UV_EXPORT_OPTIONS = ("--frozen", "--no-dev", "--no-emit-project", "--no-editable", "--no-header", "--color", "never")


def _export_uv_lock(project: Path, out: Path, env: Mapping[str, str], *, verbose: bool) -> list[str]:
    problem = uv_lock_problem(project)
    if problem is not None:
        raise InstallError(f"uv.lock does not match pyproject.toml: {problem} — run `uv lock` and commit uv.lock")
    command = [_uv(), "export", *_UV_EXPORT_OPTIONS, "--project", str(project), "--output-file", str(out)]
    return _exported(command, out, env, verbose=verbose)


def _export_uv_workspace_lock(
    member: Path, root: Path, out: Path, env: Mapping[str, str], *, verbose: bool
) -> list[str]:
    """A workspace member's locked set, exported from the workspace root's uv.lock (read only: --frozen)."""
    lock_path, pyproject = root / "uv.lock", member / "pyproject.toml"
    problem = uv_lock_problem(member, lock_path)
    if problem is not None:
        raise InstallError(
            f"{lock_path} does not match {pyproject}: {problem} — run `uv lock` in the workspace root and commit uv.lock"
        )
    name = project_name(member)
    if name is None:
        raise InstallError(f"{pyproject} has no [project] name, so {lock_path} cannot say what it needs — add one")
    command = [_uv(), "export", *_UV_EXPORT_OPTIONS, "--project", str(root), "--package", name]
    return _exported([*command, "--output-file", str(out)], out, env, verbose=verbose)


def _exported(command: Sequence[str], out: Path, env: Mapping[str, str], *, verbose: bool) -> list[str]:
    run = _run(command, env, verbose=verbose)
    if run.returncode != 0:
        raise InstallError(f"cannot export the locked set from uv.lock: {failure_reason(run.output)}")
    return out.read_text(encoding="utf-8").splitlines()


def _project_lock(project: Path) -> str | None:
    """The lock a project is installed from, relative to it: pylock.toml (the standard) first, then uv.lock (a
    workspace member's is its workspace root's, e.g. ../../uv.lock, as for uv), then poetry.lock."""
    if (project / "pylock.toml").is_file():
        return "pylock.toml"
    root = uv_workspace_root(project)
    if root is not None and (root / "uv.lock").is_file():
        return os.path.relpath(root / "uv.lock", project.resolve())
    for name in ("uv.lock", "poetry.lock"):
        if (project / name).is_file():
            return name
    return None


def _locked_requirements(
    source: Path,
    project: Path,
    lock: str,
    platform: TargetPlatform,
    scratch: Path,
    env: Mapping[str, str],
    *,
    verbose: bool,
) -> RequirementSet:
    """The project's lock read for the target: locks are read from the user's tree (errors name its files), uv
    exports from the clean copy (project), or for a workspace member from the workspace root (read only)."""
    source = source.resolve()
    base = source
    if Path(lock).name == "uv.lock" and lock != "uv.lock":
        base = (source / lock).resolve().parent
        lines = _export_uv_workspace_lock(source, base, scratch / "uv-export.txt", env, verbose=verbose)
    elif lock == "uv.lock":
        lines = _export_uv_lock(project, scratch / "uv-export.txt", env, verbose=verbose)
    elif lock == "poetry.lock":
        lines = poetry_lock_requirements(source)
    else:
        lines = pylock_requirements(source / lock, _environment(platform), platform.wheel_tags())
    origin = os.path.normpath(source / lock)
    return read_requirement_lines(lines, _environment(platform), base=base, origin=origin)
