# ruff: noqa: F811  (the offline-wheelhouse fixtures of test_install are imported and requested by name)
"""One pipeline for one stage or many: the rules a multi-stage run keeps, tested through the CLI against the moto server

Black-box on purpose: each test drives `drover.cli.main` in this process (arguments in; exit code, stdout and
stderr out; `--json` for the result) and reads the truth from the moto server with plain boto3 (CodeSha256,
RevisionId, attached layers, tags, layer versions and their content, S3 object versions). Nothing here imports
the engine, so the rules hold whatever implements them, one stage or many.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import shutil
import time
import urllib.parse
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover import cli
from tests.aws import ACCOUNT, REGION, Infrastructure, MotoServer
from tests.github_fakes import CountingServer, counting_server
from tests.test_dependency_key import pinned
from tests.test_install import (  # noqa: F401  (fixtures: an offline wheelhouse)
    caches,
    offline,
    wheelhouse,
    write_project,
    write_uv_lock,
)

HANDLER = "def handler(event, context):\n    return {value!r}\n"
BASE = {"region_name": REGION, "compatible_runtime": "python3.12"}


def code_stage(function_name: str, **extra: Any) -> dict[str, Any]:
    """A stage whose function code is src/ and whose install path is all requirements (an exact lock has a key)."""
    return {
        **BASE,
        "function_name": function_name,
        "function_file_patterns": [],
        "function_extra_paths": ["src"],
    } | extra


def tree_stage(function_name: str, **extra: Any) -> dict[str, Any]:
    """A stage over a hand-built install path: ^app is the function code, everything else the requirements layer."""
    return {**BASE, "function_name": function_name, "function_file_patterns": ["^app"]} | extra


@dataclass
class Run:
    """One `drover` command: its exit code and what it printed."""

    code: int
    stdout: str
    stderr: str

    @property
    def result(self) -> dict[str, Any]:
        """The one JSON object --json prints on stdout."""
        assert self.stdout.count("\n") == 1, self.stdout + self.stderr
        document = json.loads(self.stdout)
        assert isinstance(document, dict)
        return document

    def entry(self, stage: str) -> dict[str, Any]:
        """A multi-stage result's entry for one stage."""
        [entry] = [entry for entry in self.result["results"] if entry["stage"] == stage]
        return dict(entry)


@dataclass(frozen=True)
class Live:
    """What the moto server says a function is: each field changes with any write to it."""

    code_sha256: str
    revision: str  # RevisionId; moto returns none, so then a digest of the whole configuration stands in for it
    layers: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]


VOLATILE = frozenset({"RevisionId", "LastUpdateStatus", "LastUpdateStatusReason", "State", "LastModified"})


