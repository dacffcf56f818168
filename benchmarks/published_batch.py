"""The published BATCH estimator's cost: the paper's own stage-3 script against ours, on the same planted folder.

  python benchmarks/published_batch.py --paper-script PATH [--paper-python PY] [--sizes 2048 16384] [--rounds 2]

PATH is the user's local copy of the paper's two-label stage-3 script (RiiShin/pid-lvlm-analysis,
pid/pope/batch_vlm_final_pope_drop.py; never shipped here). For each size n it writes the planted AND gate
(tests/gates.py: n fitting and n held-out samples) as a stage-2 folder in the paper's layout, and runs, as whole
processes on one thread each (OMP_NUM_THREADS=1, MKL_NUM_THREADS=1, so torch has one thread), interleaved round by
round in alternating order:
  the paper's script on that folder, under --paper-python (it needs numpy, torch, matplotlib and tqdm; its
    `.cuda()` calls are made `.cpu()` in a temporary copy, printed line by line, and nothing else is changed);
  ours: `python -m pidcore import-paper FOLDER --estimator published --bootstrap 0`, and the same with the default
    95% intervals (100 bootstrap resamples), each into a fresh database.
It prints each process's wall time, the median ratios (the paper's script over ours: the headline) and the atom
differences (ours clipped at 0, as the script prints its atoms), and each side's largest error against the exact PID.
Without --paper-script only ours is timed and no ratio against the paper is measured.

The paper's script is left as written otherwise: its DataLoaders (num_workers=1) start a worker process for every
pass over the data, 9 in all, and it prints a tqdm bar per epoch (to its error output, not shown). torch's inter-op
pool is not set by these variables; neither side uses it.

The module also keeps `published_batch_pid`, an in-process RE-IMPLEMENTATION of the published algorithm, not the
paper's code (it trains 10 epochs where the script trains 8, and takes p(y) from the held-out split at evaluation
where the script keeps the fitting split's): benchmarks/estimators.py times it only with --reimplementation. A
ratio against it is not a ratio against the paper (it once gave 24.2x where the script gave about 5x): quote the
ratio against the script.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from pidcore.atoms import ATOMS  # noqa: E402

PAPER_MODULES = ("numpy", "torch", "matplotlib", "tqdm")
PAPER_ATOMS = ("Redundancy", "Unique1", "Unique2", "Synergy")
GATE = "AND"
OURS = {"ours --bootstrap 0": ["--bootstrap", "0"], "ours, default intervals": []}


def one_thread_environment(python_path: str | None = None) -> dict[str, str]:
    """The environment of every timed process: one OpenMP and MKL thread, passive waiting, offline."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE",
                   "HF_HUB_OFFLINE": "1"}
    environment.pop("PYTHONPATH", None)
    if python_path:
        environment["PYTHONPATH"] = python_path
    return environment


def missing_modules(python: str) -> list[str]:
    """The modules the paper's script imports that `python` cannot find."""
    probe = f"import importlib.util as u; print(' '.join(m for m in {PAPER_MODULES!r} if u.find_spec(m) is None))"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True, env=one_thread_environment())
    if found.returncode:
        raise SystemExit(f"--paper-python {python} does not run: {found.stderr.strip()}")
    return found.stdout.split()


def torch_threads(python: str, python_path: str | None = None) -> str:
    """torch's intra-op and inter-op thread counts under the timed environment, as `python` reports them."""
    probe = "import torch; print(torch.__version__, torch.get_num_threads(), torch.get_num_interop_threads())"
    found = subprocess.run([python, "-c", probe], capture_output=True, text=True,
                           env=one_thread_environment(python_path), check=True)
    version, intra, inter = found.stdout.split()
    return f"torch {version}, {intra} thread(s), {inter} inter-op"


def cpu_copy(script: Path, folder: Path) -> Path:
    """A copy of the paper's script with `.cuda()` made `.cpu()` on its code lines; print every changed line."""
    changed, lines = [], script.read_text().splitlines(keepends=True)
    for number, line in enumerate(lines, 1):
        if ".cuda()" in line and not line.lstrip().startswith("#"):
            lines[number - 1] = line.replace(".cuda()", ".cpu()")
            changed.append(f"  line {number}: {line.strip()}\n       ->  {lines[number - 1].strip()}")
    copy = folder / script.name
    copy.write_text("".join(lines))
    print(f"patched a temporary copy of {script} to run on CPU ({len(changed)} line(s), nothing else changed):")
    print("\n".join(changed) if changed else "  nothing: it has no `.cuda()` on a code line")
    return copy


def planted_folder(folder: Path, n: int) -> tuple[Path, dict[str, float]]:
    """The planted gate's n + n samples as a stage-2 folder (folder/train/AND.json, folder/val/AND.json), and the
    gate's exact atoms in bits."""
    from pidcore.estimators import discrete_pid
    from tests.gates import planted_splits
    from tests.stage2_files import conversation_records, write_folder

    joint, fit, held = planted_splits(GATE, n, n)
    write_folder(folder, GATE, conversation_records(*fit, prefix="t"), conversation_records(*held, prefix="v"))
    return folder, discrete_pid(joint).atoms().as_dict()


