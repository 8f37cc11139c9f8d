"""`python -m drover` and the `drover` console script: one short-lived process per run.

The cyclic garbage collector is off for the run and skipped at exit. A run makes few reference
cycles (a handful per AWS call; files, digests and archives are freed by reference counting), but
its collections walked every object botocore and pydantic load: 0.04 CPU-s of collections during a
no-op redeploy and 0.07 s for the last one at exit, 0.11 s of a 0.7 s run (bench, docs/decisions.md).
"""

import gc
import sys
from typing import NoReturn


def main() -> NoReturn:
    gc.disable()
    from drover.cli import main as run

    code = run()
    gc.freeze()  # the interpreter's last collection at exit then skips them
    sys.exit(code)


if __name__ == "__main__":
    main()
