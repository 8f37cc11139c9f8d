"""Entry point of the drover GitHub Action container: all logic lives in drover.github.

The runner starts the container as root on directories that belong to its own user (uid 1001 on
GitHub's hosted runners). Files the Action writes into the workspace (an install-path, archives)
must not end up root-owned there, where later steps could not clean them: the Action runs as the
workspace's owner.
"""

import gc
import json
import os
import sys
import tempfile
from pathlib import Path

FILE_COMMANDS = ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY")
FILE_COMMAND_FDS = "DROVER_FILE_COMMAND_FDS"  # {path: descriptor}: the files opened before the privilege drop


def open_file_commands() -> None:
    """Open $GITHUB_OUTPUT and $GITHUB_STEP_SUMMARY for appending while still root: on a self-hosted runner
    they may be root's while the workspace is not. Never created here (a missing one would be root's); the
    Action reports a file it cannot write before any AWS call."""
    opened: dict[str, int] = {}
    for name in FILE_COMMANDS:
        path = os.environ.get(name)
        if not path:
            continue
        try:
            opened[path] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError:
            continue
    if opened:
        os.environ[FILE_COMMAND_FDS] = json.dumps(opened)


def make_owned_directory(path: Path, uid: int, gid: int) -> None:
    """mkdir -p, each directory it creates given to uid:gid (none left root's)."""
    missing = [parent for parent in (path, *path.parents) if not parent.exists()]
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
        os.chown(directory, uid, gid)
    os.chown(path, uid, gid)


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
        make_owned_directory(Path(runner_temp), owner.st_uid, owner.st_gid)
    os.setgroups([])
    os.setgid(owner.st_gid)
    os.setuid(owner.st_uid)
    home = os.environ.get("HOME")
    if not home or not os.access(home, os.W_OK):  # e.g. a plain `docker run`: HOME=/root; uv caches there
        os.environ["HOME"] = tempfile.mkdtemp(prefix="drover-home-")


if __name__ == "__main__":
    gc.disable()  # a short-lived process: see drover/__main__.py
    open_file_commands()
    run_as_workspace_owner()
    from drover.github import main

    code = main()
    gc.freeze()
    sys.exit(code)
