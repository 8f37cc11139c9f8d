"""Walk, partition and digest a package tree (pure filesystem, no AWS).

Files matching a stage's ``function_file_patterns``, the files of the project drover.install built
(listed in its marker: the project's code and .dist-info) and the ``function_extra_paths`` (a
directory's contents at the archive root, as drover 0.7.1; a file by its name; the mapping form under
its archive_path) form the function archive; every other file goes to the requirements layer under
``python/``. A partition's
digest is the SHA-256 of a sorted manifest of (archive name, mode, SHA-256 of the bytes), so it
follows content, names, partition and the executable bit, and nothing else.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import signal
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from re import Pattern
from typing import TYPE_CHECKING, Any, NoReturn

from drover.errors import PackagingError
from drover.models import UNZIPPED_LIMIT, ExtraPath, Stage, short_repr

if TYPE_CHECKING:
    import regex  # imported when a pattern needs the bounded engine: most runs never do

LAYER_PREFIX = "python/"
INSTALL_MARKER = ".drover-install.json"  # drover.install's record of what it installed; never packaged
MANIFEST_HEADER = b"drover-manifest-v1\n"
READ_SIZE = 1 << 20
LARGE_FILE = 256 << 10  # hashed on the other threads first (see hash_files)
FILE_MODE = 0o644
EXECUTABLE_MODE = 0o755
PATTERN_TIMEOUT = 1.0  # seconds one user pattern may take on one name; an honest one takes microseconds
MAX_DIRECTORY_VISITS = 16  # times one real directory may be walked through different symlinked paths


@dataclass(frozen=True, slots=True)
class PackageFile:
    archive_name: str
    source: str
    executable: bool
    size: int
    identity: tuple[int, int, int] | None = None  # (st_dev, st_ino, st_mtime_ns) the walk saw, when it saw it

    @classmethod
    def seen(cls, archive_name: str, source: str, info: os.stat_result) -> PackageFile:
        """A file as the walk's stat saw it: every later read is checked against this."""
        identity = (info.st_dev, info.st_ino, info.st_mtime_ns)
        return cls(archive_name, source, _is_executable(info.st_mode), info.st_size, identity)

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

    @cached_property  # read by the plan, the tags, the result and the log: sort and hash the manifest once
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
    warnings: tuple[str, ...] = ()  # what the layout found suspicious (a function pattern matching no file)


@dataclass(frozen=True)
class PackageLayout:
    """The files of each archive, walked and partitioned but not read yet."""

    function: tuple[PackageFile, ...]
    requirements: tuple[PackageFile, ...]
    warnings: tuple[str, ...] = ()

    @property
    def unzipped_size(self) -> int:
        return sum(package_file.size for package_file in (*self.function, *self.requirements))


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
    return hash_layout(layout_package(stage, install_path, working_directory), workers)


def layout_package(
    stage: Stage, install_path: Path, working_directory: Path, skip: Sequence[Path] = ()
) -> PackageLayout:
    """Partition the install path (minus any skip directories) and the extra paths into the two archives.

    A function_file_patterns entry that matches no file is a warning naming it; a function archive without a
    Python file (the handler went to the layer, or nowhere) is an error."""
    function_files, requirement_files, unmatched = partition_files(stage, install_path, skip)
    function_files += extra_path_files(stage, working_directory)
    _reject_duplicate_names(function_files)
    if not any(_is_python(package_file.archive_name) for package_file in function_files):
        raise PackagingError(_no_python_file(stage, install_path, function_files, unmatched))
    warnings = tuple(
        f"function_file_patterns: {pattern.pattern!r} matches no file in {install_path} — fix the pattern or remove it"
        for pattern in unmatched
    )
    return PackageLayout(
        tuple(sorted(function_files, key=_name)), tuple(sorted(requirement_files, key=_name)), warnings
    )


PYTHON_SUFFIXES = (".py", ".pyc")


def _is_python(archive_name: str) -> bool:
    return archive_name.endswith(PYTHON_SUFFIXES)


