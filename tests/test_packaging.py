"""Walking, partitioning and digesting an install path (pure filesystem, no AWS)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from drover import PackagingError, packaging
from drover.packaging import PackagePlan, layout_package, plan_package, unzipped_limit_problem

BASE_TREE = {
    "app/__init__.py": b"from .handler import handler\n",
    "app/handler.py": b"def handler(event, context):\n    return event\n",
    "lib/__init__.py": b"",
    "lib/util.py": b"VALUE = 1\n",
    "bin/tool": (b"#!/bin/sh\necho hi\n", 0o755),
}


def names(plan: PackagePlan, kind: str) -> list[str]:
    return [hashed.file.archive_name for hashed in getattr(plan, kind).files]


def digests(plan: PackagePlan) -> dict[str, str | None]:
    return {"function": plan.function.digest, "requirements": plan.requirements.digest}


# --- partition and excludes ---------------------------------------------------------------------


def test_files_matching_function_patterns_form_the_function_partition(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", BASE_TREE)

    plan = plan_package(stage(), root, tmp_path)

    assert names(plan, "function") == ["app/__init__.py", "app/handler.py"]
    assert names(plan, "requirements") == ["python/bin/tool", "python/lib/__init__.py", "python/lib/util.py"]


def test_function_patterns_match_from_the_start_of_the_relative_posix_path(tmp_path, make_tree, stage):
    """re.match, as drover 0.7.1: a pattern without ^ is still anchored at the start of the path."""
    root = make_tree(
        tmp_path / "install",
        {"pkg/sub/handler.py": b"h", "lib/pkg/sub/x.py": b"a", "handler.pyc": b"c", "pkg/other.py": b"o"},
    )

    plan = plan_package(stage(function_file_patterns=[r"pkg/sub/", r".*handler\.py$"]), root, tmp_path)

    assert names(plan, "function") == ["pkg/sub/handler.py"]
    assert names(plan, "requirements") == ["python/handler.pyc", "python/lib/pkg/sub/x.py", "python/pkg/other.py"]


def test_anchored_pattern_does_not_match_deeper_paths(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a", "lib/app.py": b"b"})

    plan = plan_package(stage(), root, tmp_path)

    assert names(plan, "function") == ["app.py"]
    assert names(plan, "requirements") == ["python/lib/app.py"]


def test_pycache_is_excluded_by_default_from_both_partitions(tmp_path, make_tree, stage):
    root = make_tree(
        tmp_path / "install",
        {
            "app/handler.py": b"h",
            "app/__pycache__/handler.cpython-312.pyc": b"c",
            "lib/util.py": b"u",
            "lib/__pycache__/util.cpython-312.pyc": b"c",
        },
    )

    plan = plan_package(stage(), root, tmp_path)

    assert names(plan, "function") == ["app/handler.py"]
    assert names(plan, "requirements") == ["python/lib/util.py"]


def test_custom_exclude_patterns_match_the_relative_name_and_replace_the_default(tmp_path, make_tree, stage):
    root = make_tree(
        tmp_path / "install",
        {
            "app/handler.py": b"h",
            "app/handler_test.py": b"t",
            "tests/test_lib.py": b"t",
            "lib/util.py": b"u",
            "lib/__pycache__/util.cpython-312.pyc": b"c",
        },
    )

    plan = plan_package(stage(package_exclude_patterns=[r".*_test\.py$", r"tests/"]), root, tmp_path)

    assert names(plan, "function") == ["app/handler.py"]
    assert names(plan, "requirements") == ["python/lib/__pycache__/util.cpython-312.pyc", "python/lib/util.py"]


def test_excluded_symlinks_are_not_followed(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to("/usr/bin/python3")
    (root / "bin" / "gone").symlink_to("missing")

    plan = plan_package(stage(package_exclude_patterns=["^bin/"]), root, tmp_path)

    assert names(plan, "function") == ["app.py"]
    assert names(plan, "requirements") == []


def test_partitions_count_files_and_unzipped_bytes(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"12345", "lib/a.py": b"123", "lib/b.py": b""})

    plan = plan_package(stage(), root, tmp_path)

    assert (plan.function.file_count, plan.function.unzipped_size) == (1, 5)
    assert (plan.requirements.file_count, plan.requirements.unzipped_size) == (2, 3)


def test_empty_requirements_partition_has_digest_none(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app/handler.py": b"h", "app/__pycache__/x.pyc": b"c"})

    plan = plan_package(stage(), root, tmp_path)

    assert plan.requirements.digest is None
    assert not plan.requirements
    assert plan.function.digest is not None and len(plan.function.digest) == 64


def test_empty_function_partition_is_an_error_naming_the_patterns(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"lib/util.py": b"u"})

    with pytest.raises(PackagingError, match="function_file_patterns") as caught:
        plan_package(stage(function_file_patterns=["^handler", "main_py"]), root, tmp_path)

    assert "('^handler', 'main_py')" in str(caught.value)


def test_missing_install_path_is_an_error(tmp_path, stage):
    with pytest.raises(PackagingError, match="does not exist"):
        plan_package(stage(), tmp_path / "install", tmp_path)


def test_install_path_that_is_a_file_is_an_error(tmp_path, stage):
    (tmp_path / "install").write_bytes(b"")

    with pytest.raises(PackagingError, match="not a directory"):
        plan_package(stage(), tmp_path / "install", tmp_path)


def make_socket_file(path: Path) -> Path:
    """A UNIX socket file: not a regular file, and (unlike a FIFO) reading it fails instead of blocking,
    so a regression makes the test fail rather than hang."""
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
    return path


def test_socket_in_the_install_path_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_socket_file(root / "lib.sock")

    with pytest.raises(PackagingError, match="not a regular file"):
        plan_package(stage(), root, tmp_path)


def test_non_utf8_file_name_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    with open(os.path.join(bytes(root), b"bad\xff.py"), "wb") as stream:
        stream.write(b"x")

    with pytest.raises(PackagingError, match="not valid UTF-8"):
        plan_package(stage(), root, tmp_path)


def test_file_larger_than_lambda_unzipped_limit_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (root / "lib").mkdir()
    with open(root / "lib" / "big.bin", "wb") as stream:
        stream.truncate(262_144_001)  # sparse: no disk space used

    problem = unzipped_limit_problem(layout_package(stage(), root, tmp_path))

    assert problem is not None and re.search(r"big\.bin: 262144001 bytes is larger than", problem)


def test_partitions_together_over_the_unzipped_limit_are_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a" * 60, "lib/util.py": b"u" * 60})

    problem = unzipped_limit_problem(layout_package(stage(), root, tmp_path), limit=100)

    assert problem is not None and "function (60 bytes) and requirements (60 bytes)" in problem


def test_a_layout_within_the_unzipped_limit_has_no_problem(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a" * 60, "lib/util.py": b"u" * 60})

    assert unzipped_limit_problem(layout_package(stage(), root, tmp_path), limit=120) is None


# --- function_extra_paths -------------------------------------------------------------------------


def test_extra_directory_contents_are_stored_at_the_archive_root_as_drover_0_7_1_does(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"instance/config.json": b"{}", "instance/sub/x.txt": b"x"})

    plan = plan_package(stage(function_extra_paths=["instance"]), root, tmp_path / "cwd")

    assert names(plan, "function") == ["app.py", "config.json", "sub/x.txt"]


def test_the_mapping_form_places_an_extra_path_under_a_prefix(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"service/handler.py": b"h", "service/sub/x.txt": b"x", "conf/a.json": b"{}"})
    extra_paths = [{"path": "service", "archive_path": "service"}, {"path": "conf/a.json", "archive_path": "etc/conf"}]

    plan = plan_package(stage(function_extra_paths=extra_paths), root, tmp_path / "cwd")

    assert names(plan, "function") == ["app.py", "etc/conf/a.json", "service/handler.py", "service/sub/x.txt"]


@pytest.mark.parametrize("extra", ["src/..", "."])
def test_an_extra_path_that_is_the_working_directory_is_an_error(tmp_path, make_tree, stage, extra):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"src/handler.py": b"h"})

    with pytest.raises((PackagingError, ValueError), match="working directory"):
        plan_package(stage(function_extra_paths=[extra]), root, tmp_path / "cwd")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("''", "an empty extra path would add the whole working directory"),
        ("'.'", "'.' is the whole working directory"),
        ("./", "'./' is the whole working directory"),
        ("{path: ., archive_path: app}", "path: '.' is the whole working directory"),
        ("{path: src, archive_path: ../up}", "archive_path '../up' must be a relative path inside the archive"),
        ("{path: src}", "archive_path: Field required"),
    ],
)
def test_bad_extra_paths_are_settings_errors_with_file_and_line(tmp_path, entry, message):
    from drover.errors import SettingsError
    from drover.settings import load_settings

    settings = tmp_path / "drover.yml"
    settings.write_text(
        "stages:\n  dev:\n    region_name: us-east-1\n    function_name: fn\n    compatible_runtime: python3.12\n"
        f"    function_extra_paths:\n      - src\n      - {entry}\n"
    )
    with pytest.raises(SettingsError) as caught:
        load_settings(settings)
    assert str(caught.value).startswith(f"{settings}:8:")
    assert "function_extra_paths[1]" in str(caught.value) and message in str(caught.value)


def test_extra_file_is_stored_under_its_file_name_with_its_executable_bit(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"conf/settings.json": b"{}", "scripts/run.sh": (b"#!/bin/sh\n", 0o755)})

    plan = plan_package(stage(function_extra_paths=["conf/settings.json", "scripts/run.sh"]), root, tmp_path / "cwd")

    stored = {hashed.file.archive_name: hashed.file.executable for hashed in plan.function.files}
    assert stored == {"app.py": False, "settings.json": False, "run.sh": True}


def test_extra_paths_are_relative_to_the_given_working_directory_not_the_process_cwd(
    tmp_path, make_tree, stage, monkeypatch
):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"instance/config.json": b"right"})
    make_tree(tmp_path / "elsewhere", {"instance/config.json": b"wrong", "instance/other.json": b"wrong"})
    monkeypatch.chdir(tmp_path / "elsewhere")

    plan = plan_package(stage(function_extra_paths=["instance"]), root, tmp_path / "cwd")

    assert names(plan, "function") == ["app.py", "config.json"]
    assert Path(plan.function.files[1].file.source).read_bytes() == b"right"


def test_absolute_extra_path_may_be_anywhere(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    outside = make_tree(tmp_path / "shared", {"assets/logo.svg": b"<svg/>"})
    (tmp_path / "cwd").mkdir()

    plan = plan_package(stage(function_extra_paths=[str(outside / "assets")]), root, tmp_path / "cwd")

    assert names(plan, "function") == ["app.py", "logo.svg"]


def test_symlinked_extra_file_keeps_the_name_given_in_settings(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    cwd = make_tree(tmp_path / "cwd", {"configs/prod/config.json": b"{}", "configs/dir/x.json": b"{}"})
    (cwd / "settings.json").symlink_to("configs/prod/config.json")
    (cwd / "instance").symlink_to("configs/dir")

    plan = plan_package(stage(function_extra_paths=["settings.json", "instance"]), root, cwd)

    assert names(plan, "function") == ["app.py", "settings.json", "x.json"]


def test_excludes_apply_inside_extra_directories(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"instance/config.json": b"{}", "instance/__pycache__/c.pyc": b"c"})

    plan = plan_package(stage(function_extra_paths=["instance"]), root, tmp_path / "cwd")

    assert names(plan, "function") == ["app.py", "config.json"]


def test_extra_paths_alone_can_fill_the_function_partition(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"lib/util.py": b"u"})
    make_tree(tmp_path / "cwd", {"handler.py": b"h"})

    plan = plan_package(stage(function_file_patterns=[], function_extra_paths=["handler.py"]), root, tmp_path / "cwd")

    assert names(plan, "function") == ["handler.py"]


@pytest.mark.parametrize("extra", ["../outside", "instance/../../outside"])
def test_relative_extra_path_escaping_the_working_directory_is_an_error(tmp_path, make_tree, stage, extra):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "outside", {"secret.txt": b"s"})
    make_tree(tmp_path / "cwd", {"instance/config.json": b"{}"})

    with pytest.raises(PackagingError, match="outside the working directory"):
        plan_package(stage(function_extra_paths=[extra]), root, tmp_path / "cwd")


def test_missing_extra_path_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (tmp_path / "cwd").mkdir()

    with pytest.raises(PackagingError, match="'instance' does not exist"):
        plan_package(stage(function_extra_paths=["instance"]), root, tmp_path / "cwd")


@pytest.mark.parametrize("kind", ["socket", "device"])
def test_extra_path_that_is_not_a_file_or_directory_is_an_error(tmp_path, make_tree, stage, kind):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (tmp_path / "cwd").mkdir()
    extra = "/dev/null" if kind == "device" else make_socket_file(tmp_path / "cwd" / "sock").name

    with pytest.raises(PackagingError, match="not a regular file or directory"):
        plan_package(stage(function_extra_paths=[extra]), root, tmp_path / "cwd")


def test_extra_directory_colliding_with_a_function_file_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app/handler.py": b"a"})
    make_tree(tmp_path / "cwd", {"src/app/handler.py": b"b"})

    with pytest.raises(PackagingError, match=r"'app/handler\.py'"):
        plan_package(stage(function_extra_paths=["src"]), root, tmp_path / "cwd")


def test_two_extra_files_with_the_same_name_are_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "cwd", {"a/config.json": b"1", "b/config.json": b"2"})

    with pytest.raises(PackagingError, match=r"both be stored as 'config\.json'"):
        plan_package(stage(function_extra_paths=["a/config.json", "b/config.json"]), root, tmp_path / "cwd")


# --- symlinks -------------------------------------------------------------------------------------


def test_symlink_inside_the_install_path_is_stored_as_its_target_content(tmp_path, make_tree, stage, sha256):
    root = make_tree(tmp_path / "install", {"lib/real.py": b"REAL = True\n"})
    (root / "app").mkdir()
    (root / "app" / "link.py").symlink_to("../lib/real.py")
    (root / "app" / "linked_dir").symlink_to("../lib")

    plan = plan_package(stage(), root, tmp_path)

    assert names(plan, "function") == ["app/link.py", "app/linked_dir/real.py"]
    assert {hashed.sha256 for hashed in plan.function.files} == {sha256(b"REAL = True\n")}
    assert names(plan, "requirements") == ["python/lib/real.py"]


def test_symlink_pointing_outside_the_install_path_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "outside", {"secret.py": b"s"})
    (root / "secret.py").symlink_to(tmp_path / "outside" / "secret.py")

    with pytest.raises(PackagingError, match="points outside"):
        plan_package(stage(), root, tmp_path)


def test_directory_symlink_pointing_outside_the_install_path_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    make_tree(tmp_path / "outside", {"secret.py": b"s"})
    (root / "vendor").symlink_to("../outside")

    with pytest.raises(PackagingError, match="points outside"):
        plan_package(stage(), root, tmp_path)


def test_dangling_symlink_is_an_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (root / "gone.py").symlink_to("missing.py")

    with pytest.raises(PackagingError, match=r"broken symlink \(missing.py\)"):
        plan_package(stage(), root, tmp_path)


@pytest.mark.parametrize("target", ["..", "../..", "."], ids=["parent", "install-root", "itself"])
def test_directory_symlink_to_an_ancestor_is_a_loop_error(tmp_path, make_tree, stage, target):
    root = make_tree(tmp_path / "install", {"app/pkg/handler.py": b"a"})
    (root / "app" / "pkg" / "loop").symlink_to(target)

    with pytest.raises(PackagingError, match="symlink loop"):
        plan_package(stage(), root, tmp_path)


def test_self_referencing_symlink_is_a_loop_error(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (root / "self").symlink_to("self")

    with pytest.raises(PackagingError, match="symlink loop"):
        plan_package(stage(), root, tmp_path)


# --- digest sensitivity ---------------------------------------------------------------------------


def write(relative: str, content: bytes):
    def change(root: Path, make_tree) -> None:
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)

    return change


def rename(old: str, new: str):
    def change(root: Path, make_tree) -> None:
        (root / new).parent.mkdir(parents=True, exist_ok=True)
        (root / old).rename(root / new)

    return change


def chmod(relative: str, mode: int):
    def change(root: Path, make_tree) -> None:
        os.chmod(root / relative, mode)

    return change


def nothing(root: Path, make_tree) -> None:
    """The tree is only at another absolute location."""


def touch_everything(root: Path, make_tree) -> None:
    for path in root.rglob("*"):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    os.utime(root / "app" / "handler.py", (2_000_000_000, 2_000_000_000))


def rebuild_in_reverse_order(root: Path, make_tree) -> None:
    shutil.rmtree(root)
    make_tree(root, dict(reversed(BASE_TREE.items())))


def restrictive_umask_modes(root: Path, make_tree) -> None:
    """As if built under umask 077: 0o600 files, 0o700 executables (still executable)."""
    for path in root.rglob("*"):
        if path.is_file():
            os.chmod(path, 0o700 if os.stat(path).st_mode & 0o111 else 0o600)


DIGEST_CASES = [
    pytest.param(
        write("app/handler.py", b"def handler(e, c):\n    return 1\n"), {}, {"function"}, id="function-content"
    ),
    pytest.param(write("lib/util.py", b"VALUE = 2\n"), {}, {"requirements"}, id="requirements-content"),
    pytest.param(write("app/__init__.py", b"\n"), {}, {"function"}, id="empty-file-gets-content"),
    pytest.param(rename("app/handler.py", "app/handlers.py"), {}, {"function"}, id="function-rename"),
    pytest.param(rename("lib/util.py", "lib/utils.py"), {}, {"requirements"}, id="requirements-rename"),
    pytest.param(rename("lib/util.py", "app/util.py"), {}, {"function", "requirements"}, id="move-to-function"),
    pytest.param(
        nothing,
        {"function_file_patterns": ["^app", "^lib/util"]},
        {"function", "requirements"},
        id="pattern-moves-file",
    ),
    pytest.param(write("app/extra.py", b""), {}, {"function"}, id="function-file-added"),
    pytest.param(write("lib/extra.py", b""), {}, {"requirements"}, id="requirements-file-added"),
    pytest.param(chmod("app/handler.py", 0o755), {}, {"function"}, id="function-chmod-plus-x"),
    pytest.param(chmod("lib/util.py", 0o744), {}, {"requirements"}, id="requirements-chmod-user-x"),
    pytest.param(chmod("bin/tool", 0o644), {}, {"requirements"}, id="requirements-chmod-minus-x"),
    pytest.param(nothing, {}, set(), id="other-absolute-location"),
    pytest.param(touch_everything, {}, set(), id="mtimes"),
    pytest.param(rebuild_in_reverse_order, {}, set(), id="creation-order"),
    pytest.param(restrictive_umask_modes, {}, set(), id="umask-non-exec-bits"),
    pytest.param(chmod("lib/util.py", 0o600), {}, set(), id="0o600-vs-0o644"),
    pytest.param(write("app/__pycache__/handler.cpython-312.pyc", b"c"), {}, set(), id="excluded-file-added"),
]


@pytest.mark.parametrize(("change", "overrides", "flipped"), DIGEST_CASES)
def test_digest_sensitivity(tmp_path, make_tree, stage, change, overrides, flipped):
    reference = plan_package(stage(), make_tree(tmp_path / "a" / "install", BASE_TREE), tmp_path)
    other_root = make_tree(tmp_path / "elsewhere" / "b" / "install", BASE_TREE)
    change(other_root, make_tree)

    changed = plan_package(stage(**overrides), other_root, tmp_path)

    differs = {kind for kind in ("function", "requirements") if digests(reference)[kind] != digests(changed)[kind]}
    assert differs == flipped


def test_digest_does_not_depend_on_directory_listing_order_or_workers(tmp_path, make_tree, stage, monkeypatch):
    root = make_tree(tmp_path / "install", BASE_TREE)
    reference = plan_package(stage(), root, tmp_path, workers=1)
    real_scandir = os.scandir
    monkeypatch.setattr(packaging.os, "scandir", lambda path: list(reversed(list(real_scandir(path)))))

    shuffled = plan_package(stage(), root, tmp_path, workers=4)

    assert digests(shuffled) == digests(reference)
    assert names(shuffled, "function") == names(reference, "function")
    assert names(shuffled, "requirements") == names(reference, "requirements")


def test_files_of_every_size_hash_to_their_sha256_in_the_order_given_on_any_number_of_threads(tmp_path, sha256):
    # small files take one read, large ones a read loop; large ones go to the other threads first
    sizes = [
        0,
        1,
        4095,
        packaging.LARGE_FILE,
        packaging.READ_SIZE - 1,
        packaging.READ_SIZE,
        3 * packaging.READ_SIZE + 7,
    ]
    files = []
    for index, size in enumerate(sizes * 3):
        path = tmp_path / f"f{index}"
        path.write_bytes(os.urandom(size))
        files.append(packaging.PackageFile.seen(path.name, str(path), path.stat()))

    for workers in (1, 2, 5):
        hashed = packaging.hash_files(files, workers)

        assert [item.file for item in hashed] == files
        assert [(item.size, item.sha256) for item in hashed] == [
            (item.size, sha256(Path(item.source).read_bytes())) for item in files
        ]


def test_a_failed_read_on_any_thread_is_one_packaging_error(tmp_path):
    files = []
    for index, size in enumerate([10, packaging.READ_SIZE * 2] * 4):
        path = tmp_path / f"f{index}"
        path.write_bytes(b"x" * size)
        files.append(packaging.PackageFile.seen(path.name, str(path), path.stat()))
    (tmp_path / "f5").unlink()  # a large one, hashed on another thread

    with pytest.raises(PackagingError, match="f5 changed while packaging"):
        packaging.hash_files(files, 2)


ASIDE = r"""
import json, os, sys, threading
from pathlib import Path
from drover import PackagingError
from drover.models import Stage
from drover.packaging import layout_package, plan_aside, plan_package

