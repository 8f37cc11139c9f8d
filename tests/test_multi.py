"""Several stages in one run, against the moto server: shared packaging and layers, failures, overrides, matrix convergence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover.core import RunOptions
from drover.deploy import LAYER_DESCRIPTION_PREFIX
from drover.models import DeployResult, MultiResult, StageFailure
from drover.report import render_multi_summary, render_multi_text
from drover.service import Run, RunRequest
from drover.settings import load_settings
from tests.aws import REGION, CallRecorder, Infrastructure, MotoServer, recording_clients
from tests.github_fakes import run_action_process

GROUPS = ("app_a", "app_b", "app_c")


def write_tree(root: Path) -> Path:
    install = root / "install"
    for name in GROUPS:
        (install / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
        (install / f"{name}.py").write_text(f"def handler(event, context):\n    return {name!r}\n")
    (install / "lib").mkdir()
    (install / "lib" / "shared.py").write_text("VALUE = 1\n")
    return install


def ten_stages() -> dict[str, dict[str, Any]]:
    """Stage i packages app_{a,b,c} (i % 3): three requirement sets; layers 'reqs-one' (i < 6) and 'reqs-two'."""
    return {
        f"s{index}": {
            "region_name": REGION,
            "function_name": f"fn{index}",
            "compatible_runtime": "python3.12",
            "function_file_patterns": [f"^{GROUPS[index % 3]}"],
            "requirements_layer_name": "reqs-one" if index < 6 else "reqs-two",
        }
        for index in range(10)
    }


def write_settings(root: Path, stages: dict[str, dict[str, Any]]) -> Path:
    path = root / "drover.yml"
    path.write_text(yaml.safe_dump({"stages": stages}))
    return path


def run_stages(root: Path, names: list[str], recorder: CallRecorder, **options: Any) -> MultiResult:
    recorder.clear()
    run_options = RunOptions(working_directory=root, aws=recording_clients(recorder), **options)
    return run_several(root / "drover.yml", names, run_options, root / "install")


def run_several(settings_file: Path, names: list[str], options: RunOptions, install_path: Path) -> MultiResult:
    """The service both adapters call, for several stages."""
    result = Run(RunRequest(settings_file, tuple(names), install_path, options)).execute()
    assert isinstance(result, MultiResult)
    return result


def digests_by_layer(infra: Infrastructure, name: str) -> Counter[str]:
    return Counter(version["Description"] for version in infra.layer_versions(name))


def test_ten_stages_publish_one_layer_version_per_name_and_digest_and_a_rerun_does_nothing(
    tmp_path: Path, infra: Infrastructure
) -> None:
    write_tree(tmp_path)
    stages = ten_stages()
    write_settings(tmp_path, stages)
    for stage in stages.values():
        infra.function(stage["function_name"])
    recorder = CallRecorder()

    result = run_stages(tmp_path, list(stages), recorder, archive_dir=tmp_path / "dist")

    assert result.failed == [] and result.succeeded == list(stages)
    # one archive per distinct digest: 3 requirement sets, 3 function packages, whatever the layer names
    assert len(list((tmp_path / "dist").glob("requirements-*.zip"))) == 3
    assert len(list((tmp_path / "dist").glob("function-*.zip"))) == 3
    results = [entry for entry in result.results if isinstance(entry, DeployResult)]
    assert len({entry.requirements_digest for entry in results}) == 3
    for name in ("reqs-one", "reqs-two"):
        counts = digests_by_layer(infra, name)
        assert len(counts) == 3 and set(counts.values()) == {1}, counts  # one version per (name, digest)
    assert recorder.count()["PublishLayerVersion"] == 6
    assert result.totals.layer_versions_published == 6
    for entry in results:
        live = infra.configuration(entry.function_name)
        assert live["CodeSha256"] == entry.code_sha256
        [layer] = live["Layers"]
        assert layer["Arn"] == entry.requirements_layer_arn
        layer_name, version = layer["Arn"].split(":")[-2:]
        assert layer_name == stages[entry.stage]["requirements_layer_name"]
        published = infra.client("lambda").get_layer_version(LayerName=layer_name, VersionNumber=int(version))
        assert published["Description"] == LAYER_DESCRIPTION_PREFIX + str(entry.requirements_digest)

    rerun = run_stages(tmp_path, list(stages), recorder)

    assert rerun.failed == [] and recorder.writes == []
    assert rerun.totals.changed == 0 and all(not entry.actions for entry in rerun.results)


def test_one_failing_stage_does_not_stop_the_others(tmp_path: Path, infra: Infrastructure) -> None:
    write_tree(tmp_path)
    stages = dict(list(ten_stages().items())[:3])
    stages["s1"]["function_name"] = "missing"
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn2")

    result = run_stages(tmp_path, list(stages), CallRecorder())

    assert result.succeeded == ["s0", "s2"] and result.failed == ["s1"]
    failure = result.results[1]
    assert isinstance(failure, StageFailure)
    assert "function missing not found" in failure.error and failure.exit_code == 1
    assert result.exit_code == 1
    assert infra.configuration("fn0")["Layers"] and infra.configuration("fn2")["Layers"]
    text = render_multi_text(result)
    assert "s1: FAILED" in text and "2 succeeded (s0, s2), 1 failed (s1)" in text
    summary = render_multi_summary(result)
    assert summary.count("\n| s") == 3 and "| failed |" in summary


def test_a_shared_layer_whose_publisher_fails_fails_the_stages_waiting_for_it(
    tmp_path: Path, infra: Infrastructure
) -> None:
    write_tree(tmp_path)
    stages = {name: {**stage, "requirements_layer_name": "reqs-one"} for name, stage in ten_stages().items()}
    stages = {"s0": stages["s0"], "s3": stages["s3"]}  # the same requirements, the same layer name
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn3")
    recorder = CallRecorder()
    clients = recording_clients(recorder)
    from tests.aws import inject_error

    inject_error(clients, "lambda", "PublishLayerVersion", "ServiceException", "boom", 500)
    options = RunOptions(working_directory=tmp_path, aws=clients)

    result = run_several(tmp_path / "drover.yml", list(stages), options, tmp_path / "install")

    assert result.failed == ["s0", "s3"]
    assert recorder.count()["PublishLayerVersion"] >= 1
    assert all(name != "UpdateFunctionConfiguration" for name in recorder.calls)


def test_a_stage_that_failed_after_writing_counts_as_changed(tmp_path: Path, infra: Infrastructure) -> None:
    """Published a layer and updated the code, then failed: the run changed AWS, and its totals (and the
    Action's changed output) must say so."""
    from drover.github import multi_outputs_of
    from tests.aws import inject_error

    write_tree(tmp_path)
    stages = {name: stage for name, stage in ten_stages().items() if name in {"s0", "s6"}}
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn6")
    recorder = CallRecorder()
    clients = recording_clients(recorder)
    inject_error(clients, "lambda", "TagResource", "ServiceException", "boom", 500)
    options = RunOptions(working_directory=tmp_path, aws=clients)

    result = run_several(tmp_path / "drover.yml", list(stages), options, tmp_path / "install")

    assert result.failed == ["s0", "s6"]
    assert all(isinstance(entry, StageFailure) and entry.actions for entry in result.results)
    assert result.totals.changed == 2 and result.totals.bytes_uploaded > 0  # the uploads happened
    outputs = multi_outputs_of(result)
    assert outputs["changed"] == "true" and outputs["function-updated"] == "true"
    assert outputs["requirements-updated"] == "true" and outputs["version-published"] == "false"
    rows = [line for line in render_multi_summary(result).splitlines() if line.startswith("| s")]
    assert all("update-code done" in row and "publish-layer done" in row for row in rows), rows


def test_a_dry_run_of_stages_sharing_a_layer_plans_one_publish_and_writes_nothing(
    tmp_path: Path, infra: Infrastructure
) -> None:
    write_tree(tmp_path)
    stages = {name: stage for name, stage in ten_stages().items() if name in {"s0", "s3"}}
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn3")
    recorder = CallRecorder()

    result = run_stages(tmp_path, list(stages), recorder, dry_run=True)

    actions = [action.action for entry in result.results for action in entry.actions]
    assert actions.count("publish-layer") == 1 and actions.count("update-layers") == 2
    assert recorder.writes == []
    assert render_multi_text(result).endswith(
        "2 stages: 2 succeeded (s0, s3), 0 failed (none); nothing written; 2 would change (s0, s3) in "
        f"{result.totals.seconds:.1f} s"
    )
    deployed = run_stages(tmp_path, list(stages), recorder)
    assert [action.action for entry in deployed.results for action in entry.actions] == actions


def test_a_dry_run_of_stages_sharing_a_layer_with_keep_layer_versions_lists_the_deploys_steps(
    tmp_path: Path, infra: Infrastructure
) -> None:
    """One stage at a time (max_workers=1): the second finds the version the first just published; it must
    still plan what the dry run said (no prune of its own: the publishing stage prunes)."""
    write_tree(tmp_path)
    stages = {name: {**stage, "keep_layer_versions": 1} for name, stage in ten_stages().items() if name in {"s0", "s3"}}
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn3")
    infra.layer("reqs-one")  # an older version, unattached: the publishing stage's prune deletes it
    recorder = CallRecorder()

    def run(dry_run: bool) -> MultiResult:
        options = RunOptions(working_directory=tmp_path, aws=recording_clients(recorder), dry_run=dry_run)
        return run_several(tmp_path / "drover.yml", list(stages), options, tmp_path / "install")

    planned = run(dry_run=True)
    deployed = run(dry_run=False)
    steps = [[(action.action, action.target) for action in entry.actions] for entry in planned.results]
    assert [[(action.action, action.target) for action in entry.actions] for entry in deployed.results] == steps


def drover_cli(
    *args: str | Path, cwd: Path, server: MotoServer, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    env.pop("AWS_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "drover", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_the_cli_prints_one_result_per_stage_and_keeps_the_single_stage_shape(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    write_tree(tmp_path)
    stages = {name: stage for name, stage in ten_stages().items() if name in {"s0", "s1"}}
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn1")

    several = drover_cli("--json", "--install-path", "install", "s0", "s1", cwd=tmp_path, server=aws)
    single = drover_cli("--json", "--install-path", "install", "s0", cwd=tmp_path, server=aws)

    assert several.returncode == 0, several.stderr
    document = json.loads(several.stdout)
    assert [entry["stage"] for entry in document["results"]] == ["s0", "s1"]
    assert document["totals"]["succeeded"] == 2 and document["succeeded"] == ["s0", "s1"]
    assert "[s0]" in several.stderr and "[s1]" in several.stderr  # log lines name their stage
    assert single.returncode == 0, single.stderr
    alone = json.loads(single.stdout)
    assert "results" not in alone and alone["stage"] == "s0" and alone["changed"] is False
    assert set(alone) == set(document["results"][0])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--function-name", "other", "s0", "s1"], "cannot be used with several stages"),
        (["--function-name", "bad name!", "s0"], "--function-name (function-name) 'bad name!'"),
        (["--region", "mars", "s0"], "--region (region) 'mars'"),
        (["s0", "s0"], "stage s0 is given twice"),
        (["--promote-from", "s0", "s1", "s0"], "exactly one target STAGE"),
        (["s0", "nope"], "nope"),
    ],
)
def test_bad_stage_arguments_are_one_line_and_exit_2_before_aws(
    tmp_path: Path, args: list[str], expected: str, aws: MotoServer
) -> None:
    write_tree(tmp_path)
    write_settings(tmp_path, {name: stage for name, stage in ten_stages().items() if name in {"s0", "s1"}})

    result = drover_cli("--install-path", "install", *args, cwd=tmp_path, server=aws)

    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("drover: error: ") and expected in line


def test_function_name_and_region_overrides_deploy_a_preview_function(tmp_path: Path, infra: Infrastructure) -> None:
    write_tree(tmp_path)
    write_settings(tmp_path, {"s0": ten_stages()["s0"]})
    eu = Infrastructure()
    eu.session = eu.session  # same moto server, another region
    client = eu.session.client("lambda", region_name="eu-west-1")
    role = infra.role("preview-role")
    from tests.aws import zip_bytes

    client.create_function(
        FunctionName="fn0-pr-7",
        Runtime="python3.12",
        Role=role,
        Handler="app_a.handler",
        Code={"ZipFile": zip_bytes({"x.py": "x = 1\n"})},
    )
    recorder = CallRecorder()
    options = RunOptions(
        working_directory=tmp_path, aws=recording_clients(recorder), function_name="fn0-pr-7", region_name="eu-west-1"
    )
    from drover import Drover

    result = Drover(load_settings(tmp_path / "drover.yml"), "s0", options=options).update(tmp_path / "install")

    assert result.function_name == "fn0-pr-7" and result.region_name == "eu-west-1"
    live = client.get_function(FunctionName="fn0-pr-7")["Configuration"]
    assert live["CodeSha256"] == result.code_sha256 and ":eu-west-1:" in live["Layers"][0]["Arn"]


def test_a_region_override_is_validated_with_the_whole_stage(tmp_path: Path) -> None:
    stage = {**ten_stages()["s0"], "upload_bucket": {"region_name": REGION, "bucket_name": "artifacts"}}
    write_settings(tmp_path, {"s0": stage})
    from drover import Drover
    from drover.errors import SettingsError

    with pytest.raises(SettingsError, match=r"upload_bucket artifacts is in region us-east-1.*eu-west-1"):
        Drover(load_settings(tmp_path / "drover.yml"), "s0", options=RunOptions(region_name="eu-west-1"))


class PublishGate:
    """A forwarding proxy in front of moto that holds every PublishLayerVersion until all publishers have sent one.

    Without it the first job usually publishes before the others look, and they simply find its version;
    with it every job decides to publish, the race a matrix can hit, and convergence must resolve it.
    """

    def __init__(self, upstream: str, publishers: int, patience: float = 20.0) -> None:
        import http.client
        import re
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlsplit

        target = urlsplit(upstream)
        released = threading.Event()
        count = [0]
        lock = threading.Lock()
        publish = re.compile(r"^/[^/]+/layers/[^/]+/versions/?$")

        class Forward(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.forward()

            do_POST = do_PUT = do_DELETE = do_HEAD = do_GET

            def forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.command == "POST" and publish.match(self.path.split("?")[0]):
                    with lock:
                        count[0] += 1
                        if count[0] >= publishers:
                            released.set()
                    released.wait(patience)
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {key: value for key, value in self.headers.items() if key.lower() != "host"}
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                connection.close()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_eight_concurrent_processes_deploying_twenty_functions_converge_on_one_layer_version(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    """A matrix of 8 jobs (real CLI processes), each deploying some of 20 functions that share one layer."""
    write_tree(tmp_path)
    stages = {
        f"m{index}": {
            "region_name": REGION,
            "function_name": f"matrix{index}",
            "compatible_runtime": "python3.12",
            "function_file_patterns": ["^app_a"],
            "requirements_layer_name": "matrix-shared",
        }
        for index in range(20)
    }
    write_settings(tmp_path, stages)
    for stage in stages.values():
        infra.function(stage["function_name"])
    gate = PublishGate(aws.endpoint, publishers=8)
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": gate.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }
    jobs = [[name for index, name in enumerate(stages) if index % 8 == job] for job in range(8)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "drover", "--json", "--install-path", "install", *names],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for names in jobs
    ]
    try:
        outputs = [process.communicate(timeout=300) for process in processes]
    finally:
        gate.stop()

    assert [process.returncode for process in processes] == [0] * 8, [err for _, err in outputs]
    published = sum(err.count("Published requirements layer") for _, err in outputs)
    adopted = sum(err.count("adopting it") for _, err in outputs)
    assert published == len(processes) and adopted == published - 1  # every job raced to publish, all converged
    attached = {infra.configuration(stage["function_name"])["Layers"][0]["Arn"] for stage in stages.values()}
    versions = infra.layer_versions("matrix-shared")
    assert len(attached) == 1
    assert [version["LayerVersionArn"] for version in versions] == list(attached)  # no orphan left


def test_the_action_deploys_several_stages_one_per_line_with_one_summary_table(
    tmp_path: Path, infra: Infrastructure, aws: MotoServer
) -> None:
    write_tree(tmp_path)
    stages = {name: stage for name, stage in ten_stages().items() if name in {"s0", "s1", "s2"}}
    stages["s2"]["function_name"] = "not-created"
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn1")
    outputs, summary = tmp_path / "outputs", tmp_path / "summary.md"
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": aws.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "INPUT_STAGE": "s0\ns1\n\ns2\n",
        "INPUT_INSTALL-PATH": "install",
        "GITHUB_OUTPUT": str(outputs),
        "GITHUB_STEP_SUMMARY": str(summary),
        "GITHUB_WORKSPACE": str(tmp_path),
    }
    action = run_action_process(env, tmp_path)

    assert action.returncode == 1, action.stderr
    assert "::error::1 of 3 stages failed (s2); succeeded: s0, s1" in action.stderr
    text = outputs.read_text()
    document = json.loads(text.split("result-json<<", 1)[1].split("\n", 1)[1].rsplit("\n", 2)[0])
    assert [entry["stage"] for entry in document["results"]] == ["s0", "s1", "s2"]
    assert document["failed"] == ["s2"] and "changed=true" in text and "function-arn=\n" in text
    assert "\nfunction-updated=true\n" in text  # s0 and s1 updated their functions: "false" would be untrue
    assert "\nversion-published=false\n" in text  # no stage publishes
    table = [line for line in summary.read_text().splitlines() if line.startswith("| s")]
    assert [line.split(" | ")[2] for line in table] == ["deployed", "deployed", "failed"]
    assert "2 of 3 stages succeeded, 1 failed" in summary.read_text()


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"STAGE": "a\nb", "FUNCTION-NAME": "preview"}, "input 'function-name' overrides one stage's value"),
        ({"STAGE": "a\nb", "REGION": "eu-west-1"}, "input 'region' overrides one stage's value"),
        ({"STAGE": "a\nb", "PROMOTE-FROM": "c"}, "input 'promote-from' promotes to one stage"),
        ({"STAGE": "a b"}, "one stage name per line"),
        ({"STAGE": " \n "}, "input 'stage' is required"),
    ],
)
def test_action_stage_inputs_that_cannot_work_are_input_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, inputs: dict[str, str], expected: str
) -> None:
    from drover import github

    monkeypatch.chdir(tmp_path)
    for name, value in inputs.items():
        monkeypatch.setenv(f"INPUT_{name}", value)
    with pytest.raises(github.ActionInputError, match=expected):
        github.parse_inputs()