def _no_python_file(
    stage: Stage, install_path: Path, function_files: Sequence[PackageFile], unmatched: Sequence[Pattern[str]]
) -> str:
    if not function_files:
        patterns = ", ".join(repr(pattern.pattern) for pattern in stage.function_file_patterns) or "none"
        extra = (
            "function_extra_paths hold no files" if stage.function_extra_paths else "no function_extra_paths were given"
        )
        return (
            f"{install_path}: no file matches function_file_patterns ({patterns}) and {extra} — the function "
            "archive would be empty; fix the patterns"
        )
    held = sorted(_name(package_file) for package_file in function_files)
    shown = ", ".join(held[:5]) + (f" and {len(held) - 5} more" if len(held) > 5 else "")
    missed = (
        f"; function_file_patterns {', '.join(repr(pattern.pattern) for pattern in unmatched)} match no file"
        if unmatched
        else ""
    )
    return (
        f"{install_path}: the function archive would hold no Python file (only {shown}){missed} — fix "
        "function_file_patterns so the handler's module is in the function archive"
    )


def function_entries(plan: PackagePlan) -> list[str]:
    """The function archive's top-level entries: a file's name, or a directory's followed by "/"."""
    entries = set()
    for hashed in plan.function.files:
        first, slash, _ = hashed.file.archive_name.partition("/")
        entries.add(first + slash)
    return sorted(entries)


def hash_layout(layout: PackageLayout, workers: int | None = None) -> PackagePlan:
    hashed = hash_files([*layout.function, *layout.requirements], workers)
    count = len(layout.function)
    return PackagePlan(
        Partition("function", tuple(hashed[:count])), Partition("requirements", tuple(hashed[count:])), layout.warnings
    )


class PendingPlan:
    """A plan being walked and hashed elsewhere: result() waits for it, cancel() gives it up (call one)."""

    def __init__(self, make_layout: Callable[[], PackageLayout], workers: int | None) -> None:
        self.make_layout, self.workers = make_layout, workers
        self.seconds = 0.0  # how long the child took to walk and hash
        self._pid: int | None = None
        self._pipe: int | None = None

    def result(self) -> PackagePlan:
        if self._pid is None or self._pipe is None:
            return hash_layout(self.make_layout(), self.workers)
        try:
            with open(self._pipe, "rb") as pipe:
                payload = pipe.read()
        finally:
            self._pipe = None
            self._reap()
        plan = self._decode(payload)
        return plan if plan is not None else hash_layout(self.make_layout(), self.workers)

    def cancel(self) -> None:
        """Stop the child (a deploy that failed before packaging no longer needs it)."""
        if self._pipe is not None:
            os.close(self._pipe)
            self._pipe = None
        if self._pid is not None:
            os.kill(self._pid, signal.SIGKILL)
            self._reap()

    def _reap(self) -> None:
        if self._pid is not None:
            os.waitpid(self._pid, 0)
            self._pid = None

    def _decode(self, payload: bytes) -> PackagePlan | None:
        """The child's plan; None when it sent none (it failed otherwise than with a PackagingError)."""
        header, _, body = payload.partition(b"\n")
        kind, _, detail = header.partition(b" ")
        if kind == b"error":
            raise PackagingError(body.decode("utf-8", "surrogateescape"))
        if kind != b"ok":
            return None
        function_count, seconds = detail.split(b" ")
        self.seconds = float(seconds)
        warnings_line, _, body = body.partition(b"\n")
        warnings = tuple(str(warning) for warning in json.loads(warnings_line))
        fields = body.decode("utf-8", "surrogateescape").split("\0")
        hashed = [
            HashedFile(
                PackageFile(
                    name,
                    source,
                    executable == "1",
                    int(size),
                    (int(device), int(inode), int(mtime)) if device else None,
                ),
                int(size),
                digest,
            )
            for name, source, executable, size, device, inode, mtime, digest in zip(*[iter(fields)] * 8, strict=True)
        ]
        count = int(function_count)
        return PackagePlan(
            Partition("function", tuple(hashed[:count])), Partition("requirements", tuple(hashed[count:])), warnings
        )


def plan_aside(make_layout: Callable[[], PackageLayout], workers: int | None = None) -> PendingPlan:
    """Walk (make_layout) and hash in a forked child process; the pending plan's result() waits for it.

    The caller goes on with GIL-bound work meanwhile (a deploy imports botocore, makes its clients and
    reads the function: ~0.25 s of Python), which threads could not overlap with walking and hashing:
    they need the GIL too. The child sends the files it walked with their sizes and digests, so the
    plan is the one hash_layout(make_layout()) would give here. A PackagingError in the child is
    raised by result() with the same line; anything else (the child killed, out of memory) makes
    result() walk and hash here. Where a fork is unsafe (other threads running, whose locks the
    child would inherit held) or unavailable, result() just does that.
    """
    pending = PendingPlan(make_layout, workers)
    if not hasattr(os, "fork") or threading.active_count() > 1:
        return pending
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child; its coverage is not collected
        os.close(read_end)
        _plan_in_child(make_layout, workers, write_end)
    os.close(write_end)
    pending._pid, pending._pipe = pid, read_end
    return pending


