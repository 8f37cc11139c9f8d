"""drover.github, unit by unit: inputs, OIDC (against a local HTTP server), STS retry, outputs, summary, commands."""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import botocore.exceptions
import pytest
import yaml

from drover import github
from drover.deploy import AssumeRoleError, assume_role_with_web_identity, is_transient_sts_error
from drover.errors import SettingsError, UpdateError
from drover.models import DeployAction, DeployResult
from drover.retry import Backoff, retry
from tests.github_fakes import (
    ACCESS_DENIED,
    CLAIMS,
    THROTTLED,
    b64url,
    fake_sts,
    make_jwt,
    oidc_server,
    parse_github_output,
    refused_url,
    sts_error,
)

ROOT = Path(__file__).resolve().parent.parent
ROLE = "arn:aws:iam::123456789012:role/deploy"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No INPUT_*/GITHUB_*/ACTIONS_* from the outer environment; cwd is an empty workspace."""
    for name in list(os.environ):
        if name.startswith(("INPUT_", "GITHUB_", "ACTIONS_", "RUNNER_", "DROVER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield
    logging.getLogger("drover").handlers.clear()


def set_inputs(monkeypatch: pytest.MonkeyPatch, **inputs: str) -> None:
    """Set inputs as the runner does: INPUT_ + upper-cased name, hyphens kept."""
    for name, value in inputs.items():
        monkeypatch.setenv(f"INPUT_{name.replace('_', '-').upper()}", value)


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def fast_backoff(attempts: int = 3) -> tuple[Backoff, Sleeps]:
    sleeps = Sleeps()
    return Backoff(attempts=attempts, base=0.01, sleep=sleeps, jitter=lambda: 1.0), sleeps


def a_result(**changes: Any) -> DeployResult:
    values: dict[str, Any] = {
        "stage": "staging",
        "mode": "deploy",
        "function_name": "fn",
        "region_name": "us-east-1",
        "function_digest": "f" * 64,
        "requirements_digest": "r" * 64,
        "function_file_count": 3,
        "requirements_file_count": 40,
        "function_unzipped_size": 1200,
        "requirements_unzipped_size": 90_000,
    }
    return DeployResult(**{**values, **changes})


# -- action.yml and the code agree -----------------------------------------------------------


def load_action() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_input_defaults_in_code_equal_action_yml() -> None:
    """A docker:// step gets no defaults from action.yml, so the code applies the same ones."""
    inputs = load_action()["inputs"]
    assert {name: str(spec.get("default", "")) for name, spec in inputs.items()} == github.INPUT_DEFAULTS
    assert all(spec.get("description") for spec in inputs.values())
    assert [name for name, spec in inputs.items() if spec.get("required")] == ["stage"]


def test_outputs_in_code_equal_action_yml() -> None:
    outputs = load_action()["outputs"]
    assert tuple(outputs) == github.OUTPUT_NAMES
    assert set(github.outputs_of(a_result())) == set(outputs)
    assert load_action()["runs"] == {"using": "docker", "image": "Dockerfile"}


# -- inputs ----------------------------------------------------------------------------------


def test_defaults_apply_when_only_stage_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    set_inputs(monkeypatch, stage="staging")
    inputs = github.parse_inputs()
    assert inputs.stage == "staging"
    assert inputs.settings_file == Path("drover.yml")
    assert inputs.working_directory == Path(".")
    assert (inputs.install_path, inputs.install_source, inputs.requirements) == (None, None, None)
    assert (inputs.role_to_assume, inputs.aws_region, inputs.alias, inputs.publish) == (None, None, None, None)
    assert inputs.audience == "sts.amazonaws.com"
    assert inputs.role_session_name == "drover-action"
    assert inputs.role_duration_seconds == 3600
    assert inputs.dry_run is False