def timed(command: list[str], environment: dict[str, str], cwd: Path) -> tuple[float, str]:
    """Wall time of one whole process and its standard output; its error output's tail if it fails."""
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=environment, cwd=cwd)
    seconds = time.perf_counter() - started
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def paper_run(python: str, script: Path, folder: Path) -> tuple[float, dict[str, float]]:
    """Seconds and the atoms (bits, clipped at 0) that the paper's script prints for the folder."""
    seconds, printed = timed([python, str(script), "--directory", f"{folder}/", "--file_name", f"{GATE}.json"],
                             one_thread_environment(), folder)
    values = [re.search(rf"^{name}: (\S+)$", printed, re.MULTILINE) for name in PAPER_ATOMS]
    if not all(values):
        raise SystemExit(f"the paper's script printed no atoms:\n{printed[-2000:]}")
    return seconds, dict(zip(ATOMS, (float(value.group(1)) for value in values)))


def our_run(folder: Path, options: list[str], work: Path) -> tuple[float, dict[str, float]]:
    """Seconds of `python -m pidcore import-paper` on the folder into a fresh database, and its raw atoms (bits)."""
    from pidcore.store.read import read_atoms

    db = work / "ours.duckdb"
    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    seconds, _ = timed([sys.executable, "-m", "pidcore", "import-paper", str(folder), "--db", str(db), "--device",
                        "cpu", "--estimator", "published", *options], one_thread_environment(str(ROOT)), work)
    row = read_atoms(db).iloc[0]
    return seconds, {atom: float(row[atom]) for atom in ATOMS}


def bench_size(n: int, rounds: int, paper: tuple[str, Path] | None, work: Path) -> None:
    """Time the paper's script and ours, interleaved, on n + n planted samples; print times, ratios, differences."""
    folder, exact = planted_folder(work / f"stage2-{n}", n)
    runs = ([("paper's script", lambda: paper_run(paper[0], paper[1], folder))] if paper else []) + \
        [(name, lambda options=options: our_run(folder, options, work)) for name, options in OURS.items()]
    times, atoms = {name: [] for name, _ in runs}, {name: [] for name, _ in runs}
    print(f"\n{GATE}, {n:,} fitting + {n:,} held-out samples; exact PID: "
          + ", ".join(f"{a}={exact[a]:.4f}" for a in ATOMS), flush=True)
    for round_number in range(rounds):
        for name, run in runs if round_number % 2 == 0 else runs[::-1]:
            seconds, found = run()
            times[name].append(seconds)
            atoms[name].append(found)
            print(f"  round {round_number + 1}: {name:24s} {seconds:7.1f} s   "
                  + ", ".join(f"{a}={found[a]:.4f}" for a in ATOMS), flush=True)
    for name in times:
        worst = max(abs(found[a] - exact[a]) for found in atoms[name] for a in ATOMS)
        print(f"  {name:33s} median {statistics.median(times[name]):7.1f} s (runs {_seconds(times[name])}); "
              f"largest error against the exact PID {worst:.4f} bits")
    if not paper:
        print("  the paper's script: not measured (no --paper-script PATH), so no ratio against it")
        return
    theirs = statistics.median(times["paper's script"])
    for name in OURS:
        rounds = ", ".join(f"{paper_time / ours_time:.2f}x" for paper_time, ours_time
                           in zip(times["paper's script"], times[name]))
        print(f"  ratio, the paper's script / {name}: {theirs / statistics.median(times[name]):.2f}x of the medians "
              f"(round by round: {rounds})")
    for name in OURS:
        differences = {a: max(abs(max(0.0, ours[a]) - paper_atoms[a])
                              for ours, paper_atoms in zip(atoms[name], atoms["paper's script"])) for a in ATOMS}
        print(f"  |{name} (clipped at 0) - the paper's script|, largest over the rounds: "
              + ", ".join(f"{a} {differences[a]:.4f}" for a in ATOMS) + " bits")


