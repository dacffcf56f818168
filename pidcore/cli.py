"""Command line: `pidcore SUBCOMMAND ...` (or `python -m pidcore SUBCOMMAND ...`)."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pidcore import __version__
from pidcore.atoms import ATOMS, DEDUPE_POLICIES, GAUSSIAN_COMPONENTS, SYMBOLS
from pidcore.probes.conventions import PROBE_MODES, PUBLISHED
from pidcore.shipped import PAPER_CSV, PAPER_DB

if TYPE_CHECKING:
    from pidcore.pipeline.attach import Attached
    from pidcore.pipeline.stage2_import import Imported
    from pidcore.store import LayerResult


def _tiny_model(args: argparse.Namespace) -> int:
    if args.preset is not None:
        from pidcore.models.presets import build_preset

        folder = build_preset(args.preset, args.out, dtype=args.dtype, seed=args.seed, device=args.device or "cpu")
        print(f"saved a random {args.preset} model to {folder}")
        return 0
    from pidcore.models.tiny import build_tiny_model

    if args.dtype is not None or args.device is not None:
        raise ValueError("--dtype and --device apply to --preset builds only")
    folder = build_tiny_model(args.family, args.out, hidden=args.hidden, layers=args.layers, seed=args.seed)
    print(f"saved a tiny random {args.family} model to {folder}")
    return 0


def _profile(args: argparse.Namespace) -> int:
    from pidcore.pipeline.profiling import profile
    from pidcore.pipeline.settings import ProfileSettings, default_checkpoint

    estimation = _estimation_settings(args)
    estimation["checkpoint"] = args.checkpoint or default_checkpoint(args.model, args.checkpoint_step)
    settings = ProfileSettings(model=args.model, dataset=args.dataset, db=args.db, layers=args.layers,
                               dtype=args.dtype, limit=args.limit, trust_remote_code=args.trust_remote_code,
                               task=args.task, name=args.name, revision=args.revision, dedupe=args.dedupe,
                               chunk=args.batch_size, probes=args.probes, image_dir=args.image_dir,
                               hidden_states=args.hidden_states, components=args.components,
                               gaussianise=args.gaussianise, **estimation)
    _print_atoms(profile(settings))
    return 0


def _sweep(args: argparse.Namespace) -> int:
    """Plan a sweep file's units; with --dry-run print the plan (a dataset not there yet listed, not an error) and
    which models can be profiled here, else run the missing units and report failures."""
    from pidcore.pipeline.sweep import run_sweep
    from pidcore.pipeline.sweep_file import read_sweep
    from pidcore.pipeline.sweep_plan import check_models, describe, plan

    sweep = read_sweep(args.file)
    if args.dry_run:
        print(describe(sweep, plan(sweep, unreadable_ok=True), check_models(sweep)))
        return 0
    result = run_sweep(sweep, ray_address=args.ray)
    print(f"{sweep.db}: {len(result.done)} of {len(result.done) + len(result.failed)} units done, "
          f"{len(result.failed)} failed")
    for label, reason in result.failed.items():
        print(f"  failed {label}: {reason}", file=sys.stderr)
    return 1 if result.failed else 0


def _import_paper(args: argparse.Namespace) -> int:
    from pidcore.pipeline.settings import ProfileSettings
    from pidcore.pipeline.stage2_import import PartialImportError, import_stage2

    settings = ProfileSettings(model=args.model or "", dataset="", db=args.db, task=args.task,
                               **_estimation_settings(args))
    settings.check()
    failed = 0
    for path in args.paths:
        try:
            imported = import_stage2(path, settings, n_layers=args.n_layers, widen_uniform=args.widen_uniform,
                                     family=args.family)
        except ValueError as error:
            failed += 1
            if isinstance(error, PartialImportError):
                _print_imported(path, error.imported)
            print(f"error: {path}: {error}", file=sys.stderr)
            continue
        _print_imported(path, imported)
    return 2 if failed else 0


def _print_imported(path: str, imported: list[Imported]) -> None:
    """What each imported run kept and skipped (the reasons on stderr), with its atoms."""
    for run in imported:
        skipped = sum(len(reasons) for reasons in run.skipped.values())
        print(f"{path}: imported {run.model}: {run.kept} records kept, {skipped} skipped")
        for source, reasons in run.skipped.items():
            for record, reason in reasons:
                print(f"  skipped {source} record {record}: {reason}", file=sys.stderr)
        _print_atoms(run.results)


def _export_paper(args: argparse.Namespace) -> int:
    """Write a stored run as the paper's stage-2 files; what was written, and how the split was decided."""
    from pidcore.pipeline.stage2_export import export_stage2

    done = export_stage2(args.db, args.model, args.task, args.out, layer=args.layer, checkpoint=args.checkpoint,
                         estimator=args.estimator, force=args.force)
    print(f"{done.model} on {done.task} ({done.checkpoint}), layer {done.layer} of {done.n_layers}, estimator "
          f"{done.estimator} (letter-mass fallback: {done.fallback}), {done.width} options wide; split: {done.split}")
    for folder, path in done.files.items():
        print(f"  wrote {path}: {done.counts[folder]} records")
    if done.left_out:
        print(f"  {done.left_out} samples have another option count than the most common one: written, but left out "
              "of the stored atoms, so an import differs", file=sys.stderr)
    return 0


