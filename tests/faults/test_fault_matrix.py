"""Fault matrix of the deploy engine: every fault drover must survive, against the real moto server.

Each fault is injected into drover's own boto3 clients (tests/faults/injectors.py); the rest of
every call is real. Faults go on `before-send`, per attempt, so botocore's retry modes (adaptive
for Lambda, standard for S3: max_attempts 6, i.e. 7 attempts) see them as they would see AWS's
answers; their backoff sleeps and rate-limiter waits are patched to 0 and drover's own waits use a
no-op sleep, so the suite stays fast.
What moto does not do is emulated on the answers: `LastUpdateStatus` InProgress/Failed
(GetFunction's answer rewritten on `after-call`) and the `RevisionId` precondition (moto neither
returns nor checks one; `RevisionCheck` derives a RevisionId from the live function and refuses a
stale one with a 412 `PreconditionFailedException`).

Every test asserts that drover either retries to success or stops with one clear `UpdateError`
line naming the call and AWS's message; that Lambda's state afterwards is exactly what drover
reported done (its partial result when it failed: nothing it did not report has changed); and
that a plain rerun converges: it makes only the remaining writes, and the function then runs
exactly the package (code, layers, tags, one layer version), configuration drover does not own
untouched. docs/faults.md holds the same table (`test_the_matrix_is_documented_and_names_real_tests`).

| # | Fault (where it is injected) | Expected outcome | Test |
|---|---|---|---|
| 1 | `TooManyRequestsException` (HTTP 429) on `UpdateFunctionCode`, first 2 attempts | botocore retries; the deploy succeeds; a rerun makes no write | `test_transient_fault_is_retried_to_success[throttled-429-UpdateFunctionCode]` |
| 2 | `ThrottlingException` on `PublishLayerVersion`, first 2 attempts | retried; success; rerun makes no write | `test_transient_fault_is_retried_to_success[throttling-PublishLayerVersion]` |
| 3 | `TooManyRequestsException` on every `UpdateFunctionCode` attempt | after 7 attempts: `UpdateFunctionCode failed: TooManyRequestsException: Rate exceeded — Lambda throttled the request after retries; rerun later`; only the layer publish happened (and was reported); rerun: code, layers, tags (layer reused) | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[throttled-429-UpdateFunctionCode]` |
| 4 | `ThrottlingException` on every `TagResource` attempt | `TagResource failed: ThrottlingException: Rate exceeded — AWS throttled the request after retries; rerun later`; code and layers done and reported; rerun: `TagResource` only | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[throttling-TagResource]` |
| 5 | HTTP 500 `ServiceException` on `UpdateFunctionConfiguration`, first 2 attempts | retried; success | `test_transient_fault_is_retried_to_success[http-500-UpdateFunctionConfiguration]` |
| 6 | HTTP 503 (a load balancer's HTML page) on `GetFunction`, first 2 attempts | retried; success | `test_transient_fault_is_retried_to_success[http-503-GetFunction]` |
| 7 | HTTP 500 on every `UpdateFunctionConfiguration` attempt | `UpdateFunctionConfiguration failed: ServiceException: An internal error occurred`; rerun: layers list, tags | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[http-500-UpdateFunctionConfiguration]` |
| 8 | HTTP 503 page on every `PublishLayerVersion` attempt | `PublishLayerVersion failed: 503: Service Unavailable`; nothing written; rerun: the whole deploy | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[http-503-PublishLayerVersion]` |
| 9 | S3 HTTP 503 `SlowDown` on `PutObject`, first 2 attempts | retried; archives go through S3; no warning | `test_transient_fault_is_retried_to_success[s3-503-SlowDown-PutObject]` |
| 10 | S3 `SlowDown` on every `PutObject` attempt (archives under the direct limit) | direct upload, one warning per archive quoting `SlowDown: Please reduce your request rate.`; success | `test_s3_put_that_stays_throttled_falls_back_to_a_direct_upload` |
| 11 | S3 `AccessDenied` on `PutObject`, small archive | direct upload with a warning quoting S3's message | `tests/test_deploy.py::test_s3_failure_falls_back_to_direct_upload_with_a_warning` |
| 12 | S3 `AccessDenied` on `PutObject`, archive over the direct limit | `uploading function.zip to s3://… failed (…), and at … it is over the … direct upload limit`; no code update | `tests/test_deploy.py::test_s3_failure_over_the_direct_limit_is_a_clear_error` |
| 13 | connection reset on `UpdateFunctionCode`, first 2 attempts | retried; success | `test_transient_fault_is_retried_to_success[connection-reset-UpdateFunctionCode]` |
| 14 | connection reset on every `UpdateFunctionCode` attempt | `UpdateFunctionCode failed: Connection was closed before we received a valid response from endpoint URL: "…"`; rerun: code, layers, tags | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[connection-reset-UpdateFunctionCode]` |
| 15 | connection reset on every `ListVersionsByFunction` attempt (publish + alias; a code change after a first deploy, so the plan looks for a version to reuse) | `ListVersionsByFunction failed: Connection was closed …` while planning: nothing written; rerun: `UpdateFunctionCode`, `TagResource`, `PublishVersion`, `UpdateAlias` | `test_versions_listing_that_keeps_failing_stops_the_plan_before_any_write` |
| 16 | connection refused on `ListLayerVersions`, first attempt | retried; success | `test_transient_fault_is_retried_to_success[connection-refused-ListLayerVersions]` |
| 17 | connection refused on every `ListLayerVersions` attempt | `ListLayerVersions failed: Could not connect to the endpoint URL: "…"`; nothing written; rerun: the whole deploy | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[connection-refused-ListLayerVersions]` |
| 18 | read timeout on `TagResource`, first attempt | retried; success | `test_transient_fault_is_retried_to_success[read-timeout-TagResource]` |
| 19 | read timeout on every `GetFunction` attempt | `GetFunction failed: Read timeout on endpoint URL: "…"`; nothing written; rerun: the whole deploy | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[read-timeout-GetFunction]` |
| 20 | read timeout on every `GetAlias` attempt (alias set) | `GetAlias failed: Read timeout …` while planning, so nothing is written; rerun: the whole deploy, `PublishVersion`, `CreateAlias` | `test_persistent_fault_is_one_clear_error_and_a_rerun_converges[read-timeout-GetAlias]` |
| 21 | `UpdateFunctionCode` applied, but its answer lost (read timeout); botocore's retry carries a now stale `RevisionId` → 412 | drover re-reads, finds its own code live, carries on (was: a `PreconditionFailedException` error while the code had changed: fixed); success; rerun makes no write | `test_answer_lost_after_the_update_landed_is_recognised_as_done[read-timeout-UpdateFunctionCode]` |
| 22 | `UpdateFunctionConfiguration` applied, answer lost (connection reset), retry → 412 | as 21 | `test_answer_lost_after_the_update_landed_is_recognised_as_done[connection-reset-UpdateFunctionConfiguration]` |
| 23 | `PublishLayerVersion` applied, answer lost (read timeout) | botocore's retry publishes a second, identical version; drover converges on the lowest version recording the digest (the first), attaches and reports it, and deletes the unused duplicate (as for concurrent matrix jobs); rerun makes no write | `test_answer_lost_after_a_layer_publish_converges_on_the_first_version_and_deletes_the_duplicate` |
| 24 | `ResourceConflictException` on the first `UpdateFunctionCode`, `LastUpdateStatus` `InProgress` twice | drover waits for the update, retries, succeeds; rerun makes no write | `test_conflict_while_an_update_is_in_progress_waits_and_retries` |
| 25 | `ResourceConflictException` on every `UpdateFunctionConfiguration` | after 6 calls: `UpdateFunctionConfiguration failed: ResourceConflictException: … — another update is still in progress; rerun drover when it has finished`; rerun: layers list, tags | `test_conflict_that_outlasts_the_retries_is_a_clear_error` |
| 26 | `LastUpdateStatus` `InProgress` when drover starts | drover waits, then deploys | `test_an_update_in_progress_when_drover_starts_is_waited_out` |
| 27 | `LastUpdateStatus` `InProgress` then `Failed` with a reason after `UpdateFunctionCode` (Lambda keeps the previous code) | `UpdateFunctionCode was accepted, but Lambda reports the update of fn failed: <reason>`; no code update reported, the previous code live; rerun (GetFunction still says `Failed`): `UpdateFunctionCode`, `TagResource` | `test_update_lambda_reports_failed_quotes_the_reason_and_a_rerun_converges`, `tests/test_deploy.py::test_a_failed_update_is_an_update_error_quoting_lambdas_reason` |
| 28 | STS `Throttling` then 503 on `AssumeRoleWithWebIdentity` | retried with backoff; credentials; the Action's deploy goes on | `tests/test_github.py::test_sts_throttling_is_retried_until_moto_answers`, `tests/test_action_container.py::test_sts_throttling_is_retried_then_the_deploy_goes_on` |
| 29 | STS throttled beyond the attempts | `AssumeRoleError` with code `Throttling` | `tests/test_github.py::test_sts_gives_up_after_the_attempts` |
| 30 | STS `AccessDenied` | not retried; one error naming the role, AWS's message and the token's claims | `tests/test_github.py::test_sts_access_denied_is_not_retried`, `tests/test_action_container.py::test_sts_access_denied_is_not_retried_and_shows_the_token_claims` |
| 31 | GitHub OIDC endpoint down, slow, or answering 500 | retried with a timeout per attempt, then `could not get an OIDC token from GitHub after 3 attempts …`; no AWS call | `tests/test_action_container.py::test_oidc_endpoint_trouble_is_retried_then_a_clear_error`, `tests/test_github.py::test_fetch_retries_a_slow_answer_after_its_timeout`, `tests/test_github.py::test_fetch_retries_server_errors_with_jittered_backoff_then_succeeds`, `tests/test_github.py::test_fetch_gives_up_after_the_attempts_with_a_clear_error` |
| 32 | process interrupted right after each write: `PublishLayerVersion`, `UpdateFunctionCode`, `UpdateFunctionConfiguration`, `TagResource`, `PublishVersion`, `CreateAlias` | the rerun makes only the remaining writes; one layer version and one function version in total; the published layer is reused and attached | `test_killed_after_a_write_the_rerun_finishes_without_duplicates` (6 cases) |
| 33 | drover's process SIGKILLed right after `PublishLayerVersion` | the layer is published, nothing else changed; the rerun reuses it (one `PublishLayerVersion` in total) and attaches it | `test_sigkill_between_layer_publish_and_configuration_update_then_the_rerun_reuses_the_layer` |
| 34 | out of band between two runs: code edited, layers detached | the rerun makes exactly `UpdateFunctionCode` + `UpdateFunctionConfiguration`; memory and environment untouched | `test_out_of_band_changes_between_runs_are_repaired_and_nothing_else_is_touched`, `tests/test_deploy.py::test_out_of_band_code_change_is_detected_and_repaired` |
| 35 | concurrent writer attaches a layer between drover's read and its `UpdateFunctionConfiguration` (RevisionId checked) | `UpdateFunctionConfiguration failed: PreconditionFailedException: … — the function changed while drover was deploying (another deploy?); rerun drover`; the other writer's layer stays (no silent detach); the rerun warns naming it, then converges | `test_concurrent_layer_change_is_a_revision_conflict_not_a_silent_detach` |
| 36 | concurrent deploy pushes other code between drover's read and its `UpdateFunctionCode` | `UpdateFunctionCode failed: PreconditionFailedException: …`; the other code stays live (no lost update); rerun converges | `test_concurrent_code_deploy_is_a_revision_conflict_not_a_lost_update` |
| 37 | concurrent writer's update still in progress at drover's `UpdateFunctionCode` (409, then a stale RevisionId) | drover waits, retries with its RevisionId, gets 412: `UpdateFunctionCode failed: PreconditionFailedException: …`; the other writer's change kept; rerun converges | `test_concurrent_update_in_progress_at_write_time_ends_in_a_conflict_not_an_overwrite` |
| 38 | a small file removed after the walk, before its read (hook after `layout_package`) | `install/app/main.py changed while packaging (it was removed) — rerun drover`; exit 2; `--archive-dir` empty | `tests/faults/test_races.py::test_a_file_removed_after_the_walk` |
| 39 | a large (streamed, > 32 MiB) file removed after the walk | `…model.bin changed while packaging (it was removed) — rerun drover`; exit 2; nothing left | `tests/faults/test_races.py::test_a_large_streamed_file_removed_after_the_walk` |
| 40 | a small file grows after the walk | `main.py changed while packaging (45 bytes when listed, 52 bytes now) — rerun drover`; exit 2 | `tests/faults/test_races.py::test_a_small_file_that_grows_after_the_walk` |
| 41 | a large streamed file grows after the walk (was archived silently) | `model.bin changed while packaging (33554433 bytes when listed, …) — rerun drover`; exit 2; nothing left | `tests/faults/test_races.py::test_a_large_streamed_file_that_grows_after_the_walk` |
| 42 | a file replaced by a FIFO after the walk (a blocking `open` would hang forever) | opened `O_NONBLOCK`, `fstat` refuses it: `main.py changed while packaging (no longer a regular file) — rerun drover`; exit 2; no hang | `tests/faults/test_races.py::test_a_file_replaced_by_a_fifo_does_not_block` |
| 43 | a file replaced (rename over it) by another of the same size | the inode differs from the walk's: `changed while packaging (replaced by another file)`; exit 2 | `tests/faults/test_races.py::test_a_file_replaced_by_another_of_the_same_size` |
| 44 | a file rewritten in place, same size, new mtime | `changed while packaging (modified since it was listed)`; exit 2 | `tests/faults/test_races.py::test_a_file_rewritten_in_place_with_the_same_size` |
| 45 | a file removed between listing its directory and its `stat` (hook in the walk) | `install/app/main.py changed while packaging (it was removed) — rerun drover`; exit 2 | `tests/faults/test_races.py::test_a_file_removed_between_listing_and_stat` |
| 46 | a directory removed between listing its parent and listing it | `install/app changed while packaging (it was removed) — rerun drover`; exit 2 | `tests/faults/test_races.py::test_a_directory_removed_before_it_is_listed` |
| 47 | `KeyboardInterrupt` (SIGINT) while the archive is being written, a spool file open | exit 130, `drover: interrupted`; no `.partial`, no spool directory, `--archive-dir` empty | `tests/faults/test_races.py::test_archive_writing_interrupted_leaves_no_partial[KeyboardInterrupt]` |
| 48 | `SystemExit` (what the adapters' SIGTERM handler raises) while the archive is being written | the exit propagates; no `.partial`, no spool directory, `--archive-dir` empty | `tests/faults/test_races.py::test_archive_writing_interrupted_leaves_no_partial[SystemExit]` |
| 49 | `--json` with stdout on `/dev/full` (in-process) | exit 1, one line `the run finished, but its report could not be written: No space left on device`; no traceback | `tests/faults/test_races.py::test_json_on_a_full_device_is_one_error_line` |
| 50 | `--json` with stdout a pipe whose reader is gone (in-process) | exit 1, one line `… could not be written: Broken pipe`; no traceback | `tests/faults/test_races.py::test_json_into_a_closed_pipe_is_one_error_line` |
| 51 | the same two in a child process (`python -m drover … > /dev/full`, and `| head -c0`) | exit 1, one line; no traceback, no "Exception ignored" from the flush at exit | `tests/faults/test_races.py::test_json_to_a_broken_stdout_in_a_child_process` |
| 52 | a real deploy (moto) whose `--json` report cannot be written (`/dev/full`) | exit 1; stderr says what was done: `the run finished; it did: publish-layer …, update-code fn, update-layers fn, tag fn, but its report could not be written: …`; the code is live | `tests/faults/test_races.py::test_a_deploy_whose_report_cannot_be_written_says_what_it_did` |
| 53 | the OIDC token endpoint redirects to another origin | `GitHub's OIDC token endpoint redirected to another origin …`; the other origin gets no request (the bearer token stays home) | `tests/faults/test_races.py::test_a_redirect_to_another_origin_never_gets_the_bearer_token` |
| 54 | the OIDC token endpoint redirects within its own origin | followed; the token is returned | `tests/faults/test_races.py::test_a_redirect_within_the_origin_is_followed` |
| 55 | `ACTIONS_ID_TOKEN_REQUEST_URL` is a `file:` URL | `ACTIONS_ID_TOKEN_REQUEST_URL is not an http(s) URL …`; the file is not read | `tests/faults/test_races.py::test_a_file_url_is_not_a_token_endpoint` |
| 56 | the OIDC endpoint drips its body a byte every 0.2 s (each read within the per-read timeout) | cut at the overall deadline (`DROVER_OIDC_DEADLINE_SECONDS`, default 60 s): `could not get an OIDC token … in at most 1 s` | `tests/faults/test_races.py::test_a_dripping_endpoint_is_cut_at_the_overall_deadline` |
| 57 | a logged value (a token's `aud` claim) holding line breaks followed by `::add-mask::…`, `  ::error::…` and `##[warning]…` | every such line is prefixed `> `: no log line starts a workflow command | `tests/faults/test_races.py::test_no_logged_line_can_start_a_workflow_command` |
| 58 | a real SIGTERM to a child (with the exit-raising handler the adapters install) once its `.partial` exists, 120 MB of incompressible files | exit 143, no traceback; `--archive-dir` holds no `.partial`, spool or scratch directory | `tests/faults/test_races.py::test_a_real_sigterm_while_the_archive_is_written_leaves_nothing` |
| 59 | a real SIGTERM to a multi-stage CLI run while one stage's code update is held (the other stage done) | exit 143; the line names what the stages wrote (`publish-layer ARN`, …), never "nothing was changed" | `tests/test_interrupt.py::test_cli_sigterm_in_a_multi_stage_run_names_what_the_stages_wrote` |
| 60 | a real SIGTERM to a promotion while the target's layers update is held | exit 143; `written to AWS: update-code fn2` | `tests/test_interrupt.py::test_cli_sigterm_during_a_promotion_names_what_was_written` |
| 61 | a deploy whose tag step fails (503, every retry) after the layer, code and layers writes | exit 1; the error line ends `(written to AWS before the failure: publish-layer ARN, update-code fn, update-layers fn; …)` | `tests/test_interrupt.py::test_cli_failure_after_writes_names_what_was_written` |
| 62 | stdout or stderr missing (closed before the start: `sys.stdout is None`), closed during the run (`ValueError`), full (`ENOSPC`), a broken pipe (`EPIPE`) or failing on flush (`EIO`): every combination of the two, a successful `--package-only` run and a bad input, with and without `--json` (in-process) | one writer (`drover/streams.py`) turns each failure into one `OSError`: a bad input exits 2 with its `drover: error:` line last whenever stderr works (and its JSON error object whenever stdout does); a run whose report cannot be written exits 1, its last stderr line `the run finished, but its report could not be written: …`; with `--json` the text on stderr is a log, never a failure; no traceback | `tests/faults/test_streams.py::test_every_stream_failure_gives_the_same_last_line_and_exit_code` |
| 63 | the same stream failures around the Action with a bad input (in-process) | exit 2 every time; its `::error::` annotation is the last stderr line whenever stderr works; actions-toolkit's stdout commands drop what a failing stdout cannot take | `tests/faults/test_streams.py::test_the_action_gives_exit_2_and_its_annotation_whatever_its_streams_do` |
| 64 | `$GITHUB_OUTPUT`/`$GITHUB_STEP_SUMMARY` the workspace's owner cannot open (a self-hosted runner whose file-command directory is root's; simulated by moving the directory away once the entrypoint opened the files) | entrypoint.py opens both for appending while still root (never creating one) and hands the descriptors to the Action (`DROVER_FILE_COMMAND_FDS`), which writes its outputs and summary through them; `$RUNNER_TEMP` and every parent it creates belong to the workspace's owner | `tests/test_privilege_drop.py::test_the_action_writes_through_the_files_opened_before_the_drop`, `tests/test_privilege_drop.py::test_runner_temp_and_its_new_parents_belong_to_the_workspace_owner` |
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError, ReadTimeoutError
from botocore.retries.bucket import TokenBucket
from botocore.retries.standard import ExponentialBackoff

from drover import UpdateError
from drover.core import Drover
from drover.deploy import (
    CONFLICT_RETRIES,
    LAYER_DESCRIPTION_PREFIX,
    TAG_CODE_SHA256,
    TAG_FUNCTION_DIGEST,
    TAG_REQUIREMENTS_DIGEST,
)
from drover.models import DeployAction, DeployResult
from tests.aws import REGION, Infrastructure, zip_bytes
from tests.deploy_support import Project
from tests.faults.injectors import (
    Action,
    Faults,
    RevisionCheck,
    answer_lost,
    connection_refused,
    connection_reset,
    gateway_error,
    lambda_error,
    read_timeout,
    s3_error,
)

ROOT = Path(__file__).resolve().parents[2]
ATTEMPTS = 7  # drover.deploy.RETRY_CONFIG / LAMBDA_RETRY_CONFIG: max_attempts 6 (botocore counts retries there: 1 + 6)
FIRST_DEPLOY = ["PublishLayerVersion", "UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"]
ENVIRONMENT = {"OWNED_BY": "infrastructure"}
FAILED_REASON = (
    "Lambda was unable to configure your environment variables because the KMS key is invalid for CreateGrant."
)


# -- the harness: a project, its faults, and the live state before and after each run -------------


@dataclass(frozen=True)
class Live:
    """What Lambda reports about the function, read with a plain client (no faults, no emulation)."""

    code_sha256: str
    layers: tuple[str, ...]
    tags: dict[str, str]
    environment: dict[str, str]
    memory: int
    layer_versions: tuple[str, ...]
    versions: tuple[str, ...]
    alias: str | None

    @classmethod
    def read(cls, client: Any) -> Live:
        function = client.get_function(FunctionName="fn")
        configuration = function["Configuration"]
        layer_versions = client.list_layer_versions(LayerName="fn-requirements")["LayerVersions"]
        versions = client.list_versions_by_function(FunctionName="fn")["Versions"]
        try:
            alias: str | None = client.get_alias(FunctionName="fn", Name="live")["FunctionVersion"]
        except client.exceptions.ResourceNotFoundException:
            alias = None
        return cls(
            code_sha256=configuration["CodeSha256"],
            layers=tuple(layer["Arn"] for layer in configuration.get("Layers", [])),
            tags={key: value for key, value in (function.get("Tags") or {}).items() if key.startswith("drover:")},
            environment=dict(configuration.get("Environment", {}).get("Variables", {})),
            memory=configuration["MemorySize"],
            layer_versions=tuple(sorted(version["LayerVersionArn"] for version in layer_versions)),
            versions=tuple(version["Version"] for version in versions if version["Version"] != "$LATEST"),
            alias=alias,
        )


@dataclass
class Outcome:
    """One run: what drover reported (its partial result when it failed), its error, and Lambda's state."""

    result: DeployResult | None
    error: UpdateError | None
    writes: list[str]
    calls: Counter[str]
    attempts: Counter[str]
    before: Live
    after: Live

    def done(self, action: str) -> DeployAction | None:
        actions = self.result.actions if self.result else []
        return next((item for item in actions if item.action == action and item.done), None)

    @property
    def message(self) -> str:
        assert self.error is not None, "the run did not fail"
        return str(self.error)