def test_hyphenated_inputs_and_paths_relative_to_the_working_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    Path("service").mkdir()
    monkeypatch.setenv("INPUT_ROLE-TO-ASSUME", f"  {ROLE}  ")  # the runner passes it with the hyphens
    set_inputs(
        monkeypatch,
        stage="prod",
        working_directory="service",
        settings_file="deploy/drover.yml",
        install_path="build",
        requirements="requirements.txt",
        install_source=str(Path.cwd() / "project"),  # absolute, inside the workspace
        aws_region="eu-west-1",
        audience="my-audience",
        role_session_name="deploy@main",
        role_duration_seconds="900",
        dry_run="TRUE",
        publish="false",
        alias="live",
    )
    inputs = github.parse_inputs()
    assert inputs.role_to_assume == ROLE
    assert inputs.settings_file == Path("service/deploy/drover.yml")
    assert inputs.install_path == Path("service/build")
    assert inputs.requirements == Path("service/requirements.txt")
    assert inputs.install_source == Path.cwd() / "project"
    assert (inputs.aws_region, inputs.audience, inputs.role_session_name) == ("eu-west-1", "my-audience", "deploy@main")
    assert (inputs.role_duration_seconds, inputs.dry_run, inputs.publish, inputs.alias) == (900, True, False, "live")


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"stage": ""}, "input 'stage' is required"),
        ({"stage": "   "}, "input 'stage' is required"),
        ({"role_duration_seconds": "899"}, "'role-duration-seconds' is '899': use a whole number of seconds from 900"),
        ({"role_duration_seconds": "43201"}, "'role-duration-seconds' is '43201'"),
        ({"role_duration_seconds": "1h"}, "'role-duration-seconds' is '1h'"),
        ({"role_duration_seconds": "3_600"}, "'role-duration-seconds' is '3_600'"),
        ({"role_duration_seconds": "-3600"}, "'role-duration-seconds' is '-3600'"),
        ({"role_session_name": "x"}, "'role-session-name' is 'x': use 2 to 64 characters"),
        ({"role_session_name": "a" * 65}, "'role-session-name'"),
        ({"role_session_name": "has space"}, "'role-session-name' is 'has space'"),
        ({"role_session_name": "naïve"}, "'role-session-name'"),
        ({"role_to_assume": "deploy-role"}, "'role-to-assume' is 'deploy-role': give the role's full ARN"),
        ({"aws_region": "Europe"}, "'aws-region' is 'Europe'"),
        ({"dry_run": "yes"}, "input 'dry-run' is 'yes': use true or false"),
        ({"publish": "1"}, "input 'publish' is '1'"),
        ({"working_directory": "missing"}, "'working-directory' is 'missing', which is not a directory"),
    ],
)
def test_invalid_inputs_are_exit_2_errors_naming_the_input(
    monkeypatch: pytest.MonkeyPatch, inputs: dict[str, str], expected: str
) -> None:
    set_inputs(monkeypatch, **{"stage": "staging", **inputs})
    with pytest.raises(github.ActionInputError) as raised:
        github.parse_inputs()
    assert expected in str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("value", ["900", "43200", " 3600 "])
def test_role_duration_bounds_are_inclusive(value: str) -> None:
    assert github.parse_duration(value.strip()) == int(value)


def test_session_name_allows_the_documented_characters() -> None:
    assert github.parse_session_name("a+=,.@_-Z9") == "a+=,.@_-Z9"
    assert github.parse_session_name("x" * 64) == "x" * 64


def test_nothing_to_deploy_and_missing_paths_are_input_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    set_inputs(monkeypatch, stage="staging")
    with pytest.raises(github.ActionInputError, match="nothing to deploy"):
        github.check_install_inputs(github.parse_inputs())
    set_inputs(monkeypatch, install_path="build")
    with pytest.raises(github.ActionInputError, match="'install-path' is 'build', which is not a directory"):
        github.check_install_inputs(github.parse_inputs())
    set_inputs(monkeypatch, requirements="requirements.txt")
    with pytest.raises(github.ActionInputError, match=r"'requirements' is 'requirements\.txt', which does not exist"):
        github.check_install_inputs(github.parse_inputs())
    Path("requirements.txt").write_text("boto3\n")
    github.check_install_inputs(github.parse_inputs())  # build/ will be created by the install


def test_fresh_install_path_is_a_new_directory_under_runner_temp(tmp_path: Path) -> None:
    runner_temp = tmp_path / "runner_temp"
    first = github.fresh_install_path({"RUNNER_TEMP": str(runner_temp)})
    second = github.fresh_install_path({"RUNNER_TEMP": str(runner_temp)})
    assert first.parent == second.parent == runner_temp
    assert first != second and first.is_dir() and not any(first.iterdir())
    assert github.fresh_install_path({}).is_dir()


