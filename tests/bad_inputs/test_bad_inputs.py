"""Bad input is refused with exit 2, one error line naming the file/key/value and the fix, and no AWS write.

Every CLI case runs drover's CLI in deploy mode (in this process, see inprocess.py; the unreadable-settings
case and the control run `python -m drover` as a child process), against a real function
on the moto server, through a proxy that counts each request (tests/github_fakes.CountingServer):
reads such as GetFunction may come before a preflight error, writes never. The live function, its
tags and the requirements layer are compared before and after, and --archive-dir must stay empty.
The Action cases run drover.github.main in the environment tests/test_action_container.py gives
entrypoint.py (the first case runs entrypoint.py itself in a child process), with an AWS
endpoint that refuses (and counts) every request. docs/bad-inputs.md is the table of these cases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from drover import cli, github
from drover.models import UNZIPPED_LIMIT
from tests.aws import REGION, Infrastructure
from tests.bad_inputs.inprocess import Completed, run_in_process
from tests.github_fakes import CountingServer, counting_server
from tests.test_action_container import ActionRun, Runner, write_project
from tests.wheels import offline_environment, write_wheel

ROOT = Path(__file__).resolve().parents[2]
TABLE = ROOT / "docs" / "bad-inputs.md"
BASE_STAGE: dict[str, Any] = {
    "region_name": REGION,
    "function_name": "fn",
    "compatible_runtime": "python3.12",
    "function_file_patterns": ["^app/"],
    "function_extra_paths": ["instance"],
}
OTHER_REGION_LAYER = "arn:aws:lambda:eu-west-1:123456789012:layer:extension:1"
LAYER = "arn:aws:lambda:us-east-1:123456789012:layer:extension-{}:1"
BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
stages: {staging: {region_name: us-east-1, function_name: fn, compatible_runtime: python3.12, extra: *h}}
"""
# Known failure (drover/core.py + drover/workflow.py, not changed here): a deploy builds its archives
# into --archive-dir while it compares, before the preflight, so a preflight error (a bucket in another
# region, an archive over the direct-upload limit) leaves function.zip/requirements.zip behind.
Setup = Callable[[Path, Infrastructure], "dict[str, str] | None"]


@dataclass(frozen=True)
class Case:
    """One bad input: what to change in a working project, and what the error line must say."""

    id: str
    expect: tuple[str, ...]  # fragments of the error line: the file/key/value named, and the fix
    stage: Mapping[str, Any] = field(default_factory=dict)  # changes to the stage; None removes a key
    settings: str | bytes | None = None  # the whole drover.yml instead
    setup: Setup | None = None  # changes the project (and may return extra environment variables)
    args: tuple[str, ...] = ()
    stage_name: str = "staging"
    function: Mapping[str, Any] = field(default_factory=dict)  # how the live function differs
    reads: bool = False  # AWS reads may come before the error (GetFunction...); writes never
    unprivileged: bool = False  # run without root's power to read any file


def case(case_id: str, *expect: str, marks: Any = (), **options: Any) -> Any:
    return pytest.param(Case(case_id, expect, **options), id=case_id, marks=marks)


# -- project changes -----------------------------------------------------------------------------


def unreadable_settings(project: Path, infra: Infrastructure) -> None:
    (project / "drover.yml").chmod(0)


def settings_directory(project: Path, infra: Infrastructure) -> None:
    (project / "drover.yml").unlink()
    (project / "drover.yml").mkdir()


def install_path_file(project: Path, infra: Infrastructure) -> None:
    shutil.rmtree(project / "install")
    (project / "install").write_text("not a directory\n")


def install_path_empty(project: Path, infra: Infrastructure) -> None:
    shutil.rmtree(project / "install")
    (project / "install").mkdir()


def escaping_symlink(project: Path, infra: Infrastructure) -> None:
    (project / "secret.txt").write_text("outside the install path\n")
    (project / "install" / "app" / "secret.py").symlink_to(project / "secret.txt")


def directory_loop(project: Path, infra: Infrastructure) -> None:
    (project / "install" / "app" / "again").symlink_to(project / "install" / "app", target_is_directory=True)