def _seconds(values: list[float]) -> str:
    """Seconds to one decimal, comma-separated."""
    return ", ".join(f"{value:.1f}" for value in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--paper-script", metavar="PATH", type=Path,
                        help="a local copy of the paper's pid/pope/batch_vlm_final_pope_drop.py")
    parser.add_argument("--paper-python", metavar="PY", default=sys.executable,
                        help="the interpreter that runs the paper's script (default: this one)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[2_048, 16_384],
                        help="fitting samples (and as many held out) per run; the script needs at least 256")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds per size")
    args = parser.parse_args()
    if args.paper_script and not args.paper_script.is_file():
        parser.error(f"--paper-script {args.paper_script}: no such file")
    print(f"ours: {sys.executable} ({torch_threads(sys.executable, str(ROOT))}), {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(prefix="published-batch-") as folder:
        work, paper = Path(folder), None
        if args.paper_script:
            missing = missing_modules(args.paper_python)
            if missing:
                raise SystemExit(f"--paper-python {args.paper_python} lacks {', '.join(missing)}, which the paper's "
                                 f"script imports: install them there (pip install {' '.join(missing)})")
            print(f"the paper's script: {args.paper_python} ({torch_threads(args.paper_python)})")
            paper = (args.paper_python, cpu_copy(args.paper_script.resolve(), work))
        else:
            print("the paper's script: not given (--paper-script PATH), so no ratio against it is measured")
        for n in args.sizes:
            bench_size(n, args.rounds, paper, work)


# The re-implementation below is not the paper's code (see the module docstring); only estimators.py uses it.

def _mlp(d_in: int, out: int) -> nn.Sequential:
    """Four hidden layers of 32 (the script's `layers=3` adds three to the first)."""
    blocks = [nn.Linear(d_in, 32), nn.ReLU()]
    for _ in range(3):
        blocks += [nn.Linear(32, 32), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(32, out))


def _scale(matrix: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """One published scaling round: columns, check rows; rows, check columns (atol 0.01)."""
    matrix = matrix / (matrix.sum(0, keepdim=True) + 1e-8) * cols[None]
    if torch.allclose(matrix.sum(1), rows, rtol=0, atol=0.01):
        return matrix, True
    matrix = matrix / (matrix.sum(1, keepdim=True) + 1e-8) * rows[:, None]
    return matrix, torch.allclose(matrix.sum(0), cols, rtol=0, atol=0.01)


class PublishedBatch(nn.Module):
    """The re-implemented alignment networks, scaling loop and atoms of the published algorithm."""

    def __init__(self, d1: int, d2: int, k: int, embed: int = 10) -> None:
        super().__init__()
        self.k, self.embed = k, embed
        self.mlp1, self.mlp2 = _mlp(d1, k * embed), _mlp(d2, k * embed)

    def coupling(self, x1: torch.Tensor, x2: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
        """The scaled coupling q[a, b, y] of a batch, one label at a time."""
        e1 = self.mlp1(x1).unflatten(1, (self.k, -1))
        e2 = self.mlp2(x2).unflatten(1, (self.k, -1))
        e1 = (e1 - e1.mean(2, keepdim=True)) / torch.sqrt(e1.var(2, keepdim=True) + 1e-8)
        e2 = (e2 - e2.mean(2, keepdim=True)) / torch.sqrt(e2.var(2, keepdim=True) + 1e-8)
        kernel = torch.exp(torch.einsum("ahx,bhx->abh", e1, e2) / math.sqrt(self.embed))
        planes = []
        for label in range(self.k):
            current = kernel[..., label]
            for _ in range(500):
                current, done = _scale(current, p1[:, label], p2[:, label])
                if done:
                    break
            planes.append(current)
        return torch.stack(planes, -1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor, p12: torch.Tensor,
                p_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The alignment loss of a batch and its atoms R, U1, U2, S in bits."""
        q = self.coupling(x1, x2, p1, p2)
        q_b = q / (q.sum(1, keepdim=True) + 1e-8)
        log_term = torch.log(q_b + 1e-8) - torch.log(torch.einsum("aby,ay->ab", q_b, p1) + 1e-8)[:, :, None]
        loss = (p1[:, None, :] * q_b * log_term).sum((1, 2)).mean()
        i1, i2, i12 = (_mean_kl(p, p_y) for p in (p1, p2, p12))
        iq = i1 + loss
        atoms = torch.stack([i1 + i2 - iq, iq - i2, iq - i1, i12 - iq]) / math.log(2)
        return loss, atoms


def _mean_kl(p: torch.Tensor, p_y: torch.Tensor) -> torch.Tensor:
    """The mean over samples of KL(p(y|x) || p(y)), in nats."""
    return (p * (torch.log(p) - torch.log(p_y))).sum(1).mean()


def published_batch_pid(fit: list, held: list, epochs: int = 10, batch_size: int = 256,
                        seed: int = 0) -> dict[str, float]:
    """Atoms (bits) of the RE-IMPLEMENTED published estimator: train on `fit`, average over full held-out batches."""
    torch.manual_seed(seed)
    fit = [torch.as_tensor(a, dtype=torch.float32) for a in fit]
    held = [torch.as_tensor(a, dtype=torch.float32) for a in held]
    model = PublishedBatch(fit[0].shape[1], fit[1].shape[1], fit[2].shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    p_y = fit[4].mean(0)
    for _ in range(epochs):
        order = torch.randperm(len(fit[0]))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            loss, _ = model(*(a[index] for a in fit), p_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    results = []
    with torch.no_grad():
        p_y = held[4].mean(0)
        for start in range(0, len(held[0]) - batch_size + 1, batch_size):
            results.append(model(*(a[start:start + batch_size] for a in held), p_y)[1])
    if not results:
        return {}
    atoms = torch.stack(results).mean(0)
    return dict(zip(ATOMS, atoms.tolist()))


if __name__ == "__main__":
    main()