def test_retry_tuning_from_the_environment() -> None:
    tuning = github.retry_tuning(
        {
            "DROVER_OIDC_ATTEMPTS": "2",
            "DROVER_OIDC_TIMEOUT_SECONDS": "0.5",
            "DROVER_STS_ATTEMPTS": "4",
            "DROVER_RETRY_BASE_SECONDS": "0.01",
        }
    )
    assert (tuning.oidc.attempts, tuning.oidc_timeout, tuning.sts.attempts) == (2, 0.5, 4)
    assert tuning.oidc.base == tuning.sts.base == 0.01
    defaults = github.retry_tuning({})
    assert (defaults.oidc.attempts, defaults.oidc_timeout) == (github.OIDC_ATTEMPTS, github.OIDC_TIMEOUT_SECONDS)
    with pytest.raises(github.ActionInputError, match="DROVER_OIDC_ATTEMPTS is '0'"):
        github.retry_tuning({"DROVER_OIDC_ATTEMPTS": "0"})
    for bad in ("fast", "nan", "inf", "-1"):
        with pytest.raises(github.ActionInputError, match=f"DROVER_RETRY_BASE_SECONDS is '{bad}'"):
            github.retry_tuning({"DROVER_RETRY_BASE_SECONDS": bad})


def test_runner_tokens_are_taken_out_of_the_environment() -> None:
    environ = {
        "ACTIONS_ID_TOKEN_REQUEST_URL": "http://x/?a=1",
        "ACTIONS_ID_TOKEN_REQUEST_TOKEN": "secret",
        "ACTIONS_RUNTIME_TOKEN": "runtime",
        "PATH": "/bin",
    }
    request = github.take_id_token_request(environ)
    assert request == github.IdTokenRequest("http://x/?a=1", "secret")
    assert environ == {"PATH": "/bin"}
    assert github.take_id_token_request({"ACTIONS_ID_TOKEN_REQUEST_URL": "http://x/"}) is None


def test_debug_is_runner_debug_or_step_debug() -> None:
    assert github.is_debug({"RUNNER_DEBUG": "1"})
    assert github.is_debug({"ACTIONS_STEP_DEBUG": "true"})
    assert not github.is_debug({"RUNNER_DEBUG": "0", "ACTIONS_STEP_DEBUG": "false"})
    assert not github.is_debug({})


# -- OIDC ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "audience", "query"),
    [
        (
            "https://t.example/token?api-version=2.0",
            "sts.amazonaws.com",
            [("api-version", "2.0"), ("audience", "sts.amazonaws.com")],
        ),
        ("https://t.example/token", "sts.amazonaws.com", [("audience", "sts.amazonaws.com")]),
        ("https://t.example/token?audience=old&x=1", "new", [("x", "1"), ("audience", "new")]),
        (
            "https://t.example/token?x=1",
            "https://a.example/p?q=1&r",
            [("x", "1"), ("audience", "https://a.example/p?q=1&r")],
        ),
        ("https://t.example/token?x=1", "", [("x", "1")]),
    ],
)
def test_audience_is_added_to_the_request_url(url: str, audience: str, query: list[tuple[str, str]]) -> None:
    built = urllib.parse.urlsplit(github.id_token_url(url, audience))
    assert (built.scheme, built.netloc, built.path) == ("https", "t.example", "/token")
    assert urllib.parse.parse_qsl(built.query) == query


def test_fetch_sends_the_bearer_token_and_audience() -> None:
    backoff, sleeps = fast_backoff()
    with oidc_server() as server:
        request = github.IdTokenRequest(server.url, server.request_token)
        token = github.fetch_id_token(request, "sts.amazonaws.com", timeout=5, backoff=backoff)
    assert token == server.tokens[0]
    assert len(server.requests) == 1 and not sleeps
    seen = server.requests[0]
    assert seen.authorization == f"bearer {server.request_token}"
    assert seen.query == {"api-version": ["2.0"], "audience": ["sts.amazonaws.com"]}
    assert github.token_claims(token)["aud"] == "sts.amazonaws.com"


