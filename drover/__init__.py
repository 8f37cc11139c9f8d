"""drover: deploy a Python package to an AWS Lambda function and its requirements layer."""

from drover.core import Drover, RunOptions
from drover.errors import DroverError, PackagingError, SettingsError, UpdateError

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
