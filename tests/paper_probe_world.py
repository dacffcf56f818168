"""A small world for checking `pidcore profile --probes published` against the paper's own stage-1/2 scripts.

The paper (RiiShin/pid-lvlm-analysis, commit 950ddb7) runs its Qwen2-VL / Qwen2.5-VL probes with hard-coded
token ids (151652 <|vision_start|>, 151653 <|vision_end|>, the second 151645 <|im_end|>) and
`model.config.image_token_id` (151655). This module builds two trained tiny models that have Qwen's real special
tokens at their real ids, so that the paper's scripts run on them unchanged:

- the tokenizer is a locally trained 400-token byte-level BPE (Qwen2's pre-tokenizer and normaliser) at ids
  0..399, then unreachable filler entries, then Qwen's 14 special tokens at 151643..151656; the vocabulary has
  151936 rows like the real checkpoints (rows past the tokenizer stay unused);
- the chat template is the real Qwen2-VL one (default system prompt "You are a helpful assistant.");
- the weights are committed in a compact layout (rows of the 414 real tokens only) and expanded here: every other
  row of the input embedding and of lm_head is exactly zero, so its logit is exactly 0.

`build_world(folder)` expands the committed fixtures (tests/fixtures/paper_probes) into full model folders, loadable
by transformers 4.51.3 (the paper's pin: flat config, legacy weight names `visual.*`, `model.*`, `lm_head.*`,
chat_template.json) and by `pidcore.models.loading.load_vlm` (transformers 5.x), and copies the data files the
oracle read. It is offline, deterministic and takes a few seconds.

Run once (already done; see tests/fixtures/paper_probes/README.md), from the repository root:

    python tests/paper_probe_world.py bpe      # tokenizer/vocab.json, merges.txt
    python tests/paper_probe_world.py data     # data/train.json, data/val.json
    python tests/paper_probe_world.py train    # <family>/compact.safetensors (a few minutes per model on CPU)

Helpers for the oracle run (see the README): `prepare-oracle` (edited copies of the paper's scripts), `oracle`
(build, run them with the oracle venv's python, export into the fixtures), `counts` (per-record token counts, oracle
venv) and `logits` (plain full-pass logits, either environment, for the cross-environment check).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import math
import random
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as `python tests/paper_probe_world.py`: `tests` and `pidcore` from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.parity_common import (
    CLIP_MEAN, CLIP_STD, SPLITS, add_build_command, add_oracle_command, added_token, copy_data, expanded_table,
    export_logs, export_records, file_digests, legacy_names, oracle_environment, paper_script, print_world, read_bpe,
    run_logged, save_weights, train_steps, write_json,
)

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "paper_probes"
FAMILIES = ("qwen2_vl", "qwen2_5_vl")
FULL_VOCAB = 151_936
FIRST_SPECIAL_ID = 151_643
QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                 "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
                 "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")
BPE_SIZE = 400
# The paper's processor bounds (devi 53-56, embed 81-84) and the checkpoints' own (the real Qwen2-VL values).
PAPER_MIN_PIXELS, PAPER_MAX_PIXELS = 256 * 28 * 28, 1280 * 28 * 28
CHECKPOINT_MIN_PIXELS, CHECKPOINT_MAX_PIXELS = 4 * 28 * 28, 16384 * 28 * 28
REPETITION_PENALTY = {"qwen2_vl": 1.3, "qwen2_5_vl": None}
INSTRUCTION = "Answer with the option's letter from the given choices directly."
QWEN2_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
               r"\s*[\r\n]+|\s+(?!\S)|\s+")
LEGACY_PREFIXES = (("model.visual.", "visual."), ("model.language_model.", "model."))


# ---------------------------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------------------------

def special_ids(compact: bool) -> dict[str, int]:
    """Qwen's special tokens and their ids: the real ids, or right after the BPE in the compact layout."""
    first = BPE_SIZE if compact else FIRST_SPECIAL_ID
    return {token: first + index for index, token in enumerate(QWEN_SPECIALS)}


def compact_to_full() -> list[int]:
    """For each compact row (BPE tokens, then the specials), its id in the full vocabulary."""
    return list(range(BPE_SIZE)) + list(special_ids(compact=False).values())


def _byte_level(**flags: bool) -> dict[str, Any]:
    return {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False, **flags}