def self_loop(project: Path, infra: Infrastructure) -> None:
    (project / "install" / "app" / "self.py").symlink_to("self.py")


def dangling_symlink(project: Path, infra: Infrastructure) -> None:
    (project / "install" / "app" / "gone.py").symlink_to("removed.py")


def fifo(project: Path, infra: Infrastructure) -> None:
    os.mkfifo(project / "install" / "app" / "pipe")


def outside_directory(project: Path, infra: Infrastructure) -> None:
    outside = project.parent / "outside"
    outside.mkdir()
    (outside / "data.json").write_text("{}\n")


def non_utf8_name(project: Path, infra: Infrastructure) -> None:
    with open(os.fsencode(project / "install" / "app") + b"/caf\xe9.py", "w") as stream:
        stream.write("x = 1\n")


def huge_sparse_file(project: Path, infra: Infrastructure) -> None:
    with open(project / "install" / "dep" / "model.bin", "wb") as stream:
        stream.truncate(UNZIPPED_LIMIT + 1)  # sparse: no disk space, nothing to read before the check


def app_extra_path(project: Path, infra: Infrastructure) -> None:
    (project / "app").mkdir()
    (project / "app" / "__init__.py").write_text("# a second app/__init__.py\n")


def pylock_without_name(project: Path, infra: Infrastructure) -> None:
    (project / "pylock.toml").write_text('lock-version = "1.0"\ncreated-by = "x"\n\n[[packages]]\nversion = "1.0"\n')


def pylock_wrong_local_hash(project: Path, infra: Infrastructure) -> None:
    (project / "wheels").mkdir()
    (project / "wheels" / "local-1.0-py3-none-any.whl").write_bytes(b"rebuilt since it was locked")
    (project / "pylock.toml").write_text(
        'lock-version = "1.0"\ncreated-by = "x"\n\n[[packages]]\nname = "local"\nversion = "1.0"\n'
        'wheels = [{ name = "local-1.0-py3-none-any.whl", path = "wheels/local-1.0-py3-none-any.whl", '
        f'hashes = {{ sha256 = "{"0" * 64}" }} }}]\n'
    )


def bucket_in_eu(project: Path, infra: Infrastructure) -> None:
    infra.bucket("eu-artifacts", region="eu-west-1")


def wheel_only_for_arm(project: Path, infra: Infrastructure) -> dict[str, str]:
    wheelhouse = project.parent / "wheelhouse"
    wheelhouse.mkdir()
    write_wheel(wheelhouse, "onlyarm", "1.0", "cp312-cp312-manylinux_2_17_aarch64", {"onlyarm/__init__.py": b""})
    (project / "requirements.txt").write_text("onlyarm==1.0\n")
    return offline_environment(wheelhouse, project.parent)


def requirements_beside(project: Path, infra: Infrastructure) -> None:
    (project / "requirements.txt").write_text("# nothing to install\n")


def settings_yaml_not_yml(project: Path, infra: Infrastructure) -> None:
    (project / "drover.yml").rename(project / "drover.yaml")


def aws_profiles(project: Path, infra: Infrastructure) -> dict[str, str]:
    config = project.parent / "aws-config"
    config.write_text("[default]\nregion = us-east-1\n\n[profile dev]\nregion = us-east-1\n")
    return {"AWS_CONFIG_FILE": str(config), "AWS_SHARED_CREDENTIALS_FILE": str(config), "AWS_PROFILE": "nope"}


# -- the cases -----------------------------------------------------------------------------------

