"""The installed tree: its checks (platform tags, local links, Requires-Dist, not empty), metadata
normalization, runtime-package exclusion and the project's own files."""

from __future__ import annotations

import csv
import email.parser
import io
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import parse_wheel_filename

from drover.errors import InstallError
from drover.install.backends import Installer
from drover.install.plan import _Plan
from drover.install.platforms import TargetPlatform, _canonical, _environment
from drover.locks import marker_applies

# Packages the Lambda Python runtime already ships (canonical distribution names).
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "python-dateutil", "s3transfer", "six", "urllib3")


# Bookkeeping that differs between pip and uv (or between runs) and is useless on Lambda.
VOLATILE_METADATA = ("REQUESTED", "direct_url.json", "uv_cache.json")


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
