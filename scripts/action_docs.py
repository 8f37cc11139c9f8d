"""Render the inputs and outputs tables of docs/action.md from action.yml, so they cannot drift.

    python scripts/action_docs.py           # rewrite the tables in docs/action.md
    python scripts/action_docs.py --check   # exit 1 when docs/action.md is out of date (CI, tests)

The tables live between `<!-- action-docs:inputs -->` / `<!-- /action-docs:inputs -->` (and the same
for outputs); everything else in the document is prose and left alone.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
ACTION = ROOT / "action.yml"
DOCS = ROOT / "docs" / "action.md"
SECTIONS = ("inputs", "outputs")


def cell(text: object) -> str:
    """One Markdown table cell: pipes escaped, whitespace (newlines too) collapsed."""
    return " ".join(str(text).replace("|", "\\|").split())


def default_cell(spec: Mapping[str, Any]) -> str:
    if spec.get("required"):
        return "required"
    default = str(spec.get("default", ""))
    return f"`{default}`" if default else "—"


def render_inputs(action: Mapping[str, Any]) -> str:
    lines = ["| Input | Default | Description |", "|---|---|---|"]
    for name, spec in action.get("inputs", {}).items():
        lines.append(f"| `{name}` | {default_cell(spec)} | {cell(spec.get('description', ''))} |")
    return "\n".join(lines)


def render_outputs(action: Mapping[str, Any]) -> str:
    lines = ["| Output | Description |", "|---|---|"]
    for name, spec in action.get("outputs", {}).items():
        lines.append(f"| `{name}` | {cell(spec.get('description', ''))} |")
    return "\n".join(lines)


RENDERERS = {"inputs": render_inputs, "outputs": render_outputs}


def update(document: str, action: Mapping[str, Any]) -> str:
    """The document with each generated section replaced by a fresh rendering of action.yml."""
    for section in SECTIONS:
        pattern = re.compile(rf"(<!-- action-docs:{section} -->\n).*?(\n<!-- /action-docs:{section} -->)", re.DOTALL)
        if not pattern.search(document):
            raise ValueError(f"missing the <!-- action-docs:{section} --> ... <!-- /action-docs:{section} --> markers")
        table = RENDERERS[section](action)

        def replace(match: re.Match[str], table: str = table) -> str:
            return match.group(1) + table + match.group(2)

        document = pattern.sub(replace, document)
    return document


def load_action(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a mapping")
    return data


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the document is out of date; change nothing")
    parser.add_argument("--action", type=Path, default=ACTION)
    parser.add_argument("--docs", type=Path, default=DOCS)
    args = parser.parse_args(argv)
    current = args.docs.read_text(encoding="utf-8")
    wanted = update(current, load_action(args.action))
    if current == wanted:
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(), wanted.splitlines(), str(args.docs), "from action.yml", lineterm=""
        )
        print("\n".join(diff), file=sys.stderr)
        print(f"{args.docs} is out of date: run python scripts/action_docs.py", file=sys.stderr)
        return 1
    args.docs.write_text(wanted, encoding="utf-8")
    print(f"updated {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
