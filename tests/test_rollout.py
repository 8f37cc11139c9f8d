"""Safe rollouts against the moto server: a smoke test of the new version before any traffic reaches it, traffic
shifted on the alias in steps while alarms are watched, and the alias rolled back by itself on any failure."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from drover.errors import PreflightError, SettingsError, UpdateError
from drover.interrupt import Terminated
from drover.models import DeployResult
from drover.settings import load_settings
from tests.aws import CallRecorder, Infrastructure, MotoServer
from tests.deploy_support import Project

ALARM = "fn-errors"


@pytest.fixture
def moto_invokes(aws: MotoServer) -> Iterator[None]:
    """Lambda invoke without Docker: moto answers with the event it was given."""
    body = json.dumps({"lambda": {"use_docker": False}}).encode()
    request = urllib.request.Request(
        f"{aws.endpoint}/moto-api/config", data=body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10):
        pass
    yield


@pytest.fixture
def live(tmp_path: Path, infra: Infrastructure, moto_invokes: None) -> Project:
    """fn deployed once with alias live at version 1; a CloudWatch alarm in OK; code changed since."""
    infra.function("fn")
    quiet_alarm(infra, ALARM)
    project = Project(tmp_path)
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v1'\n")
    project.stage.update(alias="live")
    first = project.deploy()
    assert first.version == "1"
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v2'\n")
    project.stage["rollout"] = {
        "strategy": "canary",
        "percent": 10,
        "interval_seconds": 60,
        "alarms": [ALARM],
        "smoke_test": {"payload": '{"ping": "pong"}', "expect": "pong"},
    }
    return project


def quiet_alarm(infra: Infrastructure, name: str) -> None:
    """A CloudWatch alarm on the function's errors, in OK (what the user's infrastructure code creates)."""
    cloudwatch = infra.client("cloudwatch")
    cloudwatch.put_metric_alarm(
        AlarmName=name,
        MetricName="Errors",
        Namespace="AWS/Lambda",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="GreaterThanThreshold",
    )
    cloudwatch.set_alarm_state(AlarmName=name, StateValue="OK", StateReason="quiet")


def alias_state(infra: Infrastructure) -> tuple[str, dict[str, float]]:
    alias = infra.client("lambda").get_alias(FunctionName="fn", Name="live")
    return alias["FunctionVersion"], dict(alias.get("RoutingConfig", {}).get("AdditionalVersionWeights", {}) or {})


def on_sleep(project: Project, action: Callable[[int], None]) -> list[int]:
    """Run action(n) at the n-th wait of the run (what a rollout does between its alarm checks)."""
    calls: list[int] = []

    def install(clients: Any) -> None:
        def sleep(seconds: float) -> None:
            calls.append(len(calls) + 1)
            action(len(calls))

        clients.sleep = sleep

    project.hooks.append(install)
    return calls


def test_a_canary_rollout_moves_ten_percent_then_all_and_clears_the_weights(
    live: Project, infra: Infrastructure
) -> None:
    seen: list[tuple[str, dict[str, float]]] = []
    waits = on_sleep(live, lambda _: seen.append(alias_state(infra)))

    result = live.deploy()

    assert result.rollout == "completed" and result.previous_version == "1" and result.version == "2"
    assert waits and all(state == ("1", {"2": 0.1}) for state in seen), seen  # 10 % on the new version meanwhile
    assert alias_state(infra) == ("2", {})
    kinds = [action.action for action in result.actions]
    assert kinds[-5:] == ["start-rollout", "smoke-test", "check-alarms", "shift-traffic", "point-alias"]
    assert infra.tags()["drover:rollout-from"] == "1"
    assert live.deploy().actions == []  # a rerun: nothing to roll out


def test_a_failed_smoke_test_never_moves_the_alias(live: Project, infra: Infrastructure) -> None:
    live.stage["rollout"]["smoke_test"]["expect"] = "something the answer lacks"

    with pytest.raises(
        UpdateError, match=r"smoke test of fn version 2 failed: .*never moved: it still serves version 1"
    ):
        live.deploy()

    assert alias_state(infra) == ("1", {})
    assert "UpdateAlias" not in live.writes


def test_an_alarm_going_off_during_the_wait_rolls_the_alias_back(live: Project, infra: Infrastructure) -> None:
    def alarm(wait: int) -> None:
        if wait == 1:
            infra.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="errors")

    on_sleep(live, alarm)

    with pytest.raises(UpdateError, match=rf"alarm {ALARM} went into ALARM .*back on version 1") as caught:
        live.deploy()

    assert "\n" not in str(caught.value)
    assert alias_state(infra) == ("1", {})


def test_an_alarm_already_in_alarm_stops_before_traffic_moves_unless_ignored(
    live: Project, infra: Infrastructure
) -> None:
    infra.client("cloudwatch").set_alarm_state(AlarmName=ALARM, StateValue="ALARM", StateReason="already")

    with pytest.raises(UpdateError, match="is in ALARM before any traffic moved"):
        live.deploy()
    assert alias_state(infra) == ("1", {})

    result = live.deploy(ignore_alarms_at_start=True, dry_run=True)
    assert [action.action for action in result.actions][-3:] == ["check-alarms", "shift-traffic", "point-alias"]


def test_an_alarm_that_does_not_exist_stops_the_run_before_any_write(live: Project, infra: Infrastructure) -> None:
    live.stage["rollout"]["alarms"] = ["fn-erors"]

    with pytest.raises(PreflightError, match="'fn-erors', which is not a CloudWatch alarm"):
        live.deploy()

    assert live.writes == []
    assert alias_state(infra) == ("1", {})


def test_sigterm_during_a_wait_rolls_back_then_stops(live: Project, infra: Infrastructure) -> None:
    def terminate(wait: int) -> None:
        if wait == 2:
            raise Terminated

    on_sleep(live, terminate)

    with pytest.raises(Terminated):
        live.deploy()

    assert alias_state(infra) == ("1", {})


def test_rollback_puts_the_alias_back_on_the_version_before_the_last_rollout(
    live: Project, infra: Infrastructure
) -> None:
    from drover import Drover, RunOptions
    from tests.aws import recording_clients

    live.deploy()
    assert alias_state(infra) == ("2", {})
    options = RunOptions(working_directory=live.root, aws=recording_clients(live.recorder))
    drover = Drover(load_settings(live.write_settings()), "test", options=options)

    result = drover.roll_back()

    assert alias_state(infra) == ("1", {})
    assert result.rollout == "rolled-back" and result.previous_version == "2" and result.version == "1"
    again = drover.roll_back()
    assert again.actions == [] and again.rollout == "none"


def test_rollback_without_a_recorded_rollout_is_exit_2(tmp_path: Path, infra: Infrastructure) -> None:
    from drover.cli import main

    infra.function("fn")
    project = Project(tmp_path)
    project.write("app/__init__.py", "x = 1\n")
    project.stage.update(alias="live")
    project.write_settings()

    with pytest.raises(SettingsError, match="records no rollout"):
        from drover import Drover, RunOptions

        Drover(
            load_settings(tmp_path / "drover.yml"), "test", options=RunOptions(working_directory=tmp_path)
        ).roll_back()
    assert main(["--settings-file", str(tmp_path / "drover.yml"), "--rollback", "test"]) == 2


def test_the_dry_run_lists_the_rollouts_steps_with_their_waits(live: Project) -> None:
    live.stage["rollout"].update(strategy="linear", percent=30, interval_seconds=120)

    planned = live.deploy(dry_run=True)
    done = live.deploy()

    assert [(a.action, a.target) for a in planned.actions] == [(a.action, a.target) for a in done.actions]
    shifts = [action.reason for action in planned.actions if action.action == "shift-traffic"]
    assert [reason.split("%")[0] for reason in shifts] == ["30", "60", "90"]
    assert all("wait 120 s" in reason for reason in shifts)


def test_rollout_needs_an_alias(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.stage["rollout"] = {"strategy": "canary"}
    with pytest.raises(SettingsError, match="rollout moves traffic on an alias"):
        load_settings(project.write_settings())


@pytest.mark.parametrize(
    ("rollout", "message"),
    [
        ({"strategy": "blue-green"}, "strategy"),
        ({"percent": 0}, "percent"),
        ({"interval_seconds": 7200}, "interval_seconds"),
        ({"smoke_test": {"payload": "{not json"}}, "not JSON text"),
    ],
)
def test_bad_rollout_settings_are_one_line_errors(tmp_path: Path, rollout: dict[str, Any], message: str) -> None:
    project = Project(tmp_path)
    project.stage.update(alias="live", rollout=rollout)
    with pytest.raises(SettingsError, match=message) as caught:
        load_settings(project.write_settings())
    assert "\n" not in str(caught.value)


def test_a_result_reports_the_rollout(live: Project) -> None:
    from drover.report import render_text

    result: DeployResult = live.deploy()
    assert "Rollout: completed (the alias served version 1 before)" in render_text(result)


def test_the_action_outputs_name_the_rollout_and_the_previous_version(live: Project) -> None:
    from drover.github import outputs_of

    outputs = outputs_of(live.deploy())
    assert outputs["rollout"] == "completed" and outputs["previous-version"] == "1"


def test_a_rollout_longer_than_the_credentials_goes_on_with_refreshed_ones(
    live: Project, infra: Infrastructure, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Action's role credentials last role-duration-seconds; a rollout's waits can outlast them."""
    from datetime import UTC, datetime, timedelta

    from drover import Drover, RunOptions, deploy
    from drover.deploy import AwsClients, AwsCredentials

    start = datetime.now(UTC)
    now = [start]
    monkeypatch.setattr(deploy, "credential_clock", lambda: now[0])
    refreshed: list[datetime] = []

    def refresh() -> AwsCredentials:  # what the Action does: a new OIDC token, AssumeRoleWithWebIdentity
        refreshed.append(now[0])
        return AwsCredentials("testing", "testing", "refreshed", now[0] + timedelta(minutes=15))

    credentials = AwsCredentials("testing", "testing", "first", start + timedelta(minutes=15), refresh=refresh)
    clients = AwsClients("us-east-1", credentials=credentials)
    seen: list[tuple[str, dict[str, float]]] = []

    def sleep(seconds: float) -> None:  # each wait moves the clock 5 minutes: the first credentials expire
        now[0] += timedelta(minutes=5)
        seen.append(alias_state(infra))

    clients.sleep = sleep
    live.stage["rollout"].update(strategy="linear", percent=25, interval_seconds=900)
    options = RunOptions(working_directory=live.root, aws=clients)

    result = Drover(load_settings(live.write_settings()), "test", options=options).update(live.install)

    assert result.rollout == "completed" and alias_state(infra) == ("2", {})
    assert len(refreshed) >= 2, refreshed  # 45 minutes of waits on 15-minute credentials
    assert ("1", {"2": 0.5}) in seen and ("1", {"2": 0.75}) in seen


