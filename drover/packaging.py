"""Walk, partition and digest a package tree (pure filesystem, no AWS).

Files matching a stage's ``function_file_patterns`` (and the ``function_extra_paths``) form the
function archive; every other file goes to the requirements layer under ``python/``. A partition's
digest is the SHA-256 of a sorted manifest of (archive name, mode, SHA-256 of the bytes), so it
follows content, names, partition and the executable bit, and nothing else.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from re import Pattern

from drover.errors import PackagingError
from drover.models import UNZIPPED_LIMIT, Stage

LAYER_PREFIX = "python/"
MANIFEST_HEADER = b"drover-manifest-v1\n"
READ_SIZE = 1 << 20
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755


@dataclass(frozen=True, slots=True)
class PackageFile:
    archive_name: str
    source: Path
    executable: bool

    @property
    def mode(self) -> int:
        return EXECUTABLE_MODE if self.executable else FILE_MODE


@dataclass(frozen=True, slots=True)
class HashedFile:
    file: PackageFile
    size: int
    sha256: str


@dataclass(frozen=True)
class Partition:
    kind: str
    files: tuple[HashedFile, ...]

    @property
    def digest(self) -> str | None:
        return manifest_digest(self.files)

    @property
    def unzipped_size(self) -> int:
        return sum(hashed.size for hashed in self.files)

    @property
    def file_count(self) -> int:
        return len(self.files)

    def __bool__(self) -> bool:
        return bool(self.files)


@dataclass(frozen=True)
class PackagePlan:
    function: Partition
    requirements: Partition


def manifest_digest(files: Sequence[HashedFile]) -> str | None:
    if not files:
        return None
    digest = hashlib.sha256(MANIFEST_HEADER)
    for hashed in sorted(files, key=lambda item: item.file.archive_name):
        line = f"{hashed.file.archive_name}\0{hashed.file.mode:o}\0{hashed.sha256}\n"
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def plan_package(stage: Stage, install_path: Path, working_directory: Path, workers: int | None = None) -> PackagePlan:
    """Walk the install path and the extra paths, partition the files and hash every byte."""
    function_files, requirement_files = partition_files(stage, install_path)
    function_files += extra_path_files(stage, working_directory)
    _reject_duplicate_names(function_files)
    if not function_files:
        patterns = ", ".join(repr(pattern.pattern) for pattern in stage.function_file_patterns) or "none"
        raise PackagingError(
            f"{install_path}: no file matches function_file_patterns ({patterns}) and no "
            "function_extra_paths were given — the function archive would be empty; fix the patterns"
        )
    hashed = hash_files(function_files + requirement_files, workers)
    function_hashed = tuple(sorted(hashed[: len(function_files)], key=_archive_name))
    requirement_hashed = tuple(sorted(hashed[len(function_files) :], key=_archive_name))
    plan = PackagePlan(Partition("function", function_hashed), Partition("requirements", requirement_hashed))
    _check_unzipped_limit(plan)
    return plan


def partition_files(stage: Stage, install_path: Path) -> tuple[list[PackageFile], list[PackageFile]]:
    _check_install_path(install_path)
    function_files: list[PackageFile] = []
    requirement_files: list[PackageFile] = []
    for relative_name, source, executable in walk_files(install_path, stage.package_exclude_patterns):
        if any(pattern.search(relative_name) for pattern in stage.function_file_patterns):
            function_files.append(PackageFile(relative_name, source, executable))
        else:
            requirement_files.append(PackageFile(LAYER_PREFIX + relative_name, source, executable))
    return function_files, requirement_files


def extra_path_files(stage: Stage, working_directory: Path) -> list[PackageFile]:
    files: list[PackageFile] = []
    root = working_directory.resolve()
    for extra_path in stage.function_extra_paths:
        source = extra_path if extra_path.is_absolute() else working_directory / extra_path
        if not extra_path.is_absolute() and not _is_within(source.resolve(), root):
            raise PackagingError(
                f"function_extra_paths: {str(extra_path)!r} resolves outside the working directory {working_directory} "
                "— keep extra paths inside it or give an absolute path"
            )
        if not source.exists():
            raise PackagingError(f"function_extra_paths: {str(extra_path)!r} does not exist (looked in {working_directory})")
        # named as given (normalized), not after a symlink's target: a linked "instance" stays "instance/"
        base = Path(os.path.abspath(source)).name
        if source.is_dir():
            for relative_name, file_source, executable in walk_files(source, stage.package_exclude_patterns):
                files.append(PackageFile(f"{base}/{relative_name}", file_source, executable))
        elif source.is_file():
            files.append(PackageFile(base, source.resolve(), _is_executable(source.stat().st_mode)))
        else:
            raise PackagingError(
                f"function_extra_paths: {str(extra_path)!r} is not a regular file or directory (a FIFO or device?)"
            )
    return files


def walk_files(root: Path, exclude_patterns: Sequence[Pattern[str]]) -> Iterator[tuple[str, Path, bool]]:
    """Yield (relative POSIX name, source path, executable) for every regular file under root.

    Symlinks are followed when they resolve inside root (stored as the target's content); one that
    escapes root, dangles or loops is a PackagingError.
    """
    real_root = Path(os.path.realpath(root))
    yield from _walk_directory(root, "", real_root, exclude_patterns, {str(real_root)})


def _walk_directory(
    directory: Path,
    prefix: str,
    real_root: Path,
    exclude_patterns: Sequence[Pattern[str]],
    ancestors: set[str],
) -> Iterator[tuple[str, Path, bool]]:
    try:
        entries = sorted(os.scandir(directory), key=lambda entry: entry.name)
    except OSError as error:
        raise PackagingError(f"{directory}: cannot list directory: {error.strerror}") from None
    for entry in entries:
        relative_name = prefix + _utf8_name(directory, entry.name)
        path = Path(entry.path)
        excluded = any(pattern.search(relative_name) for pattern in exclude_patterns)
        if entry.is_symlink():
            if excluded:
                continue  # an excluded link is never followed, so it may dangle or point anywhere
            info = _stat(path, real_root)
        else:
            info = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(info.st_mode):
            real_path = os.path.realpath(path)
            if real_path in ancestors:
                raise PackagingError(f"{path}: symlink loop (points back to {real_path}) — remove the link")
            yield from _walk_directory(path, relative_name + "/", real_root, exclude_patterns, ancestors | {real_path})
        elif excluded:
            continue
        elif stat.S_ISREG(info.st_mode):
            yield relative_name, path, _is_executable(info.st_mode)
        else:
            raise PackagingError(f"{path}: not a regular file or directory (a socket, FIFO or device?) — remove it")


def _stat(link: Path, real_root: Path) -> os.stat_result:
    try:
        info = link.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PackagingError(f"{link}: symlink loop — remove the link") from None
        raise PackagingError(f"{link}: broken symlink ({os.readlink(link)}) — remove it or restore its target") from None
    target = Path(os.path.realpath(link))
    if not _is_within(target, real_root):
        raise PackagingError(
            f"{link}: symlink points outside {real_root} (to {target}) — copy the file in or remove the link"
        )
    return info


def _utf8_name(directory: Path, name: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(name)
        raise PackagingError(f"{directory}: file name {shown!r} is not valid UTF-8 — rename it") from None
    return name


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _is_executable(mode: int) -> bool:
    return bool(mode & 0o111)


def _archive_name(hashed: HashedFile) -> str:
    return hashed.file.archive_name


def _check_install_path(install_path: Path) -> None:
    if not install_path.exists():
        raise PackagingError(f"install path {install_path} does not exist — pip install --target it first")
    if not install_path.is_dir():
        raise PackagingError(f"install path {install_path} is not a directory")


def _reject_duplicate_names(files: Sequence[PackageFile]) -> None:
    seen: dict[str, Path] = {}
    for package_file in files:
        if package_file.archive_name in seen:
            raise PackagingError(
                f"{package_file.source} and {seen[package_file.archive_name]} would both be stored as "
                f"{package_file.archive_name!r} in the function archive — rename one or drop an extra path"
            )
        seen[package_file.archive_name] = package_file.source


def _check_unzipped_limit(plan: PackagePlan) -> None:
    for partition in (plan.function, plan.requirements):
        for hashed in partition.files:
            if hashed.size > UNZIPPED_LIMIT:
                raise PackagingError(
                    f"{hashed.file.source}: {hashed.size} bytes is larger than Lambda's {UNZIPPED_LIMIT}-byte "
                    "limit for a function and its layers unzipped — exclude it with package_exclude_patterns"
                )
    total = plan.function.unzipped_size + plan.requirements.unzipped_size
    if total > UNZIPPED_LIMIT:
        raise PackagingError(
            f"function ({plan.function.unzipped_size} bytes) and requirements ({plan.requirements.unzipped_size} "
            f"bytes) unzipped exceed Lambda's {UNZIPPED_LIMIT}-byte limit — exclude files or split the function"
        )


def hash_files(files: Sequence[PackageFile], workers: int | None = None) -> list[HashedFile]:
    """Hash every file; batches run on threads (hashlib and reads release the GIL)."""
    workers = workers or default_workers()
    batch_size = max(1, -(-len(files) // (workers * 8)))
    batches = [files[start : start + batch_size] for start in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return [hashed for batch in pool.map(_hash_batch, batches) for hashed in batch]


def _hash_batch(files: Sequence[PackageFile]) -> list[HashedFile]:
    return [_hash_file(package_file) for package_file in files]


def _hash_file(package_file: PackageFile) -> HashedFile:
    size, sha256 = read_digest(package_file.source, lambda chunk: None)
    return HashedFile(package_file, size, sha256)


def read_digest(source: Path, consume: Callable[[bytes], None]) -> tuple[int, str]:
    """Read a file in large chunks, hand each to consume, return (size, sha256 hex)."""
    digest = hashlib.sha256()
    size = 0
    try:
        descriptor = os.open(source, os.O_RDONLY)
    except OSError as error:
        raise PackagingError(f"{source}: cannot read: {error.strerror}") from None
    try:
        while chunk := os.read(descriptor, READ_SIZE):
            digest.update(chunk)
            consume(chunk)
            size += len(chunk)
    finally:
        os.close(descriptor)
    return size, digest.hexdigest()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
