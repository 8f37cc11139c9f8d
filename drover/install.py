"""Platform-aware dependency install into the install path: uv fast path, pip fallback.

The install targets Lambda's platform, not the machine drover runs on: CPython of the
stage's runtime on manylinux for its architecture (glibc 2.17 tags for python3.8-3.11,
up to 2.34 for python3.12+; see DESIGN.md). Dependencies come as wheels only; one
without a usable wheel is built locally only when that gives a pure-Python wheel.

Exact for the target: requirement files and locks (uv.lock, poetry.lock, pylock.toml) are read
by drover.locks with environment markers judged for Lambda's Python, so pip and uv see the same
marker-free lines; after the install every Requires-Dist of every installed distribution must be
met inside the tree, editable links to this machine are refused, and inputs that name packages
but install none are an error. The project is built from a clean temporary copy of its build
inputs, so the user's tree is never written to; its own installed files are recorded in the
marker so packaging puts them with the function code.

Every install goes into a fresh directory that then replaces the target, so files of
removed packages never linger. A key over exactly the inputs (requirement files and what
they name, the project's build inputs, platform, tools and index settings) is stored in the
target; an unchanged key skips the install. Installers run without AWS credentials in their
environment.

pip and uv give the same file names for the same inputs once their bookkeeping is
normalized (`normalize_metadata`: REQUESTED, direct_url.json, uv_cache.json and uv's
.lock removed, pip's ../../bin RECORD paths made relative to the install path); what
still differs is content only: INSTALLER ("pip"/"uv"), RECORD rows and the interpreter
path in console-script shebangs. pip judges the markers of dependencies' Requires-Dist by
the host's interpreter (uv by the target); the Requires-Dist check stops a pip install that
missed one. uv also accepts plain linux_* wheels for a manylinux target, which
`verify_platform` rejects after the install.
"""

from __future__ import annotations

import csv
import email.parser
import functools
import hashlib
import importlib.metadata
import importlib.util
import io
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from drover.errors import InstallError, did_you_mean
from drover.io import format_file_size
from drover.locks import (
    PYLOCK_NAME,
    PinnedPackage,
    RequirementSet,
    marker_applies,
    marker_environment,
    pinned_packages,
    pinned_requirement,
    poetry_lock_requirements,
    project_name,
    project_references,
    pylock_requirements,
    read_requirement_lines,
    read_requirements,
    uv_lock_problem,
    uv_workspace_root,
)
from drover.packaging import INSTALL_MARKER

logger = logging.getLogger("drover")

