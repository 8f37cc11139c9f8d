"""drover: deploy a Python package to an AWS Lambda function and its requirements layer."""

from drover.core import Drover, RunOptions
from drover.errors import DroverError, PackagingError, SettingsError, UpdateError

__version__ = "1.0.0"
__all__ = ["Drover", "DroverError", "PackagingError", "RunOptions", "SettingsError", "UpdateError", "__version__"]