def test_fetch_retries_server_errors_with_jittered_backoff_then_succeeds() -> None:
    backoff, sleeps = fast_backoff(attempts=4)
    with oidc_server(fail_first=2) as server:
        token = github.fetch_id_token(
            github.IdTokenRequest(server.url, server.request_token), "a", timeout=5, backoff=backoff
        )
    assert token == server.tokens[0]
    assert len(server.requests) == 3
    assert sleeps == [0.01, 0.02]  # base * 2**attempt, times the injected jitter (1.0)


def test_fetch_retries_a_slow_answer_after_its_timeout() -> None:
    backoff, sleeps = fast_backoff(attempts=3)
    with oidc_server(slow_first=1, delay=1.0) as server:
        token = github.fetch_id_token(
            github.IdTokenRequest(server.url, server.request_token), "a", timeout=0.2, backoff=backoff
        )
    assert token == server.tokens[-1]
    assert len(server.requests) == 2 and len(sleeps) == 1


def test_fetch_gives_up_after_the_attempts_with_a_clear_error() -> None:
    backoff, sleeps = fast_backoff(attempts=3)
    with pytest.raises(github.CredentialsError) as raised:
        github.fetch_id_token(github.IdTokenRequest(refused_url(), "t"), "a", timeout=1, backoff=backoff)
    assert "could not get an OIDC token from GitHub after 3 attempts (timeout 1 s each)" in str(raised.value)
    assert "refused" in str(raised.value).lower()
    assert len(sleeps) == 2


def test_fetch_does_not_retry_a_refusal_and_hints_at_the_permission() -> None:
    backoff, sleeps = fast_backoff()
    with oidc_server() as server, pytest.raises(github.CredentialsError) as raised:
        github.fetch_id_token(github.IdTokenRequest(server.url, "wrong-token"), "a", timeout=5, backoff=backoff)
    assert len(server.requests) == 1 and not sleeps
    assert "HTTP 401" in str(raised.value) and "permissions: id-token: write" in str(raised.value)
    assert "wrong-token" not in str(raised.value)


@pytest.mark.parametrize("body", [b"not json", b"[]", b"{}", b'{"value": ""}', b'{"value": 3}'])
def test_a_token_response_without_a_token_is_an_error(body: bytes) -> None:
    with pytest.raises(github.CredentialsError, match="without a token"):
        github.parse_token_response(body)


def test_token_claims_decode_the_payload_without_verifying() -> None:
    token = make_jwt({**CLAIMS, "aud": ["sts.amazonaws.com", "other"]})
    claims = github.token_claims(token)
    assert claims["sub"] == CLAIMS["sub"] and claims["repository"] == "octo-org/octo-app"
    assert github.describe_claims(claims) == (
        "sub=repo:octo-org/octo-app:environment:staging, aud=sts.amazonaws.com,other, "
        "repository=octo-org/octo-app, ref=refs/heads/main, environment=staging"
    )
    assert "environment=(not set)" in github.describe_claims({"sub": "x"})


@pytest.mark.parametrize("payload", ["a", b64url(b"{'not': json}"), b64url(b"[1, 2]"), "!!!", b64url(b"\xff\xfe")])
def test_malformed_tokens_have_no_claims(payload: str) -> None:
    assert github.token_claims(f"h.{payload}.s") == {}
    assert github.token_claims("only.two") == {}


def test_claims_decode_whatever_the_padding() -> None:
    for sub in ("a", "ab", "abc", "abcd"):
        assert github.token_claims(make_jwt({"sub": sub}))["sub"] == sub


def test_trust_refusal_message_shows_claims_beside_the_role_but_not_the_token() -> None:
    token = make_jwt({**CLAIMS, "aud": "sts.amazonaws.com"})
    error = AssumeRoleError("x", "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity")
    message = github.trust_refusal_message(error, ROLE, token)
    assert ROLE in message and "AccessDenied: Not authorized" in message
    assert "sub=repo:octo-org/octo-app:environment:staging" in message and "aud=sts.amazonaws.com" in message
    assert token not in message and token.split(".")[2] not in message


def test_missing_id_token_variables_ask_for_the_permission(monkeypatch: pytest.MonkeyPatch) -> None:
    set_inputs(monkeypatch, stage="staging", role_to_assume=ROLE)
    with pytest.raises(github.ActionInputError, match=r"add `permissions: id-token: write` to the job"):
        github.obtain_credentials(github.parse_inputs(), None, "us-east-1", github.retry_tuning({}))


