"""drover.install against a local wheelhouse of handcrafted wheels and sdists (offline).

Projects and sdists build with a tiny in-tree PEP 517 backend (no setuptools, no index);
pip and uv are pointed at the wheelhouse with --no-index through their own config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import random
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from drover.errors import InstallError
from drover.install import (
    INSTALL_MARKER,
    RUNTIME_PACKAGES,
    InstallRequest,
    backend_reason,
    check_no_local_links,
    failure_reason,
    find_installer,
    find_uv,
    install,
    installer_env,
    is_pure_wheel,
    missing_wheel,
    replace_target,
    target_platform,
)
from tests.wheels import offline_environment, project_files, write_wheel

INSTALLERS = ["uv", pytest.param("pip", marks=pytest.mark.slow)]  # pip: the fallback, 2-3x slower per case
PAD = b"# padding so sizes are not trivial\n" * 40


def write_sdist(directory: Path, name: str, version: str, *, tag: str | None = None) -> Path:
    path = directory / f"{name}-{version}.tar.gz"
    files = {
        **project_files(name, version, tag=tag),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
    }
    with tarfile.open(path, "w:gz") as archive:
        for relative, text in files.items():
            data = text.encode()
            member = tarfile.TarInfo(f"{name}-{version}/{relative}")
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    return path


def write_project(root: Path, name: str = "app", *, dependencies: Sequence[str] = ()) -> Path:
    for relative, text in project_files(name, "0.1", dependencies=dependencies).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    return root


def _module(name: str, marker: str = "") -> dict[str, bytes]:
    return {f"{name}/__init__.py": f"BUILT_FOR = {marker!r}\n".encode() + PAD}


def _build_wheelhouse(house: Path) -> None:
    for version in ("1.0", "2.0"):
        write_wheel(house, "purelib", version, "py3-none-any", _module("purelib", version))
    write_wheel(house, "extra", "1.0", "py3-none-any", {**_module("extra"), "extra/data/table.py": PAD})
    write_wheel(house, "withdeps", "1.0", "py3-none-any", _module("withdeps"), ["purelib", "fakebin"])
    write_wheel(house, "armdeps", "1.0", "py3-none-any", _module("armdeps"), ["fakebin; platform_machine == 'aarch64'"])
    for tag in (
        "cp311-cp311-manylinux_2_17_x86_64",
        "cp311-cp311-manylinux_2_17_aarch64",
        "cp312-cp312-manylinux_2_17_x86_64",
        "cp312-cp312-manylinux_2_28_x86_64",
        "cp312-cp312-manylinux_2_17_aarch64",
    ):
        write_wheel(house, "fakebin", "1.0", tag, _module("fakebin", tag))
    write_wheel(house, "onlyarm", "1.0", "cp312-cp312-manylinux_2_17_aarch64", _module("onlyarm"))
    write_wheel(house, "newglibc", "1.0", "cp311-cp311-manylinux_2_28_x86_64", _module("newglibc"))
    write_wheel(house, "toonew", "1.0", "cp312-cp312-manylinux_2_35_x86_64", _module("toonew"))
    write_wheel(house, "linuxonly", "1.0", "cp312-cp312-linux_x86_64", _module("linuxonly"))
    _build_runtime_packages(house)
    write_wheel(house, "newdep", "1.0", "py3-none-any", _module("newdep"))
    write_wheel(house, "needsnewdep", "1.0", "py3-none-any", _module("needsnewdep"), ["newdep>=1"])
    write_wheel(
        house, "hostmarker", "1.0", "py3-none-any", _module("hostmarker"), ['purelib; python_version >= "3.13"']
    )
    write_wheel(house, "extrareq", "1.0", "py3-none-any", _module("extrareq"), ['purelib; extra == "fast"'], ["fast"])
    write_wheel(house, "linkpth", "1.0", "py3-none-any", {"linkpth.pth": b"/home/builder/src/linkpth\n"})
    write_sdist(house, "puresrc", "1.0")
    write_sdist(house, "csrc", "1.0", tag="cp312-cp312-linux_x86_64")


def _build_runtime_packages(house: Path) -> None:
    """Stand-ins for what the Lambda runtime ships, with the real names and dependency shape."""
    write_wheel(house, "boto3", "1.35.0", "py3-none-any", _module("boto3"), ["botocore", "s3transfer", "jmespath"])
    write_wheel(house, "botocore", "1.35.0", "py3-none-any", _module("botocore"), ["python-dateutil", "urllib3"])
    write_wheel(house, "s3transfer", "0.10.0", "py3-none-any", _module("s3transfer"))
    script = {"jmespath-1.0.1.data/scripts/jp.py": b"#!python\nprint('jp')\n"}
    write_wheel(house, "jmespath", "1.0.1", "py3-none-any", {**_module("jmespath"), **script})
    write_wheel(house, "python_dateutil", "2.9.0", "py2.py3-none-any", _module("dateutil"), ["six"])
    write_wheel(house, "six", "1.16.0", "py2.py3-none-any", {"six.py": PAD})
    write_wheel(house, "urllib3", "1.26.20", "py2.py3-none-any", _module("urllib3"))


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    _build_wheelhouse(house)
    return house


@pytest.fixture(scope="session")
def caches(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("caches")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, wheelhouse: Path, caches: Path, tmp_path: Path) -> Path:
    """pip and uv see only the wheelhouse: no index, no machine config, private caches."""
    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(name)
    for name, value in offline_environment(wheelhouse, tmp_path, caches).items():
        monkeypatch.setenv(name, value)
    return wheelhouse


def requirements_file(directory: Path, *lines: str, name: str = "requirements.txt") -> Path:
    path = directory / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return path


def request_for(target: Path, **overrides: Any) -> InstallRequest:
    """A python3.12 x86_64 request with no inputs, changed by the overrides."""
    return dataclasses.replace(InstallRequest(target, None, None, "python3.12", "x86_64"), **overrides)


def relative_files(root: Path) -> list[str]:
    return sorted(
        path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file() and path.name != INSTALL_MARKER
    )


def tree_size(root: Path) -> int:
    return sum(path.stat().st_size for path in root.rglob("*") if path.is_file() and path.name != INSTALL_MARKER)


def wheel_tag(target: Path, distribution: str) -> str:
    lines = (target / f"{distribution}.dist-info" / "WHEEL").read_text(encoding="utf-8").splitlines()
    return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("Tag:"))


def distributions(target: Path) -> set[str]:
    return {path.name.removesuffix(".dist-info") for path in target.glob("*.dist-info")}


# --- platform ------------------------------------------------------------------------------------


def test_platform_tags_follow_lambda_glibc_per_runtime() -> None:
    older = target_platform("python3.11", "x86_64")
    assert older.uv_platform == "x86_64-manylinux_2_17"
    assert older.python_version == "3.11"
    tags = older.pip_platforms()
    assert tags[0] == "manylinux_2_17_x86_64"
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "manylinux_2_5_x86_64"} <= set(tags)
    assert "manylinux_2_18_x86_64" not in tags

    newer = target_platform("python3.13", "arm64")
    assert newer.uv_platform == "aarch64-manylinux_2_34"
    tags = newer.pip_platforms()
    assert tags[0] == "manylinux_2_34_aarch64"
    assert tags[-2:] == ["manylinux_2_17_aarch64", "manylinux2014_aarch64"]
    assert len(tags) == 34 - 17 + 2
    assert newer.allows("any") and newer.allows("manylinux_2_28_aarch64")
    assert not newer.allows("manylinux_2_35_aarch64") and not newer.allows("linux_aarch64")
    assert not newer.allows("manylinux_2_17_x86_64")


@pytest.mark.parametrize(
    ("runtime", "architecture"),
    [("python3.7", "x86_64"), ("python2.7", "x86_64"), ("python3.12", "i386"), ("3.12", "arm64")],
)
def test_unsupported_target_is_an_install_error(runtime: str, architecture: str) -> None:
    with pytest.raises(InstallError) as caught:
        target_platform(runtime, architecture)
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize(
    ("runtime", "architecture", "expected"),
    [
        ("python3.11", "x86_64", "cp311-cp311-manylinux_2_17_x86_64"),
        ("python3.12", "x86_64", "cp312-cp312-manylinux_2_28_x86_64"),
        ("python3.12", "arm64", "cp312-cp312-manylinux_2_17_aarch64"),
    ],
)
def test_the_wheel_for_the_runtime_and_architecture_is_installed(
    offline: Path, tmp_path: Path, installer: str, runtime: str, architecture: str, expected: str
) -> None:
    target = tmp_path / "install"
    requirements = requirements_file(tmp_path, "fakebin")
    result = install(
        request_for(target, requirements=requirements, runtime=runtime, architecture=architecture), installer=installer
    )
    assert result.installer == installer and not result.skipped
    assert wheel_tag(target, "fakebin-1.0") == expected
    assert f"BUILT_FOR = {expected!r}" in (target / "fakebin" / "__init__.py").read_text()


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize(
    ("package", "runtime"),
    [("onlyarm", "python3.12"), ("newglibc", "python3.11"), ("toonew", "python3.12"), ("linuxonly", "python3.12")],
)
def test_a_package_without_a_wheel_for_the_platform_fails_clearly(
    offline: Path, tmp_path: Path, installer: str, package: str, runtime: str
) -> None:
    target = tmp_path / "install"
    requirements = requirements_file(tmp_path, package)
    with pytest.raises(InstallError) as caught:
        install(request_for(target, requirements=requirements, runtime=runtime), installer=installer)
    message = str(caught.value)
    assert f"no wheel of {package}" in message
    assert f"{runtime} x86_64" in message
    assert "\n" not in message
    assert caught.value.exit_code == 2
    assert not target.exists()


def test_installer_output_is_logged_only_when_verbose(
    offline: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    requirements = requirements_file(tmp_path, "onlyarm")
    caplog.set_level(logging.INFO, logger="drover")
    with pytest.raises(InstallError):
        install(request_for(tmp_path / "quiet", requirements=requirements), installer="uv")
    assert not any("manylinux_2_17_aarch64" in record.getMessage() for record in caplog.records)
    caplog.clear()
    with pytest.raises(InstallError):
        install(request_for(tmp_path / "loud", requirements=requirements, verbose=True), installer="uv")
    assert any("Wheels are available for `onlyarm`" in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_source_only_dependency_is_built_when_it_is_pure_python(
    offline: Path, tmp_path: Path, installer: str
) -> None:
    target = tmp_path / "install"
    install(request_for(target, requirements=requirements_file(tmp_path, "puresrc", "purelib")), installer=installer)
    assert wheel_tag(target, "puresrc-1.0") == "py3-none-any"
    assert (target / "puresrc" / "__init__.py").is_file()
    assert distributions(target) == {"puresrc-1.0", "purelib-2.0"}


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_source_only_dependency_that_builds_platform_code_fails(
    offline: Path, tmp_path: Path, installer: str
) -> None:
    with pytest.raises(InstallError, match=r"no wheel of csrc for python3\.12 x86_64.*not a pure-Python wheel"):
        install(
            request_for(tmp_path / "install", requirements=requirements_file(tmp_path, "csrc")), installer=installer
        )


def test_uv_evaluates_environment_markers_for_the_target(offline: Path, tmp_path: Path) -> None:
    requirements = requirements_file(tmp_path, "armdeps")
    install(request_for(tmp_path / "arm", requirements=requirements, architecture="arm64"), installer="uv")
    install(request_for(tmp_path / "x86", requirements=requirements), installer="uv")
    assert distributions(tmp_path / "arm") == {"armdeps-1.0", "fakebin-1.0"}
    assert distributions(tmp_path / "x86") == {"armdeps-1.0"}


# --- pip and uv agree ----------------------------------------------------------------------------


@pytest.mark.slow
def test_pip_and_uv_install_the_same_files(offline: Path, tmp_path: Path) -> None:
    source = write_project(tmp_path / "app", dependencies=["withdeps"])
    requirements = requirements_file(tmp_path, "jmespath", "extra")
    targets = {name: tmp_path / name for name in ("uv", "pip")}
    for name, target in targets.items():
        install(request_for(target, source=source, requirements=requirements), installer=name)
    uv_files, pip_files = relative_files(targets["uv"]), relative_files(targets["pip"])
    assert uv_files == pip_files
    assert {"app/__init__.py", "bin/jp.py", "fakebin-1.0.dist-info/WHEEL", "purelib-2.0.dist-info/RECORD"} <= set(
        uv_files
    )
    volatile = {"REQUESTED", "direct_url.json", "uv_cache.json", ".lock"}
    assert not volatile & {Path(name).name for name in uv_files}
    code = [name for name in uv_files if ".dist-info/" not in name and not name.startswith("bin/")]
    for name in code:
        assert (targets["uv"] / name).read_bytes() == (targets["pip"] / name).read_bytes(), name
    pip_record = (targets["pip"] / "jmespath-1.0.1.dist-info" / "RECORD").read_text()
    assert "\nbin/jp.py," in "\n" + pip_record and "../" not in pip_record


# --- skip when unchanged -------------------------------------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_an_unchanged_install_is_skipped(
    offline: Path, tmp_path: Path, installer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drover")
    source = write_project(tmp_path / "app", dependencies=["purelib"])
    request = request_for(tmp_path / "install", source=source, requirements=requirements_file(tmp_path, "extra"))
    first = install(request, installer=installer)
    inode = (tmp_path / "install" / "purelib" / "__init__.py").stat().st_ino
    second = install(request, installer=installer)
    assert (first.skipped, second.skipped) == (False, True)
    assert second.key == first.key and second.installer == installer
    assert second.seconds < first.seconds
    assert (tmp_path / "install" / "purelib" / "__init__.py").stat().st_ino == inode
    assert f"Install unchanged (key {first.key[:12]}); skipping" in caplog.text


def _change_requirement(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    requirements_file(tmp_path, "extra", "purelib==1.0")
    return request


def _change_source(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    (tmp_path / "app" / "app" / "handler.py").write_text("def handler(event, context):\n    return 2\n")
    return request


def _change_architecture(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    return dataclasses.replace(request, architecture="arm64")


def _change_exclude(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    return dataclasses.replace(request, exclude_runtime_packages=True)


@pytest.mark.parametrize("change", [_change_requirement, _change_source, _change_architecture, _change_exclude])
def test_a_changed_input_reinstalls(
    offline: Path, tmp_path: Path, change: Callable[[Path, InstallRequest], InstallRequest]
) -> None:
    source = write_project(tmp_path / "app", dependencies=["purelib"])
    request = request_for(tmp_path / "install", source=source, requirements=requirements_file(tmp_path, "extra"))
    first = install(request, installer="uv")
    changed = change(tmp_path, request)
    second = install(changed, installer="uv")
    assert not second.skipped and second.key != first.key
    assert install(changed, installer="uv").skipped


def test_reinstall_reflects_the_change(offline: Path, tmp_path: Path) -> None:
    source = write_project(tmp_path / "app")
    target = tmp_path / "install"
    request = request_for(target, source=source, requirements=requirements_file(tmp_path, "purelib"))
    install(request, installer="uv")
    (source / "app" / "handler.py").write_text("VALUE = 2\n")
    requirements_file(tmp_path, "purelib==1.0")
    install(request, installer="uv")
    assert (target / "app" / "handler.py").read_text() == "VALUE = 2\n"
    assert distributions(target) == {"app-0.1", "purelib-1.0"}


def test_source_files_outside_the_build_do_not_change_the_key(offline: Path, tmp_path: Path) -> None:
    source = write_project(tmp_path / "app")
    target = source / "build" / "lambda"  # inside the project, as many users lay it out
    request = request_for(target, source=source)
    first = install(request, installer="uv")
    (source / "app" / "__pycache__").mkdir()
    (source / "app" / "__pycache__" / "x.cpython-312.pyc").write_bytes(b"\0")
    (source / ".git").mkdir()
    (source / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    second = install(request, installer="uv")
    assert second.skipped and second.key == first.key


# --- fresh target --------------------------------------------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_removed_requirement_leaves_no_stale_files(offline: Path, tmp_path: Path, installer: str) -> None:
    target = tmp_path / "install"
    request = request_for(target, requirements=requirements_file(tmp_path, "purelib", "extra"))
    install(request, installer=installer)
    assert (target / "extra" / "data" / "table.py").is_file()
    (target / "stray.txt").write_text("left by hand")
    requirements_file(tmp_path, "purelib")
    install(request, installer=installer)
    assert relative_files(target) == [
        "purelib-2.0.dist-info/INSTALLER",
        "purelib-2.0.dist-info/METADATA",
        "purelib-2.0.dist-info/RECORD",
        "purelib-2.0.dist-info/WHEEL",
        "purelib/__init__.py",
    ]
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(".drover")) == []


def test_relative_paths_install_and_skip(offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_project(tmp_path / "app", dependencies=["purelib"])
    request = request_for(Path("build/lambda"), source=Path("app"), requirements=requirements_file(Path("."), "extra"))
    assert not install(request, installer="uv").skipped
    assert distributions(tmp_path / "build" / "lambda") == {"app-0.1", "extra-1.0", "purelib-2.0"}
    assert install(request, installer="uv").skipped


def test_an_install_path_that_cannot_be_renamed_is_emptied_and_refilled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target, staging = tmp_path / "mount", tmp_path / "work" / "target"
    (target / "old").mkdir(parents=True)
    (target / "old" / "stale.py").write_text("old")
    (target / "stale.txt").write_text("old")
    (staging / "new").mkdir(parents=True)
    (staging / "new" / "fresh.py").write_text("new")
    rename = Path.rename

    def refuse_target(self: Path, destination: Path) -> Path:
        if self == target:
            raise OSError(16, "Device or resource busy")  # what renaming a mount point gives
        return rename(self, destination)

    monkeypatch.setattr(Path, "rename", refuse_target)
    replace_target(staging, target, tmp_path / "work" / "old")
    assert relative_files(target) == ["new/fresh.py"]


def test_an_install_path_that_holds_the_project_is_refused(offline: Path, tmp_path: Path) -> None:
    source = write_project(tmp_path / "app")
    with pytest.raises(InstallError, match="give it a directory of its own"):
        install(request_for(tmp_path, source=source), installer="uv")
    assert (source / "pyproject.toml").is_file()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({}, "nothing to install"),
        ({"requirements": Path("missing.txt")}, "does not exist"),
        ({"source": Path("no-such-project")}, "is not a directory"),
    ],
)
def test_bad_inputs_are_install_errors(tmp_path: Path, settings: dict[str, Path], message: str) -> None:
    with pytest.raises(InstallError, match=message):
        install(request_for(tmp_path / "install", **{k: tmp_path / v for k, v in settings.items()}))


def test_installer_choice() -> None:
    assert find_installer("auto").name == "uv"
    assert find_installer("pip").command[-2:] == ("-m", "pip")
    with pytest.raises(InstallError, match="unknown installer"):
        find_installer("conda")


# --- runtime-provided packages -------------------------------------------------------------------


@pytest.mark.parametrize("installer", INSTALLERS)
def test_runtime_provided_packages_are_excluded_on_request(offline: Path, tmp_path: Path, installer: str) -> None:
    requirements = requirements_file(tmp_path, "purelib", "boto3")
    full, slim = tmp_path / "full", tmp_path / "slim"
    kept = install(request_for(full, requirements=requirements), installer=installer)
    request = request_for(slim, requirements=requirements, exclude_runtime_packages=True)
    excluded = install(request, installer=installer)
    assert kept.excluded_packages == () and kept.excluded_bytes == 0
    assert excluded.excluded_packages == tuple(sorted(RUNTIME_PACKAGES))
    assert excluded.excluded_bytes == tree_size(full) - tree_size(slim) > 7 * len(PAD)
    assert distributions(slim) == {"purelib-2.0"}
    assert sorted(path.name for path in slim.iterdir() if path.name != INSTALL_MARKER) == [
        "purelib",
        "purelib-2.0.dist-info",
    ]
    skipped = install(request, installer=installer)
    assert skipped.skipped
    assert (skipped.excluded_packages, skipped.excluded_bytes) == (excluded.excluded_packages, excluded.excluded_bytes)


# --- locks ---------------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_uv_lock(project: Path, wheel: Path) -> None:
    """A uv.lock pinning purelib to the given wheel, as `uv lock` writes it for a registry package."""
    version = wheel.name.split("-")[1]
    project.joinpath("uv.lock").write_text(
        f"""version = 1
