# ruff: noqa: F811  (the offline-wheelhouse fixtures of test_install are imported and requested by name)
"""The dependency key: what the requirements layer holds, known from an exact lock before any install.

A deploy whose lock's key matches the attached layer skips the dependency install and the requirements
archive; anything that could change the installed tree changes the key; without an exact lock the install
runs as before; --no-dependency-key installs anyway and audits the shortcut.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from drover.deploy import layer_description, parse_layer_description
from drover.errors import UpdateError
from drover.install import (
    DEPENDENCY_KEY_SKIP,
    INSTALL_MARKER,
    dependency_key,
    dependency_key_of,
    find_installer,
    locked_set,
    target_platform,
)
from drover.install import key as install_key_module
from tests.aws import MotoServer
from tests.deploy_support import Project
from tests.test_install import (  # noqa: F401  (fixtures: an offline wheelhouse)
    _sha256,
    caches,
    offline,
    request_for,
    requirements_file,
    wheelhouse,
    write_project,
    write_uv_lock,
)


def pinned(wheelhouse: Path, name: str, version: str, marker: str = "") -> str:
    wheel = wheelhouse / f"{name}-{version}-py3-none-any.whl"
    return f"{name}=={version}{f' ; {marker}' if marker else ''} --hash=sha256:{_sha256(wheel)}"


def key_for(tmp_path: Path, *lines: str, **overrides: Any) -> str | None:
    requirements = requirements_file(tmp_path, *lines, name="lock.txt")
    return dependency_key(request_for(tmp_path / "install", requirements=requirements, **overrides))


# --- the key ------------------------------------------------------------------------------------


def test_a_hash_pinned_requirements_file_has_a_key_computed_without_installing(offline: Path, tmp_path: Path) -> None:
    key = key_for(tmp_path, pinned(offline, "purelib", "1.0"), pinned(offline, "extra", "1.0"))
    assert key is not None and len(key) == 64
    assert not (tmp_path / "install").exists()
    assert key_for(tmp_path, pinned(offline, "extra", "1.0"), pinned(offline, "purelib", "1.0")) == key  # order


@pytest.mark.parametrize(
    "flip",
    [
        pytest.param({"lines": ("purelib==2.0",)}, id="version"),
        pytest.param({"lines": ("purelib==1.0 --hash=sha256:" + "0" * 64,)}, id="artifact-hash"),
        pytest.param({"runtime": "python3.11"}, id="runtime"),
        pytest.param({"architecture": "arm64"}, id="architecture"),
        pytest.param({"exclude_runtime_packages": True}, id="exclude-runtime-packages"),
        pytest.param({"package_exclude_patterns": ("^python/purelib/data",)}, id="package-exclude-patterns"),
    ],
)
def test_each_input_of_the_installed_tree_changes_the_key(offline: Path, tmp_path: Path, flip: dict[str, Any]) -> None:
    base = pinned(offline, "purelib", "1.0")
    lines = [pinned(offline, "purelib", "2.0")] if flip.get("lines") == ("purelib==2.0",) else flip.get("lines", [base])
    overrides = {name: value for name, value in flip.items() if name != "lines"}
    assert key_for(tmp_path, base) != key_for(tmp_path, *lines, **overrides)


def test_a_marker_outcome_changes_the_key_and_a_marker_edit_with_the_same_outcome_does_not(
    offline: Path, tmp_path: Path
) -> None:
    purelib = pinned(offline, "purelib", "1.0")
    excluded = key_for(tmp_path, purelib, pinned(offline, "extra", "1.0", 'python_version < "3.10"'))
    still_excluded = key_for(tmp_path, purelib, pinned(offline, "extra", "1.0", 'python_version < "3.9"'))
    included = key_for(tmp_path, purelib, pinned(offline, "extra", "1.0", 'python_version < "3.13"'))
    assert excluded == still_excluded == key_for(tmp_path, purelib)
    assert included != excluded
    machine = pinned(offline, "extra", "1.0", 'platform_machine == "aarch64"')
    assert key_for(tmp_path, purelib, machine) == key_for(tmp_path, purelib)
    assert key_for(tmp_path, purelib, machine, architecture="arm64") != key_for(tmp_path, purelib, architecture="arm64")


def test_platform_tags_installer_and_layout_version_are_in_the_key(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    requirements = requirements_file(tmp_path, pinned(offline, "purelib", "1.0"))
    request = request_for(tmp_path / "install", requirements=requirements)
    platform = target_platform(request.runtime, request.architecture)
    installer = find_installer("uv")
    packages = locked_set(request, platform, {})
    assert packages is not None
    key = dependency_key_of(packages, request, platform, installer)
    assert key == dependency_key(request)
    assert dependency_key_of(packages, request, dataclasses.replace(platform, glibc_minor=28), installer) != key
    assert dependency_key_of(packages, request, platform, dataclasses.replace(installer, version="0.0.1")) != key
    assert dependency_key_of(packages, request, platform, dataclasses.replace(installer, name="pip")) != key
    monkeypatch.setattr(install_key_module, "LAYOUT_VERSION", install_key_module.LAYOUT_VERSION + 1)
    assert dependency_key_of(packages, request, platform, installer) != key


@pytest.mark.parametrize(
    "line",
    [
        pytest.param("purelib>=1.0", id="a-range"),
        pytest.param("purelib==1.0", id="pinned-without-hash"),
        pytest.param("purelib==1.* --hash=sha256:" + "0" * 64, id="a-wildcard"),
        pytest.param("--pre", id="an-option-that-changes-what-installs"),
        pytest.param("--find-links {wheelhouse}", id="find-links"),
    ],
)
def test_without_an_exact_lock_there_is_no_key(offline: Path, tmp_path: Path, line: str) -> None:
    digest = _sha256(offline / "purelib-1.0-py3-none-any.whl")
    text = line.format(wheelhouse=offline, digest=digest)
    assert key_for(tmp_path, pinned(offline, "extra", "1.0"), text) is None


def test_a_local_wheel_is_pinned_by_its_bytes(offline: Path, tmp_path: Path) -> None:
    """issue 23 item 2 (was: no key): the wheel's own sha256 is in the key, whatever its --hash says."""
    wheel = offline / "purelib-1.0-py3-none-any.whl"
    by_path = key_for(tmp_path, pinned(offline, "extra", "1.0"), f"{wheel} --hash=sha256:{_sha256(wheel)}")
    assert by_path is not None
    assert key_for(tmp_path, pinned(offline, "extra", "1.0"), pinned(offline, "purelib", "1.0")) == by_path


