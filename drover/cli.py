"""The `drover` command: seed-compatible flags plus package-only, dry-run and JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn, TextIO

from drover import __version__
from drover.core import Drover, RunOptions
from drover.errors import DroverError, SettingsError
from drover.models import DeployResult, MultiResult
from drover.report import render_multi_text, render_text
from drover.settings import load_settings, select_stage

logger = logging.getLogger("drover")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="drover",
        description="Deploy a Python package to an AWS Lambda function and its requirements layer.",
    )
    parser.add_argument(
        "stages",
        metavar="STAGE",
        nargs="+",
        help="stage name(s) in the settings file; several stages deploy in one run, sharing packaging and layers",
    )
    parser.add_argument("--version", "-V", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--settings-file", type=Path, default=Path("drover.yml"), help="default: drover.yml")
    parser.add_argument(
        "--install-path",
        type=Path,
        default=Path(),
        help="package directory to deploy (e.g. from pip install --target); default: working directory",
    )
    parser.add_argument(
        "--install-source",
        type=Path,
        metavar="PATH",
        help="project directory to install into --install-path before packaging",
    )
    parser.add_argument(
        "--requirements",
        type=Path,
        metavar="FILE",
        help="requirements file to install into --install-path before packaging",
    )
    interactive = parser.add_mutually_exclusive_group()
    interactive.add_argument(
        "--interactive",
        action="store_true",
        default=None,
        help="progress output for a terminal (default when stdin is a TTY)",
    )
    interactive.add_argument(
        "--non-interactive", dest="interactive", action="store_false", help="plain line output for CI logs"
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="debug output and tracebacks")
    verbosity.add_argument("--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--package-only", action="store_true", help="build the archives; no AWS calls")
    parser.add_argument("--archive-dir", type=Path, help="keep function.zip and requirements.zip here")
    parser.add_argument("--dry-run", action="store_true", help="read live state and report changes; write nothing")
    parser.add_argument("--publish", action="store_true", default=None, help="publish a version after the update")
    parser.add_argument("--alias", help="point this alias at the published version (implies --publish)")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout; text goes to stderr")
    parser.add_argument(
        "--promote-from",
        metavar="SOURCE_STAGE",
        help="make STAGE's function run exactly what SOURCE_STAGE's function runs (same code, same requirements)",
    )
    parser.add_argument(
        "--allow-untracked-source",
        action="store_true",
        help="with --promote-from: promote code drover did not deploy (no drover tags on the source function)",
    )
    parser.add_argument("--function-name", help="deploy to this function instead of the stage's (one stage only)")
    parser.add_argument("--region", help="deploy in this region instead of the stage's (one stage only)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    human = sys.stderr if args.json else sys.stdout
    _configure_logging(human, verbose=args.verbose, quiet=args.quiet)
    try:
        result = run(args)
    except DroverError as error:
        return _fail(error, error.exit_code, args.verbose)
    except KeyboardInterrupt:
        print("drover: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected bug still gets one line unless -v
        return _fail(error, 1, args.verbose, prefix=f"unexpected {type(error).__name__}: ")
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), sort_keys=True))
    if not args.quiet:
        print(render_multi_text(result) if isinstance(result, MultiResult) else render_text(result), file=human)
    return result.exit_code if isinstance(result, MultiResult) else 0


def run(args: argparse.Namespace) -> DeployResult | MultiResult:
    settings = load_settings(args.settings_file)
    for stage in [*args.stages, *([args.promote_from] if args.promote_from else [])]:
        select_stage(settings, stage, args.settings_file)  # an unknown stage names the settings file
    if args.promote_from and len(args.stages) != 1:
        raise SettingsError("--promote-from SOURCE_STAGE takes exactly one target STAGE")
    if args.allow_untracked_source and not args.promote_from:
        raise SettingsError("--allow-untracked-source only applies with --promote-from")
    options = RunOptions(
        archive_dir=args.archive_dir,
        package_only=args.package_only,
        dry_run=args.dry_run,
        publish=args.publish,
        alias=args.alias,
        install_source=args.install_source,
        requirements=args.requirements,
        verbose=args.verbose,
        function_name=args.function_name,
        region_name=args.region,
    )
    interactive = sys.stdin.isatty() if args.interactive is None else args.interactive
    if len(args.stages) > 1:
        from drover.multi import MultiStageRun

        return MultiStageRun(settings, args.stages, interactive, options=options).update(args.install_path)
    drover = Drover(settings, args.stages[0], interactive, options=options)
    if args.promote_from:
        if args.package_only or args.install_source or args.requirements:
            raise SettingsError("--promote-from copies what the source runs; it builds and installs nothing")
        source = select_stage(settings, args.promote_from, args.settings_file)
        return drover.promote(args.promote_from, source, allow_untracked=args.allow_untracked_source)
    return drover.update(args.install_path)


def _configure_logging(stream: TextIO, *, verbose: bool, quiet: bool) -> None:
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    warning_handler = logging.StreamHandler(sys.stderr)
    warning_handler.setLevel(logging.WARNING)
    warning_handler.setFormatter(logging.Formatter("warning: %(message)s"))
    handler.addFilter(lambda record: record.levelno < logging.WARNING)
    logger.handlers[:] = [handler, warning_handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO)


def _fail(error: BaseException, code: int, verbose: bool, prefix: str = "") -> int:
    if verbose:
        import traceback

        traceback.print_exception(error, file=sys.stderr)
    message = " ".join(str(error).split()) or type(error).__name__
    print(f"drover: error: {prefix}{message}", file=sys.stderr)
    return code