@dataclass
class Deployment:
    project: Project
    infra: Infrastructure
    faults: Faults
    reports: list[DeployResult]
    client: Any
    expected_code: str = ""  # CodeSha256 of the package's function zip: what Lambda must end up running

    def run(self, **options: Any) -> Outcome:
        self.project.hooks = [self.faults.install]
        before = self.live()
        reported = len(self.reports)
        error: UpdateError | None = None
        try:
            result: DeployResult | None = self.project.deploy(**options)
        except UpdateError as raised:
            error = raised
            result = self.reports[-1] if len(self.reports) > reported else None
        return Outcome(
            result,
            error,
            list(self.project.writes),
            self.project.recorder.count(),
            Counter(self.faults.attempts),
            before,
            self.live(),
        )

    def rerun(self, **options: Any) -> Outcome:
        """A plain rerun: no faults (Lambda's emulated behaviour stays)."""
        self.faults.clear()
        return self.run(**options)

    def live(self) -> Live:
        return Live.read(self.client)

    def code_sha256_of_package(self) -> str:
        """CodeSha256 of the function zip drover builds for the current tree (package-only: no AWS call)."""
        archive_dir = self.project.root / "expected"
        result = self.project.deploy(package_only=True, archive_dir=archive_dir)
        assert result.function_archive is not None
        data = Path(result.function_archive).read_bytes()
        return base64.b64encode(hashlib.sha256(data).digest()).decode()


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """botocore sleeps up to seconds between attempts, and adaptive mode (Lambda's client) waits for its
    rate limiter's tokens once throttled; the attempts stay, the sleeps and waits go."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0.0)
    monkeypatch.setattr(TokenBucket, "acquire", lambda self, amount=1, block=True: True)


@pytest.fixture
def reports(monkeypatch: pytest.MonkeyPatch) -> list[DeployResult]:
    """The DeployResult of each run, kept even when the run fails (its actions are what drover reported done)."""
    results: list[DeployResult] = []
    original = Drover.track

    def track(self: Drover, result: DeployResult) -> None:
        results.append(result)
        original(self, result)

    monkeypatch.setattr(Drover, "track", track)
    return results


@pytest.fixture
def deployment(tmp_path: Path, infra: Infrastructure, reports: list[DeployResult]) -> Deployment:
    project = Project(tmp_path)
    project.write("app/__init__.py", "def handler(event, context):\n    return 'v1'\n")
    project.write("dep/__init__.py", "VERSION = 1\n")
    infra.function(Environment={"Variables": ENVIRONMENT}, MemorySize=256, Timeout=30)
    setup = Deployment(project, infra, Faults(), reports, infra.client("lambda"))
    setup.expected_code = setup.code_sha256_of_package()
    return setup


def with_revision_check(deployment: Deployment) -> RevisionCheck:
    """Emulate Lambda's RevisionId precondition for this test (moto neither returns nor checks it)."""
    deployment.faults.revisions = RevisionCheck(deployment.client)
    return deployment.faults.revisions


