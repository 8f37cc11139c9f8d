"""Rendering a run's result for people: plain text (the CLI, the Action's log) and Markdown (the step summary).

Pure functions of a DeployResult; the adapters (cli, github) print what these return.
"""

from __future__ import annotations

from drover.io import format_file_size
from drover.models import DeployAction, DeployResult, MultiResult, StageFailure

MAX_ERROR_LINE = 2000  # characters: an error never echoes a megabyte value whole


NO_CHANGES = "no changes"  # a dry run's last line when nothing would be written


def render_text(result: DeployResult) -> str:
    lines = []
    for kind, size, count, path in (
        ("function", result.function_size, result.function_file_count, result.function_archive),
        ("requirements", result.requirements_size, result.requirements_file_count, result.requirements_archive),
    ):
        if size is not None:
            where = f" at {path}" if path else ""
            top = (
                f" (top level: {_entries(result.function_entries)})"
                if kind == "function" and result.function_entries
                else ""
            )
            lines.append(f"{kind.capitalize()} archive: {format_file_size(size)}, {count} files{top}{where}")
    for action in result.actions:
        lines.append(f"{_state(action)}: {action.action} {action.target} ({action.reason})")
    if result.version:
        lines.append(f"Version {result.version} ({_version_origin(result)}) serves this code")
    if result.rollout != "none":
        lines.append(f"Rollout: {result.rollout} (the alias served version {result.previous_version} before)")
    if result.function_arn:
        lines.append(f"Function {result.function_name!r} ARN: {result.function_arn}")
    if result.mode == "deploy" and not result.actions:
        lines.append(f"Function {result.function_name!r} is up to date; nothing to do")
    if result.mode == "dry-run" and not result.actions:
        lines.append(NO_CHANGES)
    return "\n".join(lines)


MAX_ENTRIES_SHOWN = 8


def _entries(entries: list[str]) -> str:
    """The function archive's top-level entries, the first few of them."""
    more = f", and {len(entries) - MAX_ENTRIES_SHOWN} more" if len(entries) > MAX_ENTRIES_SHOWN else ""
    return ", ".join(entries[:MAX_ENTRIES_SHOWN]) + more


def markdown_cell(value: object) -> str:
    text = str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "\\|")
    return " ".join(text.split()) or "—"


