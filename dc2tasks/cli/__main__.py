import sys

from dc2tasks.cli import main

sys.exit(main())
