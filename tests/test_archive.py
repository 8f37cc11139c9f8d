"""write_zip: valid, reproducible zips with fixed timestamps and normalized modes."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from drover import PackagingError, archive
from drover.archive import write_zip
from drover.packaging import HashedFile, PackageFile, hash_files

TREE = {
    "pkg/__init__.py": b"",
    "pkg/handler.py": b"def handler(event, context):\n    return event\n" * 50,
    "pkg/data/table.csv": b"a,b,c\n1,2,3\n" * 1000,
    "bin/run": (b"#!/bin/sh\nexec python -m pkg\n", 0o755),
    "README.txt": b"hello\n",
}


def zip_bytes(path: Path) -> bytes:
    return path.read_bytes()


def test_zip_is_valid_for_unzip_and_zipfile(tmp_path, make_tree, hashed_files, valid_zip):
    files = hashed_files(make_tree(tmp_path / "src", TREE))

    info = write_zip(tmp_path / "out.zip", files)

    with valid_zip(info.path) as opened:
        assert len(opened.infolist()) == len(TREE)


def test_entries_are_the_given_names_in_sorted_order(tmp_path, make_tree, hashed_files, valid_zip):
    files = hashed_files(make_tree(tmp_path / "src", TREE), prefix="python/")

    info = write_zip(tmp_path / "out.zip", files)

    with valid_zip(info.path) as opened:
        assert opened.namelist() == sorted("python/" + name for name in TREE)
    assert info.file_count == len(TREE)


def test_every_entry_is_dated_1980_01_01(tmp_path, make_tree, hashed_files, valid_zip):
    root = make_tree(tmp_path / "src", TREE)
    for path in root.rglob("*"):
        os.utime(path, (1_700_000_000, 1_700_000_000))

    info = write_zip(tmp_path / "out.zip", hashed_files(root))

    with valid_zip(info.path) as opened:
        assert {entry.date_time for entry in opened.infolist()} == {(1980, 1, 1, 0, 0, 0)}


@pytest.mark.parametrize(
    ("source_mode", "stored_mode"),
    [
        (0o644, 0o100644),
        (0o600, 0o100644),
        (0o666, 0o100644),
        (0o400, 0o100644),
        (0o755, 0o100755),
        (0o700, 0o100755),
        (0o777, 0o100755),
        (0o4755, 0o100755),
        (0o2755, 0o100755),
        (0o1777, 0o100755),
    ],
    ids=oct,
)
def test_modes_are_normalized_to_0644_or_0755(tmp_path, make_tree, hashed_files, valid_zip, source_mode, stored_mode):
    root = make_tree(tmp_path / "src", {"file": (b"content", source_mode)})
    assert os.stat(root / "file").st_mode & 0o7777 == source_mode  # the odd mode really is on disk

    info = write_zip(tmp_path / "out.zip", hashed_files(root))

    with valid_zip(info.path) as opened:
        (entry,) = opened.infolist()
    assert entry.external_attr >> 16 == stored_mode
    assert entry.external_attr >> 16 & 0o7002 == 0  # never setuid/setgid/sticky or world-writable
    assert entry.create_system == 3  # Unix, so unzip restores the mode


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.py", "pkg/../../escape.py", ".."])
def test_unsafe_archive_names_are_refused_and_no_zip_is_left(tmp_path, make_tree, name):
    root = make_tree(tmp_path / "src", {"file.py": b"x"})
    target = tmp_path / "out" / "bad.zip"

    with pytest.raises(PackagingError, match="unsafe archive name"):
        write_zip(target, [PackageFile(name, str(root / "file.py"), False, 1)])

    assert list((tmp_path / "out").iterdir()) == []


def test_archives_never_contain_absolute_or_parent_names(tmp_path, make_tree, hashed_files, valid_zip):
    info = write_zip(tmp_path / "out.zip", hashed_files(make_tree(tmp_path / "src", TREE)))

    with valid_zip(info.path) as opened:
        for entry_name in opened.namelist():
            assert not entry_name.startswith("/")
            assert ".." not in entry_name.split("/")


def test_builds_from_differently_made_copies_are_byte_identical(tmp_path, make_tree, hashed_files):
    first = make_tree(tmp_path / "first", TREE)
    for path in first.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    # second copy: reverse creation order, umask-077 style non-exec bits, other mtimes
    second = make_tree(
        tmp_path / "elsewhere" / "second",
        {name: (spec if isinstance(spec, tuple) else (spec, 0o600)) for name, spec in reversed(TREE.items())},
    )
    os.chmod(second / "bin" / "run", 0o700)
    for path in second.rglob("*"):
        os.utime(path, (1_800_000_000, 1_800_000_000))

    one = write_zip(tmp_path / "one.zip", hashed_files(first), workers=1)
    two = write_zip(tmp_path / "two.zip", hashed_files(second), workers=4)

    assert zip_bytes(one.path) == zip_bytes(two.path)
    assert one.code_sha256 == two.code_sha256
    assert one.size == two.size == len(zip_bytes(one.path))


def test_code_sha256_is_base64_of_the_zip_sha256(tmp_path, make_tree, hashed_files):
    info = write_zip(tmp_path / "out.zip", hashed_files(make_tree(tmp_path / "src", TREE)))

    assert info.code_sha256 == base64.b64encode(hashlib.sha256(zip_bytes(info.path)).digest()).decode()


def test_content_round_trips(tmp_path, make_tree, hashed_files, valid_zip):
    contents = {
        "empty.py": b"",
        "random.bin": os.urandom(200_000),
        "text.py": b"print('hello')\n" * 5000,
        "données/café.py": "CAFÉ = '☕'\n".encode(),
        "one_byte": b"\0",
    }
    root = make_tree(tmp_path / "src", contents)

    info = write_zip(tmp_path / "out.zip", hashed_files(root))

    with valid_zip(info.path) as opened:
        assert {name: opened.read(name) for name in opened.namelist()} == contents
        methods = {entry.filename: entry.compress_type for entry in opened.infolist()}
    assert methods["text.py"] == zipfile.ZIP_DEFLATED
    assert methods["random.bin"] in {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}


def test_non_ascii_name_is_stored_as_utf8(tmp_path, make_tree, hashed_files):
    root = make_tree(tmp_path / "src", {"naïve/日本.py": b"x"})

    info = write_zip(tmp_path / "out.zip", hashed_files(root))

    with zipfile.ZipFile(info.path) as opened:
        (entry,) = opened.infolist()
    assert entry.filename == "naïve/日本.py"
    assert entry.flag_bits & 0x800  # the UTF-8 name flag


LARGE_TIERS = [
    pytest.param({"WHOLE_BUFFER_LIMIT": 1 << 20}, "_compress_large", id="large-one-at-a-time"),
    pytest.param({"WHOLE_BUFFER_LIMIT": 1 << 19, "LARGE_BUFFER_LIMIT": 1 << 20}, "_compress_streaming", id="streamed"),
]


@pytest.mark.parametrize("kind", ["compressible", "incompressible"])
@pytest.mark.parametrize(("limits", "compressor"), LARGE_TIERS)
def test_files_over_the_whole_buffer_limit_are_compressed_by_their_tier_and_round_trip(
    tmp_path, make_tree, hashed_files, valid_zip, monkeypatch, kind, limits, compressor
):
    """Over 32 MB: libdeflate whole, one file at a time, spooled; over Lambda's 256 MB: zlib-ng streaming."""
    for name, value in limits.items():
        monkeypatch.setattr(archive, name, value)
    used: list[str] = []
    real = getattr(archive, compressor)

    def spy(package_file, spool_dir):
        used.append(package_file.archive_name)
        return real(package_file, spool_dir)

    monkeypatch.setattr(archive, compressor, spy)
    big = os.urandom(3 << 20) if kind == "incompressible" else (b"0123456789abcdef" * 4096 + os.urandom(4096)) * 48
    root = make_tree(tmp_path / "src", {"big.bin": big, "small.py": b"small"})

    info = write_zip(tmp_path / "out" / "out.zip", hashed_files(root))

    assert used == ["big.bin"]
    with valid_zip(info.path) as opened:
        assert opened.read("big.bin") == big
        assert opened.read("small.py") == b"small"
    assert [path.name for path in (tmp_path / "out").iterdir()] == ["out.zip"]  # spool files removed


