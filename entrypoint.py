"""Entry point of the drover GitHub Action container: all logic lives in drover.github."""

import sys

from drover.github import main

if __name__ == "__main__":
    sys.exit(main())
