"""Podman on a machine like CI's: settings, a Python base image without a registry, the Action image.

Everything here is cached on the machine and safe to call from several test processes at once
(one file lock): the base image is built once per suite and recipe, the Action image once per
build-context content.

    python -m tests.container.images   # build (or find) the base and the Action image, print the tag

Environment:
- DROVER_TEST_IMAGE: test this already built image (release.yml: the image about to be pushed).
- DROVER_CONTAINER_ENGINE: podman (default) or docker: the same commands, the same flags.
- DROVER_TEST_BASE_IMAGE: use this base image (e.g. python:3.12-slim) instead of finding one.
- DROVER_CONTAINER_CACHE: cache directory (default /var/cache/drover-action as root, else
  ~/.cache/drover-action).
- DROVER_BASE_SUITE: the Debian suite of the locally built base (default trixie: Python 3.13).
- DROVER_TRY_REGISTRY=0: do not try to pull python:3.12-slim first.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REGISTRY_BASE = "docker.io/library/python:3.12-slim"
BASE_RECIPE_VERSION = "1"  # bump when the mmdebstrap recipe below changes
BASE_PACKAGES = ("python3", "python3-pip", "ca-certificates")
# what mmdebstrap leaves out of the base: documentation and translations nobody reads in a container
DPKG_EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/info/*", "/usr/share/locale/*")
HOST_CA_DIRECTORY = Path("/usr/local/share/ca-certificates")
# the build context, as .dockerignore lets it through
CONTEXT_FILES = ("Dockerfile", ".dockerignore", "pyproject.toml", "uv.lock", "README.md", "entrypoint.py")
CONTEXT_TREES = ("drover",)


class ContainerUnavailable(Exception):
    """No podman here and no way to get it: the reason, for a skip message."""


def log(message: str) -> None:
    print(f"[container] {message}", file=sys.stderr, flush=True)


def cache_directory() -> Path:
    configured = os.environ.get("DROVER_CONTAINER_CACHE")
    if configured:
        directory = Path(configured)
    elif os.geteuid() == 0:
        directory = Path("/var/cache/drover-action")
    else:
        directory = Path.home() / ".cache" / "drover-action"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@contextmanager
def machine_lock() -> Iterator[None]:
    """One builder at a time on this machine (pytest-xdist workers, parallel make runs)."""
    with open(cache_directory() / "build.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _hard_limit(kind: int, fallback: int) -> int:
    hard = resource.getrlimit(kind)[1]
    return fallback if hard == resource.RLIM_INFINITY else hard


def containers_conf_text() -> str:
    """runc when crun cannot run here, and ulimits this shell may set (no CAP_SYS_RESOURCE needed)."""
    nofile = min(_hard_limit(resource.RLIMIT_NOFILE, 1048576), 1048576)
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    nproc = min(_hard_limit(resource.RLIMIT_NPROC, pid_max), pid_max)
    lines = [
        "[containers]",
        f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]',
    ]
    if shutil.which("runc"):
        lines += ["", "[engine]", 'runtime = "runc"']
    return "\n".join(lines) + "\n"


def podman_environment() -> dict[str, str]:
    """This process's environment with CONTAINERS_CONF pointing at our settings (nothing in /etc changes)."""
    conf = cache_directory() / "containers.conf"
    text = containers_conf_text()
    if not conf.exists() or conf.read_text() != text:
        conf.write_text(text)
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def engine_name() -> str:
    return os.environ.get("DROVER_CONTAINER_ENGINE") or "podman"


ENABLE_HINT = "`make ci-deps` installs podman, runc, mmdebstrap and uidmap from the Debian packages (root, apt-get)"


def podman_binary() -> str:
    """podman, or the engine DROVER_CONTAINER_ENGINE names (docker accepts every command used here)."""
    found = shutil.which(engine_name())
    if found is None:
        raise ContainerUnavailable(f"{engine_name()} is not installed here ({ENABLE_HINT})")
    return found


def engine_problem(engine: str) -> str | None:
    """Why `engine info` does not work here (not installed, no daemon...), or None when it does."""
    found = shutil.which(engine)
    if found is None:
        return f"{engine} is not installed"
    environment = podman_environment() if engine == "podman" else dict(os.environ)
    try:
        completed = subprocess.run([found, "info"], env=environment, capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return f"`{engine} info` did not answer in 60 s"
    last_line = (completed.stderr.strip().splitlines() or ["no message"])[-1]
    return None if completed.returncode == 0 else f"`{engine} info` failed: {last_line}"


def podman(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(
        [podman_binary(), *args], env=podman_environment(), capture_output=True, text=True, timeout=timeout
    )
    if check and completed.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:3])} failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
    return completed


def image_exists(tag: str) -> bool:
    return podman("image", "inspect", "--format", "{{.Id}}", tag, check=False).returncode == 0


def host_ca_bundle() -> str:
    """The extra CA certificates this machine trusts (e.g. a TLS-intercepting proxy's), as PEM text."""
    if not HOST_CA_DIRECTORY.is_dir():
        return ""
    return "".join(path.read_text() for path in sorted(HOST_CA_DIRECTORY.rglob("*.crt")))