def test_index_options_do_not_spoil_an_exact_lock(offline: Path, tmp_path: Path) -> None:
    line = pinned(offline, "purelib", "1.0")
    assert key_for(tmp_path, "--index-url https://mirror.example/simple", line) == key_for(tmp_path, line)


def test_project_locks_have_a_key_and_a_project_without_one_has_none(offline: Path, tmp_path: Path) -> None:
    unlocked = write_project(tmp_path / "unlocked", dependencies=["purelib"])
    assert dependency_key(request_for(tmp_path / "a", source=unlocked)) is None
    locked = write_project(tmp_path / "locked", dependencies=["purelib"])
    write_uv_lock(locked, offline / "purelib-1.0-py3-none-any.whl")
    first = dependency_key(request_for(tmp_path / "b", source=locked))
    assert first is not None
    (locked / "app" / "__init__.py").write_text("EDITED = True\n")  # the project's own code is not in the key
    assert dependency_key(request_for(tmp_path / "b", source=locked)) == first
    write_uv_lock(locked, offline / "purelib-2.0-py3-none-any.whl")
    assert dependency_key(request_for(tmp_path / "b", source=locked)) not in (None, first)


def test_a_pylock_toml_has_a_key(offline: Path, tmp_path: Path) -> None:
    wheel = offline / "purelib-1.0-py3-none-any.whl"
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        f'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "purelib"\nversion = "1.0"\n'
        f'wheels = [{{ name = "{wheel.name}", url = "https://files.example.org/{wheel.name}", '
        f'hashes = {{ sha256 = "{_sha256(wheel)}" }} }}]\n',
        encoding="utf-8",
    )
    assert dependency_key(request_for(tmp_path / "install", requirements=lock)) == key_for(
        tmp_path, pinned(offline, "purelib", "1.0")
    )