def revision_of(configuration: dict[str, Any]) -> str:
    if configuration.get("RevisionId"):
        return str(configuration["RevisionId"])
    state = {key: value for key, value in configuration.items() if key not in VOLATILE}
    return hashlib.sha256(json.dumps(state, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class Pipeline:
    """A project directory, the functions Terraform made, and `drover` run in-process from the directory."""

    root: Path
    infra: Infrastructure
    capsys: pytest.CaptureFixture[str]
    monkeypatch: pytest.MonkeyPatch

    def write(self, name: str, text: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def settings(self, stages: dict[str, dict[str, Any]], name: str = "drover.yml") -> Path:
        return self.write(name, yaml.safe_dump({"stages": stages}))

    def functions(self, *names: str) -> None:
        for name in names:
            self.infra.function(name)

    def drover(self, *args: str | Path, endpoint: str | None = None) -> Run:
        """`drover --non-interactive ARGS` in the project directory (AWS at endpoint, default the moto server)."""
        self.capsys.readouterr()
        with self.monkeypatch.context() as patch:
            patch.chdir(self.root)
            if endpoint is not None:
                patch.setenv("AWS_ENDPOINT_URL", endpoint)
            try:
                code = cli.main(["--non-interactive", *map(str, args)])
            except SystemExit as exit:  # argparse exits on a usage error
                code = exit.code if isinstance(exit.code, int) else 1
        captured = self.capsys.readouterr()
        return Run(code, captured.out, captured.err)

    def live(self, function: str) -> Live:
        response = self.infra.client("lambda").get_function(FunctionName=function)
        configuration = response["Configuration"]
        return Live(
            code_sha256=configuration["CodeSha256"],
            revision=revision_of(configuration),
            layers=tuple(layer["Arn"] for layer in configuration.get("Layers", [])),
            tags=tuple(sorted((response.get("Tags") or {}).items())),
        )

    def lives(self, *functions: str) -> dict[str, Live]:
        return {function: self.live(function) for function in functions}


@pytest.fixture
def pipeline(
    tmp_path: Path, infra: Infrastructure, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Pipeline:
    return Pipeline(tmp_path, infra, capsys, monkeypatch)


def steps(result: dict[str, Any]) -> list[tuple[str, str]]:
    return [(action["action"], action["target"]) for action in result["actions"]]


def files_of(root: Path) -> dict[str, str]:
    """Every file under root: {relative POSIX path: SHA-256 of its bytes}."""
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def object_versions(infra: Infrastructure, bucket: str) -> list[tuple[str, str, bytes]]:
    """Every version of every object in the bucket: (key, version id, bytes)."""
    s3 = infra.client("s3")
    listed = s3.list_object_versions(Bucket=bucket).get("Versions", [])
    return [
        (
            version["Key"],
            version["VersionId"],
            s3.get_object(Bucket=bucket, Key=version["Key"], VersionId=version["VersionId"])["Body"].read(),
        )
        for version in listed
    ]


def layer_zip(infra: Infrastructure, arn: str, bucket: str | None = None) -> bytes:
    """The bytes of a layer version: from its Content.Location when that is a URL (real Lambda), else the upload
    bucket's object with the layer's CodeSha256, else what the moto server stored (moto gives "s3://" as the
    Location of every layer, and runs in this process)."""
    name, number = arn.split(":")[-2:]
    content = infra.client("lambda").get_layer_version(LayerName=name, VersionNumber=int(number))["Content"]
    if str(content.get("Location", "")).startswith(("https://", "http://")):
        with urllib.request.urlopen(content["Location"], timeout=30) as response:
            return bytes(response.read())
    for _, _, data in object_versions(infra, bucket) if bucket else []:
        if base64.b64encode(hashlib.sha256(data).digest()).decode() == content["CodeSha256"]:
            return data
    from moto.awslambda.models import lambda_backends

    stored = lambda_backends[ACCOUNT][REGION].layers_versions_by_arn(arn)
    assert stored is not None, arn
    return bytes(stored.code_bytes)


def dist_infos(archive: bytes) -> set[str]:
    """The distributions a layer zip holds: the names of its python/*.dist-info directories."""
    with zipfile.ZipFile(io.BytesIO(archive)) as opened:
        names = [name.split("/") for name in opened.namelist()]
    return {parts[1] for parts in names if len(parts) > 2 and parts[0] == "python" and parts[1].endswith(".dist-info")}


PUBLISH_LAYER_VERSION = re.compile(r"^/\d{4}-\d{2}-\d{2}/layers/[^/]+/versions/?$")


@dataclass
class PublishRefused(CountingServer):
    """The moto server behind a proxy that answers every PublishLayerVersion as Lambda does when the account's
    code storage is full (HTTP 400 CodeStorageExceededException: no retry helps); everything else is relayed."""

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if method == "POST" and PUBLISH_LAYER_VERSION.match(urllib.parse.urlsplit(path).path):
            answer = json.dumps({"Type": "User", "message": "Code storage limit exceeded."}).encode()
            headers_out = [("x-amzn-ErrorType", "CodeStorageExceededException"), ("Content-Type", "application/json")]
            return 400, [*headers_out, ("Content-Length", str(len(answer)))], answer
        return super()._forward(method, path, headers, body)


@contextmanager
def refusing_publish(upstream: str) -> Iterator[PublishRefused]:
    server = PublishRefused(upstream).start()
    try:
        yield server
    finally:
        server.stop()


# -- 1. a failed shared install --------------------------------------------------------------------


def test_a_failed_install_fails_every_stage_that_shares_it_before_any_write(pipeline: Pipeline, offline: Path) -> None:
    """Stages a and b install the same --requirements. When that install fails, the run fails and neither function
    is written: not its code, layers or tags. The install path still holds the previous install, and b must not
    deploy it beside the new code."""
    pipeline.functions("fn-a", "fn-b")
    pipeline.settings({"a": code_stage("fn-a"), "b": code_stage("fn-b")})
    pipeline.write("src/app.py", HANDLER.format(value=1))
    pipeline.write("requirements.txt", "purelib==1.0\n")
    command = ("--json", "--install-path", "build", "--requirements", "requirements.txt", "a", "b")
    deployed = pipeline.drover(*command)
    assert deployed.code == 0, deployed.stderr
    assert list((pipeline.root / "build").rglob("purelib-1.0.dist-info")), "the earlier install is in the install path"
    before = pipeline.lives("fn-a", "fn-b")

    pipeline.write("src/app.py", HANDLER.format(value=2))  # one commit changes the code...
    pipeline.write("requirements.txt", "no-such-package==1.0\n")  # ...and adds a dependency that cannot install
    failed = pipeline.drover(*command)

    assert failed.code != 0, failed.stdout + failed.stderr
    assert pipeline.lives("fn-a", "fn-b") == before, failed.stdout + failed.stderr


# -- 2. a failed layer publish ---------------------------------------------------------------------


def test_no_function_gets_new_code_when_the_layer_it_must_attach_was_not_published(
    pipeline: Pipeline, aws: MotoServer
) -> None:
    """Stages a and b need the same new requirements layer version (one layer name, the same requirements). Lambda
    refuses the publish (CodeStorageExceededException, answered by a proxy in front of the moto server): the run
    exits 1 and neither function runs the new code, since its dependencies never reached Lambda."""
    pipeline.functions("fn-a", "fn-b")
    pipeline.settings(
        {
            "a": tree_stage("fn-a", requirements_layer_name="deps"),
            "b": tree_stage("fn-b", requirements_layer_name="deps"),
        }
    )
    pipeline.write("build/app.py", HANDLER.format(value=1))
    pipeline.write("build/lib/shared.py", "VALUE = 1\n")
    command = ("--json", "--install-path", "build", "a", "b")
    deployed = pipeline.drover(*command)
    assert deployed.code == 0, deployed.stderr
    before = pipeline.lives("fn-a", "fn-b")
    versions = pipeline.infra.layer_versions("deps")

    pipeline.write("build/app.py", HANDLER.format(value=2))  # new code that needs...
    pipeline.write("build/lib/shared.py", "VALUE = 2\n")  # ...new requirements
    with refusing_publish(aws.endpoint) as proxy:
        failed = pipeline.drover(*command, endpoint=proxy.endpoint)

    assert any(PUBLISH_LAYER_VERSION.match(request.split()[1]) for request in proxy.writes), proxy.requests
    assert failed.code == 1, failed.stdout + failed.stderr
    after = pipeline.lives("fn-a", "fn-b")
    assert {name: live.code_sha256 for name, live in after.items()} == {
        name: live.code_sha256 for name, live in before.items()
    }, failed.stdout
    assert {name: live.layers for name, live in after.items()} == {name: live.layers for name, live in before.items()}
    assert pipeline.infra.layer_versions("deps") == versions


# -- 3. the cold-runner skip, several stages -------------------------------------------------------


def test_a_cold_runner_deploying_several_stages_with_an_unchanged_exact_lock_installs_nothing_and_changes_nothing(
    pipeline: Pipeline, offline: Path
) -> None:
    """After `drover a b` with a hash-pinned lock, the same run from a fresh install path (a new CI job) finds the
    lock's dependency key on the attached layers: no stage installs its dependencies, nothing is written, exit 0."""
    pipeline.functions("fn-a", "fn-b")
    pipeline.settings({"a": code_stage("fn-a"), "b": code_stage("fn-b")})
    pipeline.write("src/app.py", HANDLER.format(value=1))
    pipeline.write("requirements.txt", pinned(offline, "purelib", "1.0") + "\n")
    deployed = pipeline.drover("--json", "--install-path", "build", "--requirements", "requirements.txt", "a", "b")
    assert deployed.code == 0, deployed.stderr
    before = pipeline.lives("fn-a", "fn-b")

    cold = pipeline.drover("--json", "--install-path", "cold", "--requirements", "requirements.txt", "a", "b")

    assert cold.code == 0, cold.stderr
    for stage in ("a", "b"):
        install = cold.entry(stage)["install"]
        assert install is not None and install["skipped"] is True, (stage, install)
    assert cold.result["totals"]["changed"] == 0, cold.result
    assert not list((pipeline.root / "cold").rglob("purelib-*.dist-info")), "the dependencies were installed"
    assert pipeline.lives("fn-a", "fn-b") == before


# -- 4. one PUT per digest -------------------------------------------------------------------------


def test_stages_deploying_the_same_archive_put_it_once_into_a_versioned_upload_bucket(pipeline: Pipeline) -> None:
    """Four stages package the same tree with the same patterns, through one versioned upload bucket: after one
    run the bucket holds one object version per distinct archive (no key written twice, no content stored
    twice), and the four functions run the same CodeSha256."""
    pipeline.infra.bucket("artifacts", versioned=True)
    bucket = {"region_name": REGION, "bucket_name": "artifacts"}
    stages = {f"s{index}": tree_stage(f"fn{index}", upload_bucket=bucket) for index in range(4)}
    pipeline.settings(stages)
    pipeline.functions(*(stage["function_name"] for stage in stages.values()))
    pipeline.write("build/app.py", HANDLER.format(value=1))
    pipeline.write("build/lib/shared.py", "VALUE = 1\n")

    run = pipeline.drover("--json", "--install-path", "build", *stages)

    assert run.code == 0, run.stderr
    versions = object_versions(pipeline.infra, "artifacts")
    assert versions, "nothing was uploaded to the bucket"
    per_key = Counter(key for key, _, _ in versions)
    assert [key for key, count in per_key.items() if count > 1] == [], per_key
    contents = Counter(hashlib.sha256(data).hexdigest() for _, _, data in versions)
    assert len(versions) == len(contents), f"{len(versions)} object versions for {len(contents)} distinct archives"
    digests = {
        entry[kind] for entry in run.result["results"] for kind in ("function_digest", "requirements_digest")
    } - {None}
    assert len(contents) <= len(digests)
    assert len({pipeline.live(stage["function_name"]).code_sha256 for stage in stages.values()}) == 1


# -- 5. per-stage requirements ---------------------------------------------------------------------


def test_each_stage_installs_the_requirements_its_settings_name_into_its_own_layer(
    pipeline: Pipeline, offline: Path
) -> None:
    """drover.yml may name a stage's `requirements` (relative to the settings file's directory). Two stages with
    different requirements, one run without --requirements: each function's layer holds exactly its own set,
    and a rerun changes nothing."""
    pipeline.functions("fn-a", "fn-b")
    pipeline.infra.bucket("artifacts")
    bucket = {"region_name": REGION, "bucket_name": "artifacts"}
    src = str(pipeline.root / "src")  # absolute: only requirements and install_source are read from deploy/
    pipeline.write("deploy/requirements-a.txt", "purelib==1.0\n")
    pipeline.write("deploy/requirements-b.txt", "extra==1.0\n")
    settings = pipeline.settings(
        {
            "a": code_stage(
                "fn-a", requirements="requirements-a.txt", upload_bucket=bucket, function_extra_paths=[src]
            ),
            "b": code_stage(
                "fn-b", requirements="requirements-b.txt", upload_bucket=bucket, function_extra_paths=[src]
            ),
        },
        name="deploy/drover.yml",
    )
    pipeline.write("src/app.py", HANDLER.format(value=1))
    command = ("--json", "--settings-file", settings.relative_to(pipeline.root), "--install-path", "build", "a", "b")

    run = pipeline.drover(*command)

    assert run.code == 0, run.stdout + run.stderr
    for function, expected in (("fn-a", {"purelib-1.0.dist-info"}), ("fn-b", {"extra-1.0.dist-info"})):
        [layer] = pipeline.live(function).layers
        assert dist_infos(layer_zip(pipeline.infra, layer, "artifacts")) == expected, function
    before = pipeline.lives("fn-a", "fn-b")
    rerun = pipeline.drover(*command)
    assert rerun.code == 0, rerun.stderr
    assert rerun.result["totals"]["changed"] == 0, rerun.result
    assert pipeline.lives("fn-a", "fn-b") == before


# -- 6. one --requirements -------------------------------------------------------------------------


def test_requirements_given_twice_is_refused_before_any_aws_call(
    pipeline: Pipeline, offline: Path, aws: MotoServer
) -> None:
    """`--requirements x.txt --requirements y.txt` is not "the last one wins": exit 2, one line on stderr naming
    --requirements and saying it was given twice, no traceback, no AWS write."""
    pipeline.functions("fn")
    pipeline.settings({"dev": code_stage("fn")})
    pipeline.write("src/app.py", HANDLER.format(value=1))
    pipeline.write("x.txt", "purelib==1.0\n")
    pipeline.write("y.txt", "extra==1.0\n")
    before = pipeline.live("fn")

    with counting_server(upstream=aws.endpoint) as proxy:
        run = pipeline.drover(
            "--install-path",
            "build",
            "--requirements",
            "x.txt",
            "--requirements",
            "y.txt",
            "dev",
            endpoint=proxy.endpoint,
        )

    assert run.code == 2, run.stdout + run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "--requirements" in lines[0] and "twice" in lines[0], lines[0]
    assert "Traceback" not in run.stderr
    assert proxy.writes == []
    assert pipeline.live("fn") == before


# -- 7. an install path records what it holds ------------------------------------------------------


def test_a_plain_rerun_on_an_install_path_that_kept_the_layer_keeps_it_attached_and_says_so(
    pipeline: Pipeline, offline: Path
) -> None:
    """Run 1 deploys a uv project with its lock (the layer is published). Run 2, a fresh build/lambda with the same
    lock: the dependency key matches, only the project is installed. Run 3 is the README's plain rerun,
    `drover --install-path build/lambda dev`: the install path holds no dependencies, because the layer holds them;
    the function keeps that layer, and the output names it. A live layer is never detached silently."""
    pipeline.functions("orders")
    pipeline.settings({"dev": {**BASE, "function_name": "orders"}})
    source = write_project(pipeline.root / "app", dependencies=["purelib"])
    write_uv_lock(source, offline / "purelib-1.0-py3-none-any.whl")
    install = ("--install-path", "build/lambda")
    first = pipeline.drover("--json", *install, "--install-source", "app", "dev")
    assert first.code == 0, first.stderr
    assert first.result["requirements_layer_arn"]

    shutil.rmtree(pipeline.root / "build")
    second = pipeline.drover("--json", *install, "--install-source", "app", "dev")
    assert second.code == 0, second.stderr
    summary = second.result["install"]
    assert summary["skipped"] or "dependency key" in (summary["skip_reason"] or ""), summary
    assert not list((pipeline.root / "build").rglob("purelib-*.dist-info")), "only the project is installed"
    before = pipeline.live("orders")
    [layer] = before.layers

    third = pipeline.drover("--json", *install, "dev")

    assert third.code == 0, third.stdout + third.stderr
    assert pipeline.live("orders").layers == before.layers, third.stderr
    said = json.dumps(third.result.get("warnings")) + json.dumps(third.result.get("install")) + third.stderr
    assert layer in said, "the run kept the layer without saying so"


# -- 8. changed means written ----------------------------------------------------------------------


def test_changed_is_true_only_when_the_run_wrote_something(pipeline: Pipeline, offline: Path) -> None:
    """With an exact lock, `drover a b` and `drover a` alternate with nothing changed in between: after the first
    deploy every run reports changed false (totals.changed 0 for several stages), and the functions' tags and
    RevisionId stay as they were."""
    pipeline.functions("fn-a", "fn-b")
    pipeline.settings({"a": code_stage("fn-a"), "b": code_stage("fn-b")})
    pipeline.write("src/app.py", HANDLER.format(value=1))
    pipeline.write("requirements.txt", pinned(offline, "purelib", "1.0") + "\n")
    command = ("--json", "--install-path", "build", "--requirements", "requirements.txt")
    deployed = pipeline.drover(*command, "a", "b")
    assert deployed.code == 0, deployed.stderr
    assert deployed.result["totals"]["changed"] == 2
    before = pipeline.lives("fn-a", "fn-b")

    for round in range(2):
        alone = pipeline.drover(*command, "a")
        assert alone.code == 0, alone.stderr
        assert alone.result["changed"] is False, (round, alone.result["actions"])
        assert pipeline.lives("fn-a", "fn-b") == before, (round, "drover a")
        together = pipeline.drover(*command, "a", "b")
        assert together.code == 0, together.stderr
        assert together.result["totals"]["changed"] == 0, (
            round,
            [entry["actions"] for entry in together.result["results"]],
        )
        assert pipeline.lives("fn-a", "fn-b") == before, (round, "drover a b")


# -- 9. stage names are not paths ------------------------------------------------------------------

TWO_STAGES = """\
stages:
  "{first}":
    region_name: us-east-1
    function_name: fn-first
    compatible_runtime: python3.12
    function_file_patterns: ["^app"]{extra}
  "b":
    region_name: us-east-1
    function_name: fn-b
    compatible_runtime: python3.12
    function_file_patterns: ["^app"]{extra}
"""


def package_two_stages(
    pipeline: Pipeline, first: str = "../x", extra: str = ""
) -> tuple[Run, dict[str, str], dict[str, str]]:
    """`drover --package-only --archive-dir build/dist FIRST b` over the install path build: (run, files before, after)."""
    pipeline.write("drover.yml", TWO_STAGES.format(first=first, extra=extra))
    pipeline.write("build/app.py", HANDLER.format(value=1))
    pipeline.write("build/lib/shared.py", "VALUE = 1\n")
    before = files_of(pipeline.root)
    command = ("--json", "--install-path", "build", "--package-only", "--archive-dir", "build/dist", first, "b")
    run = pipeline.drover(*command)
    return run, before, files_of(pipeline.root)


@pytest.mark.parametrize("first", ["../x", "a"])
def test_a_stage_name_never_places_an_archive_outside_the_archive_dir_nor_into_another_archive(
    pipeline: Pipeline, first: str
) -> None:
    """Stages `../x` (or plain `a`) and `b`, --package-only with --archive-dir inside the install path: every file
    the run writes is inside the archive dir, and no archive holds another (b's walk of the install path never
    meets what the first stage wrote)."""
    run, before, after = package_two_stages(pipeline, first)

    assert run.code == 0, run.stdout + run.stderr
    written = sorted(path for path, digest in after.items() if before.get(path) != digest)
    assert [path for path in written if not path.startswith("build/dist/")] == []
    assert sorted(set(before) - set(after)) == []
    dist = (pipeline.root / "build" / "dist").resolve()
    named = [
        (pipeline.root / entry[kind]).resolve()
        for entry in run.result["results"]
        for kind in ("function_archive", "requirements_archive")
        if entry.get(kind)
    ]
    assert named and all(path.is_file() and path.is_relative_to(dist) for path in named), named
    assert run.entry("b")["function_archive"]
    for archive in sorted(dist.rglob("*.zip")):
        with zipfile.ZipFile(archive) as opened:
            assert [name for name in opened.namelist() if name.endswith(".zip")] == [], archive.relative_to(dist)


def test_a_stage_name_never_overwrites_the_file_its_path_would_reach(pipeline: Pipeline) -> None:
    """Files already at build/x/ (where `build/dist/../x` would put stage `../x`'s archives; excluded from the
    package) are left exactly as they were, and nothing is written outside the archive dir."""
    for name in ("function.zip", "requirements.zip"):
        pipeline.write(f"build/x/{name}", f"the user's own {name}, not drover's\n")

    run, before, after = package_two_stages(pipeline, extra='\n    package_exclude_patterns: ["^x/"]')

    assert run.code == 0, run.stdout + run.stderr
    assert {path: after.get(path) for path in before if path.startswith("build/x/")} == {
        path: digest for path, digest in before.items() if path.startswith("build/x/")
    }
    written = sorted(path for path, digest in after.items() if before.get(path) != digest)
    assert [path for path in written if not path.startswith("build/dist/")] == []


# -- 10. one stage alone or among others -----------------------------------------------------------


@pytest.mark.parametrize(
    "state", ["new functions", "code changed", "requirements changed", "an old layer version to prune"]
)
def test_a_stage_plans_the_same_actions_alone_and_in_a_multi_stage_run(pipeline: Pipeline, state: str) -> None:
    """On the same live state, `drover --dry-run a` and the entry for a in `drover --dry-run a b` list the same
    actions (kinds and targets, in order). a and b share one requirements layer name."""
    extra: dict[str, Any] = {"requirements_layer_name": "deps"}
    if state == "an old layer version to prune":
        extra["keep_layer_versions"] = 1
        pipeline.infra.layer("deps")
    pipeline.settings({"a": tree_stage("fn-a", **extra), "b": tree_stage("fn-b", **extra)})
    pipeline.functions("fn-a", "fn-b")
    pipeline.write("build/app.py", HANDLER.format(value=1))
    pipeline.write("build/lib/shared.py", "VALUE = 1\n")
    if state in ("code changed", "requirements changed"):
        deployed = pipeline.drover("--json", "--install-path", "build", "a", "b")
        assert deployed.code == 0, deployed.stderr
        pipeline.write("build/app.py" if state == "code changed" else "build/lib/shared.py", "VALUE = 2\n")

    alone = pipeline.drover("--json", "--dry-run", "--install-path", "build", "a")
    together = pipeline.drover("--json", "--dry-run", "--install-path", "build", "a", "b")

    assert alone.code == 0 and together.code == 0, alone.stderr + together.stderr
    assert steps(alone.result), "the state has something to do"
    assert steps(together.entry("a")) == steps(alone.result)


def test_a_shared_upload_settles_for_every_waiter_on_failure_and_a_later_stage_tries_again() -> None:
    """Stages that need the same S3 object share one PUT; a failed PUT never leaves a waiter blocked."""
    import threading

    from drover.workflow import Uploads

    uploads = Uploads()
    where = ("us-east-1", "bucket", "digest.zip")
    started, release = threading.Event(), threading.Event()
    outcomes: list[str] = []

    def failing() -> Any:
        started.set()
        release.wait(10)
        raise RuntimeError("PutObject failed")

    def first() -> None:
        try:
            uploads.put(where, failing)
        except RuntimeError as error:
            outcomes.append(f"first: {error}")

    def waiter() -> None:
        try:
            uploads.put(where, lambda: (_ for _ in ()).throw(AssertionError("a waiter must not upload")))
        except RuntimeError as error:
            outcomes.append(f"waiter: {error}")

    one = threading.Thread(target=first)
    one.start()
    assert started.wait(10)
    two = threading.Thread(target=waiter)
    two.start()
    pending = uploads._objects[where]
    deadline = time.monotonic() + 10
    while not pending._condition._waiters and time.monotonic() < deadline:  # type: ignore[attr-defined]  # it waits
        time.sleep(0.005)
    release.set()
    one.join(10)
    two.join(10)
    assert sorted(outcomes) == ["first: PutObject failed", "waiter: PutObject failed"]
    uploaded = uploads.put(where, lambda: ("object", True, None))  # type: ignore[arg-type,return-value]
    assert uploaded == ("object", True, None)
    assert uploads.put(where, lambda: ("other", True, None)) == ("object", False, None)  # type: ignore[arg-type,return-value]


# -- 10. a dry run never replaces the install path, and says when nothing would change -------------------------


def test_a_dry_run_installs_beside_the_install_path_and_leaves_it_as_it_was(pipeline: Pipeline, offline: Path) -> None:
    """`--dry-run --requirements` on an install path holding another install: the report is the one a deploy
    would act on, the install path keeps every byte it had, and no scratch directory is left behind."""
    pipeline.functions("fn-a")
    pipeline.settings({"a": code_stage("fn-a")})
    pipeline.write("src/app.py", HANDLER.format(value=1))
    pipeline.write("requirements.txt", pinned(offline, "purelib", "1.0") + "\n")
    pipeline.write("build/leftover.py", "from an earlier install\n")
    before = files_of(pipeline.root)

    dry = pipeline.drover("--json", "--dry-run", "--install-path", "build", "--requirements", "requirements.txt", "a")

    assert dry.code == 0, dry.stderr
    assert dry.result["requirements_file_count"] > 0 and "publish-layer" in dict(steps(dry.result))
    assert files_of(pipeline.root) == before
    assert [path.name for path in pipeline.root.iterdir() if "dry-run" in path.name] == []


def test_a_dry_run_with_nothing_to_do_ends_with_no_changes(pipeline: Pipeline, offline: Path) -> None:
    pipeline.functions("fn-a", "fn-b")
    pipeline.settings({"a": code_stage("fn-a"), "b": code_stage("fn-b")})
    pipeline.write("src/app.py", HANDLER.format(value=1))
    pipeline.write("requirements.txt", pinned(offline, "purelib", "1.0") + "\n")
    command = ("--install-path", "build", "--requirements", "requirements.txt")
    assert pipeline.drover(*command, "a", "b").code == 0

    one, several = pipeline.drover("--dry-run", *command, "a"), pipeline.drover("--dry-run", *command, "a", "b")
    pipeline.write("src/app.py", HANDLER.format(value=2))
    changed = pipeline.drover("--dry-run", *command, "a")

    assert (one.code, several.code, changed.code) == (0, 0, 0), one.stderr + several.stderr + changed.stderr
    assert one.stdout.splitlines()[-1] == "no changes"
    assert several.stdout.splitlines()[-1] == "no changes"
    assert "no changes" not in changed.stdout


# -- the install's project walk never reads this run's outputs --------------------------------------------


def test_a_project_at_the_root_rebuilt_with_its_archives_and_stage_installs_inside_is_an_unchanged_install(
    pipeline: Pipeline, offline: Path
) -> None:
    """`--install-source . --install-path lambda --archive-dir artifacts` over two stages (b with its own
    requirements, installed beside lambda): the archives (named by digest) and the installs lie inside the
    project. The walk that keys and copies the project skips them by identity, so a rerun installs nothing."""
    write_project(pipeline.root, dependencies=["purelib"])
    pipeline.write("extra.txt", "extra\n")
    stage = {**BASE, "function_file_patterns": ["^app"]}
    pipeline.settings(
        {
            "a": {**stage, "function_name": "fa"},
            "b": {**stage, "function_name": "fb", "install_source": ".", "requirements": "extra.txt"},
        }
    )
    command = (
        "--json",
        "--package-only",
        "--install-source",
        ".",
        "--install-path",
        "lambda",
        "--archive-dir",
        "artifacts",
        "a",
        "b",
    )
    first = pipeline.drover(*command)
    assert first.code == 0, first.stderr
    assert [path.name for path in (pipeline.root / "artifacts").glob("function-*.zip")], "archives named by digest"

    second = pipeline.drover(*command)

    assert second.code == 0, second.stderr
    assert [second.entry(name)["install"]["skipped"] for name in ("a", "b")] == [True, True], second.stderr
