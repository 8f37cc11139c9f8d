"""drover: deploy a Python package to an AWS Lambda function and its requirements layer."""

from typing import TYPE_CHECKING

from drover.errors import DroverError, PackagingError, SettingsError, UpdateError

if TYPE_CHECKING:
    from drover.core import Drover, RunOptions

__version__ = "1.0.0"
# The distribution's name: drover 0.7.1 on PyPI is "drover"; this rebuild installs the same `drover`
# command and import package from "drover-action", and `drover --version` names it.
DISTRIBUTION = "drover-action"
__all__ = [
    "DISTRIBUTION",
    "Drover",
    "DroverError",
    "PackagingError",
    "RunOptions",
    "SettingsError",
    "UpdateError",
    "__version__",
]


def __getattr__(name: str) -> object:
    """Drover and RunOptions load the engine (pydantic models, the archive writer) on first use, so
    `drover --help` and the Action's input checks do not pay for it."""
    if name in ("Drover", "RunOptions"):
        from drover import core

        return getattr(core, name)
    raise AttributeError(f"module 'drover' has no attribute {name!r}")
