"""drover.locks: requirement inputs read for one Lambda target (markers judged for it, paths made absolute)."""

from __future__ import annotations

import os
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


# --- malformed locks: exit 2, one line naming the user's file (issue 23, item 3) ------------------------------

import copy  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402

from drover.install import target_platform  # noqa: E402
from drover.lockfiles import MAX_INPUT_BYTES  # noqa: E402
from drover.locks import poetry_lock_requirements, pylock_requirements  # noqa: E402

PY312 = target_platform("python3.12", "x86_64")
PY312_ENV = marker_environment("3.12", "x86_64")
SHA = "a" * 64


def toml_value(value: Any) -> str:
    """A TOML inline value (enough for the fuzzed documents: tables, arrays, strings, numbers, booleans)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(str(value))


def toml_document(document: dict[str, Any]) -> str:
    return "".join(f"{json.dumps(key)} = {toml_value(value)}\n" for key, value in document.items())


PYLOCK = {
    "lock-version": "1.0",
    "created-by": "test",
    "packages": [
        {
            "name": "six",
            "version": "1.16.0",
            "marker": "python_version >= '3'",
            "wheels": [
                {"name": "six-1.16.0-py2.py3-none-any.whl", "url": "https://x/six.whl", "hashes": {"sha256": SHA}}
            ],
        },
        {"name": "local", "version": "1.0", "directory": {"path": "."}},
    ],
}
POETRY_LOCK = {
    "package": [
        {
            "name": "six",
            "version": "1.16.0",
            "groups": ["main"],
            "markers": {"main": "python_version >= '3'"},
            "files": [{"file": "six-1.16.0-py2.py3-none-any.whl", "hash": f"sha256:{SHA}"}],
            "dependencies": {"attrs": {"version": ">=1", "markers": "python_version >= '3'", "extras": []}},
            "extras": {"fast": ["attrs (>=1)"]},
        },
    ],
}
UV_LOCK = {
    "version": 1,
    "package": [
        {"name": "app", "version": "0.1", "metadata": {"requires-dist": [{"name": "six", "specifier": ">=1"}]}}
    ],
}
WRONG_TYPES: list[Any] = [3, "text", [], [1, "x"], {}, {"name": 5}, True, 1.5]


def mutations(document: dict[str, Any], rng: random.Random, count: int) -> list[dict[str, Any]]:
    """Copies of document with one value deleted or replaced by a value of the wrong type, at random depths."""
    results = []
    for _ in range(count):
        mutated = copy.deepcopy(document)
        parent: Any = mutated
        key: Any = rng.choice(list(parent))
        while isinstance(parent[key], dict | list) and parent[key] and rng.random() < 0.7:
            parent = parent[key]
            key = rng.choice(list(parent)) if isinstance(parent, dict) else rng.randrange(len(parent))
        if isinstance(parent, dict) and rng.random() < 0.3:
            del parent[key]
        else:
            parent[key] = rng.choice(WRONG_TYPES)
        results.append(mutated)
    return results


def read_pylock(project: Path) -> object:
    return pylock_requirements(project / "pylock.toml", PY312_ENV, PY312.wheel_tags())


def read_poetry(project: Path) -> object:
    return poetry_lock_requirements(project)


def read_uv(project: Path) -> object:
    return uv_lock_problem(project)


READERS: dict[str, tuple[str, dict[str, Any], Callable[[Path], object]]] = {
    "pylock": ("pylock.toml", PYLOCK, read_pylock),
    "poetry": ("poetry.lock", POETRY_LOCK, read_poetry),
    "uv": ("uv.lock", UV_LOCK, read_uv),
}


def locked_project(root: Path, lock_name: str, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text('[project]\nname = "app"\nversion = "0.1"\ndependencies = ["six>=1"]\n')
    (root / lock_name).write_text(text)
    return root


@pytest.mark.parametrize("reader", list(READERS))
def test_every_malformed_lock_is_one_install_error_naming_the_users_file(tmp_path: Path, reader: str) -> None:
    """Fuzzed: a field deleted or of the wrong type, anywhere. Either the reader copes (a lock it can still read)
    or it raises InstallError (exit 2) starting with the lock's path; never KeyError, TypeError, AttributeError."""
    lock_name, document, read = READERS[reader]
    read(locked_project(tmp_path / "valid", lock_name, toml_document(document)))  # the seed reads
    failures = 0
    for index, mutated in enumerate(mutations(document, random.Random(23), 150)):
        project = locked_project(tmp_path / str(index), lock_name, toml_document(mutated))
        try:
            read(project)
        except InstallError as error:
            failures += 1
            message = str(error)
            assert message.startswith(str(project)), message
            assert "\n" not in message and "unexpected" not in message.lower()
    assert failures > 20  # the fuzzing reached the validation


