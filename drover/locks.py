"""Requirement inputs read for one Lambda target: requirements files, poetry.lock and pylock.toml.

Environment markers are evaluated here, for the target (Lambda's CPython on Linux for the stage's
runtime and architecture), never for the machine drover runs on: pip applies its --python-version to
wheel tags only, so a ``python_version >= "3.13"`` marker would otherwise be judged by the host's
interpreter. Every requirement line that reaches an installer has had its marker evaluated and
removed; nested ``-r`` files are inlined and ``-c`` files collected, relative paths made absolute.
Pure file reading: no installer runs here.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import unquote

from packaging.markers import Environment, InvalidMarker, Marker
from packaging.pylock import (
    Package,
    PackageArchive,
    PackageDirectory,
    PackageSdist,
    PackageVcs,
    PackageWheel,
    Pylock,
    PylockSelectError,
    PylockValidationError,
)
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from drover.errors import InstallError, one_line
from drover.lockfiles import PoetryLock, PoetryPackage, UvLock, load_toml, read_input_text, readable_here, validated

_INCLUDE = {"-r", "--requirement"}
_CONSTRAINT = {"-c", "--constraint"}
_EDITABLE = {"-e", "--editable"}
_FIND_LINKS = {"-f", "--find-links"}
_PATH_LIKE = re.compile(r"^(\.{1,2}/|/|~|file:)|\.(whl|tar\.gz|zip|tar\.bz2)$")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://")
_NAMED_URL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")  # "name @ url", "name[extra] @ url"
PYLOCK_NAME = re.compile(r"^pylock\.([^.]+\.)?toml$")


def marker_environment(python_version: str, machine: str) -> dict[str, str]:
    """PEP 508 marker variables of Lambda's interpreter for a runtime (3.X) and machine (x86_64|aarch64)."""
    full_version = f"{python_version}.0"
    return {
        "implementation_name": "cpython",
        "implementation_version": full_version,
        "os_name": "posix",
        "platform_machine": machine,
        "platform_python_implementation": "CPython",
        "platform_release": "",
        "platform_system": "Linux",
        "platform_version": "",
        "python_full_version": full_version,
        "python_version": python_version,
        "sys_platform": "linux",
    }


def marker_applies(marker: Marker | None, environment: Mapping[str, str], extras: Iterable[str] = ()) -> bool:
    """Whether a marker holds on the target, for the base requirement or any of the given extras."""
    if marker is None:
        return True
    return any(marker.evaluate({**environment, "extra": extra}) for extra in ("", *extras))


@dataclass
class RequirementSet:
    """Requirement lines for one target, ready for an installer, and what they were made from."""

    lines: list[str] = field(default_factory=list)
    constraints: list[str] = field(default_factory=list)
    named: list[str] = field(default_factory=list)  # every requirement the inputs name, markers aside
    kept: int = 0  # requirements whose markers hold on the target
    files: list[Path] = field(default_factory=list)  # every requirements file read
    references: list[Path] = field(default_factory=list)  # local wheels, directories, find-links
    # local projects (built from a clean copy into a wheel), with where each was first named ("file:line")
    directories: dict[Path, str] = field(default_factory=dict)
    hashed: bool = False
    extras: dict[str, set[str]] = field(default_factory=dict)  # extras asked for, by canonical name

    def add(self, other: RequirementSet) -> None:
        self.lines += other.lines
        self.constraints += other.constraints
        self.named += other.named
        self.kept += other.kept
        self.files += other.files
        self.references += other.references
        for directory, where in other.directories.items():
            self.directories.setdefault(directory, where)
        self.hashed = self.hashed or other.hashed
        for name, extras in other.extras.items():
            self.extras.setdefault(name, set()).update(extras)


def _logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """(line number, line) with comments dropped and backslash continuations joined."""
    pending, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = (pending + line).strip(), ""
        if line:
            yield start, line


def _split_option(tokens: list[str]) -> tuple[str, str | None, list[str]]:
    """(option, its value, the remaining tokens) of a line starting with an option."""
    first = tokens[0]
    if "=" in first and first.startswith("--"):
        name, value = first.split("=", 1)
        return name, value, tokens[1:]
    if first.startswith("-") and not first.startswith("--") and len(first) > 2:
        return first[:2], first[2:], tokens[1:]
    return first, (tokens[1] if len(tokens) > 1 else None), tokens[2:]


