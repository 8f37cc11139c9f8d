"""The installers (uv, pip): finding them, their environment, running them, and reading why they failed."""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from drover.errors import InstallError
from drover.install.platforms import TargetPlatform

logger = logging.getLogger("drover")


# Environment variables never handed to an installer or a build backend.
SECRET_ENV_PREFIXES = ("AWS_", "ACTIONS_ID_TOKEN_REQUEST_", "ACTIONS_RUNTIME_TOKEN")


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


def _uv_version() -> str | None:
    found = _uv_installer()
    return found.version if found is not None else None


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


def _uv() -> str:
    uv = find_uv()
    if uv is None:
        raise InstallError("uv.lock needs uv to export the locked set; install uv (pip install uv)")
    return uv


def backend_reason(output: str) -> str | None:
    """The build backend's own error (the exception it raised), if its output shows one."""
    matches = [match for line in output.splitlines() if (match := _BACKEND_ERROR.match(line.strip()))]
    return f"{matches[-1]['kind']}: {matches[-1]['message']}" if matches else None


def _pip_env(env: Mapping[str, str], installer: Installer) -> Mapping[str, str]:
    return _pip_env_for_uv_settings(env) if installer.name == "uv" else env
