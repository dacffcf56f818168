"""Benchmark the estimators against baselines measured in the same run.

  python benchmarks/estimators.py            # everything (about 12 minutes on 2 CPU cores)
  python benchmarks/estimators.py --quick    # skips n = 200k
  python benchmarks/estimators.py --only and --reimplementation   # section 2, with the RE-IMPLEMENTED published BATCH
  python benchmarks/estimators.py --only gaussian --tilde-pid PATH [--device cuda]   # section 4 alone (~2 min)

1. discrete_pid on random distributions (shapes up to 5x5x4, zero-padded into one stack) against dit's exact cone
   solver on a sample of them, time per distribution: one call per distribution on that sample, interleaved call by
   call with dit's (target >= 2x faster than dit), and all 1,000 in one call (target >= 50x), and the worst
   difference in bits.
2. batch_pid on the planted AND task (2 x 2,048 samples), both presets without intervals: wall time and accuracy
   against the exact PID; then what the 95% intervals (100 bootstrap resamples) add. With --reimplementation also
   the published BATCH algorithm as RE-IMPLEMENTED in benchmarks/published_batch.py: not the paper's code, and
   slower than it, so that ratio flatters ours; `python benchmarks/published_batch.py --paper-script PATH` times
   the paper's own script against ours.
3. batch_pid (calibrated, no intervals) wall time for n = 2k, 20k, 200k samples (half held out), k = 2 and 4.
4. gaussian_pid_from_covariance batched over 33 layers (d1 = d2 = 32 sources, dy = 3 and a scalar target, covariances
   of n samples each, formed on --device) against Tilde-PID's exact_gauss_tilde_pid (Venkatesh et al. 2023,
   praveenv253/gpid) looped over the same layers with np.cov: time per layer and per 1,000 samples, the ratio
   (target >= 10x) and the worst difference in bits. Tilde-PID is not part of pidcore: --tilde-pid PATH names a gpid
   checkout (or its src folder) to import it from; without it only ours is timed. It imports matplotlib only to plot;
   where matplotlib is missing, an empty stand-in is used while it is imported.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import statistics
import sys
import time
import types
import warnings
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pidcore.atoms import ATOMS  # noqa: E402
from pidcore.devices import resolve_device  # noqa: E402
from pidcore.estimators import batch_pid, discrete_pid  # noqa: E402
from pidcore.estimators.gaussian import gaussian_pid_from_covariance, sample_covariance  # noqa: E402
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
    """Time discrete_pid one call per distribution, interleaved call by call with dit's cone method on the same
    distributions (alternating which goes first, so neither side runs on the other's warm caches), and batched."""
    stack = random_stack(1000)
    discrete_pid(stack[:2], device="cpu")
    dit_atoms(stack[0])
    theirs, ours, reference, singles = [], [], [], []
    for i in range(sample):
        for side in ("dit", "ours") if i % 2 == 0 else ("ours", "dit"):
            started = time.perf_counter()
            if side == "dit":
                reference.append(dit_atoms(stack[i]))
            else:
                singles.append(discrete_pid(stack[i], device="cpu"))
            (theirs if side == "dit" else ours).append(time.perf_counter() - started)
    started = time.perf_counter()
    result = discrete_pid(stack, device="cpu")
    batched = (time.perf_counter() - started) / len(stack)
    atoms = torch.stack([result.r, result.u1, result.u2, result.s], 1).numpy()[:sample]
    single_atoms = np.array([[float(r.r), float(r.u1), float(r.u2), float(r.s)] for r in singles])
    worst = float(max(np.abs(np.array(reference) - atoms).max(), np.abs(np.array(reference) - single_atoms).max()))
    their_time, one_call = sum(theirs) / sample, sum(ours) / sample
    per_call = statistics.median(t / o for t, o in zip(theirs, ours))
    print(f"discrete_pid vs dit cone on {sample} random distributions (up to 5x5x4), one call each, interleaved: "
          f"dit {their_time * 1e3:.1f} ms each, ours {one_call * 1e3:.2f} ms each; "
          f"ours batched (1000 in one call) {batched * 1e3:.3f} ms each")
    print(f"  one-call ratio {their_time / one_call:.1f}x (median per distribution {per_call:.1f}x; target >= 2x: "
          f"{_verdict(their_time / one_call >= 2)}); batched ratio {their_time / batched:.0f}x (target >= 50x: "
          f"{_verdict(their_time / batched >= 50)}); max |difference| {worst:.1e} bits "
          f"(target <= 1e-5: {_verdict(worst <= 1e-5)})")


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
        print(f"  published BATCH RE-IMPLEMENTED (not the paper's code): {theirs_time:6.1f} s   {describe(theirs)}   "
              f"max error {max(abs(theirs[a] - exact[a]) for a in ATOMS):.3f} bits")
        print(f"  speed ratio against the re-implementation {theirs_time / ours_time:.1f}x (against the paper's own "
              "script: benchmarks/published_batch.py --paper-script PATH)")


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


def load_tilde_pid(path: str):
    """Tilde-PID's exact_gauss_tilde_pid, imported from the gpid package under `path` (a checkout or its src/)."""
    root = Path(path).expanduser().resolve()
    found = [folder for folder in (root / "src" / "gpid", root / "gpid", root) if (folder / "tilde_pid.py").is_file()]
    if not found:
        raise SystemExit(f"--tilde-pid {path}: no gpid/tilde_pid.py under it (give a gpid checkout or its src folder)")
    stand_ins = {}
    try:
        import matplotlib.pyplot  # noqa: F401
    except ImportError:  # Tilde-PID imports pyplot at the top but plots only when asked to
        stand_ins = {"matplotlib": types.ModuleType("matplotlib"), "matplotlib.pyplot": types.ModuleType("pyplot")}
        stand_ins["matplotlib"].pyplot = stand_ins["matplotlib.pyplot"]
        sys.modules.update(stand_ins)
    try:
        spec = importlib.util.spec_from_file_location("tilde_pid_gpid", found[0] / "__init__.py",
                                                      submodule_search_locations=[str(found[0])])
        package = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = package
        spec.loader.exec_module(package)
        module = importlib.import_module("tilde_pid_gpid.tilde_pid")
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
    print(f"Tilde-PID from {found[0] / 'tilde_pid.py'}" + (" (matplotlib stand-in)" if stand_ins else ""))
    return module.exact_gauss_tilde_pid


def gaussian_layers(layers: int, d: int, dy: int, n: int, seed: int = 0) -> np.ndarray:
    """Samples [layers, n, 2d + dy] of (X1, X2, Y): Xi = g_l Y Ai + noise, X2's noise partly X1's, g_l rising."""
    rng = np.random.default_rng(seed)
    stack = np.empty((layers, n, 2 * d + dy))
    for layer in range(layers):
        gain = 0.1 + 0.5 * layer / max(layers - 1, 1)
        y = rng.standard_normal((n, dy))
        noise = rng.standard_normal((n, 2 * d))
        mixing = rng.standard_normal((d, d)) / np.sqrt(d)
        stack[layer, :, :d] = gain * y @ rng.standard_normal((dy, d)) + noise[:, :d]
        stack[layer, :, d:2 * d] = gain * y @ rng.standard_normal((dy, d)) + noise[:, d:] + 0.5 * noise[:, :d] @ mixing
        stack[layer, :, 2 * d:] = y
    return stack


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_ours(samples: torch.Tensor, d: int, batched: bool) -> tuple[torch.Tensor, float, int]:
    """Our atoms [layers, 4] from the samples [layers, n, D] in one call (batched) or one call per layer, the wall
    time and the number of non-convergence warnings."""
    _synchronise(samples.device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        if batched:
            atoms = gaussian_pid_from_covariance(sample_covariance(samples), d, d).stacked()
        else:
            atoms = torch.stack([gaussian_pid_from_covariance(sample_covariance(layer), d, d).stacked()
                                 for layer in samples])
        _synchronise(samples.device)
        seconds = time.perf_counter() - started
    return atoms.cpu(), seconds, sum("did not converge" in str(w.message) for w in caught)


def _timing(seconds: float, layers: int, n: int) -> str:
    """Wall time, per layer, and per layer per 1,000 samples (a layer's time x 1,000 / n)."""
    return (f"{seconds:6.2f} s = {seconds / layers * 1e3:7.1f} ms per layer, "
            f"{seconds / layers * 1e6 / n:7.2f} ms per layer per 1,000 samples")


def bench_gaussian(tilde_pid, device: torch.device, layers: int, d: int, n: int) -> None:
    """Ours batched over the layers' samples on `device` (and one call per layer) against Tilde-PID looped over the
    same layers' sample covariances, in this run; ratios against our batched call."""
    for dy in (3, 1):
        samples = gaussian_layers(layers, d, dy, n, seed=dy)
        on_device = torch.as_tensor(samples, device=device)
        gaussian_pid_from_covariance(sample_covariance(on_device[:2]), d, d)  # warm-up (kernels, first-call costs)
        print(f"Gaussian PID, {layers} layers, d1 = d2 = {d}, dy = {dy}, n = {n:,} samples per layer, ours on {device}",
              flush=True)
        ours, ours_time, stalled = _timed_ours(on_device, d, batched=True)
        print(f"  ours batched (one call)      {_timing(ours_time, layers, n)}"
              + (f" ({stalled} non-convergence warning(s))" if stalled else ""), flush=True)
        singles, singles_time, stalled = _timed_ours(on_device, d, batched=False)
        print(f"  ours one call per layer      {_timing(singles_time, layers, n)}"
              + (f" ({stalled} non-convergence warning(s))" if stalled else "")
              + f"; max |batched - per layer| {float((ours - singles).abs().max()):.1e} bits", flush=True)
        if tilde_pid is None:
            print("  Tilde-PID: not measured (no --tilde-pid PATH), so no ratio")
            continue
        order = list(range(2 * d, 2 * d + dy)) + list(range(2 * d))  # Tilde-PID's layout: (M, X, Y) = (Y, X1, X2)
        theirs = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            started = time.perf_counter()
            for layer in samples:
                imx, imy, imxy, _, _, uix, uiy, ri, si = tilde_pid(np.cov(layer, rowvar=False)[np.ix_(order, order)],
                                                                   dy, d, d)
                theirs.append([ri, uix, uiy, si])
            theirs_time = time.perf_counter() - started
        stalled = sum("May not have converged" in str(w.message) for w in caught)
        theirs = torch.tensor(theirs, dtype=torch.float64)
        print(f"  Tilde-PID looped (numpy CPU) {_timing(theirs_time, layers, n)}"
              + (f" ({stalled} layer(s) hit its iteration cap)" if stalled else ""))
        ratio, single_ratio = theirs_time / ours_time, theirs_time / singles_time
        print(f"  ratio Tilde-PID / ours batched {ratio:.2f}x (target >= 10x: {_verdict(ratio >= 10)}), "
              f"/ ours per layer {single_ratio:.2f}x; max |ours - Tilde-PID| in the atoms: batched "
              f"{float((ours - theirs).abs().max()):.1e} bits, per layer {float((singles - theirs).abs().max()):.1e} "
              "bits", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip n = 200k")
    parser.add_argument("--reimplementation", action="store_true",
                        help="section 2 also times the re-implemented published BATCH (not the paper's script)")
    parser.add_argument("--dit-sample", type=int, default=50, help="distributions solved by dit")
    parser.add_argument("--only", choices=("discrete", "and", "scaling", "gaussian"), help="run one section")
    parser.add_argument("--tilde-pid", metavar="PATH", help="a gpid checkout (or its src folder) to time against")
    parser.add_argument("--device", default="cpu", help="device of the Gaussian section: cpu, cuda, auto, ...")
    parser.add_argument("--gaussian-layers", type=int, default=33)
    parser.add_argument("--gaussian-dim", type=int, default=32, help="d1 = d2 of the Gaussian section")
    parser.add_argument("--gaussian-samples", type=int, default=5_000, help="samples per layer")
    args = parser.parse_args()
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        parser.error(str(error))
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.set_num_threads(min(2, torch.get_num_threads()))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    if args.only in (None, "discrete"):
        bench_discrete(args.dit_sample)
    if args.only in (None, "and"):
        bench_and_case(with_baseline=args.reimplementation)
    if args.only in (None, "scaling"):
        bench_scaling([2_000, 20_000] if args.quick else [2_000, 20_000, 200_000])
    if args.only in (None, "gaussian"):
        tilde_pid = load_tilde_pid(args.tilde_pid) if args.tilde_pid else None
        bench_gaussian(tilde_pid, device, args.gaussian_layers, args.gaussian_dim,
                       args.gaussian_samples)


if __name__ == "__main__":
    main()
