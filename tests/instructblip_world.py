"""A small world for checking `pidcore profile --probes published` against the paper's InstructBLIP stage-2 script.

The paper (RiiShin/pid-lvlm-analysis, commit 950ddb7) runs InstructBLIP with `embeds/inblip_embed.py`, which
hard-codes the image token id 32001 (`<image>`, placed by the processor before the prompt's <s>) and reads the
letters as `tokenizer.encode(letter)`. This module builds a trained tiny InstructBLIP with that id, so the script
runs on it as published:

- the language model's tokenizer is a locally trained 400-token byte-level BPE (<unk>, <s>, </s> at 0..2, as
  Vicuna's), then unreachable filler entries, then `[PAD]` 32000 and `<image>` 32001; the decoder has 32002 rows,
  every row past the 402 real ones exactly zero in the input embedding and in lm_head (so its logit is exactly 0);
- the Q-Former's tokenizer is a locally trained BERT-style WordPiece (lower-casing, [CLS] ... [SEP]);
- the weights are committed in a compact layout (402 decoder rows) and expanded here.

The data are the Qwen world's (tests/fixtures/paper_probes/data: the paper's JSON layout, 24 + 12 records).
`build_world(folder)` expands the fixtures (tests/fixtures/paper_probes_instructblip) into a model folder that
transformers 4.51.3 (the paper's pin) and `pidcore.models.loading.load_vlm` (5.x) both load, plus the data files.

Run once (already done; see the fixtures' README), from the repository root:

    python tests/instructblip_world.py tokenizers   # llm_vocab.json, llm_merges.txt, qformer_vocab.txt
    python tests/instructblip_world.py train        # compact.safetensors (1500 steps, about a minute on 2 CPU cores)
    python tests/instructblip_world.py oracle --python /tmp/oracle-venv/bin/python \\
        --mirror /work/.mirror/RiiShin+pid-lvlm-analysis/repo --work /tmp/oracle-blip --pillow /tmp/pillow-13
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "paper_probes_instructblip"
DATA = HERE / "fixtures" / "paper_probes" / "data"
DATA_FILES = ("train.json", "val.json")
LLM_SPECIALS = ("<unk>", "<s>", "</s>")
BPE_SIZE = 400
PAD_ID, IMAGE_ID = 32000, 32001
FULL_VOCAB = 32002
QFORMER_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
QFORMER_TRAINED_SIZE = 300  # the trainer's cap; the shapes texts give 215 word pieces
QUERY_TOKENS = 32
IMAGE_SIZE = 56
PAPER_COMMIT = "950ddb7"
PAPER_SCRIPT = "models_scripts/general_models/embeds/inblip_embed.py"
MODEL_NAME = "instructblip"
# The weights with one row per decoder token (the compact layout keeps the 402 real ones).
DECODER_ROWS = ("language_model.model.embed_tokens.weight", "language_model.lm_head.weight")


# ---------------------------------------------------------------------------------------------------------------
# Tokenizers
# ---------------------------------------------------------------------------------------------------------------

def _corpus() -> list[str]:
    """The texts both tokenizers are trained on: the Qwen world's (the shapes questions and the instruction)."""
    from tests.paper_probe_world import bpe_corpus

    return bpe_corpus()