CLI_CASES = [
    # the settings file
    case(
        "settings-missing",
        "nope.yml: settings file not found",
        "create it or correct the path given to --settings-file",
        args=("--settings-file", "nope.yml"),
    ),
    case(
        "settings-default-missing-close-name",
        "drover.yml: settings file not found",
        "did you mean drover.yaml?",
        "pass --settings-file FILE",
        setup=settings_yaml_not_yml,
    ),
    case(
        "settings-unreadable",
        "drover.yml: cannot read settings file: Permission denied",
        "make it readable",
        setup=unreadable_settings,
        unprivileged=True,
    ),
    case(
        "settings-is-a-directory",
        "drover.yml: is a directory",
        "point --settings-file at the YAML file",
        setup=settings_directory,
    ),
    case(
        "settings-not-utf8",
        "drover.yml: not UTF-8 text",
        "save it as UTF-8",
        settings=b"stages:\n  staging:\n    function_name: caf\xe9\n",
    ),
    case("settings-empty", "drover.yml: file is empty", "needs a 'stages' mapping", settings=""),
    case(
        "settings-only-comments",
        "drover.yml: file is empty",
        "needs a 'stages' mapping",
        settings="# stages: to be written\n",
    ),
    case(
        "yaml-syntax-error",
        "drover.yml:4:1: YAML syntax error",
        "fix the YAML at line 4, column 1",
        settings="stages:\n  staging: [\n    region_name: us-east-1\n",
    ),
    case(
        "yaml-alias-bomb",
        "drover.yml: YAML aliases expand to more than 10000 nodes",
        "write the values out instead",
        settings=BILLION_LAUGHS,
    ),
    case(
        "yaml-duplicate-key",
        "drover.yml:10:5: key 'function_name' is defined twice",
        "keep one",
        settings=yaml.safe_dump({"stages": {"staging": BASE_STAGE}}, sort_keys=False) + "    function_name: fn2\n",
    ),
    case(
        "root-is-a-list",
        "drover.yml: the top level must be a mapping with a 'stages' key, not a list",
        settings="- staging\n- production\n",
    ),
    case(
        "stages-missing",
        "drover.yml:1:1: key 'stage'",
        "did you mean 'stages'?",
        settings=yaml.safe_dump({"stage": {"staging": BASE_STAGE}}),
    ),
    case(
        "stage-not-a-mapping",
        "drover.yml:2:3: stage 'staging'",
        "input should be a valid dictionary (key: value",
        "got a string 'fn'",
        settings="stages:\n  staging: fn\n",
    ),
    case("unknown-stage", "drover.yml: unknown stage 'production'", "stages defined: staging", stage_name="production"),
    case(
        "function-name-missing",
        "stage 'staging': key 'function_name': required key is missing",
        "add it",
        stage={"function_name": None},
    ),
    case(
        "function-name-invalid",
        "key 'function_name'",
        "'my function' is not a valid Lambda function name",
        stage={"function_name": "my function"},
    ),
    case(
        "patterns-not-a-list",
        "key 'function_file_patterns'",
        "input should be a valid list",
        "got a string '^app/'",
        stage={"function_file_patterns": "^app/"},
    ),
    case(
        "publish-not-a-boolean",
        "key 'publish'",
        "input should be a valid boolean",
        "got a string 'maybe'",
        stage={"publish": "maybe"},
    ),
    case(
        "keep-layer-versions-zero",
        "key 'keep_layer_versions'",
        "greater than or equal to 1",
        "got an integer 0",
        stage={"keep_layer_versions": 0},
    ),
    case(
        "invalid-regex",
        "key 'function_file_patterns[0]'",
        "invalid regular expression '^app/('",
        "missing ), unterminated subpattern",
        stage={"function_file_patterns": ["^app/("]},
    ),
    case(
        "unknown-key",
        "drover.yml:8:5: stage 'staging': key 'function_extr_paths': unknown key",
        "did you mean 'function_extra_paths'?",
        stage={"function_extra_paths": None, "function_extr_paths": ["x"]},
    ),
    case(
        "unknown-bucket-key",
        "key 'upload_bucket.bucket'",
        "did you mean 'bucket_name'?",
        stage={"upload_bucket": {"region_name": REGION, "bucket": "artifacts"}},
    ),
    case(
        "runtime-python2",
        "key 'compatible_runtime'",
        "'python2.7' is not a valid Python runtime (e.g. python3.12)",
        stage={"compatible_runtime": "python2.7"},
    ),
    case(
        "runtime-nodejs",
        "key 'compatible_runtime'",
        "'nodejs20.x' is not a valid Python runtime (e.g. python3.12)",
        stage={"compatible_runtime": "nodejs20.x"},
    ),
    case(
        "architecture-invalid",
        "key 'architecture'",
        "input should be 'x86_64' or 'arm64'",
        "got a string 'amd64'",
        stage={"architecture": "amd64"},
    ),
    case(
        "layer-arn-malformed",
        "key 'supplemental_layer_arns'",
        "'arn:aws:lambda:us-east-1:123:layer:x'",
        "not a valid layer version ARN (arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION)",
        stage={"supplemental_layer_arns": ["arn:aws:lambda:us-east-1:123:layer:x"]},
    ),
    case(
        "too-many-layers",
        "supplemental_layer_arns: 5 supplemental layers plus the requirements layer",
        "limit of 5 layers",
        "list at most 4",
        stage={"supplemental_layer_arns": [LAYER.format(number) for number in range(5)]},
    ),
    case(
        "layer-in-another-region",
        f"supplemental layer {OTHER_REGION_LAYER} is in region eu-west-1",
        "use a version of the layer published in us-east-1",
        stage={"supplemental_layer_arns": [OTHER_REGION_LAYER]},
    ),
    case(
        "region-invalid",
        "key 'region_name'",
        "'us-east' is not a valid AWS region name (e.g. us-east-1)",
        stage={"region_name": "us-east"},
    ),
    case(
        "bucket-in-another-region",
        "upload_bucket eu-artifacts is in region eu-west-1",
        "use a bucket in us-east-1",
        stage={"upload_bucket": {"region_name": "eu-west-1", "bucket_name": "eu-artifacts"}},
    ),
    case(
        "bucket-name-invalid",
        "key 'upload_bucket.bucket_name'",
        "'Artifacts_Bucket' is not a valid S3 bucket name",
        stage={"upload_bucket": {"region_name": REGION, "bucket_name": "Artifacts_Bucket"}},
    ),
    case("alias-only-digits", "key 'alias'", "'42' is not a valid alias name", stage={"alias": "42"}),
    case(
        "cli-alias-invalid",
        "alias 'v1.0' is not a valid alias name",
        "letters, digits, - and _",
        args=("--alias", "v1.0"),
    ),
    case("cli-unknown-flag", "unrecognized arguments: --stage", "see drover --help", args=("--stage", "x")),
    # the install path and the extra paths
    case(
        "install-path-missing",
        "install path missing does not exist",
        "pip install --target it first",
        args=("--install-path", "missing"),
        reads=True,
    ),
    case(
        "install-path-is-a-file",
        "install path install is not a directory",
        "pip install --target",
        setup=install_path_file,
        reads=True,
    ),
    case(
        "install-path-empty",
        "install path install holds no files",
        "pip install --target",
        setup=install_path_empty,
        reads=True,
    ),
    case(
        "symlink-escapes",
        "install/app/secret.py: symlink points outside",
        "copy the file in or remove the link",
        setup=escaping_symlink,
        reads=True,
    ),
    case(
        "symlink-directory-loop", "install/app/again: symlink loop", "remove the link", setup=directory_loop, reads=True
    ),
    case("symlink-self-loop", "install/app/self.py: symlink loop", "remove the link", setup=self_loop, reads=True),
    case(
        "symlink-dangling",
        "install/app/gone.py: broken symlink (removed.py)",
        "remove it or restore its target",
        setup=dangling_symlink,
        reads=True,
    ),
    case(
        "fifo-in-install-path", "install/app/pipe: not a regular file or directory", "remove it", setup=fifo, reads=True
    ),
    case(
        "extra-path-escapes",
        "function_extra_paths: '../outside' resolves outside the working directory",
        "keep extra paths inside it",
        stage={"function_extra_paths": ["../outside"]},
        setup=outside_directory,
        reads=True,
    ),
    case(
        "extra-path-missing",
        "function_extra_paths: 'static' does not exist",
        "create it or fix function_extra_paths",
        stage={"function_extra_paths": ["static"]},
        reads=True,
    ),
    case(
        "archive-name-twice",
        "would both be stored as 'app/__init__.py'",
        "rename one or drop an extra path",
        stage={"function_extra_paths": [{"path": "app", "archive_path": "app"}]},
        setup=app_extra_path,
        reads=True,
    ),
    case(
        "file-name-not-utf8",
        "file name b'app/caf\\xe9.py' is not valid UTF-8",
        "rename it",
        setup=non_utf8_name,
        reads=True,
    ),
    case(
        "file-over-250-mb",
        "install/dep/model.bin: 262144001 bytes is larger than Lambda's 262144000-byte limit",
        "exclude it with package_exclude_patterns",
        setup=huge_sparse_file,
        reads=True,
    ),
    case(
        "function-partition-empty",
        "no file matches function_file_patterns ('^application/')",
        "fix the patterns",
        stage={"function_file_patterns": ["^application/"], "function_extra_paths": None},
        reads=True,
    ),
    case(
        "function-archive-no-python",
        "the function archive would hold no Python file (only config.json)",
        "function_file_patterns '^application/' match no file",
        "fix function_file_patterns so the handler's module is in the function archive",
        stage={"function_file_patterns": ["^application/"]},
        reads=True,
    ),
    # the install
    case(
        "requirements-missing",
        "requirements file nope.txt does not exist",
        args=("--requirements", "nope.txt"),
        reads=True,
    ),
    case(
        "pylock-package-without-name",
        "pylock.toml: Missing required value in 'packages[0].name'",
        "fix the lock or generate it again",
        args=("--requirements", "pylock.toml"),
        setup=pylock_without_name,
        reads=True,
    ),
    case(
        "pylock-local-wheel-hash-mismatch",
        "pylock.toml: local:",
        "local-1.0-py3-none-any.whl has sha256",
        "but the lock says 0000",
        "the file changed since it was locked: lock again, or restore the locked file",
        args=("--requirements", "pylock.toml"),
        setup=pylock_wrong_local_hash,
        reads=True,
    ),
    case(
        "requirements-misspelt",
        "requirements file requirement.txt does not exist",
        "did you mean requirements.txt?",
        args=("--requirements", "requirement.txt"),
        setup=requirements_beside,
        reads=True,
    ),
    case(
        "aws-profile-unknown",
        "AWS profile 'nope' (AWS_PROFILE) is not in",
        "profiles there: default, dev",
        setup=aws_profiles,
    ),
    case(
        "requirements-no-wheel-for-platform",
        "no wheel of onlyarm for python3.12 x86_64",
        "Wheels are available for `onlyarm` (v1.0) on the following platform: `manylinux_2_17_aarch64`",
        args=("--requirements", "requirements.txt"),
        setup=wheel_only_for_arm,
        reads=True,
    ),
    # the live function (reads only, then a preflight error)
    case(
        "live-runtime-differs",
        "function fn runs python3.11, but compatible_runtime is python3.12",
        "make them match",
        function={"runtime": "python3.11"},
        reads=True,
    ),
    case(
        "live-architecture-differs",
        "function fn is x86_64, but the stage's architecture is arm64",
        "make them match",
        stage={"architecture": "arm64"},
        reads=True,
    ),
    case(
        "live-bucket-in-another-region",
        "upload_bucket eu-artifacts is in eu-west-1",
        "use another bucket",
        stage={"upload_bucket": {"region_name": REGION, "bucket_name": "eu-artifacts"}},
        setup=bucket_in_eu,
        reads=True,
    ),
]