def test_a_pylock_with_a_local_wheel_has_a_key_over_the_wheels_bytes(offline: Path, tmp_path: Path) -> None:
    """issue 23 item 2: a local wheel rebuilt under the same name (and locked again) changes the key."""
    from tests.wheels import write_wheel

    (tmp_path / "wheels").mkdir()
    lock = tmp_path / "pylock.toml"

    def build_and_lock(built_for: str) -> None:
        files = {"localpkg/__init__.py": f"BUILT_FOR = {built_for!r}\n".encode()}
        wheel = write_wheel(tmp_path / "wheels", "localpkg", "1.0", "py3-none-any", files)
        lock.write_text(
            f'lock-version = "1.0"\ncreated-by = "test"\n\n[[packages]]\nname = "localpkg"\nversion = "1.0"\n'
            f'wheels = [{{ name = "{wheel.name}", path = "wheels/{wheel.name}", '
            f'hashes = {{ sha256 = "{_sha256(wheel)}" }} }}]\n',
            encoding="utf-8",
        )

    build_and_lock("first")
    request = request_for(tmp_path / "install", requirements=lock)
    first = dependency_key(request)
    assert first is not None
    build_and_lock("rebuilt")
    assert dependency_key(request) not in (None, first)


def test_the_layer_description_records_digest_and_key_and_both_forms_parse() -> None:
    digest, key = "a" * 64, "b" * 64
    assert parse_layer_description(f"drover requirements sha256:{digest}") == (digest, None)
    assert parse_layer_description(layer_description(digest, key)) == (digest, key)
    assert parse_layer_description(layer_description(digest)) == (digest, None)
    assert len(layer_description(digest, key)) <= 256
    assert parse_layer_description("made by hand") == (None, None)


# --- the deploy ---------------------------------------------------------------------------------


def cold_project(root: Path, offline: Path, *lines: str) -> Project:
    """A SAM-shaped project: function code from a handler directory, dependencies from a hash-pinned file."""
    project = Project(root, stage={"function_file_patterns": [], "function_extra_paths": ["src"]})
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    requirements_file(root, *(lines or (pinned(offline, "purelib", "1.0"),)))
    return project


def fresh_runner(project: Project) -> None:
    """What a new CI job starts with: the checkout, no install path."""
    import shutil

    shutil.rmtree(project.install, ignore_errors=True)


@pytest.fixture
def deployed(offline: Path, tmp_path: Path, aws: MotoServer, infra: Any) -> Project:
    infra.function("fn")
    project = cold_project(tmp_path, offline)
    first = project.deploy(requirements=tmp_path / "requirements.txt")
    assert first.install is not None and first.install.dependency_key is not None
    assert not first.install.skipped
    layer = infra.layer_versions("fn-requirements")[-1]
    assert layer["Description"] == layer_description(str(first.requirements_digest), first.install.dependency_key)
    return project


def test_a_cold_runner_with_an_unchanged_lock_installs_nothing_and_writes_nothing(
    deployed: Project, infra: Any
) -> None:
    fresh_runner(deployed)
    layers_before = infra.configuration()["Layers"]
    result = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert result.install is not None
    assert result.install.skipped and result.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    assert [path.name for path in deployed.install.iterdir()] == [INSTALL_MARKER]  # no dependency installed
    assert deployed.writes == [] and not result.changed
    assert result.requirements_layer_arn == layers_before[0]["Arn"]
    assert result.requirements_file_count == 0  # the requirements were neither read nor archived
    assert infra.configuration()["Layers"] == layers_before