def train_tokenizers(folder: Path = FIXTURES) -> None:
    """Train the LLM's byte-level BPE and the Q-Former's WordPiece; writes their vocabularies (and merges)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(_corpus(), trainers.BpeTrainer(
        vocab_size=BPE_SIZE, special_tokens=list(LLM_SPECIALS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    model = json.loads(bpe.to_str())["model"]
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "llm_vocab.json", model["vocab"])
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    (folder / "llm_merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(_corpus(), trainers.WordPieceTrainer(
        vocab_size=QFORMER_TRAINED_SIZE, special_tokens=list(QFORMER_SPECIALS), show_progress=False))
    vocab = json.loads(wordpiece.to_str())["model"]["vocab"]
    (folder / "qformer_vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n", encoding="utf-8")


def _added(token: str, index: int) -> dict[str, Any]:
    """A special token's entry in tokenizer.json's added_tokens."""
    return {"id": index, "content": token, "single_word": False, "lstrip": False, "rstrip": False,
            "normalized": False, "special": True}


def llm_special_ids(compact: bool) -> dict[str, int]:
    """The decoder's special tokens: Vicuna's three at 0..2, then [PAD] and <image> (32000, 32001, or right after
    the BPE in the compact layout)."""
    pad = BPE_SIZE if compact else PAD_ID
    return {**{token: index for index, token in enumerate(LLM_SPECIALS)}, "[PAD]": pad, "<image>": pad + 1}


def compact_to_full() -> list[int]:
    """For each compact decoder row (the BPE with its three specials, then [PAD] and <image>), its full id."""
    return list(range(BPE_SIZE)) + [PAD_ID, IMAGE_ID]


def llm_tokenizer_json(compact: bool) -> dict[str, Any]:
    """The decoder's tokenizer.json: the trained BPE, fillers up to 32000 (full layout; no merge makes them),
    [PAD] and <image> as added tokens, <s> prepended to every text as Llama's tokenizer does."""
    vocab = json.loads((FIXTURES / "llm_vocab.json").read_text(encoding="utf-8"))
    merges = (FIXTURES / "llm_merges.txt").read_text(encoding="utf-8").splitlines()
    if not compact:
        vocab = {**vocab, **{f"<filler_{index}>": index for index in range(BPE_SIZE, PAD_ID)}}
    ids = llm_special_ids(compact)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [_added(token, index) for token, index in ids.items()],
            "normalizer": None, "pre_tokenizer": byte_level, "decoder": byte_level,
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}}],
                               "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "<s>", "type_id": 1}},
                                        {"Sequence": {"id": "B", "type_id": 1}}],
                               "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
            "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>", "continuing_subword_prefix": None,
                      "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                      "vocab": vocab, "merges": [line for line in merges if line]}}


def qformer_vocab() -> list[str]:
    """The Q-Former's word pieces in id order."""
    return (FIXTURES / "qformer_vocab.txt").read_text(encoding="utf-8").splitlines()


def qformer_tokenizer_json() -> dict[str, Any]:
    """The Q-Former's tokenizer.json: BERT's normaliser, pre-tokenizer and [CLS] $A [SEP], the trained WordPiece."""
    vocab = {token: index for index, token in enumerate(qformer_vocab())}
    marks = {token: {"id": token, "ids": [vocab[token]], "tokens": [token]} for token in ("[CLS]", "[SEP]")}
    return {"version": "1.0", "truncation": None, "padding": None,
            "added_tokens": [_added(token, vocab[token]) for token in QFORMER_SPECIALS],
            "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                           "strip_accents": None, "lowercase": True},
            "pre_tokenizer": {"type": "BertPreTokenizer"},
            "post_processor": {"type": "TemplateProcessing",
                               "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                          {"Sequence": {"id": "A", "type_id": 0}},
                                          {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                               "pair": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}},
                                        {"Sequence": {"id": "A", "type_id": 0}},
                                        {"SpecialToken": {"id": "[SEP]", "type_id": 0}},
                                        {"Sequence": {"id": "B", "type_id": 1}},
                                        {"SpecialToken": {"id": "[SEP]", "type_id": 1}}],
                               "special_tokens": marks},
            "decoder": {"type": "WordPiece", "prefix": "##", "cleanup": True},
            "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                      "max_input_chars_per_word": 100, "vocab": vocab}}


# ---------------------------------------------------------------------------------------------------------------
# Model folder
# ---------------------------------------------------------------------------------------------------------------

def model_config(compact: bool = False) -> dict[str, Any]:
    """config.json: InstructBLIP's nested layout (4.51.3 and 5.x read it), small widths, the real Q-Former's 512
    positions and 32 query tokens. Changing it invalidates the committed weights and the oracle's outputs."""
    ids = llm_special_ids(compact)
    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": IMAGE_SIZE, "patch_size": 14, "hidden_act": "gelu", "layer_norm_eps": 1e-6,
              "model_type": "instructblip_vision_model"}
    qformer = {"vocab_size": len(qformer_vocab()), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
               "num_attention_heads": 2, "max_position_embeddings": 512, "cross_attention_frequency": 2,
               "encoder_hidden_size": 32, "pad_token_id": 0, "model_type": "instructblip_qformer"}
    text = {"model_type": "llama", "vocab_size": BPE_SIZE + 2 if compact else FULL_VOCAB, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4,
            "max_position_embeddings": 2048, "rms_norm_eps": 1e-6, "tie_word_embeddings": False,
            "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"], "pad_token_id": ids["[PAD]"],
            "torch_dtype": "float32"}
    return {"architectures": ["InstructBlipForConditionalGeneration"], "model_type": "instructblip",
            "vision_config": vision, "qformer_config": qformer, "text_config": text,
            "num_query_tokens": QUERY_TOKENS, "image_token_index": ids["<image>"], "initializer_factor": 1.0,
            "initializer_range": 0.02, "tie_word_embeddings": False, "torch_dtype": "float32",
            "transformers_version": "4.51.3", "use_decoder_only_language_model": True}


