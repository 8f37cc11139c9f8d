"""A project's build inputs (what git keeps, minus junk and the run's outputs), their digests, and a clean
copy of them."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from drover.errors import InstallError

SKIPPED_SOURCE_DIRS = ("__pycache__", "build", "dist", "node_modules", "site-packages", "htmlcov")


# Files a test or coverage run (or drover's own --archive-dir) writes into a project: never build inputs.
JUNK_FILE = re.compile(
    r"^(\.coverage.*|coverage\.(xml|json)|junit.*\.xml|.*-report\.(xml|html|json)|.*\.py[co]|.*\.log"
    r"|function\.zip|requirements\.zip)$"
)


LOCK_NAMES = ("pylock.toml", "uv.lock", "poetry.lock")


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