def tokenizer_json(compact: bool) -> dict[str, Any]:
    """tokenizer.json: Qwen2's normaliser and pre-tokenizer, the trained BPE, fillers up to 151643 (full layout
    only; no merge produces them, so they are unreachable), Qwen's specials as added tokens."""
    vocab, merges = read_bpe(FIXTURES / "tokenizer")
    full_vocab = dict(vocab)
    if not compact:
        full_vocab.update({f"<|filler_{index}|>": index for index in range(BPE_SIZE, FIRST_SPECIAL_ID)})
    added = [added_token(token, index) for token, index in special_ids(compact).items()]
    return {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_SPLIT}, "behavior": "Isolated", "invert": False},
            _byte_level()]},
        "post_processor": _byte_level(), "decoder": _byte_level(),
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": full_vocab, "merges": merges},
    }


def chat_template() -> str:
    """The real Qwen2-VL chat template (see the README for where its text was taken from)."""
    return (FIXTURES / "chat_template.jinja").read_text(encoding="utf-8")


def tokenizer_config(compact: bool) -> dict[str, Any]:
    """tokenizer_config.json as Qwen2-VL's, with a generic fast-tokenizer class both transformers versions load."""
    decoder = {str(index): {"content": token, "lstrip": False, "normalized": False, "rstrip": False,
                            "single_word": False, "special": True} for token, index in special_ids(compact).items()}
    return {"add_prefix_space": False, "added_tokens_decoder": decoder,
            "additional_special_tokens": list(QWEN_SPECIALS[1:]), "bos_token": None,
            "chat_template": chat_template(), "clean_up_tokenization_spaces": False, "eos_token": "<|im_end|>",
            "errors": "replace", "model_max_length": 32768, "pad_token": "<|endoftext|>", "padding_side": "right",
            "split_special_tokens": False, "tokenizer_class": "PreTrainedTokenizerFast", "unk_token": None}


# ---------------------------------------------------------------------------------------------------------------
# Model folders
# ---------------------------------------------------------------------------------------------------------------

def _vision_config(family: str) -> dict[str, Any]:
    if family == "qwen2_vl":
        return {"depth": 2, "embed_dim": 64, "mlp_ratio": 4, "num_heads": 2, "in_chans": 3, "hidden_size": 64,
                "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    return {"depth": 2, "hidden_act": "silu", "hidden_size": 64, "intermediate_size": 128, "num_heads": 2,
            "in_chans": 3, "out_hidden_size": 64, "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
            "window_size": 112, "fullatt_block_indexes": [1], "tokens_per_second": 2, "temporal_patch_size": 2}


def model_config(family: str, compact: bool = False) -> dict[str, Any]:
    """config.json in the flat layout of the real checkpoints (what transformers 4.51.3 reads; 5.x converts it).
    Changing it invalidates the committed weights and the oracle's outputs."""
    ids = special_ids(compact)
    architecture = {"qwen2_vl": "Qwen2VLForConditionalGeneration",
                    "qwen2_5_vl": "Qwen2_5_VLForConditionalGeneration"}[family]
    rope = {"type": "mrope", "mrope_section": [2, 3, 3]}
    if family == "qwen2_5_vl":
        rope["rope_type"] = "default"
    return {"architectures": [architecture], "attention_dropout": 0.0,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"],
            "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"],
            "vision_token_id": ids["<|vision_pad|>"], "image_token_id": ids["<|image_pad|>"],
            "video_token_id": ids["<|video_pad|>"], "hidden_act": "silu", "hidden_size": 64,
            "initializer_range": 0.02, "intermediate_size": 128, "max_position_embeddings": 32768,
            "max_window_layers": 4, "model_type": family, "num_attention_heads": 4,
            "num_hidden_layers": 4 if family == "qwen2_vl" else 3, "num_key_value_heads": 2,
            "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": False,
            "torch_dtype": "float32", "transformers_version": "4.51.3", "use_cache": True,
            "use_sliding_window": False, "vision_config": _vision_config(family), "rope_scaling": rope,
            "vocab_size": BPE_SIZE + len(QWEN_SPECIALS) if compact else FULL_VOCAB}


