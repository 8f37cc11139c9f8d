"""The install path: its marker, replacing it with a fresh install, and the install() entry points."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from drover.install.audit import (
    _dist_infos,
    check_dependencies,
    check_no_local_links,
    check_not_empty,
    exclude_runtime_packages,
    normalize_metadata,
    project_files,
    verify_platform,
)
from drover.install.backends import Installer, find_installer, installer_env
from drover.install.build import _build_project
from drover.install.inputs import _project_lock, _read_inputs
from drover.install.key import DEPENDENCY_KEY_SKIP, install_key
from drover.install.plan import _Plan, _plan, _run_install
from drover.install.platforms import TargetPlatform, target_platform
from drover.install.request import InstallRequest, InstallResult, check_request
from drover.install.sources import _clean_copy
from drover.io import format_file_size
from drover.packaging import INSTALL_MARKER

logger = logging.getLogger("drover")


DEPENDENCIES_LAYER = "dependencies_layer"  # the marker's record of the layer version holding a project-only install's


DEPENDENCIES_CODE_SHA256 = "dependencies_code_sha256"  # dependencies, and Lambda's CodeSha256 of that layer


def read_marker(target: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((target / INSTALL_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


@dataclass(frozen=True)
class DependenciesElsewhere:
    """An install path that holds only the project: its dependencies are in a layer version (when recorded)."""

    layer_arn: str | None
    code_sha256: str | None  # Lambda's CodeSha256 of that layer version when it was recorded


def dependencies_elsewhere(target: Path) -> DependenciesElsewhere | None:
    """What an install path's marker says of a project-only install (None: the path holds its dependencies)."""
    marker = read_marker(target)
    if marker is None or marker.get("dependencies") != DEPENDENCY_KEY_SKIP:
        return None
    arn, sha256 = marker.get(DEPENDENCIES_LAYER), marker.get(DEPENDENCIES_CODE_SHA256)
    return DependenciesElsewhere(arn if isinstance(arn, str) else None, sha256 if isinstance(sha256, str) else None)


def _marker_matches(marker: dict[str, Any] | None, key: str, target: Path) -> bool:
    if marker is None or marker.get("key") != key:
        return False
    entries = marker.get("entries")
    return isinstance(entries, list) and all((target / str(name)).exists() for name in entries)


def replace_target(staging: Path, target: Path, trash: Path) -> None:
    """Put the fresh install in place of the target, leaving nothing of the old one."""
    if not target.exists():
        staging.rename(target)
        return
    try:
        target.rename(trash)
    except OSError:  # e.g. a mount point: empty it and move the new entries in
        for entry in target.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
        for entry in staging.iterdir():
            shutil.move(entry, target / entry.name)
        return
    staging.rename(target)


def _write_marker(root: Path, data: dict[str, Any]) -> None:
    entries = sorted(entry.name for entry in root.iterdir())
    (root / INSTALL_MARKER).write_text(json.dumps({**data, "entries": entries}, indent=2) + "\n", encoding="utf-8")


def _describe(request: InstallRequest) -> str:
    parts = [f"project {request.source}" if request.source else "", str(request.requirements or "")]
    return " and ".join(part for part in parts if part) or "nothing"


def _skipped(marker: dict[str, Any], installer: Installer, key: str, started: float) -> InstallResult:
    logger.info("Install unchanged (key %s); skipping", key[:12])
    return InstallResult(
        skipped=True,
        installer=installer.name,
        lock=marker.get("lock"),
        key=key,
        excluded_packages=tuple(marker.get("excluded_packages", ())),
        excluded_bytes=int(marker.get("excluded_bytes", 0)),
        seconds=time.perf_counter() - started,
    )


def holds_this_install(request: InstallRequest, installer: str = "auto") -> bool:
    """Whether request.target already holds this very install (its marker matches): install() would keep it."""
    marker = read_marker(request.target)
    if marker is None:
        return False
    platform = target_platform(request.runtime, request.architecture)
    check_request(request)
    chosen = find_installer(installer)
    key = install_key(request, platform, chosen, installer_env(), _read_inputs(request, platform))
    return _marker_matches(marker, key, request.target)


