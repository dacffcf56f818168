"""Command line: `python -m pidcore SUBCOMMAND ...`."""

from __future__ import annotations

import argparse
import sys


def _tiny_model(args: argparse.Namespace) -> int:
    from pidcore.models.tiny import build_tiny_model

    folder = build_tiny_model(args.family, args.out, hidden=args.hidden, layers=args.layers, seed=args.seed)
    print(f"saved a tiny random {args.family} model to {folder}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from pidcore.profile import ProfileSettings, profile

    settings = ProfileSettings(model=args.model, dataset=args.dataset, db=args.db, layers=args.layers,
                               device=args.device, dtype=args.dtype, limit=args.limit, seed=args.seed,
                               estimator_mode=args.estimator_mode, checkpoint=args.checkpoint,
                               step=args.checkpoint_step, stage=args.stage, trust_remote_code=args.trust_remote_code)
    rows = profile(settings)
    print("layer        R       U1       U2        S  accuracy (bits; last layer = the model's output)")
    for row in rows:
        accuracy = "n/a" if row["accuracy"] is None else f"{row['accuracy']:.3f}"
        print(f"{row['layer']:5d} {row['r']:8.4f} {row['u1']:8.4f} {row['u2']:8.4f} {row['s']:8.4f}  {accuracy}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per subcommand."""
    parser = argparse.ArgumentParser(prog="python -m pidcore", description="Information Spectrum Explorer")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny-model", help="build a small random VLM offline (for smoke tests)")
    tiny.add_argument("--family", required=True,
                      help="the config's model type: llava, qwen2_vl, qwen2_5_vl, idefics3 or paligemma")
    tiny.add_argument("--out", required=True, help="folder to save the model and processor in")
    tiny.add_argument("--hidden", type=int, default=32, help="hidden size of the language model")
    tiny.add_argument("--layers", type=int, default=2, help="decoder layers")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_tiny_model)
    run = commands.add_parser("profile", help="probe a model on a dataset and store atoms for every layer")
    run.add_argument("--model", required=True, help="hub id or local folder of a VLM (safetensors)")
    run.add_argument("--dataset", required=True, help="KIND:PATH, KIND one of mmbench, pope, pmc-vqa, jsonl, paper")
    run.add_argument("--db", required=True, help="results database (.duckdb), created if missing")
    run.add_argument("--layers", default="all", help="all, last, or a comma list (0 = embeddings)")
    run.add_argument("--device", default="auto")
    run.add_argument("--dtype", default="auto")
    run.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--estimator-mode", default="published", choices=["published", "calibrated"])
    run.add_argument("--checkpoint", default="final", help="checkpoint name")
    run.add_argument("--checkpoint-step", type=int, default=None, help="training step of the checkpoint")
    run.add_argument("--stage", default=None, help="training stage of the checkpoint")
    run.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code to run")
    run.set_defaults(run=_profile)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the subcommand; bad input ends with a one-line error, not a traceback."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
