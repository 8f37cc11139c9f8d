"""Shared fixtures: build file trees, stages and settings files; check zips."""

from __future__ import annotations

import hashlib
import os
import subprocess
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from drover.models import Stage
from drover.packaging import HashedFile, PackageFile, hash_files, walk_files

TreeSpec = Mapping[str, "bytes | tuple[bytes, int]"]

BASE_STAGE: dict[str, Any] = {
    "region_name": "us-east-1",
    "function_name": "fn",
    "compatible_runtime": "python3.12",
    "function_file_patterns": ["^app"],
}


def build_tree(root: Path, files: TreeSpec) -> Path:
    """Create files under root, in the order given: {relative name: bytes | (bytes, mode)}.

    Modes are set with chmod, so the umask never decides them; without a mode a file is 0o644.
    """
    for name, spec in files.items():
        content, mode = spec if isinstance(spec, tuple) else (spec, 0o644)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        os.chmod(path, mode)
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture
def make_tree() -> Callable[[Path, TreeSpec], Path]:
    return build_tree


@pytest.fixture
def stage() -> Callable[..., Stage]:
    """Factory: a valid Stage (us-east-1, "fn", python3.12, patterns ['^app']) with overrides."""

    def factory(**overrides: Any) -> Stage:
        return Stage.model_validate({**BASE_STAGE, **overrides})

    return factory


@pytest.fixture
def write_settings(tmp_path: Path) -> Callable[..., Path]:
    """Write settings text (or bytes) to tmp_path/<name> and return the path."""

    def write(text: str | bytes, name: str = "drover.yml") -> Path:
        path = tmp_path / name
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    return write


def hashed_tree(root: Path, prefix: str = "") -> list[HashedFile]:
    """Every file under root as HashedFiles named prefix + relative POSIX name, sorted by name."""
    files = [
        PackageFile(prefix + name, source, bool(info.st_mode & 0o111), info.st_size)
        for name, source, info in walk_files(root, ())
    ]
    return sorted(hash_files(files), key=lambda hashed: hashed.file.archive_name)


@pytest.fixture
def hashed_files() -> Callable[..., list[HashedFile]]:
    return hashed_tree


def check_zip(path: Path, *, read_all: bool = True) -> zipfile.ZipFile:
    """Assert the zip passes `unzip -t` (and, with read_all, zipfile's CRC check of every entry).

    Returns the zip opened with zipfile; use it in a `with` block.
    """
    result = subprocess.run(["unzip", "-t", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    assert "No errors detected" in result.stdout
    archive = zipfile.ZipFile(path)
    if read_all:
        assert archive.testzip() is None
    return archive


@pytest.fixture
def valid_zip() -> Callable[[Path], zipfile.ZipFile]:
    return check_zip


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def sha256() -> Callable[[bytes], str]:
    return sha256_hex


from tests.aws import aws, infra, moto_server  # noqa: E402,F401  (AWS fixtures: a real moto server)