def _plan_in_child(make_layout: Callable[[], PackageLayout], workers: int | None, write_end: int) -> NoReturn:
    code = 1
    try:
        start = time.perf_counter()
        layout = make_layout()
        plan = hash_layout(layout, workers)
        header = f"ok {len(layout.function)} {time.perf_counter() - start:.3f}\n{json.dumps(plan.warnings)}\n"
        payload = header.encode() + _encode(plan)
        code = 0
    except PackagingError as error:
        payload = b"error\n" + str(error).encode("utf-8", "surrogateescape")
    except BaseException:  # the parent walks and hashes again and meets the same failure itself
        payload = b""
    try:
        with open(write_end, "wb") as pipe:
            pipe.write(payload)
    finally:
        os._exit(code)  # no atexit, no flush of the parent's inherited buffers


def _encode(plan: PackagePlan) -> bytes:
    fields: list[str] = []
    for hashed in (*plan.function.files, *plan.requirements.files):
        package_file = hashed.file
        identity = [str(number) for number in package_file.identity] if package_file.identity else ["", "", ""]
        executable = "1" if package_file.executable else "0"
        fields += (package_file.archive_name, package_file.source, executable, str(package_file.size), *identity)
        fields.append(hashed.sha256)
    return "\0".join(fields).encode("utf-8", "surrogateescape")


def unzipped_limit_problem(layout: PackageLayout, limit: int = UNZIPPED_LIMIT) -> str | None:
    """Why the layout cannot fit Lambda's unzipped limit, or None; known from sizes alone, before any read."""
    largest = max((*layout.function, *layout.requirements), key=lambda package_file: package_file.size)
    if largest.size > limit:
        return (
            f"{largest.source}: {largest.size} bytes is larger than Lambda's {limit}-byte limit for a "
            "function and its layers unzipped — exclude it with package_exclude_patterns"
        )
    if layout.unzipped_size > limit:
        function_size = sum(package_file.size for package_file in layout.function)
        return (
            f"function ({function_size} bytes) and requirements ({layout.unzipped_size - function_size} bytes) "
            f"unzipped exceed Lambda's {limit}-byte limit — exclude files or split the function"
        )
    return None


def partition_files(
    stage: Stage, install_path: Path, skip: Sequence[Path] = ()
) -> tuple[list[PackageFile], list[PackageFile], list[Pattern[str]]]:
    """(function files, requirement files, the function_file_patterns that matched no file)."""
    _check_install_path(install_path)
    function_files: list[PackageFile] = []
    requirement_files: list[PackageFile] = []
    patterns = stage.function_file_patterns
    unmatched = list(patterns)
    installed = False  # drover.install wrote its marker: an install that brought nothing is not a mistake
    project_files = installed_project_files(install_path)
    for relative_name, source, info in walk_files(install_path, stage.package_exclude_patterns, skip):
        if relative_name == INSTALL_MARKER:
            installed = True
            continue
        if _matches_function_patterns(relative_name, patterns, unmatched) or relative_name in project_files:
            function_files.append(PackageFile.seen(relative_name, source, info))
        else:
            requirement_files.append(PackageFile.seen(LAYER_PREFIX + relative_name, source, info))
    if not (function_files or requirement_files or installed):
        raise PackagingError(
            f"install path {install_path} holds no files to package — pip install --target {install_path} your "
            "package first, or give the right --install-path"
        )
    return function_files, requirement_files, unmatched


def _matches_function_patterns(name: str, patterns: Sequence[Pattern[str]], unmatched: list[Pattern[str]]) -> bool:
    """Whether a pattern matches the name; every still-unmatched pattern that matches it is struck off unmatched.

    A name no pattern matches was tried against every pattern already, so the extra matching is only for
    function files, while some pattern has matched nothing yet."""
    first = next((pattern for pattern in patterns if user_match(pattern, name)), None)
    if first is None:
        return False
    unmatched[:] = [pattern for pattern in unmatched if pattern is not first and not user_match(pattern, name)]
    return True


