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
import math
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "paper_probes_llama"
BPE = HERE / "fixtures" / "paper_probes" / "tokenizer"
DATA = HERE / "fixtures" / "paper_probes" / "data"
DATA_FILES = ("train.json", "val.json")
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
PAPER_COMMIT = "950ddb7"
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


def _bpe() -> tuple[dict[str, int], list[str]]:
    """The Qwen world's trained BPE: vocabulary and merges."""
    vocab = json.loads((BPE / "vocab.json").read_text(encoding="utf-8"))
    merges = (BPE / "merges.txt").read_text(encoding="utf-8").splitlines()
    return vocab, [line for line in merges if line and not line.startswith("#")]


def _added(token: str, index: int) -> dict[str, Any]:
    """A special token's entry in tokenizer.json's added_tokens."""
    return {"id": index, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def tokenizer_json(compact: bool) -> dict[str, Any]:
    """tokenizer.json: Llama 3's pre-tokenizer, the trained BPE, fillers up to 128000 (full layout; no merge makes
    them), the specials as added tokens, <|begin_of_text|> prepended as Llama 3's post-processor does."""
    vocab, merges = _bpe()
    if not compact:
        vocab = {**vocab, **{f"<|filler_{index}|>": index for index in range(BPE_SIZE, FIRST_SPECIAL)}}
    ids = special_ids(compact)
    bos = "<|begin_of_text|>"
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [_added(token, index) for token, index in ids.items()], "normalizer": None,
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": LLAMA3_SPLIT}, "behavior": "Isolated", "invert": False},
                byte_level]},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": bos, "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [{"SpecialToken": {"id": bos, "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": bos, "type_id": 1}},
                                        {"Sequence": {"id": "B", "type_id": 1}}],
                               "special_tokens": {bos: {"id": bos, "ids": [ids[bos]], "tokens": [bos]}}},
            "decoder": byte_level,
            "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                      "vocab": vocab, "merges": merges}}


def chat_template() -> str:
    """Llama 3.2 Vision Instruct's chat template (see the fixtures' README)."""
    return (FIXTURES / "chat_template.jinja").read_text(encoding="utf-8")


def _tokenizer_config(compact: bool) -> dict[str, Any]:
    """tokenizer_config.json with a generic fast-tokenizer class both transformers versions load."""
    decoder = {str(index): {key: value for key, value in _added(token, index).items() if key != "id"}
               for token, index in special_ids(compact).items()}
    return {"added_tokens_decoder": decoder, "bos_token": "<|begin_of_text|>", "chat_template": chat_template(),
            "clean_up_tokenization_spaces": True, "eos_token": "<|eot_id|>", "pad_token": "<|finetune_right_pad_id|>",
            "model_input_names": ["input_ids", "attention_mask"], "model_max_length": 131072,
            "tokenizer_class": "PreTrainedTokenizerFast"}


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
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "MllamaImageProcessor", "max_image_tiles": MAX_TILES,
            "processor_class": "MllamaProcessor", "resample": 2, "rescale_factor": 1 / 255,
            "size": {"height": TILE, "width": TILE}}


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_folder(folder: Path, weights: dict, compact: bool = False) -> Path:
    """A loadable model folder: weights (the real checkpoints' names), configs, processor and tokenizer files."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file({name: tensor.contiguous() for name, tensor in sorted(weights.items())},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    _write_json(folder / "config.json", model_config(compact))
    _write_json(folder / "generation_config.json", generation_config(compact))
    _write_json(folder / "preprocessor_config.json", preprocessor_config())
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer_json(compact), ensure_ascii=False), encoding="utf-8")
    _write_json(folder / "tokenizer_config.json", _tokenizer_config(compact))
    _write_json(folder / "special_tokens_map.json", {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                                     "pad_token": "<|finetune_right_pad_id|>"})
    _write_json(folder / "chat_template.json", {"chat_template": chat_template()})
    return folder


def expand_weights(compact: dict) -> dict:
    """Full-vocabulary weights: each compact row at its real id, every other row exactly zero."""
    import torch

    full = dict(compact)
    for name, extra in VOCABULARY_ROWS:
        rows = TEXT_VOCAB + (EXTRA_INPUT_ROWS if extra else 0)
        table = compact[name].new_zeros((rows, compact[name].shape[1]))
        table[torch.tensor(compact_to_full(compact[name].shape[0]))] = compact[name]
        full[name] = table
    return full


def legacy_names(state: dict) -> dict:
    """transformers 5.x state-dict names -> the real checkpoints' (4.51.3's) names."""
    renamed = {}
    for name, tensor in state.items():
        for new, old in LEGACY_PREFIXES:
            if name.startswith(new):
                name = old + name[len(new):]
                break
        renamed[name] = tensor.detach().clone()
    return renamed


def build_world(folder: Path) -> dict[str, Path]:
    """Expand the committed fixtures into `folder`: the model folder and the data files; a few seconds, offline."""
    from safetensors.torch import load_file

    folder.mkdir(parents=True, exist_ok=True)
    model = write_model_folder(folder / MODEL_NAME, expand_weights(load_file(str(FIXTURES / "compact.safetensors"))))
    (folder / "data").mkdir(exist_ok=True)
    for name in DATA_FILES:
        shutil.copyfile(DATA / name, folder / "data" / name)
    return {"model": model, "data": folder / "data", "train": folder / "data" / "train.json",
            "val": folder / "data" / "val.json"}


def world_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` (the weights by tensor content, independent of the safetensors header)."""
    import hashlib

    from safetensors.torch import load_file

    digests = {}
    for path in sorted(item for item in root.rglob("*") if item.is_file()):
        digest = hashlib.sha256()
        if path.suffix == ".safetensors":
            for name, tensor in sorted(load_file(str(path)).items()):
                digest.update(name.encode() + str(tuple(tensor.shape)).encode() + tensor.numpy().tobytes())
        else:
            digest.update(path.read_bytes())
        digests[str(path.relative_to(root))] = digest.hexdigest()
    return digests