ACTION_CASES = [
    pytest.param(
        {"stage": ""}, None, ("::error::input 'stage' is required", "the name of a stage"), id="action-stage-empty"
    ),
    pytest.param(
        {"role-duration-seconds": "600"},
        None,
        ("::error::input 'role-duration-seconds' is '600'", "from 900 to 43200"),
        id="action-role-duration-too-short",
    ),
    pytest.param(
        {"role-duration-seconds": "43201"},
        None,
        ("::error::input 'role-duration-seconds' is '43201'", "from 900 to 43200"),
        id="action-role-duration-too-long",
    ),
    pytest.param(
        {"role-duration-seconds": "1h"},
        None,
        ("::error::input 'role-duration-seconds' is '1h'", "a whole number of seconds"),
        id="action-role-duration-not-a-number",
    ),
    pytest.param(
        {"role-session-name": "deploy main"},
        None,
        ("::error::input 'role-session-name' is 'deploy main'", "2 to 64 characters from letters"),
        id="action-role-session-name-space",
    ),
    pytest.param(
        {"role-session-name": "x" * 65},
        None,
        ("::error::input 'role-session-name' is 'xxxx", "2 to 64 characters"),
        id="action-role-session-name-too-long",
    ),
    pytest.param(
        {"role-to-assume": "drover-deploy"},
        None,
        ("::error::input 'role-to-assume' is 'drover-deploy'", "arn:aws:iam::ACCOUNT:role/NAME"),
        id="action-role-not-an-arn",
    ),
    pytest.param(
        {"aws-region": "Virginia"},
        None,
        ("::error::input 'aws-region' is 'Virginia'", "such as us-east-1"),
        id="action-region-invalid",
    ),
    pytest.param(
        {"publish": "yes"},
        None,
        ("::error::input 'publish' is 'yes'", "use true or false"),
        id="action-publish-not-a-boolean",
    ),
    pytest.param(
        {"working-directory": "services/api"},
        None,
        ("::error::input 'working-directory' is 'services/api'", "not a directory in the workspace"),
        id="action-working-directory-missing",
    ),
    pytest.param(
        {"install-path": "build"},
        None,
        ("::error::input 'install-path' is 'build'", "earlier step"),
        id="action-install-path-missing",
    ),
    pytest.param(
        {"install-path": github.NOT_GIVEN},
        None,
        ("::error::nothing to deploy", "'install-source'"),
        id="action-nothing-to-deploy",
    ),
    pytest.param(
        {},
        {"compatible_runtime": "python3"},
        ("::error file=drover.yml,line=5,col=5::", "'python3' is not a valid Python runtime"),
        id="action-settings-error-annotation",
    ),
]


