"""A small world for checking `pidcore profile --probes published` against the paper's Llama 3.2 Vision scripts.

The paper (RiiShin/pid-lvlm-analysis, commit 950ddb7) runs Llama 3.2 Vision with `devis/llama_11b_devi.py`
(stage 1) and `embeds/llama_11b_embed.py` (stage 2), which locate the masked text between
`model.config.image_token_index` (<|image|>, 128256) and the hard-coded 128009 (<|eot_id|>), and read the letters as
`tokenizer.encode(letter)`. This module builds a trained tiny Llama 3.2 Vision with Llama 3's special tokens at
their real ids and its real chat template, so the scripts run on it as published:

- the tokenizer is the Qwen world's locally trained 400-token byte-level BPE (tests/fixtures/paper_probes/tokenizer)
  under Llama 3's pre-tokenizer, then unreachable filler entries, then Llama 3's 256 special tokens at
  128000..128255 and <|image|> 128256; <|begin_of_text|> is prepended to every text, as Llama 3's tokenizer does;
- the decoder has Llama 3.2 Vision's 128256 output rows and 128264 input rows; every row past the real ones is
  exactly zero in both (so its logit is exactly 0);
- the weights are committed in a compact layout (the 656 real rows) and expanded here.

The data are the Qwen world's (tests/fixtures/paper_probes/data: the paper's JSON layout, 24 + 12 records).
`build_world(folder)` expands the fixtures (tests/fixtures/paper_probes_llama) into a model folder that
transformers 4.51.3 (the paper's pin) and `pidcore.models.loading.load_vlm` (5.x) both load, plus the data files.

Run once (already done; see the fixtures' README), from the repository root:

    python tests/llama_world.py train        # compact.safetensors (about two minutes on 2 CPU cores)
    python tests/llama_world.py oracle --python /tmp/oracle-venv/bin/python \\
        --mirror /work/.mirror/RiiShin+pid-lvlm-analysis/repo --work /tmp/oracle-llama --pillow /tmp/pillow-13
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as `python tests/llama_world.py`: `tests` and `pidcore` from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.parity_common import (
    CLIP_MEAN, CLIP_STD, SPLITS, add_build_command, add_oracle_command, added_token, added_tokens_decoder, clean_log,
    copy_data, expanded_table, export_logs, export_records, file_digests as world_digests, legacy_names, letter_loss,
    oracle_environment, paper_script, pidcore_statistics, prepend_template, print_world, read_bpe, run_logged,
    save_weights, train_steps, write_json, write_statistics,
)

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "paper_probes_llama"
BPE = HERE / "fixtures" / "paper_probes" / "tokenizer"
DATA = HERE / "fixtures" / "paper_probes" / "data"
BPE_SIZE = 400
FIRST_SPECIAL = 128_000
SPECIAL_COUNT = 256
TEXT_VOCAB = FIRST_SPECIAL + SPECIAL_COUNT  # Llama 3.2 Vision's output rows; <|image|> is the first id past them
EXTRA_INPUT_ROWS = 8  # its input embedding has 8 rows more than its output (the image token's among them)
NAMED_SPECIALS = {0: "<|begin_of_text|>", 1: "<|end_of_text|>", 4: "<|finetune_right_pad_id|>",
                  6: "<|start_header_id|>", 7: "<|end_header_id|>", 8: "<|eom_id|>", 9: "<|eot_id|>",
                  10: "<|python_tag|>"}
IMAGE_TOKEN = "<|image|>"
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                r"\s*[\r\n]+|\s+(?!\S)|\s+")
TILE, PATCH, MAX_TILES = 28, 14, 4
PAPER_SCRIPTS = {"devi": "models_scripts/general_models/devis/llama_11b_devi.py",
                 "embed": "models_scripts/general_models/embeds/llama_11b_embed.py"}
MODEL_NAME = "llama"
MODEL_SIZE = "tiny"  # the scripts' --model_size / --model_llama_size, which name their output file
# The weights with one row per token: (name, whether it has the input embedding's extra rows).
VOCABULARY_ROWS = (("language_model.model.embed_tokens.weight", True), ("language_model.lm_head.weight", False))
LEGACY_PREFIXES = (("model.vision_model.", "vision_model."), ("model.multi_modal_projector.", "multi_modal_projector."),
                   ("model.language_model.", "language_model.model."), ("lm_head.", "language_model.lm_head."))
STD_LINE = re.compile(r"^tensor\(([0-9.e+-]+)\)$")


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------

def special_tokens() -> list[str]:
    """Llama 3's 256 special tokens in id order (the reserved ones numbered as its tokenizer numbers them)."""
    tokens, reserved = [], 0
    for offset in range(SPECIAL_COUNT):
        if offset in NAMED_SPECIALS:
            tokens.append(NAMED_SPECIALS[offset])
        else:
            tokens.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return tokens


