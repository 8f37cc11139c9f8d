"""The original drover's public API, kept: drover.io helpers, dataclasses, errors and Drover."""

from __future__ import annotations

import hashlib
import inspect
import re
from pathlib import Path

import pytest

import drover
from drover.io import (
    ArchiveMapping,
    FunctionLayerMappings,
    format_file_size,
    get_digest,
    get_relative_file_names,
    write_archive,
)
from drover.models import Settings


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (2048, "2.00 KiB"),
        (16252928.0, "15.50 MiB"),
        (0, "0.00 B"),
        (512, "512.00 B"),
        (1023, "1023.00 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (3 * 1024**3, "3.00 GiB"),
        (1024**6, "1024.00 PiB"),
    ],
)
def test_format_file_size_uses_the_largest_power_of_1024(size, text):
    assert format_file_size(size) == text


def test_get_digest_of_no_files_is_none():
    assert get_digest([]) is None


def test_get_digest_is_sha256_of_the_concatenated_content_and_stable(tmp_path, make_tree):
    root = make_tree(tmp_path, {"a": b"alpha", "b": b"beta" * 10_000})
    files = [root / "a", root / "b"]

    first = get_digest(files)

    assert first == get_digest(files) == get_digest(files, block_size=7)
    assert first == hashlib.sha256(b"alpha" + b"beta" * 10_000).hexdigest()


def test_get_digest_follows_content(tmp_path, make_tree):
    root = make_tree(tmp_path, {"a": b"alpha"})
    before = get_digest([root / "a"])

    (root / "a").write_bytes(b"alpha!")

    assert get_digest([root / "a"]) != before


def test_get_relative_file_names_lists_files_relative_to_the_source_path(tmp_path, make_tree):
    root = make_tree(tmp_path / "src", {"a.py": b"", "pkg/b.py": b"", "pkg/sub/c.txt": b""})

    assert sorted(get_relative_file_names(root)) == [Path("a.py"), Path("pkg/b.py"), Path("pkg/sub/c.txt")]


def test_get_relative_file_names_applies_exclude_patterns_to_the_posix_path(tmp_path, make_tree):
    root = make_tree(
        tmp_path / "src",
        {"a.py": b"", "pkg/b.py": b"", "pkg/__pycache__/b.cpython-312.pyc": b"", "tests/test_a.py": b""},
    )

    names = get_relative_file_names(root, [re.compile(r".*__pycache__"), re.compile(r"tests/")])

    assert sorted(names) == [Path("a.py"), Path("pkg/b.py")]


def test_write_archive_writes_a_valid_zip_sorted_by_archive_name(tmp_path, make_tree, valid_zip):
    root = make_tree(tmp_path / "src", {"z.py": b"z", "a/b.py": b"b", "run": (b"#!/bin/sh\n", 0o755)})
    mappings = [
        ArchiveMapping(source_file_name=root / "z.py", archive_file_name=Path("python/z.py")),
        ArchiveMapping(source_file_name=root / "run", archive_file_name=Path("python/bin/run")),
        ArchiveMapping(source_file_name=root / "a" / "b.py", archive_file_name=Path("python/a/b.py")),
    ]

    write_archive(tmp_path / "layer.zip", mappings)

    with valid_zip(tmp_path / "layer.zip") as opened:
        assert opened.namelist() == ["python/a/b.py", "python/bin/run", "python/z.py"]
        assert opened.read("python/z.py") == b"z"
        assert opened.getinfo("python/bin/run").external_attr >> 16 == 0o100755


def test_archive_mapping_has_the_seed_fields(tmp_path):
    mapping = ArchiveMapping(tmp_path / "src.py", Path("src.py"))

    assert mapping.source_file_name == tmp_path / "src.py"
    assert mapping.archive_file_name == Path("src.py")


def test_function_layer_mappings_defaults_and_fields(tmp_path):
    empty = FunctionLayerMappings()
    mapping = ArchiveMapping(source_file_name=tmp_path / "a", archive_file_name=Path("a"))

    filled = FunctionLayerMappings(
        function_mappings=[mapping], function_digest="f", requirements_mappings=[], requirements_digest=None
    )

    assert (empty.function_mappings, empty.function_digest) == ([], None)
    assert (empty.requirements_mappings, empty.requirements_digest) == ([], None)
    assert filled.function_mappings == [mapping]
    assert filled.function_digest == "f"


@pytest.mark.parametrize("error", [drover.SettingsError, drover.UpdateError])
def test_seed_errors_are_runtime_errors(error):
    assert issubclass(error, RuntimeError)
    with pytest.raises(RuntimeError, match="boom"):
        raise error("boom")


def test_drover_keeps_the_seed_constructor_and_update_method():
    parameters = inspect.signature(drover.Drover).parameters

    assert list(parameters)[:3] == ["settings", "stage", "interactive"]
    assert parameters["interactive"].default is False
    assert list(inspect.signature(drover.Drover.update).parameters) == ["self", "install_path"]


def test_drover_rejects_an_unknown_stage(stage):
    settings = Settings(stages={"prod": stage()})

    with pytest.raises(drover.SettingsError, match=r"unknown stage 'staging'.*prod"):
        drover.Drover(settings, "staging")
