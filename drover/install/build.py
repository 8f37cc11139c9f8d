"""Wheels built locally: the project, local project directories, locked sdists, and pure-Python fallbacks
of dependencies without a usable wheel."""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Mapping
from pathlib import Path

from drover.errors import InstallError
from drover.install.backends import (
    Installer,
    MissingWheel,
    _pip_env,
    _pip_env_for_uv_settings,
    _run,
    backend_reason,
    failure_reason,
)
from drover.install.platforms import TargetPlatform, is_pure_wheel, runs_on
from drover.locks import pinned_requirement

logger = logging.getLogger("drover")


def _build_pure_wheel(
    missing: MissingWheel,
    platform: TargetPlatform,
    out_dir: Path,
    env: Mapping[str, str],
    installer: Installer,
    *,
    verbose: bool,
    reason: str,
) -> Path:
    """Build a dependency without a usable wheel from source; only a pure-Python result is usable."""
    if importlib.util.find_spec("pip") is None:
        raise InstallError(
            f"no wheel of {missing.name} for {platform.label} ({reason}); pip is needed to try a source build"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    before = set(out_dir.glob("*.whl"))
    options = ["--no-deps", f"--no-binary={missing.name}", "--ignore-requires-python", "--disable-pip-version-check"]
    command = [sys.executable, "-m", "pip", "wheel", *options, "--wheel-dir", str(out_dir), missing.requirement]
    pip_env = _pip_env_for_uv_settings(env) if installer.name == "uv" else env
    run = _run(command, pip_env, verbose=verbose)
    built = sorted(set(out_dir.glob("*.whl")) - before)
    if run.returncode != 0 or not built:
        cause = backend_reason(run.output) or reason
        raise InstallError(
            f"no wheel of {missing.name} for {platform.label}, and no source distribution of it builds ({cause})"
        )
    wheel = built[0]
    if not is_pure_wheel(wheel.name):
        raise InstallError(
            f"no wheel of {missing.name} for {platform.label}; its source builds {wheel.name}, which is not a "
            f"pure-Python wheel, so it must be built for Lambda's platform (use a version that ships "
            f"{platform.newest_tag} wheels)"
        )
    logger.info("Built %s from source as a pure-Python wheel (no wheel for %s)", wheel.name, platform.label)
    return wheel


def _build_wheel(source: Path, installer: Installer, out_dir: Path, env: Mapping[str, str], *, verbose: bool) -> Path:
    """Build one wheel of a (clean copy of a) project; the failure is the backend's own reason in one line."""
    run = _run(installer.build_command(source, out_dir), env, verbose=verbose)
    wheels = sorted(out_dir.glob("*.whl"))
    if run.returncode != 0 or not wheels:
        summary = failure_reason(run.output)
        reason = backend_reason(run.output)
        detail = f"{reason} ({summary})" if reason and reason not in summary else summary
        raise InstallError(f"{detail} — run with -v for the build output")
    return wheels[0]


def _build_project(source: Path, installer: Installer, out_dir: Path, env: Mapping[str, str], *, verbose: bool) -> Path:
    try:
        wheel = _build_wheel(source, installer, out_dir, env, verbose=verbose)
    except InstallError as error:
        raise InstallError(f"building the project failed: {error}") from None
    if not is_pure_wheel(wheel.name):
        raise InstallError(
            f"the project builds {wheel.name}, a platform-specific wheel; drover installs the "
            f"project as pure Python, so build compiled code for Lambda's platform as a separate dependency"
        )
    return wheel


def _build_local_project(
    copy: Path,
    directory: Path,
    where: str,
    installer: Installer,
    platform: TargetPlatform,
    out_dir: Path,
    env: Mapping[str, str],
    *,
    verbose: bool,
) -> Path:
    try:
        wheel = _build_wheel(copy, installer, out_dir, env, verbose=verbose)
    except InstallError as error:
        raise InstallError(f"{where}: building {directory} failed: {error}") from None
    if not runs_on(wheel.name, platform):
        raise InstallError(
            f"{where}: {directory} builds {wheel.name}, native code for this machine that does not run on "
            f"{platform.label} — build its wheel for Lambda's platform and name the wheel instead"
        )
    logger.info("Built %s from %s", wheel.name, directory)
    return wheel


def _build_locked_sdist(
    line: str, platform: TargetPlatform, out_dir: Path, env: Mapping[str, str], installer: Installer, *, verbose: bool
) -> Path:
    """Build a locked package that has no wheel for the target from its locked sdist (pip checks the sdist's bytes
    against the lock's hashes; the backend's build requirements go into an isolated environment); only a pure-Python
    wheel is accepted."""
    package = pinned_requirement(line)
    assert package is not None  # _locked_line found it
    pinned = f"{package.name}=={package.version}"
    out_dir.mkdir(parents=True, exist_ok=True)
    requirement = out_dir / f"{package.name}.txt"
    requirement.write_text(line + "\n", encoding="utf-8")
    before = set(out_dir.glob("*.whl"))
    options = ["--no-deps", f"--no-binary={package.name}", "--require-hashes", "--ignore-requires-python"]
    command = [sys.executable, "-m", "pip", "wheel", *options, "--disable-pip-version-check"]
    run = _run(
        [*command, "--wheel-dir", str(out_dir), "-r", str(requirement)], _pip_env(env, installer), verbose=verbose
    )
    built = sorted(set(out_dir.glob("*.whl")) - before)
    if run.returncode != 0 or not built:
        why = "its bytes do not match the lock's hashes" if "DO NOT MATCH THE HASHES" in run.output else None
        raise InstallError(
            f"no wheel of {pinned} for {platform.label}, and its locked source distribution does not build "
            f"({why or backend_reason(run.output) or failure_reason(run.output)}) — lock a version that ships "
            f"{platform.newest_tag} wheels"
        )
    if not is_pure_wheel(built[0].name):
        raise InstallError(
            f"no wheel of {pinned} for {platform.label}, and its locked source distribution builds {built[0].name}, "
            f"native code for this machine that does not run on Lambda — lock a version that ships "
            f"{platform.newest_tag} wheels"
        )
    logger.info("Built %s from its locked source distribution (no wheel for %s)", built[0].name, platform.label)
    return built[0]