def special_ids(compact: bool) -> dict[str, int]:
    """The special tokens and <|image|> with their ids: the real ones, or right after the BPE in the compact layout."""
    first = BPE_SIZE if compact else FIRST_SPECIAL
    ids = {token: first + index for index, token in enumerate(special_tokens())}
    return {**ids, IMAGE_TOKEN: first + SPECIAL_COUNT}


def compact_to_full(rows: int) -> list[int]:
    """For each of a compact weight's first `rows` rows (the BPE, the specials, the image token and the input
    embedding's other extra rows), its row in the full layout."""
    full = list(range(BPE_SIZE)) + list(range(FIRST_SPECIAL, TEXT_VOCAB + EXTRA_INPUT_ROWS))
    return full[:rows]


def tokenizer_json(compact: bool) -> dict[str, Any]:
    """tokenizer.json: Llama 3's pre-tokenizer, the trained BPE, fillers up to 128000 (full layout; no merge makes
    them), the specials as added tokens, <|begin_of_text|> prepended as Llama 3's post-processor does."""
    vocab, merges = read_bpe(BPE)
    if not compact:
        vocab = {**vocab, **{f"<|filler_{index}|>": index for index in range(BPE_SIZE, FIRST_SPECIAL)}}
    ids = special_ids(compact)
    bos = "<|begin_of_text|>"
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [added_token(token, index) for token, index in ids.items()], "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
                byte_level]},
            "post_processor": prepend_template(bos, ids[bos]), "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                      "vocab": vocab, "merges": merges}}


def chat_template() -> str:
    """Llama 3.2 Vision Instruct's chat template (see the fixtures' README)."""
    return (FIXTURES / "chat_template.jinja").read_text(encoding="utf-8")


def _tokenizer_config(compact: bool) -> dict[str, Any]:
    """tokenizer_config.json with a generic fast-tokenizer class both transformers versions load."""
    return {"added_tokens_decoder": added_tokens_decoder(special_ids(compact)), "bos_token": "<|begin_of_text|>",
            "chat_template": chat_template(), "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>",
            "pad_token": "<|finetune_right_pad_id|>", "model_input_names": ["input_ids", "attention_mask"],
            "model_max_length": 131072, "tokenizer_class": "PreTrainedTokenizerFast"}


# ---------------------------------------------------------------------------------------------------------------
# Model folder
# ---------------------------------------------------------------------------------------------------------------

def _aspect_ratios() -> list[list[int]]:
    """The tile layouts of at most MAX_TILES tiles, in the image processor's order."""
    return [[rows, columns] for rows in range(1, MAX_TILES + 1) for columns in range(1, MAX_TILES // rows + 1)]


def model_config(compact: bool = False) -> dict[str, Any]:
    """config.json in the layout of the real checkpoints (what transformers 4.51.3 reads). Changing it invalidates
    the committed weights and the oracle's outputs."""
    ids = special_ids(compact)
    vocab = BPE_SIZE + SPECIAL_COUNT if compact else TEXT_VOCAB
    rope = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}
    text = {"model_type": "mllama_text_model", "vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
            "cross_attention_layers": [1, 3], "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 500000.0,
            "rope_scaling": rope, "max_position_embeddings": 131072, "tie_word_embeddings": False,
            "bos_token_id": ids["<|begin_of_text|>"], "pad_token_id": ids["<|finetune_right_pad_id|>"],
            "eos_token_id": [ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]],
            "torch_dtype": "float32"}
    vision = {"model_type": "mllama_vision_model", "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_global_layers": 1, "attention_heads": 2, "intermediate_layers_indices": [0],
              "vision_output_dim": 64, "image_size": TILE, "patch_size": PATCH, "max_num_tiles": MAX_TILES,
              "supported_aspect_ratios": _aspect_ratios(), "num_channels": 3, "norm_eps": 1e-5,
              "hidden_act": "gelu", "torch_dtype": "float32"}
    return {"architectures": ["MllamaForConditionalGeneration"], "model_type": "mllama",
            "image_token_index": ids[IMAGE_TOKEN], "text_config": text, "vision_config": vision,
            "torch_dtype": "float32", "transformers_version": "4.51.3"}