# -- retry policy and STS --------------------------------------------------------------------


def test_backoff_is_capped_full_jitter() -> None:
    backoff = Backoff(attempts=10, base=1.0, cap=5.0, jitter=lambda: 0.5)
    assert [backoff.delay(n) for n in range(5)] == [0.5, 1.0, 2.0, 2.5, 2.5]
    assert Backoff(jitter=lambda: 0.0).delay(3) == 0.0
    with pytest.raises(ValueError):
        Backoff(attempts=0)


def test_retry_raises_a_permanent_error_at_once_and_the_last_transient_one_at_the_end() -> None:
    calls: list[int] = []

    def failing(error: Exception) -> Any:
        def call() -> Any:
            calls.append(1)
            raise error

        return call

    backoff, sleeps = fast_backoff(attempts=3)
    with pytest.raises(KeyError):
        retry(failing(KeyError("permanent")), transient=lambda e: isinstance(e, TimeoutError), backoff=backoff)
    assert len(calls) == 1 and not sleeps
    hooks: list[int] = []
    with pytest.raises(TimeoutError):
        retry(
            failing(TimeoutError()),
            transient=lambda e: isinstance(e, TimeoutError),
            backoff=backoff,
            on_retry=lambda n, e, s: hooks.append(n),
        )
    assert len(calls) == 4 and hooks == [1, 2] and len(sleeps) == 2


def client_error(code: str, status: int) -> botocore.exceptions.ClientError:
    return botocore.exceptions.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "AssumeRoleWithWebIdentity",
    )


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (client_error("Throttling", 400), True),
        (client_error("IDPCommunicationError", 400), True),
        (client_error("InternalError", 500), True),
        (client_error("Whatever", 503), True),
        (client_error("AccessDenied", 403), False),
        (client_error("InvalidIdentityToken", 400), False),
        (client_error("ExpiredTokenException", 400), False),
        (client_error("ValidationError", 400), False),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="http://x"), True),
        (botocore.exceptions.ReadTimeoutError(endpoint_url="http://x"), True),
        (botocore.exceptions.NoCredentialsError(), False),
    ],
)
def test_sts_retry_classification(error: BaseException, transient: bool) -> None:
    assert is_transient_sts_error(error) is transient


def test_sts_throttling_is_retried_until_moto_answers(moto_server: Any, sts_at: Any, retry_sleeps: Sleeps) -> None:
    sleeps = retry_sleeps
    with fake_sts(moto_server.endpoint, [THROTTLED, sts_error(503, "ServiceUnavailable", "busy")]) as sts:
        credentials = assume_role_with_web_identity(
            ROLE,
            make_jwt(CLAIMS),
            "drover-action",
            900,
            "us-east-1",
            session=sts_at(sts.endpoint),
            attempts=4,
        )
    assert len(sts.requests) == 3 and len(sleeps) == 2
    assert credentials.secret_access_key == sts.issued[0].secret_access_key
    assert sts.requests[-1]["RoleArn"] == [ROLE] and sts.requests[-1]["DurationSeconds"] == ["900"]


def test_sts_access_denied_is_not_retried(moto_server: Any, sts_at: Any, retry_sleeps: Sleeps) -> None:
    sleeps = retry_sleeps
    with fake_sts(moto_server.endpoint, [ACCESS_DENIED]) as sts, pytest.raises(AssumeRoleError) as raised:
        assume_role_with_web_identity(
            ROLE, make_jwt(CLAIMS), "drover-action", 900, "us-east-1", session=sts_at(sts.endpoint), attempts=4
        )
    assert len(sts.requests) == 1 and not sleeps
    assert raised.value.code == "AccessDenied" and "Not authorized" in raised.value.aws_message
    assert isinstance(raised.value, UpdateError) and raised.value.exit_code == 1


def test_sts_gives_up_after_the_attempts(moto_server: Any, sts_at: Any, retry_sleeps: Sleeps) -> None:
    with fake_sts(moto_server.endpoint, [THROTTLED] * 3) as sts, pytest.raises(AssumeRoleError) as raised:
        assume_role_with_web_identity(
            ROLE, make_jwt(CLAIMS), "s1", 900, "us-east-1", session=sts_at(sts.endpoint), attempts=2
        )
    assert len(sts.requests) == 2 and raised.value.code == "Throttling"


