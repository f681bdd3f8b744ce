"""``python -m bpc``: the ``bpc`` command."""

import sys

from bpc.cli import main

if __name__ == "__main__":
    sys.exit(main())
