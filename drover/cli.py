"""The `drover` command: seed-compatible flags plus package-only, dry-run and JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

from drover import DISTRIBUTION, __version__, streams
from drover.errors import DroverError, one_line
from drover.progress import NO_PROGRESS, PlainProgress, Progress, TerminalProgress

if TYPE_CHECKING:  # the engine is imported once the arguments are read: `drover --help` needs none of it
    from drover.models import DeployResult, MultiResult
    from drover.service import Run, RunRequest

logger = logging.getLogger("drover")


EPILOG = """\
examples (in the directory holding drover.yml):
  drover --install-path install staging
      deploy stage "staging": update what differs from the live function
  drover --install-path install --dry-run staging
      read the live function and report each change with its reason; write nothing
  drover --install-path install --package-only --archive-dir dist staging
      build dist/function.zip (and dist/requirements.zip); no AWS call at all
  drover --install-path install --json staging
      deploy; print one JSON object (the result) on stdout, human text on stderr
  drover --install-source . --install-path build/lambda staging
      install this project and its dependencies for Lambda's platform first, then deploy

exit codes:
  0    success, including "nothing to do"
  1    the deploy failed (AWS refused or failed)
  2    bad input: options, settings, install path, install or preflight (before any AWS write)
  130  interrupted (SIGINT, Ctrl-C); 143: terminated (SIGTERM)

environment (read by the AWS SDK, boto3):
  AWS_PROFILE, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN
       credentials: the standard AWS chain (also ~/.aws/config, SSO, instance roles)
  AWS_ENDPOINT_URL
       send every AWS call to this endpoint (e.g. a local moto server: make local)
  AWS_REGION, AWS_DEFAULT_REGION
       not used for the deploy: the stage's region_name decides

--install-path defaults to the working directory, as in drover 0.7.1: then drover packages
all of it (drover.yml included) and warns; point it at what `pip install --target` filled.
"""


class _Parser(argparse.ArgumentParser):
    json_requested = False  # set before parsing: a usage error with --json is a JSON error object too

    def error(self, message: str) -> NoReturn:
        text = f"{message} (see {self.prog} --help)"
        if self.json_requested:
            _error_line(text)
            self.exit(_json_error("UsageError", text, 2))
        streams.try_write(sys.stderr, f"{self.prog}: error: {text}\n")
        self.exit(2)


def _given(value: str) -> str:
    """An option's value as given: an explicit empty string is an error, never "not given" (whose default
    may be the stage's production function)."""
    if not value.strip():
        raise argparse.ArgumentTypeError(f"the value is empty ({value!r}) — give a value, or leave the option out")
    return value


def _given_path(value: str) -> Path:
    """A path option's value: '' would be Path('') == '.', the working directory, not "not given"."""
    if not value:
        raise argparse.ArgumentTypeError("the value is empty ('') — give a path, or leave the option out")
    return Path(value)