def _samples_attach(args: argparse.Namespace) -> int:
    from pidcore.pipeline.attach import attach_texts

    results = attach_texts(args.db, args.image_root)
    for result in results:
        _print_attached(result)
    failed = [result for result in results if result.error]
    print(f"{args.db}: attached {sum(result.attached for result in results)} samples in {len(results)} runs, "
          f"skipped {sum(len(result.skipped) for result in results)}, {len(failed)} runs failed"
          if results else f"{args.db}: every stored sample has its question and options already")
    return 2 if failed else 0


def _print_attached(result: Attached) -> None:
    """One run's attach summary, skip reasons counted by kind, each skipped sample named on stderr."""
    if result.error:
        print(f"error: run {result.run_id} ({result.task}): {result.error}", file=sys.stderr)
        return
    kinds = Counter(reason.split(": ", 1)[0] for _, reason in result.skipped)
    reasons = f" ({', '.join(f'{kind}: {count}' for kind, count in kinds.most_common())})" if kinds else ""
    print(f"run {result.run_id}, task {result.task}: attached {result.attached}, "
          f"skipped {len(result.skipped)}{reasons}")
    for sample_id, reason in result.skipped:
        print(f"  skipped sample {sample_id}: {reason}", file=sys.stderr)


def _paper_build(args: argparse.Namespace) -> int:
    from pidcore.pipeline.published import build_paper_db

    reading = build_paper_db(args.source, args.db)
    for where, reason in reading.skipped:
        print(f"  skipped {where}: {reason}", file=sys.stderr)
    print(f"{args.db}: {len(reading.runs)} runs, {len(reading.layers)} rows of published atoms from {args.source}; "
          f"{len(reading.skipped)} source rows skipped")
    return 0


def _findings(args: argparse.Namespace) -> int:
    from pidcore.analysis.cautions import cautions
    from pidcore.analysis.findings import as_json, as_text, findings
    from pidcore.analysis.flags import join_diagnostics
    from pidcore.pipeline.settings import pick_estimator
    from pidcore.store import read_atoms, read_diagnostics
    from pidcore.store.read import read_caution_inputs

    every = read_atoms(args.db)
    if every.empty:
        raise ValueError(f"{args.db} holds no results")
    estimator = pick_estimator(sorted(every["estimator"].unique()), args.estimator)
    atoms = every[every["estimator"] == estimator]
    rows = join_diagnostics(atoms, read_diagnostics(args.db))
    run_ids = sorted(rows["run_id"].dropna().unique())
    found = findings(atoms, cautions(rows, *read_caution_inputs(args.db, run_ids, estimator)), every=every)
    print(as_json(found) if args.json else f"{args.db}, estimator {estimator}\n\n{as_text(found)}")
    return 0


def _demo_build(args: argparse.Namespace) -> int:
    import logging

    from pidcore.demo.build import build_demo, reprofile_finals
    from pidcore.demo.zoo import QUICK_SCHEDULE, QUICK_ZOO, ZOO, Schedule
    from pidcore.shipped import DATA

    if args.quick and args.out is None:
        raise ValueError("--quick builds a smoke-test world; give --out so the shipped data/ is not replaced")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    zoo = QUICK_ZOO if args.quick else ZOO
    if args.only:
        names = set(args.only.split(","))
        unknown = names - {spec.name for spec in zoo}
        if unknown:
            raise ValueError(f"--only names no zoo model {sorted(unknown)}; the zoo: {[spec.name for spec in zoo]}")
        zoo = tuple(spec for spec in zoo if spec.name in names)
    if args.finals_only:
        summary = reprofile_finals(data_dir=args.out or DATA, zoo=zoo, eval_samples=args.eval_samples, seed=args.seed)
    else:
        summary = build_demo(data_dir=args.out or DATA, zoo=zoo,
                             schedule=QUICK_SCHEDULE if args.quick else Schedule(),
                             eval_samples=32 if args.quick else args.eval_samples, seed=args.seed,
                             keep_others=bool(args.only))
    print(summary)
    return 0


