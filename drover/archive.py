"""Reproducible ZIP archives, compressed in parallel.

Python's zipfile cannot take pre-compressed data, so this module writes the (small) ZIP
structures itself: entries in the given order, 1980-01-01 timestamps, Unix modes 0644/0755,
libdeflate for whole buffers (zlib level 9 size at a fraction of its time; files over 32 MB one at a
time) and zlib-ng streaming only for files larger than a Lambda package can hold. Identical inputs give identical bytes on any machine
running the same codec versions.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import stat
import struct
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import deflate
from zlib_ng import zlib_ng

from drover.errors import PackagingError
from drover.models import DeployResult
from drover.packaging import (
    READ_SIZE,
    HashedFile,
    PackageFile,
    changed_while_packaging,
    check_read_size,
    default_workers,
    open_as_seen,
    read_digest,
    thread_buffer,
)

COMPRESSION_LEVEL = 6
# Per-kind libdeflate levels, measured on the benchmark workload (bench/, DESIGN.md): shared
# objects at 5 and Python sources at 4 cost 1% in size and save a fifth of the deflate time.
SHARED_OBJECT_LEVEL = 5
PYTHON_SOURCE_LEVEL = 4
WHOLE_BUFFER_LIMIT = 32 << 20  # larger files are compressed whole one at a time (_compress_large)
LARGE_BUFFER_LIMIT = 256 << 20  # above Lambda's unzipped limit (a package-only build): zlib-ng streams it
_LARGE_FILE_AT_A_TIME = threading.Lock()
IN_FLIGHT_BYTES = 96 << 20
STORED, DEFLATED = 0, 8
DOS_TIME, DOS_DATE = 0, (0 << 9) | (1 << 5) | 1
UTF8_FLAG = 0x800
MADE_BY_UNIX = 3 << 8
VERSION_DEFAULT, VERSION_ZIP64 = 20, 45
U16_MAX, U32_MAX = 0xFFFF, 0xFFFFFFFF


BATCH_BYTES = 1 << 20
BATCH_FILES = 64


FUNCTION_ARCHIVE = "function.zip"
REQUIREMENTS_ARCHIVE = "requirements.zip"
ARCHIVE_NAMES = {"function": FUNCTION_ARCHIVE, "requirements": REQUIREMENTS_ARCHIVE}


def check_archive_dir(
    archive_dir: Path, install_path: Path, extra_paths: Sequence[Path], working_directory: Path
) -> None:
    """Refuse, before any work, an --archive-dir that would be read as input or cannot take the archives.

    Rule: the archive dir is never packaged. It may sit inside the install path (the walk skips it),
    but it may not be the install path itself, nor an extra path or lie inside one (extra paths are
    walked whole), and function.zip/requirements.zip in it must be files if they exist.
    """
    target = Path(os.path.realpath(archive_dir))
    inputs = [("the install path", install_path)]
    inputs += [
        (f"function_extra_paths entry {str(path)!r}", path if path.is_absolute() else working_directory / path)
        for path in extra_paths
    ]
    for what, path in inputs:
        source = Path(os.path.realpath(path))
        if target == source or (what != "the install path" and source in target.parents):
            where = "is" if target == source else "is inside"
            raise PackagingError(
                f"--archive-dir {archive_dir} {where} {what} ({path}), so the archives would package themselves — "
                "keep them in a directory outside the inputs (e.g. --archive-dir dist)"
            )
    if os.path.lexists(archive_dir) and not archive_dir.is_dir():
        raise PackagingError(f"--archive-dir {archive_dir} exists and is not a directory — remove it or pick another")
    _check_archive_dir_parents(archive_dir)
    for name in ARCHIVE_NAMES.values():
        existing = archive_dir / name
        if os.path.lexists(existing) and (existing.is_symlink() or not existing.is_file()):
            raise PackagingError(
                f"--archive-dir {archive_dir}: {name} exists and is not a regular file — remove it or pick another "
                "--archive-dir"
            )


def _check_archive_dir_parents(archive_dir: Path) -> None:
    """The archive dir is made with its parents: the nearest one that exists must be a directory."""
    for parent in archive_dir.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise PackagingError(
                    f"--archive-dir {archive_dir}: {parent} is not a directory — pick an --archive-dir "
                    "whose parents are directories (e.g. --archive-dir dist)"
                )
            return


@contextmanager
def archive_scratch(archive_dir: Path | None, publish: Callable[[Path, Path], None] | None = None) -> Iterator[Path]:
    """A scratch directory for the archives; with --archive-dir they move there (publish, by default
    publish_archives) only when the run succeeds, so a failed run (a preflight error, say) never leaves
    archives behind."""
    if archive_dir is not None:
        archive_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".drover-", dir=archive_dir) as directory:
        yield Path(directory)
        if archive_dir is not None:
            (publish or publish_archives)(Path(directory), archive_dir)


def publish_archives(scratch: Path, archive_dir: Path) -> None:
    """Move this run's archives into archive_dir and remove an earlier run's archive this run did not make,
    so archive_dir ends with exactly this run's archives."""
    for name in ARCHIVE_NAMES.values():
        built = scratch / name
        if built.exists():
            os.replace(built, archive_dir / name)
        else:
            (archive_dir / name).unlink(missing_ok=True)