KEY_FORMAT = 2  # 2: keyed on exactly the inputs (issue 12)
# Bump whenever drover would lay out or archive the same wheels differently (install options, metadata
# normalization, exclusions, the layer's python/ prefix, archive format): it is part of the dependency key.
LAYOUT_VERSION = 1
DEPENDENCY_KEY_SKIP = "dependency key matches the attached layer"
DEPENDENCIES_LAYER = "dependencies_layer"  # the marker's record of the layer version holding a project-only install's
DEPENDENCIES_CODE_SHA256 = "dependencies_code_sha256"  # dependencies, and Lambda's CodeSha256 of that layer
# Packages the Lambda Python runtime already ships (canonical distribution names).
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "python-dateutil", "s3transfer", "six", "urllib3")
# Environment variables never handed to an installer or a build backend.
SECRET_ENV_PREFIXES = ("AWS_", "ACTIONS_ID_TOKEN_REQUEST_", "ACTIONS_RUNTIME_TOKEN")
# Installer settings that change what gets installed, so they are part of the key.
KEYED_ENV_WORDS = ("INDEX", "FIND_LINKS", "CONFIG", "CONSTRAINT", "OVERRIDE", "PRE", "EXCLUDE_NEWER")
# Bookkeeping that differs between pip and uv (or between runs) and is useless on Lambda.
VOLATILE_METADATA = ("REQUESTED", "direct_url.json", "uv_cache.json")
SKIPPED_SOURCE_DIRS = ("__pycache__", "build", "dist", "node_modules", "site-packages", "htmlcov")
# Files a test or coverage run (or drover's own --archive-dir) writes into a project: never build inputs.
JUNK_FILE = re.compile(
    r"^(\.coverage.*|coverage\.(xml|json)|junit.*\.xml|.*-report\.(xml|html|json)|.*\.py[co]|.*\.log"
    r"|function\.zip|requirements\.zip)$"
)
MAX_SOURCE_BUILDS = 10
LOCK_NAMES = ("pylock.toml", "uv.lock", "poetry.lock")
_RUNTIME = re.compile(r"^python3\.(\d{1,2})$")
_ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
_MIN_GLIBC_MINOR = {"x86_64": 5, "aarch64": 17}
_LEGACY_MANYLINUX = {5: "manylinux1", 12: "manylinux2010", 17: "manylinux2014"}
_UV_MISSING = re.compile(
    r"(?P<req>(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(?:==(?P<version>[^\s,]+))?)"
    r" (?:has no (?:usable )?wheels|was not found in)"
)
_PIP_MISSING = re.compile(r"No matching distribution found for (?P<req>.+?)(?: \(from .*\))?$", re.MULTILINE)
_PIP_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*")
# uv's error report: plain "error:"/"cause:" lines when not on a terminal, else "\u00d7" and "\u2570\u2500\u25b6".
# A build backend's exception as its traceback ends: "ValueError: No file/folder found for package app".
_BACKEND_ERROR = re.compile(r"^(?P<kind>(?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception))\s*:\s*(?P<message>\S.*)$")
_CAUSE_PREFIXES = ("cause:", "\u2570\u2500\u25b6")
_ERROR_PREFIXES = ("ERROR:", "error:", "\u00d7")


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


@dataclass(frozen=True)
class TargetPlatform:
    """Lambda's interpreter and platform for one runtime and architecture."""

    runtime: str
    architecture: str  # Lambda's name: x86_64 | arm64
    python_version: str
    arch: str  # the wheel tags' name: x86_64 | aarch64
    glibc_minor: int

    @property
    def uv_platform(self) -> str:
        return f"{self.arch}-manylinux_2_{self.glibc_minor}"

    @property
    def newest_tag(self) -> str:
        return f"manylinux_2_{self.glibc_minor}_{self.arch}"

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.architecture} ({self.newest_tag} or older)"

    def pip_platforms(self) -> list[str]:
        """Every compatible platform tag, most preferred first (uv's order for the same target)."""
        tags: list[str] = []
        for minor in range(self.glibc_minor, _MIN_GLIBC_MINOR[self.arch] - 1, -1):
            tags.append(f"manylinux_2_{minor}_{self.arch}")
            legacy = _LEGACY_MANYLINUX.get(minor)
            if legacy is not None:
                tags.append(f"{legacy}_{self.arch}")
        return tags

    def allows(self, platform_tag: str) -> bool:
        return platform_tag == "any" or platform_tag in self.pip_platforms()

    def wheel_tags(self) -> list[Tag]:
        """Every wheel tag Lambda's interpreter accepts, most preferred first (as pip orders them)."""
        version = tuple(int(part) for part in self.python_version.split("."))
        interpreter = f"cp{version[0]}{version[1]}"
        tags = list(cpython_tags(version, platforms=self.pip_platforms()))
        return tags + list(compatible_tags(version, interpreter, self.pip_platforms()))


def target_platform(runtime: str, architecture: str) -> TargetPlatform:
    match = _RUNTIME.match(runtime)
    if match is None or int(match[1]) < 8:
        raise InstallError(f"cannot install for runtime {runtime!r}: expected python3.8 or later, e.g. python3.12")
    if architecture not in _ARCHITECTURES:
        raise InstallError(f"cannot install for architecture {architecture!r}: expected x86_64 or arm64")
    minor = int(match[1])
    glibc_minor = 17 if minor <= 11 else 34
    return TargetPlatform(runtime, architecture, f"3.{minor}", _ARCHITECTURES[architecture], glibc_minor)