def dashboard_launch(db: str | None, streamlit_args: list[str],
                     environ: Mapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start the dashboard: `streamlit run` on the shipped app.py with
    `streamlit_args`, and a `--db` file checked (a ValueError saying why it cannot be opened) and handed to the app
    in the environment, which opens on it and may read its folder."""
    from pidcore.shipped import APP, started_env

    return [sys.executable, "-m", "streamlit", "run", str(APP), *streamlit_args], {**environ, **started_env(db)}


def _dashboard(args: argparse.Namespace) -> int:
    """Start the dashboard, having said on the terminal which folders it opens results from. On POSIX this process
    becomes the server (exec), so stopping it (a signal, a process manager) stops the server instead of leaving it
    running orphaned."""
    from pidcore.shipped import results_dirs

    missing = [name for name in ("streamlit", "plotly") if importlib.util.find_spec(name) is None]
    if missing:
        raise ValueError(f"the dashboard needs {' and '.join(missing)}, which the core package leaves out: "
                         "pip install 'pidcore[dashboard]'")
    command, env = dashboard_launch(args.db, args.streamlit_args, os.environ)
    print("The dashboard opens .duckdb results files under: " + ", ".join(map(str, results_dirs(env))),
          file=sys.stderr, flush=True)
    if os.name == "posix":
        os.execve(sys.executable, command, env)
    return subprocess.call(command, env=env)


def _demo_summary(args: argparse.Namespace) -> int:
    from pidcore.demo.summary import summarise
    from pidcore.shipped import DEFAULT_DB

    print(summarise(args.db or DEFAULT_DB))
    return 0


def _print_atoms(results: list[LayerResult]) -> None:
    """The LayerResults of a run as a table in bits, each atom with its 95% bootstrap interval; a value that is
    missing (NULL in a database written before the interval columns, NaN without a bootstrap) prints as such."""

    def missing(value: object) -> bool:
        return value is None or value != value  # NaN is the one float unequal to itself

    print("layer" + "".join(f" {SYMBOLS[atom] + ' [95% interval]':>27s}" for atom in ATOMS)
          + "  accuracy (bits; last layer = the model's output)")
    for result in results:
        accuracy = "n/a" if missing(result.accuracy) else f"{result.accuracy:.3f}"
        cells = []
        for atom in ATOMS:
            low, high = (result.atoms.bounds or {}).get(atom, (None, None))
            value = "n/a" if missing(result.atoms[atom]) else f"{result.atoms[atom]:.4f}"
            interval = "[no interval]" if missing(low) or missing(high) else f"[{low:7.4f}, {high:7.4f}]"
            cells.append(f" {value:>8s} {interval:18s}")
        print(f"{result.layer:5d}" + "".join(cells) + f"  {accuracy}")
        repeats = result.diagnostics.get("repeats")
        if repeats:
            spread = ", ".join(f"{SYMBOLS[atom]} {repeats['spread'][atom]['sd']:.4f}" for atom in ATOMS)
            print(f"      refitted on {len(repeats['seeds'])} seeds ({repeats['split']}): standard deviation {spread}")


def _positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with one sub-parser per subcommand."""
    parser = argparse.ArgumentParser(prog="pidcore", description="Information Spectrum Explorer")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    tiny = commands.add_parser("tiny-model", help="build a random VLM offline: a tiny one of a family (for smoke "
                                                  "tests) or one shaped like a real checkpoint (a preset)")
    shape = tiny.add_mutually_exclusive_group(required=True)
    shape.add_argument("--family", help="the config's model type, any of the adapter table's: llava, "
                                        "llava_next, llava_onevision, gemma3, internvl, aya_vision, qwen2_vl, "
                                        "qwen2_5_vl, qwen3_vl, glm4v, idefics3, smolvlm, paligemma")
    shape.add_argument("--preset", help="a real checkpoint's dimensions and image token counts, e.g. llava-1.5-7b, "
                                        "or its NAME-cpu variant narrowed for a CPU (see pidcore.models.presets)")
    tiny.add_argument("--out", required=True, help="folder to save the model and processor in")
    tiny.add_argument("--hidden", type=int, default=32, help="with --family: hidden size of the language model")
    tiny.add_argument("--layers", type=int, default=2, help="with --family: decoder layers")
    tiny.add_argument("--dtype", default=None,
                      help="with --preset: weights dtype (default bfloat16 for real-size presets, float32 for -cpu)")
    tiny.add_argument("--device", default=None,
                      help="with --preset: where the weights are initialised (default cpu; cuda is much faster for "
                           "real sizes)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=_tiny_model)
    run = commands.add_parser("profile", help="probe a model on a dataset and store atoms for every layer")
    run.add_argument("--model", required=True, help="hub id or local folder of a VLM (safetensors)")
    run.add_argument("--dataset", required=True,
                     help="KIND:PATH, KIND one of mmbench, pope, pmc-vqa, jsonl, paper; paper:DIR (DIR/train.json and "
                          "DIR/val.json) or paper:PREFIX (PREFIXtrain.json, PREFIXval.json) is the paper's split "
                          "layout: statistics and fitting from train, atoms on val")
    run.add_argument("--image-dir", default=None,
                     help="folder that the dataset's image paths are relative to (default: the dataset file's folder)")
    run.add_argument("--db", required=True, help="results database (.duckdb), created if missing")
    run.add_argument("--probes", default=PUBLISHED, choices=PROBE_MODES,
                     help="probe conventions: published (default: the paper's stages 1-2, exactly where the family "
                          "has a script in the paper's code, Qwen2-VL and Qwen2.5-VL; elsewhere span, statistics and "
                          "draws) or clean (ours: the model's own positions, only question and options "
                          "masked, per-sample noise seeds); see the README's 'Probe conventions'")
    run.add_argument("--layers", default="all", help="all, last, or a comma list (0 = embeddings)")
    run.add_argument("--dtype", default="auto")
    run.add_argument("--limit", type=int, default=None, help="use at most this many samples")
    _estimation_options(run, "checkpoint name (default: final; with --checkpoint-step, a local folder whose name "
                             "ends in that step's number, e.g. runs/llava-x/step-100 at 100, is named by itself, so "
                             "the folder above, llava-x, names the model)")
    run.add_argument("--trust-remote-code", action="store_true", help="allow the model's own code to run")
    run.add_argument("--batch-size", type=_positive_int, default=8,
                     help="samples per forward (3 rows each), padded to the longest; neighbours in length go "
                          "together (default 8; raise it on a GPU until memory runs short)")
    run.add_argument("--task", default=None, help="task name shown in the dashboard (default KIND:FILENAME)")
    run.add_argument("--name", default=None,
                     help="model name shown in the dashboard; give every checkpoint of one model the same name "
                          "(default: a local folder's name, the folder above's when the folder is named like "
                          "--checkpoint, as a folder holding the --checkpoint-step's number is by default; a hub id "
                          "whole, e.g. org/name); a rerun under another name renames the stored run and says so")
    run.add_argument("--revision", default=None, help="hub revision to load: a branch, tag or commit")
    run.add_argument("--dedupe", default="error", choices=DEDUPE_POLICIES,
                     help="a sample id that appears twice: error (default: the run stops and names the ids) or "
                          "first (keep the first row of each id; the others are skipped and counted)")
    run.add_argument("--hidden-states", action="store_true",
                     help="also keep each sample's image- and question-token mean hidden states per layer (projected "
                          "to 64 numbers each) and store the Gaussian PID on them per layer as estimator `gaussian` "
                          "(the second study's measurement; see the README's 'Two estimator families')")
    run.add_argument("--components", type=_positive_int, default=GAUSSIAN_COMPONENTS,
                     help="Gaussian PID: PCA dimension per source, at most (default %(default)s)")
    run.add_argument("--gaussianise", action=argparse.BooleanOptionalAction, default=True,
                     help="Gaussian PID: map each reduced coordinate to normal quantiles by its rank on the fitting "
                          "split first (default: on)")
    run.set_defaults(run=_profile)
    sweep = commands.add_parser("sweep", help="profile the models x checkpoints x datasets of a sweep file",
                                description="Run every unit (model or checkpoint x dataset) of a TOML sweep file "
                                            "that its database lacks; started again, it resumes.")
    sweep.add_argument("file", metavar="SWEEP.toml", help="the sweep file (see the README's Sweeps section)")
    sweep.add_argument("--ray", default=None, metavar="auto|local|ADDRESS",
                       help="run the units as Ray tasks: local starts a cluster on this machine, auto joins the one "
                            "`ray start` runs here, ADDRESS a remote one (default: one after another in this process)")
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the plan: each dataset (or why it cannot be read), each unit, what the database "
                            "and its shard hold, the work left, and which models can be profiled here and why not")
    sweep.set_defaults(run=_sweep)
    paper = commands.add_parser("import-paper", help="store the paper pipeline's stage-2 output as runs")
    paper.add_argument("paths", nargs="+", metavar="PATH",
                       help="a stage-2 folder holding train/<model>.json and val/<model>.json (every model in both is "
                            "fitted on train and evaluated on val), or single JSON files, one model on one task each")
    paper.add_argument("--db", required=True, help="results database (.duckdb), created if missing")
    paper.add_argument("--model", default=None, help="model name of a single file, kept whole (default: its `model`, "
                                                     "else its name; a folder's models are named by their files)")
    paper.add_argument("--task", default=None, help="task name (default: a file's `task`, else its name; a folder's "
                                                    "name)")
    paper.add_argument("--family", default=None,
                       help="model family shown in the dashboard (default: a file's `family`, else imported; a run "
                            "imported again with another takes it, and says so)")
    paper.add_argument("--n-layers", type=int, default=1,
                       help="the model's decoder depth; the import is its output (a run imported before with another "
                            "depth is refused)")
    paper.add_argument("--widen-uniform", action="store_true",
                       help="as the paper's MMBench stage 3: a probe uniform over n options, n below the padded "
                            "width, becomes uniform over the whole width")
    _estimation_options(paper, "checkpoint name (default: final)")
    paper.set_defaults(run=_import_paper)
    export = commands.add_parser("export-paper", help="write a stored run as the paper pipeline's stage-2 output",
                                 description="Write DIR/train/MODEL.json (the fitting split) and DIR/val/MODEL.json "
                                             "(the evaluation split) in the layout import-paper and the paper's own "
                                             "stage 3 read: features, the three probes at one layer after the "
                                             "letter-mass fallback where the estimator applies it, the letters' "
                                             "vocabulary probabilities, answer and gold letters.")
    export.add_argument("--db", required=True, help="results database (.duckdb)")
    export.add_argument("--model", required=True, metavar="NAME", help="model name, as in the dashboard")
    export.add_argument("--task", required=True, help="task name, as in the dashboard")
    export.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder to write train/ and val/ in")
    export.add_argument("--layer", type=int, default=None, help="logit-lens layer (default: the output, n_layers)")
    export.add_argument("--checkpoint", default=None,
                        help="checkpoint name (default: final where present, else the only one, else the latest step)")
    export.add_argument("--estimator", default=None,
                        help="whose rows decide the fallback and, without a fixed split, the evaluated samples "
                             "(default: batch-published where present, else the first by name)")
    export.add_argument("--force", action="store_true", help="replace existing non-empty files")
    export.set_defaults(run=_export_paper)
    samples = commands.add_parser("samples", help="the stored samples of runs")
    samples_commands = samples.add_subparsers(dest="samples_command", required=True)
    attach = samples_commands.add_parser("attach", help="give samples stored before samples kept their question, "
                                                        "options and image these, reloaded from each run's dataset")
    attach.add_argument("--db", required=True, help="results database (.duckdb)")
    attach.add_argument("--image-root", default=None,
                        help="folder of a file dataset's images (default: the folder of the dataset file)")
    attach.set_defaults(run=_samples_attach)
    published = commands.add_parser("paper", help="the paper's published results (read off its figures)")
    published_commands = published.add_subparsers(dest="paper_command", required=True)
    paper_build = published_commands.add_parser("build", help="build the published results database from its CSVs")
    paper_build.add_argument("--from", dest="source", type=Path, default=PAPER_CSV,
                             help="folder of atoms.csv, layers.csv and training.csv (default: the shipped copy)")
    paper_build.add_argument("--db", type=Path, default=PAPER_DB, help="database to write (default: the shipped one)")
    paper_build.set_defaults(run=_paper_build)
    found = commands.add_parser("findings", help="task regimes, family strategies, layer phases, stage-2 rises and "
                                                  "how the two estimator families agree")
    found.add_argument("--db", required=True, help="results database (.duckdb)")
    found.add_argument("--estimator", default=None,
                       help="whose rows (default: batch-published where present, else the first by name)")
    found.add_argument("--json", action="store_true", help="JSON with stable keys instead of text tables")
    found.set_defaults(run=_findings)
    demo = commands.add_parser("demo", help="the offline demo world")
    demo_commands = demo.add_subparsers(dest="demo_command", required=True)
    build = demo_commands.add_parser("build", help="train the tiny zoo on the shapes benchmark and profile it")
    build.add_argument("--out", type=Path, default=None, help="data folder to write (default: the shipped data/)")
    build.add_argument("--quick", action="store_true", help="a reduced smoke-test build (needs --out)")
    build.add_argument("--eval-samples", type=int, default=192, help="samples per task profiled per checkpoint")
    build.add_argument("--only", default=None, help="rebuild only these zoo models (comma list), keep the others")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--finals-only", action="store_true",
                       help="no training: profile the shipped final models (data/models) again as their final "
                            "checkpoints, replacing those runs (after a change of the probes or estimators)")
    build.set_defaults(run=_demo_build)
    summary = demo_commands.add_parser("summary", help="print the summary of a demo database")
    summary.add_argument("--db", default=None, help="results database (default: the shipped one)")
    summary.set_defaults(run=_demo_summary)
    board = commands.add_parser("dashboard", help="start the dashboard on the shipped data (needs pidcore[dashboard])",
                                epilog="Any further options go to `streamlit run`, e.g. --server.port 8502.")
    board.add_argument("--db", default=None, metavar="PATH",
                       help="open on this results file (a .duckdb file as `profile` writes it, in any folder); the "
                            "dashboard may then open results from its folder too")
    board.set_defaults(run=_dashboard)
    return parser