def generation_config(family: str, compact: bool = False) -> dict[str, Any]:
    """generation_config.json; Qwen2-VL's carries a repetition penalty (it changes generate's scores)."""
    ids = special_ids(compact)
    config: dict[str, Any] = {"bos_token_id": ids["<|endoftext|>"], "pad_token_id": ids["<|endoftext|>"],
                              "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]]}
    if REPETITION_PENALTY[family] is not None:
        config["repetition_penalty"] = REPETITION_PENALTY[family]
    return {**config, "transformers_version": "4.51.3"}


def preprocessor_config(family: str) -> dict[str, Any]:
    """preprocessor_config.json with the real checkpoints' values (a 112-px image is 16 image tokens here)."""
    processor = {"qwen2_vl": "Qwen2VLProcessor", "qwen2_5_vl": "Qwen2_5_VLProcessor"}[family]
    return {"min_pixels": CHECKPOINT_MIN_PIXELS, "max_pixels": CHECKPOINT_MAX_PIXELS, "patch_size": 14,
            "temporal_patch_size": 2, "merge_size": 2, "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
            "image_processor_type": "Qwen2VLImageProcessor", "processor_class": processor}


def write_model_folder(folder: Path, family: str, weights: dict, compact: bool = False) -> Path:
    """A loadable model folder: weights (legacy names), config, generation config, processor and tokenizer files."""
    folder.mkdir(parents=True, exist_ok=True)
    save_weights(weights, folder / "model.safetensors")
    write_json(folder / "config.json", model_config(family, compact))
    write_json(folder / "generation_config.json", generation_config(family, compact))
    write_json(folder / "preprocessor_config.json", preprocessor_config(family))
    write_json(folder / "tokenizer.json", tokenizer_json(compact), compact=True)
    write_json(folder / "tokenizer_config.json", tokenizer_config(compact))
    write_json(folder / "chat_template.json", {"chat_template": chat_template()})
    return folder


def compact_weights(family: str) -> dict:
    """The committed compact weights of one family (legacy names; 414 vocabulary rows)."""
    from safetensors.torch import load_file

    return load_file(str(FIXTURES / family / "compact.safetensors"))


def expand_weights(compact: dict) -> dict:
    """Full-vocabulary weights: the compact rows placed at their real ids, every other row exactly zero."""
    full = dict(compact)
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        full[name] = expanded_table(compact[name], FULL_VOCAB, compact_to_full())
    return full


def build_world(folder: Path) -> dict[str, Path]:
    """Expand the committed fixtures into `folder`: one full model folder per family and the paper-layout data.

    Returns {"qwen2_vl": model folder, "qwen2_5_vl": model folder, "data": folder of train.json and val.json,
    "train": train.json, "val": val.json}. The bytes equal those the oracle read (see `world_digests`).
    """
    folder = Path(folder)
    paths: dict[str, Path] = {}
    for family in FAMILIES:
        paths[family] = write_model_folder(folder / family, family, expand_weights(compact_weights(family)))
    return {**paths, **copy_data(FIXTURES / "data", folder)}


def world_digests(root: Path) -> dict[str, str]:
    """sha256 of every file of a world built in `root`, by relative path; a safetensors file is digested by its
    tensors (name, dtype, shape, bytes), so the digest does not depend on the safetensors version that wrote it."""
    return file_digests(root, _digest_tensors)


def _digest_tensors(digest: Any, path: Path) -> None:
    """Feed a safetensors file's tensors (name, dtype, shape, raw bytes; sorted by name) to `digest`."""
    import torch
    from safetensors.torch import load_file

    for name, tensor in sorted(load_file(str(path)).items()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())


# ---------------------------------------------------------------------------------------------------------------
# Images and data (the paper's split layout)
# ---------------------------------------------------------------------------------------------------------------

SIZES = ((64, 64), (112, 112), (90, 130), (150, 100))


def render_image(colour: int, rng: random.Random, size: tuple[int, int], alpha: int | None = None):
    """A shapes-benchmark image scaled to `size` (width, height); with `alpha`, an RGBA image whose background is
    fully transparent and whose shape has that opacity."""
    import numpy as np
    from PIL import Image

    from pidcore.datasets import shapes

    image = shapes.render(colour, rng).resize(size, Image.NEAREST)
    if alpha is None:
        return image
    pixels = np.asarray(image)
    opacity = np.where((pixels == pixels[0, 0]).all(-1), 0, alpha).astype(np.uint8)
    return Image.fromarray(np.dstack([pixels, opacity]), "RGBA")


def draw_question(rng: random.Random, three_options: bool) -> tuple[int, str, list[str], int]:
    """A shapes question (vision, language or redundancy task: the four colours as options, optionally one wrong
    colour dropped): (image colour, question, options, gold index)."""
    from pidcore.datasets import shapes

    item = shapes.draw_item(rng.choice(("vision", "vision", "language", "redundancy")), rng)
    options = list(item.options)
    answer = options[item.answer]
    if three_options:
        options.remove(rng.choice([option for option in options if option != answer]))
    return item.x1, item.question, options, options.index(answer)


def training_row(rng: random.Random, opaque_share: float, sizes: tuple) -> tuple[Any, str, int, int]:
    """A training question: (image, question text without "\\n<image>", gold index, option count); a share
    `opaque_share` of the images are RGB, the others RGBA."""
    colour, question, options, answer = draw_question(rng, three_options=rng.random() < 0.2)
    alpha = None if rng.random() < opaque_share else rng.choice((255, 128))
    image = render_image(colour, random.Random(rng.random()), rng.choice(sizes), alpha)
    return image, human_text(question, options).replace("\n<image>", ""), answer, len(options)


def human_text(question: str, options: list[str]) -> str:
    """The paper's human turn: question, lettered options, the answer instruction, then "\\n<image>"."""
    letters = "ABCDEFGH"
    lines = [question] + [f"{letters[index]}. {option}" for index, option in enumerate(options)]
    return "\n".join(lines) + f"\n{INSTRUCTION}\n<image>"


def make_records(split: str, count: int, seed: int) -> list[dict[str, Any]]:
    """`count` records of the paper's layout: sizes cycle through SIZES, every fifth image is RGBA (one in three of
    those with a half-transparent shape), every sixth question has three options."""
    rng = random.Random(f"paper-probes-{split}-{seed}")
    records = []
    for index in range(count):
        colour, question, options, answer = draw_question(rng, three_options=index % 6 == 5)
        alpha = None if index % 5 != 2 else (128 if index % 15 == 2 else 255)
        image = render_image(colour, random.Random(rng.random()), SIZES[index % len(SIZES)], alpha)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        records.append({"id": f"{split}-{index:03d}", "image": base64.b64encode(buffer.getvalue()).decode("ascii"),
                        "num_options": len(options),
                        "conversations": [{"from": "human", "value": human_text(question, options)},
                                          {"from": "gpt", "value": "ABCDEFGH"[answer]}]})
    return records


def write_data(folder: Path = FIXTURES / "data") -> None:
    """train.json (24 records) and val.json (12 records), committed: PNG bytes depend on the Pillow build."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", 24), ("val", 12)):
        write_json(folder / f"{split}.json", make_records(split, count, seed=0))


# ---------------------------------------------------------------------------------------------------------------
# qwen_vl_utils 0.0.10's image path, re-implemented for training (the oracle runs the real one)
# ---------------------------------------------------------------------------------------------------------------

def qwen_vl_fetch_image(image, factor: int = 28, min_pixels: int = CHECKPOINT_MIN_PIXELS,
                        max_pixels: int = CHECKPOINT_MAX_PIXELS):
    """RGBA composited on white (alpha as paste mask), other modes convert("RGB"); each side rounded to a multiple of
    28 (at least 28), rescaled into [min_pixels, max_pixels] keeping the aspect; PIL's default (bicubic) resize."""
    from PIL import Image

    if image.mode == "RGBA":
        white = Image.new("RGB", image.size, (255, 255, 255))
        white.paste(image, mask=image.split()[3])
        image = white
    else:
        image = image.convert("RGB")
    width, height = image.size
    h_bar, w_bar = max(factor, round(height / factor) * factor), max(factor, round(width / factor) * factor)
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h_bar, w_bar = math.floor(height / beta / factor) * factor, math.floor(width / beta / factor) * factor
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar, w_bar = math.ceil(height * beta / factor) * factor, math.ceil(width * beta / factor) * factor
    return image.resize((w_bar, h_bar))


# ---------------------------------------------------------------------------------------------------------------
# BPE training (run once)
# ---------------------------------------------------------------------------------------------------------------

def bpe_corpus() -> list[str]:
    """The prompts' words: the project's tiny-tokenizer corpus, the shapes texts and the chat scaffolding."""
    from pidcore.datasets import shapes
    from pidcore.models.tokenizer import CORPUS

    texts = list(CORPUS) + list(shapes.PARAPHRASES) + [INSTRUCTION, "You are a helpful assistant.",
                                                       "system\nuser\nassistant\n", "Describe the shape."]
    texts += [f"What colour is {name}?" for name in shapes.OBJECTS] + [shapes.caption(c) for c in range(4)]
    texts += [f"Is the shape {colour}?\n" + "\n".join(f"{letter}. {name}" for letter, name in
                                                      zip("ABCD", shapes.COLOUR_NAMES)) for colour in shapes.COLOURS]
    return texts * 4


def train_bpe(folder: Path = FIXTURES / "tokenizer") -> None:
    """Train the 400-token byte-level BPE with Qwen2's pre-tokenizer; writes vocab.json and merges.txt."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_SPLIT), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    trainer = trainers.BpeTrainer(vocab_size=BPE_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(bpe_corpus(), trainer)
    model = json.loads(tokenizer.to_str())["model"]
    if len(model["vocab"]) != BPE_SIZE:
        raise RuntimeError(f"BPE has {len(model['vocab'])} tokens, expected {BPE_SIZE}")
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "vocab.json", model["vocab"])
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------------------
# Model training (run once, transformers 5.x; compact layout)
# ---------------------------------------------------------------------------------------------------------------

def _compact_model(family: str, folder: Path, seed: int):
    """A randomly initialised compact model folder, loaded with pidcore's loader."""
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText

    from pidcore.models.loading import load_vlm

    config = AutoConfig.for_model(**model_config(family, compact=True))
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config)
    write_model_folder(folder, family, legacy_names(model.state_dict(), LEGACY_PREFIXES), compact=True)
    return load_vlm(str(folder), "cpu", "float32")


