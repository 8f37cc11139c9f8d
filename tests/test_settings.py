"""drover.yml loading: valid files get the documented defaults; every problem is one SettingsError line
naming the file, the stage and the key (and, where a key is involved, its line)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from drover import SettingsError
from drover.models import ExtraPath, S3BucketFileVersion, S3BucketPath, Settings, Stage
from drover.settings import load_settings, load_stage

EXAMPLE_SETTINGS = Path(__file__).resolve().parent.parent / "examples" / "basic_lambda" / "drover.yml"

# Lines 1-5; keys appended by a case start on line 6.
HEADER = """\
stages:
  prod:
    region_name: us-east-1
    function_name: fn
    compatible_runtime: python3.12
"""


def arn(name: str, region: str = "us-east-1", version: int = 1) -> str:
    return f"arn:aws:lambda:{region}:123456789012:layer:{name}:{version}"


def with_keys(*lines: str) -> str:
    """HEADER plus stage keys (each line indented under 'prod')."""
    return HEADER + "".join(f"    {line}\n" for line in lines)


def load_error(path: Path, stage: str | None = None) -> SettingsError:
    with pytest.raises(SettingsError) as caught:
        if stage is None:
            load_settings(path)
        else:
            load_stage(path, stage)
    error = caught.value
    message = str(error)
    assert "\n" not in message, message
    assert str(path) in message
    assert error.file == str(path)
    return error


# --- valid files --------------------------------------------------------------------------------


def test_minimal_stage_gets_seed_defaults(write_settings):
    stage = load_stage(write_settings(HEADER), "prod")

    assert isinstance(stage, Stage)
    assert (stage.region_name, stage.function_name, stage.compatible_runtime) == ("us-east-1", "fn", "python3.12")
    assert stage.requirements_layer_name == "fn-requirements"
    assert stage.function_file_patterns == []
    assert stage.function_extra_paths == []
    assert stage.supplemental_layer_arns == []
    assert stage.upload_bucket is None
    assert stage.publish is False
    assert stage.alias is None


@pytest.mark.parametrize(
    ("relative_name", "excluded"),
    [
        ("__pycache__/app.cpython-312.pyc", True),
        ("pkg/__pycache__/mod.cpython-312.pyc", True),
        ("pkg/sub/__pycache__", True),
        ("pkg/mod.py", False),
        ("pkg/mod.pyc", False),
        ("pycache.py", False),
    ],
)
def test_default_exclude_patterns_drop_pycache_as_drover_0_7_1_did(write_settings, relative_name, excluded):
    """The default is drover 0.7.1's '.*__pycache__.*', matched with re.match against the relative path."""
    stage = load_stage(write_settings(HEADER), "prod")

    assert any(pattern.match(relative_name) for pattern in stage.package_exclude_patterns) is excluded


def test_explicit_exclude_patterns_replace_the_default(write_settings):
    stage = load_stage(write_settings(with_keys("package_exclude_patterns: ['\\.pyc$']")), "prod")

    assert [pattern.pattern for pattern in stage.package_exclude_patterns] == [r"\.pyc$"]


def test_patterns_are_compiled_and_extra_paths_are_paths(write_settings):
    stage = load_stage(
        write_settings(
            with_keys(
                "function_file_patterns: ['^app', 'handler\\.py$']", "function_extra_paths: [instance, conf/a.json]"
            )
        ),
        "prod",
    )

    assert all(isinstance(pattern, re.Pattern) for pattern in stage.function_file_patterns)
    assert [pattern.pattern for pattern in stage.function_file_patterns] == ["^app", r"handler\.py$"]
    assert stage.function_extra_paths == [Path("instance"), Path("conf/a.json")]


def test_requirements_layer_name_uses_the_short_name_of_a_function_arn(write_settings):
    text = HEADER.replace("function_name: fn", "function_name: arn:aws:lambda:us-east-1:123456789012:function:my-fn")

    assert load_stage(write_settings(text), "prod").requirements_layer_name == "my-fn-requirements"


def test_explicit_requirements_layer_name_is_kept(write_settings):
    stage = load_stage(write_settings(with_keys("requirements_layer_name: shared-deps")), "prod")

    assert stage.requirements_layer_name == "shared-deps"


def test_alias_implies_publish(write_settings):
    stage = load_stage(write_settings(with_keys("alias: live")), "prod")

    assert stage.alias == "live"
    assert stage.publish is True