def test_large_files_are_compressed_one_at_a_time(tmp_path, make_tree, hashed_files, monkeypatch):
    """Each large file's buffers are the size of the file: two at once would double the peak."""
    import threading

    monkeypatch.setattr(archive, "WHOLE_BUFFER_LIMIT", 1 << 16)
    inside, most = [0], [0]
    lock = threading.Lock()
    real = archive.deflate.deflate_compress

    def counting(data, level):
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        try:
            return real(data, level)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(archive.deflate, "deflate_compress", counting)
    root = make_tree(tmp_path / "src", {f"big{index}.so": os.urandom(1 << 18) for index in range(6)})

    write_zip(tmp_path / "out.zip", hashed_files(root), workers=4)

    assert most[0] == 1


def test_streamed_builds_are_reproducible(tmp_path, make_tree, hashed_files, monkeypatch):
    monkeypatch.setattr(archive, "WHOLE_BUFFER_LIMIT", 1 << 20)
    big = (b"drover " * 100_000) + os.urandom(10_000)
    first = hashed_files(make_tree(tmp_path / "a", {"big.bin": big}))
    second = hashed_files(make_tree(tmp_path / "b", {"big.bin": (big, 0o600)}))

    assert zip_bytes(write_zip(tmp_path / "1.zip", first).path) == zip_bytes(write_zip(tmp_path / "2.zip", second).path)