@pytest.mark.parametrize("reader", list(READERS))
def test_a_huge_lock_is_refused_before_it_is_read(tmp_path: Path, reader: str) -> None:
    lock_name, _, read = READERS[reader]
    project = locked_project(tmp_path, lock_name, "")
    with (project / lock_name).open("wb") as stream:
        stream.truncate(MAX_INPUT_BYTES + 1)  # sparse: no 32 MB written
    with pytest.raises(InstallError, match=rf"^{lock_name} {project / lock_name} is {MAX_INPUT_BYTES + 1} bytes, over"):
        read(project)


def test_a_local_pylock_wheel_whose_bytes_do_not_match_the_lock_is_refused(tmp_path: Path) -> None:
    (tmp_path / "wheels").mkdir()
    wheel = tmp_path / "wheels" / "local-1.0-py3-none-any.whl"
    wheel.write_bytes(b"not what was locked")
    document = {
        "lock-version": "1.0",
        "created-by": "test",
        "packages": [
            {
                "name": "local",
                "version": "1.0",
                "wheels": [{"name": wheel.name, "path": f"wheels/{wheel.name}", "hashes": {"sha256": SHA}}],
            }
        ],
    }
    project = locked_project(tmp_path, "pylock.toml", toml_document(document))
    with pytest.raises(
        InstallError,
        match=rf"^{project}/pylock.toml: local: {wheel} has sha256 [0-9a-f]{{64}}, but the lock says {SHA} — the file changed since it was locked",
    ):
        read_pylock(project)


# --- nested requirement files: bounded, non-blocking, confined in the Action (issue 24.1) -----------------------


def test_a_nested_requirements_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")  # nobody writes: a blocking open or read would hang the run
    (tmp_path / "requirements.txt").write_text("six\n-r pipe\n")
    with pytest.raises(InstallError, match=rf"^requirements file {tmp_path}/pipe is not a regular file"):
        read_requirements(tmp_path / "requirements.txt", PY313_X86)


def test_a_huge_nested_requirements_file_is_refused(tmp_path: Path) -> None:
    with (tmp_path / "huge.txt").open("wb") as stream:
        stream.truncate(MAX_INPUT_BYTES + 1)
    (tmp_path / "requirements.txt").write_text("-c huge.txt\n")
    with pytest.raises(InstallError, match=r"huge\.txt is \d+ bytes, over drover's"):
        read_requirements(tmp_path / "requirements.txt", PY313_X86)


def test_confined_reads_refuse_a_nested_file_outside_the_root_by_name_only(tmp_path: Path) -> None:
    from drover.lockfiles import confine_reads

    workspace, outside = tmp_path / "workspace", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("TOKEN-VALUE\n")
    (workspace / "linked").symlink_to(outside, target_is_directory=True)
    (workspace / "requirements.txt").write_text("six\n-r linked/secret.txt\n")
    read_requirements(workspace / "requirements.txt", PY313_X86)  # the CLI reads it: the user's own machine

    with confine_reads(workspace), pytest.raises(InstallError) as caught:
        read_requirements(workspace / "requirements.txt", PY313_X86)
    message = str(caught.value)
    assert message.startswith(f"requirements file {outside / 'secret.txt'} resolves to '{outside / 'secret.txt'}'")
    assert "outside the workspace" in message and "TOKEN-VALUE" not in message
