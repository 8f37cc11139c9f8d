"""Load drover.yml into validated settings; every problem is one SettingsError line."""

from __future__ import annotations

import difflib
import errno
import os
import stat
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from drover.errors import SettingsError, did_you_mean
from drover.models import Rollout, S3BucketPath, Settings, SmokeTest, Stage, short_repr

MAX_SETTINGS_BYTES = 1 << 20  # a drover.yml of 1,000 stages is ~200 KB
MAX_ALIAS_EXPANSION = 10_000  # nodes that aliases add beyond the nodes written out
Location = tuple[int, int]
NodePath = tuple[str | int, ...]


# how to name another settings file, for an error about this one: the CLI's default, and the file it was given
DEFAULT_SETTINGS_HINT = "pass --settings-file FILE"
GIVEN_SETTINGS_HINT = "correct the path given to --settings-file"


def load_settings(settings_file: Path, other_file_hint: str = DEFAULT_SETTINGS_HINT) -> Settings:
    """other_file_hint: how this run names another settings file (an option, an Action input), for a missing one."""
    document = _read_document(settings_file, other_file_hint)
    return _validate(settings_file, document)


def load_stage(settings_file: Path, stage_name: str) -> Stage:
    """Load the settings file and return one stage, naming the stages that exist when it is unknown."""
    return select_stage(load_settings(settings_file), stage_name, settings_file)


def setting_location(settings_file: Path, stage_name: str, key: str) -> str:
    """'drover.yml:5:5', where a stage's key is set (read again: only an error asks), else the file's name."""
    try:
        location = _read_document(settings_file, DEFAULT_SETTINGS_HINT).location(("stages", stage_name, key))
    except SettingsError:
        location = None
    return f"{settings_file}:{location[0]}:{location[1]}" if location else str(settings_file)


def select_stage(settings: Settings, stage_name: str, settings_file: Path | None = None) -> Stage:
    try:
        return settings.stages[stage_name]
    except KeyError:
        known = ", ".join(sorted(settings.stages)) or "none"
        where = f"{settings_file}: " if settings_file else ""
        raise SettingsError(
            f"{where}unknown stage {stage_name!r} — stages defined: {known}", file=settings_file
        ) from None


class _Document:
    def __init__(self, data: Any, root: yaml.Node) -> None:
        self.data = data
        self.root = root

    def location(self, path: NodePath) -> Location | None:
        """The (line, column), 1-based, of the deepest node found along a key path."""
        node: yaml.Node = self.root
        mark = node.start_mark
        anchor: yaml.Node | None = None  # the key (or sequence item) of the deepest node found
        for index, part in enumerate(path):
            key_node, child = _child(node, part)
            if child is None:
                # a missing key: point at the key that holds the mapping it is missing from
                if anchor is not None:
                    mark = anchor.start_mark
                break
            is_last = index == len(path) - 1
            mark = (key_node if is_last and key_node is not None else child).start_mark
            anchor = key_node if key_node is not None else child
            node = child
        return mark.line + 1, mark.column + 1


def _child(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, yaml.Node | None]:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return key, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return None, node.value[part]
    return None, None


def _read_document(settings_file: Path, other_file_hint: str) -> _Document:
    text = _read_text(settings_file, other_file_hint)
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            raise SettingsError(
                f"{settings_file}: file is empty — it needs a 'stages' mapping (see docs/settings.md)",
                file=settings_file,
            )
        _check_node_graph(settings_file, root)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        problem = " ".join(part for part in (error.context, error.problem) if part)
        fix = f"fix the YAML at line {line}, column {column}" if line else "fix the YAML"
        raise SettingsError(
            f"{settings_file}:{line}:{column}: YAML syntax error: {problem} — {fix}",
            file=settings_file,
            line=line,
            column=column,
        ) from None
    except yaml.YAMLError as error:
        raise SettingsError(f"{settings_file}: YAML error: {error}", file=settings_file) from None
    except RecursionError:
        raise SettingsError(
            f"{settings_file}: YAML is nested too deeply to read — flatten it", file=settings_file
        ) from None
    finally:
        loader.dispose()
    return _Document(data, root)