@pytest.mark.slow
def test_more_than_65535_entries_use_zip64_and_stay_valid(tmp_path, make_tree, valid_zip):
    """One tiny source file under 65,540 names: the entry count alone needs the zip64 end records."""
    source = make_tree(tmp_path / "src", {"tiny.txt": b"x"}) / "tiny.txt"
    count = 65_540
    sha256 = hashlib.sha256(b"x").hexdigest()
    files = [
        HashedFile(PackageFile(f"d{index // 1000:02}/f{index:05}.txt", str(source), False, 1), 1, sha256)
        for index in range(count)
    ]

    info = write_zip(tmp_path / "many.zip", files)

    data = zip_bytes(info.path)
    assert b"PK\x06\x06" in data[-200:]  # zip64 end of central directory record
    assert b"PK\x06\x07" in data[-200:]  # zip64 end of central directory locator
    assert info.file_count == count
    with valid_zip(info.path, read_all=False) as opened:  # unzip -t checks every CRC, faster than zipfile
        names = opened.namelist()
        assert names == [hashed.file.archive_name for hashed in files]
        assert opened.read(names[0]) == opened.read(names[-1]) == b"x"


@pytest.mark.parametrize("streamed", [False, True], ids=["whole-buffer", "streamed"])
def test_file_changed_after_hashing_is_an_error_and_leaves_no_zip(
    tmp_path, make_tree, hashed_files, monkeypatch, streamed
):
    if streamed:
        monkeypatch.setattr(archive, "WHOLE_BUFFER_LIMIT", 1024)
    root = make_tree(tmp_path / "src", {"a.py": b"a" * 4096, "b.py": b"b" * 4096})
    files = hashed_files(root)
    files[1] = replace(files[1], sha256=hashlib.sha256(b"what it was when hashed").hexdigest())
    out = tmp_path / "out"

    with pytest.raises(PackagingError, match=r"b\.py changed while packaging"):
        write_zip(out / "function.zip", files)

    assert list(out.iterdir()) == []  # neither the zip nor the spool directory remains


def test_file_rewritten_between_hashing_and_zipping_is_detected(tmp_path, make_tree):
    root = make_tree(tmp_path / "src", {"a.py": b"before"})
    files = hash_files([PackageFile("a.py", str(root / "a.py"), False, (root / "a.py").stat().st_size)])
    (root / "a.py").write_bytes(b"after!")

    with pytest.raises(PackagingError, match="changed while packaging"):
        write_zip(tmp_path / "out.zip", files)

    assert not (tmp_path / "out.zip").exists()


def test_package_files_without_hashes_are_archived_too(tmp_path, make_tree, valid_zip):
    root = make_tree(tmp_path / "src", {"a.py": b"a", "run": (b"r", 0o755)})
    files = [
        PackageFile("a.py", str(root / "a.py"), False, (root / "a.py").stat().st_size),
        PackageFile("run", str(root / "run"), True, (root / "run").stat().st_size),
    ]

    info = write_zip(tmp_path / "nested" / "dir" / "out.zip", files)

    with valid_zip(info.path) as opened:
        assert [(entry.filename, entry.external_attr >> 16) for entry in opened.infolist()] == [
            ("a.py", 0o100644),
            ("run", 0o100755),
        ]


def test_empty_archive_is_valid(tmp_path):
    info = write_zip(tmp_path / "empty.zip", [])

    with zipfile.ZipFile(info.path) as opened:
        assert opened.namelist() == []
    assert info.file_count == 0