@dataclass(frozen=True)
class ArchiveInfo:
    path: Path
    size: int
    code_sha256: str
    file_count: int
    files: tuple[HashedFile, ...] = ()


@dataclass
class _Compressed:
    hashed: HashedFile
    crc: int
    method: int
    payload: bytes | bytearray | None
    spool: Path | None
    compressed_size: int


def write_zip(
    path: Path,
    files: Sequence[HashedFile | PackageFile],
    workers: int | None = None,
    on_file: Callable[[int], None] | None = None,
) -> ArchiveInfo:
    """Write files (in the given order) to path, atomically.

    Each file is read once: its SHA-256 is computed while it is compressed and returned in
    ArchiveInfo.files; a HashedFile whose bytes no longer match its hash is a PackagingError.
    on_file(size) is called, from the worker threads, as each file is compressed.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    spool_dir = Path(tempfile.mkdtemp(prefix=".drover-", dir=path.parent))
    try:
        with open(partial, "wb") as stream:
            writer = _ZipWriter(stream)
            with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
                pending: deque[tuple[int, Future[list[_Compressed]]]] = deque()
                in_flight = 0
                for batch, cost in _batches(files):
                    while pending and in_flight + cost > IN_FLIGHT_BYTES:
                        done_cost, future = pending.popleft()
                        writer.add_all(future.result())
                        in_flight -= done_cost
                    pending.append((cost, pool.submit(_compress_batch, batch, spool_dir, on_file)))
                    in_flight += cost
                while pending:
                    writer.add_all(pending.popleft()[1].result())
            writer.finish()
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(spool_dir, ignore_errors=True)
    return ArchiveInfo(
        path,
        writer.offset,
        base64.b64encode(writer.digest.digest()).decode(),
        len(writer.entries),
        tuple(writer.hashed),
    )


def _batches(files: Sequence[HashedFile | PackageFile]) -> Iterator[tuple[list[HashedFile | PackageFile], int]]:
    """Group consecutive small files so one task amortizes the thread-pool overhead; large files go alone."""
    batch: list[HashedFile | PackageFile] = []
    batch_bytes = 0
    for item in files:
        cost = min(_package_file(item).size, WHOLE_BUFFER_LIMIT)
        if batch and (batch_bytes + cost > BATCH_BYTES or len(batch) >= BATCH_FILES):
            yield batch, batch_bytes
            batch, batch_bytes = [], 0
        batch.append(item)
        batch_bytes += cost
    if batch:
        yield batch, batch_bytes


def _package_file(item: HashedFile | PackageFile) -> PackageFile:
    return item.file if isinstance(item, HashedFile) else item


def _compress_batch(
    batch: Sequence[HashedFile | PackageFile], spool_dir: Path, on_file: Callable[[int], None] | None = None
) -> list[_Compressed]:
    compressed = []
    for item in batch:
        compressed.append(_compress(item, spool_dir))
        if on_file is not None:
            on_file(compressed[-1].hashed.size)
    return compressed


def _compress(item: HashedFile | PackageFile, spool_dir: Path) -> _Compressed:
    package_file = _package_file(item)
    if package_file.size > LARGE_BUFFER_LIMIT:
        compressed = _compress_streaming(package_file, spool_dir)
    elif package_file.size > WHOLE_BUFFER_LIMIT:
        compressed = _compress_large(package_file, spool_dir)
    else:
        compressed = _compress_whole(package_file)
    if isinstance(item, HashedFile) and compressed.hashed.sha256 != item.sha256:
        raise changed_while_packaging(package_file.source, "its bytes differ from when they were hashed")
    return compressed


def compression_level(archive_name: str) -> int:
    """The fixed libdeflate level for an entry, chosen by its name alone so builds stay reproducible."""
    base = archive_name.rsplit("/", 1)[-1]
    if base.endswith(".py"):
        return PYTHON_SOURCE_LEVEL
    if base.endswith(".so") or ".so." in base:
        return SHARED_OBJECT_LEVEL
    return COMPRESSION_LEVEL


def _compress_whole(package_file: PackageFile) -> _Compressed:
    data = _read_whole(package_file)
    sha256 = hashlib.sha256(data).hexdigest()
    crc = deflate.crc32(data)
    packed = deflate.deflate_compress(data, compression_level(package_file.archive_name))
    method, payload = (DEFLATED, packed) if len(packed) < len(data) else (STORED, bytes(data))
    return _Compressed(HashedFile(package_file, len(data), sha256), crc, method, payload, None, len(payload))


def _compress_large(package_file: PackageFile, spool_dir: Path) -> _Compressed:
    """A large file (a native library: polars' is 178 MB) through libdeflate whole, one large file at a time.

    zlib-ng streaming at level 6 left such files 3.4% larger than `zip -9`, and its level 9 costs 2-4x the
    time; libdeflate over the whole buffer is within 1.2% of `zip -9` at zlib-ng level 6's time. The memory is
    one large file's buffers, once (the lock), and the compressed bytes wait in a spool file, not in memory."""
    with _LARGE_FILE_AT_A_TIME:
        data = _read_whole(package_file, bytearray(package_file.size + 1))
        sha256 = hashlib.sha256(data).hexdigest()
        crc = deflate.crc32(data)
        packed = deflate.deflate_compress(data, compression_level(package_file.archive_name))
        method, payload = (DEFLATED, packed) if len(packed) < len(data) else (STORED, data)
        descriptor, spool_name = tempfile.mkstemp(dir=spool_dir)
        with os.fdopen(descriptor, "wb") as spool:
            spool.write(payload)
        size, compressed_size = len(data), len(payload)
        del data, packed, payload
    return _Compressed(HashedFile(package_file, size, sha256), crc, method, None, Path(spool_name), compressed_size)


def _read_whole(package_file: PackageFile, buffer: bytearray | None = None) -> memoryview:
    """Read a file into this thread's reusable buffer (or the given one): no per-file allocation, so the heap
    does not fragment as trees grow (peak RSS stays flat; bench/ "scale x4")."""
    capacity = package_file.size + 1  # one spare byte tells a file that grew since the walk
    view = memoryview(thread_buffer(capacity) if buffer is None else buffer)[:capacity]
    length = 0
    descriptor = open_as_seen(package_file)
    try:
        with open(descriptor, "rb", buffering=0, closefd=False) as stream:
            while length < capacity and (count := stream.readinto(view[length:])):
                length += count
    except OSError as error:
        raise PackagingError(f"{package_file.source}: cannot read: {error.strerror}") from None
    finally:
        os.close(descriptor)
    check_read_size(package_file, length)
    return view[:length]


def _compress_streaming(package_file: PackageFile, spool_dir: Path) -> _Compressed:
    compressor = zlib_ng.compressobj(COMPRESSION_LEVEL, zlib_ng.DEFLATED, -15, 9)
    crc = 0
    descriptor, spool_name = tempfile.mkstemp(dir=spool_dir)
    with os.fdopen(descriptor, "wb") as spool:

        def consume(chunk: bytes) -> None:
            nonlocal crc
            crc = zlib_ng.crc32(chunk, crc)
            spool.write(compressor.compress(chunk))

        size, sha256 = read_digest(package_file, consume)
        spool.write(compressor.flush())
        compressed_size = spool.tell()
    return _Compressed(HashedFile(package_file, size, sha256), crc, DEFLATED, None, Path(spool_name), compressed_size)


@dataclass(frozen=True)
class _CentralEntry:
    name: bytes
    flags: int
    method: int
    crc: int
    compressed_size: int
    size: int
    mode: int
    offset: int


class _ZipWriter:
    def __init__(self, stream: BinaryIO) -> None:
        self.stream = stream
        self.offset = 0
        self.digest = hashlib.sha256()
        self.entries: list[_CentralEntry] = []
        self.hashed: list[HashedFile] = []

    def write(self, data: bytes | bytearray) -> None:
        self.stream.write(data)
        self.digest.update(data)
        self.offset += len(data)

    def add_all(self, entries: Sequence[_Compressed]) -> None:
        for entry in entries:
            self.add(entry)

    def add(self, entry: _Compressed) -> None:
        self.hashed.append(entry.hashed)
        package_file = entry.hashed.file
        size = entry.hashed.size
        name = package_file.archive_name
        if name.startswith("/") or ".." in name.split("/"):
            raise PackagingError(f"refusing unsafe archive name {name!r}")
        encoded = name.encode("utf-8")
        flags = 0 if encoded.isascii() else UTF8_FLAG
        if size > U32_MAX or entry.compressed_size > U32_MAX:
            raise PackagingError(f"{package_file.source}: files over 4 GiB cannot be archived for Lambda")
        self.entries.append(
            _CentralEntry(
                encoded,
                flags,
                entry.method,
                entry.crc,
                entry.compressed_size,
                size,
                stat.S_IFREG | package_file.mode,
                self.offset,
            )
        )
        self.write(
            struct.pack(
                "<IHHHHHIIIHH",
                0x04034B50,
                VERSION_DEFAULT,
                flags,
                entry.method,
                DOS_TIME,
                DOS_DATE,
                entry.crc,
                entry.compressed_size,
                size,
                len(encoded),
                0,
            )
            + encoded
        )
        if entry.payload is not None:
            self.write(entry.payload)
        elif entry.spool is not None:
            with open(entry.spool, "rb") as spool:
                while chunk := spool.read(READ_SIZE):
                    self.write(chunk)
            entry.spool.unlink()

    def finish(self) -> None:
        directory_offset = self.offset
        for entry in self.entries:
            extra = b""
            offset = entry.offset
            if offset > U32_MAX:
                extra = struct.pack("<HHQ", 0x0001, 8, offset)
                offset = U32_MAX
            version = VERSION_ZIP64 if extra else VERSION_DEFAULT
            self.write(
                struct.pack(
                    "<IHHHHHHIIIHHHHHII",
                    0x02014B50,
                    MADE_BY_UNIX | version,
                    version,
                    entry.flags,
                    entry.method,
                    DOS_TIME,
                    DOS_DATE,
                    entry.crc,
                    entry.compressed_size,
                    entry.size,
                    len(entry.name),
                    len(extra),
                    0,
                    0,
                    0,
                    entry.mode << 16,
                    offset,
                )
                + entry.name
                + extra
            )
        directory_size = self.offset - directory_offset
        count = len(self.entries)
        if count > U16_MAX or directory_offset > U32_MAX or directory_size > U32_MAX:
            zip64_offset = self.offset
            self.write(
                struct.pack(
                    "<IQHHIIQQQQ",
                    0x06064B50,
                    44,
                    MADE_BY_UNIX | VERSION_ZIP64,
                    VERSION_ZIP64,
                    0,
                    0,
                    count,
                    count,
                    directory_size,
                    directory_offset,
                )
            )
            self.write(struct.pack("<IIQI", 0x07064B50, 0, zip64_offset, 1))
        self.write(
            struct.pack(
                "<IHHHHIIH",
                0x06054B50,
                0,
                0,
                min(count, U16_MAX),
                min(count, U16_MAX),
                min(directory_size, U32_MAX),
                min(directory_offset, U32_MAX),
                0,
            )
        )


# -- how a run reports its archives ------------------------------------------------------------


def record_archive(result: DeployResult, archive: ArchiveInfo, kind: str, archive_dir: Path | None) -> None:
    """Report an archive's size, and its final path when it is kept in archive_dir."""
    path = str((archive_dir / archive.path.name).resolve()) if archive_dir is not None else None
    if kind == "function":
        result.function_archive, result.function_size = path, archive.size
    else:
        result.requirements_archive, result.requirements_size = path, archive.size