def _local_path(text: str, base: Path) -> Path | None:
    """The local file or directory a requirement or find-links value names, or None for a URL/name."""
    if _URL.match(text) and not text.startswith("file:"):
        return None
    path_text = unquote(re.sub(r"^file:(//)?", "", text)) if text.startswith("file:") else text
    path = Path(path_text).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def read_requirements(
    path: Path, environment: Mapping[str, str], *, base: Path | None = None, seen: set[Path] | None = None
) -> RequirementSet:
    """Read a requirements file (and every file it includes) into lines for the target environment.

    Relative paths are resolved against base (default: the file's directory). Editable lines are refused:
    they install a link to this machine's directory, not the package.
    """
    resolved = path.resolve()
    seen = set() if seen is None else seen
    result = RequirementSet()
    if resolved in seen:
        return result
    seen.add(resolved)
    result.files.append(resolved)
    base = base or resolved.parent
    text = read_input_text(resolved, "requirements file")
    for number, line in _logical_lines(text):
        _read_line(line, f"{path}:{number}", base, environment, seen, result)
    return result


def included_files(path: Path, seen: set[Path] | None = None) -> list[Path]:
    """A requirements file and every file it includes (-r, -c), read through the bounded reader but not
    interpreted: the Action checks before any AWS call that none of them lies outside the workspace."""
    seen = set() if seen is None else seen
    resolved = path.resolve()
    if resolved in seen:
        return []
    seen.add(resolved)
    found = [path]
    for _, line in _logical_lines(read_input_text(path, "requirements file")):
        if not line.startswith("-"):
            continue
        option, value, _ = _split_option(shlex.split(line))
        if option in _INCLUDE | _CONSTRAINT and value is not None:
            found += included_files(resolved.parent / value, seen)
    return found


def read_requirement_lines(
    lines: Iterable[str], environment: Mapping[str, str], *, base: Path, origin: str
) -> RequirementSet:
    """Requirement lines made from a lock (an export or a conversion), read like a requirements file."""
    result = RequirementSet()
    for number, line in _logical_lines("\n".join(lines)):
        _read_line(line, f"{origin} (line {number})", base, environment, set(), result)
    return result


def _read_line(
    line: str, where: str, base: Path, environment: Mapping[str, str], seen: set[Path], result: RequirementSet
) -> None:
    if line.startswith("-"):
        tokens = shlex.split(line)
        option, value, _ = _split_option(tokens)
        if option in _EDITABLE:
            raise InstallError(
                f"{where}: editable requirement {line!r} installs a link to this machine's directory, not the "
                "package — drop it (uv export --no-emit-project / --no-editable) or give the project as "
                "--install-source"
            )
        if option in _INCLUDE | _CONSTRAINT and value is not None:
            nested = read_requirements(base / value, environment, seen=seen)
            if option in _CONSTRAINT:
                result.constraints += nested.lines
                result.files += nested.files
                result.references += nested.references
            else:
                result.add(nested)
            return
        if option in _FIND_LINKS and value is not None:
            local = _local_path(value, base)
            if local is not None:
                result.references.append(local)
                result.lines.append(f"{option} {local}")
                return
        result.lines.append(line)
        return
    _read_requirement(line, where, base, environment, result)


def _read_requirement(
    line: str, where: str, base: Path, environment: Mapping[str, str], result: RequirementSet
) -> None:
    spec, _, options = line.partition(" --")
    options = f" --{options}" if options else ""
    result.hashed = result.hashed or "--hash" in options
    requirement_text, marker = _split_marker(spec.strip(), where)
    result.named.append(requirement_text)
    if not marker_applies(marker, environment):
        return
    result.kept += 1
    if _URL.match(requirement_text) and not requirement_text.startswith("file:"):
        result.lines.append(f"{requirement_text}{options}")  # a bare URL (https://…/x.whl, git+https://…)
        return
    named = _NAMED_URL.match(requirement_text) is not None
    local = _local_path(requirement_text, base) if not named and _PATH_LIKE.search(requirement_text) else None
    if local is not None:
        if not local.exists():
            raise InstallError(f"{where}: {requirement_text} does not exist (looked for {local})")
        result.references.append(local)
        if local.is_dir():
            result.directories.setdefault(local, where)
        result.lines.append(f"{local}{options}")
        return
    try:
        requirement = Requirement(requirement_text)
    except InvalidRequirement as error:
        raise InstallError(f"{where}: cannot read requirement {requirement_text!r}: {error}") from None
    if requirement.url and requirement.url.startswith("file:"):
        requirement_text = _local_url_requirement(requirement, where, base, result)
    if requirement.extras:
        result.extras.setdefault(canonicalize_name(requirement.name), set()).update(requirement.extras)
    result.lines.append(f"{requirement_text}{options}")


