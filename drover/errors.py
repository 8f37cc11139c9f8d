"""Errors drover raises; each carries the exit code adapters use.

Input errors (settings, packaging input, install, preflight) exit 2 and happen
before any AWS write; update errors exit 1.
"""

from __future__ import annotations

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