def installed_project_files(install_path: Path) -> frozenset[str]:
    """The files of the project drover.install built (its code and .dist-info), as its marker lists them.

    They belong with the function code: a code or README edit then moves only the function digest.
    """
    try:
        marker = json.loads((install_path / INSTALL_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return frozenset()
    names = marker.get("project_files") if isinstance(marker, dict) else None
    return frozenset(name for name in names if isinstance(name, str)) if isinstance(names, list) else frozenset()


def extra_path_files(stage: Stage, working_directory: Path) -> list[PackageFile]:
    """The extra paths' files as drover 0.7.1 stores them: a directory's contents at the archive root,
    a file by its name; the mapping form puts either under its archive_path."""
    files: list[PackageFile] = []
    for extra in stage.function_extra_paths:
        extra_path, prefix = (extra.path, extra.archive_path + "/") if isinstance(extra, ExtraPath) else (extra, "")
        source = _extra_source(extra_path, working_directory)
        if source.is_dir():
            for relative_name, file_source, info in walk_files(source, stage.package_exclude_patterns):
                files.append(PackageFile.seen(prefix + relative_name, file_source, info))
        elif source.is_file():
            info = source.stat()
            # named as given (normalized), not after a symlink's target
            name = prefix + Path(os.path.abspath(source)).name
            files.append(PackageFile.seen(name, str(source.resolve()), info))
        else:
            raise PackagingError(
                f"function_extra_paths: {str(extra_path)!r} is not a regular file or directory (a FIFO or device?)"
            )
    return files


def _extra_source(extra_path: Path, working_directory: Path) -> Path:
    root = working_directory.resolve()
    source = extra_path if extra_path.is_absolute() else working_directory / extra_path
    if not extra_path.is_absolute() and not _is_within(source.resolve(), root):
        raise PackagingError(
            f"function_extra_paths: {str(extra_path)!r} resolves outside the working directory "
            f"{working_directory} — keep extra paths inside it or give an absolute path"
        )
    if source.resolve() == root:
        raise PackagingError(
            f"function_extra_paths: {str(extra_path)!r} is the working directory itself — name the handler "
            "directory or file instead (e.g. src)"
        )
    if not source.exists():
        raise PackagingError(
            f"function_extra_paths: {str(extra_path)!r} does not exist (looked in {working_directory}) — "
            "create it or fix function_extra_paths"
        )
    return source


def walk_files(
    root: Path, exclude_patterns: Sequence[Pattern[str]], skip: Sequence[Path] = ()
) -> Iterator[tuple[str, str, os.stat_result]]:
    """Yield (relative POSIX name, source path, stat) for every regular file under root.

    Exclude patterns are matched (re.match) against the relative POSIX path. Symlinks are followed
    when they resolve inside root (stored as the target's content); one that escapes root, dangles or
    loops is a PackagingError. Directories in skip (e.g. an archive dir inside the tree) are left out.
    """
    real_root = os.path.realpath(root)
    skipped = {_identity(path) for path in skip if os.path.isdir(path)}
    pruning = [pattern for pattern in exclude_patterns if prefix_closed(pattern)]
    root_info = os.stat(root)
    visits: dict[tuple[int, int], int] = {}  # a symlink DAG would otherwise walk a directory 2**depth times
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (os.fspath(root), "", frozenset({(root_info.st_dev, root_info.st_ino)}))
    ]
    while stack:
        directory, prefix, ancestors = stack.pop()
        for entry in _list_directory(directory):
            relative_name = prefix + entry.name
            excluded = any(user_match(pattern, relative_name) for pattern in exclude_patterns)
            if entry.is_symlink():
                if excluded and _nothing_below_is_kept(entry, relative_name, pruning):
                    continue  # an excluded link is never followed, so it may dangle or point anywhere
                info = _follow_link(entry.path, real_root)
            elif excluded and not entry.is_dir(follow_symlinks=False):
                continue  # the directory entry's type is known without a stat call
            else:
                info = _stat_entry(entry)
            if stat.S_ISDIR(info.st_mode):
                if any(user_match(pattern, relative_name + "/") for pattern in pruning):
                    continue  # every path below matches too: nothing under it can be packaged
                identity = (info.st_dev, info.st_ino)
                if identity in ancestors:
                    raise PackagingError(
                        f"{entry.path}: symlink loop (points back to {os.path.realpath(entry.path)}) — remove the link"
                    )
                if identity in skipped:
                    continue
                visits[identity] = visits.get(identity, 0) + 1
                if visits[identity] > MAX_DIRECTORY_VISITS:
                    raise PackagingError(
                        f"{entry.path}: the directory {os.path.realpath(entry.path)} is reached through more than "
                        f"{MAX_DIRECTORY_VISITS} symlinked paths (symlinks to symlinks?) — remove the extra links"
                    )
                stack.append((entry.path, relative_name + "/", ancestors | {identity}))
            elif excluded:
                continue
            elif stat.S_ISREG(info.st_mode):
                yield _utf8_name(directory, relative_name), entry.path, info
            else:
                raise PackagingError(
                    f"{entry.path}: not a regular file or directory (a socket, FIFO or device?) — remove it"
                )


def _nothing_below_is_kept(link: os.DirEntry[str], relative_name: str, pruning: Sequence[Pattern[str]]) -> bool:
    """An excluded link to a file (or to nothing) holds no other path; one to a directory holds nothing to keep
    only when a prefix-closed pattern matches its path + "/" (else files below it may still match no pattern)."""
    if not os.path.isdir(link.path):
        return True
    return any(user_match(pattern, relative_name + "/") for pattern in pruning)


def user_match(pattern: Pattern[str], name: str) -> bool:
    """pattern.match(name) with re's semantics, but bounded: a backtracking pattern is a clear error, not a hang.

    Patterns that cannot backtrack badly (no repeat around a repeat or an alternation, no
    backreference, at most two unbounded repeats: at worst quadratic in a name of at most PATH_MAX)
    run on re. The others run on the `regex` engine (re-compatible VERSION0 syntax) with a time
    bound per name; its timeout check costs ~2 µs a match, too much for every file of a 100,000-file
    tree, hence the split.
    """
    engine = _bounded_engine(pattern)
    if engine is None:
        return pattern.match(name) is not None
    try:
        return engine.match(name, timeout=PATTERN_TIMEOUT) is not None
    except TimeoutError:
        raise PackagingError(
            f"pattern {short_repr(pattern.pattern)} took more than {PATTERN_TIMEOUT:g} s to match the file name "
            f"{short_repr(name)} (catastrophic backtracking, e.g. nested repeats like (a|aa)+) — simplify it"
        ) from None


_engines: dict[tuple[str, int], regex.Pattern[str] | None] = {}
_sre_parser: Any = getattr(re, "_parser", None)
_sre: Any = getattr(re, "_constants", None)


def _bounded_engine(pattern: Pattern[str]) -> regex.Pattern[str] | None:
    """The bounded engine for a pattern that could backtrack badly, None for one re runs safely."""
    key = (pattern.pattern, pattern.flags)
    if key not in _engines:
        engine = None
        if may_backtrack(pattern):
            import regex

            try:
                engine = regex.compile(pattern.pattern, pattern.flags | regex.VERSION0)
            except (regex.error, ValueError):
                engine = None
        _engines[key] = engine
    return _engines[key]


def may_backtrack(pattern: Pattern[str]) -> bool:
    """Whether matching could take more than quadratic time (conservative: unsure means yes)."""
    if _sre_parser is None or _sre is None:
        return True
    try:
        parsed = _sre_parser.parse(pattern.pattern, pattern.flags & ~re.UNICODE)
    except Exception:
        return True
    nested, unbounded = _complexity(list(parsed))
    return nested or unbounded > 2


def _complexity(items: list[tuple[Any, Any]]) -> tuple[bool, int]:
    """(a repeat holds a repeat/alternation or a backreference exists, count of unbounded repeats)."""
    nested, unbounded = False, 0
    repeats = {_sre.MAX_REPEAT, _sre.MIN_REPEAT, getattr(_sre, "POSSESSIVE_REPEAT", _sre.MAX_REPEAT)}
    for op, value in items:
        children: list[list[tuple[Any, Any]]] = []
        if op in repeats:
            _, high, sub = value
            if _has_choice(list(sub), repeats):
                nested = True
            if high == _sre.MAXREPEAT or high > 64:
                unbounded += 1
            children = [list(sub)]
        elif op == _sre.SUBPATTERN:
            children = [list(value[-1])]
        elif op == _sre.BRANCH:
            children = [list(branch) for branch in value[1]]
        elif op in {_sre.ASSERT, _sre.ASSERT_NOT}:
            children = [list(value[1])]
        elif op == getattr(_sre, "ATOMIC_GROUP", None):
            children = [list(value)]
        elif op in {_sre.GROUPREF, _sre.GROUPREF_EXISTS, getattr(_sre, "GROUPREF_IGNORE", None)}:
            nested = True
        for child in children:
            child_nested, child_unbounded = _complexity(child)
            nested, unbounded = nested or child_nested, unbounded + child_unbounded
    return nested, unbounded


def _has_choice(items: list[tuple[Any, Any]], repeats: set[Any]) -> bool:
    """A repeat or an alternation anywhere inside items."""
    for op, value in items:
        if op in repeats or op == _sre.BRANCH:
            return True
        if op == _sre.SUBPATTERN and _has_choice(list(value[-1]), repeats):
            return True
        if op in {_sre.ASSERT, _sre.ASSERT_NOT} and _has_choice(list(value[1]), repeats):
            return True
    return False


def _list_directory(directory: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(directory))
    except OSError as error:
        raise _filesystem_error(directory, error, "cannot list directory") from None


def _stat_entry(entry: os.DirEntry[str]) -> os.stat_result:
    try:
        return entry.stat(follow_symlinks=False)
    except OSError as error:
        raise _filesystem_error(entry.path, error, "cannot stat") from None


def _filesystem_error(path: str, error: OSError, doing: str) -> PackagingError:
    """One line for an OSError met while walking or reading: vanished files are a race, not bad input."""
    if error.errno in {errno.ENOENT, errno.ESTALE}:
        return changed_while_packaging(path, "it was removed")
    if error.errno == errno.ENAMETOOLONG:
        return PackagingError(
            f"{short_repr(path)}: path longer than the system allows (PATH_MAX {os.pathconf('/', 'PC_PATH_MAX')}) "
            "— shorten the directory names or exclude it"
        )
    return PackagingError(f"{path}: {doing}: {error.strerror}")


def changed_while_packaging(path: str, what: str) -> PackagingError:
    return PackagingError(f"{path} changed while packaging ({what}) — rerun drover")


def prefix_closed(pattern: Pattern[str]) -> bool:
    """Whether pattern.match(s) implies pattern.match(s + t) for every t: then a directory whose path + "/"
    matches can be skipped whole (e.g. the default .*__pycache__.*), as every file below matches too.

    re.match anchors only at the start and backtracks through every way to match, so a match on a prefix
    stays a match on any extension unless the pattern looks past the characters it consumed (an end
    anchor, a word boundary, a lookahead) or commits to a choice that later characters can undo (a
    possessive repeat, an atomic group: `.*+(?<=/)` matches 'lib/' but no file below it). Decided on the
    parsed pattern; a pattern that cannot be parsed here is not closed (filtered file by file).
    """
    if _sre_parser is None or _sre is None:
        return False
    try:
        parsed = _sre_parser.parse(pattern.pattern, pattern.flags & ~re.UNICODE)
    except Exception:
        return False
    return _never_looks_past(list(parsed))


def _never_looks_past(items: list[tuple[Any, Any]]) -> bool:
    """No end anchor, word boundary, lookahead, possessive repeat or atomic group anywhere in items."""
    starts = {_sre.AT_BEGINNING, _sre.AT_BEGINNING_LINE, _sre.AT_BEGINNING_STRING}
    committing = {getattr(_sre, "POSSESSIVE_REPEAT", None), getattr(_sre, "ATOMIC_GROUP", None)} - {None}
    for op, value in items:
        if op in committing or (op == _sre.AT and value not in starts):
            return False
        if op in {_sre.ASSERT, _sre.ASSERT_NOT} and value[0] >= 0:  # a lookahead (a lookbehind's is -1)
            return False
        if not all(_never_looks_past(child) for child in _children(op, value)):
            return False
    return True


def _children(op: Any, value: Any) -> list[list[tuple[Any, Any]]]:
    """The sub-patterns of one parsed item (a group's, a repeat's, each branch's, a look-around's)."""
    if op in {_sre.MAX_REPEAT, _sre.MIN_REPEAT}:
        return [list(value[2])]
    if op == _sre.SUBPATTERN:
        return [list(value[-1])]
    if op == _sre.BRANCH:
        return [list(branch) for branch in value[1]]
    if op in {_sre.ASSERT, _sre.ASSERT_NOT}:
        return [list(value[1])]
    if op == _sre.GROUPREF_EXISTS:
        return [list(branch) for branch in value[1:] if branch is not None]
    return []


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _follow_link(link: str, real_root: str) -> os.stat_result:
    try:
        info = os.stat(link)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise PackagingError(f"{link}: symlink loop — remove the link") from None
        raise PackagingError(
            f"{link}: broken symlink ({os.readlink(link)}) — remove it or restore its target"
        ) from None
    target = os.path.realpath(link)
    if target != real_root and not target.startswith(real_root.rstrip(os.sep) + os.sep):
        raise PackagingError(
            f"{link}: symlink points outside {real_root} (to {target}) — copy the file in or remove the link"
        )
    return info


def _utf8_name(directory: str, relative_name: str) -> str:
    try:
        relative_name.encode("utf-8")
    except UnicodeEncodeError:
        shown = os.fsencode(relative_name)
        raise PackagingError(f"{directory}: file name {shown!r} is not valid UTF-8 — rename it") from None
    return relative_name


def _is_within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _is_executable(mode: int) -> bool:
    return bool(mode & 0o111)


def _name(package_file: PackageFile) -> str:
    return package_file.archive_name


def check_install_path(install_path: Path) -> None:
    """The install path of a run that installs nothing: an existing directory that holds something."""
    _check_install_path(install_path)
    with os.scandir(install_path) as entries:
        if next(entries, None) is None:
            raise PackagingError(
                f"install path {install_path} holds no files to package — pip install --target {install_path} your "
                "package first, or give the right --install-path"
            )


def extra_source(extra_path: Path, working_directory: Path) -> Path:
    """An extra path's source: it exists, inside the working directory unless given absolute."""
    return _extra_source(extra_path, working_directory)


def _check_install_path(install_path: Path) -> None:
    if not install_path.exists():
        raise PackagingError(f"install path {install_path} does not exist — pip install --target it first")
    if not install_path.is_dir():
        raise PackagingError(
            f"install path {install_path} is not a directory — give the directory that pip install --target filled"
        )


def _reject_duplicate_names(files: Sequence[PackageFile]) -> None:
    seen: dict[str, str] = {}
    for package_file in files:
        if package_file.archive_name in seen:
            raise PackagingError(
                f"{package_file.source} and {seen[package_file.archive_name]} would both be stored as "
                f"{package_file.archive_name!r} in the function archive — rename one or drop an extra path"
            )
        seen[package_file.archive_name] = package_file.source


def hash_files(files: Sequence[PackageFile], workers: int | None = None) -> list[HashedFile]:
    """Hash every file, in the order given, on this thread and workers - 1 others.

    Large files go to the other threads first: reading and hashing them releases the GIL for whole
    megabytes, so they run beside this thread's small files, whose per-file Python work holds it.
    Cutting the list into equal batches instead (the old way) put small files on every thread, all
    waiting on the GIL in turn: two threads took as long as one (0.21 s for the bench's 181 MB).
    """
    workers = workers or default_workers()
    if workers == 1 or len(files) < 2:
        return [_hash_file(package_file) for package_file in files]
    hashed: list[HashedFile | None] = [None] * len(files)
    large = deque(sorted((i for i, f in enumerate(files) if f.size >= LARGE_FILE), key=lambda i: -files[i].size))
    small = deque(i for i, f in enumerate(files) if f.size < LARGE_FILE)
    failed = threading.Event()

    def work(first: Callable[[], int], then: Callable[[], int]) -> None:
        try:
            for take in (first, then):
                while not failed.is_set():
                    try:
                        index = take()
                    except IndexError:  # that queue is empty
                        break
                    hashed[index] = _hash_file(files[index])
        except BaseException:
            failed.set()  # the other threads stop at their next file
            raise

    with ThreadPoolExecutor(max_workers=workers - 1) as pool:
        helpers = [pool.submit(work, large.popleft, small.pop) for _ in range(workers - 1)]
        try:
            work(small.popleft, large.popleft)
        finally:
            for helper in helpers:
                helper.result()  # waits; a helper's error is raised here unless this thread's is already
    return [item for item in hashed if item is not None]


def _hash_file(package_file: PackageFile) -> HashedFile:
    if package_file.size < READ_SIZE:
        return _hash_small_file(package_file)
    digest = hashlib.sha256()
    view = memoryview(thread_buffer(READ_SIZE))[:READ_SIZE]
    size = 0
    descriptor = open_as_seen(package_file)
    try:
        with open(descriptor, "rb", buffering=0, closefd=False) as stream:
            while count := stream.readinto(view):
                digest.update(view[:count])
                size += count
    except OSError as error:
        raise _filesystem_error(package_file.source, error, "cannot read") from None
    finally:
        os.close(descriptor)
    check_read_size(package_file, size)
    return HashedFile(package_file, size, digest.hexdigest())


def _hash_small_file(package_file: PackageFile) -> HashedFile:
    """One read of size + 1 bytes and one hashlib call: most files of a tree are small, and for them the
    per-file Python work (a file object, a read loop, a digest update per chunk) cost more than the bytes."""
    descriptor = open_as_seen(package_file)
    try:
        data = os.read(descriptor, package_file.size + 1)  # one byte more: a file that grew is seen
        while 0 < len(data) < package_file.size:  # a short read before the end (rare): read on to the end
            more = os.read(descriptor, package_file.size + 1 - len(data))
            if not more:
                break
            data += more
    except OSError as error:
        raise _filesystem_error(package_file.source, error, "cannot read") from None
    finally:
        os.close(descriptor)
    check_read_size(package_file, len(data))
    return HashedFile(package_file, len(data), hashlib.sha256(data).hexdigest())


def open_as_seen(package_file: PackageFile) -> int:
    """Open for reading without ever blocking, and check it is still the regular file the walk saw.

    O_NONBLOCK: a file replaced by a FIFO would block open() forever; fstat then refuses it. A
    different inode, mtime or size means the file was replaced or rewritten since the walk.
    """
    try:
        descriptor = os.open(package_file.source, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise _filesystem_error(package_file.source, error, "cannot read") from None
    try:
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise changed_while_packaging(package_file.source, "no longer a regular file")
        seen = package_file.identity
        if seen is not None and (info.st_dev, info.st_ino) != seen[:2]:
            raise changed_while_packaging(package_file.source, "replaced by another file")
        if info.st_size != package_file.size:
            raise changed_while_packaging(
                package_file.source, f"{package_file.size} bytes when listed, {info.st_size} bytes now"
            )
        if seen is not None and info.st_mtime_ns != seen[2]:
            raise changed_while_packaging(package_file.source, "modified since it was listed")
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def check_read_size(package_file: PackageFile, size: int) -> None:
    """The bytes read must be the bytes the walk counted: a file that grew or shrank while read is a race."""
    if size != package_file.size:
        raise changed_while_packaging(package_file.source, f"{package_file.size} bytes when listed, {size} bytes read")


_thread_local = threading.local()


def thread_buffer(size: int) -> bytearray:
    """This thread's reusable read buffer, grown to at least size: reading into it allocates nothing,
    so hashing and compressing many files neither page-faults fresh memory nor fragments the heap."""
    buffer: bytearray | None = getattr(_thread_local, "buffer", None)
    if buffer is None or len(buffer) < size:
        buffer = bytearray(max(size, READ_SIZE))
        _thread_local.buffer = buffer
    return buffer


def read_digest(source: str | Path | PackageFile, consume: Callable[[bytes], None]) -> tuple[int, str]:
    """Read a file in large chunks, hand each to consume, return (size, sha256 hex).

    Given the PackageFile the walk saw, the open and the byte count are checked against it.
    """
    package_file = source if isinstance(source, PackageFile) else None
    path = package_file.source if package_file is not None else os.fspath(source)  # type: ignore[arg-type]
    digest = hashlib.sha256()
    size = 0
    if package_file is not None:
        descriptor = open_as_seen(package_file)
    else:
        try:
            descriptor = os.open(path, os.O_RDONLY)
        except OSError as error:
            raise PackagingError(f"{path}: cannot read: {error.strerror}") from None
    try:
        while chunk := os.read(descriptor, READ_SIZE):
            digest.update(chunk)
            consume(chunk)
            size += len(chunk)
    except OSError as error:
        raise _filesystem_error(path, error, "cannot read") from None
    finally:
        os.close(descriptor)
    if package_file is not None:
        check_read_size(package_file, size)
    return size, digest.hexdigest()


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)