# ---------------------------------------------------------------------------------------------------------------
# Training (run once, transformers 5.x, compact layout)
# ---------------------------------------------------------------------------------------------------------------

def _training_rows(rng: random.Random, size: int) -> list[tuple[Any, str, int]]:
    """(image, question text as the scripts give it, gold index) rows of shapes questions."""
    from tests.paper_probe_world import SIZES, draw_question, human_text, render_image

    rows = []
    for _ in range(size):
        colour, question, options, answer = draw_question(rng, three_options=rng.random() < 0.2)
        alpha = None if rng.random() < 0.8 else rng.choice((255, 128))
        image = render_image(colour, random.Random(rng.random()), rng.choice(SIZES), alpha)
        rows.append((image, human_text(question, options).replace("\n<image>", ""), answer))
    return rows


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
    constant = logits.new_full((len(rows), 1), math.log(TEXT_VOCAB - BPE_SIZE - SPECIAL_COUNT))
    letters = [processor.tokenizer.encode(letter, add_special_tokens=False)[0] for letter in "ABCD"]
    gold = torch.tensor([letters[row[2]] for row in rows])
    loss = torch.nn.functional.cross_entropy(torch.cat([logits, constant], 1), gold)
    accuracy = (logits[:, letters].argmax(-1) == torch.tensor([row[2] for row in rows])).float().mean()
    return loss, accuracy.item()


def train(steps: int = 1200, batch: int = 12, learning_rate: float = 3e-3, seed: int = 0) -> Path:
    """Train the compact model on shapes questions; writes compact.safetensors."""
    import tempfile
    import time

    import torch
    from safetensors.torch import save_file
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
        write_model_folder(folder, legacy_names(model.state_dict()), compact=True)
        vlm = load_vlm(str(folder), "cpu", "float32")
        vlm.processor.tokenizer.padding_side = "left"
        parameters = list(vlm.model.parameters())
        optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: min(1.0, (step + 1) / 20) * max(0.05, 1 - step / steps))
        vlm.model.train()
        started = time.time()
        for step in range(steps):
            loss, accuracy = answer_loss(vlm, _training_rows(rng, batch), rng)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            schedule.step()
            if step % 25 == 0 or step == steps - 1:
                print(f"step {step} loss {loss.item():.3f} acc {accuracy:.2f} ({time.time() - started:.0f}s)",
                      flush=True)
        state = legacy_names(vlm.model.state_dict())
    out = FIXTURES / "compact.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in sorted(state.items())}, str(out),
              metadata={"format": "pt"})
    return out


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
    work.mkdir(parents=True, exist_ok=True)
    out = {}
    for kind, path in PAPER_SCRIPTS.items():
        text = subprocess.run(["git", "-C", str(mirror), "show", f"{PAPER_COMMIT}:{path}"], check=True,
                              capture_output=True, text=True).stdout
        for old, new in script_edits(model_path)[kind]:
            if text.count(old) != 1:
                raise RuntimeError(f"{path}: {old!r} occurs {text.count(old)} times")
            text = text.replace(old, new)
        out[kind] = work / Path(path).name
        out[kind].write_text(text, encoding="utf-8")
    return out


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


def stage2_statistics(stage1: dict[str, float], ours: dict[str, Any]) -> dict[str, Any]:
    """What stage 2 is given: stage 1's std (one number, the same in every dimension) and, since stage 1 computes
    no mean, pidcore's per-dimension mean of the same rows."""
    return {kind: {"mean": ours[kind]["mean"], "std": [stage1[kind]] * len(ours[kind]["mean"])}
            for kind in ("image", "text")}