def test_action_stage_input_takes_one_stage_per_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from drover import github

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INPUT_STAGE", "api\n  worker  \n\nscheduler\n")
    assert github.parse_inputs().stages == ("api", "worker", "scheduler")
    monkeypatch.setenv("INPUT_STAGE", "api")
    monkeypatch.setenv("INPUT_FUNCTION-NAME", "api-pr-12")
    parsed = github.parse_inputs()
    assert parsed.stage == "api" and parsed.function_name == "api-pr-12"


def test_the_matrix_example_passes_actionlint_and_zizmor_and_uses_the_actions_inputs() -> None:
    from tests.test_static_checks import ROOT, run, tool

    example = ROOT / "examples" / "matrix-workflow.yml"
    linted = run(tool("actionlint"), "-no-color", example)
    assert linted.returncode == 0, linted.stdout + linted.stderr
    audited = run(tool("zizmor"), "--offline", "--no-progress", example)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    action_inputs = set(yaml.safe_load((ROOT / "action.yml").read_text())["inputs"])
    workflow = yaml.safe_load(example.read_text())
    assert workflow["jobs"]["deploy"]["strategy"]["matrix"]["stage"]
    for job in workflow["jobs"].values():
        for step in job["steps"]:
            if "drover-action" in step.get("uses", ""):
                assert set(step["with"]) <= action_inputs


