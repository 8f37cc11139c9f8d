"""The original drover's file and I/O helpers, kept as public API over drover.packaging."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from re import Pattern

from drover.archive import write_zip
from drover.packaging import READ_SIZE, PackageFile, walk_files

SIZE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


@dataclass(frozen=True)
class ArchiveMapping:
    """A mapping between an archive file name and its corresponding source filesystem path."""

    source_file_name: Path
    archive_file_name: Path


@dataclass
class FunctionLayerMappings:
    function_mappings: Sequence[ArchiveMapping] = field(default_factory=list)
    function_digest: str | None = None
    requirements_mappings: Sequence[ArchiveMapping] = field(default_factory=list)
    requirements_digest: str | None = None


def format_file_size(size_in_bytes: float) -> str:
    """Return the size in its largest power-of-1024 unit: 2048 → '2.00 KiB'."""
    size = float(size_in_bytes)
    for unit in SIZE_UNITS[:-1]:
        if abs(size) < 1024:
            return f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} {SIZE_UNITS[-1]}"


def get_digest(source_file_names: Sequence[Path], block_size: int = READ_SIZE) -> str | None:
    """SHA-256 over the content of the files in the given order; None for no files."""
    if not source_file_names:
        return None
    digest = hashlib.sha256()
    for source_file_name in source_file_names:
        with open(source_file_name, "rb") as stream:
            while block := stream.read(block_size):
                digest.update(block)
    return digest.hexdigest()


def get_relative_file_names(
    source_path: Path, exclude_patterns: Sequence[Pattern[str]] | None = None
) -> Iterable[Path]:
    """Files beneath source_path, relative to it, minus those whose POSIX path an exclude pattern matches."""
    for relative_name, _, _ in walk_files(source_path, exclude_patterns or ()):
        yield Path(relative_name)


def write_archive(archive_file_name: Path, archive_mappings: Iterable[ArchiveMapping]) -> None:
    """Write a reproducible zip of the mappings, sorted by archive name."""
    files: list[PackageFile] = []
    for mapping in archive_mappings:
        info = mapping.source_file_name.stat()
        files.append(
            PackageFile(
                mapping.archive_file_name.as_posix(),
                str(mapping.source_file_name),
                bool(info.st_mode & 0o111),
                info.st_size,
            )
        )
    files.sort(key=lambda package_file: package_file.archive_name)
    write_zip(archive_file_name, files)