def test_a_code_change_on_a_cold_runner_updates_only_the_code(deployed: Project, infra: Any) -> None:
    fresh_runner(deployed)
    layers_before = infra.configuration()["Layers"]
    tags_before = infra.tags()
    (deployed.root / "src" / "app.py").write_text("def handler(event, context):\n    return 2\n")
    result = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert result.install is not None and result.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    assert "PublishLayerVersion" not in deployed.writes and "UpdateFunctionConfiguration" not in deployed.writes
    assert "UpdateFunctionCode" in deployed.writes
    assert infra.configuration()["Layers"] == layers_before
    tags = infra.tags()
    assert tags["drover:requirements-digest"] == tags_before["drover:requirements-digest"]
    assert tags["drover:function-digest"] != tags_before["drover:function-digest"]


def test_a_changed_lock_on_a_cold_runner_installs_and_publishes(deployed: Project, offline: Path, infra: Any) -> None:
    fresh_runner(deployed)
    requirements_file(deployed.root, pinned(offline, "purelib", "2.0"))
    result = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert result.install is not None and not result.install.skipped
    assert "PublishLayerVersion" in deployed.writes
    assert (deployed.install / "purelib-2.0.dist-info").is_dir()


def test_function_file_patterns_mean_no_key(deployed: Project) -> None:
    fresh_runner(deployed)
    deployed.stage["function_file_patterns"] = ["^nothing_matches"]
    result = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert result.install is not None and result.install.dependency_key is None and not result.install.skipped
    assert (deployed.install / "purelib-1.0.dist-info").is_dir()


def test_verify_installs_anyway_and_passes_when_the_tree_matches_the_layer(deployed: Project) -> None:
    fresh_runner(deployed)
    result = deployed.deploy(requirements=deployed.root / "requirements.txt", verify_dependencies=True)
    assert result.install is not None and not result.install.skipped and result.install.verified
    assert (deployed.install / "purelib-1.0.dist-info").is_dir()
    assert deployed.writes == []


def test_verify_fails_the_run_when_the_layer_with_this_key_holds_other_content(deployed: Project, infra: Any) -> None:
    """A layer recording this key but another digest: the shortcut would trust it; the audit catches it."""
    lambda_ = infra.client("lambda")
    key = parse_layer_description(infra.layer_versions("fn-requirements")[-1]["Description"])[1]
    from tests.aws import zip_bytes

    forged = lambda_.publish_layer_version(
        LayerName="fn-requirements",
        Description=layer_description("c" * 64, key),
        Content={"ZipFile": zip_bytes({"python/other.py": "x = 1\n"})},
        CompatibleRuntimes=["python3.12"],
    )["LayerVersionArn"]
    lambda_.update_function_configuration(FunctionName="fn", Layers=[forged])
    fresh_runner(deployed)
    with pytest.raises(UpdateError, match="dependency key audit failed") as caught:
        deployed.deploy(requirements=deployed.root / "requirements.txt", verify_dependencies=True)
    assert forged in str(caught.value) and "\n" not in str(caught.value)
    assert deployed.writes == []
    fresh_runner(deployed)
    trusted = deployed.deploy(requirements=deployed.root / "requirements.txt")  # without the audit: the key decides
    assert trusted.install is not None and trusted.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)


def test_a_uv_project_on_a_cold_runner_installs_only_itself(
    offline: Path, tmp_path: Path, aws: MotoServer, infra: Any
) -> None:
    infra.function("fn")
    source = write_project(tmp_path / "app", dependencies=["purelib"])
    write_uv_lock(source, offline / "purelib-1.0-py3-none-any.whl")
    project = Project(tmp_path, stage={"function_file_patterns": []})
    first = project.deploy(install_source=source)
    assert first.install is not None and first.install.dependency_key is not None
    layers = infra.configuration()["Layers"]

    fresh_runner(project)
    again = project.deploy(install_source=source)
    assert again.install is not None and again.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    assert {path.name for path in project.install.glob("*.dist-info")} == {"app-0.1.dist-info"}
    assert again.function_digest == first.function_digest
    assert project.writes == []

    (source / "app" / "__init__.py").write_text("NAME = 'edited'\n")
    fresh_runner(project)
    edited = project.deploy(install_source=source)
    assert edited.install is not None and edited.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    assert edited.function_digest != first.function_digest
    assert "UpdateFunctionCode" in project.writes and "PublishLayerVersion" not in project.writes
    assert infra.configuration()["Layers"] == layers

    warm = project.deploy(install_source=source)  # the project-only install path is kept when nothing changed
    assert warm.install is not None and warm.install.skipped and project.writes == []


