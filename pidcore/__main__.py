"""Entry point for `python -m pidcore`."""

import sys

from pidcore.cli import main

sys.exit(main())
