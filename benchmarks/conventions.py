"""Which of the paper's conventions move the atoms, and by how much: each changed alone against `published`.

  python benchmarks/conventions.py [--db data/results.duckdb]

Cases, all estimated in this run: the planted gates of tests/gates.py (1,024 fitting and 1,024 held-out samples)
and the shipped zoo's output-layer probe outputs at each model's last checkpoint (the first 96 samples fit, the
other 96 evaluated, as tests/stage2_files.py splits them for the paper's code). The baseline is the `published`
preset; each row changes one convention (or, last, all of them: the `calibrated` preset) and prints the largest
and the mean absolute change of any atom over the cases, in bits. The letter-mass fallback is measured on the
stored logit-lens layers instead: `batch-published` against `batch-published-nofallback`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pidcore.atoms import ATOMS  # noqa: E402
from pidcore.estimators import batch_pid  # noqa: E402
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR, estimator_name  # noqa: E402
from pidcore.shipped import DEFAULT_DB  # noqa: E402
from pidcore.store import load_samples, read_atoms, read_runs  # noqa: E402
from tests.gates import PLANTED, planted_splits  # noqa: E402

VARIANTS = {
    "p(y) from the evaluation split": {"p_y_from": "evaluation"},
    "calibrated probes": {"calibrate_probes": True},
    "soft-capped logits instead of standardised embeddings": {"embedding": "capped"},
    "3 hidden layers instead of 4": {"layers": 3},
    "standardised features": {"standardise_features": True},
    "early stopping (Adam at 1e-2, validation part of the fit split)": {"early_stopping": True,
                                                                       "learning_rate": 1e-2, "max_epochs": 40},
}


def cases(db) -> dict[str, tuple]:
    """(fit split, held-out split) of every planted gate and every zoo model x task."""
    found = {f"planted {gate}": planted_splits(gate, 1024, 1024)[1:] for gate in PLANTED}
    runs = read_runs(db)
    for (model, task), rows in runs.groupby(["model", "task"]):
        samples = load_samples(db, rows.sort_values("step")["run_id"].iloc[-1])
        arrays = [np.stack(values) for values in zip(*((s.x1, s.x2, s.probs[1, -1], s.probs[2, -1], s.probs[0, -1])
                                                       for s in samples))]
        found[f"{model} {task}"] = (tuple(a[:96] for a in arrays), tuple(a[96:] for a in arrays))
    return found


def atoms_of(case: tuple, **settings) -> np.ndarray:
    fit, held = case
    result = batch_pid(*fit, held_out=held, device="cpu", bootstrap=0, **settings)
    return np.array([result.atoms[atom] for atom in ATOMS])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(DEFAULT_DB))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    found = cases(args.db)
    baseline = {name: atoms_of(case, mode="published") for name, case in found.items()}
    print(f"{len(found)} cases; change in bits against `published`, over all cases and atoms:")
    print(f"{'convention changed':66s} {'largest':>8s} {'mean':>8s}  case of the largest")
    rows = {label: {"mode": "published", **change} for label, change in VARIANTS.items()}
    rows["all of them: the calibrated preset"] = {"mode": "calibrated"}
    for label, settings in rows.items():
        changes = {name: np.abs(atoms_of(case, **settings) - baseline[name]) for name, case in found.items()}
        worst = max(changes, key=lambda name: changes[name].max())
        mean = float(np.mean([change.mean() for change in changes.values()]))
        print(f"{label:66s} {changes[worst].max():8.3f} {mean:8.3f}  {worst}", flush=True)
    every = read_atoms(args.db)
    without = estimator_name("published", False)
    paired = every[every["estimator"] == DEFAULT_ESTIMATOR].merge(
        every[every["estimator"] == without], on=["model", "task", "checkpoint", "layer"], suffixes=("", "_raw"))
    inner = paired[paired["layer"] < paired["n_layers"]]
    output = paired[paired["layer"] == paired["n_layers"]]
    for label, part in (("letter-mass fallback, logit-lens layers", inner), ("letter-mass fallback, output layer",
                                                                              output)):
        change = np.abs(part[list(ATOMS)].to_numpy() - part[[f"{a}_raw" for a in ATOMS]].to_numpy())
        print(f"{label:66s} {change.max():8.3f} {change.mean():8.3f}  ({len(part)} layers)")


if __name__ == "__main__":
    main()