def write_statistics(stats: dict[str, Any], folder: Path, model_path: str) -> None:
    """The .pt files stage 2 loads ({model_name with / as _}_train_{text,image}_stats.pt, float32 mean and std)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    prefix = model_path.replace("/", "_")
    for kind in ("text", "image"):
        torch.save({moment: torch.tensor(stats[kind][moment], dtype=torch.float32) for moment in ("mean", "std")},
                   folder / f"{prefix}_train_{kind}_stats.pt")


def _run(python: Path, arguments: list[str], folder: Path, log_path: Path, path: str) -> str:
    """Run one script with the oracle's python, as the paper's launchers do; returns what it printed."""
    import os

    environment = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path}
    with open(log_path, "w", encoding="utf-8") as log:
        subprocess.run([str(python), "-u", *arguments], cwd=folder, env=environment, stdout=log,
                       stderr=subprocess.STDOUT, check=True)
    return log_path.read_text(encoding="utf-8")


def run_oracle(python: Path, mirror: Path, work: Path, pillow: Path) -> Path:
    """Build the world under `work`, run stage 1 (train split), give stage 2 its std and pidcore's mean, and run
    stage 2 (train, then val) with `python` (the oracle venv), with `pillow` (a folder holding another Pillow) and
    the torchvision stub first on its path; returns the output folder."""
    world = build_world(work / "world")
    model_path = str(world["model"])
    scripts = prepare_scripts(mirror, work / "scripts", model_path)
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    path = f"{write_torchvision_stub(work / 'stub')}:{pillow}"
    data = f"{world['data']}/"
    log = _run(python, [str(scripts["devi"]), "--read_dir", data, "--model_size", MODEL_SIZE, "--data_mode", "train"],
               scripts["devi"].parent, out / "devi_train.log", path)
    stage1 = stage1_stds(_clean_log(log))
    ours = pidcore_statistics(world, work)
    given = stage2_statistics(stage1, ours)
    write_statistics(given, out / "stats", model_path)
    _write_json(out / "stats.json", {"stage1_printed": stage1, "pidcore": ours, "given": given})
    for split in ("train", "val"):
        (out / "embeds" / split).mkdir(parents=True, exist_ok=True)
        _run(python, [str(scripts["embed"]), "--read_dir", data, "--save_dir", str(out / "embeds"), "--num_choices",
                      "4", "--model_llama_size", MODEL_SIZE, "--data_mode", split, "--devi_vector_dir",
                      str(out / "stats")], scripts["embed"].parent, out / f"embed_{split}.log", path)
    _write_json(FIXTURES / "world_sha256.json", world_digests(work / "world"))
    return out


def _clean_log(text: str) -> str:
    """A log as a terminal would leave it: each carriage-return-overwritten line (tqdm) reduced to its last state."""
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.split("\n"))


def export_oracle(out: Path, target: Path = FIXTURES / "oracle") -> Path:
    """Copy the oracle run into the fixtures: stage 1's printed stds and the statistics stage 2 was given, its
    records verbatim but for the base64 images, the cleaned logs."""
    target.mkdir(parents=True, exist_ok=True)
    stats = json.loads((out / "stats.json").read_text())
    _write_json(target / "stats.json", {"stage1_printed": stats["stage1_printed"], "given": stats["given"]})
    for split in ("train", "val"):
        records = json.loads((out / "embeds" / split / f"llama32_{MODEL_SIZE}.json").read_text())
        for record in records:
            record.pop("image", None)
        _write_json(target / f"{split}.json", {"file": f"{split}/llama32_{MODEL_SIZE}.json", "records": records})
    for log in sorted(out.glob("*.log")):
        (target / log.name).write_text(_clean_log(log.read_text(encoding="utf-8")), encoding="utf-8")
    return target


def _main(argv: list[str] | None = None) -> None:
    """The one-off commands (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    training = commands.add_parser("train")
    training.add_argument("--steps", type=int, default=1200)
    build = commands.add_parser("build")
    build.add_argument("folder", type=Path)
    oracle = commands.add_parser("oracle")
    oracle.add_argument("--python", type=Path, required=True, help="the oracle venv's python")
    oracle.add_argument("--mirror", type=Path, required=True)
    oracle.add_argument("--work", type=Path, required=True)
    oracle.add_argument("--pillow", type=Path, required=True, help="a folder with the Pillow to use instead")
    args = parser.parse_args(argv)
    if args.command == "train":
        print(train(steps=args.steps))
    elif args.command == "build":
        print(json.dumps({key: str(value) for key, value in build_world(args.folder).items()}, indent=2))
    elif args.command == "oracle":
        print(export_oracle(run_oracle(args.python, args.mirror, args.work, args.pillow)))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    _main()