@dataclass(frozen=True)
class Installer:
    name: str
    command: tuple[str, ...]
    version: str

    def install_command(
        self, platform: TargetPlatform, target: Path, requirements: Path, *, no_deps: bool
    ) -> list[str]:
        if self.name == "uv":
            args = [*self.command, "pip", "install", "--python", sys.executable, "--target", str(target)]
            args += ["--python-platform", platform.uv_platform, "--python-version", platform.python_version]
            # uv's default link mode (hard links into its cache on Linux; UV_LINK_MODE=copy to avoid):
            # about 2.5x faster than copying here. drover never edits an installed file in place.
            args += ["--only-binary", ":all:", "--color", "never"]
        else:
            args = [*self.command, "install", "--target", str(target), "--no-compile", "--only-binary=:all:"]
            args += ["--python-version", platform.python_version, "--implementation", "cp"]
            args += [f"--platform={tag}" for tag in platform.pip_platforms()]
            args += ["--no-input", "--no-color", "--progress-bar", "off", "--disable-pip-version-check"]
        if no_deps:
            args.append("--no-deps")
        return [*args, "-r", str(requirements)]

    def build_command(self, source: Path, out_dir: Path) -> list[str]:
        if self.name == "uv":
            options = ["build", "--wheel", "--color", "never", "--python", sys.executable, "--out-dir"]
        else:
            options = ["wheel", "--no-deps", "--no-color", "--disable-pip-version-check", "--wheel-dir"]
        # absolute: pip reads a bare relative name such as "app" as a package name
        return [*self.command, *options, str(out_dir), str(source.resolve())]


def find_uv() -> str | None:
    try:
        import uv  # the uv package ships the binary and tells where it is
    except ImportError:
        return shutil.which("uv")
    try:
        return str(uv.find_uv_bin())
    except FileNotFoundError:
        return shutil.which("uv")


@functools.cache  # one `uv --version` per process: the skip path stays a few milliseconds
def _uv_installer() -> Installer | None:
    binary = find_uv()
    if binary is None:
        return None
    try:
        output = subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return Installer("uv", (binary,), output.split()[1] if len(output.split()) > 1 else output.strip())


def _pip_installer() -> Installer | None:
    if importlib.util.find_spec("pip") is None:
        return None
    return Installer("pip", (sys.executable, "-m", "pip"), importlib.metadata.version("pip"))


def find_installer(choice: str = "auto") -> Installer:
    """The installer to use: for "auto" uv when available, else pip; "uv" or "pip": that one."""
    if choice not in ("auto", "uv", "pip"):
        raise InstallError(f"unknown installer {choice!r}: expected auto, uv or pip")
    found = None
    if choice in ("auto", "uv"):
        found = _uv_installer()
    if found is None and choice in ("auto", "pip"):
        found = _pip_installer()
    if found is None:
        wanted = "uv or pip" if choice == "auto" else choice
        raise InstallError(f"no installer available: {wanted} is not installed for {sys.executable}")
    return found


