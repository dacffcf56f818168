"""What the three paper parity worlds (tests/paper_probe_world.py, instructblip_world.py, llama_world.py) and their
tests share: writing and digesting a world, training its compact model, running the paper's scripts and exporting
what they wrote, and comparing pidcore's probes with those records field by field.

Only the standard library is imported here at module level: the worlds' oracle commands run under the oracle's venv.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PAPER_COMMIT = "950ddb7"
DATA_FILES = ("train.json", "val.json")
SPLITS = ("train", "val")
# The CLIP normalisation every real checkpoint's image processor uses.
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
TOLERANCE = 1e-4
# Our pass names and the paper's record fields: v is the image-only probe (text masked), l the text-only one.
FIELDS = {"full": "vl", "image_only": "v", "text_only": "l"}


# ---------------------------------------------------------------------------------------------------------------
# Building a world
# ---------------------------------------------------------------------------------------------------------------

def write_json(path: Path, value: Any, compact: bool = False) -> None:
    """UTF-8 JSON with a final newline: indented, or on one line without spaces when `compact`."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":")) if compact else \
        json.dumps(value, indent=2, ensure_ascii=False)
    path.write_text(text + "\n", encoding="utf-8")


def save_weights(weights: dict, path: Path) -> None:
    """Save a state dict as safetensors, tensors sorted by name and made contiguous."""
    from safetensors.torch import save_file

    save_file({name: tensor.contiguous() for name, tensor in sorted(weights.items())}, str(path),
              metadata={"format": "pt"})


def read_bpe(folder: Path) -> tuple[dict[str, int], list[str]]:
    """A trained BPE's vocabulary (vocab.json) and merges (merges.txt's "a b" lines in rank order)."""
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
    return vocab, [line for line in merges if line and not line.startswith("#")]