def test_a_publisher_that_loses_the_race_adopts_the_lower_version_and_deletes_its_own(
    tmp_path: Path, infra: Infrastructure
) -> None:
    """Another job publishes the same digest while this one is publishing: this one converges on it."""
    write_tree(tmp_path)
    write_settings(tmp_path, {"s0": ten_stages()["s0"]})
    infra.function("fn0")
    recorder = CallRecorder()
    clients = recording_clients(recorder)
    competitor: list[str] = []

    def publish_first(params: dict[str, Any], **_: Any) -> None:
        if not competitor:  # the other job's publish lands first, with the same description (digest)
            answer = infra.client("lambda").publish_layer_version(
                LayerName=params["LayerName"],
                Description=params["Description"],
                Content={"ZipFile": params["Content"]["ZipFile"]},
                CompatibleRuntimes=params["CompatibleRuntimes"],
                CompatibleArchitectures=params["CompatibleArchitectures"],
            )
            competitor.append(answer["LayerVersionArn"])

    assert clients.session is not None
    clients.session.events.register("before-parameter-build.lambda.PublishLayerVersion", publish_first)
    from drover import Drover

    options = RunOptions(working_directory=tmp_path, aws=clients)
    result = Drover(load_settings(tmp_path / "drover.yml"), "s0", options=options).update(tmp_path / "install")

    [winner] = competitor
    assert result.requirements_layer_arn == winner
    assert [layer["Arn"] for layer in infra.configuration("fn0")["Layers"]] == [winner]
    assert [version["LayerVersionArn"] for version in infra.layer_versions("reqs-one")] == [winner]
    assert recorder.count()["DeleteLayerVersion"] == 1
    [publish] = [action for action in result.actions if action.action == "publish-layer"]
    assert (
        publish.reason.startswith(f"adopted {winner} (the lowest version")
        and f"deleted {winner[:-1]}2" in publish.reason
    )