# -- the assertions every fault shares ------------------------------------------------------------


def assert_report_matches_live(outcome: Outcome, others: dict[str, Any] | None = None) -> None:
    """Lambda's state afterwards is what drover reported done; what it did not report is unchanged.

    others: the Live fields another writer changed during the run (their new values).
    """
    before, after = replace(outcome.before, **(others or {})), outcome.after
    code = outcome.done("update-code")
    if code:
        assert code.reason == f"CodeSha256 is now {after.code_sha256}"
    else:
        assert after.code_sha256 == before.code_sha256, "the code changed, but drover did not report it"
    layers = outcome.done("update-layers")
    if layers:
        assert layers.reason == f"layers are now {list(after.layers)}"
    else:
        assert after.layers == before.layers, "the layers changed, but drover did not report it"
    assert (after.tags != before.tags) == bool(outcome.done("tag"))
    published = {
        item.reason.split()[1]  # "published ARN (requirements digest …)"
        for item in (outcome.result.actions if outcome.result else [])
        if item.action == "publish-layer" and item.done
    }
    assert set(after.layer_versions) - set(before.layer_versions) == published
    version = outcome.done("publish-version")
    assert set(after.versions) - set(before.versions) == (
        {version.reason.removeprefix("version ")} if version else set()
    )
    if outcome.done("point-alias"):
        assert outcome.result is not None and after.alias == outcome.result.version
    else:
        assert after.alias == before.alias
    if outcome.error is None:
        assert outcome.result is not None
        assert outcome.result.code_sha256 == after.code_sha256
        if outcome.result.requirements_layer_arn:
            assert after.layers[-1] == outcome.result.requirements_layer_arn