# -- running the CLI -----------------------------------------------------------------------------


@dataclass
class Project:
    root: Path
    infra: Infrastructure

    def write(self, case: Case) -> None:
        if case.settings is not None:
            data = case.settings.encode() if isinstance(case.settings, str) else case.settings
            (self.root / "drover.yml").write_bytes(data)
            return
        stage = {**BASE_STAGE, **case.stage}
        stage = {key: value for key, value in stage.items() if value is not None}
        (self.root / "drover.yml").write_text(yaml.safe_dump({"stages": {"staging": stage}}, sort_keys=False))

    def live_state(self) -> tuple[Any, ...]:
        """Everything a write would change: code, revision, layers, tags, layer versions, bucket objects."""
        configuration = self.infra.configuration()
        buckets = self.infra.client("s3").list_buckets()["Buckets"]
        objects = [self.infra.client("s3").list_objects_v2(Bucket=bucket["Name"]).get("KeyCount") for bucket in buckets]
        return (
            configuration,  # CodeSha256, Layers, LastModified...
            self.infra.tags(),
            self.infra.layer_versions("fn-requirements"),
            objects,
        )


def run_cli(
    project: Path,
    proxy: CountingServer,
    *args: str,
    env: Mapping[str, str] | None = None,
    unprivileged: bool = False,
    child: bool = False,
) -> subprocess.CompletedProcess[str] | Completed:
    """drover's CLI on the project: in this process (fast), or in a child process (child=True, unprivileged)."""
    command = [sys.executable, "-m", "drover", "--non-interactive", "--install-path", "install", "--archive-dir", "out"]
    command += args
    environment = {  # no installer config from outside, no service endpoint that would bypass the proxy
        name: value for name, value in os.environ.items() if not name.startswith(("PIP_", "UV_", "AWS_ENDPOINT_URL_"))
    }
    environment.update({"AWS_ENDPOINT_URL": proxy.endpoint, **(env or {})})
    if not (child or unprivileged):
        return run_in_process(lambda: cli.main(command[3:]), cwd=project, env=environment)
    if unprivileged and os.geteuid() == 0:  # root reads any file: drop that power for the child
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot make a file unreadable")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(command, cwd=project, env=environment, capture_output=True, text=True, timeout=120)


