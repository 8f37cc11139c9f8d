"""Errors drover raises; each carries the exit code adapters use.

Input errors (settings, packaging input, install, preflight) exit 2 and happen
before any AWS write; update errors exit 1.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from pathlib import Path


class DroverError(RuntimeError):
    exit_code = 1


class SettingsError(DroverError):
    """A problem with drover.yml or with the options given to drover."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: Path | str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.file = str(file) if file is not None else None
        self.line = line
        self.column = column


class PackagingError(DroverError):
    """The install path or an extra path cannot be packaged as asked."""

    exit_code = 2


class InstallError(DroverError):
    """Dependencies could not be installed for the target platform."""

    exit_code = 2


class PreflightError(DroverError):
    """The deployment would break a Lambda limit or rule; nothing was written."""

    exit_code = 2


class UpdateError(DroverError):
    """AWS refused or failed an update."""

    exit_code = 1


def one_line(error: BaseException) -> str:
    """An error's message on one line (its whitespace collapsed), or its type's name when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


class FunctionNotFound(UpdateError):
    """GetFunction found no function of that name: where the name and region were set, and the closest names."""

    def __init__(
        self, function_name: str, region_name: str, closest: Sequence[str] = (), where: Mapping[str, str] | None = None
    ) -> None:
        self.function_name = function_name
        self.region_name = region_name
        self.closest = tuple(closest)
        self.where = dict(where or {})
        super().__init__(self._message())

    def located(self, where: Mapping[str, str]) -> FunctionNotFound:
        """The same error, naming where each setting came from: {"function_name": "drover.yml:5:5", ...}."""
        return FunctionNotFound(self.function_name, self.region_name, self.closest, where)

    def _message(self) -> str:
        origin = ", ".join(f"{key} at {place}" for key, place in self.where.items())
        suggestion = f"did you mean {', '.join(self.closest)}? " if self.closest else ""
        return (
            f"function {self.function_name} not found in region {self.region_name}"
            f"{f' ({origin})' if origin else ''} — {suggestion}fix the name or the region, or create it with your "
            "infrastructure tool first (drover updates functions, it does not create them)"
        )


def did_you_mean(path: Path) -> str:
    """'did you mean NAME? ' naming the closest existing names beside a missing path, or ''."""
    try:
        names = [entry.name for entry in path.parent.iterdir()]
    except OSError:
        return ""
    closest = difflib.get_close_matches(path.name, names, n=2, cutoff=0.6)
    return f"did you mean {' or '.join(str(path.parent / name) for name in closest)}? " if closest else ""