def assert_converged(
    deployment: Deployment, outcome: Outcome, remaining: list[str], *, layer_versions: int = 1
) -> None:
    """The run succeeded, made exactly the remaining writes, and Lambda now runs exactly the package."""
    assert outcome.error is None, outcome.error
    assert sorted(outcome.writes) == sorted(remaining)
    assert_report_matches_live(outcome)
    result, after = outcome.result, outcome.after
    assert result is not None
    assert after.code_sha256 == deployment.expected_code
    assert list(after.layers) == [result.requirements_layer_arn]
    assert after.tags == {
        TAG_FUNCTION_DIGEST: result.function_digest,
        TAG_REQUIREMENTS_DIGEST: result.requirements_digest,
        TAG_CODE_SHA256: deployment.expected_code,
    }
    assert (after.environment, after.memory) == (outcome.before.environment, outcome.before.memory), (
        "configuration drover does not own is untouched"
    )
    assert len(after.layer_versions) == layer_versions
    (attached,) = after.layers
    name, number = attached.rsplit(":", 2)[-2:]
    layer = deployment.client.get_layer_version(LayerName=name, VersionNumber=int(number))
    assert layer["Description"] == LAYER_DESCRIPTION_PREFIX + str(result.requirements_digest)
    if deployment.project.stage.get("alias"):
        assert after.alias == result.version and after.versions == (result.version,)