def generation_config(compact: bool = False) -> dict[str, Any]:
    """generation_config.json as the real checkpoint's: sampling settings that greedy decoding ignores."""
    ids = special_ids(compact)
    return {"bos_token_id": ids["<|begin_of_text|>"], "do_sample": True,
            "pad_token_id": ids["<|finetune_right_pad_id|>"],
            "eos_token_id": [ids["<|end_of_text|>"], ids["<|eom_id|>"], ids["<|eot_id|>"]], "temperature": 0.6,
            "top_p": 0.9, "transformers_version": "4.51.3"}


def preprocessor_config() -> dict[str, Any]:
    """preprocessor_config.json as the real checkpoint's, with TILE-px tiles."""
    return {"do_convert_rgb": True, "do_normalize": True, "do_pad": True, "do_rescale": True, "do_resize": True,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "image_processor_type": "MllamaImageProcessor",
            "max_image_tiles": MAX_TILES, "processor_class": "MllamaProcessor", "resample": 2,
            "rescale_factor": 1 / 255, "size": {"height": TILE, "width": TILE}}


def write_model_folder(folder: Path, weights: dict, compact: bool = False) -> Path:
    """A loadable model folder: weights (the real checkpoints' names), configs, processor and tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(weights, folder / "model.safetensors")
    write_json(folder / "config.json", model_config(compact))
    write_json(folder / "generation_config.json", generation_config(compact))
    write_json(folder / "preprocessor_config.json", preprocessor_config())
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(compact), ensure_ascii=False), encoding="utf-8")
    write_json(folder / "tokenizer_config.json", _tokenizer_config(compact))
    write_json(folder / "special_tokens_map.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                                    "pad_token": "<|finetune_right_pad_id|>"})
    write_json(folder / "chat_template.json", {"chat_template": chat_template()})
    return folder


def expand_weights(compact: dict) -> dict:
    """Full-vocabulary weights: each compact row at its real id, every other row exactly zero."""
    full = dict(compact)
    for name, extra in VOCABULARY_ROWS:
        rows = TEXT_VOCAB + (EXTRA_INPUT_ROWS if extra else 0)
        full[name] = expanded_table(compact[name], rows, compact_to_full(compact[name].shape[0]))
    return full


def build_world(folder: Path) -> dict[str, Path]:
    """Expand the committed fixtures into `folder`: the model folder and the data files; a few seconds, offline."""
    from safetensors.torch import load_file

    folder.mkdir(parents=True, exist_ok=True)
    model = write_model_folder(folder / MODEL_NAME, expand_weights(load_file(str(FIXTURES / "compact.safetensors"))))
    return {"model": model, **copy_data(DATA, folder)}


# ---------------------------------------------------------------------------------------------------------------
# Training (run once, transformers 5.x, compact layout)
# ---------------------------------------------------------------------------------------------------------------

def _training_rows(rng: random.Random, size: int) -> list[tuple[Any, str, int]]:
    """(image, question text as the scripts give it, gold index) rows of shapes questions."""
    from tests.paper_probe_world import SIZES, training_row

    return [training_row(rng, 0.8, SIZES)[:3] for _ in range(size)]


def _noised(values, mask, rng: random.Random, dropout: float):
    """`values` [rows, n, d] with the masked positions of some rows (a share `dropout`) replaced by noise of the
    batch's per-dimension statistics of those positions."""
    import torch

    out = values.clone()
    chosen = values[mask].detach()
    for row in range(values.shape[0]):
        if rng.random() < dropout:
            picked = mask[row]
            out[row, picked] = torch.randn_like(values[row, picked]) * chosen.std(0) + chosen.mean(0)
    return out


def answer_loss(vlm, rows: list, rng: random.Random, dropout: float = 0.2):
    """Cross-entropy of the gold letter at the last position over the full vocabulary (the zero rows as one
    constant logit), with the question's text rows or the image states replaced by noise in some rows."""
    import torch

    from pidcore.models.adapters import _mllama_cross_attention_states

    processor, model = vlm.processor, vlm.model
    texts = [processor.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                         {"type": "text", "text": row[1]}]}],
                                           add_generation_prompt=True, tokenize=False) for row in rows]
    inputs = processor(images=[[row[0]] for row in rows], text=texts, return_tensors="pt", padding=True,
                       add_special_tokens=False)
    ids = inputs["input_ids"]
    states = _mllama_cross_attention_states(model, **inputs).pooler_output
    states = states.reshape(len(rows), -1, states.shape[-1])
    ids_of = special_ids(True)
    after_image = (ids == ids_of[IMAGE_TOKEN]).long().cumsum(1) > 0
    before_end = (ids == ids_of["<|eot_id|>"]).long().cumsum(1) == 0
    span = after_image & before_end & (ids != ids_of[IMAGE_TOKEN])
    embeds = _noised(model.get_input_embeddings()(ids), span, rng, dropout)
    states = _noised(states, torch.ones(states.shape[:2], dtype=torch.bool), rng, dropout)
    logits = model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"],
                   cross_attention_mask=inputs["cross_attention_mask"],
                   cross_attention_states=states.reshape(-1, *states.shape[2:]), logits_to_keep=1).logits[:, -1]
    return letter_loss(logits, [row[2] for row in rows], processor.tokenizer, TEXT_VOCAB - BPE_SIZE - SPECIAL_COUNT)


