"""Platform-aware dependency install into the install path: uv fast path, pip fallback.

The install targets Lambda's platform, not the machine drover runs on: CPython of the
stage's runtime on manylinux for its architecture (glibc 2.17 tags for python3.8-3.11,
up to 2.34 for python3.12+; see DESIGN.md). Dependencies come as wheels only; one
without a usable wheel is built locally only when that gives a pure-Python wheel.

Exact for the target: requirement files and locks (uv.lock, poetry.lock, pylock.toml) are read
by drover.locks with environment markers judged for Lambda's Python, so pip and uv see the same
marker-free lines; after the install every Requires-Dist of every installed distribution must be
met inside the tree, editable links to this machine are refused, and inputs that name packages
but install none are an error. The project is built from a clean temporary copy of its build
inputs, so the user's tree is never written to; its own installed files are recorded in the
marker so packaging puts them with the function code.

Every install goes into a fresh directory that then replaces the target, so files of
removed packages never linger. A key over exactly the inputs (requirement files and what
they name, the project's build inputs, platform, tools and index settings) is stored in the
target; an unchanged key skips the install. Installers run without AWS credentials in their
environment.

pip and uv give the same file names for the same inputs once their bookkeeping is
normalized (`normalize_metadata`: REQUESTED, direct_url.json, uv_cache.json and uv's
.lock removed, pip's ../../bin RECORD paths made relative to the install path); what
still differs is content only: INSTALLER ("pip"/"uv"), RECORD rows and the interpreter
path in console-script shebangs. pip judges the markers of dependencies' Requires-Dist by
the host's interpreter (uv by the target); the Requires-Dist check stops a pip install that
missed one. uv also accepts plain linux_* wheels for a manylinux target, which
`verify_platform` rejects after the install.

The package, one job a module (imports point one way, top to bottom):
- request: the install request and result, and the request's checks
- platforms: Lambda's platform for a runtime and architecture (wheel tags, marker environment)
- backends: the installers (uv, pip): finding them, their environment, running them, reading their failures
- sources: a project's build inputs, their digests, a clean copy of them
- inputs: the requirements file and the project's lock, read for the target
- build: wheels built locally (the project, local directories, locked sdists, pure-Python fallbacks)
- plan: what one install command installs, the command, running it
- audit: the installed tree's checks, metadata normalization, runtime-package exclusion, the project's files
- key: the install key and the dependency key
- target: the install path (marker, replacement) and the install() entry points
"""

from drover.install.audit import RUNTIME_PACKAGES, check_no_local_links, exclude_runtime_packages, normalize_metadata
from drover.install.backends import (
    backend_reason,
    failure_reason,
    find_installer,
    find_uv,
    installer_env,
    missing_wheel,
)
from drover.install.key import DEPENDENCY_KEY_SKIP, dependency_key, dependency_key_of, locked_set
from drover.install.platforms import is_pure_wheel, target_platform
from drover.install.request import InstallRequest, InstallResult, check_request
from drover.install.sources import _clean_copy
from drover.install.target import dependencies_elsewhere, holds_this_install, install, replace_target
from drover.packaging import INSTALL_MARKER

__all__ = [
    "DEPENDENCY_KEY_SKIP",
    "INSTALL_MARKER",
    "RUNTIME_PACKAGES",
    "InstallRequest",
    "InstallResult",
    "_clean_copy",
    "backend_reason",
    "check_no_local_links",
    "check_request",
    "dependencies_elsewhere",
    "dependency_key",
    "dependency_key_of",
    "exclude_runtime_packages",
    "failure_reason",
    "find_installer",
    "find_uv",
    "holds_this_install",
    "install",
    "installer_env",
    "is_pure_wheel",
    "locked_set",
    "missing_wheel",
    "normalize_metadata",
    "replace_target",
    "target_platform",
]
