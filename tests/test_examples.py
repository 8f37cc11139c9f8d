"""The three project shapes under examples/ package with --package-only and run as Lambda would run them.

Each example is copied, packaged by the drover CLI (a real subprocess, dependencies from the package
index), and its archives are extracted the way Lambda lays them out: the function archive at /var/task,
the requirements layer at /opt (so its python/ is /opt/python). A clean interpreter (-I -S: no
PYTHONPATH, no site-packages) with only those two directories on sys.path must import the handler,
and the dependency must come from the layer.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
MACHINE_RUNTIME = f"python{sys.version_info.major}.{sys.version_info.minor}"
DECLARED_RUNTIME = "python3.12"

pytestmark = pytest.mark.network  # the examples' dependencies and build backends come from the index


@dataclass(frozen=True)
class Example:
    directory: str
    install_options: tuple[str, ...]
    handler: str  # module.function, as Lambda's Handler setting names it
    event: dict[str, Any]
    dependency: str  # the module the handler imports from the layer
    lock: str | None
    body: dict[str, Any]


SHAPES = [
    Example(
        "sam_requirements",
        ("--requirements", "hello_world/requirements.txt"),
        "app.lambda_handler",
        {"name": "drover"},
        "attrs",
        None,
        {"message": "hello drover"},
    ),
    Example(
        "uv_project",
        ("--install-source", "."),
        "orders.handler.lambda_handler",
        {"order_id": "A-1"},
        "attrs",
        "uv.lock",
        {"order_id": "A-1", "quantity": 1},
    ),
    Example(
        "poetry_project",
        ("--install-source", "."),
        "inventory.handler.lambda_handler",
        {"items": {"apple": 3}},
        "six",
        "poetry.lock",
        {"items": {"apple": 3}, "six": "1.17.0"},  # exactly the version poetry.lock pins
    ),
]


def tree_digest(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def copy_example(example: Example, destination: Path, runtime: str) -> Path:
    project = destination / example.directory
    shutil.copytree(EXAMPLES / example.directory, project, ignore=shutil.ignore_patterns("build", "out", "__pycache__"))
    settings = project / "drover.yml"
    settings.write_text(
        settings.read_text().replace(f"compatible_runtime: {DECLARED_RUNTIME}", f"compatible_runtime: {runtime}")
    )
    return project


def package(project: Path, example: Example, work: Path) -> dict[str, Any]:
    """Run drover --package-only with the install path and archives outside the project."""
    command = [sys.executable, "-m", "drover", "--install-path", str(work / "install"), *example.install_options]
    command += ["--package-only", "--archive-dir", str(work / "out"), "--json", "dev"]
    result = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def extract_as_lambda(document: dict[str, Any], root: Path) -> tuple[Path, Path]:
    task, opt = root / "var" / "task", root / "opt"
    with zipfile.ZipFile(document["function_archive"]) as archive:
        archive.extractall(task)
    with zipfile.ZipFile(document["requirements_archive"]) as archive:
        archive.extractall(opt)
    return task, opt / "python"


CALL = """
import json, sys
sys.path[:0] = [sys.argv[1], sys.argv[2]]  # what PYTHONPATH=/var/task:/opt/python gives Lambda's interpreter
module_name, function_name = sys.argv[3].rsplit(".", 1)
module = __import__(module_name, fromlist=[function_name])
response = getattr(module, function_name)(json.loads(sys.argv[4]), None)
dependency = __import__(sys.argv[5])
print(json.dumps({"response": response, "dependency_file": dependency.__file__}))
"""


def invoke(task: Path, layer: Path, example: Example) -> dict[str, Any]:
    command = [sys.executable, "-I", "-S", "-c", CALL, str(task), str(layer), example.handler]
    command += [json.dumps(example.event), example.dependency]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=task)
    assert result.returncode == 0, result.stderr
    output: dict[str, Any] = json.loads(result.stdout)
    return output


@pytest.mark.parametrize("example", SHAPES, ids=[example.directory for example in SHAPES])
def test_an_example_packages_and_its_handler_imports_as_lambda_runs_it(tmp_path: Path, example: Example) -> None:
    project = copy_example(example, tmp_path / "src", MACHINE_RUNTIME)
    before = tree_digest(project)
    document = package(project, example, tmp_path)
    assert tree_digest(project) == before  # drover wrote nothing into the project
    assert document["install"]["lock"] == example.lock
    task, layer = extract_as_lambda(document, tmp_path / "lambda")
    output = invoke(task, layer, example)
    assert output["response"]["statusCode"] == 200
    assert json.loads(output["response"]["body"]) == example.body
    assert Path(output["dependency_file"]).is_relative_to(layer)
    assert not any(name.startswith("python/") for name in zipfile.ZipFile(document["function_archive"]).namelist())


@pytest.mark.parametrize("example", SHAPES, ids=[example.directory for example in SHAPES])
def test_an_example_packages_for_its_declared_runtime(tmp_path: Path, example: Example) -> None:
    project = copy_example(example, tmp_path / "src", DECLARED_RUNTIME)
    document = package(project, example, tmp_path)
    assert document["requirements_file_count"] > 0 and document["function_file_count"] > 0


def test_a_code_edit_in_a_project_moves_only_the_function_digest(tmp_path: Path) -> None:
    example = SHAPES[1]
    project = copy_example(example, tmp_path / "src", MACHINE_RUNTIME)
    first = package(project, example, tmp_path)
    handler = project / "src" / "orders" / "handler.py"
    handler.write_text(handler.read_text().replace("quantity: int = 1", "quantity: int = 2"))
    second = package(project, example, tmp_path)
    assert second["requirements_digest"] == first["requirements_digest"]
    assert second["function_digest"] != first["function_digest"]