def test_upload_bucket_is_parsed_and_prefix_slashes_are_trimmed(write_settings):
    text = with_keys("upload_bucket:", "  region_name: us-east-1", "  bucket_name: my-bucket", "  prefix: /deploys/fn/")

    bucket = load_stage(write_settings(text), "prod").upload_bucket

    assert bucket == S3BucketPath(region_name="us-east-1", bucket_name="my-bucket", prefix="deploys/fn")


def test_four_supplemental_layers_plus_requirements_fit_the_limit_of_five(write_settings):
    lines = ["supplemental_layer_arns:"] + [f"  - {arn(f'l{index}')}" for index in range(4)]

    stage = load_stage(write_settings(with_keys(*lines)), "prod")

    assert len(stage.supplemental_layer_arns) == 4


def test_yaml_merge_keys_inside_a_stage_are_allowed(write_settings):
    text = textwrap.dedent(
        """\
        stages:
          prod: &prod
            region_name: us-east-1
            function_name: fn
            compatible_runtime: python3.12
          dev:
            <<: *prod
            function_name: fn-dev
        """
    )

    settings = load_settings(write_settings(text))

    assert settings.stages["dev"].function_name == "fn-dev"
    assert settings.stages["dev"].requirements_layer_name == "fn-dev-requirements"
    assert settings.stages["dev"].region_name == "us-east-1"


def test_the_shipped_example_loads(tmp_path):
    settings = load_settings(EXAMPLE_SETTINGS)

    stage = settings.stages["staging"]
    assert isinstance(settings, Settings)
    assert stage.function_name == "basic-lambda"
    assert stage.function_extra_paths == [ExtraPath(path=Path("instance"), archive_path="instance")]
    assert stage.upload_bucket is not None and stage.upload_bucket.bucket_name == "drover-examples"


def test_models_keep_the_seed_field_names():
    assert set(Settings.model_fields) == {"stages"}
    assert {
        "region_name",
        "function_name",
        "compatible_runtime",
        "function_file_patterns",
        "function_extra_paths",
        "package_exclude_patterns",
        "requirements_layer_name",
        "supplemental_layer_arns",
        "upload_bucket",
    } <= set(Stage.model_fields)
    assert set(S3BucketPath.model_fields) == {"region_name", "bucket_name", "prefix"}
    assert S3BucketFileVersion(bucket_name="b", key="k").version_id is None


# --- errors reading the file --------------------------------------------------------------------


def test_missing_file_is_a_settings_error(tmp_path):
    error = load_error(tmp_path / "nope.yml")

    assert "not found" in str(error)


def test_directory_is_a_settings_error(tmp_path):
    error = load_error(tmp_path)

    assert "directory" in str(error)


def test_non_utf8_file_is_a_settings_error(write_settings):
    error = load_error(write_settings(HEADER.encode() + b"    alias: caf\xe9\n"))

    assert "UTF-8" in str(error)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n"], ids=["empty", "blank-lines", "comment-only"])
def test_empty_file_is_a_settings_error(write_settings, text):
    error = load_error(write_settings(text))

    assert "empty" in str(error)


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("stages:\n  prod:\n    region_name: [us-east-1\n    function_name: fn\n", 4, 18),
        ("stages:\n  prod:\n    region_name: us-east-1\n   function_name: fn\n", 4, 4),
        ("stages:\n\tprod: {}\n", 2, 1),
    ],
    ids=["unclosed-flow-sequence", "bad-indentation", "tab"],
)
def test_yaml_syntax_error_reports_line_and_column(write_settings, text, line, column):
    error = load_error(write_settings(text))

    assert "YAML syntax error" in str(error)
    assert f":{line}:{column}:" in str(error)
    assert (error.line, error.column) == (line, column)


def test_python_tags_are_refused_not_executed(write_settings):
    error = load_error(write_settings("stages: !!python/object/apply:os.system ['true']\n"))

    assert error.line == 1


@pytest.mark.parametrize(
    ("text", "kind"), [("- prod\n- dev\n", "a list"), ("just a string\n", "a string"), ("42\n", "an integer")]
)
def test_root_must_be_a_mapping(write_settings, text, kind):
    error = load_error(write_settings(text))

    assert "top level must be a mapping" in str(error)
    assert kind in str(error)
    assert error.line == 1


def test_unknown_stage_lists_the_stages_that_exist(write_settings):
    text = (
        HEADER + "  dev:\n    region_name: us-east-1\n    function_name: fn-dev\n    compatible_runtime: python3.12\n"
    )

    error = load_error(write_settings(text), stage="staging")

    assert "unknown stage 'staging'" in str(error)
    assert "stages defined: dev, prod" in str(error)