def assert_clear_error(outcome: Outcome, pattern: str, others: dict[str, Any] | None = None) -> None:
    """One UpdateError line that names the call and quotes AWS's message; the live state is what drover reported."""
    assert outcome.error is not None, "the run should have failed"
    assert "\n" not in outcome.message
    assert re.search(pattern, outcome.message), outcome.message
    assert_report_matches_live(outcome, others)


# -- transient faults: botocore retries them and the run succeeds --------------------------------


@dataclass(frozen=True)
class Case:
    operation: str
    action: Action
    times: int  # the first attempts that fail; the next one goes through
    stage: dict[str, Any] = field(default_factory=dict)


THROTTLED = lambda_error(429, "TooManyRequestsException", "Rate exceeded")
THROTTLING = lambda_error(400, "ThrottlingException", "Rate exceeded")
SERVER_ERROR = lambda_error(500, "ServiceException", "An internal error occurred")
UNAVAILABLE = gateway_error(503, "Service Unavailable")
SLOW_DOWN = s3_error(503, "SlowDown", "Please reduce your request rate.")
BUCKET = {"region_name": REGION, "bucket_name": "deploy-artifacts"}

TRANSIENT = {
    "throttled-429-UpdateFunctionCode": Case("UpdateFunctionCode", THROTTLED, 2),
    "throttling-PublishLayerVersion": Case("PublishLayerVersion", THROTTLING, 2),
    "http-500-UpdateFunctionConfiguration": Case("UpdateFunctionConfiguration", SERVER_ERROR, 2),
    "http-503-GetFunction": Case("GetFunction", UNAVAILABLE, 2),
    "s3-503-SlowDown-PutObject": Case("PutObject", SLOW_DOWN, 2, {"upload_bucket": BUCKET}),
    "connection-reset-UpdateFunctionCode": Case("UpdateFunctionCode", connection_reset, 2),
    "read-timeout-TagResource": Case("TagResource", read_timeout, 1),
    "connection-refused-ListLayerVersions": Case("ListLayerVersions", connection_refused, 1),
}


