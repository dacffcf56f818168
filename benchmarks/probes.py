"""Probe throughput at real token counts: ours against the floor and the published approach, measured in one run.

  python benchmarks/probes.py [--preset llava-1.5-7b-cpu] [--samples 48] [--batch 8] [--device auto] [--json]
  python benchmarks/probes.py --preset llava-1.5-7b --dtype bfloat16 --device cuda --samples 64 --batch 16

The model is a random-weight preset (`pidcore tiny-model --preset`) with the real image token counts; the "-cpu"
presets scale widths and vocabulary down alike, so the logit lens costs what it costs in the real model relative to
the decoder. Two datasets of the same mean length: a mixed one (questions of 8 to 88 words, 2 to 5 options, images
of several sizes, which changes Qwen's token grid) and a same-shape one (every sample the middle question and size).
Encoding is done once beforehand; it is the same for every method.

ours:       profile's path: samples sorted by length in windows of LENGTH_WINDOW forwards, `--batch` per forward,
            3 rows each, left-padded, each image through the vision tower once, the noise edit in a decoder hook,
            the logit lens at every layer.
floor:      the bare cost of the same rows with the same batching: one plain forward of the same padded rows with
            the same image features, no hooks, no lens, no noise.
published:  three generate(max_new_tokens=1) calls per sample at batch 1, as the published pipeline runs them.

Each method runs --repeats times, interleaved, after a warm-up; the fastest repeat counts. Peak memory is the
largest resident set (CPU) or allocation (CUDA) above what the loaded model holds. `--json` prints one JSON line:
vs_floor (our time / the floor's), vs_published (the published approach's time / ours), mixed_vs_same (our samples
per second on the mixed set / on the same-shape set), and the figures behind them.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pidcore.devices import resolve_device  # noqa: E402
from pidcore.models.loading import LoadedVLM, load_vlm  # noqa: E402
from pidcore.models.presets import build_preset  # noqa: E402
from pidcore.pipeline.profiling import LENGTH_WINDOW  # noqa: E402
from pidcore.probes.batching import on_device, probe_rows  # noqa: E402
from pidcore.probes.encoding import Encoded, encode_sample  # noqa: E402
from pidcore.probes.engine import run_probes_by_length  # noqa: E402
from pidcore.probes.noise import seeded_noise  # noqa: E402
from pidcore.probes.statistics import embedding_stats  # noqa: E402

WORDS = ("which colour shape object region picture part left right upper lower small large near far bright dark "
         "shown visible centre edge corner pattern texture").split()
OPTIONS = ["red", "blue", "green", "yellow", "purple"]
SIDES = [224, 336, 448, 560, 672]  # image sides in pixels; the middle one is the same-shape set's
TARGETS = {"vs_floor": 1.1, "vs_published": 1.5, "mixed_vs_same": 0.8}


def question(words: int, seed: int) -> str:
    """A question of `words` words drawn from a fixed pool."""
    rng = np.random.default_rng(seed)
    return " ".join(rng.choice(WORDS, size=words)).capitalize() + "?"


def image(side_x: int, side_y: int, seed: int) -> Image.Image:
    """Random RGB noise of the given size (the weights are random too; only the shapes matter)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (side_y, side_x, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def mixed_set(vlm: LoadedVLM, count: int) -> list[Encoded]:
    """Questions of 8 to 88 words with 2 to 5 options, images of every size in SIDES: mean length as same_set's."""
    encoded = []
    for i in range(count):
        words = 8 + (i * 37) % 81
        sides = SIDES[i % len(SIDES)], SIDES[(i * 3 + 1) % len(SIDES)]
        encoded.append(encode_sample(vlm, image(*sides, seed=i), question(words, seed=i), OPTIONS[: 2 + i % 4]))
    return encoded


def same_set(vlm: LoadedVLM, count: int) -> list[Encoded]:
    """Every sample the middle question length, option count and image size: identical shapes."""
    middle = SIDES[len(SIDES) // 2]
    return [encode_sample(vlm, image(middle, middle, seed=i), question(48, seed=i), OPTIONS[:3])
            for i in range(count)]


def windows(encoded: list[Encoded], batch: int) -> list[list[Encoded]]:
    """The samples in the windows `profile` sorts by length (LENGTH_WINDOW forwards each)."""
    size = batch * LENGTH_WINDOW
    return [encoded[start:start + size] for start in range(0, len(encoded), size)]


def ours(vlm: LoadedVLM, encoded: list[Encoded], stats, batch: int) -> None:
    for window in windows(encoded, batch):
        noises = [seeded_noise(item, stats, seed) for seed, item in enumerate(window)]
        run_probes_by_length(vlm, window, noises, batch)


@torch.no_grad()
def floor(vlm: LoadedVLM, encoded: list[Encoded], batch: int) -> None:
    for window in windows(encoded, batch):
        order = sorted(window, key=lambda item: item.inputs["input_ids"].shape[1])
        for start in range(0, len(order), batch):
            rows = probe_rows(vlm, order[start:start + batch])
            vlm.model(**rows.inputs, use_cache=False, logits_to_keep=1)


@torch.no_grad()
def published(vlm: LoadedVLM, encoded: list[Encoded]) -> None:
    pad = vlm.processor.tokenizer.pad_token_id
    for item in encoded:
        inputs = on_device(item.inputs, vlm)
        for _ in range(3):
            vlm.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                               return_dict_in_generate=True, pad_token_id=pad)


class Meter:
    """Wall time and peak memory of one call, the peak measured above what was resident before it."""

    def __init__(self, device: torch.device):
        self.device = device

    def __call__(self, function: Callable[[], None]) -> tuple[float, float]:
        before = self._reset()
        started = time.perf_counter()
        function()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        return seconds, (self._peak() - before) / 2**20

    def _reset(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand back what earlier methods freed, so none inherits it
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return _status_kib("VmRSS") * 1024

    def _peak(self) -> int:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated()
        return _status_kib("VmHWM") * 1024


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def measure(methods: dict[str, Callable[[], None]], meter: Meter, repeats: int) -> dict[str, tuple[float, float]]:
    """Fastest time and largest peak of each method over interleaved repeats, after one warm-up round."""
    for function in methods.values():
        function()
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeats):
        for name, function in methods.items():
            seconds, peak = meter(function)
            old = best.get(name, (float("inf"), 0.0))
            best[name] = min(old[0], seconds), max(old[1], peak)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="llava-1.5-7b-cpu", help="a `pidcore tiny-model --preset` name")
    parser.add_argument("--model", default=None, help="an already built model folder instead of --preset")
    parser.add_argument("--samples", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8, help="samples per forward (ours and the floor)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as folder:
        device = resolve_device(args.device)
        weights = None if args.dtype == "auto" else args.dtype
        model = args.model or str(build_preset(args.preset, folder, dtype=weights, device=str(device)))
        vlm = load_vlm(model, device=args.device, dtype=args.dtype)
    mixed, same = mixed_set(vlm, args.samples), same_set(vlm, args.samples)
    stats = embedding_stats(vlm, mixed[:4])
    best = measure({"ours": lambda: ours(vlm, mixed, stats, args.batch),
                    "same": lambda: ours(vlm, same, stats, args.batch),
                    "floor": lambda: floor(vlm, mixed, args.batch),
                    "published": lambda: published(vlm, mixed)}, Meter(vlm.device), args.repeats)
    report = summary(args, vlm, mixed, same, best)
    print(json.dumps(report) if args.json else table(report))


def summary(args, vlm: LoadedVLM, mixed: list[Encoded], same: list[Encoded], best: dict) -> dict:
    """Figures and the three ratios, with whether each meets its target."""
    lengths = [item.inputs["input_ids"].shape[1] for item in mixed]
    report = {
        "preset": args.model or args.preset, "device": str(vlm.device), "dtype": str(vlm.dtype).removeprefix("torch."),
        "samples": args.samples, "batch": args.batch, "tokens_min": min(lengths), "tokens_max": max(lengths),
        "tokens_mean_mixed": float(np.mean(lengths)),
        "tokens_mean_same": float(np.mean([item.inputs["input_ids"].shape[1] for item in same])),
        "image_tokens": sorted({int(item.image_mask.sum()) for item in mixed}),
        **{f"{name}_samples_per_s": args.samples / seconds for name, (seconds, _) in best.items()},
        **{f"{name}_peak_mib": peak for name, (_, peak) in best.items()},
        "vs_floor": best["ours"][0] / best["floor"][0],
        "vs_published": best["published"][0] / best["ours"][0],
        "mixed_vs_same": best["same"][0] / best["ours"][0],
    }
    report["met"] = {"vs_floor": report["vs_floor"] <= TARGETS["vs_floor"],
                     "vs_published": report["vs_published"] >= TARGETS["vs_published"],
                     "mixed_vs_same": report["mixed_vs_same"] >= TARGETS["mixed_vs_same"]}
    return report


def table(report: dict) -> str:
    lines = [f"{report['preset']} on {report['device']} ({report['dtype']}), {report['samples']} samples, "
             f"{report['batch']} per forward; mixed set {report['tokens_min']}-{report['tokens_max']} tokens "
             f"(mean {report['tokens_mean_mixed']:.0f}, same-shape set {report['tokens_mean_same']:.0f}), image tokens "
             f"{report['image_tokens']}"]
    for name, label in (("ours", "ours, mixed lengths"), ("same", "ours, same shapes"), ("floor", "floor, mixed"),
                        ("published", "published, mixed")):
        lines.append(f"  {label:22s} {report[f'{name}_samples_per_s']:8.2f} samples/s   "
                     f"peak {report[f'{name}_peak_mib']:8.1f} MiB")
    for key, word in (("vs_floor", "at most"), ("vs_published", "at least"), ("mixed_vs_same", "at least")):
        lines.append(f"  {key:14s} {report[key]:5.2f}x (target {word} {TARGETS[key]}x: "
                     f"{'met' if report['met'][key] else 'missed'})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
