"""Benchmark a sweep: the test sweep (tests/sweep_world.py: 10 units, two tiny models, one with three checkpoints,
x two shapes tasks of 24 samples, every layer) one unit after another in this process, against Ray tasks on a
local cluster, in the same run.

  OMP_WAIT_POLICY=PASSIVE python benchmarks/sweep.py [--workers 2] [--json]

Ray gets `--workers` CPUs (a model's actor asks for one per 2 GiB of weights, so one each here, and each fit task
one), and the sequential sweep as many torch threads, so both sides use the same threads. On a machine with GPUs,
it also runs the sweep with one model's actor per GPU (each asks for one). Both sweeps must store the same rows
(their largest atom difference is printed); the ratio printed is the sequential wall time over Ray's (above 1: Ray
is faster).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import ray  # noqa: E402
import torch  # noqa: E402

from pidcore.atoms import ATOMS  # noqa: E402
from pidcore.pipeline.sweep import run_sweep  # noqa: E402
from pidcore.pipeline.sweep_file import read_sweep  # noqa: E402
from pidcore.store import read_atoms  # noqa: E402
from tests.sweep_world import UNITS, build_world, write_sweep  # noqa: E402


def timed_sweep(root: Path, db: str, ray_address: str | None, gpus: int | None = None) -> float:
    """Wall seconds of one sweep into a fresh database; every unit must finish."""
    path = write_sweep(root, db)
    if gpus is not None:
        path.write_text(re.sub(r'(name = "tiny-[a-z]+")', rf"\1\ngpus = {gpus}", path.read_text()))
    started = time.perf_counter()
    result = run_sweep(read_sweep(path), ray_address=ray_address, progress=False)
    seconds = time.perf_counter() - started
    if result.failed:
        raise SystemExit(f"units failed: {result.failed}")
    return seconds


def atom_difference(first: Path, second: Path) -> float:
    """The largest difference in bits between the two sweeps' atoms, row by row (both must hold the same rows)."""
    order = ["model", "checkpoint", "task", "layer", "estimator"]
    left, right = (read_atoms(db).sort_values(order).reset_index(drop=True) for db in (first, second))
    if not left[order].equals(right[order]):
        raise SystemExit("the two sweeps stored different rows")
    return float((left[list(ATOMS)] - right[list(ATOMS)]).abs().to_numpy().max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2, help="CPUs of the local Ray cluster (default 2)")
    parser.add_argument("--json", action="store_true", help="print one JSON line of the figures")
    args = parser.parse_args()
    root = build_world(Path(tempfile.mkdtemp(prefix="sweep-bench-")))
    figures = {"units": UNITS, "cpu_cores": os.cpu_count(), "ray_workers": args.workers}
    torch.set_num_threads(args.workers)
    figures["sequential_s"] = timed_sweep(root, "sequential.duckdb", None)
    started = time.perf_counter()
    gpus = torch.cuda.device_count()
    ray.init(num_cpus=args.workers, num_gpus=gpus, include_dashboard=False, log_to_driver=False)
    figures["ray_start_s"] = time.perf_counter() - started
    figures["ray_s"] = timed_sweep(root, "ray.duckdb", "local")
    figures["sequential_over_ray"] = figures["sequential_s"] / figures["ray_s"]
    figures["max_atom_difference_bits"] = atom_difference(root / "sequential.duckdb", root / "ray.duckdb")
    if gpus:
        figures["gpus"] = gpus
        figures["ray_one_worker_per_gpu_s"] = timed_sweep(root, "ray-gpu.duckdb", "local", gpus=1)
    ray.shutdown()
    if args.json:
        print(json.dumps(figures))
        return
    print(f"sweep of {UNITS} units on {figures['cpu_cores']} CPU cores: sequential {figures['sequential_s']:.1f} s; "
          f"Ray with {args.workers} workers {figures['ray_s']:.1f} s (+ {figures['ray_start_s']:.1f} s to start the "
          f"cluster); sequential / Ray {figures['sequential_over_ray']:.2f}x; largest atom difference "
          f"{figures['max_atom_difference_bits']:.1e} bits")
    if gpus:
        print(f"Ray, one worker per GPU ({gpus} GPUs): {figures['ray_one_worker_per_gpu_s']:.1f} s")


if __name__ == "__main__":
    main()