def test_unknown_stage_when_no_stage_is_defined(write_settings):
    error = load_error(write_settings("stages: {}\n"), stage="prod")

    assert "stages defined: none" in str(error)


def test_yaml_alias_bomb_fails_fast_with_a_clear_message(tmp_path):
    """A "billion laughs" document (9^9 leaves through shared anchors) is refused before expansion.

    Run in a child process with a timeout so a regression fails instead of hanging the suite.
    """
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    lines.append("stages: *i")
    path = tmp_path / "bomb.yml"
    path.write_text("\n".join(lines) + "\n")
    code = (
        "import sys; from pathlib import Path; from drover.settings import load_settings\n"
        "from drover import SettingsError\n"
        "try:\n    load_settings(Path(sys.argv[1]))\nexcept SettingsError as error:\n    print(error)\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30, check=True
    )

    message = result.stdout.strip()
    assert "\n" not in message
    assert message.startswith(str(path))
    assert "alias" in message


def test_self_referencing_alias_is_a_settings_error(write_settings):
    error = load_error(write_settings("stages: &loop\n  prod: *loop\n"))

    assert "alias" in str(error)


def test_deeply_nested_yaml_is_a_settings_error_not_a_recursion_error(write_settings):
    error = load_error(write_settings("stages: " + "[" * 1000 + "]" * 1000 + "\n"))

    assert "nested too deeply" in str(error)


# --- errors in the content: (case, text, substrings the message must contain, line of the key) ----

