"""Command line: `python -m pidcore SUBCOMMAND ...`."""

from __future__ import annotations

import argparse
import sys


def _tiny_model(args: argparse.Namespace) -> int:
    from pidcore.models.tiny import build_tiny_model

    folder = build_tiny_model(args.family, args.out, hidden=args.hidden, layers=args.layers, seed=args.seed)
    print(f"saved a tiny random {args.family} model to {folder}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per subcommand."""
    parser = argparse.ArgumentParser(prog="python -m pidcore", description="Information Spectrum Explorer")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny-model", help="build a small random VLM offline (for smoke tests)")
    tiny.add_argument("--family", required=True, help="the config's model type, e.g. llava")
    tiny.add_argument("--out", required=True, help="folder to save the model and processor in")
    tiny.add_argument("--hidden", type=int, default=32, help="hidden size of the language model")
    tiny.add_argument("--layers", type=int, default=2, help="decoder layers")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_tiny_model)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the subcommand; bad input ends with a one-line error, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