def archive_dir_is_empty(project: Path) -> bool:
    out = project / "out"
    return not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_refuses_bad_input_before_any_write(case: Case, project: Project, proxy: CountingServer) -> None:
    project.infra.function("fn", **case.function)
    project.write(case)
    env = case.setup(project.root, project.infra) if case.setup else None
    before = project.live_state()

    result = run_cli(project.root, proxy, *case.args, case.stage_name, env=env, unprivileged=case.unprivileged)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    (line,) = lines
    assert line.startswith("drover: error: "), line
    for fragment in case.expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert proxy.writes == [], proxy.writes
    if not case.reads:
        assert proxy.requests == [], f"{case.id} must fail before any AWS call: {proxy.requests}"
    assert all(request.startswith(("GET ", "HEAD ")) for request in proxy.requests)
    assert project.live_state() == before
    assert archive_dir_is_empty(project.root), sorted(path.name for path in (project.root / "out").iterdir())


def test_the_unchanged_project_deploys_and_keeps_its_archive(project: Project, proxy: CountingServer) -> None:
    """The control: without the bad input the same run succeeds, writes, and fills --archive-dir."""
    project.infra.function("fn")
    project.write(Case("control", ()))

    result = run_cli(project.root, proxy, "staging", child=True)  # a real child process: the entry point

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    assert {request.split()[0] for request in proxy.writes} >= {"POST", "PUT"}
    assert sorted(path.name for path in (project.root / "out").iterdir()) == ["function.zip", "requirements.zip"]


