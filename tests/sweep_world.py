"""The sweep the sweep tests and benchmarks/sweep.py run: a tiny LLaVA, and a tiny Qwen2-VL with three checkpoints
over two stages, each on two shapes tasks."""

from __future__ import annotations

from pathlib import Path

from pidcore.models.tiny import build_tiny_model
from pidcore.store import load_samples, read_atoms, read_runs, table_sizes

CHECKPOINTS = [("1", 10), ("2", 20), ("2", 30)]
UNITS = 2 * (2 + len(CHECKPOINTS))
SWEEP = """
db = "{db}"

[settings]
layers = "all"
bootstrap = 10
batch_size = 4

[[models]]
path = "models/tiny-llava"
name = "tiny-llava"

[[models]]
path = "models/tiny-qwen"
name = "tiny-qwen"
{checkpoints}
{extra_model}
[[datasets]]
spec = "shapes:synergy"
task = "synergy"
limit = 24

[[datasets]]
spec = "shapes:language"
task = "language"
limit = 24
"""
CHECKPOINT = """
[[models.checkpoints]]
path = "checkpoints/stage{stage}-step{step}"
step = {step}
stage = "{stage}"
"""


def write_sweep(root: Path, db: str, extra_model: str = "", checkpoints: bool = True) -> Path:
    """A sweep file in the sweep folder writing `db` (a name in that folder); without `checkpoints`, the two models'
    final weights only (4 units)."""
    path = root / f"{Path(db).stem}.toml"
    checkpoints = "".join(CHECKPOINT.format(stage=stage, step=step) for stage, step in CHECKPOINTS if checkpoints)
    path.write_text(SWEEP.format(db=db, checkpoints=checkpoints, extra_model=extra_model))
    return path


def build_world(root: Path) -> Path:
    """The sweep folder's models: a tiny LLaVA, a tiny Qwen2-VL and three checkpoints of it (other seeds)."""
    build_tiny_model("llava", root / "models" / "tiny-llava")
    build_tiny_model("qwen2_vl", root / "models" / "tiny-qwen")
    for seed, (stage, step) in enumerate(CHECKPOINTS, start=1):
        build_tiny_model("qwen2_vl", root / "checkpoints" / f"stage{stage}-step{step}", seed=seed)
    return root


def rows(db: Path) -> tuple:
    """Everything a sweep stores, comparable: the atoms view's rows, each sample's probe outputs and features,
    and every table's row count (so a duplicate would show)."""
    atoms = read_atoms(db)
    ordered = atoms.sort_values(["model", "checkpoint", "task", "layer", "estimator"])
    samples = sorted((run_id, row.sample_id, row.probs.tobytes(), row.x1.tobytes(), row.x2.tobytes())
                     for run_id in read_runs(db)["run_id"] for row in load_samples(db, run_id))
    return ordered.astype(str).values.tolist(), samples, table_sizes(db)