@pytest.mark.parametrize("case", list(TRANSIENT.values()), ids=list(TRANSIENT))
def test_transient_fault_is_retried_to_success(deployment: Deployment, infra: Infrastructure, case: Case) -> None:
    deployment.project.stage.update(case.stage)
    if "upload_bucket" in case.stage:
        infra.bucket("deploy-artifacts")
    deployment.faults.add(case.operation, case.action, case.times)

    outcome = deployment.run()

    assert outcome.attempts[case.operation] == outcome.calls[case.operation] + case.times, "botocore retried"
    writes = FIRST_DEPLOY + (["PutObject", "PutObject"] if "upload_bucket" in case.stage else [])
    assert_converged(deployment, outcome, writes)
    assert outcome.result is not None and outcome.result.warnings == []
    if "upload_bucket" in case.stage:
        assert "S3Key" in deployment.project.parameters_of("UpdateFunctionCode")[-1], "the upload went through S3"

    rerun = deployment.rerun()
    assert_converged(deployment, rerun, [])


# -- persistent faults: retries run out, one clear error, and a plain rerun finishes the job --------


@dataclass(frozen=True)
class Persistent:
    operation: str
    action: Action
    error: str
    remaining: list[str]
    stage: dict[str, Any] = field(default_factory=dict)


ALIAS = {"alias": "live"}
PERSISTENT = {
    "throttled-429-UpdateFunctionCode": Persistent(
        "UpdateFunctionCode",
        THROTTLED,
        r"^UpdateFunctionCode failed: TooManyRequestsException: Rate exceeded — Lambda throttled the request after retries",
        ["UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"],
    ),
    "throttling-TagResource": Persistent(
        "TagResource",
        THROTTLING,
        r"^TagResource failed: ThrottlingException: Rate exceeded — AWS throttled the request after retries",
        ["TagResource"],
    ),
    "http-500-UpdateFunctionConfiguration": Persistent(
        "UpdateFunctionConfiguration",
        SERVER_ERROR,
        r"^UpdateFunctionConfiguration failed: ServiceException: An internal error occurred$",
        ["UpdateFunctionConfiguration", "TagResource"],
    ),
    "http-503-PublishLayerVersion": Persistent(
        "PublishLayerVersion",
        UNAVAILABLE,
        r"^PublishLayerVersion failed: 503\b.*Service Unavailable",
        FIRST_DEPLOY,
    ),
    "connection-reset-UpdateFunctionCode": Persistent(
        "UpdateFunctionCode",
        connection_reset,
        r"^UpdateFunctionCode failed: Connection was closed before we received a valid response from endpoint URL",
        ["UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"],
    ),
    "read-timeout-GetFunction": Persistent(
        "GetFunction",
        read_timeout,
        r"^GetFunction failed: Read timeout on endpoint URL: \"http://127\.0\.0\.1:\d+/",
        FIRST_DEPLOY,
    ),
    "connection-refused-ListLayerVersions": Persistent(
        "ListLayerVersions",
        connection_refused,
        r"^ListLayerVersions failed: Could not connect to the endpoint URL",
        FIRST_DEPLOY,
    ),
    "read-timeout-GetAlias": Persistent(
        "GetAlias",
        read_timeout,
        r"^GetAlias failed: Read timeout on endpoint URL",
        [*FIRST_DEPLOY, "PublishVersion", "CreateAlias"],
        ALIAS,
    ),
}


@pytest.mark.parametrize("case", list(PERSISTENT.values()), ids=list(PERSISTENT))
def test_persistent_fault_is_one_clear_error_and_a_rerun_converges(deployment: Deployment, case: Persistent) -> None:
    deployment.project.stage.update(case.stage)
    deployment.faults.add(case.operation, case.action)

    failed = deployment.run()

    assert_clear_error(failed, case.error)
    assert failed.attempts[case.operation] == ATTEMPTS, "botocore's standard mode made all its attempts"
    rerun = deployment.rerun()
    assert_converged(deployment, rerun, case.remaining)


def test_versions_listing_that_keeps_failing_stops_the_plan_before_any_write(deployment: Deployment) -> None:
    deployment.project.stage.update(ALIAS)
    assert deployment.run().error is None
    deployment.project.write("app/__init__.py", "def handler(event, context):\n    return 'v2'\n")
    deployment.expected_code = deployment.code_sha256_of_package()
    deployment.faults.add("ListVersionsByFunction", connection_reset)

    failed = deployment.run()

    assert_clear_error(
        failed, r"^ListVersionsByFunction failed: Connection was closed before we received a valid response"
    )
    assert failed.attempts["ListVersionsByFunction"] == ATTEMPTS and failed.writes == []
    rerun = deployment.rerun()
    assert rerun.error is None, rerun.error
    assert sorted(rerun.writes) == ["PublishVersion", "TagResource", "UpdateAlias", "UpdateFunctionCode"]
    assert_report_matches_live(rerun)
    assert rerun.after.code_sha256 == deployment.expected_code and rerun.after.alias == "2"


def test_s3_put_that_stays_throttled_falls_back_to_a_direct_upload(
    deployment: Deployment, infra: Infrastructure
) -> None:
    infra.bucket("deploy-artifacts")
    deployment.project.stage["upload_bucket"] = BUCKET
    deployment.faults.add("PutObject", SLOW_DOWN)

    outcome = deployment.run()

    assert outcome.attempts["PutObject"] == 2 * ATTEMPTS  # both archives, each with all its attempts
    assert_converged(deployment, outcome, [*FIRST_DEPLOY, "PutObject", "PutObject"])
    assert outcome.result is not None and len(outcome.result.warnings) == 2
    assert all("SlowDown: Please reduce your request rate." in warning for warning in outcome.result.warnings)
    assert "ZipFile" in deployment.project.parameters_of("UpdateFunctionCode")[-1]


# -- updates in progress (ResourceConflictException) and updates Lambda reports Failed ------------