# -- running the Action --------------------------------------------------------------------------


FIRST_ACTION_CASE = ACTION_CASES[0].values[0]  # runs in a real child process: the entry point


def run_action(runner: Runner, inputs: dict[str, str], extra: dict[str, str], *, child: bool) -> ActionRun:
    """entrypoint.py as the runner runs it (child=True), or drover.github.main() in this process (fast)."""
    if child:
        return runner.run(inputs, **extra)
    environment = runner.environment({"stage": "staging", **inputs}, extra)
    done = run_in_process(github.main, cwd=runner.workspace, env=environment)
    return ActionRun(
        done.returncode,
        done.stdout,
        done.stderr,
        runner.output_file.read_text(encoding="utf-8"),
        runner.summary_file.read_text(encoding="utf-8"),
    )


@pytest.mark.parametrize(("inputs", "stage_changes", "expect"), ACTION_CASES)
def test_action_refuses_bad_input_before_any_call(
    tmp_path: Path, inputs: dict[str, str], stage_changes: dict[str, Any] | None, expect: tuple[str, ...]
) -> None:
    runner = Runner(tmp_path)
    settings = None
    if stage_changes:
        stage = {**BASE_STAGE, "function_extra_paths": ["config"], **stage_changes}
        settings = yaml.safe_dump({"stages": {"staging": stage}}, sort_keys=False)
    write_project(runner.workspace, *([settings] if settings else []))
    with counting_server() as aws_endpoint:
        aws = {
            "AWS_ENDPOINT_URL": aws_endpoint.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }
        run = run_action(runner, {"install-path": "install", **inputs}, aws, child=inputs == FIRST_ACTION_CASE)
        assert aws_endpoint.requests == []
    assert run.returncode == 2, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    line = run.only_error  # exactly one line on stderr, an ::error annotation
    for fragment in expect:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    assert run.output_text == "" and run.summary == ""
    assert not list(runner.runner_temp.iterdir())


# -- a large tree must work ----------------------------------------------------------------------

TINY_FILES = 100_000
RSS_LIMIT_BYTES = 300 * 1024 * 1024


