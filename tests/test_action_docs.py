"""docs/action.md documents every input and output of action.yml, through tables generated from it."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "action_docs.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("action_docs", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_are_up_to_date_with_action_yml() -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_every_input_and_output_is_in_the_docs() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text(encoding="utf-8"))
    docs = (ROOT / "docs" / "action.md").read_text(encoding="utf-8")
    for name in [*action["inputs"], *action["outputs"]]:
        assert f"| `{name}` |" in docs, name


def test_the_check_fails_when_action_yml_changes(tmp_path: Path) -> None:
    action, docs = tmp_path / "action.yml", tmp_path / "action.md"
    shutil.copy(ROOT / "docs" / "action.md", docs)
    text = (ROOT / "action.yml").read_text(encoding="utf-8")
    action.write_text(text.replace("default: drover-action", "default: renamed"), encoding="utf-8")
    arguments = ["--action", str(action), "--docs", str(docs)]
    module = load_script()
    assert module.main([*arguments, "--check"]) == 1
    assert module.main(arguments) == 0  # rewrites the tables
    assert "| `role-session-name` | `renamed` |" in docs.read_text(encoding="utf-8")
    assert module.main([*arguments, "--check"]) == 0


def test_tables_escape_pipes_and_show_required_and_empty_defaults() -> None:
    module = load_script()
    table = module.render_inputs(
        {
            "inputs": {
                "a": {"required": True, "description": "x | y\nnext line"},
                "b": {"default": "", "description": "d"},
                "c": {"default": "3600", "description": "d"},
            }
        }
    )
    assert table.splitlines()[2:] == [
        "| `a` | required | x \\| y next line |",
        "| `b` | — | d |",
        "| `c` | `3600` | d |",
    ]


def test_missing_markers_are_an_error() -> None:
    with pytest.raises(ValueError, match="action-docs:inputs"):
        load_script().update("no markers here", {"inputs": {}, "outputs": {}})