revision = 3
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1"
source = {{ editable = "." }}
dependencies = [
    {{ name = "purelib" }},
]

[package.metadata]
requires-dist = [{{ name = "purelib" }}]

[[package]]
name = "purelib"
version = "{version}"
source = {{ registry = "https://pypi.org/simple" }}
wheels = [
    {{ url = "https://files.example.org/{wheel.name}", hash = "sha256:{_sha256(wheel)}" }},
]
""",
        encoding="utf-8",
    )


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_uv_lock_installs_the_locked_set(
    offline: Path, tmp_path: Path, installer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drover")
    unlocked = write_project(tmp_path / "unlocked", dependencies=["purelib"])
    locked = write_project(tmp_path / "locked", dependencies=["purelib"])
    write_uv_lock(locked, offline / "purelib-1.0-py3-none-any.whl")
    free = install(request_for(tmp_path / "free", source=unlocked), installer=installer)
    pinned = install(request_for(tmp_path / "pinned", source=locked), installer=installer)
    assert free.lock is None and distributions(tmp_path / "free") == {"app-0.1", "purelib-2.0"}
    assert pinned.lock == "uv.lock" and distributions(tmp_path / "pinned") == {"app-0.1", "purelib-1.0"}
    assert "Using lock uv.lock (1 pinned packages)" in caplog.text


@pytest.mark.parametrize("installer", INSTALLERS)
def test_hash_pinned_requirements_are_verified(offline: Path, tmp_path: Path, installer: str) -> None:
    digest = _sha256(offline / "purelib-1.0-py3-none-any.whl")
    good = requirements_file(tmp_path, f"purelib==1.0 --hash=sha256:{digest}", name="good.txt")
    result = install(request_for(tmp_path / "good", requirements=good), installer=installer)
    assert result.lock == "good.txt (hashes)"
    assert distributions(tmp_path / "good") == {"purelib-1.0"}
    bad = requirements_file(tmp_path, f"purelib==1.0 --hash=sha256:{'0' * 64}", name="bad.txt")
    with pytest.raises(InstallError, match="purelib") as caught:
        install(request_for(tmp_path / "bad", requirements=bad), installer=installer)
    assert "\n" not in str(caught.value)


# --- environment ---------------------------------------------------------------------------------


def test_installer_environment_drops_credentials_and_keeps_installer_settings() -> None:
    env = installer_env(
        {
            "AWS_SECRET_ACCESS_KEY": "secret",
            "AWS_SESSION_TOKEN": "token",
            "AWS_PROFILE": "prod",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "oidc",
            "PIP_EXTRA_INDEX_URL": "https://pypi.example/simple",
            "UV_INDEX_URL": "https://pypi.example/simple",
            "HTTPS_PROXY": "http://proxy:3128",
            "PATH": "/usr/bin",
        }
    )
    assert not [name for name in env if name.startswith(("AWS_", "ACTIONS_ID_TOKEN"))]
    assert env["PIP_EXTRA_INDEX_URL"] == env["UV_INDEX_URL"] == "https://pypi.example/simple"
    assert env["HTTPS_PROXY"] == "http://proxy:3128" and env["PATH"] == "/usr/bin"


@pytest.mark.parametrize("given", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "PIP_CERT", "CURL_CA_BUNDLE"])
def test_a_ca_bundle_given_one_way_reaches_both_installers(given: str) -> None:
    """uv reads only SSL_CERT_FILE, pip REQUESTS_CA_BUNDLE: behind a TLS-intercepting proxy both need it."""
    env = installer_env({given: "/etc/proxy-ca.pem", "PATH": "/usr/bin"})
    assert env["SSL_CERT_FILE"] == env["REQUESTS_CA_BUNDLE"] == "/etc/proxy-ca.pem"
    both = installer_env({"SSL_CERT_FILE": "/a.pem", "REQUESTS_CA_BUNDLE": "/b.pem"})
    assert (both["SSL_CERT_FILE"], both["REQUESTS_CA_BUNDLE"]) == ("/a.pem", "/b.pem")  # never overridden
    assert "SSL_CERT_FILE" not in installer_env({"PATH": "/usr/bin"})


@pytest.mark.parametrize("installer", INSTALLERS)
def test_builds_never_see_aws_credentials(
    offline: Path, tmp_path: Path, installer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
    source = write_project(tmp_path / "app")
    install(request_for(tmp_path / "install", source=source), installer=installer)
    assert (tmp_path / "install" / "app" / "_build_env.txt").read_text() == ""


# --- parsing installer output --------------------------------------------------------------------

UV_NO_WHEEL = """Using CPython 3.11.7 interpreter at: /usr/bin/python3
error: No solution found when resolving dependencies
  cause: Because onlyarm==1.0 has no wheels with a matching platform tag (e.g., `manylinux_2_34_x86_64`) and only \