def _local_url_requirement(requirement: Requirement, where: str, base: Path, result: RequirementSet) -> str:
    """A `name @ file:…` requirement: its file (or project directory) is an input, named by an absolute URL."""
    local = _local_path(str(requirement.url), base)
    assert local is not None  # a file: URL always names a local path
    if not local.exists():
        raise InstallError(f"{where}: {requirement.url} does not exist (looked for {local})")
    result.references.append(local)
    if local.is_dir():
        result.directories.setdefault(local, where)
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    return f"{requirement.name}{extras} @ {local.as_uri()}"


def _split_marker(spec: str, where: str) -> tuple[str, Marker | None]:
    # a URL may hold ";" itself: a marker after one must follow whitespace (pip's rule)
    separator = re.search(r"\s;" if "://" in spec else r";", spec)
    if separator is None:
        return spec, None
    text, marker_text = spec[: separator.start()].strip(), spec[separator.end() :].strip()
    try:
        return text, Marker(marker_text)
    except InvalidMarker as error:
        raise InstallError(f"{where}: invalid environment marker {marker_text!r}: {error}") from None


# --- what a project references on this machine -------------------------------------------------------


def project_references(project: Path) -> list[Path]:
    """Local files and directories a project's dependencies name (outside the project itself): `file:` URLs in
    [project] dependencies, path sources of [tool.uv.sources] and poetry, and path entries of its locks.

    Their bytes decide the install as much as the project's own files, so they are part of the install key.
    Nothing here raises: a malformed file is reported by the reader that installs from it."""
    found: list[Path] = []
    pyproject = _toml_or_empty(project / "pyproject.toml")
    table = _table(pyproject, "project")
    optional = _table(table, "optional-dependencies")
    texts = [*_strings(table.get("dependencies")), *(t for group in optional.values() for t in _strings(group))]
    for text in texts:
        try:
            url = Requirement(text).url
        except InvalidRequirement:
            continue
        if url and url.startswith("file:"):
            found.append(_local_path(url, project) or project)
    tool = _table(pyproject, "tool")
    sources = [
        *_table(_table(tool, "uv"), "sources").values(),
        *_table(_table(tool, "poetry"), "dependencies").values(),
    ]
    found += [project / entry["path"] for entry in _dicts(sources) if isinstance(entry.get("path"), str)]
    found += _lock_paths(project)
    found += _workspace_references(project)
    found += [project / name for name in ("pylock.toml", "uv.lock", "poetry.lock") if (project / name).is_file()]
    root = project.resolve()
    return sorted({path.resolve() for path in found} - {root})


def _workspace_references(project: Path) -> list[Path]:
    """A uv workspace member's install is decided by the root's uv.lock and pyproject.toml, and by the members the
    lock names (every one of them: which the member needs, only the lock can tell)."""
    root = uv_workspace_root(project)
    if root is None:
        return []
    found = [path for path in (root / "uv.lock", root / "pyproject.toml") if path.is_file()]
    lock = _toml_or_empty(root / "uv.lock")
    for item in _dicts(lock.get("package")):
        source = item.get("source")
        if isinstance(source, dict) and isinstance(source.get("editable"), str):
            found.append(root / source["editable"])
    return found + _lock_paths(root)