def _paper_processor(vlm, folder: Path):
    """The model's processor bounded as the paper bounds it (min 256, max 1280 image tokens)."""
    from transformers import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil.from_pretrained(str(folder), min_pixels=PAPER_MIN_PIXELS,
                                                               max_pixels=PAPER_MAX_PIXELS)
    return type(vlm.processor)(image_processor=image_processor, tokenizer=vlm.processor.tokenizer,
                               chat_template=vlm.processor.chat_template)


def _training_rows(rng: random.Random, size: int, paper: bool) -> list[tuple[Any, str, int, int]]:
    """(image, question text without "\\n<image>", gold index, option count) rows; paper rows are pre-resized as
    qwen_vl_utils does."""
    rows = []
    for _ in range(size):
        image, text, answer, count = training_row(rng, 0.7, SIZES + ((32, 32),))
        image = qwen_vl_fetch_image(image) if paper else qwen_vl_fetch_image(image, min_pixels=1, max_pixels=10**9)
        rows.append((image, text, answer, count))
    return rows


def _spans(input_ids, ids: dict[str, int]):
    """Per row: the image-token mask and the paper's text span mask (after <|vision_end|>, before the second
    <|im_end|>)."""
    import torch

    image = input_ids == ids["<|image_pad|>"]
    text = torch.zeros_like(image)
    for row in range(input_ids.shape[0]):
        start = int((input_ids[row] == ids["<|vision_end|>"]).nonzero()[0])
        end = int((input_ids[row] == ids["<|im_end|>"]).nonzero()[1])
        text[row, start + 1:end] = True
    return image, text