def _apt_sources_uri() -> str:
    """The Debian mirror this machine's apt uses (the one reachable from here)."""
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = line.split()
            if line.startswith("URIs:") and len(words) > 1 and "security" not in words[1]:
                return words[1]
            if words[:1] == ["deb"] and len(words) > 2 and "security" not in line:
                return next(word for word in words[1:] if "://" in word)
    return "http://deb.debian.org/debian"


def base_tag(suite: str) -> str:
    return f"localhost/drover-python-base:{suite}-r{BASE_RECIPE_VERSION}"


def build_base_with_mmdebstrap(suite: str) -> str:
    """A python3 + pip + ca-certificates Debian image from the distribution's mirror: no registry needed."""
    tag = base_tag(suite)
    tarball = cache_directory() / f"python-base-{suite}-r{BASE_RECIPE_VERSION}.tar"
    if not tarball.exists():
        if shutil.which("mmdebstrap") is None:
            raise ContainerUnavailable("no registry base image is reachable and mmdebstrap is not installed")
        started = time.monotonic()
        log(f"building the {suite} Python base with mmdebstrap (a few minutes, once per machine)")
        partial = tarball.with_suffix(".partial.tar")
        command = [
            "mmdebstrap",
            "--variant=apt",
            "--mode=root" if os.geteuid() == 0 else "--mode=unshare",
            f"--include={','.join(BASE_PACKAGES)}",
            *[f"--dpkgopt=path-exclude={pattern}" for pattern in DPKG_EXCLUDES],
            "--dpkgopt=path-include=/usr/share/doc/*/copyright",
            suite,
            str(partial),
            f"deb {_apt_sources_uri()} {suite} main",
        ]
        completed = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        if completed.returncode != 0:
            raise RuntimeError(f"mmdebstrap failed ({completed.returncode}):\n{completed.stderr[-4000:]}")
        partial.rename(tarball)
        log(f"base tarball built in {time.monotonic() - started:.0f} s: {tarball}")
    if not image_exists(tag):
        podman(
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            "ENV LANG=C.UTF-8",
            "--change",
            'CMD ["python3"]',
            str(tarball),
            tag,
        )
    return tag


def registry_base_reachable() -> bool:
    if image_exists(REGISTRY_BASE):
        return True
    try:
        return podman("pull", "--quiet", REGISTRY_BASE, timeout=120, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def base_image() -> str:
    """DROVER_TEST_BASE_IMAGE, else the registry's python:3.12-slim when pullable, else a local mmdebstrap build."""
    configured = os.environ.get("DROVER_TEST_BASE_IMAGE")
    if configured:
        return configured
    suite = os.environ.get("DROVER_BASE_SUITE", "trixie")
    if image_exists(base_tag(suite)):
        return base_tag(suite)
    if os.environ.get("DROVER_TRY_REGISTRY", "1") == "1" and registry_base_reachable():
        return REGISTRY_BASE
    return build_base_with_mmdebstrap(suite)


def context_digest(base: str, build_args: Sequence[str]) -> str:
    digest = hashlib.sha256()
    paths = [ROOT / name for name in CONTEXT_FILES]
    for tree in CONTEXT_TREES:
        paths += sorted(path for path in (ROOT / tree).rglob("*") if path.is_file() and "__pycache__" not in path.parts)
    for path in paths:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    digest.update(base.encode() + b"\0" + "\0".join(build_args).encode())
    return digest.hexdigest()[:16]


def build_action_image(base: str | None = None) -> str:
    """The Action image from the project's Dockerfile, BASE and the host's extra CAs as build arguments."""
    base = base or base_image()
    build_args = [f"BASE={base}"]
    ca_bundle = host_ca_bundle()
    if ca_bundle:
        build_args.append(f"EXTRA_CA_CERTS={ca_bundle}")
    tag = f"localhost/drover-action-test:{context_digest(base, build_args)}"
    if image_exists(tag):
        return tag
    started = time.monotonic()
    log(f"building {tag} from {base}")
    arguments = [item for build_arg in build_args for item in ("--build-arg", build_arg)]
    # podman: host network for RUN steps (no bridge network setup needed on a bare machine)
    network = ["--network", "host"] if engine_name() == "podman" else []
    podman("build", *network, *arguments, "--tag", tag, str(ROOT), timeout=1800)
    log(f"image built in {time.monotonic() - started:.0f} s")
    return tag


def action_image() -> str:
    prebuilt = os.environ.get("DROVER_TEST_IMAGE")
    if prebuilt:
        if not image_exists(prebuilt):
            raise RuntimeError(f"DROVER_TEST_IMAGE={prebuilt} is not an image {engine_name()} has")
        return prebuilt
    with machine_lock():
        return build_action_image()


def platform_arguments() -> list[str]:
    """`--platform` for `run` when DROVER_TEST_PLATFORM is set (release.yml: linux/arm64 under qemu)."""
    platform = os.environ.get("DROVER_TEST_PLATFORM")
    return ["--platform", platform] if platform else []


if __name__ == "__main__":
    print(action_image())