onlyarm==1.0 is available, we can conclude that all versions of onlyarm cannot be used.
         And because you require onlyarm, we can conclude that your requirements are unsatisfiable.

hint: Wheels are available for `onlyarm` (v1.0) on the following platform: `manylinux_2_17_aarch64`
"""
UV_NOT_FOUND = """error: No solution found when resolving dependencies
  cause: Because nothere was not found in the provided package locations and you require nothere, we can conclude \
that your requirements are unsatisfiable.
"""
PIP_NO_WHEEL = """Looking in links: /wheels
ERROR: Could not find a version that satisfies the requirement onlyarm>=1 (from versions: none)
ERROR: No matching distribution found for onlyarm>=1
"""
PIP_BAD_HASH = """ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the \
package versions, please update the hashes. Otherwise, examine the package contents carefully.
    purelib==1.0 from file:///wheels/purelib-1.0-py3-none-any.whl (from -r bad.txt (line 1)):
        Expected sha256 0000
             Got        c26484f6ceb50aab335ff8bcb6318bbfd99e3c276cfae81b22a658f4a5f16dae
"""


def test_installer_failures_are_read_as_one_line() -> None:
    assert failure_reason(UV_NO_WHEEL).startswith("Because onlyarm==1.0 has no wheels with a matching platform tag")
    assert failure_reason(UV_NO_WHEEL).endswith("on the following platform: `manylinux_2_17_aarch64`")
    assert (
        failure_reason(PIP_NO_WHEEL) == "Could not find a version that satisfies the requirement onlyarm>=1 "
        "(from versions: none)"
    )
    from_uv = missing_wheel(UV_NO_WHEEL)
    assert from_uv is not None and from_uv.requirement == "onlyarm==1.0"
    not_found = missing_wheel(UV_NOT_FOUND)
    assert not_found is not None and (not_found.name, not_found.exists) == ("nothere", False)
    from_pip = missing_wheel(PIP_NO_WHEEL)
    assert from_pip is not None and (from_pip.name, from_pip.requirement) == ("onlyarm", "onlyarm>=1")
    assert failure_reason(PIP_BAD_HASH) == (
        "THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE: "
        "purelib==1.0 from file:///wheels/purelib-1.0-py3-none-any.whl (from -r bad.txt (line 1))"
    )
    assert missing_wheel(PIP_BAD_HASH) is None
    assert missing_wheel("error: Because a==1 depends on b<1 and c depends on b>2, ...") is None


def test_pure_wheels_are_recognised_by_their_tags() -> None:
    assert is_pure_wheel("six-1.16.0-py2.py3-none-any.whl")
    assert is_pure_wheel("puresrc-1.0-py3-none-any.whl")
    assert not is_pure_wheel("csrc-1.0-cp312-cp312-linux_x86_64.whl")
    assert not is_pure_wheel("cryptography-44.0.0-cp39-abi3-manylinux_2_28_x86_64.whl")


# --- the real registry ---------------------------------------------------------------------------


@pytest.mark.network
@pytest.mark.parametrize("installer", INSTALLERS)
def test_installs_a_small_package_from_the_registry(tmp_path: Path, installer: str) -> None:
    target = tmp_path / "install"
    result = install(request_for(target, requirements=requirements_file(tmp_path, "six==1.16.0")), installer=installer)
    assert (result.installer, result.skipped) == (installer, False)
    assert (target / "six.py").is_file()
    assert distributions(target) == {"six-1.16.0"}


# --- issue 12: exact installs --------------------------------------------------------------------


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under root (hidden ones too) with its sha256 and mode: a byte-for-byte picture of a tree."""
    return {
        path.relative_to(root).as_posix(): f"{_sha256(path)} {path.stat().st_mode:o}"
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize(("runtime", "expected"), [("python3.13", {"purelib-2.0"}), ("python3.12", {"extra-1.0"})])
def test_markers_are_judged_for_the_target_python_not_the_host(
    offline: Path, tmp_path: Path, installer: str, runtime: str, expected: set[str]
) -> None:
    # what `uv export` / `poetry export` write; the host runs 3.11, so pip alone would judge both false/true wrongly
    requirements = requirements_file(tmp_path, 'purelib ; python_version >= "3.13"', 'extra ; python_version < "3.13"')
    install(request_for(tmp_path / "install", requirements=requirements, runtime=runtime), installer=installer)
    assert distributions(tmp_path / "install") == expected


@pytest.mark.parametrize("installer", INSTALLERS)
def test_machine_markers_are_judged_for_the_target_architecture(offline: Path, tmp_path: Path, installer: str) -> None:
    requirements = requirements_file(tmp_path, "purelib", 'fakebin ; platform_machine == "aarch64"')
    install(request_for(tmp_path / "arm", requirements=requirements, architecture="arm64"), installer=installer)
    install(request_for(tmp_path / "x86", requirements=requirements), installer=installer)
    assert distributions(tmp_path / "arm") == {"purelib-2.0", "fakebin-1.0"}
    assert distributions(tmp_path / "x86") == {"purelib-2.0"}


@pytest.mark.parametrize("installer", INSTALLERS)
def test_requirements_that_install_nothing_for_the_target_are_an_error_and_keep_the_last_install(
    offline: Path, tmp_path: Path, installer: str
) -> None:
    target = tmp_path / "install"
    install(request_for(target, requirements=requirements_file(tmp_path, "purelib")), installer=installer)
    before = tree_digest(target)
    requirements_file(tmp_path, 'purelib ; python_version < "3.10"', 'extra ; python_version < "3.10"')
    with pytest.raises(InstallError) as caught:
        install(request_for(target, requirements=tmp_path / "requirements.txt"), installer=installer)
    assert str(caught.value) == (
        "the requirements name 2 packages (purelib, extra) but none of them applies to python3.12 x86_64 "
        "(manylinux_2_34_x86_64 or older) (their environment markers exclude it) — check the markers and the "
        "stage's compatible_runtime"
    )
    assert tree_digest(target) == before  # the live layer's content stays: nothing is detached or emptied


def test_pip_judging_dependency_markers_by_the_host_is_caught(offline: Path, tmp_path: Path) -> None:
    requirements = requirements_file(tmp_path, "hostmarker")
    request = request_for(tmp_path / "install", requirements=requirements, runtime="python3.13")
    install(request, installer="uv")  # uv judges hostmarker's Requires-Dist for 3.13
    assert distributions(tmp_path / "install") == {"hostmarker-1.0", "purelib-2.0"}
    with pytest.raises(InstallError, match=r"hostmarker 1\.0 requires purelib; python_version >= \"3\.13\" "):
        install(dataclasses.replace(request, target=tmp_path / "pip"), installer="pip")
    assert not (tmp_path / "pip").exists()


@pytest.mark.parametrize("installer", INSTALLERS)
def test_extras_asked_for_are_installed_and_checked(offline: Path, tmp_path: Path, installer: str) -> None:
    install(request_for(tmp_path / "plain", requirements=requirements_file(tmp_path, "extrareq")), installer=installer)
    requirements = requirements_file(tmp_path, "extrareq[fast]", name="fast.txt")
    install(request_for(tmp_path / "fast", requirements=requirements), installer=installer)
    assert distributions(tmp_path / "plain") == {"extrareq-1.0"}
    assert distributions(tmp_path / "fast") == {"extrareq-1.0", "purelib-2.0"}


def test_a_stale_uv_lock_is_refused_with_the_fix(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", dependencies=["purelib", "newdep>=1"])
    write_uv_lock(project, offline / "purelib-1.0-py3-none-any.whl")  # locked before newdep was added
    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", source=project), installer="uv")
    assert str(caught.value) == (
        "uv.lock does not match pyproject.toml: pyproject.toml asks for newdep>=1 — run `uv lock` and commit uv.lock"
    )
    assert not (tmp_path / "install").exists()


def write_poetry_lock(
    project: Path, house: Path, entries: Sequence[tuple[str, str, str, str]], *, groups: bool
) -> None:
    """A poetry.lock: (name, version, groups, markers) per package, with the wheel's real hash."""
    blocks = []
    for name, version, group, markers in entries:
        wheel = next(house.glob(f"{name}-{version}-*.whl"))
        lines = [
            "[[package]]",
            f'name = "{name}"',
            f'version = "{version}"',
            'description = ""',
            "optional = false",
            'python-versions = "*"',
        ]
        if groups:
            lines.append(f'groups = ["{group}"]')
            if markers:
                lines.append(f"markers = {json.dumps(markers)}")
        lines.append(f'files = [\n    {{file = "{wheel.name}", hash = "sha256:{_sha256(wheel)}"}},\n]')
        if name == "needsnewdep" and not groups:
            lines.append('\n[package.dependencies]\nnewdep = ">=1"')
        blocks.append("\n".join(lines))
    version = "2.1" if groups else "2.0"
    meta = f'\n[metadata]\nlock-version = "{version}"\npython-versions = "^3.11"\ncontent-hash = "0"\n'
    (project / "poetry.lock").write_text("\n\n".join(blocks) + "\n" + meta, encoding="utf-8")


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_poetry_project_installs_exactly_its_lock(
    offline: Path, tmp_path: Path, installer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drover")
    project = write_project(tmp_path / "app", dependencies=["purelib"])
    entries = [
        ("purelib", "1.0", "main", ""),  # a fresh resolve would give 2.0
        ("extra", "1.0", "main", 'python_version < "3.10"'),  # not for Lambda's Python
        ("jmespath", "1.0.1", "dev", ""),  # a dev-group package never ships
    ]
    write_poetry_lock(project, offline, entries, groups=True)
    result = install(request_for(tmp_path / "install", source=project), installer=installer)
    assert result.lock == "poetry.lock"
    assert distributions(tmp_path / "install") == {"app-0.1", "purelib-1.0"}
    assert "Using lock poetry.lock (1 pinned packages)" in caplog.text


def test_an_older_poetry_lock_is_walked_from_the_project_dependencies(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", dependencies=["needsnewdep"])
    entries = [("needsnewdep", "1.0", "", ""), ("newdep", "1.0", "", ""), ("purelib", "1.0", "", "")]
    write_poetry_lock(project, offline, entries, groups=False)
    install(request_for(tmp_path / "install", source=project), installer="uv")
    assert distributions(tmp_path / "install") == {"app-0.1", "needsnewdep-1.0", "newdep-1.0"}


def test_a_lock_missing_a_dependency_is_caught_after_the_install(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", dependencies=["needsnewdep"])
    write_poetry_lock(project, offline, [("needsnewdep", "1.0", "main", "")], groups=True)
    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", source=project), installer="uv")
    assert str(caught.value) == (
        "the install for python3.12 x86_64 (manylinux_2_34_x86_64 or older) is incomplete: needsnewdep 1.0 requires "
        "newdep>=1 (not installed) — the lock (poetry.lock) is incomplete for this project: lock it again "
        "(uv lock / poetry lock)"
    )


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_pylock_toml_installs_its_packages_by_hash(offline: Path, tmp_path: Path, installer: str) -> None:
    wheel = offline / "purelib-1.0-py3-none-any.whl"
    (tmp_path / "pylock.toml").write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n\n'
        f'[[packages]]\nname = "purelib"\nversion = "1.0"\n'
        f'wheels = [{{ name = "{wheel.name}", url = "https://files.example.org/{wheel.name}", '
        f'hashes = {{ sha256 = "{_sha256(wheel)}" }} }}]\n\n'
        '[[packages]]\nname = "extra"\nversion = "1.0"\nmarker = \'python_version < "3.10"\'\n'
        'wheels = [{ name = "extra-1.0-py3-none-any.whl", url = "https://files.example.org/extra-1.0-py3-none-any.whl", '
        'hashes = { sha256 = "00" } }]\n',
        encoding="utf-8",
    )
    result = install(request_for(tmp_path / "install", requirements=tmp_path / "pylock.toml"), installer=installer)
    assert result.lock == "pylock.toml"
    assert distributions(tmp_path / "install") == {"purelib-1.0"}


def test_editable_requirements_are_refused_with_the_fix(offline: Path, tmp_path: Path) -> None:
    write_project(tmp_path / "lib", "lib")
    requirements = requirements_file(tmp_path, "purelib", "-e ./lib")
    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", requirements=requirements), installer="uv")
    assert str(caught.value) == (
        f"{requirements}:2: editable requirement '-e ./lib' installs a link to this machine's directory, not the "
        "package — drop it (uv export --no-emit-project / --no-editable) or give the project as --install-source"
    )


def test_a_path_file_pointing_at_this_machine_is_refused(offline: Path, tmp_path: Path) -> None:
    with pytest.raises(InstallError, match=r"linkpth\.pth in the install points at /home/builder/src/linkpth"):
        install(request_for(tmp_path / "install", requirements=requirements_file(tmp_path, "linkpth")), installer="uv")


def test_an_editable_direct_url_is_refused(tmp_path: Path) -> None:
    dist_info = tmp_path / "app-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "direct_url.json").write_text('{"url": "file:///home/me/app", "dir_info": {"editable": true}}')
    with pytest.raises(InstallError, match=r"app-0\.1\.dist-info is installed as editable from file:///home/me/app"):
        check_no_local_links(tmp_path)


# A backend that builds the way setuptools does: copies the package into build/lib (never cleaning it) and
# writes an egg-info directory, both in the directory it runs in, then packs build/lib.
SETUPTOOLS_LIKE_BACKEND = """
import shutil
from pathlib import Path
import backend as plain

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    Path("app.egg-info").mkdir(exist_ok=True)
    Path("app.egg-info/PKG-INFO").write_text("Name: app\\n")
    shutil.copytree("app", "build/lib/app", dirs_exist_ok=True)
    shutil.rmtree("app.src", ignore_errors=True)
    shutil.move("app", "app.src")
    shutil.copytree("build/lib/app", "app")
    try:
        return plain.build_wheel(wheel_directory, config_settings, metadata_directory)
    finally:
        shutil.rmtree("app")
        shutil.move("app.src", "app")
"""


@pytest.mark.parametrize("installer", INSTALLERS)
def test_the_source_tree_is_unchanged_and_a_deleted_module_is_not_deployed(
    offline: Path, tmp_path: Path, installer: str
) -> None:
    project = write_project(tmp_path / "app")
    (project / "setuptools_like.py").write_text(SETUPTOOLS_LIKE_BACKEND)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('build-backend = "backend"', 'build-backend = "setuptools_like"')
    )
    (project / "app" / "old.py").write_text("OLD = 1\n")
    target = tmp_path / "install"
    install(request_for(target, source=project), installer=installer)
    assert (target / "app" / "old.py").is_file()
    (project / "app" / "old.py").unlink()
    (project / "build" / "lib" / "app").mkdir(parents=True)  # what an in-tree build left behind earlier
    (project / "build" / "lib" / "app" / "old.py").write_text("OLD = 1\n")
    before = tree_digest(project)
    install(request_for(target, source=project), installer=installer)
    assert tree_digest(project) == before
    assert not (target / "app" / "old.py").exists()
    assert (target / "app" / "__init__.py").is_file()


def test_test_reports_written_into_the_project_do_not_reinstall(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", dependencies=["purelib"])
    request = request_for(tmp_path / "install", source=project)
    first = install(request, installer="uv")
    reports = ("junit.xml", ".coverage", "coverage.xml", "htmlcov/index.html", ".pytest_cache/v/x", "app/x.pyc")
    for name in (*reports, "out/function.zip", "out/requirements.zip"):  # and drover's own --archive-dir
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text("report")
    second = install(request, installer="uv")
    assert second.skipped and second.key == first.key
    (project / "app" / "new.py").write_text("NEW = 1\n")
    assert not install(request, installer="uv").skipped


def _rebuild_local_wheel(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    write_wheel(tmp_path / "wheels", "localpkg", "1.0", "py3-none-any", _module("localpkg", "rebuilt"))
    return request


def _add_to_find_links(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    write_wheel(tmp_path / "links", "linked", "1.1", "py3-none-any", _module("linked", "1.1"))
    return request


def _change_nested_requirements(tmp_path: Path, request: InstallRequest) -> InstallRequest:
    requirements_file(tmp_path / "nested", "purelib==1.0", name="base.txt")
    return request


@pytest.mark.parametrize("change", [_rebuild_local_wheel, _add_to_find_links, _change_nested_requirements])
def test_what_requirement_lines_refer_to_is_part_of_the_key(
    offline: Path, tmp_path: Path, change: Callable[[Path, InstallRequest], InstallRequest]
) -> None:
    for directory in ("wheels", "links", "nested"):
        (tmp_path / directory).mkdir()
    write_wheel(tmp_path / "wheels", "localpkg", "1.0", "py3-none-any", _module("localpkg", "first"))
    write_wheel(tmp_path / "links", "linked", "1.0", "py3-none-any", _module("linked", "1.0"))
    requirements_file(tmp_path / "nested", "purelib", name="base.txt")
    requirements = requirements_file(
        tmp_path, "-r nested/base.txt", "--find-links ./links", "linked", "./wheels/localpkg-1.0-py3-none-any.whl"
    )
    request = request_for(tmp_path / "install", requirements=requirements)
    first = install(request, installer="uv")
    assert install(request, installer="uv").skipped
    second = install(change(tmp_path, request), installer="uv")
    assert not second.skipped and second.key != first.key
    installed = {
        "localpkg": (tmp_path / "install" / "localpkg" / "__init__.py").read_text().splitlines()[0],
        "linked": (tmp_path / "install" / "linked" / "__init__.py").read_text().splitlines()[0],
    }
    if change is _rebuild_local_wheel:
        assert installed["localpkg"] == "BUILT_FOR = 'rebuilt'"
    if change is _add_to_find_links:
        assert installed["linked"] == "BUILT_FOR = '1.1'"
    if change is _change_nested_requirements:
        assert "purelib-1.0" in distributions(tmp_path / "install")


FAILING_BACKEND = """
def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    raise ValueError("No file/folder found for package app-service")
"""


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_build_failure_names_the_backend_reason_in_one_line(
    offline: Path, tmp_path: Path, installer: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="drover")
    project = write_project(tmp_path / "app")
    (project / "backend.py").write_text(FAILING_BACKEND)
    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", source=project, verbose=True), installer=installer)
    message = str(caught.value)
    assert message.startswith("building the project failed: ValueError: No file/folder found for package app-service")
    assert message.endswith("— run with -v for the build output") and "\n" not in message
    assert "Traceback" in caplog.text  # the whole output, with -v


def test_backend_reasons_are_read_from_uv_and_pip_output() -> None:
    hatch = '  File "x.py", line 3\nValueError: A second file is being added at app/__init__.py\n\nhint: ...'
    assert backend_reason(hatch) == "ValueError: A second file is being added at app/__init__.py"
    assert backend_reason("error: Failed to build\n  Caused by: The build backend returned an error") is None


def test_the_project_distribution_goes_with_the_function_code(offline: Path, tmp_path: Path) -> None:
    from drover.models import Stage
    from drover.packaging import plan_package

    project = write_project(tmp_path / "app", dependencies=["purelib"])
    target = tmp_path / "install"
    request = request_for(target, source=project)
    stage = Stage(region_name="us-east-1", function_name="fn", compatible_runtime="python3.12")
    install(request, installer="uv")
    first = plan_package(stage, target, tmp_path)
    function_names = sorted(hashed.file.archive_name for hashed in first.function.files)
    assert function_names == [
        "app-0.1.dist-info/INSTALLER",
        "app-0.1.dist-info/METADATA",
        "app-0.1.dist-info/RECORD",
        "app-0.1.dist-info/WHEEL",
        "app/__init__.py",
        "app/_build_env.txt",
    ]
    assert all(hashed.file.archive_name.startswith("python/purelib") for hashed in first.requirements.files)
    (project / "app" / "__init__.py").write_text("NAME = 'edited'\n")
    assert not install(request, installer="uv").skipped
    second = plan_package(stage, target, tmp_path)
    assert second.requirements.digest == first.requirements.digest
    assert second.function.digest != first.function.digest


def test_the_cli_stops_with_one_line_before_packaging_an_empty_layer(offline: Path, tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "drover.yml").write_text(
        "stages:\n  dev:\n    region_name: us-east-1\n    function_name: fn\n    compatible_runtime: python3.13\n"
        "    function_extra_paths: [src]\n"
    )
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    requirements_file(tmp_path, 'purelib ; python_version < "3.13"')
    command = [sys.executable, "-m", "drover", "--install-path", "build/lambda", "--requirements", "requirements.txt"]
    result = subprocess.run(
        [*command, "--package-only", "--archive-dir", "out", "dev"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "the requirements name 1 packages (purelib) but none of them applies to python3.13 x86_64 "
            "(manylinux_2_34_x86_64 or older) (their environment markers exclude it) — check the markers and the "
            "stage's compatible_runtime"
        )
    )
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_locked_project_without_dependencies_installs_just_itself(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app")
    write_poetry_lock(project, offline, [], groups=True)
    result = install(request_for(tmp_path / "install", source=project), installer="uv")
    assert result.lock == "poetry.lock"
    assert distributions(tmp_path / "install") == {"app-0.1"}


def test_an_older_poetry_lock_follows_extras_and_edge_markers(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app")
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("dependencies = []", "dependencies = []\n\n[tool.poetry.dependencies]")
        + 'python = "^3.11"\nextrareq = {version = "*", extras = ["fast"]}\nhostmarker = "*"\n'
    )

    def entry(name: str, version: str, tail: str = "") -> str:
        wheel = next(offline.glob(f"{name}-{version}-*.whl"))
        return (
            f'[[package]]\nname = "{name}"\nversion = "{version}"\ndescription = ""\noptional = false\n'
            f'python-versions = "*"\nfiles = [\n    {{file = "{wheel.name}", hash = "sha256:{_sha256(wheel)}"}},\n]\n'
            + tail
        )

    lock = "\n".join(
        [
            entry(
                "extrareq",
                "1.0",
                '\n[package.dependencies]\npurelib = {version = "*", optional = true}\n'
                '\n[package.extras]\nfast = ["purelib"]\n',
            ),
            entry(
                "hostmarker",
                "1.0",
                '\n[package.dependencies]\npurelib = {version = "*", markers = "python_version >= \\"3.13\\""}\n',
            ),
            entry("purelib", "1.0"),
            '[metadata]\nlock-version = "2.0"\npython-versions = "^3.11"\ncontent-hash = "0"\n',
        ]
    )
    (project / "poetry.lock").write_text(lock)
    install(request_for(tmp_path / "install", source=project), installer="uv")
    assert distributions(tmp_path / "install") == {"app-0.1", "extrareq-1.0", "hostmarker-1.0", "purelib-1.0"}
    (project / "pyproject.toml").write_text(pyproject.read_text().replace(', extras = ["fast"]', ""))
    install(request_for(tmp_path / "other", source=project), installer="uv")  # purelib only via 3.13's marker
    assert distributions(tmp_path / "other") == {"app-0.1", "extrareq-1.0", "hostmarker-1.0"}


# --- the key covers the bytes of what requirements and locks reference (issue 23, item 2) --------------------


def _local_wheel(tmp_path: Path, built_for: str) -> Path:
    (tmp_path / "wheels").mkdir(exist_ok=True)
    return write_wheel(tmp_path / "wheels", "localpkg", "1.0", "py3-none-any", _module("localpkg", built_for))


def _installed_localpkg(target: Path) -> str:
    return (target / "localpkg" / "__init__.py").read_text().splitlines()[0]


@pytest.mark.parametrize("form", ["name @ file URL", "file URL", "relative path"])
def test_a_local_wheel_rebuilt_under_the_same_name_is_reinstalled(offline: Path, tmp_path: Path, form: str) -> None:
    wheel = _local_wheel(tmp_path, "first")
    line = {
        "name @ file URL": f"localpkg @ {wheel.as_uri()}",
        "file URL": wheel.as_uri(),
        "relative path": "./wheels/localpkg-1.0-py3-none-any.whl",
    }[form]
    request = request_for(tmp_path / "install", requirements=requirements_file(tmp_path, line))
    install(request, installer="uv")
    _local_wheel(tmp_path, "rebuilt")

    assert not install(request, installer="uv").skipped
    assert _installed_localpkg(tmp_path / "install") == "BUILT_FOR = 'rebuilt'"


def test_a_projects_path_dependency_rebuilt_under_the_same_name_is_reinstalled(offline: Path, tmp_path: Path) -> None:
    wheel = _local_wheel(tmp_path, "first")
    project = write_project(tmp_path / "project", dependencies=[f"localpkg @ {wheel.as_uri()}"])
    request = request_for(tmp_path / "install", source=project)
    install(request, installer="uv")
    _local_wheel(tmp_path, "rebuilt")

    assert not install(request, installer="uv").skipped
    assert _installed_localpkg(tmp_path / "install") == "BUILT_FOR = 'rebuilt'"


def test_a_poetry_lock_error_names_the_users_file_not_a_temporary_copy(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "project", dependencies=["purelib"])
    (project / "poetry.lock").write_text(
        '[[package]]\nname = "purelib"\nversion = "1.0"\ngroups = ["main"]\nfiles = []\n\n'
        '[package.source]\ntype = "git"\nurl = "https://example.org/purelib.git"\n',
        encoding="utf-8",
    )
    with pytest.raises(InstallError, match=rf"^{project.resolve()}/poetry\.lock: purelib comes from a git source"):
        install(request_for(tmp_path / "install", source=project), installer="uv")


def test_record_is_read_as_csv_so_a_file_name_with_a_comma_is_removed_with_its_package(tmp_path: Path) -> None:
    """RECORD is CSV (PEP 376): a path holding a comma is quoted; splitting at the first comma missed it."""
    from drover.install import exclude_runtime_packages, normalize_metadata

    root = tmp_path / "install"
    (root / "six").mkdir(parents=True)
    (root / "six" / "a,b.py").write_text("X = 1\n")
    (root / "six" / "__init__.py").write_text("")
    info = root / "six-1.16.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: six\nVersion: 1.16.0\n")
    (info / "REQUESTED").write_text("")
    (info / "RECORD").write_text(
        '"six/a,b.py",sha256=x,6\nsix/__init__.py,,\nsix-1.16.0.dist-info/REQUESTED,,\nsix-1.16.0.dist-info/RECORD,,\n'
    )
    normalize_metadata(root)
    assert '"six/a,b.py",sha256=x,6' in (info / "RECORD").read_text().splitlines()

    assert exclude_runtime_packages(root)[0] == ("six",)
    assert sorted(path.name for path in root.rglob("*")) == []


def test_a_hashed_lock_with_unhashed_extra_requirements_is_one_line_naming_the_file_and_the_fixes(
    offline: Path, tmp_path: Path
) -> None:
    """issue 23 item 5: uv said only "In `--require-hashes` mode, all requirements must have a hash"."""
    project = write_project(tmp_path / "app", dependencies=["purelib"])
    write_poetry_lock(project, offline, [("purelib", "1.0", "main", "")], groups=True)
    extra = requirements_file(tmp_path, "extra==1.0", name="extra.txt")

    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", source=project, requirements=extra), installer="uv")

    assert str(caught.value) == (
        f"{extra} has requirements without hashes (extra==1.0), but poetry.lock pins every package by hash and an "
        "install checks hashes for all or none — add hashes to it (uv pip compile --generate-hashes, or pip-compile "
        "--generate-hashes), or move these requirements into the project's dependencies and lock again"
    )


# --- local project directories named by requirement lines (issue 23, round two b) ----------------------------


def _setuptools_like_project(root: Path, name: str, *, tag: str | None = None) -> Path:
    """A project built the way setuptools builds (into build/ and an egg-info in its own directory)."""
    for relative, text in project_files(name, "0.3", dependencies=["purelib"], tag=tag).items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text, encoding="utf-8")
    (root / "setuptools_like.py").write_text(SETUPTOOLS_LIKE_BACKEND.replace('"app', f'"{name}'))
    pyproject = root / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('build-backend = "backend"', 'build-backend = "setuptools_like"')
    )
    return root


@pytest.mark.parametrize("installer", INSTALLERS)
@pytest.mark.parametrize("line", ["./mylib/", "../shared/src/ecom/", "mylib @ file:./mylib"])
def test_a_local_project_directory_requirement_is_built_to_a_wheel_and_installed(
    offline: Path, tmp_path: Path, installer: str, line: str
) -> None:
    """aws-serverless-ecommerce-platform: uv refused every local directory ("Building source distributions is
    disabled"), since drover gives it --only-binary :all:."""
    service = tmp_path / "service"
    service.mkdir()
    name = "ecom" if "ecom" in line else "mylib"
    directory = tmp_path / "shared" / "src" / "ecom" if name == "ecom" else service / "mylib"
    _setuptools_like_project(directory, name)
    before = tree_digest(directory)
    requirements = requirements_file(service, line.replace("file:./mylib", (service / "mylib").as_uri()))
    target = tmp_path / "install"

    result = install(request_for(target, requirements=requirements), installer=installer)

    assert not result.skipped
    assert distributions(target) == {f"{name}-0.3", "purelib-2.0"}
    assert wheel_tag(target, f"{name}-0.3") == "py3-none-any"
    assert tree_digest(directory) == before  # built from a clean copy: no build/ or egg-info in the user's tree
    assert install(request_for(target, requirements=requirements), installer=installer).skipped


def test_a_local_project_directory_that_builds_platform_code_is_refused_by_name(offline: Path, tmp_path: Path) -> None:
    directory = _setuptools_like_project(tmp_path / "native", "native", tag="cp312-cp312-manylinux_2_17_aarch64")
    requirements = requirements_file(tmp_path, "./native")

    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", requirements=requirements), installer="uv")

    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(f"{requirements}:1: {directory.resolve()} builds native-0.3-cp312-cp312-")
    assert "\n" not in str(caught.value)


# --- the project copy never follows links out of the project (issue 24.2) ------------------------------------


@dataclasses.dataclass(frozen=True)
class LinkGraph:
    """A project and a directory beside it, with random links inside the project: what each link resolves to."""

    project: Path
    outside_links: frozenset[str]  # links (relative to the project) that resolve to an existing path outside it
    inside_file_links: dict[str, bytes]  # links that resolve to a file inside the project: the content they copy


def _random_link_graph(root: Path, chooser: random.Random) -> LinkGraph:
    project, outside = root / "project", root / "outside"
    write_project(project)
    (project / "app" / "data").mkdir()
    (project / "app" / "data" / "table.txt").write_text("inside table\n")
    (outside / "secrets").mkdir(parents=True)
    (outside / "secrets" / "key.txt").write_text("OUTSIDE key\n")
    (outside / "notes.txt").write_text("OUTSIDE notes\n")
    links = [f"app/link{index}" if chooser.random() < 0.5 else f"link{index}" for index in range(chooser.randint(1, 6))]
    targets = [
        project / "app" / "__init__.py",
        project / "app" / "data",
        project / "app" / "data" / "table.txt",
        outside / "notes.txt",
        outside / "secrets",
        outside / "secrets" / "key.txt",
        project / "missing.txt",
        root / "gone",
        *(project / other for other in links),  # chains, and loops when a link is its own target's target
    ]
    for link in links:
        target = chooser.choice(targets)
        text = os.path.relpath(target, (project / link).parent) if chooser.random() < 0.5 else str(target)
        (project / link).symlink_to(text)
    outside_links, inside_files = set(), {}
    for link in links:
        path = project / link
        if not path.exists():
            continue  # dangling, or a loop
        real = Path(os.path.realpath(path))
        if not real.is_relative_to(project):
            outside_links.add(link)
        elif real.is_file():
            inside_files[link] = real.read_bytes()
    return LinkGraph(project, frozenset(outside_links), inside_files)


@pytest.mark.parametrize("tracked", ["git", "walk"])
@pytest.mark.parametrize("seed", range(30))
def test_the_project_copy_never_follows_a_link_out_of_the_project(tmp_path: Path, seed: int, tracked: str) -> None:
    """Random links (inside, outside, dangling, chains and loops): a link resolving outside the project is refused
    by name; otherwise the copy holds the project's files, a link to a file inside copies that file, and nothing
    of the outside directory reaches it."""
    from drover.install import _clean_copy

    graph = _random_link_graph(tmp_path, random.Random(seed))
    if tracked == "git":
        subprocess.run(["git", "init", "-q", str(graph.project)], check=True)
    copy = tmp_path / "copy"

    if graph.outside_links:
        with pytest.raises(InstallError) as caught:
            _clean_copy(graph.project, copy, [])
        message = str(caught.value)
        assert caught.value.exit_code == 2 and "\n" not in message
        named = message.removeprefix(f"{graph.project.resolve()}/").split(" ", 1)[0]
        assert named in graph.outside_links, message
        return
    _clean_copy(graph.project, copy, [])
    copied = {path.relative_to(copy).as_posix(): path for path in copy.rglob("*") if path.is_file()}
    assert not any(path.is_symlink() for path in copy.rglob("*"))
    assert not any(b"OUTSIDE" in path.read_bytes() for path in copied.values())
    assert {"pyproject.toml", "backend.py", "app/__init__.py", "app/data/table.txt"} <= set(copied)
    for link, content in graph.inside_file_links.items():
        assert copied[link].read_bytes() == content


@pytest.mark.parametrize("tracked", ["git", "walk"])
def test_the_runs_outputs_inside_the_project_are_skipped_by_identity(
    offline: Path, tmp_path: Path, tracked: str
) -> None:
    """An archive dir inside the project, given by another name (a link to it): the key and the copy skip it."""
    project = write_project(tmp_path / "app")
    if tracked == "git":
        subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / "artifacts").mkdir()
    (tmp_path / "out").symlink_to(project / "artifacts")
    request = request_for(tmp_path / "install", source=project, skip=(tmp_path / "out",))
    first = install(request, installer="uv")
    (project / "artifacts" / "function-0123456789abcdef.zip").write_bytes(b"PK last run's archive")

    second = install(request, installer="uv")

    assert second.skipped and second.key == first.key
    assert not any("artifacts" in name for name in relative_files(tmp_path / "install"))


# --- uv workspaces (issue 23 item 4) -------------------------------------------------------------------------


def write_uv_workspace(root: Path, wheelhouse: Path) -> Path:
    """A virtual workspace root (members packages/*) whose member svc needs purelib and the member lib, locked by
    `uv lock` against a wheelhouse holding only purelib 1.0 (the full one has 2.0): returns svc's directory."""
    (root / "pyproject.toml").parent.mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.uv.workspace]\nmembers = ["packages/*"]\n')
    write_project(root / "packages" / "lib", "lib")
    service = write_project(root / "packages" / "svc", "svc", dependencies=["purelib", "lib"])
    with (service / "pyproject.toml").open("a") as stream:
        stream.write("\n[tool.uv.sources]\nlib = { workspace = true }\n")
    old = root.parent / "old-wheels"
    old.mkdir()
    shutil.copy(wheelhouse / "purelib-1.0-py3-none-any.whl", old)
    config = root.parent / "lock-uv.toml"
    config.write_text(f'no-index = true\nfind-links = ["{old}"]\n')
    uv = find_uv()
    assert uv is not None
    environment = {**os.environ, "UV_CONFIG_FILE": str(config)}
    subprocess.run([uv, "lock", "--project", str(root)], check=True, env=environment, capture_output=True)
    return service


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_uv_workspace_member_installs_the_workspace_lock(offline: Path, tmp_path: Path, installer: str) -> None:
    service = write_uv_workspace(tmp_path / "repo", offline)
    assert not (service / "uv.lock").exists()
    target = tmp_path / "install"

    result = install(request_for(target, source=service), installer=installer)

    assert result.lock is not None and "uv.lock" in result.lock
    assert distributions(target) == {"svc-0.1", "lib-0.1", "purelib-1.0"}  # not purelib 2.0, the newest
    assert install(request_for(target, source=service), installer=installer).skipped


def test_a_stale_uv_workspace_lock_is_refused_for_the_member(offline: Path, tmp_path: Path) -> None:
    service = write_uv_workspace(tmp_path / "repo", offline)
    pyproject = service / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"purelib", "lib"', '"purelib", "lib", "newdep>=1"'))

    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", source=service), installer="uv")

    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        f"{tmp_path / 'repo' / 'uv.lock'} does not match {pyproject}: pyproject.toml asks for newdep>=1 — run "
        "`uv lock` in the workspace root and commit uv.lock"
    )


# --- locked sdists (issue 23 item 1) ---------------------------------------------------------------------------


def _locked_line(house: Path, name: str, version: str, artifact: str) -> str:
    return f"{name}=={version} --hash=sha256:{_sha256(house / artifact)}"


@pytest.mark.parametrize("installer", INSTALLERS)
def test_a_hash_pinned_pure_sdist_is_built_in_isolation_and_installed(
    offline: Path, tmp_path: Path, installer: str
) -> None:
    """emoji==1.7.0-like: a locked package published only as a pure-Python sdist used to be "no wheel of …"."""
    lock = requirements_file(
        tmp_path,
        _locked_line(offline, "puresrc", "1.0", "puresrc-1.0.tar.gz"),
        _locked_line(offline, "purelib", "1.0", "purelib-1.0-py3-none-any.whl"),
    )
    target = tmp_path / "install"

    result = install(request_for(target, requirements=lock), installer=installer)

    assert result.lock == "requirements.txt (hashes)"
    assert distributions(target) == {"puresrc-1.0", "purelib-1.0"}
    assert wheel_tag(target, "puresrc-1.0") == "py3-none-any"


def test_a_hash_pinned_sdist_with_the_wrong_hash_is_not_built(offline: Path, tmp_path: Path) -> None:
    lock = requirements_file(tmp_path, f"puresrc==1.0 --hash=sha256:{'0' * 64}")

    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", requirements=lock), installer="uv")

    assert caught.value.exit_code == 2 and "\n" not in str(caught.value)
    assert str(caught.value).startswith(
        "no wheel of puresrc==1.0 for python3.12 x86_64 (manylinux_2_34_x86_64 or older), and its locked source "
        "distribution does not build (its bytes do not match the lock's hashes)"
    )
    assert not (tmp_path / "install").exists()


def test_a_hash_pinned_sdist_that_builds_native_code_is_refused_by_name(offline: Path, tmp_path: Path) -> None:
    lock = requirements_file(tmp_path, _locked_line(offline, "csrc", "1.0", "csrc-1.0.tar.gz"))

    with pytest.raises(InstallError) as caught:
        install(request_for(tmp_path / "install", requirements=lock), installer="uv")

    assert caught.value.exit_code == 2
    assert str(caught.value).startswith(
        "no wheel of csrc==1.0 for python3.12 x86_64 (manylinux_2_34_x86_64 or older), and its locked source "
        "distribution builds csrc-1.0-cp312-cp312-linux_x86_64.whl, native code for this machine"
    )


def test_a_git_ignored_uv_lock_is_still_the_lock_and_part_of_the_key(offline: Path, tmp_path: Path) -> None:
    project = write_project(tmp_path / "app", dependencies=["purelib"])
    write_uv_lock(project, offline / "purelib-1.0-py3-none-any.whl")
    subprocess.run(["git", "init", "-q", str(project)], check=True)
    (project / ".gitignore").write_text("uv.lock\n")
    request = request_for(tmp_path / "install", source=project)

    assert install(request, installer="uv").lock == "uv.lock"
    assert distributions(tmp_path / "install") == {"app-0.1", "purelib-1.0"}
    write_uv_lock(project, offline / "purelib-2.0-py3-none-any.whl")
    assert not install(request, installer="uv").skipped
    assert distributions(tmp_path / "install") == {"app-0.1", "purelib-2.0"}