def _noised(embeds, mask, rows):
    """Replace `mask` positions of the chosen rows with N(mean, std) of all `mask` positions (population std)."""
    import torch

    values = embeds.detach()[mask]
    mean, std = values.mean(0), values.std(0, unbiased=False)
    chosen = mask & rows[:, None]
    out = embeds.clone()
    out[chosen] = mean + std * torch.randn(int(chosen.sum()), embeds.shape[-1])
    return out


def _penalised(logits, input_ids, attention_mask, penalty: float):
    """transformers' repetition penalty on every id present in the row's prompt."""
    import torch

    out = logits.clone()
    for row in range(logits.shape[0]):
        seen = torch.unique(input_ids[row][attention_mask[row].bool()])
        values = out[row, seen]
        out[row, seen] = torch.where(values < 0, values * penalty, values / penalty)
    return out


def answer_loss(vlm, processor, rows, rng: random.Random, family: str, dropout: float = 0.4):
    """Cross-entropy of the gold letter at the answer position over the FULL vocabulary: the compact logits plus one
    constant logit log(number of zero rows) standing for the zero rows' exp(0) each. Masked rows (`dropout`) get
    the paper's noise on the text span or the image tokens, half of them with plain 1-D positions (as the paper's
    inputs_embeds-only generate gives); full rows of a penalised family see the repetition penalty."""
    import torch

    ids = special_ids(compact=True)
    tokenizer = processor.tokenizer
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": [{"type": "image"},
                                                                        {"type": "text", "text": text}]}],
                                           tokenize=False, add_generation_prompt=True) for _, text, _, _ in rows]
    inputs = processor(images=[image for image, *_ in rows], text=texts, return_tensors="pt", padding=True)
    model = vlm.model
    embeds = model.get_input_embeddings()(inputs["input_ids"])
    features = torch.cat(model.model.get_image_features(inputs["pixel_values"],
                                                        inputs["image_grid_thw"]).pooler_output)
    image_mask, text_mask = _spans(inputs["input_ids"], ids)
    embeds = embeds.masked_scatter(image_mask[..., None], features)
    modes = [("" if rng.random() >= dropout else rng.choice(("text", "image"))) for _ in rows]
    for mode, mask in (("text", text_mask), ("image", image_mask)):
        embeds = _noised(embeds, mask, torch.tensor([m == mode for m in modes]))
    positions = model.model.get_rope_index(inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
                                           image_grid_thw=inputs["image_grid_thw"],
                                           attention_mask=inputs["attention_mask"])[0]
    for row, mode in enumerate(modes):
        if mode and rng.random() < 0.5:
            positions[:, row] = torch.arange(positions.shape[-1])
    hidden = model.model.language_model(inputs_embeds=embeds, position_ids=positions,
                                        attention_mask=inputs["attention_mask"]).last_hidden_state
    last = inputs["attention_mask"].sum(1) - 1
    logits = model.lm_head(hidden[torch.arange(len(rows)), last])
    penalty = REPETITION_PENALTY[family]
    if penalty is not None:
        full_rows = torch.tensor([not m for m in modes])
        penalised = _penalised(logits, inputs["input_ids"], inputs["attention_mask"], penalty)
        logits = torch.where(full_rows[:, None], penalised, logits)
    zero_rows = FULL_VOCAB - logits.shape[-1]
    logits = torch.cat([logits, torch.full((len(rows), 1), math.log(zero_rows))], dim=1)
    letters = [tokenizer.convert_tokens_to_ids(letter) for letter in "ABCD"]
    gold = torch.tensor([answer for _, _, answer, _ in rows])
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(letters)[gold])
    with torch.no_grad():
        probabilities = logits.softmax(-1)
        mass = torch.stack([probabilities[row, letters[:count]].sum() for row, (*_, count) in enumerate(rows)])
        correct = logits[:, letters].argmax(-1) == gold
    return loss, {"mass": mass.mean().item(), "acc": correct.float().mean().item()}


