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
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from drover.errors import InstallError

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
    directories: list[Path] = field(default_factory=list)  # local projects, built from a clean copy
    hashed: bool = False
    extras: dict[str, set[str]] = field(default_factory=dict)  # extras asked for, by canonical name

    def add(self, other: RequirementSet) -> None:
        self.lines += other.lines
        self.constraints += other.constraints
        self.named += other.named
        self.kept += other.kept
        self.files += other.files
        self.references += other.references
        self.directories += other.directories
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
    try:
        text = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise InstallError(f"cannot read requirements file {path}: {error}") from None
    for number, line in _logical_lines(text):
        _read_line(line, f"{path}:{number}", base, environment, seen, result)
    return result


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
            result.directories.append(local)
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
        result.directories.append(local)
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
    root = project.resolve()
    return sorted({path.resolve() for path in found} - {root})


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
        return tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
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
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise InstallError(f"cannot read {path}: {error}") from None


def poetry_lock_requirements(project: Path) -> list[str]:
    """The locked main-group packages of a poetry project as hash-pinned requirement lines with markers.

    poetry.lock 2.1 (poetry 2) records each package's groups and markers; older locks are walked from
    the project's dependencies along the locked dependency edges (markers kept on the edges).
    """
    lock_path = project / "poetry.lock"
    lock = _load_toml(lock_path)
    packages: dict[str, dict[str, Any]] = {
        str(canonicalize_name(str(item["name"]))): item for item in lock.get("package", [])
    }
    if packages and all("groups" in item for item in packages.values()):
        chosen = {name: _poetry_marker(item) for name, item in packages.items() if "main" in item.get("groups", [])}
    else:
        chosen = _walk_poetry_graph(packages, _poetry_roots(project), lock_path)
    return [_poetry_line(packages[name], marker, lock_path) for name, marker in sorted(chosen.items())]


def _poetry_marker(item: Mapping[str, Any]) -> str:
    markers = item.get("markers")
    if isinstance(markers, dict):
        markers = markers.get("main")
    return str(markers) if markers else ""


MAX_EDGE_MARKERS = 16
_Root = tuple[str, str, frozenset[str]]  # (canonical name, marker, extras)


def _poetry_roots(project: Path) -> list[_Root]:
    pyproject = _load_toml(project / "pyproject.toml")
    roots: list[_Root] = []
    for text in pyproject.get("project", {}).get("dependencies", []):
        requirement = Requirement(text)
        roots.append(
            (canonicalize_name(requirement.name), str(requirement.marker or ""), frozenset(requirement.extras))
        )
    poetry_dependencies = pyproject.get("tool", {}).get("poetry", {}).get("dependencies", {})
    for name, value in poetry_dependencies.items():
        if name.lower() == "python" or (isinstance(value, dict) and value.get("optional")):
            continue
        spec = value if isinstance(value, dict) else {}
        roots.append((canonicalize_name(name), str(spec.get("markers", "")), frozenset(spec.get("extras", []))))
    return roots


def _extra_names(item: Mapping[str, Any], extras: frozenset[str]) -> set[str]:
    """The optional dependencies a locked package's extras switch on (its [package.extras] table)."""
    table = item.get("extras", {})
    names: set[str] = set()
    for extra in extras:
        for text in table.get(extra, []):
            match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)", str(text))
            if match:
                names.add(canonicalize_name(match[1]))
    return names