root, patterns, mode = Path(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
stage = Stage(region_name="us-east-1", function_name="fn", compatible_runtime="python3.12",
              function_file_patterns=patterns)
assert threading.active_count() == 1  # the fork path, not the fallback
pending = plan_aside(lambda: layout_package(stage, root, root.parent), workers=2)
if mode == "cancel":
    child = pending._pid
    pending.cancel()
    print(json.dumps({"reaped": child is not None and pending._pid is None}))
    sys.exit(0)
try:
    plan = pending.result()
except PackagingError as error:
    print(json.dumps({"error": str(error)}))
    sys.exit(0)
here = plan_package(stage, root, root.parent, workers=1)
print(json.dumps({
    "same_files": [h.file for h in plan.function.files + plan.requirements.files]
    == [h.file for h in here.function.files + here.requirements.files],
    "same_hashes": [(h.size, h.sha256) for h in plan.function.files + plan.requirements.files]
    == [(h.size, h.sha256) for h in here.function.files + here.requirements.files],
    "digests": [plan.function.digest, plan.requirements.digest],
    "child_seconds": pending.seconds > 0,
}))
"""


def run_aside(root: Path, patterns: list[str], mode: str = "result") -> dict[str, object]:
    """plan_aside in a fresh process: pytest's (moto's threads) would take the no-fork path."""
    completed = subprocess.run(
        [sys.executable, "-c", ASIDE, str(root), json.dumps(patterns), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(completed.stdout))


def test_a_plan_walked_and_hashed_in_a_child_process_is_the_plan_made_here(tmp_path, make_tree, stage):
    tree = {**BASE_TREE, "big.bin": os.urandom(3 * packaging.READ_SIZE), "run.sh": (b"#!/bin/sh\n", 0o755)}
    tree["odd name\nwith newline.txt"] = b"x"
    root = make_tree(tmp_path / "install", tree)

    outcome = run_aside(root, ["^app"])

    assert outcome["same_files"] is True
    assert outcome["same_hashes"] is True
    assert outcome["child_seconds"] is True
    here = plan_package(stage(), root, tmp_path)
    assert outcome["digests"] == [here.function.digest, here.requirements.digest]


def test_a_packaging_error_in_the_child_process_is_raised_with_its_line(tmp_path, make_tree):
    root = make_tree(tmp_path / "install", BASE_TREE)

    outcome = run_aside(root, ["^nothing-matches"])

    assert "no file matches function_file_patterns ('^nothing-matches')" in str(outcome["error"])


def test_a_cancelled_child_process_is_killed_and_reaped(tmp_path, make_tree):
    root = make_tree(tmp_path / "install", BASE_TREE)

    assert run_aside(root, ["^app"], mode="cancel") == {"reaped": True}


def test_digest_is_a_sha256_hex_over_a_sorted_manifest(tmp_path, make_tree, stage, sha256):
    root = make_tree(tmp_path / "install", {"app.py": b"a", "app_run": (b"r", 0o755)})

    plan = plan_package(stage(), root, tmp_path)

    manifest = f"app.py\x00644\x00{sha256(b'a')}\napp_run\x00755\x00{sha256(b'r')}\n".encode()
    assert plan.function.digest == sha256(packaging.MANIFEST_HEADER + manifest)


def test_a_non_utf8_name_in_an_excluded_path_is_ignored(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a"})
    (root / "cache").mkdir()
    with open(os.path.join(os.fsencode(root / "cache"), b"bad\xff.bin"), "wb") as stream:
        stream.write(b"x")

    plan = plan_package(stage(package_exclude_patterns=["cache/"]), root, tmp_path)

    assert names(plan, "function") == ["app.py"]


def test_the_install_marker_is_never_packaged(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a", ".drover-install.json": b"{}", "lib/x.py": b"x"})

    plan = plan_package(stage(), root, tmp_path)

    assert names(plan, "requirements") == ["python/lib/x.py"]


@pytest.mark.parametrize(
    ("pattern", "closed"),
    [
        (r".*__pycache__.*", True),
        (r"tests/", True),
        (r"(?<=x)y", True),
        (r".*\.pyc$", False),
        (r"foo\b", False),
        (r"a(?=b)", False),
        (r"a(?!b)", False),
        (r".*_test\.py\Z", False),
        (r".*+(?<=/)", False),  # a possessive repeat commits: 'lib/' matches, 'lib/x.py' does not
        (r"(?>lib|li)b/", False),  # an atomic group commits too
        (r"(?<!x)lib/", True),
    ],
)
def test_prefix_closed_patterns_are_those_that_never_look_past_their_match(pattern, closed):
    assert packaging.prefix_closed(re.compile(pattern)) is closed


def test_a_directory_a_prefix_closed_pattern_excludes_is_not_walked(tmp_path, make_tree, stage):
    """Everything below it would be excluded anyway; even a symlink escaping the tree is never looked at."""
    root = make_tree(tmp_path / "install", {"app.py": b"a", "lib/__pycache__/x.pyc": b"c", "lib/x.py": b"x"})
    (root / "lib" / "__pycache__" / "escape").symlink_to("/etc/passwd")

    plan = plan_package(stage(), root, tmp_path)

    assert names(plan, "requirements") == ["python/lib/x.py"]


def test_a_pattern_that_looks_past_its_match_still_filters_file_by_file(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app.py": b"a", "lib/keep.txt": b"k", "lib/drop.pyc": b"d"})

    plan = plan_package(stage(package_exclude_patterns=[r".*\.pyc$"]), root, tmp_path)

    assert names(plan, "requirements") == ["python/lib/keep.txt"]


# --- function_file_patterns that match nothing (issue 23, item 6) --------------------------------------------


def test_a_pattern_that_matches_no_file_is_a_warning_naming_it_even_with_extra_paths(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"lib/util.py": b"u", "app/handler.py": b"h"})
    make_tree(tmp_path / "cwd", {"src/extra.py": b"e"})
    patterns = [r"^app/", r"^handler\.py$"]

    plan = plan_package(stage(function_file_patterns=patterns, function_extra_paths=["src"]), root, tmp_path / "cwd")

    assert names(plan, "function") == ["app/handler.py", "extra.py"]
    assert plan.warnings == (
        f"function_file_patterns: '^handler\\\\.py$' matches no file in {root} — fix the pattern or remove it",
    )


def test_a_pattern_matching_a_file_another_pattern_matched_first_is_no_warning(tmp_path, make_tree, stage):
    root = make_tree(tmp_path / "install", {"app/handler.py": b"h"})

    plan = plan_package(stage(function_file_patterns=[r"^app/", r".*handler"]), root, tmp_path)

    assert plan.warnings == ()


def test_a_function_archive_without_any_python_file_is_an_error_naming_the_patterns(tmp_path, make_tree, stage):
    """A newcomer's first deploy: the handler pattern missed and the extra path holds only data; the handler
    would have gone into the layer while the run said "Function archive: 113 B, 1 files"."""
    root = make_tree(tmp_path / "install", {"lib/util.py": b"u", "handler.py": b"h"})
    make_tree(tmp_path / "cwd", {"conf/settings.json": b"{}"})
    settings = stage(function_file_patterns=[r"^src/handler\.py$"], function_extra_paths=["conf"])

    with pytest.raises(PackagingError) as caught:
        plan_package(settings, root, tmp_path / "cwd")

    assert str(caught.value) == (
        f"{root}: the function archive would hold no Python file (only settings.json); function_file_patterns "
        "'^src/handler\\\\.py$' match no file — fix function_file_patterns so the handler's module is in the "
        "function archive"
    )


def test_the_function_archive_top_level_entries_are_listed_in_the_summary(tmp_path, make_tree, stage):
    from drover.core import Drover
    from drover.models import Settings
    from drover.options import RunOptions
    from drover.report import render_text

    root = make_tree(tmp_path / "install", {"app/a.py": b"a", "app/b/c.py": b"c", "app_main.py": b"m", "x/y.py": b"y"})
    drover = Drover(Settings.model_validate({"stages": {"dev": stage().model_dump()}}), "dev", options=RunOptions())

    _, result = drover.package(root)

    assert result.function_entries == ["app/", "app_main.py"]
    result.function_size = 100
    assert "Function archive: 100.00 B, 3 files (top level: app/, app_main.py)" in render_text(result)


# Pieces of random exclude patterns: plain text, repeats (greedy, lazy, possessive), atomic groups, look-behinds,
# look-aheads, anchors and word boundaries: the constructs whose matches may or may not survive an extension.
PATTERN_PIECES = (
    "a",
    "b",
    "/",
    ".",
    "[ab]",
    "[^/]",
    ".*",
    ".*?",
    "a*",
    "a?",
    ".*+",
    "[^/]++",
    "a*+",
    "(?>a|ab)",
    "(?>.*)",
    "(?<=/)",
    "(?<!a)",
    "(?=b)",
    "(?!a)",
    "$",
    r"\Z",
    r"\b",
    r"\B",
    "(a|b/)",
    "(?:ab)*",
)
TREE_SEGMENTS = ("a", "b", "ab", "ba", "aa")


def random_pattern(chooser: random.Random) -> str:
    return "".join(chooser.choice(PATTERN_PIECES) for _ in range(chooser.randint(1, 4)))


def random_tree(chooser: random.Random, root: Path) -> list[str]:
    names = set()
    for _ in range(chooser.randint(1, 8)):
        parts = [chooser.choice(TREE_SEGMENTS) for _ in range(chooser.randint(1, 4))]
        names.add("/".join(parts))
    files = sorted(name for name in names if not any(other.startswith(name + "/") for other in names))
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"")
    return files


@pytest.mark.parametrize("seed", range(8))
def test_pruning_never_excludes_a_file_the_pattern_does_not_match(tmp_path, seed):
    """Random patterns on random trees: the walk (which prunes whole directories) keeps exactly the files that
    re.match, applied to each file's relative path one by one, does not exclude (issue 24, item 8)."""
    chooser = random.Random(seed)
    for case in range(60):
        root = tmp_path / f"tree{case}"
        root.mkdir()
        files = random_tree(chooser, root)
        pattern = re.compile(random_pattern(chooser))

        walked = sorted(name for name, _, _ in packaging.walk_files(root, [pattern]))

        expected = [name for name in files if pattern.match(name) is None]
        assert walked == expected, f"pattern {pattern.pattern!r} on {files}"


def test_a_possessive_repeat_before_a_lookbehind_prunes_nothing(tmp_path, make_tree, stage):
    """'.*+(?<=/)' matches 'lib/' (a directory's prefix) but no file path below it: nothing is excluded."""
    root = make_tree(tmp_path / "install", {"app.py": b"a", "lib/x.py": b"x"})

    plan = plan_package(stage(package_exclude_patterns=[r".*+(?<=/)"]), root, tmp_path)

    assert names(plan, "requirements") == ["python/lib/x.py"]


def test_an_excluded_link_to_a_directory_keeps_the_files_below_it_the_pattern_does_not_match(
    tmp_path, make_tree, stage
):
    """'vendor$' excludes the link 'vendor' but not 'vendor/x.py': the file is packaged (through the link)."""
    root = make_tree(tmp_path / "install", {"app.py": b"a", "real/x.py": b"x"})
    (root / "vendor").symlink_to("real", target_is_directory=True)

    plan = plan_package(stage(package_exclude_patterns=[r"vendor$"]), root, tmp_path)

    assert names(plan, "requirements") == ["python/real/x.py", "python/vendor/x.py"]