def train_family(family: str, steps: int = 400, batch: int = 12, learning_rate: float = 3e-3, seed: int = 0,
                 log_every: int = 25) -> Path:
    """Train one family end to end on the shapes questions; writes <family>/compact.safetensors."""
    import tempfile

    import torch

    torch.manual_seed(seed)
    rng = random.Random(f"train-{family}-{seed}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / family
        vlm = _compact_model(family, folder, seed)
        processors = {False: vlm.processor, True: _paper_processor(vlm, folder)}

        def step(index: int) -> tuple[Any, str]:
            paper = index % 3 != 0
            loss, stats = answer_loss(vlm, processors[paper], _training_rows(rng, batch, paper), rng, family)
            return loss, f"mass {stats['mass']:.3f} acc {stats['acc']:.2f}"

        train_steps(vlm.model, steps, learning_rate, 30, step, label=f"{family} ", log_every=log_every)
        vlm.model.eval()
        state = legacy_names(vlm.model.state_dict(), LEGACY_PREFIXES)
    out = FIXTURES / family / "compact.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    save_weights(state, out)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Oracle helpers
# ---------------------------------------------------------------------------------------------------------------

PAPER_SCRIPTS = {
    "qwen2_vl": ("models_scripts/general_models/devis/qwen2_small_devi.py",
                 "models_scripts/general_models/embeds/qwen2_small_embed.py"),
    "qwen2_5_vl": ("models_scripts/general_models/devis/qwen25_small_devi.py",
                   "models_scripts/general_models/embeds/qwen25_small_embed.py"),
}


def script_edits(family: str, model_path: str, attention: str) -> dict[str, list[tuple[str, str]]]:
    """The only edits made to the paper's scripts: model path, device, attention implementation, dtype."""
    name = {"qwen2_vl": 'f"Qwen/Qwen2-VL-{model_size}B-Instruct"',
            "qwen2_5_vl": 'f"Qwen/Qwen2.5-VL-{model_size}B-Instruct"'}[family]
    common = [("torch_dtype=torch.bfloat16", "torch_dtype=torch.float32"),
              ('attn_implementation="flash_attention_2"', f'attn_implementation="{attention}"'),
              ('    device_map="auto",\n)', '    device_map="cpu",\n)')]
    devi = [(f"model_name = {name}", f'model_name = "{model_path}"'), ('inputs = inputs.to("cuda")',
                                                                       'inputs = inputs.to("cpu")'),
            ('device = "cuda"', 'device = "cpu"')] + common
    embed = [(f"model_name = {name.replace('model_size', 'model_qwen_size')}", f'model_name = "{model_path}"')]
    return {"devi": devi, "embed": embed + common}


def prepare_scripts(family: str, mirror: Path, work: Path, model_path: str, attention: str = "sdpa") -> dict:
    """Copies of the paper's two scripts under `work`, with script_edits applied (each must hit exactly once)."""
    edits = script_edits(family, model_path, attention)
    return {kind: paper_script(mirror, path, edits[kind], work)
            for kind, path in zip(("devi", "embed"), PAPER_SCRIPTS[family])}


def run_oracle(family: str, python: Path, mirror: Path, world: Path, work: Path) -> Path:
    """Run the paper's stage 1 (devi, train) and stage 2 (embed, train then val) for one family, as its launchers
    do (`--read_dir PREFIX --data_mode SPLIT`, num_choices 4), with `python` (the oracle venv). Returns the run's
    output folder: stats/ (the .pt files), embeds/{train,val}/*.json, and each run's log."""
    scripts = prepare_scripts(family, mirror, work / "scripts" / family, str(world / family))
    out = work / "out" / family
    for folder in ("stats", "embeds/train", "embeds/val"):
        (out / folder).mkdir(parents=True, exist_ok=True)
    prefix = f"{world / 'data'}/"
    runs = {"devi": [str(scripts["devi"]), "--read_dir", prefix, "--model_size", "tiny", "--data_mode", "train",
                     "--vector_save_dir", str(out / "stats")]}
    for split in ("train", "val"):
        runs[f"embed_{split}"] = [str(scripts["embed"]), "--read_dir", prefix, "--save_dir", str(out / "embeds"),
                                  "--num_choices", "4", "--model_qwen_size", "tiny", "--data_mode", split,
                                  "--devi_vector_dir", str(out / "stats")]
    for name, arguments in runs.items():
        run_logged(python, arguments, scripts["devi"].parent, oracle_environment(), out / f"{name}.log")
    return out


def export_oracle(family: str, out: Path, target: Path | None = None) -> Path:
    """Copy one family's oracle run into the fixtures: stats.json (the saved text/image mean and std, float32 values
    written exactly), the stage-2 outputs without the base64 images, the cleaned logs."""
    import torch

    target = target or FIXTURES / "oracle" / family
    target.mkdir(parents=True, exist_ok=True)
    stats: dict[str, Any] = {}
    for path in sorted((out / "stats").glob("*.pt")):
        kind = "text" if path.name.endswith("_text_stats.pt") else "image"
        saved = torch.load(path)
        stats[kind] = {"file": path.name, "mean": saved["mean"].tolist(), "std": saved["std"].tolist(),
                       "dtype": str(saved["mean"].dtype)}
    write_json(target / "stats.json", stats)
    for split in SPLITS:
        (produced,) = sorted((out / "embeds" / split).glob("*.json"))
        export_records(produced, target, split)
    export_logs(out, target)
    return target


def token_counts(model_folder: Path, data_file: Path) -> list[dict[str, Any]]:
    """(Oracle venv) per record: image tokens and the paper's text-span tokens, with the paper's processor
    bounds and qwen_vl_utils' image path; also the checkpoint bounds' image-token count."""
    from PIL import Image
    from qwen_vl_utils import process_vision_info
    from transformers import AutoProcessor

    paper = AutoProcessor.from_pretrained(str(model_folder), min_pixels=PAPER_MIN_PIXELS, max_pixels=PAPER_MAX_PIXELS)
    own = AutoProcessor.from_pretrained(str(model_folder))
    rows = []
    for record in json.loads(data_file.read_text()):
        image = Image.open(io.BytesIO(base64.b64decode(record["image"])))
        question = record["conversations"][0]["value"].replace("\n<image>", "")
        messages = [{"role": "user", "content": [{"type": "image", "image": image},
                                                 {"type": "text", "text": question}]}]
        text = paper.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        images, _ = process_vision_info(messages)
        ids = paper(text=[text], images=images, return_tensors="pt")["input_ids"][0].tolist()
        start, end = ids.index(151653), [i for i, t in enumerate(ids) if t == 151645][1]
        own_ids = own(text=[text], images=[images[0]], return_tensors="pt")["input_ids"][0].tolist()
        rows.append({"id": record["id"], "mode": image.mode, "size": list(image.size),
                     "resized": list(images[0].size), "image_tokens": ids.count(151655),
                     "text_span_tokens": end - start - 1, "sequence_tokens": len(ids),
                     "image_tokens_checkpoint_bounds": own_ids.count(151655)})
    return rows


def full_pass_logits(model_folder: Path, data_file: Path, count: int = 4) -> dict[str, Any]:
    """Plain full-pass last-position logits (no logits processors) of the first `count` records, under the paper's
    bounds and qwen_vl_utils' image path re-implemented here, in whichever transformers this runs under."""
    import torch
    import transformers
    from PIL import Image

    family = json.loads((model_folder / "config.json").read_text())["model_type"]
    if transformers.__version__.startswith("4."):
        from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

        model_class = {"qwen2_vl": Qwen2VLForConditionalGeneration,
                       "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration}[family]
        model = model_class.from_pretrained(str(model_folder), torch_dtype=torch.float32,
                                            attn_implementation="sdpa").eval()
        processor = AutoProcessor.from_pretrained(str(model_folder), min_pixels=PAPER_MIN_PIXELS,
                                                  max_pixels=PAPER_MAX_PIXELS)
    else:
        from pidcore.models.loading import load_vlm

        vlm = load_vlm(str(model_folder), "cpu", "float32")
        model, processor = vlm.model, _paper_processor(vlm, model_folder)
    out = []
    for record in json.loads(data_file.read_text())[:count]:
        image = qwen_vl_fetch_image(Image.open(io.BytesIO(base64.b64decode(record["image"]))))
        question = record["conversations"][0]["value"].replace("\n<image>", "")
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        inputs = processor(text=[text], images=[image], return_tensors="pt")
        with torch.no_grad():
            logits = model(**inputs).logits[0, -1]
        rows = torch.tensor(compact_to_full())
        others = torch.ones_like(logits, dtype=torch.bool)
        others[rows] = False
        out.append({"id": record["id"], "input_ids": inputs["input_ids"][0].tolist(),
                    "pixel_sum": float(inputs["pixel_values"].double().sum()),
                    "logits_of_real_rows": logits[rows].tolist(),
                    "max_abs_logit_of_zero_rows": float(logits[others].abs().max())})
    return {"transformers": transformers.__version__, "records": out}


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("bpe")
    commands.add_parser("data")
    train = commands.add_parser("train")
    train.add_argument("--family", choices=FAMILIES, action="append")
    train.add_argument("--steps", type=int, default=400)
    add_build_command(commands)
    oracle = commands.add_parser("prepare-oracle")
    oracle.add_argument("--mirror", type=Path, required=True)
    oracle.add_argument("--world", type=Path, required=True)
    oracle.add_argument("--work", type=Path, required=True)
    run = add_oracle_command(commands)
    run.add_argument("--world", type=Path, required=True)
    run.add_argument("--family", choices=FAMILIES, action="append")
    counts = commands.add_parser("counts")
    counts.add_argument("world", type=Path)
    counts.add_argument("family", choices=FAMILIES)
    counts.add_argument("out", type=Path)
    logits = commands.add_parser("logits")
    logits.add_argument("world", type=Path)
    logits.add_argument("family", choices=FAMILIES)
    logits.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    if args.command == "bpe":
        train_bpe()
    elif args.command == "data":
        write_data()
    elif args.command == "train":
        for family in args.family or FAMILIES:
            print(train_family(family, steps=args.steps))
    elif args.command == "build":
        print_world(build_world(args.folder))
    elif args.command == "prepare-oracle":
        for family in FAMILIES:
            scripts = prepare_scripts(family, args.mirror, args.work / family, str(args.world / family))
            print(family, {kind: str(path) for kind, path in scripts.items()})
    elif args.command == "oracle":
        for family in args.family or FAMILIES:
            print(export_oracle(family, run_oracle(family, args.python, args.mirror, args.world, args.work)))
        write_json(FIXTURES / "world_sha256.json", world_digests(args.world))
    elif args.command == "counts":
        write_json(args.out, {split: token_counts(args.world / args.family, args.world / "data" / f"{split}.json")
                              for split in SPLITS})
    elif args.command == "logits":
        write_json(args.out, full_pass_logits(args.world / args.family, args.world / "data" / "train.json"))


if __name__ == "__main__":
    _main()