ERROR_CASES = [
    pytest.param(
        HEADER.replace("    function_name: fn\n", ""),
        ["stage 'prod'", "'function_name'", "required key is missing"],
        2,
        id="missing-required-key",
    ),
    pytest.param(
        "stages:\n  prod: {region_name: us-east-1, compatible_runtime: python3.12}\n",
        ["stage 'prod'", "'function_name'", "required key is missing"],
        2,
        id="missing-required-key-flow-style",
    ),
    pytest.param(
        "stage:\n  prod: {}\n",
        ["'stage'", "did you mean 'stages'"],
        1,
        id="misspelt-stages",
    ),
    pytest.param("stages:\n", ["'stages'", "valid dictionary", "null"], 1, id="stages-null"),
    pytest.param("stages:\n  prod:\n", ["stage 'prod'", "null"], 2, id="stage-null"),
    pytest.param(
        with_keys("function_file_patterns: abc"),
        ["stage 'prod'", "'function_file_patterns'", "valid list", "a string 'abc'"],
        6,
        id="patterns-as-string",
    ),
    pytest.param(
        with_keys("function_file_patterns:", "  app: yes"),
        ["stage 'prod'", "'function_file_patterns'", "valid list", "a mapping"],
        6,
        id="patterns-as-mapping",
    ),
    pytest.param(
        with_keys("function_file_patterns: [1]"),
        ["stage 'prod'", "'function_file_patterns[0]'", "regular expression string", "int"],
        6,
        id="pattern-not-a-string",
    ),
    pytest.param(
        HEADER.replace("function_name: fn", "function_name: 123"),
        ["stage 'prod'", "'function_name'", "valid string", "an integer 123"],
        4,
        id="function-name-wrong-type",
    ),
    pytest.param(
        with_keys("function_file_patterns:", "  - '^app'", "  - '(unclosed'"),
        ["stage 'prod'", "'function_file_patterns[1]'", "'(unclosed'", "missing ), unterminated subpattern"],
        8,
        id="invalid-function-regex",
    ),
    pytest.param(
        with_keys("package_exclude_patterns: ['*.pyc']"),
        ["stage 'prod'", "'package_exclude_patterns[0]'", "'*.pyc'", "nothing to repeat"],
        6,
        id="invalid-exclude-regex",
    ),
    pytest.param(
        with_keys("function_extr_paths: [instance]"),
        ["stage 'prod'", "'function_extr_paths'", "unknown key", "did you mean 'function_extra_paths'?"],
        6,
        id="unknown-key-with-suggestion",
    ),
    pytest.param(
        HEADER.replace("function_name: fn", "function_nme: fn"),
        ["stage 'prod'", "'function_nme'", "did you mean 'function_name'?"],
        4,
        id="misspelt-required-key-suggests-it",
    ),
    pytest.param(
        with_keys("zzzzzz: 1"),
        ["stage 'prod'", "'zzzzzz'", "unknown key", "valid keys:", "function_extra_paths"],
        6,
        id="unknown-key-lists-valid-keys",
    ),
    pytest.param(
        with_keys("upload_bucket:", "  region_name: us-east-1", "  bucket_nme: my-bucket"),
        ["stage 'prod'", "'upload_bucket.bucket_nme'", "did you mean 'bucket_name'?"],
        8,
        id="unknown-key-in-upload-bucket",
    ),
    pytest.param(
        HEADER.replace("python3.12", "python2.7"),
        ["stage 'prod'", "'compatible_runtime'", "'python2.7'", "Python runtime"],
        5,
        id="runtime-python2",
    ),
    pytest.param(
        HEADER.replace("python3.12", "nodejs18.x"),
        ["stage 'prod'", "'compatible_runtime'", "'nodejs18.x'", "Python runtime"],
        5,
        id="runtime-nodejs",
    ),
    pytest.param(
        with_keys("architecture: amd64"),
        ["stage 'prod'", "'architecture'", "'x86_64' or 'arm64'", "'amd64'"],
        6,
        id="invalid-architecture",
    ),
    pytest.param(
        HEADER.replace("region_name: us-east-1", "region_name: US_EAST"),
        ["stage 'prod'", "'region_name'", "'US_EAST'", "AWS region"],
        3,
        id="invalid-region",
    ),
    pytest.param(
        with_keys("supplemental_layer_arns:", "  - arn:aws:lambda:us-east-1:123:layer:deps:1"),
        ["stage 'prod'", "'supplemental_layer_arns'", "arn:aws:lambda:us-east-1:123:layer:deps:1", "layer version ARN"],
        6,
        id="malformed-layer-arn",
    ),
    pytest.param(
        with_keys("supplemental_layer_arns:", f"  - {arn('deps')}", f"  - {arn('deps')}"),
        ["stage 'prod'", "listed twice", arn("deps")],
        6,
        id="duplicate-layer-arn",
    ),
    pytest.param(
        with_keys("supplemental_layer_arns:", *[f"  - {arn(f'l{index}')}" for index in range(5)]),
        ["stage 'prod'", "5 supplemental layers plus the requirements layer", "limit of 5"],
        2,
        id="more-than-five-layers",
    ),
    pytest.param(
        with_keys("supplemental_layer_arns:", f"  - {arn('deps', region='eu-west-1')}"),
        ["stage 'prod'", arn("deps", region="eu-west-1"), "eu-west-1", "us-east-1"],
        2,
        id="layer-in-another-region",
    ),
    pytest.param(
        with_keys("upload_bucket:", "  region_name: eu-west-1", "  bucket_name: my-bucket"),
        ["stage 'prod'", "upload_bucket my-bucket", "eu-west-1", "us-east-1"],
        2,
        id="bucket-in-another-region",
    ),
    pytest.param(
        with_keys("upload_bucket:", "  region_name: us-east-1", "  bucket_name: My_Bucket"),
        ["stage 'prod'", "'upload_bucket.bucket_name'", "'My_Bucket'", "S3 bucket name"],
        8,
        id="invalid-bucket-name",
    ),
    pytest.param(
        with_keys("keep_layer_versions: 0"),
        ["stage 'prod'", "'keep_layer_versions'", "greater than or equal to 1", "0"],
        6,
        id="keep-layer-versions-zero",
    ),
    pytest.param(
        with_keys("alias: '123'"),
        ["stage 'prod'", "'alias'", "'123'", "not only digits"],
        6,
        id="numeric-alias",
    ),
    pytest.param(
        with_keys("region_name: us-west-2"),
        ["'region_name'", "defined twice"],
        6,
        id="duplicate-key",
    ),
    pytest.param(
        HEADER + "  prod:\n    region_name: us-east-1\n",
        ["'prod'", "defined twice"],
        6,
        id="duplicate-stage",
    ),
]


@pytest.mark.parametrize(("text", "expected", "line"), ERROR_CASES)
def test_settings_error_is_one_line_naming_file_stage_key_and_line(write_settings, text, expected, line):
    path = write_settings(text)

    error = load_error(path)

    message = str(error)
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"
    assert error.line == line, message
    assert message.startswith(f"{path}:{line}:{error.column}: ")