@pytest.fixture
def retry_sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    """The waits botocore's standard retry mode asks for (STS retries are botocore's own); none is slept."""
    from botocore.retries.standard import ExponentialBackoff

    sleeps = Sleeps()

    def delay(self: Any, context: Any) -> float:
        sleeps(1.0)
        return 0.0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", delay)
    return sleeps


@pytest.fixture
def sts_at(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 session whose STS endpoint is the given URL (through AWS_ENDPOINT_URL_STS, like the Action's)."""
    import boto3

    def session(endpoint: str) -> boto3.Session:
        monkeypatch.setenv("AWS_ENDPOINT_URL_STS", endpoint)
        return boto3.Session()

    return session


# -- outputs ---------------------------------------------------------------------------------


def test_outputs_booleans_and_missing_values() -> None:
    outputs = github.outputs_of(a_result(function_updated=True, function_arn="arn:fn", requirements_digest=None))
    assert outputs["function-updated"] == "true"
    assert outputs["requirements-updated"] == outputs["configuration-updated"] == "false"
    assert outputs["function-arn"] == "arn:fn"
    assert outputs["requirements-digest"] == outputs["version"] == outputs["requirements-layer-arn"] == ""
    assert json.loads(outputs["result-json"]) == a_result(
        function_updated=True, function_arn="arn:fn", requirements_digest=None
    ).model_dump(mode="json")


def test_output_file_format_uses_a_heredoc_for_result_json(tmp_path: Path) -> None:
    output_file = tmp_path / "set_output"
    output_file.write_text("earlier=kept\n")
    action = DeployAction(action="a", target="t", reason="line1\nline2", done=True)
    outputs = github.outputs_of(a_result(actions=[action]))
    outputs["multi"] = "one\ntwo"
    github.write_outputs(outputs, str(output_file))
    text = output_file.read_text()
    assert re.search(r"^result-json<<(ghadelimiter_[0-9a-f-]{36})\n\{.*\}\n\1$", text, re.MULTILINE)
    assert re.search(r"^multi<<ghadelimiter_", text, re.MULTILINE)
    assert "\nfunction-updated=false\n" in text
    parsed = parse_github_output(text)
    assert parsed["earlier"] == "kept" and parsed["multi"] == "one\ntwo"
    assert {name: parsed[name] for name in outputs} == outputs
    assert json.loads(parsed["result-json"])["actions"][0]["reason"] == "line1\nline2"


def test_outputs_go_to_stdout_without_github_output(capsys: pytest.CaptureFixture[str]) -> None:
    github.write_outputs(github.outputs_of(a_result()), None)
    parsed = parse_github_output(capsys.readouterr().out)
    assert set(parsed) == set(github.OUTPUT_NAMES)
    assert json.loads(parsed["result-json"])["stage"] == "staging"


# -- workflow commands -----------------------------------------------------------------------


def test_settings_error_annotation_has_file_line_and_column(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    error = SettingsError("drover.yml:4:5: bad", file=tmp_path / "svc" / "drover.yml", line=4, column=5)
    github.report_error("drover.yml:4:5: bad", error, tmp_path)
    assert capsys.readouterr().err == "::error file=svc/drover.yml,line=4,col=5::drover.yml:4:5: bad\n"


def test_annotation_properties_and_message_are_escaped(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    error = SettingsError("m", file="dir,a:b/drover.yml")
    github.report_error("100% wrong\r\nsecond line", error, tmp_path)
    assert capsys.readouterr().err == "::error file=dir%2Ca%3Ab/drover.yml::100%25 wrong%0D%0Asecond line\n"
    github.report_error("plain: a, b", UpdateError("x"), tmp_path)
    assert capsys.readouterr() == ("", "::error::plain: a, b\n")
    github.report_error("m", SettingsError("m", file="drover.yml", line=3), tmp_path)
    assert capsys.readouterr().err == "::error file=drover.yml,line=3::m\n"


def test_annotation_file_is_relative_to_the_workspace(tmp_path: Path) -> None:
    assert github.annotation_file(str(tmp_path / "a" / "drover.yml"), tmp_path) == "a/drover.yml"
    assert github.annotation_file("./drover.yml", tmp_path) == "drover.yml"
    assert github.annotation_file("/elsewhere/drover.yml", tmp_path) == "/elsewhere/drover.yml"


def test_drover_warnings_become_warning_commands(capsys: pytest.CaptureFixture[str]) -> None:
    github.configure_logging(debug=False)
    log = logging.getLogger("drover")
    log.info("plain info")
    log.warning("layer %s will be detached\nsecond line", "arn:x")
    log.debug("hidden")
    assert capsys.readouterr().out == "plain info\n::warning::layer arn:x will be detached%0Asecond line\n"
    github.configure_logging(debug=True)
    log.debug("shown")
    assert capsys.readouterr().out == "::debug::shown\n"


def test_phases_are_groups_with_their_time_and_nested_phases_stay_inside(capsys: pytest.CaptureFixture[str]) -> None:
    timings = github.GroupedTimings()
    with timings.phase("compare"), timings.phase("archive"):
        print("working")
    with pytest.raises(RuntimeError), timings.phase("deploy"):
        raise RuntimeError("boom")
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "::group::Compare with the live function"
    assert lines[1] == "working"
    assert re.fullmatch(r"Compare with the live function: \d+\.\d\d s", lines[2])
    assert lines[3] == "::endgroup::"
    assert lines[4] == "::group::Deploy" and lines[-1] == "::endgroup::"
    assert sum(line.startswith("::group::") for line in lines) == 2
    assert set(timings) == {"compare", "archive", "deploy"}


# -- step summary ----------------------------------------------------------------------------


def test_summary_table_has_what_changed_and_why_digests_sizes_and_timings() -> None:
    result = a_result(
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:fn",
        code_sha256="abc=",
        version="7",
        requirements_layer_arn="arn:aws:lambda:us-east-1:123456789012:layer:fn-requirements:3",
        bytes_uploaded=2048,
        function_size=900,
        requirements_size=50_000,
        timings={"package": 0.5, "deploy": 1.25},
        actions=[DeployAction(action="update-code", target="fn", reason="CodeSha256 a|b <differs>", done=True)],
        warnings=["layer x will be detached"],
    )
    summary = github.render_summary(result)
    assert summary.startswith("### drover deployed fn (staging)\n")
    for row in (
        "| Stage | staging |",
        "| Function | fn in us-east-1 |",
        f"| Function digest | {'f' * 64} |",
        "| Code SHA-256 | abc= |",
        "| Version | 7 |",
        "| Uploaded | 2.00 KiB |",
        "| Requirements layer | arn:aws:lambda:us-east-1:123456789012:layer:fn-requirements:3 |",
        "| update-code | fn | CodeSha256 a\\|b &lt;differs&gt; | done |",
        "| deploy | 1.25 |",
        "- layer x will be detached",
    ):
        assert row in summary, row
    assert "900" in summary or "900.00 B" in summary


def test_summary_of_an_unchanged_function_and_of_a_dry_run() -> None:
    assert "Nothing to change" in github.render_summary(a_result())
    assert "is up to date" in github.render_summary(a_result())
    dry = github.render_summary(
        a_result(
            mode="dry-run", actions=[DeployAction(action="publish-layer", target="fn", reason="new digest", done=False)]
        )
    )
    assert "dry run" in dry and "| publish-layer | fn | new digest | would do |" in dry


def test_summary_is_appended_and_capped_at_one_mebibyte(tmp_path: Path) -> None:
    summary_file = tmp_path / "step_summary"
    summary_file.write_text("earlier\n")
    huge = [DeployAction(action="tag", target="fn", reason="x" * 10_000, done=True)] * 200
    github.write_summary(a_result(actions=huge), str(summary_file))
    text = summary_file.read_text()
    assert text.startswith("earlier\n### drover")
    assert len(text.encode()) <= github.SUMMARY_LIMIT + len("earlier\n")
    assert text.rstrip().endswith("result-json has everything)")
    github.write_summary(a_result(), None)  # no summary file: nothing happens


def test_each_sts_retry_is_logged_with_awss_reason(
    moto_server: Any, sts_at: Any, retry_sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.INFO, logger="drover"),
        fake_sts(moto_server.endpoint, [THROTTLED, THROTTLED]) as sts,
    ):
        assume_role_with_web_identity(
            ROLE, make_jwt(CLAIMS), "s1", 900, "us-east-1", session=sts_at(sts.endpoint), attempts=4
        )
    assert caplog.text.count("AssumeRoleWithWebIdentity failed (Throttling: Rate exceeded)") == 2


# -- round two (issue 16): grammar, workspace paths, output channels, log lines ----------------------


@pytest.mark.parametrize("audience", ["sts.amazonaws.com", "https://github.com/octo-org", "api://AzureADTokenExchange"])
def test_an_audience_in_its_grammar_is_accepted(monkeypatch: pytest.MonkeyPatch, audience: str) -> None:
    set_inputs(monkeypatch, stage="prod", audience=audience)
    assert github.parse_inputs().audience == audience


@pytest.mark.parametrize("audience", ["sts\n::add-mask::x", "sts amazonaws", "x" * 257, "stś"])
def test_an_audience_outside_its_grammar_is_refused(monkeypatch: pytest.MonkeyPatch, audience: str) -> None:
    set_inputs(monkeypatch, stage="prod", audience=audience)
    with pytest.raises(github.ActionInputError, match=r"input 'audience' is .*printable ASCII without spaces"):
        github.parse_inputs()


def test_paths_inside_the_workspace_are_kept_as_given(tmp_path: Path) -> None:
    (tmp_path / "inside").mkdir()
    assert github.inside_workspace("install-path", tmp_path / "inside", tmp_path) == tmp_path / "inside"
    assert github.inside_workspace("install-path", tmp_path / "not-yet", tmp_path) == tmp_path / "not-yet"


def test_a_symlink_out_of_the_workspace_is_refused(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to("/etc", target_is_directory=True)
    with pytest.raises(github.ActionInputError, match="resolves to '/etc', outside the workspace"):
        github.inside_workspace("install-path", tmp_path / "link", tmp_path)


def test_output_files_are_checked_before_any_work(tmp_path: Path) -> None:
    github.check_output_files({"GITHUB_OUTPUT": str(tmp_path / "out"), "GITHUB_STEP_SUMMARY": str(tmp_path / "s")})
    with pytest.raises(github.ActionInputError, match=r"\$GITHUB_STEP_SUMMARY .* cannot be written: Is a directory"):
        github.check_output_files({"GITHUB_STEP_SUMMARY": str(tmp_path)})


def test_a_report_that_cannot_be_written_after_a_deploy_names_what_was_done(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = a_result(actions=[DeployAction(action="update-code", target="fn", reason="changed", done=True)])
    (tmp_path / "output").mkdir()  # the runner's file turned into a directory after the check
    with pytest.raises(github.ReportError) as raised:
        github.report(result, {"GITHUB_OUTPUT": str(tmp_path / "output")})
    assert raised.value.exit_code == 1
    assert str(raised.value) == (
        "the run finished; it did: update-code fn, but its outputs could not be written: Is a directory"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain\nlines", "plain\nlines"),
        ("a\n::error::x", "a\n> ::error::x"),
        ("a\r::add-mask::x", "a\n> ::add-mask::x"),
        ("  ::warning::x", ">   ::warning::x"),
        ("##[error]x", "> ##[error]x"),
    ],
)
def test_log_safe_neutralizes_lines_that_would_start_a_command(text: str, expected: str) -> None:
    assert github.log_safe(text) == expected


def test_the_role_credentials_refresh_with_a_new_oidc_token_and_assume_role(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run longer than role-duration-seconds (a rollout's waits) renews the credentials the way it got them."""
    set_inputs(monkeypatch, stage="prod", **{"role-to-assume": ROLE, "role-duration-seconds": "900"})
    with oidc_server() as server:
        request = github.IdTokenRequest(server.url, server.request_token)
        credentials = github.obtain_credentials(github.parse_inputs(), request, "us-east-1", github.retry_tuning({}))
        assert credentials.refresh is not None and len(server.requests) == 1
        renewed = credentials.refresh()
    assert len(server.requests) == 2  # a fresh ID token for each AssumeRoleWithWebIdentity
    assert renewed.access_key_id and renewed.expiration is not None
