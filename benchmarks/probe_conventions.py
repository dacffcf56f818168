"""What each of the paper's stage-1/2 probe conventions changes in the atoms, in bits, with 95% intervals.

  python benchmarks/probe_conventions.py [--samples 128] [--task synergy] [--bootstrap 1000] [--json]

Models: the shipped zoo's Qwen2-VL (`data/models/qwen2vl-s`, trained on the shapes benchmark) and the
`qwen2-vl-2b-cpu` preset (random weights with Qwen2-VL-2B's image resolution, patch size and token counts). Each is
profiled at its output layer on one shapes task with `published`, `clean` and `published` with one convention left
out (`published-minus-NAME`, pidcore.probes.conventions). Both get the repetition penalty of 1.05 that Qwen's
instruct checkpoints carry in their generation_config.json, so the `scores` convention has its real effect. The
estimator is the published BATCH without the letter-mass fallback: the untrained preset puts about 0.001 of its mass on the letters, so with the fallback every
probe is uniform and every atom 0 whatever the probes did. A change is the variant's atom minus published's, with
a 95% interval from a paired bootstrap over the evaluated samples' pointwise atoms (every variant evaluates the same
samples: same dataset, seed and split).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pidcore.atoms import ATOMS, SYMBOLS  # noqa: E402
from pidcore.models.presets import build_preset  # noqa: E402
from pidcore.pipeline.profiling import profile  # noqa: E402
from pidcore.pipeline.settings import ProfileSettings  # noqa: E402
from pidcore.probes.conventions import CLEAN, CONVENTIONS, MINUS, PUBLISHED, QWEN_SCRIPT_CONVENTIONS  # noqa: E402
from pidcore.shipped import MODELS  # noqa: E402
from pidcore.store import read_atoms, read_pointwise  # noqa: E402

VARIANTS = (CLEAN, *(f"{PUBLISHED}{MINUS}{name}" for name in CONVENTIONS if name in QWEN_SCRIPT_CONVENTIONS))
QWEN_REPETITION_PENALTY = 1.05


def run_variant(model: str, name: str, probes: str, args: argparse.Namespace, db: Path) -> str:
    """Profile one variant at the output layer; returns its stored model name."""
    stored = f"{name} [{probes}]"
    profile(ProfileSettings(model=model, dataset=f"shapes:{args.task}", db=str(db), layers="last", device="cpu",
                            dtype="float32", limit=args.samples, probes=probes, letter_mass_fallback=False,
                            name=stored, task=args.task, bootstrap=100, progress=False))
    return stored


def output_rows(db: Path, stored: str, task: str) -> tuple[pd.Series, pd.DataFrame]:
    """A variant's output-layer atoms (with intervals) and its pointwise atoms by sample id."""
    atoms = read_atoms(db)
    atoms = atoms[(atoms["model"] == stored) & (atoms["layer"] == atoms["n_layers"])].iloc[0]
    pointwise = read_pointwise(db, stored, task, "final", atoms["estimator"])
    pointwise = pointwise[pointwise["layer"] == atoms["layer"]].set_index("sample_id")[list(ATOMS)]
    return atoms, pointwise


def paired_change(base: pd.DataFrame, variant: pd.DataFrame, resamples: int, seed: int = 0) -> dict:
    """Per atom: the mean change over the samples both evaluated, and its 95% paired-bootstrap interval."""
    shared = base.index.intersection(variant.index)
    differences = (variant.loc[shared] - base.loc[shared]).to_numpy()
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(shared), size=(resamples, len(shared)))
    means = differences[draws].mean(1)
    low, high = np.percentile(means, [2.5, 97.5], axis=0)
    return {atom: {"change": float(differences[:, i].mean()), "low": float(low[i]), "high": float(high[i])}
            for i, atom in enumerate(ATOMS)} | {"samples": len(shared)}


def measure(model: str, name: str, args: argparse.Namespace, db: Path) -> dict:
    """Published's atoms and every variant's change from them, for one model."""
    started = time.perf_counter()
    base_atoms, base_pointwise = output_rows(db, run_variant(model, name, PUBLISHED, args, db), args.task)
    report = {"model": name, "published": {atom: [float(base_atoms[atom]), float(base_atoms[f"{atom}_lo"]),
                                                  float(base_atoms[f"{atom}_hi"])] for atom in ATOMS},
              "changes": {}}
    for probes in VARIANTS:
        _, pointwise = output_rows(db, run_variant(model, name, probes, args, db), args.task)
        report["changes"][probes] = paired_change(base_pointwise, pointwise, args.bootstrap)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def table(report: dict) -> str:
    """A Markdown table: published's atoms, then each variant's change with its interval."""
    header = "| probes | " + " | ".join(f"{SYMBOLS[atom]} (bits)" for atom in ATOMS) + " |"
    lines = [f"{report['model']} ({report['seconds']} s)", "", header, "|---" * (len(ATOMS) + 1) + "|"]
    base = report["published"]
    lines.append("| published | " + " | ".join(f"{v:.3f} [{lo:.3f}, {hi:.3f}]" for v, lo, hi in
                                              (base[atom] for atom in ATOMS)) + " |")
    for probes, change in report["changes"].items():
        cells = [f"{change[a]['change']:+.3f} [{change[a]['low']:+.3f}, {change[a]['high']:+.3f}]" for a in ATOMS]
        lines.append(f"| {probes} (change) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def with_penalty(folder: Path, penalty: float = QWEN_REPETITION_PENALTY) -> Path:
    """The model folder with the repetition penalty of Qwen's instruct checkpoints in its generation config."""
    path = folder / "generation_config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    path.write_text(json.dumps({**config, "repetition_penalty": penalty}))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=128, help="shapes samples per run (default 128)")
    parser.add_argument("--task", default="synergy", help="shapes task (default synergy)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="paired-bootstrap resamples (default 1000)")
    parser.add_argument("--json", action="store_true", help="one JSON line instead of tables")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as folder:
        zoo = Path(shutil.copytree(MODELS / "qwen2vl-s", Path(folder) / "qwen2vl-s"))
        preset = build_preset("qwen2-vl-2b-cpu", Path(folder) / "preset")
        models = {"qwen2vl-s (zoo, trained)": str(with_penalty(zoo)),
                  "qwen2-vl-2b-cpu (preset, random)": str(with_penalty(preset))}
        reports = [measure(model, name, args, Path(folder) / "conventions.duckdb") for name, model in models.items()]
    print(json.dumps(reports) if args.json else "\n\n".join(table(report) for report in reports))


if __name__ == "__main__":
    main()
