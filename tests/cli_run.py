"""Run the command line's entry point in this process, as a subprocess run would report it: exit code, stdout and
stderr. Starting an interpreter costs seconds on the test machines, so only a few tests pay for a real one."""

from __future__ import annotations

import io
import logging
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

from pidcore.cli import main


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*argv: str) -> Ran:
    """`pidcore ARGV...` in this process; warnings logged meanwhile go to its stderr, as a process prints them."""
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(argv))
    finally:
        logging.getLogger().removeHandler(handler)
    return Ran(code, out.getvalue(), err.getvalue())