def test_conflict_while_an_update_is_in_progress_waits_and_retries(deployment: Deployment) -> None:
    deployment.faults.add(
        "UpdateFunctionCode",
        lambda_error(409, "ResourceConflictException", "An update is in progress for resource: fn"),
        1,
    )
    deployment.faults.before(
        "UpdateFunctionCode", lambda: deployment.faults.status.then(("InProgress", None), ("InProgress", None))
    )

    outcome = deployment.run()

    assert outcome.calls["UpdateFunctionCode"] == 2, "one conflict, one retry after the wait"
    assert outcome.calls["GetFunction"] >= 4, "connect, two polls while InProgress, the wait after the update"
    assert_converged(deployment, outcome, [*FIRST_DEPLOY, "UpdateFunctionCode"])
    assert_converged(deployment, deployment.rerun(), [])


def test_conflict_that_outlasts_the_retries_is_a_clear_error(deployment: Deployment) -> None:
    deployment.faults.add(
        "UpdateFunctionConfiguration",
        lambda_error(409, "ResourceConflictException", "An update is in progress for resource: fn"),
    )

    failed = deployment.run()

    assert_clear_error(
        failed,
        r"^UpdateFunctionConfiguration failed: ResourceConflictException: An update is in progress for resource: fn"
        r" — another update is still in progress; rerun drover when it has finished$",
    )
    assert failed.calls["UpdateFunctionConfiguration"] == CONFLICT_RETRIES + 1
    assert_converged(deployment, deployment.rerun(), ["UpdateFunctionConfiguration", "TagResource"])


def test_an_update_in_progress_when_drover_starts_is_waited_out(deployment: Deployment) -> None:
    deployment.faults.status.then(("InProgress", None), ("InProgress", None))

    outcome = deployment.run()

    assert outcome.calls["GetFunction"] >= 3
    assert_converged(deployment, outcome, FIRST_DEPLOY)


def test_update_lambda_reports_failed_quotes_the_reason_and_a_rerun_converges(deployment: Deployment) -> None:
    deployment.run()  # v1 is live
    v1_zip = deployment.project.parameters_of("UpdateFunctionCode")[-1]["ZipFile"]
    deployment.project.write("app/__init__.py", "def handler(event, context):\n    return 'v2'\n")
    deployment.expected_code = deployment.code_sha256_of_package()
    status = deployment.faults.status

    def lambda_fails_the_update() -> None:
        """InProgress, then Failed; Lambda aborts a failed update, so the previous code stays live."""
        deployment.client.update_function_code(FunctionName="fn", ZipFile=v1_zip)
        status.then(("InProgress", None))
        status.failed = FAILED_REASON

    deployment.faults.after("UpdateFunctionCode", lambda_fails_the_update)

    failed = deployment.run()

    assert_clear_error(
        failed, rf"^UpdateFunctionCode .*Lambda reports the update of fn failed: {re.escape(FAILED_REASON)}$"
    )
    assert failed.after.code_sha256 == failed.before.code_sha256, "the previous code is still live"
    rerun = deployment.rerun()  # starts while GetFunction still says Failed
    assert_converged(deployment, rerun, ["UpdateFunctionCode", "TagResource"])


# -- the process dies between two writes --------------------------------------------------------

KILL_POINTS = {
    "PublishLayerVersion": [
        "UpdateFunctionCode",
        "UpdateFunctionConfiguration",
        "TagResource",
        "PublishVersion",
        "CreateAlias",
    ],
    "UpdateFunctionCode": ["UpdateFunctionConfiguration", "TagResource", "PublishVersion", "CreateAlias"],
    "UpdateFunctionConfiguration": ["TagResource", "PublishVersion", "CreateAlias"],
    "TagResource": ["PublishVersion", "CreateAlias"],
    "PublishVersion": ["CreateAlias"],
    "CreateAlias": [],
}


def interrupt() -> None:
    raise KeyboardInterrupt


@pytest.mark.parametrize(("killed_after", "remaining"), list(KILL_POINTS.items()), ids=list(KILL_POINTS))
def test_killed_after_a_write_the_rerun_finishes_without_duplicates(
    deployment: Deployment, killed_after: str, remaining: list[str]
) -> None:
    deployment.project.stage.update(ALIAS)
    deployment.faults.after(killed_after, interrupt)

    with pytest.raises(KeyboardInterrupt):
        deployment.run()

    rerun = deployment.rerun()
    assert_converged(deployment, rerun, remaining)
    assert "PublishLayerVersion" not in rerun.writes, "the published layer is reused, not published again"


