"""Entry point of the drover GitHub Action container: all logic lives in drover.github.

The runner starts the container as root on directories that belong to its own user (uid 1001 on
GitHub's hosted runners). Files the Action writes into the workspace (an install-path, archives)
must not end up root-owned there, where later steps could not clean them: the Action runs as the
workspace's owner.
"""

import gc
import os
import sys
import tempfile
from pathlib import Path


def run_as_workspace_owner() -> None:
    if os.geteuid() != 0:
        return
    workspace = Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())
    try:
        owner = workspace.stat()
    except OSError:
        return
    if owner.st_uid == 0:
        return
    runner_temp = os.environ.get("RUNNER_TEMP")
    if runner_temp:  # the host's path, not mounted: a directory in the container the owner can write
        Path(runner_temp).mkdir(parents=True, exist_ok=True)
        os.chown(runner_temp, owner.st_uid, owner.st_gid)
    os.setgroups([])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)
    home = os.environ.get("HOME")
    if not home or not os.access(home, os.W_OK):  # e.g. a plain `docker run`: HOME=/root; uv caches there
        os.environ["HOME"] = tempfile.mkdtemp(prefix="drover-home-")


if __name__ == "__main__":
    gc.disable()  # a short-lived process: see drover/__main__.py
    run_as_workspace_owner()
    from drover.github import main

    code = main()
    gc.freeze()
    sys.exit(code)
