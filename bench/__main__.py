"""Entry point: ``python -m bench`` (``make bench ARGS="--quick"``)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