def _table(header: tuple[str, ...], rows: list[tuple[object, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(markdown_cell(cell) for cell in row) + " |" for row in rows]
    return lines


def _archive_cell(size: int | None, files: int, unzipped: int) -> str:
    zipped = f"{format_file_size(size)} zipped, " if size is not None else ""
    return f"{zipped}{files} files, {format_file_size(unzipped)} unzipped"


def _function_cell(result: DeployResult) -> str:
    if result.promoted_from:
        return f"copied from stage {result.promoted_from} (nothing built)"
    cell = _archive_cell(result.function_size, result.function_file_count, result.function_unzipped_size)
    return f"{cell}; top level: {_entries(result.function_entries)}" if result.function_entries else cell


def _requirements_cell(result: DeployResult) -> str:
    """A kept layer (its dependency key matched) was neither installed nor packaged: say so, not "0 files".
    A promotion built nothing either: its layer is stage X's."""
    if result.promoted_from:
        return f"copied from stage {result.promoted_from} (nothing built)"
    install = result.install
    kept = install is not None and install.dependency_key and install.skip_reason and result.requirements_digest
    if kept and result.requirements_file_count == 0:
        return f"kept {result.requirements_layer_arn or 'the attached layer'}: it records this lock's dependency key"
    return _archive_cell(result.requirements_size, result.requirements_file_count, result.requirements_unzipped_size)


def summary_title(result: DeployResult) -> str:
    if result.mode == "dry-run":
        return f"drover dry run: {result.function_name} ({result.stage}) — nothing was changed"
    if result.mode == "package-only":
        return f"drover packaged {result.function_name} ({result.stage})"
    if any(action.done for action in result.actions):
        return f"drover deployed {result.function_name} ({result.stage})"
    return f"drover: {result.function_name} ({result.stage}) is up to date"


def render_summary(result: DeployResult) -> str:
    """The step summary: what was deployed where, what changed and why, sizes and timings."""
    lines = [f"### {markdown_cell(summary_title(result))}", ""]
    lines += _table(
        ("Item", "Value"),
        [
            ("Stage", result.stage),
            ("Function", f"{result.function_name} in {result.region_name}"),
            ("Function ARN", result.function_arn or ""),
            ("Mode", result.mode),
            ("Function digest", result.function_digest or ""),
            ("Requirements digest", result.requirements_digest or "none (no requirements)"),
            ("Code SHA-256", result.code_sha256 or ""),
            ("Requirements layer", result.requirements_layer_arn or ""),
            ("Version", result.version or ""),
            ("Version published", ("yes" if result.version_published else "no, reused") if result.version else ""),
            ("Alias", result.alias_arn or ""),
            ("Function package", _function_cell(result)),
            ("Requirements package", _requirements_cell(result)),
            ("Uploaded", format_file_size(result.bytes_uploaded)),
        ],
    )
    lines += ["", "#### Changes", ""]
    if result.actions:
        lines += _table(
            ("Change", "Target", "Why", "Status", "At (UTC)"),
            [
                (action.action, action.target, action.reason, _state(action), (action.at or "").replace("+00:00", ""))
                for action in result.actions
            ],
        )
    else:
        lines.append("Nothing to change: the live function already runs this package.")
    if result.warnings:
        lines += ["", "#### Warnings", ""] + [f"- {markdown_cell(warning)}" for warning in result.warnings]
    if result.timings:
        lines += ["", "#### Timings", ""]
        lines += _table(("Phase", "Seconds"), [(name, f"{seconds:.2f}") for name, seconds in result.timings.items()])
    return "\n".join(lines) + "\n"


def _version_origin(result: DeployResult) -> str:
    return "published by this run" if result.version_published else "already published"


def render_multi_text(result: MultiResult) -> str:
    """Each stage's report under its name, then which stages succeeded and which failed."""
    blocks = []
    for entry in result.results:
        if isinstance(entry, StageFailure):
            done = "".join(f"\ndone: {action.action} {action.target} ({action.reason})" for action in entry.actions)
            blocks.append(f"== {entry.stage}: FAILED (exit {entry.exit_code})\n{entry.error}{done}")
        else:
            blocks.append(f"== {entry.stage}: {_outcome(entry)}\n{render_text(entry)}")
    totals = result.totals
    outcome = (
        f"{totals.changed} changed, {totals.layer_versions_published} requirements layer versions published, "
        f"{format_file_size(totals.bytes_uploaded)} uploaded"
    )
    would = [entry.stage for entry in result.results if isinstance(entry, DeployResult) and entry.actions]
    if result.mode == "dry-run":
        outcome = f"nothing written; {len(would)} would change ({', '.join(would) or 'none'})"
    line = (
        f"{totals.stages} stages: {totals.succeeded} succeeded ({', '.join(result.succeeded) or 'none'}), "
        f"{totals.failed} failed ({', '.join(result.failed) or 'none'}); {outcome} in {totals.seconds:.1f} s"
    )
    nothing = result.mode == "dry-run" and not totals.failed and not would
    return "\n\n".join([*blocks, line]) + (f"\n{NO_CHANGES}" if nothing else "")


def _outcome(result: DeployResult) -> str:
    if result.mode == "dry-run":
        return "dry run" + (" (would change)" if result.actions else " (up to date)")
    if result.mode == "package-only":
        return "packaged"
    return "deployed" if result.changed else "up to date"


def render_multi_summary(result: MultiResult) -> str:
    """The step summary of several stages: one table, a row per stage; then each failure and warning."""
    totals = result.totals
    title = f"drover {result.mode}: {totals.succeeded} of {totals.stages} stages succeeded" + (
        f", {totals.failed} failed" if totals.failed else ""
    )
    rows: list[tuple[object, ...]] = []
    for entry in result.results:
        if isinstance(entry, StageFailure):
            done = _changes(entry.actions)
            rows.append(
                (entry.stage, entry.function_name or "", "failed", "", "", entry.error + (f" ({done})" if done else ""))
            )
            continue
        changes = _changes(entry.actions)
        rows.append(
            (
                entry.stage,
                f"{entry.function_name} in {entry.region_name}",
                _outcome(entry),
                entry.code_sha256 or "",
                entry.requirements_layer_arn or "",
                changes or "nothing to change",
            )
        )
    lines = [f"### {markdown_cell(title)}", ""]
    lines += _table(("Stage", "Function", "Result", "Code SHA-256", "Requirements layer", "Changes"), rows)
    lines += [
        "",
        f"{totals.layer_versions_published} requirements layer versions published; "
        f"{format_file_size(totals.bytes_uploaded)} uploaded; {totals.seconds:.1f} s.",
    ]
    warnings = [
        f"{entry.stage}: {warning}"
        for entry in result.results
        if isinstance(entry, DeployResult)
        for warning in entry.warnings
    ]
    if warnings:
        lines += ["", "#### Warnings", ""] + [f"- {markdown_cell(warning)}" for warning in warnings]
    return "\n".join(lines) + "\n"


def _changes(actions: list[DeployAction]) -> str:
    return ", ".join(f"{action.action} {_state(action)}" for action in actions)


def _state(action: DeployAction) -> str:
    return "done" if action.done else "would do"


def unwritten_report(result: DeployResult | MultiResult, what: str, error: OSError) -> str:
    """The run finished but its `what` (report, outputs) could not be written: say what the run did anyway."""
    entries = result.results if isinstance(result, MultiResult) else [result]
    done = [f"{action.action} {action.target}" for entry in entries for action in entry.actions if action.done]
    deployed = f"; it did: {', '.join(done)}" if done else ""
    return f"the run finished{deployed}, but its {what} could not be written: {error.strerror or error}"


def shorten(text: str, limit: int = MAX_ERROR_LINE) -> str:
    """Cut the middle out of an over-long line, saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = (limit - 40) // 2
    return f"{text[:keep]} … [{len(text) - 2 * keep} characters cut] … {text[-keep:]}"