# --- round two (issue 16): whole values, bounds, stage names ------------------------------------


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ('function_name: "fn\\n"', "'fn\\n' is not a valid Lambda function name"),
        ('alias: "live\\n"', "'live\\n' is not a valid alias name"),
        ('requirements_layer_name: "deps\\n"', "'deps\\n' is not a valid layer name"),
        ('supplemental_layer_arns: ["' + arn("x") + '\\n"]', "is not a valid layer version ARN"),
    ],
)
def test_a_trailing_newline_never_passes_a_pattern(write_settings, line, fragment):
    key = line.split(":", 1)[0]
    header = "".join(part for part in HEADER.splitlines(keepends=True) if not part.strip().startswith(key + ":"))
    error = load_error(write_settings(header + f"    {line}\n"))
    assert fragment in str(error)


@pytest.mark.parametrize("runtime", ["python3.9", "python3.10", "python3.11", "python3.12", "python3.13", "python3.14"])
def test_every_supported_runtime_loads(write_settings, runtime):
    stage = load_stage(write_settings(HEADER.replace("python3.12", runtime)), "prod")
    assert stage.compatible_runtime == runtime


@pytest.mark.parametrize(
    ("runtime", "fragment"),
    [
        ("python3.8", "'python3.8' is a deprecated Lambda runtime"),
        ("python3.7", "'python3.7' is a deprecated Lambda runtime"),
        ("python3.15", "'python3.15' is not a Python runtime Lambda supports"),
    ],
)
def test_a_runtime_lambda_does_not_run_is_refused_naming_the_supported_ones(write_settings, runtime, fragment):
    message = str(load_error(write_settings(HEADER.replace("python3.12", runtime))))
    assert fragment in message and "use one of python3.9, python3.10, python3.11, python3.12" in message


def test_a_function_arn_must_be_in_the_stages_region(write_settings):
    text = HEADER.replace("function_name: fn", "function_name: arn:aws:lambda:eu-west-1:123456789012:function:fn")
    assert "is an ARN in region eu-west-1, but region_name is us-east-1" in str(load_error(write_settings(text)))


def test_a_function_arn_in_the_stages_region_loads(write_settings):
    text = HEADER.replace("function_name: fn", "function_name: arn:aws:lambda:us-east-1:123456789012:function:fn")
    assert load_stage(write_settings(text), "prod").short_function_name == "fn"


@pytest.mark.parametrize(
    ("key", "kind"), [("off", "a boolean"), ("yes", "a boolean"), ("2024", "a number"), ("1.5", "a number")]
)
def test_a_stage_key_yaml_reads_as_another_type_says_quote_it_at_its_line(write_settings, key, kind):
    text = HEADER + f"  {key}:\n    region_name: us-east-1\n"
    error = load_error(write_settings(text))
    assert (error.line, error.column) == (6, 3)
    assert f":6:3: stage name {key} is read by YAML as {kind}, not a name — quote it: '{key}':" in str(error)


def test_a_quoted_numeric_stage_key_loads(write_settings):
    text = HEADER.replace("  prod:", "  '2024':")
    assert load_stage(write_settings(text), "2024").function_name == "fn"


def test_the_settings_file_is_read_up_to_its_bound(write_settings):
    from drover.settings import MAX_SETTINGS_BYTES

    at_limit = HEADER + "#" * (MAX_SETTINGS_BYTES - len(HEADER) - 1) + "\n"
    assert len(at_limit.encode()) == MAX_SETTINGS_BYTES
    assert load_stage(write_settings(at_limit), "prod").function_name == "fn"
    error = load_error(write_settings(at_limit + "#"))
    assert "larger than 1048576 bytes" in str(error)


def test_a_device_is_not_read(tmp_path):
    with pytest.raises(SettingsError, match=r"^/dev/zero: not a regular file"):
        load_settings(Path("/dev/zero"))


def test_aliases_are_counted_not_the_nodes_written_out(write_settings):
    """2,000 honest stages (~14,000 nodes) load; a few aliases adding 10,001 nodes do not."""
    stages = "".join(
        f"  s{number}:\n    region_name: us-east-1\n    function_name: fn{number}\n    compatible_runtime: python3.12\n"
        for number in range(2000)
    )
    assert len(load_settings(write_settings("stages:\n" + stages)).stages) == 2000
    leaves = "[" + ", ".join(["x"] * 1000) + "]"
    bomb = f"big: &big {leaves}\nmore: [{', '.join(['*big'] * 11)}]\n" + HEADER
    assert "aliases expand to more than 10000 nodes" in str(load_error(write_settings(bomb)))


def test_a_huge_value_is_echoed_shortened(write_settings):
    message = str(load_error(write_settings(HEADER.replace("function_name: fn", "function_name: " + "x" * 100_000))))
    assert len(message) < 400 and "(100002 characters)" in message