def added_token(token: str, index: int) -> dict[str, Any]:
    """A special token's entry in tokenizer.json's added_tokens."""
    return {"id": index, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def added_tokens_decoder(ids: dict[str, int]) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json's added_tokens_decoder: each special token's entry by id, without the id."""
    return {str(index): {key: value for key, value in added_token(token, index).items() if key != "id"}
            for token, index in ids.items()}


def prepend_template(token: str, index: int) -> dict[str, Any]:
    """A TemplateProcessing post-processor that puts `token` before each sequence (as Llama's tokenizers do)."""
    return {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": token, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": token, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {token: {"id": token, "ids": [index], "tokens": [token]}}}


def expanded_table(compact: Any, rows: int, positions: list[int]) -> Any:
    """A table of `rows` exactly-zero rows with the compact table's rows placed at `positions`."""
    import torch

    table = compact.new_zeros((rows, compact.shape[1]))
    table[torch.tensor(positions)] = compact
    return table


def legacy_names(state: dict, prefixes: tuple[tuple[str, str], ...]) -> dict:
    """A state dict renamed by the first matching (new prefix, old prefix) pair, its tensors detached copies."""
    renamed = {}
    for name, tensor in state.items():
        for new, old in prefixes:
            if name.startswith(new):
                name = old + name[len(new):]
                break
        renamed[name] = tensor.detach().clone()
    return renamed


def copy_data(source: Path, folder: Path) -> dict[str, Path]:
    """Copy the paper-layout data files from `source` into `folder`/data; returns that folder and each split's file."""
    data = folder / "data"
    data.mkdir(parents=True, exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(source / name, data / name)
    return {"data": data, "train": data / "train.json", "val": data / "val.json"}


def _digest_by_shape(digest: Any, path: Path) -> None:
    """Feed a safetensors file's tensors (name, shape, bytes; sorted by name) to `digest`."""
    from safetensors.torch import load_file

    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(name.encode() + str(tuple(tensor.shape)).encode() + tensor.numpy().tobytes())


def file_digests(root: Path, digest_tensors: Callable[[Any, Path], None] = _digest_by_shape) -> dict[str, str]:
    """sha256 of every file under `root` by relative path, a safetensors file's by its tensors (`digest_tensors`)."""
    digests = {}
    for path in sorted(item for item in Path(root).rglob("*") if item.is_file()):
        digest = hashlib.sha256()
        if path.suffix == ".safetensors":
            digest_tensors(digest, path)
        else:
            digest.update(path.read_bytes())
        digests[str(path.relative_to(root))] = digest.hexdigest()
    return digests


# ---------------------------------------------------------------------------------------------------------------
# Training a compact model (run once)
# ---------------------------------------------------------------------------------------------------------------

def train_steps(model: Any, steps: int, learning_rate: float, warmup: int, step: Callable[[int], tuple[Any, str]],
                label: str = "", log_every: int = 25) -> None:
    """AdamW on `model` with a linear warm-up and decay, gradients clipped to 1; `step(index)` gives (loss, note)."""
    import torch

    parameters = list(model.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda index: min(1.0, (index + 1) / warmup) * max(0.05, 1 - index / steps))
    model.train()
    started = time.time()
    for index in range(steps):
        loss, note = step(index)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0)
        optimizer.step()
        schedule.step()
        if index % log_every == 0 or index == steps - 1:
            print(f"{label}step {index} loss {loss.item():.3f} {note} ({time.time() - started:.0f}s)", flush=True)


def letter_loss(logits: Any, answers: list[int], tokenizer: Any, zero_rows: int) -> tuple[Any, float]:
    """Cross-entropy of the gold letters (`zero_rows` zero rows as one logit log(zero_rows)) and the accuracy."""
    import torch

    constant = logits.new_full((len(answers), 1), math.log(zero_rows))
    letters = [tokenizer.encode(letter, add_special_tokens=False)[0] for letter in "ABCD"]
    gold = torch.tensor([letters[answer] for answer in answers])
    loss = torch.nn.functional.cross_entropy(torch.cat([logits, constant], 1), gold)
    accuracy = (logits[:, letters].argmax(-1) == torch.tensor(answers)).float().mean()
    return loss, accuracy.item()


# ---------------------------------------------------------------------------------------------------------------
# Running the paper's scripts and exporting what they wrote
# ---------------------------------------------------------------------------------------------------------------

def paper_script(mirror: Path, path: str, edits: list[tuple[str, str]], work: Path) -> Path:
    """A copy under `work` of the paper's script at `path`, with `edits` applied (each must hit exactly once)."""
    text = subprocess.run(["git", "-C", str(mirror), "show", f"{PAPER_COMMIT}:{path}"], check=True,
                          capture_output=True, text=True).stdout
    for old, new in edits:
        if text.count(old) != 1:
            raise RuntimeError(f"{path}: {old!r} occurs {text.count(old)} times")
        text = text.replace(old, new)
    work.mkdir(parents=True, exist_ok=True)
    out = work / Path(path).name
    out.write_text(text, encoding="utf-8")
    return out


def oracle_environment(python_path: str | None = None) -> dict[str, str]:
    """The scripts' environment: offline, CPU only, two threads, `python_path` as PYTHONPATH when given."""
    environment = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    if python_path is not None:
        environment["PYTHONPATH"] = python_path
    return environment


def run_logged(python: Path, arguments: list[str], folder: Path, environment: dict[str, str], log_path: Path) -> str:
    """Run one script with the oracle's python in `folder`, as the paper's launchers do; returns its log."""
    with open(log_path, "w", encoding="utf-8") as log:
        subprocess.run([str(python), "-u", *arguments], cwd=folder, env=environment, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return log_path.read_text(encoding="utf-8")


def pidcore_statistics(world: dict[str, Path], folder: Path) -> dict[str, Any]:
    """The statistics `profile --probes published` computes and stores with its run: image and text mean and std."""
    from pidcore.pipeline.profiling import probe_run
    from pidcore.pipeline.settings import ProfileSettings
    from pidcore.store import load_calibration

    settings = ProfileSettings(model=str(world["model"]), dataset=f"paper:{world['data']}",
                               db=str(folder / "stats.duckdb"), device="cpu", dtype="float32", probes="published",
                               progress=False)
    _, run_id = probe_run(settings)
    image_mean, image_std, text_mean, text_std = load_calibration(settings.db, run_id)
    return {"image": {"mean": image_mean.tolist(), "std": image_std.tolist()},
            "text": {"mean": text_mean.tolist(), "std": text_std.tolist()}}


def write_statistics(stats: dict[str, Any], folder: Path, model_path: str) -> None:
    """The .pt files stage 2 loads ({model_name with / as _}_train_{text,image}_stats.pt, float32 mean and std)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    prefix = model_path.replace("/", "_")
    for kind in ("text", "image"):
        torch.save({moment: torch.tensor(stats[kind][moment], dtype=torch.float32) for moment in ("mean", "std")},
                   folder / f"{prefix}_train_{kind}_stats.pt")


def clean_log(text: str) -> str:
    """A log as a terminal would leave it: each carriage-return-overwritten line (tqdm) reduced to its last state."""
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.split("\n"))


def export_records(produced: Path, target: Path, split: str) -> None:
    """Write one split's stage-2 output as `target`/{split}.json: its file name and its records without the images."""
    records = json.loads(produced.read_text())
    for record in records:
        record.pop("image", None)
    write_json(target / f"{split}.json", {"file": f"{split}/{produced.name}", "records": records})


def export_logs(out: Path, target: Path) -> None:
    """Copy every log of the run in `out` into `target`, cleaned."""
    for log in sorted(out.glob("*.log")):
        (target / log.name).write_text(clean_log(log.read_text(encoding="utf-8")), encoding="utf-8")


def add_build_command(commands: Any) -> None:
    """Add the worlds' `build FOLDER` command to an argparse subparsers object."""
    commands.add_parser("build").add_argument("folder", type=Path)


def add_oracle_command(commands: Any) -> Any:
    """Add an `oracle` command taking the oracle venv's --python, the paper's --mirror and a --work folder."""
    oracle = commands.add_parser("oracle")
    oracle.add_argument("--python", type=Path, required=True, help="the oracle venv's python")
    oracle.add_argument("--mirror", type=Path, required=True)
    oracle.add_argument("--work", type=Path, required=True)
    return oracle


def print_world(world: dict[str, Path]) -> None:
    """Print a built world's paths as indented JSON (what the `build` command shows)."""
    print(json.dumps({key: str(value) for key, value in world.items()}, indent=2))


# ---------------------------------------------------------------------------------------------------------------
# Comparing pidcore's probes with the oracle's records
# ---------------------------------------------------------------------------------------------------------------

def oracle_records(folder: Path) -> dict[str, dict]:
    """The stage-2 records of both splits exported into `folder`, by id (their answer turns)."""
    records = {}
    for split in SPLITS:
        saved = json.loads((folder / f"{split}.json").read_text())
        records.update({record["id"]: record["conversations"][1] for record in saved["records"]})
    return records


def saved_statistics(path: Path) -> Any:
    """The oracle's image and text mean and std from its stats.json, in load_calibration's order."""
    import numpy as np

    saved = json.loads(path.read_text())
    return np.array([saved[kind][moment] for kind in ("image", "text") for moment in ("mean", "std")])


def profiled(world: dict[str, Path], model: str, folder: Path, probes: str = "published", batch: int = 8) -> dict:
    """Our probes of the world's records with `world[model]` by id, in the paper's fields, and the run's statistics."""
    from pidcore.pipeline.profiling import probe_run
    from pidcore.pipeline.settings import ProfileSettings
    from pidcore.store import load_calibration, load_samples

    settings = ProfileSettings(model=str(world[model]), dataset=f"paper:{world['data']}", db=str(folder / "r.duckdb"),
                               device="cpu", dtype="float32", chunk=batch, probes=probes, progress=False)
    _, run_id = probe_run(settings)
    return {row.sample_id: _as_paper(row) for row in load_samples(settings.db, run_id)} | {
        "stats": load_calibration(settings.db, run_id)}


def _as_paper(row: Any) -> dict:
    """A stored sample's output-layer probes as the paper writes them: after the 0.3 fallback, zero-padded to 4."""
    import numpy as np

    from pidcore.atoms import LETTER_MASS_FALLBACK, PASSES

    written = {"v_feature": row.x1, "l_feature": row.x2}
    for index, name in enumerate(PASSES):
        probs, mass = row.probs[index, -1], row.letter_mass[index, -1]
        kept = np.full_like(probs, 1 / len(probs)) if mass < LETTER_MASS_FALLBACK else probs
        written[f"{FIELDS[name]}_prob"] = np.pad(kept, (0, 4 - len(probs)))
        written[f"{FIELDS[name]}_orig_prob"] = probs * mass
    return written


def differences(ours: dict, paper: dict) -> dict[str, float]:
    """Per field, the largest absolute difference over every record (orig probs over the valid options only)."""
    import numpy as np

    largest: dict[str, float] = {}
    for sample_id, record in paper.items():
        for field, value in ours[sample_id].items():
            expected = np.asarray(record[field])[: len(value)]
            largest[field] = max(largest.get(field, 0.0), float(np.abs(value - expected).max()))
    return largest


def moved_by(world: dict[str, Path], model: str, folder: Path, convention: str, paper: dict,
             orig_tolerance: float) -> tuple[set[str], dict[str, float]]:
    """With `convention` alone left out: the fields beyond tolerance from `paper`, and every field's difference."""
    found = differences(profiled(world, model, folder, probes=f"published-minus-{convention}"), paper)
    return outside(found, orig_tolerance), found


def outside(found: dict[str, float], orig_tolerance: float) -> set[str]:
    """The fields whose largest difference exceeds their tolerance (`orig_tolerance` for the *_orig_prob ones)."""
    return {field for field, gap in found.items() if not gap <= (orig_tolerance if "orig" in field else TOLERANCE)}
