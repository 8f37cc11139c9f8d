"""The install key (exactly the inputs: an unchanged install is skipped) and the dependency key (the locked
set: what the requirements layer holds)."""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from drover.install.audit import RUNTIME_PACKAGES
from drover.install.backends import Installer, _uv_version, find_installer, installer_env
from drover.install.inputs import _locked_requirements, _project_lock, _read_inputs
from drover.install.platforms import TargetPlatform, target_platform
from drover.install.request import InstallRequest
from drover.install.sources import _clean_copy, _file_digest, _tree_digest, build_inputs
from drover.locks import PYLOCK_NAME, PinnedPackage, RequirementSet, pinned_packages, project_references

KEY_FORMAT = 2  # 2: keyed on exactly the inputs (issue 12)


# Bump whenever drover would lay out or archive the same wheels differently (install options, metadata
# normalization, exclusions, the layer's python/ prefix, archive format): it is part of the dependency key.
LAYOUT_VERSION = 1


DEPENDENCY_KEY_SKIP = "dependency key matches the attached layer"


# Installer settings that change what gets installed, so they are part of the key.
KEYED_ENV_WORDS = ("INDEX", "FIND_LINKS", "CONFIG", "CONSTRAINT", "OVERRIDE", "PRE", "EXCLUDE_NEWER")


def _reference_digest(path: Path, skip: Sequence[Path]) -> str:
    if path.is_dir():
        return _tree_digest(path, build_inputs(path, skip))
    return _file_digest(path) if path.is_file() else "missing"


def _config_files(env: Mapping[str, str]) -> list[Path]:
    """pip's and uv's configuration files in effect: they can name indexes, find-links and constraints."""
    named = [Path(env[name]) for name in ("PIP_CONFIG_FILE", "UV_CONFIG_FILE") if name in env]
    home = Path(env.get("HOME", "~")).expanduser()
    config_home = Path(env.get("XDG_CONFIG_HOME", home / ".config"))
    usual = [Path("/etc/pip.conf"), Path("/etc/xdg/pip/pip.conf"), config_home / "pip" / "pip.conf"]
    usual += [home / ".pip" / "pip.conf", Path("/etc/uv/uv.toml"), config_home / "uv" / "uv.toml"]
    return [path for path in dict.fromkeys([*named, *usual]) if path.is_file()]


def install_key(
    request: InstallRequest,
    platform: TargetPlatform,
    installer: Installer,
    env: Mapping[str, str],
    inputs: RequirementSet | None = None,
) -> str:
    """sha256 over exactly what decides an install: the requirement files and everything they name (local
    wheels, directories, find-links), the project's build inputs, target platform, tools and index settings."""
    inputs = inputs if inputs is not None else _read_inputs(request, platform)
    skip = request.outputs
    digest = hashlib.sha256()
    settings = {
        "format": KEY_FORMAT,
        "runtime": request.runtime,
        "platform": platform.uv_platform,
        "installer": [installer.name, installer.version],
        "uv": _uv_version(),
        "python": sys.version,
        "exclude_runtime_packages": request.exclude_runtime_packages,
        "env": sorted(
            (name, value)
            for name, value in env.items()
            if name.startswith(("PIP_", "UV_")) and any(word in name for word in KEYED_ENV_WORDS)
        ),
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in [*_config_files(env), *inputs.files]:
        digest.update(f"\0file\0{path}\0{_file_digest(path)}".encode())
    references = set(inputs.references)
    if request.source is not None:
        references.update(project_references(request.source))
    for path in sorted(references):
        digest.update(f"\0reference\0{path}\0{_reference_digest(path, skip)}".encode())
    if request.source is not None:
        source = request.source.resolve()
        digest.update(f"\0source\0{_tree_digest(source, build_inputs(source, skip))}".encode())
    return digest.hexdigest()


def locked_set(request: InstallRequest, platform: TargetPlatform, env: Mapping[str, str]) -> list[PinnedPackage] | None:
    """Every package the install would put in the tree, from the lock alone (markers judged for the target), or
    None when the inputs are not an exact lock: a requirements file with every line ==-pinned with --hash, a
    pylock.toml, or the --install-source project's uv.lock / poetry.lock / pylock.toml (the project itself is
    not in the lock: it is function code)."""
    requirements = RequirementSet()
    if request.source is not None:
        lock = _project_lock(request.source)
        if lock is None:
            return None
        with tempfile.TemporaryDirectory(prefix=".drover-key-") as scratch:
            # read from a clean copy, as the install does: uv then sees no workspace around the user's tree
            project = _clean_copy(request.source, Path(scratch) / "project", request.outputs)
            requirements.add(
                _locked_requirements(request.source, project, lock, platform, Path(scratch), env, verbose=False)
            )
    if request.requirements is not None:
        inputs = _read_inputs(request, platform)
        if not inputs.hashed and not PYLOCK_NAME.match(request.requirements.name):
            return None
        requirements.add(inputs)
    return pinned_packages(requirements)


def dependency_key(request: InstallRequest, installer: str = "auto") -> str | None:
    """sha256 over everything that decides the requirements layer's bytes when the dependencies are an exact
    lock: the locked set for the target (names, versions, artifact hashes), runtime, architecture, platform tags,
    the installer, runtime-package exclusion, package_exclude_patterns and drover's LAYOUT_VERSION. None
    without an exact lock (or with nothing to install)."""
    if request.requirements is None and request.source is None:
        return None
    platform = target_platform(request.runtime, request.architecture)
    chosen = find_installer(installer)
    packages = locked_set(request, platform, installer_env())
    if packages is None:
        return None
    return dependency_key_of(packages, request, platform, chosen)


def dependency_key_of(
    packages: Sequence[PinnedPackage], request: InstallRequest, platform: TargetPlatform, installer: Installer
) -> str:
    document = {
        "layout": LAYOUT_VERSION,
        "runtime": request.runtime,
        "architecture": request.architecture,
        "python_version": platform.python_version,
        "platform_tags": platform.pip_platforms(),
        "installer": [installer.name, installer.version],
        "exclude_runtime_packages": list(RUNTIME_PACKAGES) if request.exclude_runtime_packages else False,
        "package_exclude_patterns": list(request.package_exclude_patterns),
        "packages": [[p.name, p.version, list(p.hashes), list(p.extras)] for p in sorted(packages)],
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
