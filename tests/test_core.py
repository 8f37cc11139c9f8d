"""Drover's own steps: single-pass package-only builds, limits checked before reading, archive dirs skipped."""

from __future__ import annotations

from pathlib import Path

import pytest

from drover import Drover, PackagingError, RunOptions
from drover.models import Settings
from drover.packaging import plan_package


def settings(**stage: object) -> Settings:
    base = {
        "region_name": "us-east-1",
        "function_name": "fn",
        "compatible_runtime": "python3.12",
        "function_file_patterns": ["^app"],
    }
    return Settings.model_validate({"stages": {"test": {**base, **stage}}})


@pytest.fixture
def tree(tmp_path: Path, make_tree) -> Path:
    return make_tree(
        tmp_path / "install",
        {"app/__init__.py": b"x = 1\n", "lib/util.py": b"y = 2\n", "bin/tool": (b"#!/bin/sh\n", 0o755)},
    )


def test_package_only_digests_equal_the_hash_first_digests(tree: Path, tmp_path: Path) -> None:
    """The single-pass build (hash while compressing) must agree with the deploy path's digests."""
    result = Drover(settings(), "test", options=RunOptions(package_only=True, working_directory=tmp_path)).update(tree)
    plan = plan_package(settings().stages["test"], tree, tmp_path)

    assert (result.function_digest, result.requirements_digest) == (plan.function.digest, plan.requirements.digest)
    assert (result.function_file_count, result.requirements_file_count) == (1, 2)


def test_an_archive_dir_inside_the_install_path_is_not_packaged(tree: Path, tmp_path: Path) -> None:
    options = RunOptions(package_only=True, working_directory=tmp_path, archive_dir=tree / "dist")
    first = Drover(settings(), "test", options=options).update(tree)
    second = Drover(settings(), "test", options=options).update(tree)

    assert second.requirements_digest == first.requirements_digest
    assert second.requirements_file_count == 2
    assert Path(first.function_archive).is_absolute()


def test_deploy_path_refuses_an_oversized_tree_before_reading_it(tree: Path, tmp_path: Path) -> None:
    with open(tree / "lib" / "huge.bin", "wb") as stream:
        stream.truncate(262_144_001)  # sparse: size known from stat, no byte is read

    with pytest.raises(PackagingError, match=r"huge\.bin: 262144001 bytes is larger than Lambda's"):
        Drover(settings(), "test", options=RunOptions(working_directory=tmp_path)).package(tree)


def test_package_only_warns_about_an_oversized_tree_and_still_builds(tree: Path, tmp_path: Path, monkeypatch) -> None:
    import drover.packaging

    monkeypatch.setattr(drover.packaging, "unzipped_limit_problem", lambda layout: "too big for Lambda")
    result = Drover(settings(), "test", options=RunOptions(package_only=True, working_directory=tmp_path)).update(tree)

    assert result.warnings == ["too big for Lambda"]
    assert result.function_size and result.requirements_size


def test_unknown_stage_lists_the_stages(tmp_path: Path) -> None:
    from drover import SettingsError

    with pytest.raises(SettingsError, match="unknown stage 'prod' — stages defined: test"):
        Drover(settings(), "prod")


def test_an_invalid_alias_override_is_a_settings_error() -> None:
    from drover import SettingsError

    with pytest.raises(SettingsError, match="alias '1' is not a valid alias name"):
        Drover(settings(), "test", options=RunOptions(alias="1"))
