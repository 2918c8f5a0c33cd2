"""`python -m dc2tasks.cli`: the `dc2` command."""

import sys

from dc2tasks.cli import main

if __name__ == "__main__":
    sys.exit(main())
