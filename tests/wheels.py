"""Handcrafted wheels and an offline installer configuration (shared by the install tests).

pip and uv are pointed at a local wheelhouse with --no-index through their own config, so no
test reaches a package index.
"""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path


def record_digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def write_wheel(
    directory: Path,
    name: str,
    version: str,
    tag: str,
    files: Mapping[str, bytes],
    requires: Iterable[str] = (),
    extras: Iterable[str] = (),
) -> Path:
    """A real wheel: the files, plus a .dist-info with METADATA, WHEEL and RECORD."""
    info = f"{name}-{version}.dist-info"
    entries = dict(files)
    requires_lines = "".join(f"Provides-Extra: {extra}\n" for extra in extras)
    requires_lines += "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
    entries[f"{info}/METADATA"] = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n{requires_lines}".encode()
    purelib = "true" if tag.endswith("none-any") else "false"
    entries[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()
    record = "".join(f"{path},{record_digest(data)},{len(data)}\n" for path, data in entries.items())
    entries[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    path = directory / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in entries.items():
            archive.writestr(entry, data)
    return path


def offline_environment(wheelhouse: Path, scratch: Path, caches: Path | None = None) -> dict[str, str]:
    """Installer settings under which pip and uv see only the wheelhouse (no index, no machine config).

    Writes scratch/uv.toml; caches go under caches (default: scratch).
    """
    caches = caches or scratch
    uv_config = scratch / "uv.toml"
    uv_config.write_text(f'no-index = true\nfind-links = ["{wheelhouse}"]\n', encoding="utf-8")
    return {
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(wheelhouse),
        "PIP_CACHE_DIR": str(caches / "pip"),
        "UV_CONFIG_FILE": str(uv_config),
        "UV_CACHE_DIR": str(caches / "uv"),
    }


# A PEP 517 backend: packs the package directory named after the project into a wheel tagged
# [tool.test-backend] tag (default py3-none-any), and records the names of the credential variables it saw
# (AWS_*, the runner's OIDC request variables): there must be none.
BACKEND = """
import base64, hashlib, os, tomllib, zipfile
from pathlib import Path
from typing import Any


def _digest(data):
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    config = tomllib.loads(Path("pyproject.toml").read_text())
    project = config["project"]
    name, version = project["name"].replace("-", "_"), project["version"]
    tag = config.get("tool", {}).get("test-backend", {}).get("tag", "py3-none-any")
    files = {p.as_posix(): p.read_bytes() for p in sorted(Path(name).rglob("*.py"))}
    files[name + "/_build_env.txt"] = " ".join(sorted(k for k in os.environ if k.startswith(("AWS_", "ACTIONS_ID_TOKEN_REQUEST_", "ACTIONS_RUNTIME_TOKEN")))).encode()
    info = f"{name}-{version}.dist-info"
    requires = "".join(f"Requires-Dist: {r}\\n" for r in project.get("dependencies", []))
    files[info + "/METADATA"] = f"Metadata-Version: 2.1\\nName: {name}\\nVersion: {version}\\n{requires}".encode()
    pure = "true" if tag.endswith("none-any") else "false"
    files[info + "/WHEEL"] = f"Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: {pure}\\nTag: {tag}\\n".encode()
    record = "".join(f"{n},{_digest(b)},{len(b)}\\n" for n, b in files.items()) + info + "/RECORD,,\\n"
    files[info + "/RECORD"] = record.encode()
    wheel_name = f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(Path(wheel_directory) / wheel_name, "w") as archive:
        for n, b in files.items():
            archive.writestr(n, b)
    return wheel_name
"""


def project_files(
    name: str, version: str, *, dependencies: Sequence[str] = (), tag: str | None = None
) -> dict[str, str]:
    """The files of a project built by the in-tree backend: pyproject.toml, backend.py, the package."""
    tool = f'\n[tool.test-backend]\ntag = "{tag}"\n' if tag else ""
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{name}"\nversion = "{version}"\nrequires-python = ">=3.11"\ndependencies = {list(dependencies)!r}\n{tool}'
    ).replace("'", '"')
    package = name.replace("-", "_")
    return {"pyproject.toml": pyproject, "backend.py": BACKEND, f"{package}/__init__.py": f"NAME = {name!r}\n"}