def _estimation_options(parser: argparse.ArgumentParser, checkpoint_help: str) -> None:
    """Options shared by `profile` and `import-paper`: estimator and its conventions, seed, device, checkpoint (its
    default told by `checkpoint_help`)."""
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--estimator", "--estimator-mode", dest="estimator_mode", default="published",
                        choices=["published", "calibrated"],
                        help="published: the paper's stage 3 (p(y) from the fitting split, 8 epochs, letter-mass "
                             "fallback); calibrated: ours (calibrated probes, early stopping on a validation part "
                             "of the fitting split, no fallback)")
    parser.add_argument("--fallback", action=argparse.BooleanOptionalAction, default=None,
                        help="replace probes with less than 30%% of their mass on the option letters by the uniform "
                             "distribution, per layer (default: on for published, off for calibrated)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="refit on this many seeded fit/evaluation splits and report the spread of the atoms")
    parser.add_argument("--bootstrap", type=int, default=None,
                        help="resamples behind each atom's 95%% interval (default 100; 0: no interval, faster)")
    parser.add_argument("--checkpoint", default=None, help=checkpoint_help)
    parser.add_argument("--checkpoint-step", type=int, default=None, help="training step of the checkpoint")
    parser.add_argument("--stage", default=None, help="training stage of the checkpoint")


def _estimation_settings(args: argparse.Namespace) -> dict:
    """The ProfileSettings fields the estimation options give."""
    if args.repeats < 1:
        raise ValueError(f"--repeats must be at least 1, got {args.repeats}")
    if args.bootstrap is not None and args.bootstrap < 0:
        raise ValueError(f"--bootstrap must not be negative, got {args.bootstrap}")
    return {"device": args.device, "seed": args.seed, "estimator_mode": args.estimator_mode,
            "letter_mass_fallback": args.fallback, "repeats": args.repeats, "bootstrap": args.bootstrap,
            "checkpoint": args.checkpoint or "final", "step": args.checkpoint_step, "stage": args.stage}


def run() -> int:
    """The command line as a program (`pidcore`, `python -m pidcore`): main(), then gc.freeze(), so that the exiting
    interpreter's last collection skips every object alive by then (torch's: 0.2-0.3 s of a 2.5 s import-paper).
    Exit handlers, flushes and reference-counted clean-up run as before; only main() is for use in a process that
    goes on."""
    code = main()
    gc.freeze()
    return code


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the subcommand; bad input ends with a one-line error, not a traceback."""
    import duckdb

    from pidcore.store import StoreError

    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if args.command == "dashboard":
        args.streamlit_args = unknown
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return args.run(args)
    except (ValueError, StoreError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except duckdb.Error as error:
        print(f"error: the results database failed: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error.strerror or error}" + (f": {error.filename}" if error.filename else ""),
              file=sys.stderr)
        return 1