def test_package_only_with_several_stages_names_each_distinct_archive_by_its_digest(tmp_path: Path) -> None:
    """A stage name is the user's text, never a path component: archives are named by content."""
    import zipfile

    write_tree(tmp_path)
    write_settings(tmp_path, {name: stage for name, stage in ten_stages().items() if name in {"s0", "s1"}})
    options = RunOptions(working_directory=tmp_path, package_only=True, archive_dir=tmp_path / "dist")

    result = run_several(tmp_path / "drover.yml", ["s0", "s1"], options, tmp_path / "install")

    assert result.mode == "package-only" and result.succeeded == ["s0", "s1"]
    for entry, module in zip(result.results, ("app_a.py", "app_b.py"), strict=True):
        assert isinstance(entry, DeployResult) and entry.function_archive is not None
        path = Path(entry.function_archive)
        assert path.parent == (tmp_path / "dist").resolve()
        assert path.name == f"function-{entry.function_digest[:16]}.zip"  # type: ignore[index]
        with zipfile.ZipFile(path) as archive:
            assert archive.namelist() == [module]
    names = sorted(path.name for path in (tmp_path / "dist").iterdir())
    assert len(names) == 4 and all(name.endswith(".zip") for name in names)  # each stage: its function, its layer


def test_several_stages_install_once_and_a_stage_needing_another_platform_gets_its_own_install(
    tmp_path: Path, infra: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.wheels import offline_environment, write_wheel

    house = tmp_path / "wheelhouse"
    house.mkdir()
    write_wheel(house, "purelib", "1.0", "py3-none-any", {"purelib/__init__.py": b"VALUE = 1\n"})
    for name in list(os.environ):
        if name.startswith(("PIP_", "UV_")):
            monkeypatch.delenv(name)
    (tmp_path / "scratch").mkdir()
    for name, value in offline_environment(house, tmp_path / "scratch").items():
        monkeypatch.setenv(name, value)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app_a.py").write_text("def handler(event, context):\n    return 1\n")
    (tmp_path / "requirements.txt").write_text("purelib==1.0\n")
    stages = {
        name: {**ten_stages()[name], "function_file_patterns": [], "function_extra_paths": ["src/app_a.py"]}
        for name in ("s0", "s1", "s2")
    }
    write_settings(tmp_path, stages)
    infra.function("fn0")
    infra.function("fn1")
    infra.function("fn2", architecture="arm64")

    result = run_stages(tmp_path, list(stages), CallRecorder(), requirements=tmp_path / "requirements.txt")

    assert result.succeeded == ["s0", "s1", "s2"]
    first, second, arm = result.results
    assert isinstance(first, DeployResult) and first.install is not None and not first.install.skipped
    assert isinstance(second, DeployResult) and second.install == first.install  # installed once, for both
    assert first.requirements_digest == second.requirements_digest
    assert first.requirements_layer_arn == second.requirements_layer_arn
    assert isinstance(arm, DeployResult) and arm.install is not None and not arm.install.skipped
    assert arm.requirements_layer_arn not in (None, first.requirements_layer_arn)
    name, version = str(arm.requirements_layer_arn).split(":")[-2:]
    layer = infra.client("lambda").get_layer_version(LayerName=name, VersionNumber=int(version))
    assert layer["CompatibleArchitectures"] == ["arm64"]
    assert [path.parent.name for path in (tmp_path / "install.stages").glob("*/.drover-install.json")] != []
