"""Benchmark the estimators against baselines measured in the same run.

  python benchmarks/estimators.py            # everything (about 10 minutes on 2 CPU cores)
  python benchmarks/estimators.py --quick    # skips n = 200k and the published-BATCH baseline

1. discrete_pid on random distributions (shapes up to 5x5x4, zero-padded into one stack) against dit's exact cone
   solver on a sample of them, time per distribution: one call per distribution on that sample (target >= 2x faster
   than dit) and all 1,000 in one call (target >= 50x), and the worst difference in bits.
2. batch_pid on the planted AND task (2 x 2,048 samples), both presets without intervals, against the published
   BATCH algorithm re-implemented in benchmarks/published_batch.py: wall time and accuracy against the exact PID;
   then what the 95% intervals (100 bootstrap resamples) add.
3. batch_pid (calibrated, no intervals) wall time for n = 2k, 20k, 200k samples (half held out), k = 2 and 4.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pidcore.atoms import ATOMS  # noqa: E402
from pidcore.estimators import batch_pid, discrete_pid  # noqa: E402
from tests.gates import dit_atoms, planted_splits  # noqa: E402


def random_stack(count: int, seed: int = 0) -> np.ndarray:
    """Random distributions of shapes m x n x k (m, n <= 5, k <= 4), zero-padded into [count, 5, 5, 4]."""
    rng = np.random.default_rng(seed)
    stack = np.zeros((count, 5, 5, 4))
    for i in range(count):
        m, n, k = rng.integers(2, 6), rng.integers(2, 6), rng.integers(2, 5)
        stack[i, :m, :n, :k] = rng.dirichlet(np.full(m * n * k, 0.5)).reshape(m, n, k)
    return stack


def bench_discrete(sample: int) -> None:
    """Time discrete_pid one call per distribution and batched, against dit's cone method, in this run."""
    stack = random_stack(1000)
    discrete_pid(stack[:2], device="cpu")
    dit_atoms(stack[0])
    started = time.perf_counter()
    reference = np.array([dit_atoms(stack[i]) for i in range(sample)])
    theirs = (time.perf_counter() - started) / sample
    started = time.perf_counter()
    singles = [discrete_pid(stack[i], device="cpu") for i in range(sample)]
    one_call = (time.perf_counter() - started) / sample
    started = time.perf_counter()
    result = discrete_pid(stack, device="cpu")
    batched = (time.perf_counter() - started) / len(stack)
    atoms = torch.stack([result.r, result.u1, result.u2, result.s], 1).numpy()[:sample]
    single_atoms = np.array([[float(r.r), float(r.u1), float(r.u2), float(r.s)] for r in singles])
    worst = float(max(np.abs(reference - atoms).max(), np.abs(reference - single_atoms).max()))
    print(f"discrete_pid vs dit cone on {sample} random distributions (up to 5x5x4): "
          f"dit {theirs * 1e3:.1f} ms each; ours one call each {one_call * 1e3:.2f} ms, "
          f"batched (1000 in one call) {batched * 1e3:.3f} ms each")
    print(f"  one-call ratio {theirs / one_call:.1f}x (target >= 2x: {_verdict(theirs / one_call >= 2)}); "
          f"batched ratio {theirs / batched:.0f}x (target >= 50x: {_verdict(theirs / batched >= 50)}); "
          f"max |difference| {worst:.1e} bits (target <= 1e-5: {_verdict(worst <= 1e-5)})")


def _verdict(met: bool) -> str:
    return "met" if met else "missed"


def describe(atoms) -> str:
    return ", ".join(f"{a}={atoms[a]:.3f}" for a in ATOMS)


def bench_and_case(with_baseline: bool) -> None:
    joint, fit, held = planted_splits("AND", 2048, 2048)
    exact = discrete_pid(joint).atoms()
    print(f"AND, 2 x 2048 samples; exact PID: {describe(exact)}")
    times = {}
    for mode in ("published", "calibrated"):
        started = time.perf_counter()
        ours = batch_pid(*fit, held_out=held, device="cpu", mode=mode, bootstrap=0).atoms
        times[mode] = time.perf_counter() - started
        print(f"  batch_pid {mode:10s} {times[mode]:6.1f} s   {describe(ours)}   "
              f"max error {max(abs(ours[a] - exact[a]) for a in ATOMS):.3f} bits")
    started = time.perf_counter()
    bounds = batch_pid(*fit, held_out=held, device="cpu", mode="calibrated").atoms.bounds
    added = time.perf_counter() - started - times["calibrated"]
    print(f"  with 95% intervals (100 resamples of 8 scoring batches): +{added:.1f} s; "
          + ", ".join(f"{a} [{bounds[a][0]:.3f}, {bounds[a][1]:.3f}]" for a in ATOMS))
    ours_time = times["published"]
    if with_baseline:
        from published_batch import published_batch_pid

        started = time.perf_counter()
        theirs = published_batch_pid(fit, held)
        theirs_time = time.perf_counter() - started
        print(f"  published BATCH:     {theirs_time:6.1f} s   {describe(theirs)}   "
              f"max error {max(abs(theirs[a] - exact[a]) for a in ATOMS):.3f} bits")
        print(f"  speed ratio {theirs_time / ours_time:.1f}x")


def bench_scaling(sizes: list[int]) -> None:
    for gate, k in (("AND", 2), ("COPY", 4)):
        baseline = None
        for n in sizes:
            _, fit, held = planted_splits(gate, n // 2, n // 2)
            started = time.perf_counter()
            result = batch_pid(*fit, held_out=held, device="cpu", mode="calibrated", bootstrap=0)
            seconds = time.perf_counter() - started
            baseline = baseline or seconds
            print(f"batch_pid k={k} n={n:>7,}: {seconds:7.1f} s ({seconds / baseline:5.1f}x the n={sizes[0]:,} time), "
                  f"{result.diagnostics['epochs']} epochs, S={result.atoms['s']:.3f} bits", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip n = 200k and the published baseline")
    parser.add_argument("--dit-sample", type=int, default=50, help="distributions solved by dit")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    bench_discrete(args.dit_sample)
    bench_and_case(with_baseline=not args.quick)
    bench_scaling([2_000, 20_000] if args.quick else [2_000, 20_000, 200_000])


if __name__ == "__main__":
    main()