def train(steps: int = 1200, batch: int = 12, learning_rate: float = 3e-3, seed: int = 0) -> Path:
    """Train the compact model on shapes questions; writes compact.safetensors."""
    import tempfile

    import torch
    from transformers import MllamaConfig, MllamaForConditionalGeneration

    from pidcore.models.loading import load_vlm

    torch.manual_seed(seed)
    rng = random.Random(f"train-llama-{seed}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / MODEL_NAME
        config = model_config(compact=True)
        model = MllamaForConditionalGeneration(MllamaConfig(**{**config, "text_config": {
            **config["text_config"], "rope_parameters": {**config["text_config"]["rope_scaling"],
                                                         "rope_theta": 500000.0}}}))
        with torch.no_grad():
            for layer in model.model.language_model.layers:
                if hasattr(layer, "cross_attn_attn_gate"):
                    layer.cross_attn_attn_gate.fill_(1.0)
                    layer.cross_attn_mlp_gate.fill_(1.0)
        write_model_folder(folder, legacy_names(model.state_dict(), LEGACY_PREFIXES), compact=True)
        vlm = load_vlm(str(folder), "cpu", "float32")
        vlm.processor.tokenizer.padding_side = "left"

        def step(_: int) -> tuple[Any, str]:
            loss, accuracy = answer_loss(vlm, _training_rows(rng, batch), rng)
            return loss, f"acc {accuracy:.2f}"

        train_steps(vlm.model, steps, learning_rate, 20, step)
        state = legacy_names(vlm.model.state_dict(), LEGACY_PREFIXES)
    save_weights(state, FIXTURES / "compact.safetensors")
    return FIXTURES / "compact.safetensors"


# ---------------------------------------------------------------------------------------------------------------
# Oracle
# ---------------------------------------------------------------------------------------------------------------

def script_edits(model_path: str) -> dict[str, list[tuple[str, str]]]:
    """The only edits made to the paper's scripts: the model path and float32 in both; in stage 1, its two printed
    stds at full float32 precision (torch prints 4 decimals by default); in stage 2, a re-seed before the loop.

    Why the re-seed: building the vision tower draws its class and position embeddings with torch.randn on the CPU
    (then overwritten by the checkpoint) after the script's torch.manual_seed(42). On the paper's GPUs the noise
    (`torch.randn_like` of CUDA tensors) comes from the CUDA generator, which those draws leave untouched; on a CPU
    the same generator serves both, so the copy re-seeds it as the script's first lines did."""
    name = '"meta-llama/Llama-3.2-{%s}B-Vision-Instruct"'
    dtype = ("torch_dtype=torch.bfloat16", "torch_dtype=torch.float32")
    printing = ("print(text_all_embedding.flatten().std(unbiased=False))",
                "torch.set_printoptions(precision=10)\nprint(text_all_embedding.flatten().std(unbiased=False))")
    loop = "for item in tqdm(data):\n"
    return {"devi": [(f"model_name = f{name % 'model_size'}", f'model_name = "{model_path}"'), dtype, printing],
            "embed": [(f"model_name = f{name % 'model_llama_size'}", f'model_name = "{model_path}"'), dtype,
                      (loop, "torch.manual_seed(42)\n" + loop)]}


def prepare_scripts(mirror: Path, work: Path, model_path: str) -> dict[str, Path]:
    """Copies of the paper's two scripts under `work` with script_edits applied (each must hit exactly once)."""
    edits = script_edits(model_path)
    return {kind: paper_script(mirror, path, edits[kind], work) for kind, path in PAPER_SCRIPTS.items()}


def write_torchvision_stub(folder: Path) -> Path:
    """A stub `torchvision` (no dist-info, so transformers sees none) with the names the scripts import at the top
    and never use (stage 1: transforms, transforms.functional.InterpolationMode; qwen_vl_utils: io)."""
    package = folder / "torchvision"
    (package / "transforms").mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""Stub: imported, never used."""\nfrom . import io, transforms\n')
    (package / "io.py").write_text('"""Stub: imported, never used."""\n')
    (package / "transforms" / "__init__.py").write_text(
        '"""Stub: imported, never used."""\nfrom . import functional\nfrom .functional import InterpolationMode\n')
    (package / "transforms" / "functional.py").write_text(
        '"""Stub: imported, never used."""\nimport enum\n\n\nclass InterpolationMode(enum.Enum):\n'
        '    NEAREST = "nearest"\n    BILINEAR = "bilinear"\n    BICUBIC = "bicubic"\n')
    return folder


def stage1_stds(log: str) -> dict[str, float]:
    """The two stds stage 1 prints last (`tensor(x)` lines: text, then image)."""
    values = [float(match.group(1)) for line in log.splitlines() if (match := STD_LINE.match(line.strip()))]
    if len(values) != 2:
        raise ValueError(f"stage 1 printed {len(values)} std lines, expected 2")
    return {"text": values[0], "image": values[1]}


def stage2_statistics(stage1: dict[str, float], ours: dict[str, Any]) -> dict[str, Any]:
    """What stage 2 is given: stage 1's std (one number, the same in every dimension) and, since stage 1 computes
    no mean, pidcore's per-dimension mean of the same rows."""
    return {kind: {"mean": ours[kind]["mean"], "std": [stage1[kind]] * len(ours[kind]["mean"])}
            for kind in ("image", "text")}


def run_oracle(python: Path, mirror: Path, work: Path, pillow: Path) -> Path:
    """Build the world under `work`, run stage 1 (train split), give stage 2 its std and pidcore's mean, and run
    stage 2 (train, then val) with `python` (the oracle venv), with `pillow` (a folder holding another Pillow) and
    the torchvision stub first on its path; returns the output folder."""
    world = build_world(work / "world")
    model_path = str(world["model"])
    scripts = prepare_scripts(mirror, work / "scripts", model_path)
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    environment = oracle_environment(f"{write_torchvision_stub(work / 'stub')}:{pillow}")
    data = f"{world['data']}/"
    log = run_logged(python, [str(scripts["devi"]), "--read_dir", data, "--model_size", MODEL_SIZE, "--data_mode",
                              "train"], scripts["devi"].parent, environment, out / "devi_train.log")
    stage1 = stage1_stds(clean_log(log))
    ours = pidcore_statistics(world, work)
    given = stage2_statistics(stage1, ours)
    write_statistics(given, out / "stats", model_path)
    write_json(out / "stats.json", {"stage1_printed": stage1, "pidcore": ours, "given": given})
    for split in SPLITS:
        (out / "embeds" / split).mkdir(parents=True, exist_ok=True)
        run_logged(python, [str(scripts["embed"]), "--read_dir", data, "--save_dir", str(out / "embeds"),
                            "--num_choices", "4", "--model_llama_size", MODEL_SIZE, "--data_mode", split,
                            "--devi_vector_dir", str(out / "stats")],
                   scripts["embed"].parent, environment, out / f"embed_{split}.log")
    write_json(FIXTURES / "world_sha256.json", world_digests(work / "world"))
    return out


def export_oracle(out: Path, target: Path = FIXTURES / "oracle") -> Path:
    """Copy the oracle run into the fixtures: stage 1's printed stds and the statistics stage 2 was given, its
    records verbatim but for the base64 images, the cleaned logs."""
    target.mkdir(parents=True, exist_ok=True)
    stats = json.loads((out / "stats.json").read_text())
    write_json(target / "stats.json", {"stage1_printed": stats["stage1_printed"], "given": stats["given"]})
    for split in SPLITS:
        export_records(out / "embeds" / split / f"llama32_{MODEL_SIZE}.json", target, split)
    export_logs(out, target)
    return target


def _main(argv: list[str] | None = None) -> None:
    """The one-off commands (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train")
    training.add_argument("--steps", type=int, default=1200)
    add_build_command(commands)
    oracle = add_oracle_command(commands)
    oracle.add_argument("--pillow", type=Path, required=True, help="a folder with the Pillow to use instead")
    args = parser.parse_args(argv)
    if args.command == "train":
        print(train(steps=args.steps))
    elif args.command == "build":
        print_world(build_world(args.folder))
    elif args.command == "oracle":
        print(export_oracle(run_oracle(args.python, args.mirror, args.work, args.pillow)))


if __name__ == "__main__":
    _main()
