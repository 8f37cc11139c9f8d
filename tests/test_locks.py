"""drover.locks: requirement inputs read for one Lambda target (markers judged for it, paths made absolute)."""

from __future__ import annotations

from pathlib import Path

import pytest

from drover.errors import InstallError
from drover.locks import marker_environment, read_requirements, uv_lock_problem

PY313_X86 = marker_environment("3.13", "x86_64")


def test_a_requirements_file_becomes_marker_free_lines_for_the_target(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    (tmp_path / "wheels" / "x-1.0-py3-none-any.whl").write_bytes(b"x")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "base.txt").write_text("six==1.16.0 ; python_version >= '3.7'\n-c pins.txt\n")
    (tmp_path / "nested" / "pins.txt").write_text("attrs<25 ; sys_platform == 'linux'\nwin ; sys_platform == 'win32'\n")
    (tmp_path / "requirements.txt").write_text(
        "-i https://pypi.org/simple\n"
        "# a comment\n"
        'https://example.org/pkg-1.0-py3-none-any.whl ; python_version >= "3.12"\n'
        "./wheels/x-1.0-py3-none-any.whl\n"
        'name @ https://example.org/n.tar.gz ; sys_platform == "win32"\n'
        'foo[bar]>=1 ; python_version >= "3.13" and platform_machine == "x86_64" \\\n'
        "    --hash=sha256:abc\n"
        "-r nested/base.txt\n"
        "--find-links ./wheels\n"
    )
    read = read_requirements(tmp_path / "requirements.txt", PY313_X86)
    assert read.lines == [
        "-i https://pypi.org/simple",
        "https://example.org/pkg-1.0-py3-none-any.whl",
        f"{tmp_path}/wheels/x-1.0-py3-none-any.whl",
        "foo[bar]>=1 --hash=sha256:abc",
        "six==1.16.0",
        f"--find-links {tmp_path}/wheels",
    ]
    assert read.constraints == ["attrs<25"]
    assert (len(read.named), read.kept) == (5, 4)
    assert read.extras == {"foo": {"bar"}} and read.hashed
    assert read.files == [
        tmp_path / "requirements.txt",
        tmp_path / "nested" / "base.txt",
        tmp_path / "nested" / "pins.txt",
    ]
    assert read.references == [tmp_path / "wheels" / "x-1.0-py3-none-any.whl", tmp_path / "wheels"]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-e .", "editable requirement '-e .' installs a link to this machine's directory"),
        ("--editable=./lib", "editable requirement"),
        ("./missing-1.0-py3-none-any.whl", "does not exist"),
        ("foo ; python_version >>> '3'", "invalid environment marker"),
        ("foo===", "cannot read requirement"),
    ],
)
def test_bad_requirement_lines_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    (tmp_path / "requirements.txt").write_text(f"six\n{line}\n")
    with pytest.raises(InstallError, match=f"^{tmp_path}/requirements.txt:2: .*{message}"):
        read_requirements(tmp_path / "requirements.txt", PY313_X86)


LOCK = """version = 1
revision = 3
requires-python = ">=3.11"

[[package]]
name = "app"
version = "0.1"
source = { editable = "." }

[package.metadata]
requires-dist = [{ name = "attrs", specifier = ">=24" }, { name = "six" }]
"""


@pytest.mark.parametrize(
    ("dependencies", "problem"),
    [
        ('["attrs>=24", "six"]', None),
        ('["six", "attrs >= 24"]', None),
        ('["attrs>=24", "six", "requests"]', "pyproject.toml asks for requests"),
        ('["attrs>=25", "six"]', "pyproject.toml asks for attrs>=25; uv.lock records attrs>=24"),
        ('["attrs>=24"]', "uv.lock records six"),
    ],
)
def test_a_uv_lock_that_does_not_match_the_project_is_found(
    tmp_path: Path, dependencies: str, problem: str | None
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        f'[project]\nname = "app"\nversion = "0.1"\ndependencies = {dependencies}\n'
    )
    (tmp_path / "uv.lock").write_text(LOCK)
    assert uv_lock_problem(tmp_path) == problem