@pytest.mark.slow
def test_100000_tiny_files_package_within_the_rss_bound(tmp_path: Path) -> None:
    """Package-only, 500 function files and 99,500 requirement files: a zip64 archive, peak RSS < 300 MB."""
    root = tmp_path / "project"
    install = root / "install"
    for directory in range(200):
        package = install / ("app" if directory == 0 else f"dep{directory:03d}")
        package.mkdir(parents=True)
        package_fd = os.open(package, os.O_RDONLY)
        try:
            for number in range(TINY_FILES // 200):  # raw syscalls: creating the tree is most of this test
                descriptor = os.open(f"m{number:04d}.py", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=package_fd)
                os.write(descriptor, b"X = %d\n" % number)
                os.close(descriptor)
        finally:
            os.close(package_fd)
    (root / "drover.yml").write_text(
        yaml.safe_dump({"stages": {"staging": {**BASE_STAGE, "function_extra_paths": []}}})
    )
    command = [
        sys.executable,
        "-m",
        "drover",
        "--install-path",
        "install",
        "--archive-dir",
        "out",
        "--package-only",
        "--json",
        "staging",
    ]
    with open(tmp_path / "stdout", "w+") as stdout, open(tmp_path / "stderr", "w+") as stderr:
        child = subprocess.Popen(command, cwd=root, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS, not any earlier child's
        child.returncode = os.waitstatus_to_exitcode(status)
        stdout.seek(0)
        stderr.seek(0)
        output, errors = stdout.read(), stderr.read()
    assert child.returncode == 0, errors
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    assert peak < RSS_LIMIT_BYTES, f"peak RSS {peak / 2**20:.0f} MiB"
    document = json.loads(output)
    assert (document["function_file_count"], document["requirements_file_count"]) == (500, TINY_FILES - 500)
    with (
        zipfile.ZipFile(root / "out" / "requirements.zip") as requirements,
        zipfile.ZipFile(root / "out" / "function.zip") as function,
    ):
        names = requirements.namelist() + function.namelist()
    assert len(names) == len(set(names)) == TINY_FILES


# -- the table -----------------------------------------------------------------------------------


def code(fragment: str) -> str:
    """A Markdown code span for the fragment (double backticks when it holds one)."""
    text = fragment.replace("|", "\\|")
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def table_rows() -> dict[str, str]:
    """test id -> the end of its row in docs/bad-inputs.md: `| AWS calls | fragments | test id |`."""
    rows: dict[str, tuple[str, tuple[str, ...]]] = {}
    for param in CLI_CASES:
        case_ = param.values[0]
        calls = "reads only" if case_.reads else "none"
        rows[f"test_cli_refuses_bad_input_before_any_write[{case_.id}]"] = (calls, case_.expect)
    for param in ACTION_CASES:
        rows[f"test_action_refuses_bad_input_before_any_call[{param.id}]"] = ("none", param.values[2])
    return row_endings(rows)


def row_endings(rows: Mapping[str, tuple[str, tuple[str, ...]]]) -> dict[str, str]:
    """test id -> `| AWS calls | fragments | test id |`, from (calls, expected fragments) per test id."""
    return {
        test_id: f"| {calls} | {' … '.join(map(code, expect))} | `{test_id}` |"
        for test_id, (calls, expect) in rows.items()
    }


def assert_table_lists(rows: Mapping[str, str], *prefixes: str) -> None:
    """docs/bad-inputs.md has exactly one row per test whose id starts with a prefix, ending as rows says."""
    lines = TABLE.read_text(encoding="utf-8").splitlines()
    documented = {
        line.rsplit("| `", 1)[1].removesuffix("` |"): line
        for line in lines
        if any(f"| `{prefix}" in line for prefix in prefixes)
    }
    assert set(documented) == set(rows)
    for test_id, row in rows.items():
        assert documented[test_id].endswith(row), f"{test_id}: the row must end with {row}"


def test_the_table_in_docs_lists_every_case() -> None:
    """docs/bad-inputs.md has a row per case with its message fragments and test id, so it cannot drift."""
    assert_table_lists(table_rows(), "test_cli_refuses_", "test_action_refuses_")
