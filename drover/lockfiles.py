"""Reading the files an install is made from: bounded, non-blocking reads, and validated models of the locks.

Every requirements file and lock drover reads goes through `read_input_text`: a regular file only (a FIFO or a
device never blocks the run: it is opened non-blocking and refused), at most MAX_INPUT_BYTES. poetry.lock and
uv.lock are parsed with tomllib and validated with pydantic models of the fields drover uses: a malformed lock
is one InstallError naming the user's file and the offending entry, never a KeyError or a TypeError.
"""

from __future__ import annotations

import errno
import os
import stat
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from drover.errors import InstallError

MAX_INPUT_BYTES = 32 << 20  # a large real uv.lock is a few MB; anything bigger is a mistake or an attack
_READ_SIZE = 1 << 20
_confined_to: Path | None = None  # the Action's workspace: no input file is read from outside it


@contextmanager
def confine_reads(root: Path) -> Iterator[None]:
    """While inside, every requirements or lock file read must resolve (symlinks too) inside root (the Action)."""
    global _confined_to
    previous, _confined_to = _confined_to, Path(os.path.realpath(root))
    try:
        yield
    finally:
        _confined_to = previous


def check_confined(path: Path | str, what: str, shown: Path | None = None) -> None:
    """Refuse a path that resolves outside the confinement root, naming it (never its content)."""
    if _confined_to is None:
        return
    real = Path(os.path.realpath(path))
    if real != _confined_to and _confined_to not in real.parents:
        raise InstallError(
            f"{what} {shown or path} resolves to {str(real)!r}, outside the workspace {_confined_to} — in the Action "
            "every file drover reads must stay inside the workspace"
        )


def readable_here(path: Path) -> bool:
    """Whether the confinement (the Action's workspace) lets the run read path at all (always, outside the Action)."""
    if _confined_to is None:
        return True
    real = Path(os.path.realpath(path))
    return real == _confined_to or _confined_to in real.parents


def read_input_text(path: Path, what: str = "file") -> str:
    """A requirements or lock file's text: a regular UTF-8 file of at most MAX_INPUT_BYTES, read without blocking;
    in the Action, only from inside the workspace (checked before opening, and on the opened file)."""
    check_confined(path, what)
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as error:
        raise InstallError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        if os.path.exists(f"/proc/self/fd/{descriptor}"):  # the file opened, whatever a link swap did meanwhile
            check_confined(f"/proc/self/fd/{descriptor}", what, shown=path)
        info = os.fstat(descriptor)
        if not stat.S_ISREG(info.st_mode):
            raise InstallError(f"{what} {path} is not a regular file (a FIFO, a device or a directory?) — give a file")
        if info.st_size > MAX_INPUT_BYTES:
            raise InstallError(f"{what} {path} is {info.st_size} bytes, over drover's {MAX_INPUT_BYTES}-byte limit")
        data = _read_bounded(descriptor, path, what)
    finally:
        os.close(descriptor)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InstallError(
            f"{what} {path} is not UTF-8 text ({error.reason} at byte {error.start}) — save it as UTF-8"
        ) from None


def _read_bounded(descriptor: int, path: Path, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(descriptor, _READ_SIZE)
        except OSError as error:
            if error.errno == errno.EAGAIN:
                raise InstallError(f"{what} {path} would block — give a regular file") from None
            raise InstallError(f"cannot read {what} {path}: {error.strerror or error}") from None
        if not chunk:
            return b"".join(chunks)
        total += len(chunk)
        if total > MAX_INPUT_BYTES:  # the file grew while it was read
            raise InstallError(f"{what} {path} is over drover's {MAX_INPUT_BYTES}-byte limit")
        chunks.append(chunk)


def load_toml(path: Path, what: str = "file") -> dict[str, Any]:
    try:
        return tomllib.loads(read_input_text(path, what))
    except tomllib.TOMLDecodeError as error:
        raise InstallError(f"cannot read {path}: {error}") from None


# --- models of the fields drover reads ---------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class PoetryFile(_Model):
    file: str = ""
    hash: str


class PoetrySource(_Model):
    type: str | None = None
    url: str | None = None


class PoetryDependency(_Model):
    """One locked dependency edge: `name = "1.0"` is read as a version only."""

    version: str | None = None
    markers: str = ""
    optional: bool = False
    extras: list[str] = Field(default_factory=list)


class PoetryPackage(_Model):
    name: str
    version: str
    groups: list[str] | None = None
    markers: str | dict[str, str] | None = None
    source: PoetrySource | None = None
    files: list[PoetryFile] = Field(default_factory=list)
    dependencies: dict[str, str | PoetryDependency | list[str | PoetryDependency]] = Field(default_factory=dict)
    extras: dict[str, list[str]] = Field(default_factory=dict)

    def edges(self) -> list[tuple[str, PoetryDependency]]:
        found = []
        for name, value in self.dependencies.items():
            for spec in value if isinstance(value, list) else [value]:
                found.append((name, spec if isinstance(spec, PoetryDependency) else PoetryDependency(version=spec)))
        return found


class PoetryLock(_Model):
    package: list[PoetryPackage] = Field(default_factory=list)


class UvRequirement(_Model):
    name: str
    specifier: str = ""


class UvMetadata(_Model):
    requires_dist: list[UvRequirement] = Field(default_factory=list, alias="requires-dist")


class UvPackage(_Model):
    name: str
    metadata: UvMetadata = Field(default_factory=UvMetadata)


class UvLock(_Model):
    package: list[UvPackage] = Field(default_factory=list)
    manifest: dict[str, Any] = Field(default_factory=dict)

    def workspace_members(self) -> list[str]:
        members = self.manifest.get("members", [])
        return [str(member) for member in members] if isinstance(members, list) else []


Model = TypeVar("Model", bound=BaseModel)


def validated(model: type[Model], document: dict[str, Any], path: Path) -> Model:
    """The document as the model, or one InstallError naming the file, the entry and what is wrong with it."""
    try:
        return model.model_validate(document)
    except ValidationError as error:
        detail = error.errors()[0]
        where = _location(document, detail["loc"])
        raise InstallError(f"{path}: {where}: {detail['msg']} — fix the lock or generate it again") from None


def _location(document: dict[str, Any], location: tuple[int | str, ...]) -> str:
    """'package[3] (name "six") field version' for a location in a lock document."""
    parts: list[str] = []
    value: Any = document
    for index, key in enumerate(location):
        if isinstance(key, int):
            parts[-1:] = [f"{parts[-1] if parts else ''}[{key}]"]
            value = value[key] if isinstance(value, list) and key < len(value) else None
            if index == 1 and isinstance(value, dict) and isinstance(value.get("name"), str):
                parts[-1] += f" ({value['name'][:100]!r})"
        else:
            parts.append(str(key))
            value = value.get(key) if isinstance(value, dict) else None
    return ".".join(parts) or "the document"
