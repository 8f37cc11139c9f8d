"""Fixtures shared by the bad-input tables: a project that deploys as it is, and a request-counting proxy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aws import Infrastructure, MotoServer
from tests.bad_inputs.test_bad_inputs import Project
from tests.github_fakes import CountingServer, counting_server


@pytest.fixture
def project(tmp_path: Path, infra: Infrastructure) -> Project:
    """A project that deploys as it is: drover.yml, instance/ (an extra path) and install/."""
    root = tmp_path / "project"
    for name, text in {
        "instance/config.json": '{"debug": false}\n',
        "install/app/__init__.py": "",
        "install/app/main.py": "def handler(event, context):\n    return 'ok'\n",
        "install/dep/__init__.py": "VERSION = '1.0'\n",
    }.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return Project(root, infra)


@pytest.fixture
def proxy(aws: MotoServer) -> Iterator[CountingServer]:
    """The moto server behind a proxy that counts the child's requests."""
    with counting_server(upstream=aws.endpoint) as server:
        yield server
