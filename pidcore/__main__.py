"""Entry point for `python -m pidcore`."""

import sys

from pidcore.cli import run

sys.exit(run())