def installer_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for installers: no AWS credentials, but pip/uv settings and proxies kept."""
    source = os.environ if environ is None else environ
    env = {name: value for name, value in source.items() if not name.upper().startswith(SECRET_ENV_PREFIXES)}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", UV_PYTHON_DOWNLOADS="never")
    _share_ca_bundle(env)
    return env


# A CA bundle given in any of these (e.g. for a TLS-intercepting proxy) is given to both installers:
# uv reads only SSL_CERT_FILE (else it trusts its built-in roots), pip's requests REQUESTS_CA_BUNDLE.
CA_BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE")


def _share_ca_bundle(env: dict[str, str]) -> None:
    bundle = next((env[name] for name in CA_BUNDLE_VARIABLES if env.get(name)), None)
    if bundle is not None:
        for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            if not env.get(name):
                env[name] = bundle


def _pip_env_for_uv_settings(env: Mapping[str, str]) -> dict[str, str]:
    """pip builds the pure-Python fallback wheels; give it the index settings given to uv."""
    pip_env = dict(env)
    pairs = {
        "UV_INDEX_URL": "PIP_INDEX_URL",
        "UV_DEFAULT_INDEX": "PIP_INDEX_URL",
        "UV_EXTRA_INDEX_URL": "PIP_EXTRA_INDEX_URL",
        "UV_FIND_LINKS": "PIP_FIND_LINKS",
    }
    for uv_name, pip_name in pairs.items():
        if uv_name in env and pip_name not in pip_env:
            pip_env[pip_name] = env[uv_name].replace(",", " ")
    return pip_env


# --- install key ---------------------------------------------------------------------------------


def _git_files(source: Path) -> list[str] | None:
    """The files git would keep (tracked, or untracked and not ignored) under source, or None outside git."""
    git = shutil.which("git")
    if git is None:
        return None
    command = [git, "-C", str(source), "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    try:
        completed = subprocess.run(command, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if completed.returncode != 0:
        return None
    return sorted({name for name in completed.stdout.decode("utf-8", "replace").split("\0") if name})


def _walked_files(source: Path, skipped: Identities) -> list[str]:
    """Every file under source, and every link to a directory (never followed: it is checked like a file); the
    skipped directories (by device and inode) are not entered."""
    names = []
    for directory, dir_names, file_names in os.walk(source):
        here = Path(directory)
        kept = [name for name in dir_names if not _is_junk(f"{name}/x") and not (here / name / "pyvenv.cfg").exists()]
        links = [name for name in kept if (here / name).is_symlink()]
        dir_names[:] = sorted(name for name in kept if name not in links and _identity(here / name) not in skipped)
        names += [(here / name).relative_to(source).as_posix() for name in [*file_names, *links]]
    return sorted(names)


Identities = frozenset[tuple[int, int]]


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def _identities(directories: Sequence[Path]) -> Identities:
    """(device, inode) of each existing directory: skipped wherever a walk meets it, by whatever name or link."""
    return frozenset(found for path in directories if path.is_dir() and (found := _identity(path)) is not None)


def _in_skipped(source: Path, name: str, skipped: Identities, seen: dict[str, bool]) -> bool:
    """Whether a directory on the way to name (relative to source) is a skipped one; seen caches each directory."""
    parts = name.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        directory = "/".join(parts[:depth])
        if directory not in seen:
            seen[directory] = _identity(source / directory) in skipped
        if seen[directory]:
            return True
    return False


def _is_junk(relative_name: str) -> bool:
    parts = relative_name.split("/")
    directories, name = parts[:-1], parts[-1]
    return (
        any(part.startswith(".") or part in SKIPPED_SOURCE_DIRS or part.endswith(".egg-info") for part in directories)
        or JUNK_FILE.match(name) is not None
    )


def build_inputs(source: Path, skip: Sequence[Path] = ()) -> list[str]:
    """The project's build inputs (relative POSIX names): what git keeps, or every file, minus junk such
    as caches, build output, virtual environments and test or coverage reports, and the directories in skip (the
    run's outputs, known by device and inode, so by any name or link). Links are followed only inside
    the project: one that resolves outside it is refused, a dangling one (or a loop) is no input."""
    source = source.resolve()
    skipped = _identities(skip)
    names = _git_files(source)
    if names is None:
        names = _walked_files(source, skipped)
    kept = []
    seen: dict[str, bool] = {}
    for name in names:
        path = source / name
        if _is_junk(name) or _in_skipped(source, name, skipped, seen):
            continue
        if not os.path.exists(path):  # a dangling link, or a loop
            continue
        if path.is_dir() and _is_junk(f"{name}/x"):
            continue
        check_inside(source, name)
        if path.is_file():
            kept.append(name)
    return kept


def check_inside(source: Path, name: str) -> None:
    """A build input must resolve inside the project: a link out of it would copy (and deploy) another tree's files."""
    real = Path(os.path.realpath(source / name))
    if not real.is_relative_to(source):
        raise InstallError(
            f"{source / name} is a link to {real}, outside the project {source} — drover builds from a copy of the "
            "project's own files: copy what it needs into the project, or name that directory as a requirement"
        )


def _file_digest(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _tree_digest(root: Path, names: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for name in names:
        digest.update(f"{name}\0{_file_digest(root / name)}\n".encode())
    return digest.hexdigest()


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


# --- dependency key: what the layer holds, known from the lock before any install -------------------


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


def _uv_version() -> str | None:
    found = _uv_installer()
    return found.version if found is not None else None


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


# --- running installers --------------------------------------------------------------------------


@dataclass
class _Run:
    returncode: int
    output: str


def _run(command: Sequence[str], env: Mapping[str, str], *, verbose: bool) -> _Run:
    logger.debug("Running %s", shlex.join(command))
    try:
        completed = subprocess.run(
            list(command), env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
    except OSError as error:
        raise InstallError(f"cannot run {command[0]}: {error}") from None
    if completed.returncode != 0:
        level = logging.INFO if verbose else logging.DEBUG
        logger.log(level, "%s exited with %d:\n%s", shlex.join(command), completed.returncode, completed.stdout)
    return _Run(completed.returncode, completed.stdout)


def failure_reason(output: str) -> str:
    """The one line of an installer's output that says why it failed."""
    raw = [line for line in output.splitlines() if line.strip()]
    lines = [line.strip() for line in raw]
    index = next((i for i, line in enumerate(lines) if line.startswith(_CAUSE_PREFIXES)), None)
    if index is None:
        index = next((i for i, line in enumerate(lines) if line.startswith(_ERROR_PREFIXES)), None)
    if index is None:
        return lines[-1] if lines else "no output"
    reason = " ".join([lines[index], *_continuation(raw, index)])
    if reason.startswith("ERROR:") and index + 1 < len(raw) and raw[index + 1][0].isspace():
        reason = f"{reason.split('. ')[0].rstrip('.:')}: {lines[index + 1].rstrip(':')}"  # pip's detail line
    for prefix in (*_CAUSE_PREFIXES, *_ERROR_PREFIXES):
        reason = reason.removeprefix(prefix).strip()
    hint = next((line for line in lines if "Wheels are available for" in line), None)
    if hint is not None:
        reason += "; " + re.sub(r"^hint:\s*", "", hint)
    return reason if len(reason) <= 400 else reason[:397] + "..."


def _continuation(raw: Sequence[str], index: int) -> list[str]:
    """uv wraps a long cause over indented lines; they belong to it up to the next blank or new clause."""
    if not raw[index].strip().startswith(_CAUSE_PREFIXES):
        return []
    following = []
    for line in raw[index + 1 :]:
        stripped = line.strip()
        if not line[:1].isspace() or stripped.startswith(("hint:", "And because")):
            break
        following.append(stripped)
    return following


@dataclass(frozen=True)
class MissingWheel:
    name: str
    requirement: str
    exists: bool = True  # False when the index has no release of it at all


def missing_wheel(output: str) -> MissingWheel | None:
    """The dependency an installer found no usable wheel for, if that is why it failed."""
    uv_match = _UV_MISSING.search(output)
    if uv_match is not None:
        return MissingWheel(uv_match["name"], uv_match["req"], "was not found" not in uv_match[0])
    pip_match = _PIP_MISSING.search(output)
    if pip_match is not None:
        name = _PIP_NAME.match(pip_match["req"].strip())
        if name is not None:
            return MissingWheel(name[0], pip_match["req"].strip())
    return None


def is_pure_wheel(wheel_name: str) -> bool:
    """Whether a wheel file name's tags say pure Python (abi none, platform any); False for a malformed name."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel_name)
    except InvalidWheelFilename:
        return False
    return all(tag.abi == "none" and tag.platform == "any" for tag in tags)


def _canonical(name: str) -> str:
    return str(canonicalize_name(name))


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


# --- requirement set -----------------------------------------------------------------------------


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


def _environment(platform: TargetPlatform) -> dict[str, str]:
    return marker_environment(platform.python_version, platform.arch)


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


def _uv() -> str:
    uv = find_uv()
    if uv is None:
        raise InstallError("uv.lock needs uv to export the locked set; install uv (pip install uv)")
    return uv


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


def _clean_copy(source: Path, destination: Path, skip: Sequence[Path]) -> Path:
    """Copy the project's build inputs: builds then never write into (or read stale files from) the user's tree."""
    source = source.resolve()
    for name in build_inputs(source, skip):
        (destination / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source / name, destination / name)
    for name in LOCK_NAMES:  # a lock git ignores is still the lock drover installs from
        if (source / name).is_file() and not (destination / name).exists():
            check_inside(source, name)
            destination.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, destination / name)
    pyproject = source / "pyproject.toml"
    needs_vcs = pyproject.is_file() and re.search(r"scm|vcs", pyproject.read_text(encoding="utf-8", errors="replace"))
    if needs_vcs and (source / ".git").is_dir():  # a version from git tags (setuptools-scm, hatch-vcs)
        shutil.copytree(source / ".git", destination / ".git", symlinks=True)
    return destination


def backend_reason(output: str) -> str | None:
    """The build backend's own error (the exception it raised), if its output shows one."""
    matches = [match for line in output.splitlines() if (match := _BACKEND_ERROR.match(line.strip()))]
    return f"{matches[-1]['kind']}: {matches[-1]['message']}" if matches else None


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


def runs_on(wheel_name: str, platform: TargetPlatform) -> bool:
    """Whether a wheel file name's tags include one Lambda's interpreter accepts (pure wheels always do)."""
    try:
        _, _, _, tags = parse_wheel_filename(wheel_name)
    except InvalidWheelFilename:
        return False
    return is_pure_wheel(wheel_name) or not tags.isdisjoint(platform.wheel_tags())


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


def _pip_env(env: Mapping[str, str], installer: Installer) -> Mapping[str, str]:
    return _pip_env_for_uv_settings(env) if installer.name == "uv" else env


def _built_line(line: str, locked: str, wheel: Path) -> str:
    """The locked line replaced by the wheel built from its sdist, pinned by that wheel's own hash."""
    if line != locked:
        return line
    package = pinned_requirement(locked)
    assert package is not None
    extras = f"[{','.join(package.extras)}]" if package.extras else ""
    return f"{package.name}{extras} @ {wheel.as_uri()} --hash=sha256:{_file_digest(wheel)}"


# --- the installed tree --------------------------------------------------------------------------


def _dist_infos(root: Path) -> list[Path]:
    return sorted(path for path in root.glob("*.dist-info") if path.is_dir())


def _dist_name(dist_info: Path) -> str:
    return _canonical(dist_info.name.removesuffix(".dist-info").rsplit("-", 1)[0])


def verify_platform(root: Path, platform: TargetPlatform) -> None:
    """Every installed wheel must be pure or tagged for the target (uv accepts plain linux_* tags)."""
    for dist_info in _dist_infos(root):
        wheel = dist_info / "WHEEL"
        if not wheel.is_file():
            continue
        tags = [
            line.split(":", 1)[1].strip()
            for line in wheel.read_text(encoding="utf-8").splitlines()
            if line.startswith("Tag:")
        ]
        platforms = {part for tag in tags for part in tag.rsplit("-", 1)[-1].split(".")}
        if tags and not any(platform.allows(tag) for tag in platforms):
            raise InstallError(
                f"no wheel of {_dist_name(dist_info)} for {platform.label}: the only match was tagged "
                f"{', '.join(tags)}, which is not a manylinux wheel and may not run on Lambda"
            )


def _record_path(row_path: str) -> str:
    """RECORD paths relative to the install path: pip --target writes ../../bin/x for scripts."""
    return row_path[6:] if row_path.startswith("../../") else row_path


def _read_record(dist_info: Path) -> list[list[str]]:
    """RECORD's rows (path, hash, size), read as the CSV file it is (a path holding a comma is quoted)."""
    record = dist_info / "RECORD"
    if not record.is_file():
        return []
    with record.open(encoding="utf-8", newline="") as stream:
        return [row for row in csv.reader(stream) if row and row[0].strip()]


def _csv_text(rows: Sequence[Sequence[str]]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def _write_file(path: Path, text: str) -> None:
    """Write by replacing the file: it may be a hard link shared with an installer cache."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def normalize_metadata(root: Path) -> None:
    """Drop installer bookkeeping that differs between pip and uv or between runs."""
    (root / ".lock").unlink(missing_ok=True)  # uv's lock file for the target directory
    for dist_info in _dist_infos(root):
        removed = set()
        for name in VOLATILE_METADATA:
            if (dist_info / name).exists():
                (dist_info / name).unlink()
                removed.add(f"{dist_info.name}/{name}")
        rows = [[_record_path(row[0]), *row[1:]] for row in _read_record(dist_info)]
        if rows:
            _write_file(dist_info / "RECORD", _csv_text([row for row in rows if row[0] not in removed]))


def _remove_distribution(root: Path, dist_info: Path) -> int:
    """Delete one installed distribution (its RECORD files and dist-info); return the bytes freed."""
    paths = {Path(os.path.normpath(root / _record_path(row[0]))) for row in _read_record(dist_info)}
    paths.update(path for path in dist_info.rglob("*") if path.is_file() or path.is_symlink())
    freed = 0
    parents: set[Path] = set()
    for path in paths:
        if not path.is_relative_to(root) or not (path.is_file() or path.is_symlink()):
            continue
        freed += path.lstat().st_size
        path.unlink()
        parents.add(path.parent)
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        _remove_empty_dirs(parent, root)
    return freed


def _remove_empty_dirs(directory: Path, root: Path) -> None:
    while directory != root and directory.is_relative_to(root):
        try:
            directory.rmdir()
        except OSError:
            return
        directory = directory.parent


def exclude_runtime_packages(root: Path) -> tuple[tuple[str, ...], int]:
    """Remove the packages Lambda's Python runtime ships; return their names and the bytes saved."""
    names: list[str] = []
    freed = 0
    for dist_info in _dist_infos(root):
        name = _dist_name(dist_info)
        if name in RUNTIME_PACKAGES:
            names.append(name)
            freed += _remove_distribution(root, dist_info)
    return tuple(sorted(names)), freed


# --- checks of the installed tree ---------------------------------------------------------------


def check_no_local_links(root: Path) -> None:
    """An editable or machine-local install leaves a link to this machine's files instead of the package."""
    for pth in sorted(root.glob("*.pth")):
        for line in pth.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip().startswith("/"):
                raise InstallError(
                    f"{pth.name} in the install points at {line.strip()}, a directory on this machine (an editable "
                    "install) — drop -e lines (uv export --no-emit-project) or give the project as --install-source"
                )
    for direct_url in sorted(root.glob("*.dist-info/direct_url.json")):
        try:
            data = json.loads(direct_url.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("dir_info"), dict) and data["dir_info"].get("editable"):
            raise InstallError(
                f"{direct_url.parent.name} is installed as editable from {data.get('url')}, a directory on this "
                "machine — drop -e lines (uv export --no-emit-project) or give the project as --install-source"
            )


@dataclass(frozen=True)
class _Installed:
    name: str
    version: str
    requires: tuple[Requirement, ...]


def _installed(root: Path) -> dict[str, _Installed]:
    found = {}
    for dist_info in _dist_infos(root):
        metadata = dist_info / "METADATA"
        if not metadata.is_file():
            continue
        message = email.parser.Parser().parsestr(metadata.read_text(encoding="utf-8", errors="replace"))
        name = str(message.get("Name") or _dist_name(dist_info))
        requires = []
        for text in message.get_all("Requires-Dist") or []:
            try:
                requires.append(Requirement(str(text)))
            except InvalidRequirement:
                continue  # a malformed line in a published wheel: the installer accepted it, so does drover
        found[_canonical(name)] = _Installed(name, str(message.get("Version") or ""), tuple(requires))
    return found


def unmet_dependencies(
    root: Path, environment: Mapping[str, str], requested_extras: Mapping[str, set[str]] | None = None
) -> list[str]:
    """Every Requires-Dist of every installed distribution (markers for the target, extras followed) that
    the install tree does not satisfy, as "NAME VERSION requires REQUIREMENT (why)"."""
    installed = _installed(root)
    extras: dict[str, set[str]] = {name: set(values) for name, values in (requested_extras or {}).items()}
    applicable: dict[str, list[Requirement]] = {}
    changed = True
    while changed:  # an extra asked for can bring requirements that ask for more extras
        changed = False
        for name, dist in installed.items():
            applicable[name] = [
                requirement
                for requirement in dist.requires
                if marker_applies(requirement.marker, environment, extras.get(name, ()))
            ]
            for requirement in applicable[name]:
                wanted = extras.setdefault(_canonical(requirement.name), set())
                if not requirement.extras <= wanted:
                    wanted |= requirement.extras
                    changed = True
    problems = []
    for name, dist in sorted(installed.items()):
        for requirement in applicable[name]:
            target = installed.get(_canonical(requirement.name))
            if target is None:
                problems.append(f"{dist.name} {dist.version} requires {requirement} (not installed)")
            elif requirement.specifier and not requirement.specifier.contains(target.version, prereleases=True):
                problems.append(f"{dist.name} {dist.version} requires {requirement} (installed: {target.version})")
    return problems


def check_dependencies(root: Path, platform: TargetPlatform, plan: _Plan, installer: Installer) -> None:
    problems = unmet_dependencies(root, _environment(platform), plan.requirements.extras)
    if not problems:
        return
    more = f" and {len(problems) - 3} more" if len(problems) > 3 else ""
    if plan.lock is not None:
        fix = f"the lock ({plan.lock}) is incomplete for this project: lock it again (uv lock / poetry lock)"
    elif installer.name == "pip":
        fix = "pip judges dependency markers by this machine's Python; use uv, or list the missing packages"
    else:
        fix = "add the missing packages to the requirements"
    raise InstallError(f"the install for {platform.label} is incomplete: {'; '.join(problems[:3])}{more} — {fix}")


def check_not_empty(root: Path, plan: _Plan, platform: TargetPlatform) -> None:
    """Requirement inputs that name packages must install some: an empty layer is never a success."""
    named = plan.requirements.named
    if not named or _dist_infos(root):
        return
    if plan.requirements.kept == 0:
        reason = f"none of them applies to {platform.label} (their environment markers exclude it)"
    else:
        reason = "the installer installed none of them"
    raise InstallError(
        f"the requirements name {len(named)} packages ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''}) "
        f"but {reason} — check the markers and the stage's compatible_runtime"
    )


def project_files(root: Path, wheel: Path) -> list[str]:
    """The installed files of the project's own distribution (code, scripts and .dist-info), relative POSIX."""
    name = _canonical(parse_wheel_filename(wheel.name)[0])
    dist_info = next((path for path in _dist_infos(root) if _dist_name(path) == name), None)
    if dist_info is None:
        return []
    names = {Path(os.path.normpath(root / _record_path(row[0]))) for row in _read_record(dist_info)}
    names.update(path for path in dist_info.rglob("*") if path.is_file())
    return sorted(path.relative_to(root).as_posix() for path in names if path.is_relative_to(root) and path.is_file())


# --- the target directory ------------------------------------------------------------------------


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
