"""Per-sample cost of the probes against the floor and the published approach, measured in the same run.

  python benchmarks/probes.py [--samples 40] [--hidden 256] [--layers 4]

ours:      run_probes: the full pass and both masked probes in one batched forward, with the logit lens
           at every layer (inputs already encoded; encoding is the same for every method); also with
           --batch samples per forward, as `profile` does for samples of identical shape.
floor:     three bare forward passes of the same three inputs (the three inputs must be run anyway).
published: three generate(max_new_tokens=1) calls at batch size 1, as the published pipeline does.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pidcore.models.loading import load_vlm  # noqa: E402
from pidcore.models.tiny import build_tiny_model  # noqa: E402
from pidcore.probes.encoding import encode_sample  # noqa: E402
from pidcore.probes.engine import embedding_stats, run_probes, run_probes_batch  # noqa: E402


def timed(function, repeats: int) -> float:
    """Seconds per call, after one warm-up call."""
    function()
    started = time.perf_counter()
    for _ in range(repeats):
        function()
    return (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8, help="samples per forward in the batched measurement")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as folder:
        build_tiny_model("llava", folder, hidden=args.hidden, layers=args.layers)
        vlm = load_vlm(folder, device=args.device)
    image = Image.new("RGB", (48, 48), (200, 30, 30))
    encoded = encode_sample(vlm, image, "What colour is the shape?", ["red", "blue", "green", "yellow"])
    stats = embedding_stats(vlm, [encoded])
    inputs = {k: v.to(vlm.device) for k, v in encoded.inputs.items()}

    def floor():
        with torch.no_grad():
            for _ in range(3):
                vlm.model(**inputs)

    def published():
        with torch.no_grad():
            for _ in range(3):
                vlm.model.generate(**inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                   return_dict_in_generate=True, pad_token_id=vlm.processor.tokenizer.pad_token_id)

    ours = timed(lambda: run_probes(vlm, encoded, stats, seed=0), args.samples)
    group = [encoded] * args.batch
    ours_batched = timed(lambda: run_probes_batch(vlm, group, stats, list(range(args.batch))),
                         max(1, args.samples // args.batch)) / args.batch
    bare = timed(floor, args.samples)
    theirs = timed(published, args.samples)
    print(f"{vlm.device}, llava hidden={args.hidden} layers={args.layers}, {len(encoded.image_mask)} tokens")
    print(f"ours (3 passes batched + lens at {args.layers + 1} layers): {ours * 1e3:7.2f} ms/sample")
    print(f"ours, {args.batch} samples per forward:                 {ours_batched * 1e3:7.2f} ms/sample")
    print(f"floor (3 bare forward passes):                     {bare * 1e3:7.2f} ms/sample")
    print(f"published (3 x generate(max_new_tokens=1), bs 1):  {theirs * 1e3:7.2f} ms/sample")
    print(f"one sample per forward: {ours / bare:.2f}x the floor (target <= 1.25x), "
          f"{theirs / ours:.1f}x faster than published (target >= 5x)")
    print(f"{args.batch} samples per forward: {ours_batched / bare:.2f}x the floor, "
          f"{theirs / ours_batched:.1f}x faster than published")


if __name__ == "__main__":
    main()