class _Once(argparse.Action):
    """An option that takes one value: given twice is an error, not a silent last-one-wins."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        if getattr(namespace, self.dest, None) is not None:
            parser.error(
                f"{option} is given twice ({getattr(namespace, self.dest)} and {values}); give it once — "
                "stages with their own requirements name them in drover.yml (requirements: FILE)"
            )
        setattr(namespace, self.dest, values)


class _Given(argparse.Action):
    """Stores the value and records that it was given (an error about the file must not say "pass --settings-file")."""

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        setattr(namespace, self.dest, values)
        setattr(namespace, f"{self.dest}_given", True)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="drover",
        description="Deploy a Python package to an AWS Lambda function and its requirements layer.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "stages",
        metavar="STAGE",
        nargs="+",
        type=_given,
        help="stage name(s) in the settings file; several stages deploy in one run, sharing packaging and layers",
    )
    parser.add_argument("--version", "-V", action="version", version=f"%(prog)s {__version__} ({DISTRIBUTION})")
    parser.add_argument(
        "--settings-file", type=_given_path, default=Path("drover.yml"), action=_Given, help="default: drover.yml"
    )
    parser.set_defaults(settings_file_given=False)
    parser.add_argument(
        "--install-path",
        type=_given_path,
        default=Path(),
        help="package directory to deploy (e.g. from pip install --target); default: the working directory",
    )
    parser.add_argument(
        "--install-source",
        type=_given_path,
        action=_Once,
        metavar="PATH",
        help="project directory to install into --install-path before packaging",
    )
    parser.add_argument(
        "--requirements",
        type=_given_path,
        action=_Once,
        metavar="FILE",
        help="requirements file to install into --install-path before packaging",
    )
    parser.add_argument(
        "--no-dependency-key",
        dest="verify_dependencies",
        action="store_true",
        help="install the dependencies even when the lock's dependency key matches the attached layer, and fail "
        "if the installed tree differs from it (an audit of the shortcut)",
    )
    interactive = parser.add_mutually_exclusive_group()
    interactive.add_argument(
        "--interactive",
        action="store_true",
        default=None,
        help="progress bars on stderr for a terminal (default when stdin and stderr are TTYs)",
    )
    interactive.add_argument(
        "--non-interactive",
        dest="interactive",
        action="store_false",
        help="plain progress lines, at most every 5 s, for CI logs",
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")
    verbosity.add_argument("--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--package-only", action="store_true", help="build the archives; no AWS calls")
    parser.add_argument("--archive-dir", type=_given_path, help="keep function.zip and requirements.zip here")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="read live state and report changes; write nothing: the install path is never replaced (an install "
        "goes to a scratch directory beside it); ends with 'no changes' when nothing would be written",
    )
    parser.add_argument("--publish", action="store_true", default=None, help="publish a version after the update")
    parser.add_argument("--alias", type=_given, help="point this alias at the published version (implies --publish)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout; text goes to stderr")
    parser.add_argument(
        "--promote-from",
        type=_given,
        metavar="SOURCE_STAGE",
        help="make STAGE's function run exactly what SOURCE_STAGE's function runs (same code, same requirements)",
    )
    parser.add_argument(
        "--allow-untracked-source",
        action="store_true",
        help="with --promote-from: promote code drover did not deploy (no drover tags on the source function)",
    )
    parser.add_argument(
        "--rollback",
        action="store_true",
        help="point STAGE's alias back at the version it served before the last drover rollout (weights cleared)",
    )
    parser.add_argument(
        "--ignore-alarms-at-start",
        action="store_true",
        help="a rollout goes on although its alarms are already in ALARM (to deploy a fix while the old version alarms)",
    )
    parser.add_argument(
        "--function-name", type=_given, help="deploy to this function instead of the stage's (one stage only)"
    )
    parser.add_argument("--region", type=_given, help="deploy in this region instead of the stage's (one stage only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    assert isinstance(parser, _Parser)
    parser.json_requested = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    _configure_logging("stderr" if args.json else "stdout", verbose=args.verbose, quiet=args.quiet)
    from drover.interrupt import exit_code, failure_note, handle_sigterm, interruption_message

    handle_sigterm()
    from drover.service import Run

    service: Run | None = None
    try:
        service = Run(request_of(args))
        result = run(args, service)
    except DroverError as error:
        note = failure_note(service.progress() if service else [])
        return _fail(error, error.exit_code, args.verbose, json_output=args.json, suffix=note)
    except KeyboardInterrupt as error:  # SIGINT, or SIGTERM (kill, docker stop, a CI job cancelled)
        message = interruption_message(error, service.progress() if service else [])
        streams.try_write(sys.stderr, message + "\n")
        code = exit_code(error)
        return _json_error(type(error).__name__, message, code) if args.json else code
    except Exception as error:  # an unexpected bug still gets one line unless -v
        note = failure_note(service.progress() if service else [])
        prefix = f"unexpected {type(error).__name__}: "
        return _fail(error, 1, args.verbose, prefix=prefix, json_output=args.json, suffix=note)
    return _report(result, args)


def _report(result: DeployResult | MultiResult, args: argparse.Namespace) -> int:
    """Print the result; when stdout cannot take it (closed, a full disk, a broken pipe), say so on stderr, exit 1."""
    from drover.models import MultiResult
    from drover.report import render_multi_text, render_text, unwritten_report

    text = None if args.quiet else render_multi_text(result) if isinstance(result, MultiResult) else render_text(result)
    try:
        if args.json:
            _write(sys.stdout, json.dumps(result.model_dump(mode="json"), sort_keys=True))
            if text is not None:
                streams.try_write(sys.stderr, text + "\n")  # with --json the text is a log: the JSON is the report
        elif text is not None:
            _write(sys.stdout, text)
    except OSError as error:
        _silence_stdout()
        _error_line(unwritten_report(result, "report", error))
        return 1
    return result.exit_code if isinstance(result, MultiResult) else 0


def _write(stream: TextIO | None, text: str) -> None:
    streams.write(stream, text + "\n")


def _silence_stdout() -> None:
    streams.silence_stdout()


def _error_line(message: str) -> None:
    streams.try_write(sys.stderr, f"drover: error: {message}\n")


def request_of(args: argparse.Namespace) -> RunRequest:
    """The run the arguments ask for; the archive dir is checked before any work (it must never be read as input)."""
    from drover.options import RunOptions
    from drover.service import RunRequest
    from drover.settings import DEFAULT_SETTINGS_HINT, GIVEN_SETTINGS_HINT

    interactive = sys.stdin.isatty() if args.interactive is None else args.interactive
    options = RunOptions(
        progress=_progress(args, interactive),
        archive_dir=args.archive_dir,
        package_only=args.package_only,
        dry_run=args.dry_run,
        publish=args.publish,
        alias=args.alias,
        install_source=args.install_source,
        requirements=args.requirements,
        verbose=args.verbose,
        verify_dependencies=args.verify_dependencies,
        function_name=args.function_name,
        region_name=args.region,
        ignore_alarms_at_start=args.ignore_alarms_at_start,
    )
    return RunRequest(
        settings_file=args.settings_file,
        settings_file_hint=GIVEN_SETTINGS_HINT if args.settings_file_given else DEFAULT_SETTINGS_HINT,
        stages=tuple(args.stages),
        install_path=args.install_path,
        options=options,
        promote_from=args.promote_from,
        allow_untracked_source=args.allow_untracked_source,
        rollback=args.rollback,
        interactive=interactive,
    )


def run(args: argparse.Namespace, service: Run | None = None) -> DeployResult | MultiResult:
    """Prepare the run (every check without AWS), then execute it through the service."""
    from drover.archive import check_archive_dir
    from drover.service import Run

    service = service or Run(request_of(args))
    for stage in service.prepare():
        if args.archive_dir is not None:  # before any work: the archives must never be read as input
            check_archive_dir(args.archive_dir, args.install_path, stage.stage.extra_path_sources, Path.cwd())
    service.check_paths()
    installing = any(drover.installs for drover in service.drovers)
    if not installing and not args.promote_from and not args.rollback:
        _warn_if_packaging_the_settings_directory(args.install_path, args.settings_file)
    return service.execute()


def _progress(args: argparse.Namespace, interactive: bool) -> Progress:
    """Progress on stderr: bars on a terminal (unless stderr is redirected and --interactive was not given),
    plain lines every few seconds in CI logs, nothing with --quiet."""
    if args.quiet:
        return NO_PROGRESS
    if interactive and sys.stderr is not None and (args.interactive or _is_terminal(sys.stderr)):
        bars = TerminalProgress(sys.stderr)
        for handler in logger.handlers:
            handler.addFilter(bars.clear_for_log)
        return bars
    return PlainProgress(_progress_line)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def _progress_line(line: str) -> None:
    streams.try_write(sys.stderr, line + "\n")


def _warn_if_packaging_the_settings_directory(install_path: Path, settings_file: Path) -> None:
    """drover 0.7.1's default install path (the working directory) packages drover.yml and all beside it."""
    root = install_path.resolve()
    if root != Path.cwd().resolve() or not settings_file.resolve().is_relative_to(root):
        return
    names = sorted(entry.name + ("/" if entry.is_dir() else "") for entry in root.iterdir())
    shown = ", ".join(names[:5]) + (f", … ({len(names)} entries)" if len(names) > 5 else "")
    logger.warning(
        "packaging the working directory (%s) because --install-path is not given: "
        "pass --install-path DIR (e.g. the directory pip install --target filled)",
        shown,
    )


def _configure_logging(stream: str, *, verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(streams.SafeStream(stream))
    handler.setFormatter(logging.Formatter("%(message)s"))
    warning_handler = logging.StreamHandler(streams.SafeStream("stderr"))
    warning_handler.setLevel(logging.WARNING)
    warning_handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.addFilter(lambda record: record.levelno < logging.WARNING)
    logger.handlers[:] = [handler, warning_handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _fail(
    error: BaseException,
    code: int,
    verbose: bool,
    prefix: str = "",
    *,
    json_output: bool = False,
    suffix: str = "",
) -> int:
    if verbose:
        import traceback

        streams.try_write(sys.stderr, "".join(traceback.format_exception(error)))
    from drover.report import shorten

    text = shorten(prefix + one_line(error)) + suffix
    _error_line(text)
    return _json_error(type(error).__name__, text, code) if json_output else code


def _json_error(kind: str, message: str, code: int) -> int:
    """The README promises one JSON object on stdout with --json, also when the run fails."""
    document = {"error": {"code": kind, "message": message, "exit_code": code}}
    try:
        _write(sys.stdout, json.dumps(document, sort_keys=True))
    except OSError:
        _silence_stdout()
    return code