def test_stages_roll_out_concurrently_and_one_stages_rollback_leaves_the_other_alone(
    tmp_path: Path, infra: Infrastructure, moto_invokes: None
) -> None:
    import yaml

    from drover.models import MultiResult, StageFailure
    from drover.options import RunOptions
    from drover.service import Run, RunRequest
    from tests.aws import recording_clients

    cloudwatch = infra.client("cloudwatch")
    stages: dict[str, Any] = {}
    for name in ("a", "b"):
        infra.function(f"fn-{name}")
        quiet_alarm(infra, f"{name}-errors")
        stages[name] = {
            "region_name": "us-east-1",
            "function_name": f"fn-{name}",
            "compatible_runtime": "python3.12",
            "function_file_patterns": ["^app"],
            "alias": "live",
        }
    install = tmp_path / "install"
    (install / "app").mkdir(parents=True)
    (install / "app" / "__init__.py").write_text("V = 1\n")
    settings = tmp_path / "drover.yml"

    def run() -> MultiResult:
        settings.write_text(yaml.safe_dump({"stages": stages}))
        clients = recording_clients(CallRecorder())

        def sleep(seconds: float) -> None:  # b's alarm goes off during the first wait; a's stays quiet
            cloudwatch.set_alarm_state(AlarmName="b-errors", StateValue="ALARM", StateReason="errors")

        clients.sleep = sleep
        options = RunOptions(working_directory=tmp_path, aws=clients)
        result = Run(RunRequest(settings, ("a", "b"), install, options)).execute()
        assert isinstance(result, MultiResult)
        return result

    run()  # version 1 behind each alias
    (install / "app" / "__init__.py").write_text("V = 2\n")
    for name in ("a", "b"):
        stages[name]["rollout"] = {
            "strategy": "canary",
            "percent": 20,
            "interval_seconds": 30,
            "alarms": [f"{name}-errors"],
        }

    result = run()

    completed, failed = result.results
    assert isinstance(completed, DeployResult) and completed.rollout == "completed"
    assert isinstance(failed, StageFailure) and "b-errors went into ALARM" in failed.error
    assert "back on version 1" in failed.error
    assert result.succeeded == ["a"] and result.failed == ["b"]
    versions = {
        name: infra.client("lambda").get_alias(FunctionName=f"fn-{name}", Name="live")["FunctionVersion"]
        for name in ("a", "b")
    }
    assert versions == {"a": "2", "b": "1"}


def test_the_step_summary_gives_each_rollout_step_its_time(live: Project) -> None:
    from drover.report import render_summary

    summary = render_summary(live.deploy())
    rows = [line for line in summary.splitlines() if line.startswith("| shift-traffic")]
    assert rows and rows[0].rstrip(" |").rsplit("| ", 1)[-1].count(":") == 2  # HH:MM:SS of when it was done
    assert "| At (UTC) |" in summary