def _read_text(settings_file: Path, other_file_hint: str) -> str:
    """The file's text, read without blocking and at most MAX_SETTINGS_BYTES (+1 to tell it is larger)."""
    try:
        descriptor = os.open(settings_file, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as error:
        raise _open_error(settings_file, error, other_file_hint) from None
    try:
        info = os.fstat(descriptor)
        if stat.S_ISDIR(info.st_mode):
            raise _open_error(
                settings_file, IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR)), other_file_hint
            )
        if not stat.S_ISREG(info.st_mode):
            raise SettingsError(
                f"{settings_file}: not a regular file (a FIFO, device or socket) — point --settings-file at the "
                "YAML file",
                file=settings_file,
            )
        data = _read_at_most(descriptor, MAX_SETTINGS_BYTES + 1)
    except OSError as error:
        raise _open_error(settings_file, error, other_file_hint) from None
    finally:
        os.close(descriptor)
    if len(data) > MAX_SETTINGS_BYTES:
        raise SettingsError(
            f"{settings_file}: larger than {MAX_SETTINGS_BYTES} bytes, the limit for a settings file — is it the "
            "right file?",
            file=settings_file,
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SettingsError(
            f"{settings_file}: not UTF-8 text ({error.reason} at byte {error.start}) — save it as UTF-8",
            file=settings_file,
        ) from None


def _read_at_most(descriptor: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit and (chunk := os.read(descriptor, limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _open_error(settings_file: Path, error: OSError, other_file_hint: str) -> SettingsError:
    if isinstance(error, FileNotFoundError):
        message = f"settings file not found — {did_you_mean(settings_file)}create it or {other_file_hint}"
    elif isinstance(error, IsADirectoryError):
        message = "is a directory, not a settings file — point --settings-file at the YAML file"
    else:
        message = f"cannot read settings file: {error.strerror} — make it readable or pass another --settings-file"
    return SettingsError(f"{settings_file}: {message}", file=settings_file)


def _distinct_nodes(root: yaml.Node) -> int:
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(part for pair in node.value for part in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return len(seen)


def _check_node_graph(settings_file: Path, root: yaml.Node) -> None:
    """Reject alias bombs and duplicate mapping keys.

    Only what aliases add is counted: the expanded tree may exceed the nodes written out by at most
    MAX_ALIAS_EXPANSION, so a long honest file loads however many stages it has (its size is bounded
    by MAX_SETTINGS_BYTES) while 9 aliases of 9 aliases of ... are refused before they are built.
    """
    limit = _distinct_nodes(root) + MAX_ALIAS_EXPANSION
    sizes: dict[int, int] = {}

    def expanded_size(node: yaml.Node) -> int:
        if id(node) in sizes:
            return sizes[id(node)]
        sizes[id(node)] = limit + 1  # a node reached again while expanding itself
        children: Iterable[yaml.Node]
        if isinstance(node, yaml.MappingNode):
            _reject_duplicate_keys(settings_file, node)
            children = [part for pair in node.value for part in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = ()
        total = 1
        for child in children:
            total += expanded_size(child)
            if total > limit:
                break
        sizes[id(node)] = total
        return total

    if expanded_size(root) > limit:
        raise SettingsError(
            f"{settings_file}: YAML aliases expand to more than {MAX_ALIAS_EXPANSION} nodes beyond those written "
            "out (an alias bomb?) — write the values out instead",
            file=settings_file,
        )


def _reject_duplicate_keys(settings_file: Path, node: yaml.MappingNode) -> None:
    seen: set[str] = set()
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value != "<<":
            if key.value in seen:
                line, column = key.start_mark.line + 1, key.start_mark.column + 1
                raise SettingsError(
                    f"{settings_file}:{line}:{column}: key {short_repr(key.value)} is defined twice — keep one",
                    file=settings_file,
                    line=line,
                    column=column,
                )
            seen.add(key.value)


def _validate(settings_file: Path, document: _Document) -> Settings:
    data = document.data
    if not isinstance(data, dict):
        raise SettingsError(
            f"{settings_file}: the top level must be a mapping with a 'stages' key, not {_describe_type(data)}",
            file=settings_file,
            line=1,
            column=1,
        )
    _check_stage_names(settings_file, document)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as error:
        raise _settings_error(settings_file, document, error) from None
    return settings.relative_to(settings_file.parent)


_YAML_KINDS = {
    "tag:yaml.org,2002:bool": "a boolean",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}


def _check_stage_names(settings_file: Path, document: _Document) -> None:
    """Stage names must be strings: YAML 1.1 reads `off:` as false and `2024:` as a number."""
    stages = document.data.get("stages")
    if not isinstance(stages, dict) or all(isinstance(name, str) for name in stages):
        return
    _, stages_node = _child(document.root, "stages")
    keys = [key for key, _ in stages_node.value] if isinstance(stages_node, yaml.MappingNode) else []
    for key in keys:
        if isinstance(key, yaml.ScalarNode) and key.tag in _YAML_KINDS:
            line, column = key.start_mark.line + 1, key.start_mark.column + 1
            raise SettingsError(
                f"{settings_file}:{line}:{column}: stage name {key.value[:40]} is read by YAML as "
                f"{_YAML_KINDS[key.tag]}, not a name — quote it: '{key.value[:40]}':",
                file=settings_file,
                line=line,
                column=column,
            )
    raise SettingsError(f"{settings_file}: every stage name must be a string — quote them", file=settings_file)


def _settings_error(settings_file: Path, document: _Document, error: ValidationError) -> SettingsError:
    details = error.errors(include_url=False)
    # a misspelt key also makes the key it was meant to be "missing"; the unknown key (with its
    # suggestion) is the actual mistake, so report it first
    detail = next((item for item in details if item["type"] == "extra_forbidden"), details[0])
    path: NodePath = tuple(detail["loc"])
    location = document.location(path)
    line, column = location if location else (None, None)
    where = f"{settings_file}:{line}:{column}" if line else str(settings_file)
    return SettingsError(
        f"{where}: {_describe_path(path)}: {_describe_problem(detail, path)}",
        file=settings_file,
        line=line,
        column=column,
    )


def _describe_path(path: NodePath) -> str:
    if len(path) >= 2 and path[0] == "stages":
        stage, rest = path[1], path[2:]
        keys = ".".join(str(part) for part in rest if isinstance(part, str))
        indexes = "".join(f"[{part}]" for part in rest if isinstance(part, int))
        return f"stage {stage!r}: key {keys + indexes!r}" if keys else f"stage {stage!r}"
    return f"key {'.'.join(str(part) for part in path)!r}" if path else "top level"


def _describe_problem(detail: Any, path: NodePath) -> str:
    kind = detail["type"]
    value = detail.get("input")
    if kind == "missing":
        return "required key is missing — add it"
    if kind == "extra_forbidden":
        return f"unknown key{_suggestion(path)}"
    message = str(detail["msg"]).removeprefix("Value error, ")
    if kind in {"value_error", "assertion_error"}:
        return message
    if kind == "model_type":  # pydantic says "valid dictionary or instance of Stage": name no class
        message = "Input should be a valid dictionary (key: value lines)"
    return f"{message[0].lower()}{message[1:]} (got {_describe_type(value)} {_short_repr(value)})"


def _suggestion(path: NodePath) -> str:
    key = str(path[-1])
    valid = _valid_keys(path[:-1])
    matches = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if matches:
        return f" — did you mean {matches[0]!r}?"
    return f" — valid keys: {', '.join(valid)}"


def _valid_keys(parent: NodePath) -> Sequence[str]:
    if not parent:
        return list(Settings.model_fields)
    nested: dict[str, type[BaseModel]] = {"upload_bucket": S3BucketPath, "rollout": Rollout, "smoke_test": SmokeTest}
    model = nested.get(str(parent[-1]), Stage)
    return list(model.model_fields)


def _describe_type(value: Any) -> str:
    names = {
        dict: "a mapping",
        list: "a list",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        type(None): "nothing (null)",
    }
    return names.get(type(value), type(value).__name__)


def _short_repr(value: Any) -> str:
    return short_repr(value, 60)