def _lock_paths(project: Path) -> list[Path]:
    """Path and directory sources recorded in the project's uv.lock and pylock.toml."""
    found: list[Path] = []
    uv_lock = _toml_or_empty(project / "uv.lock")
    for item in _dicts(uv_lock.get("package")):
        source = item.get("source")
        for kind in ("path", "directory"):
            if isinstance(source, dict) and isinstance(source.get(kind), str):
                found.append(project / source[kind])
    pylock = _toml_or_empty(project / "pylock.toml")
    for item in _dicts(pylock.get("packages")):
        entries = [
            *_dicts(item.get("wheels")),
            *_dicts([item.get("sdist"), item.get("directory"), item.get("archive")]),
        ]
        found += [project / entry["path"] for entry in entries if isinstance(entry.get("path"), str)]
    return found


def _toml_or_empty(path: Path) -> dict[str, Any]:
    try:
        return load_toml(path) if path.is_file() else {}
    except InstallError:
        return {}


def _table(document: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = document.get(key)
    return value if isinstance(value, dict) else {}


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def _dicts(values: object) -> list[dict[str, Any]]:
    """The tables among values (a list, or one value), flattening one level of lists (uv's multiple sources)."""
    items = values if isinstance(values, list) else [values]
    flat = [part for item in items for part in (item if isinstance(item, list) else [item])]
    return [item for item in flat if isinstance(item, dict)]


# --- poetry.lock ---------------------------------------------------------------------------------


def _load_toml(path: Path) -> dict[str, Any]:
    return load_toml(path, path.name)


def poetry_lock_requirements(project: Path) -> list[str]:
    """The locked main-group packages of a poetry project as hash-pinned requirement lines with markers.

    poetry.lock 2.1 (poetry 2) records each package's groups and markers; older locks are walked from
    the project's dependencies along the locked dependency edges (markers kept on the edges).
    """
    lock_path = project / "poetry.lock"
    lock = validated(PoetryLock, _load_toml(lock_path), lock_path)
    packages = {str(canonicalize_name(item.name)): item for item in lock.package}
    if packages and all(item.groups is not None for item in packages.values()):
        chosen = {name: _poetry_marker(item) for name, item in packages.items() if "main" in (item.groups or [])}
    else:
        chosen = _walk_poetry_graph(packages, _poetry_roots(project), lock_path)
    return [_poetry_line(packages[name], marker, lock_path) for name, marker in sorted(chosen.items())]


def _poetry_marker(item: PoetryPackage) -> str:
    markers = item.markers.get("main") if isinstance(item.markers, dict) else item.markers
    return str(markers) if markers else ""


MAX_EDGE_MARKERS = 16
_Root = tuple[str, str, frozenset[str]]  # (canonical name, marker, extras)


def _poetry_roots(project: Path) -> list[_Root]:
    path = project / "pyproject.toml"
    pyproject = _load_toml(path)
    roots: list[_Root] = []
    for text in _strings(_table(pyproject, "project").get("dependencies")):
        requirement = _project_requirement(text, path)
        roots.append(
            (canonicalize_name(requirement.name), str(requirement.marker or ""), frozenset(requirement.extras))
        )
    poetry_dependencies = _table(_table(_table(pyproject, "tool"), "poetry"), "dependencies")
    for name, value in poetry_dependencies.items():
        if name.lower() == "python" or (isinstance(value, dict) and value.get("optional")):
            continue
        spec = value if isinstance(value, dict) else {}
        extras = frozenset(str(extra) for extra in _strings(spec.get("extras")))
        roots.append((canonicalize_name(name), str(spec.get("markers", "")), extras))
    return roots


def _project_requirement(text: str, path: Path) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as error:
        raise InstallError(f"{path}: cannot read dependency {text[:200]!r}: {one_line(error)}") from None


def _extra_names(item: PoetryPackage, extras: frozenset[str]) -> set[str]:
    """The optional dependencies a locked package's extras switch on (its [package.extras] table)."""
    names: set[str] = set()
    for extra in extras:
        for text in item.extras.get(extra, []):
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
            if match:
                names.add(canonicalize_name(match[1]))
    return names


def _walk_poetry_graph(
    packages: Mapping[str, PoetryPackage], roots: Iterable[_Root], lock_path: Path
) -> dict[str, str]:
    """Packages reachable from roots along the locked dependency edges (optional ones when an extra asks);
    a package reached along several edges keeps each edge's marker."""
    reached: dict[str, set[str]] = {}
    visited: set[_Root] = set()
    stack = [(root, "pyproject.toml") for root in roots]
    while stack:
        (name, marker, extras), parent = stack.pop()
        if name not in packages:
            raise InstallError(
                f"{lock_path} has no package {name}, which {parent} needs — the lock is stale: run `poetry lock` "
                "and commit poetry.lock"
            )
        markers = reached.setdefault(name, set())
        if len(markers) >= MAX_EDGE_MARKERS:  # many paths lead here: take it on every target, stop the walk growing
            marker = ""
        if (name, marker, extras) in visited:
            continue
        visited.add((name, marker, extras))
        markers.add(marker)
        item = packages[name]
        switched_on = _extra_names(item, extras)
        for dependency, spec in item.edges():
            if spec.optional and canonicalize_name(dependency) not in switched_on:
                continue
            edge = (canonicalize_name(dependency), _and_markers(marker, spec.markers), frozenset(spec.extras))
            stack.append((edge, item.name))
    return {
        name: "" if "" in markers else " or ".join(f"({m})" for m in sorted(markers))
        for name, markers in reached.items()
    }


def _and_markers(first: str, second: str) -> str:
    if not first or not second:
        return first or second
    return f"({first}) and ({second})"


def _poetry_line(item: PoetryPackage, marker: str, lock_path: Path) -> str:
    source = item.source
    if source is not None and source.type not in (None, "legacy"):
        raise InstallError(
            f"{lock_path}: {item.name} comes from a {source.type} source ({source.url}); drover installs "
            "poetry.lock packages from a package index — publish it to an index or install it with --requirements"
        )
    hashes = sorted({entry.hash for entry in item.files})
    if not hashes:
        raise InstallError(
            f"{lock_path}: {item.name} {item.version} has no file hashes — run `poetry lock` to record them"
        )
    hash_options = "".join(f" --hash={digest}" for digest in hashes)
    return f"{item.name}=={item.version}{f' ; {marker}' if marker else ''}{hash_options}"


# --- pylock.toml (PEP 751) -----------------------------------------------------------------------


def pylock_requirements(lock_path: Path, environment: Mapping[str, str], tags: Sequence[Tag]) -> list[str]:
    """A PEP 751 lock's packages for the target (default extras and groups) as hash-pinned requirement lines.

    packaging.pylock validates the lock and selects the packages and artifacts for the target's markers and
    wheel tags. An index artifact becomes `name==version` with every locked hash (the installer picks the
    file); a local one is checked against its locked hash here and named by its absolute path."""
    lock = _read_pylock(lock_path)
    try:
        selected = list(lock.select(environment=cast(Environment, environment), tags=tags))
    except PylockSelectError as error:
        raise InstallError(f"{lock_path}: {one_line(error)} for the target — lock it for this runtime") from None
    return [_pylock_line(lock_path, package, artifact) for package, artifact in selected]


def _read_pylock(lock_path: Path) -> Pylock:
    try:
        return Pylock.from_dict(_load_toml(lock_path))
    except PylockValidationError as error:
        problem = re.sub(r"^Unexpected type", "wrong type", one_line(error))  # a bad value, not a crash of drover's
        raise InstallError(f"{lock_path}: {problem} — fix the lock or generate it again") from None


_PylockArtifact = PackageVcs | PackageDirectory | PackageArchive | PackageWheel | PackageSdist


def _pylock_line(lock_path: Path, package: Package, artifact: _PylockArtifact) -> str:
    if isinstance(artifact, PackageDirectory):
        return str((lock_path.parent / artifact.path).resolve())
    if isinstance(artifact, PackageVcs):
        raise InstallError(
            f"{lock_path}: {package.name} comes from version control ({artifact.url or artifact.path}); drover "
            "installs pylock.toml packages from a package index or local files — lock it from an index"
        )
    if artifact.path is not None:
        local = (lock_path.parent / artifact.path).resolve()
        return f"{local} --hash=sha256:{_checked_local_artifact(lock_path, package, local, artifact.hashes)}"
    hashes = sorted({f"sha256:{digest}" for digest in _locked_sha256s(package)})
    if package.version is None or not hashes:
        raise InstallError(
            f"{lock_path}: {package.name} has no version and sha256 hashes drover can install from — lock it from an index"
        )
    return f"{package.name}=={package.version}" + "".join(f" --hash={digest}" for digest in hashes)


def _locked_sha256s(package: Package) -> list[str]:
    artifacts: list[PackageWheel | PackageSdist] = [
        *(package.wheels or ()),
        *([package.sdist] if package.sdist else []),
    ]
    return [artifact.hashes["sha256"] for artifact in artifacts if "sha256" in artifact.hashes]


def _checked_local_artifact(lock_path: Path, package: Package, local: Path, hashes: Mapping[str, str]) -> str:
    """The sha256 of a local artifact the lock names, after checking its bytes against the locked hash."""
    if not local.is_file():
        raise InstallError(f"{lock_path}: {package.name}: {local} does not exist — build it or lock again")
    checkable = [name for name in hashes if name in hashlib.algorithms_guaranteed]
    algorithm = "sha256" if "sha256" in hashes else (checkable[0] if checkable else None)
    if algorithm is None:
        raise InstallError(f"{lock_path}: {package.name}: {local.name} has no hash drover can check (sha256)")
    actual = _file_digest(local, algorithm)
    if actual != hashes[algorithm].lower():
        raise InstallError(
            f"{lock_path}: {package.name}: {local} has {algorithm} {actual}, but the lock says {hashes[algorithm]} — "
            "the file changed since it was locked: lock again, or restore the locked file"
        )
    return actual if algorithm == "sha256" else _file_digest(local, "sha256")


def _file_digest(path: Path, algorithm: str) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()


# --- uv.lock -------------------------------------------------------------------------------------


def uv_lock_problem(project: Path, lock_path: Path | None = None) -> str | None:
    """How uv.lock fails to match the project's declared dependencies (what `uv lock --check` finds), or None.

    Compares names and version specifiers of [project] dependencies and optional-dependencies with the
    requires-dist uv recorded for the project; no index is consulted, so a mirror configured in CI does not
    make a good lock look stale. lock_path: the workspace's uv.lock (default: the project's own).
    """
    pyproject_path = project / "pyproject.toml"
    pyproject = _table(_load_toml(pyproject_path), "project")
    if "dependencies" in _strings(pyproject.get("dynamic")) or not isinstance(pyproject.get("name"), str):
        return None
    optional = _table(pyproject, "optional-dependencies")
    texts = [*_strings(pyproject.get("dependencies")), *(t for group in optional.values() for t in _strings(group))]
    declared = _requirement_keys(texts, pyproject_path)
    lock_path = lock_path or project / "uv.lock"
    lock = validated(UvLock, _load_toml(lock_path), lock_path)
    name = canonicalize_name(pyproject["name"])
    root = next((item for item in lock.package if canonicalize_name(item.name) == name), None)
    if root is None:
        return f"uv.lock has no entry for the project {pyproject['name']}"
    recorded = {
        (canonicalize_name(entry.name), _specifier(entry.specifier, lock_path, entry.name))
        for entry in root.metadata.requires_dist
    }
    added = sorted(f"{n}{s}" for n, s in declared - recorded)
    removed = sorted(f"{n}{s}" for n, s in recorded - declared)
    if not added and not removed:
        return None
    parts = [f"pyproject.toml asks for {', '.join(added)}"] if added else []
    parts += [f"uv.lock records {', '.join(removed)}"] if removed else []
    return "; ".join(parts)


def _specifier(text: str, path: Path, name: str) -> str:
    try:
        return str(SpecifierSet(text))
    except InvalidSpecifier as error:
        raise InstallError(f"{path}: {name}: cannot read version specifier {text[:200]!r}: {one_line(error)}") from None


def _requirement_keys(texts: Iterable[str], path: Path) -> set[tuple[str, str]]:
    keys = set()
    for text in texts:
        requirement = _project_requirement(text, path)
        keys.add((str(canonicalize_name(requirement.name)), str(SpecifierSet(str(requirement.specifier)))))
    return keys


def uv_workspace_root(project: Path) -> Path | None:
    """The root of the uv workspace the project is a member of, found as uv finds it: the nearest directory above
    the project whose pyproject.toml has [tool.uv.workspace], when its `members` globs take the project and its
    `exclude` globs do not; None for a stand-alone project (or one that is its own workspace's root)."""
    project = project.resolve()
    for directory in project.parents:
        if not readable_here(directory):
            return None  # the Action reads nothing above its workspace
        uv = _table(_table(_toml_or_empty(directory / "pyproject.toml"), "tool"), "uv")
        if "workspace" not in uv:
            continue
        workspace = _table(uv, "workspace")
        members = _globbed(directory, workspace.get("members"))
        return directory if project in members - _globbed(directory, workspace.get("exclude")) else None
    return None


def _globbed(root: Path, patterns: object) -> set[Path]:
    """The directories a workspace's globs name (a malformed glob names none, as it matches nothing for uv)."""
    found: set[Path] = set()
    for pattern in _strings(patterns):
        try:
            found.update(path.resolve() for path in root.glob(pattern) if path.is_dir())
        except (ValueError, NotImplementedError):
            continue
    return found


def project_name(project: Path) -> str | None:
    name = _table(_toml_or_empty(project / "pyproject.toml"), "project").get("name")
    return name if isinstance(name, str) else None


# --- the exactly pinned set (for the dependency key) --------------------------------------------

# Options that only say where to download from: with every artifact pinned by hash they cannot change what installs.
_INDEX_OPTIONS = {"-i", "--index-url", "--extra-index-url", "--no-index"}
_HASH_OPTION = re.compile(r"--hash[=\s]+(\S+)")


@dataclass(frozen=True, order=True)
class PinnedPackage:
    """One locked distribution that applies to the target: exactly one version, its artifacts by hash."""

    name: str
    version: str
    hashes: tuple[str, ...]
    extras: tuple[str, ...] = ()


def pinned_packages(requirements: RequirementSet) -> list[PinnedPackage] | None:
    """The requirement set as exactly pinned packages (markers already judged for the target), or None when
    any line is not `name==version` with `--hash` or a local wheel file (pinned by its bytes' sha256): a range,
    a remote URL, a directory, find-links, a constraint, an option that changes what installs; then only an
    install can tell what the tree holds."""
    if requirements.constraints or requirements.directories:
        return None
    if not all(path.is_file() and path.name.endswith(".whl") for path in requirements.references):
        return None
    pinned: list[PinnedPackage] = []
    for line in requirements.lines:
        if line.startswith("-"):
            if shlex.split(line)[0].split("=", 1)[0] not in _INDEX_OPTIONS:
                return None
            continue
        package = pinned_requirement(line) or _local_wheel(line)
        if package is None:
            return None
        pinned.append(package)
    return sorted(pinned)


def _local_wheel(line: str) -> PinnedPackage | None:
    """A line naming a local wheel (an absolute path, or `name @ file:…`), pinned by the sha256 of its bytes."""
    spec = line.partition(" --")[0].strip()
    text = spec.split(" @ ", 1)[1].strip() if " @ " in spec else spec
    path = _local_path(text, Path("/")) if text.startswith(("/", "file:")) else None
    if path is None or not path.is_file():
        return None
    try:
        name, version, _, _ = parse_wheel_filename(path.name)
    except InvalidWheelFilename:
        return None
    return PinnedPackage(str(name), str(version), (f"sha256:{_file_digest(path, 'sha256')}",))


def pinned_requirement(line: str) -> PinnedPackage | None:
    """A `name==version --hash=…` line as the package it pins exactly, or None for any other line."""
    spec, _, options = line.partition(" --")
    options = f"--{options}" if options else ""
    hashes = tuple(sorted(set(_HASH_OPTION.findall(options))))
    if _HASH_OPTION.sub("", options).strip():
        return None  # another per-requirement option (--config-settings, say) may change the build
    try:
        requirement = Requirement(spec.strip())
    except InvalidRequirement:
        return None
    specifiers = list(requirement.specifier)
    if not hashes or requirement.url or requirement.marker or len(specifiers) != 1:
        return None
    (specifier,) = specifiers
    if specifier.operator not in ("==", "===") or "*" in specifier.version:
        return None
    return PinnedPackage(
        str(canonicalize_name(requirement.name)), specifier.version, hashes, tuple(sorted(requirement.extras))
    )