def install(
    request: InstallRequest,
    *,
    installer: str = "auto",
    dependencies: bool = True,
    dependencies_layer: tuple[str, str] | None = None,
) -> InstallResult:
    """Install the request's project and/or requirements into its target for Lambda's platform.

    dependencies=False (the dependency key matches the attached layer): the target gets only the project,
    built and installed without its dependencies, so packaging sees exactly the function code; a target
    that already holds this very install (same key) is kept as it is. dependencies_layer (ARN, digest) is the
    layer version (ARN, Lambda's CodeSha256) that holds the dependencies: the target records it, so a later run
    over it keeps that very layer.
    """
    started = time.perf_counter()
    platform = target_platform(request.runtime, request.architecture)
    check_request(request)
    chosen = find_installer(installer)
    env = installer_env()
    inputs = _read_inputs(request, platform)
    key = install_key(request, platform, chosen, env, inputs)
    marker = read_marker(request.target)
    if marker is not None and _marker_matches(marker, key, request.target):
        return _skipped(marker, chosen, key, started)
    if not dependencies:
        return _install_project_only(request, platform, chosen, env, key, started, dependencies_layer)
    logger.info(
        "Installing %s for %s with %s %s into %s",
        _describe(request),
        platform.label,
        chosen.name,
        chosen.version,
        request.target,
    )
    request.target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".drover-install-", dir=request.target.parent) as work:
        staging, scratch = Path(work).resolve() / "target", Path(work).resolve() / "scratch"
        scratch.mkdir()
        plan = _plan(request, inputs, chosen, platform, scratch, env)
        if plan.lock is not None:
            logger.info("Using lock %s (%d pinned packages)", plan.lock, plan.locked_count)
        _run_install(plan, chosen, platform, staging, scratch, env, verbose=request.verbose)
        staging.mkdir(exist_ok=True)  # an empty requirement set installs nothing
        check_not_empty(staging, plan, platform)
        check_no_local_links(staging)
        verify_platform(staging, platform)
        check_dependencies(staging, platform, plan, chosen)
        normalize_metadata(staging)
        excluded, freed = exclude_runtime_packages(staging) if request.exclude_runtime_packages else ((), 0)
        if excluded:
            logger.info("Excluded runtime-provided packages %s: %s saved", ", ".join(excluded), format_file_size(freed))
        count = len(_dist_infos(staging))
        own_files = project_files(staging, plan.project_wheel) if plan.project_wheel is not None else []
        _write_marker(
            staging,
            {
                "key": key,
                "installer": chosen.name,
                "installer_version": chosen.version,
                "runtime": request.runtime,
                "platform": platform.newest_tag,
                "lock": plan.lock,
                "excluded_packages": list(excluded),
                "excluded_bytes": freed,
                "project_files": own_files,
            },
        )
        replace_target(staging, request.target, Path(work).resolve() / "old")
    seconds = time.perf_counter() - started
    logger.info("Installed %d distributions with %s in %.1f s (key %s)", count, chosen.name, seconds, key[:12])
    return InstallResult(False, chosen.name, plan.lock, key, excluded, freed, seconds)


def _install_project_only(
    request: InstallRequest,
    platform: TargetPlatform,
    installer: Installer,
    env: Mapping[str, str],
    key: str,
    started: float,
    dependencies_layer: tuple[str, str] | None = None,
) -> InstallResult:
    """The target holds the project alone (or nothing, with only --requirements): its dependencies are in the
    attached layer already, which the dependency key proved; the target records that layer."""
    layer_arn, layer_sha256 = dependencies_layer or ("", "")
    project_key = hashlib.sha256(f"project only\0{key}\0{layer_arn}\0{layer_sha256}".encode()).hexdigest()
    marker = read_marker(request.target)
    if marker is not None and _marker_matches(marker, project_key, request.target):
        logger.info("Project install unchanged (key %s); skipping", project_key[:12])
        return InstallResult(True, installer.name, _lock_names(request), project_key, (), 0, 0.0, True)
    request.target.parent.mkdir(parents=True, exist_ok=True)
    own_files: list[str] = []
    with tempfile.TemporaryDirectory(prefix=".drover-install-", dir=request.target.parent) as work:
        staging, scratch = Path(work).resolve() / "target", Path(work).resolve() / "scratch"
        scratch.mkdir()
        if request.source is not None:
            logger.info("Installing project %s without its dependencies (%s)", request.source, DEPENDENCY_KEY_SKIP)
            project = _clean_copy(request.source, scratch / "project", request.outputs)
            wheel = _build_project(project, installer, scratch / "built", env, verbose=request.verbose)
            plan = _Plan(no_deps=True, project_wheel=wheel)
            _run_install(plan, installer, platform, staging, scratch, env, verbose=request.verbose)
            check_no_local_links(staging)
            verify_platform(staging, platform)
            normalize_metadata(staging)
            own_files = project_files(staging, wheel)
        staging.mkdir(exist_ok=True)
        _write_marker(
            staging,
            {
                "key": project_key,
                "installer": installer.name,
                "installer_version": installer.version,
                "runtime": request.runtime,
                "platform": platform.newest_tag,
                "lock": _lock_names(request),
                "dependencies": DEPENDENCY_KEY_SKIP,
                DEPENDENCIES_LAYER: layer_arn or None,
                DEPENDENCIES_CODE_SHA256: layer_sha256 or None,
                "project_files": own_files,
            },
        )
        replace_target(staging, request.target, Path(work).resolve() / "old")
    return InstallResult(
        False, installer.name, _lock_names(request), project_key, (), 0, time.perf_counter() - started, True
    )


def _lock_names(request: InstallRequest) -> str | None:
    names = [_project_lock(request.source) if request.source is not None else None]
    names.append(request.requirements.name if request.requirements is not None else None)
    return " + ".join(name for name in names if name) or None