def _tokenizer_config(compact: bool) -> dict[str, Any]:
    """The decoder's tokenizer_config.json, with a generic fast-tokenizer class both transformers versions load."""
    decoder = {str(index): {key: value for key, value in _added(token, index).items() if key != "id"}
               for token, index in llm_special_ids(compact).items()}
    return {"added_tokens_decoder": decoder, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "pad_token": "[PAD]", "clean_up_tokenization_spaces": False, "model_max_length": 2048,
            "padding_side": "right", "tokenizer_class": "PreTrainedTokenizerFast", "processor_class":
                "InstructBlipProcessor"}


def _qformer_tokenizer_config() -> dict[str, Any]:
    """The Q-Former's tokenizer_config.json (BERT's special tokens, a generic fast-tokenizer class)."""
    return {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
            "mask_token": "[MASK]", "do_lower_case": True, "model_max_length": 512,
            "tokenizer_class": "PreTrainedTokenizerFast", "processor_class": "InstructBlipProcessor"}


def preprocessor_config() -> dict[str, Any]:
    """BLIP's image processor as the real checkpoint's (bicubic resize, CLIP mean and std), at 56 x 56."""
    return {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "BlipImageProcessor", "processor_class": "InstructBlipProcessor",
            "resample": 3, "rescale_factor": 1 / 255, "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}}


def _write_json(path: Path, value: Any) -> None:
    """Indented UTF-8 JSON with a final newline."""
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_model_folder(folder: Path, weights: dict, compact: bool = False) -> Path:
    """A loadable model folder: config, weights, both tokenizers, image processor and processor configs."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", model_config(compact))
    ids = llm_special_ids(compact)
    _write_json(folder / "generation_config.json", {"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"],
                                                    "pad_token_id": ids["[PAD]"], "transformers_version": "4.51.3"})
    _write_json(folder / "preprocessor_config.json", preprocessor_config())
    _write_json(folder / "processor_config.json", {"num_query_tokens": QUERY_TOKENS,
                                                   "processor_class": "InstructBlipProcessor"})
    _write_json(folder / "tokenizer.json", llm_tokenizer_json(compact))
    _write_json(folder / "tokenizer_config.json", _tokenizer_config(compact))
    _write_json(folder / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                                     "pad_token": "[PAD]"})
    qformer = folder / "qformer_tokenizer"
    qformer.mkdir(exist_ok=True)
    _write_json(qformer / "tokenizer.json", qformer_tokenizer_json())
    _write_json(qformer / "tokenizer_config.json", _qformer_tokenizer_config())
    save_file({name: tensor.contiguous() for name, tensor in sorted(weights.items())},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


def expand_weights(compact: dict) -> dict:
    """Full-vocabulary weights: each compact decoder row at its real id, every other row exactly zero."""
    import torch

    full = dict(compact)
    rows = torch.tensor(compact_to_full())
    for name in DECODER_ROWS:
        table = compact[name].new_zeros((FULL_VOCAB, compact[name].shape[1]))
        table[rows] = compact[name]
        full[name] = table
    return full


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
    digests = {}
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        digest = hashlib.sha256()
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            for name, tensor in sorted(load_file(str(path)).items()):
                digest.update(name.encode() + str(tuple(tensor.shape)).encode() + tensor.numpy().tobytes())
        else:
            digest.update(path.read_bytes())
        digests[str(path.relative_to(root))] = digest.hexdigest()
    return digests


# ---------------------------------------------------------------------------------------------------------------
# Training (run once, transformers 5.x, compact layout)
# ---------------------------------------------------------------------------------------------------------------

def _training_rows(rng: random.Random, size: int) -> list[tuple[Any, str, int, int]]:
    """(RGB image, question text as the script gives it, gold index, option count) rows of shapes questions."""
    from tests.paper_probe_world import SIZES, draw_question, human_text, render_image

    rows = []
    for _ in range(size):
        colour, question, options, answer = draw_question(rng, three_options=rng.random() < 0.2)
        alpha = None if rng.random() < 0.8 else rng.choice((255, 128))
        image = render_image(colour, random.Random(rng.random()), rng.choice(SIZES), alpha).convert("RGB")
        rows.append((image, human_text(question, options).replace("\n<image>", ""), answer, len(options)))
    return rows


def answer_loss(vlm, rows: list, rng: random.Random, dropout: float = 0.4):
    """Cross-entropy of the gold letter at the last position over the full vocabulary (the 31600 zero rows as one
    constant logit log(31600)), with the image rows or the text after <s> replaced by N(batch mean, batch std) noise
    in `dropout` of the rows, as the masked probes see them."""
    import torch

    processor, model = vlm.processor, vlm.model
    inputs = processor(images=[row[0] for row in rows], text=[row[1] for row in rows], return_tensors="pt",
                       padding=True)
    features = model.get_image_features(inputs["pixel_values"], inputs["qformer_input_ids"],
                                        inputs["qformer_attention_mask"]).pooler_output
    ids = inputs["input_ids"]
    embeds = model.get_input_embeddings()(ids)
    image = ids == llm_special_ids(True)["<image>"]
    embeds = embeds.masked_scatter(image.unsqueeze(-1), features.to(embeds.dtype))
    text = inputs["attention_mask"].bool() & ~image & (ids != llm_special_ids(True)["<s>"])
    for row in range(len(rows)):
        draw = rng.random()
        if draw < dropout / 2:
            embeds = _noised(embeds, row, image[row])
        elif draw < dropout:
            embeds = _noised(embeds, row, text[row])
    hidden = model.language_model.model(inputs_embeds=embeds, attention_mask=inputs["attention_mask"]).last_hidden_state
    last = inputs["attention_mask"].sum(1) - 1
    logits = model.language_model.lm_head(hidden[torch.arange(len(rows)), last])
    constant = logits.new_full((len(rows), 1), math.log(FULL_VOCAB - BPE_SIZE - 2))
    letters = [vlm.processor.tokenizer.encode(letter, add_special_tokens=False)[0] for letter in "ABCD"]
    gold = torch.tensor([letters[row[2]] for row in rows])
    loss = torch.nn.functional.cross_entropy(torch.cat([logits, constant], 1), gold)
    accuracy = (logits[:, letters].argmax(-1) == torch.tensor([row[2] for row in rows])).float().mean()
    return loss, accuracy.item()


def _noised(embeds, row: int, mask):
    """`embeds` with the masked positions of one row replaced by noise of the batch's per-dimension statistics."""
    import torch

    rows = embeds[row][mask]
    noise = torch.randn_like(rows) * rows.detach().std(0) + rows.detach().mean(0)
    out = embeds.clone()
    out[row, mask] = noise
    return out


def train(steps: int = 1500, batch: int = 12, learning_rate: float = 3e-3, seed: int = 0) -> Path:
    """Train the compact model on shapes questions; writes compact.safetensors."""
    import tempfile
    import time

    import torch
    from safetensors.torch import save_file
    from transformers import InstructBlipConfig, InstructBlipForConditionalGeneration

    from pidcore.models.loading import load_vlm

    torch.manual_seed(seed)
    rng = random.Random(f"train-instructblip-{seed}")
    with tempfile.TemporaryDirectory() as temporary:
        folder = Path(temporary) / MODEL_NAME
        model = InstructBlipForConditionalGeneration(InstructBlipConfig(**model_config(compact=True)))
        write_model_folder(folder, model.state_dict(), compact=True)
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
        state = {name: tensor.detach() for name, tensor in vlm.model.state_dict().items()}
    out = FIXTURES / "compact.safetensors"
    save_file({name: tensor.contiguous() for name, tensor in sorted(state.items())}, str(out),
              metadata={"format": "pt"})
    return out


# ---------------------------------------------------------------------------------------------------------------
# Oracle
# ---------------------------------------------------------------------------------------------------------------

def script_edits(model_path: str) -> list[tuple[str, str]]:
    """The only edits made to inblip_embed.py: the model path, and a re-seed after the Q-Former extension.

    On the paper's GPUs the noise is drawn with the CUDA generator, which the extension's nn.Embedding(1024, d)
    (initialised on the CPU, then overwritten) leaves untouched; on a CPU the same global generator serves both, so
    the copy re-seeds it as the script's first line did, and its first draw is where the GPU stream's is."""
    extend = "extend_qformer_pos_embeds(model, new_len)\n"
    return [('model_name = f"Salesforce/instructblip-vicuna-7b"', f'model_name = "{model_path}"'),
            (extend, extend + "torch.manual_seed(42)\n")]


def prepare_script(mirror: Path, work: Path, model_path: str) -> Path:
    """A copy of the paper's script under `work` with script_edits applied (each must hit exactly once)."""
    text = subprocess.run(["git", "-C", str(mirror), "show", f"{PAPER_COMMIT}:{PAPER_SCRIPT}"], check=True,
                          capture_output=True, text=True).stdout
    for old, new in script_edits(model_path):
        if text.count(old) != 1:
            raise RuntimeError(f"{PAPER_SCRIPT}: {old!r} occurs {text.count(old)} times")
        text = text.replace(old, new)
    work.mkdir(parents=True, exist_ok=True)
    out = work / Path(PAPER_SCRIPT).name
    out.write_text(text, encoding="utf-8")
    return out


def pidcore_statistics(world: dict[str, Path], folder: Path) -> dict[str, Any]:
    """The statistics `profile --probes published` computes (the paper published no InstructBLIP stage 1): image and
    text mean and std, as stored with the run."""
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
    """The .pt files the script loads ({model_name with / as _}_train_{text,image}_stats.pt, float32 mean and std)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    prefix = model_path.replace("/", "_")
    for kind in ("text", "image"):
        torch.save({moment: torch.tensor(stats[kind][moment], dtype=torch.float32) for moment in ("mean", "std")},
                   folder / f"{prefix}_train_{kind}_stats.pt")


def run_oracle(python: Path, mirror: Path, work: Path, pillow: Path | None = None) -> Path:
    """Build the world under `work`, write pidcore's statistics where the script reads them, and run the script
    (train, then val) with `python` (the oracle venv), as the paper's launchers do, with `pillow` (a folder holding
    another Pillow) first on its path; returns the output folder."""
    import os

    world = build_world(work / "world")
    model_path = str(world["model"])
    script = prepare_script(mirror, work / "scripts", model_path)
    out = work / "out"
    stats = pidcore_statistics(world, work)
    write_statistics(stats, out / "stats", model_path)
    _write_json(out / "stats.json", stats)
    environment = {**os.environ, "OMP_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1",
                   "TRANSFORMERS_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    if pillow is not None:
        environment["PYTHONPATH"] = str(pillow)
    for split in ("train", "val"):
        (out / "embeds" / split).mkdir(parents=True, exist_ok=True)
        arguments = [str(script), "--read_dir", f"{world['data']}/", "--save_dir", str(out / "embeds"),
                     "--num_choices", "4", "--data_mode", split, "--devi_vector_dir", str(out / "stats")]
        with open(out / f"embed_{split}.log", "w", encoding="utf-8") as log:
            subprocess.run([str(python), "-u", *arguments], cwd=script.parent, env=environment, stdout=log,
                           stderr=subprocess.STDOUT, check=True)
    _write_json(FIXTURES / "world_sha256.json", world_digests(work / "world"))
    return out


def _clean_log(text: str) -> str:
    """A log as a terminal would leave it: each carriage-return-overwritten line (tqdm) reduced to its last state."""
    return "\n".join(line.rstrip("\r").split("\r")[-1] for line in text.split("\n"))


def export_oracle(out: Path, target: Path = FIXTURES / "oracle") -> Path:
    """Copy the oracle run into the fixtures: the statistics it was given, its records verbatim but for the base64
    images, the cleaned logs."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "stats.json", target / "stats.json")
    for split in ("train", "val"):
        records = json.loads((out / "embeds" / split / "inblip_7b.json").read_text())
        for record in records:
            record.pop("image", None)
        _write_json(target / f"{split}.json", {"file": f"{split}/inblip_7b.json", "records": records})
        log = (out / f"embed_{split}.log").read_text(encoding="utf-8")
        (target / f"embed_{split}.log").write_text(_clean_log(log), encoding="utf-8")
    return target


def _main(argv: list[str] | None = None) -> None:
    """The one-off commands (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tokenizers")
    training = commands.add_parser("train")
    training.add_argument("--steps", type=int, default=1500)
    build = commands.add_parser("build")
    build.add_argument("folder", type=Path)
    oracle = commands.add_parser("oracle")
    oracle.add_argument("--python", type=Path, required=True, help="the oracle venv's python")
    oracle.add_argument("--mirror", type=Path, required=True)
    oracle.add_argument("--work", type=Path, required=True)
    oracle.add_argument("--pillow", type=Path, help="a folder with the Pillow to use instead of the venv's")
    args = parser.parse_args(argv)
    if args.command == "tokenizers":
        train_tokenizers()
    elif args.command == "train":
        print(train(steps=args.steps))
    elif args.command == "build":
        print(json.dumps({key: str(value) for key, value in build_world(args.folder).items()}, indent=2))
    elif args.command == "oracle":
        print(export_oracle(run_oracle(args.python, args.mirror, args.work, args.pillow)))


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    _main()