KILLED_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path

    import boto3

    from drover import Drover, RunOptions
    from drover.deploy import AwsClients
    from drover.settings import load_settings

    settings, install = Path(sys.argv[1]), Path(sys.argv[2])
    session = boto3.Session()
    session.events.register("after-call.lambda.PublishLayerVersion", lambda **_: os.kill(os.getpid(), signal.SIGKILL))
    options = RunOptions(working_directory=settings.parent, aws=AwsClients("us-east-1", session=session))
    Drover(load_settings(settings), "test", options=options).update(install)
    """
)


def test_sigkill_between_layer_publish_and_configuration_update_then_the_rerun_reuses_the_layer(
    deployment: Deployment, tmp_path: Path
) -> None:
    script = tmp_path / "killed.py"
    script.write_text(KILLED_SCRIPT)
    settings = deployment.project.write_settings()
    before = deployment.live()

    killed = subprocess.run(
        [sys.executable, str(script), str(settings), str(deployment.project.install)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after = deployment.live()
    assert len(after.layer_versions) == 1 and after.layers == before.layers == ()
    assert after.code_sha256 == before.code_sha256
    rerun = deployment.rerun()
    assert_converged(deployment, rerun, ["UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"])


# -- other writers: out-of-band changes and concurrent deploys ------------------------------------


def test_out_of_band_changes_between_runs_are_repaired_and_nothing_else_is_touched(deployment: Deployment) -> None:
    assert_converged(deployment, deployment.run(), FIRST_DEPLOY)
    deployment.client.update_function_code(FunctionName="fn", ZipFile=zip_bytes({"console.py": "edited = True\n"}))
    deployment.client.update_function_configuration(FunctionName="fn", Layers=[])

    repaired = deployment.rerun()

    assert repaired.before.code_sha256 != deployment.expected_code and repaired.before.layers == ()
    assert_converged(deployment, repaired, ["UpdateFunctionCode", "UpdateFunctionConfiguration"])


def test_concurrent_layer_change_is_a_revision_conflict_not_a_silent_detach(
    deployment: Deployment, infra: Infrastructure, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("drover"), "propagate", True)  # the CLI tests may have turned it off
    revisions = with_revision_check(deployment)
    monitoring = infra.layer("monitoring-extension")
    deployment.faults.before(
        "UpdateFunctionConfiguration",
        lambda: deployment.client.update_function_configuration(FunctionName="fn", Layers=[monitoring]),
    )

    failed = deployment.run()

    assert_clear_error(
        failed,
        r"^UpdateFunctionConfiguration failed: PreconditionFailedException: The Revision Id provided does not match"
        r".* — the function changed while drover was deploying \(another deploy\?\); rerun drover$",
        others={"layers": (monitoring,)},
    )
    assert revisions.refused == 1
    assert failed.after.layers == (monitoring,), "the other writer's layer is still attached: no lost update"
    with caplog.at_level(logging.WARNING, logger="drover"):
        rerun = deployment.rerun()
    assert f"layer {monitoring} is attached to fn but not named in drover.yml" in caplog.text
    assert_converged(deployment, rerun, ["UpdateFunctionConfiguration", "TagResource"])
    assert "RevisionId" in deployment.project.parameters_of("UpdateFunctionConfiguration")[-1], (
        "the rerun passes one too"
    )


def test_concurrent_code_deploy_is_a_revision_conflict_not_a_lost_update(deployment: Deployment) -> None:
    revisions = with_revision_check(deployment)
    other = zip_bytes({"app/__init__.py": "def handler(event, context):\n    return 'other deploy'\n"})
    deployment.faults.before(
        "UpdateFunctionCode", lambda: deployment.client.update_function_code(FunctionName="fn", ZipFile=other)
    )

    failed = deployment.run()

    other_code = base64.b64encode(hashlib.sha256(other).digest()).decode()
    assert_clear_error(
        failed, r"^UpdateFunctionCode failed: PreconditionFailedException: .*rerun drover$", {"code_sha256": other_code}
    )
    assert revisions.refused == 1
    assert failed.after.code_sha256 == other_code, "the other deploy's code is live: drover did not overwrite it"
    assert_converged(
        deployment, deployment.rerun(), ["UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"]
    )


def test_concurrent_update_in_progress_at_write_time_ends_in_a_conflict_not_an_overwrite(
    deployment: Deployment,
) -> None:
    revisions = with_revision_check(deployment)

    def another_writer_starts_an_update() -> None:
        deployment.client.update_function_configuration(
            FunctionName="fn", Environment={"Variables": {**ENVIRONMENT, "FLAG": "on"}}
        )
        deployment.faults.status.then(("InProgress", None))

    deployment.faults.before("UpdateFunctionCode", another_writer_starts_an_update)
    deployment.faults.add(
        "UpdateFunctionCode",
        lambda_error(409, "ResourceConflictException", "An update is in progress for resource: fn"),
        1,
    )

    failed = deployment.run()

    assert_clear_error(
        failed,
        r"^UpdateFunctionCode failed: PreconditionFailedException: .*rerun drover$",
        {"environment": {**ENVIRONMENT, "FLAG": "on"}},
    )
    assert failed.calls["UpdateFunctionCode"] == 2 and revisions.refused == 1, "waited, retried, refused"
    assert failed.after.environment == {**ENVIRONMENT, "FLAG": "on"}
    assert_converged(
        deployment, deployment.rerun(), ["UpdateFunctionCode", "UpdateFunctionConfiguration", "TagResource"]
    )


LOST_ANSWERS: dict[str, tuple[str, type[ConnectionClosedError] | type[ReadTimeoutError]]] = {
    "read-timeout-UpdateFunctionCode": ("UpdateFunctionCode", ReadTimeoutError),
    "connection-reset-UpdateFunctionConfiguration": ("UpdateFunctionConfiguration", ConnectionClosedError),
}


@pytest.mark.parametrize(("operation", "lost"), list(LOST_ANSWERS.values()), ids=list(LOST_ANSWERS))
def test_answer_lost_after_the_update_landed_is_recognised_as_done(
    deployment: Deployment, operation: str, lost: type[ConnectionClosedError] | type[ReadTimeoutError]
) -> None:
    revisions = with_revision_check(deployment)
    deployment.faults.add(operation, answer_lost(lost), 1)

    outcome = deployment.run()

    assert outcome.attempts[operation] == 2 and revisions.refused == 1, "botocore's retry carried a stale RevisionId"
    assert_converged(deployment, outcome, FIRST_DEPLOY)
    assert_converged(deployment, deployment.rerun(), [])


def test_answer_lost_after_a_layer_publish_converges_on_the_first_version_and_deletes_the_duplicate(
    deployment: Deployment,
) -> None:
    deployment.faults.add("PublishLayerVersion", answer_lost(ReadTimeoutError), 1)

    outcome = deployment.run()

    assert outcome.attempts["PublishLayerVersion"] == 2
    assert_converged(deployment, outcome, [*FIRST_DEPLOY, "DeleteLayerVersion"])
    assert outcome.result is not None
    first = deployment.client.get_layer_version(LayerName="fn-requirements", VersionNumber=1)
    assert outcome.result.requirements_layer_arn == first["LayerVersionArn"] == outcome.after.layers[-1]
    assert first["Description"] == LAYER_DESCRIPTION_PREFIX + str(outcome.result.requirements_digest)
    assert_converged(deployment, deployment.rerun(), [])


# -- the matrix itself ----------------------------------------------------------------------------


def test_the_matrix_is_documented_and_names_real_tests() -> None:
    table = [line for line in (__doc__ or "").splitlines() if line.startswith("|")]
    documented = [line for line in (ROOT / "docs" / "faults.md").read_text().splitlines() if line.startswith("|")]
    assert table and documented == table, "docs/faults.md must carry the docstring's table"
    cases = {*TRANSIENT, *PERSISTENT, *LOST_ANSWERS}
    for reference in re.findall(r"`((?:tests/\S+\.py::)?test_\w+(?:\[[^\]]+\])?)`", "\n".join(table)):
        path, _, name = reference.rpartition("::")
        name, _, case = name.partition("[")
        if path:
            assert f"def {name}(" in (ROOT / path).read_text(), reference
        else:
            assert callable(globals().get(name)), reference
            assert not case or case.rstrip("]") in cases, reference