def _walk_poetry_graph(
    packages: Mapping[str, Mapping[str, Any]], roots: Iterable[_Root], lock_path: Path
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
        for dependency, value in item.get("dependencies", {}).items():
            for spec in value if isinstance(value, list) else [value]:
                spec = spec if isinstance(spec, dict) else {}
                if spec.get("optional") and canonicalize_name(dependency) not in switched_on:
                    continue
                edge = (
                    canonicalize_name(dependency),
                    _and_markers(marker, str(spec.get("markers", ""))),
                    frozenset(spec.get("extras", [])),
                )
                stack.append((edge, str(item["name"])))
    return {
        name: "" if "" in markers else " or ".join(f"({m})" for m in sorted(markers))
        for name, markers in reached.items()
    }


def _and_markers(first: str, second: str) -> str:
    if not first or not second:
        return first or second
    return f"({first}) and ({second})"


def _poetry_line(item: Mapping[str, Any], marker: str, lock_path: Path) -> str:
    name, version = str(item["name"]), str(item["version"])
    source = item.get("source", {})
    if isinstance(source, dict) and source.get("type") not in (None, "legacy"):
        raise InstallError(
            f"{lock_path}: {name} comes from a {source.get('type')} source ({source.get('url')}); drover installs "
            "poetry.lock packages from a package index — publish it to an index or install it with --requirements"
        )
    hashes = sorted({str(entry["hash"]) for entry in item.get("files", []) if "hash" in entry})
    if not hashes:
        raise InstallError(f"{lock_path}: {name} {version} has no file hashes — run `poetry lock` to record them")
    hash_options = "".join(f" --hash={digest}" for digest in hashes)
    return f"{name}=={version}{f' ; {marker}' if marker else ''}{hash_options}"


# --- pylock.toml (PEP 751) -----------------------------------------------------------------------


def pylock_requirements(lock_path: Path, environment: Mapping[str, str]) -> list[str]:
    """A PEP 751 lock's packages for the target (default extras and groups) as hash-pinned requirement lines."""
    lock = _load_toml(lock_path)
    lock_environment: dict[str, str | frozenset[str]] = {
        **environment,
        "extras": frozenset(),
        "dependency_groups": frozenset({"default"}),
    }
    lines = []
    for item in lock.get("packages", []):
        name, version = str(item["name"]), item.get("version")
        try:
            if item.get("marker") and not Marker(str(item["marker"])).evaluate(lock_environment, context="lock_file"):
                continue
        except InvalidMarker as error:
            raise InstallError(f"{lock_path}: {name}: invalid marker {item['marker']!r}: {error}") from None
        marker = ""
        hashes = sorted(
            {
                f"sha256:{entry['hashes']['sha256']}"
                for entry in [*item.get("wheels", []), *([item["sdist"]] if "sdist" in item else [])]
                if "sha256" in entry.get("hashes", {})
            }
        )
        local = [entry["path"] for entry in item.get("wheels", []) if "path" in entry]
        if local:
            lines.append(f"{(lock_path.parent / local[0]).resolve()}{marker}")
        elif "directory" in item:
            lines.append(f"{(lock_path.parent / item['directory']['path']).resolve()}{marker}")
        elif version is None or not hashes:
            raise InstallError(
                f"{lock_path}: {name} has no version and sha256 hashes drover can install from — lock it from an index"
            )
        else:
            lines.append(f"{name}=={version}{marker}" + "".join(f" --hash={digest}" for digest in hashes))
    return lines


# --- uv.lock -------------------------------------------------------------------------------------


def uv_lock_problem(project: Path) -> str | None:
    """How uv.lock fails to match the project's declared dependencies (what `uv lock --check` finds), or None.

    Compares names and version specifiers of [project] dependencies and optional-dependencies with the
    requires-dist uv recorded for the project; no index is consulted, so a mirror configured in CI does not
    make a good lock look stale.
    """
    pyproject = _load_toml(project / "pyproject.toml").get("project", {})
    if "dependencies" in pyproject.get("dynamic", []) or "name" not in pyproject:
        return None
    declared = _requirement_keys(
        [
            *pyproject.get("dependencies", []),
            *(text for group in pyproject.get("optional-dependencies", {}).values() for text in group),
        ]
    )
    lock = _load_toml(project / "uv.lock")
    name = canonicalize_name(str(pyproject["name"]))
    root = next(
        (item for item in lock.get("package", []) if canonicalize_name(str(item.get("name", ""))) == name), None
    )
    if root is None:
        return f"uv.lock has no entry for the project {pyproject['name']}"
    recorded = {
        (canonicalize_name(str(entry["name"])), str(SpecifierSet(str(entry.get("specifier", "")))))
        for entry in root.get("metadata", {}).get("requires-dist", [])
    }
    added = sorted(f"{n}{s}" for n, s in declared - recorded)
    removed = sorted(f"{n}{s}" for n, s in recorded - declared)
    if not added and not removed:
        return None
    parts = [f"pyproject.toml asks for {', '.join(added)}"] if added else []
    parts += [f"uv.lock records {', '.join(removed)}"] if removed else []
    return "; ".join(parts)


def _requirement_keys(texts: Iterable[str]) -> set[tuple[str, str]]:
    keys = set()
    for text in texts:
        requirement = Requirement(text)
        keys.add((str(canonicalize_name(requirement.name)), str(SpecifierSet(str(requirement.specifier)))))
    return keys


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
        package = _pinned(line) or _local_wheel(line)
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
    with path.open("rb") as stream:
        digest = hashlib.file_digest(stream, "sha256").hexdigest()
    return PinnedPackage(str(name), str(version), (f"sha256:{digest}",))


def _pinned(line: str) -> PinnedPackage | None:
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