def test_the_cli_reports_the_key_in_json_and_no_dependency_key_installs(
    deployed: Project, aws: MotoServer, tmp_path: Path
) -> None:
    fresh_runner(deployed)
    command = [sys.executable, "-m", "drover", "--install-path", "install", "--requirements", "requirements.txt"]
    plain = subprocess.run([*command, "--json", "test"], cwd=deployed.root, capture_output=True, text=True)
    assert plain.returncode == 0, plain.stderr
    install = json.loads(plain.stdout)["install"]
    assert install["skip_reason"].startswith(DEPENDENCY_KEY_SKIP) and len(install["dependency_key"]) == 64
    audited = subprocess.run(
        [*command, "--no-dependency-key", "--json", "test"], cwd=deployed.root, capture_output=True, text=True
    )
    assert audited.returncode == 0, audited.stderr
    assert json.loads(audited.stdout)["install"]["verified"] is True


@pytest.mark.parametrize(("value", "expected"), [(None, False), ("true", True), ("false", False)])
def test_the_action_input_verify_dependencies_reaches_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, value: str | None, expected: bool
) -> None:
    from drover import github

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path))
    for name in [name for name in os.environ if name.startswith("INPUT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("INPUT_STAGE", "dev")
    monkeypatch.setenv("INPUT_REQUIREMENTS", "requirements.txt")
    if value is not None:  # None: not given (given but empty is an error, tests/bad_inputs/test_round_three.py)
        monkeypatch.setenv("INPUT_VERIFY-DEPENDENCIES", value)
    (tmp_path / "requirements.txt").write_text("purelib==1.0\n")
    (tmp_path / "drover.yml").write_text(
        "stages:\n  dev:\n    region_name: us-east-1\n    function_name: fn\n    compatible_runtime: python3.12\n"
    )
    inputs = github.parse_inputs()
    assert inputs.verify_dependencies is expected
    assert github.prepare(inputs, debug=False).request.options.verify_dependencies is expected


def test_a_layer_reused_by_digest_is_matched_through_the_function_tags(deployed: Project, infra: Any) -> None:
    """Another key, same tree (here: an exclude pattern that excludes nothing): no new layer is published, the
    layer's description keeps the old key, and the function's tags record the new key beside the digest."""
    fresh_runner(deployed)
    deployed.stage["package_exclude_patterns"] = [".*__pycache__.*", "^no-such-file$"]
    changed = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert changed.install is not None and not changed.install.skipped
    assert "PublishLayerVersion" not in deployed.writes
    assert infra.tags()["drover:dependency-key"] == changed.install.dependency_key
    fresh_runner(deployed)
    again = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert again.install is not None and again.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    assert deployed.writes == []


def test_a_deploy_without_a_key_clears_the_recorded_one(deployed: Project, offline: Path, infra: Any) -> None:
    fresh_runner(deployed)
    requirements_file(deployed.root, "purelib==2.0")  # not hash-pinned: no key
    result = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert result.install is not None and result.install.dependency_key is None
    assert infra.tags()["drover:dependency-key"] == "none"


def test_a_promotion_replaces_the_recorded_key_so_a_rollback_deploy_installs_its_own_dependencies(
    offline: Path, tmp_path: Path, aws: MotoServer, infra: Any
) -> None:
    """prod deployed with lock 1, then staging's build (lock 2) promoted to prod: prod's tags must not keep
    lock 1's key beside lock 2's digest, or redeploying lock 1 (a rollback) would keep lock 2's layer."""
    import yaml

    from drover import Drover
    from drover.core import RunOptions
    from drover.settings import load_settings
    from tests.aws import CallRecorder, recording_clients

    infra.function("fn-prod")
    infra.function("fn-staging")
    common = {"region_name": "us-east-1", "compatible_runtime": "python3.12", "requirements_layer_name": "deps"}
    common |= {"function_file_patterns": [], "function_extra_paths": ["src"]}
    stages = {name: {**common, "function_name": f"fn-{name}"} for name in ("prod", "staging")}
    (tmp_path / "drover.yml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("def handler(event, context):\n    return 1\n")
    install = tmp_path / "install"

    def drover(stage: str) -> Drover:
        options = RunOptions(working_directory=tmp_path, aws=recording_clients(CallRecorder()))
        options.requirements = tmp_path / "requirements.txt"
        return Drover(load_settings(tmp_path / "drover.yml"), stage, options=options)

    def deploy(stage: str, version: str) -> Any:
        import shutil

        shutil.rmtree(install, ignore_errors=True)  # a cold runner each time
        requirements_file(tmp_path, pinned(offline, "purelib", version))
        return drover(stage).update(install)

    first = deploy("prod", "1.0")
    deploy("staging", "2.0")
    settings = load_settings(tmp_path / "drover.yml")
    drover("prod").promote("staging", settings.stages["staging"])

    rollback = deploy("prod", "1.0")
    attached = infra.configuration("fn-prod")["Layers"][0]["Arn"]
    name, number = attached.split(":")[-2:]
    description = infra.client("lambda").get_layer_version(LayerName=name, VersionNumber=int(number))["Description"]
    assert parse_layer_description(description)[0] == first.requirements_digest  # lock 1's dependencies run
    assert rollback.requirements_digest == first.requirements_digest
    assert rollback.install is not None and rollback.install.skip_reason != DEPENDENCY_KEY_SKIP


def test_the_step_summary_of_a_kept_layer_says_it_was_kept_not_that_the_requirements_are_empty(
    deployed: Project,
) -> None:
    from drover.report import render_summary

    fresh_runner(deployed)
    result = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert result.install is not None and result.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    (row,) = [line for line in render_summary(result).splitlines() if line.startswith("| Requirements package |")]
    assert "0 files" not in row and "dependency key" in row and str(result.requirements_layer_arn) in row


def test_a_dry_run_on_a_cold_runner_with_a_matching_key_lists_the_deploys_steps(deployed: Project) -> None:
    (deployed.root / "src" / "app.py").write_text("def handler(event, context):\n    return 3\n")
    fresh_runner(deployed)
    planned = deployed.deploy(requirements=deployed.root / "requirements.txt", dry_run=True)
    assert deployed.writes == []
    fresh_runner(deployed)
    done = deployed.deploy(requirements=deployed.root / "requirements.txt")
    assert planned.install is not None and planned.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)
    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in done.actions]
    assert [a.action for a in done.actions] == ["update-code", "tag"]


def test_one_drover_deploying_twice_does_not_keep_the_first_runs_layer(
    deployed: Project, offline: Path, infra: Any
) -> None:
    """drover.Drover is the library's API: a second update() on the same object must decide afresh."""
    from drover import Drover
    from drover.core import RunOptions
    from drover.settings import load_settings
    from tests.aws import recording_clients

    settings_file = deployed.write_settings()
    options = RunOptions(
        working_directory=deployed.root,
        aws=recording_clients(deployed.recorder),
        requirements=deployed.root / "requirements.txt",
    )
    drover = Drover(load_settings(settings_file), "test", options=options)
    fresh_runner(deployed)
    first = drover.update(deployed.install)
    assert first.install is not None and first.install.skip_reason.startswith(DEPENDENCY_KEY_SKIP)

    requirements_file(deployed.root, pinned(offline, "purelib", "2.0"))
    second = drover.update(deployed.install)

    assert second.install is not None and not second.install.skipped
    assert second.requirements_digest != first.requirements_digest
    attached = infra.configuration()["Layers"][0]["Arn"]
    assert attached == second.requirements_layer_arn != first.requirements_layer_arn
