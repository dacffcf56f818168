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
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as `python tests/instructblip_world.py`: `tests` and `pidcore` from the repository
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.parity_common import (
    CLIP_MEAN, CLIP_STD, SPLITS, add_build_command, add_oracle_command, added_token, added_tokens_decoder, copy_data,
    expanded_table, export_logs, export_records, file_digests as world_digests, letter_loss, oracle_environment,
    paper_script, pidcore_statistics, prepend_template, print_world, run_logged, save_weights, train_steps, write_json,
    write_statistics,
)

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures" / "paper_probes_instructblip"
DATA = HERE / "fixtures" / "paper_probes" / "data"
LLM_SPECIALS = ("<unk>", "<s>", "</s>")
BPE_SIZE = 400
PAD_ID, IMAGE_ID = 32000, 32001
FULL_VOCAB = 32002
QFORMER_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
QFORMER_TRAINED_SIZE = 300  # the trainer's cap; the shapes texts give 215 word pieces
QUERY_TOKENS = 32
IMAGE_SIZE = 56
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
    write_json(folder / "llm_vocab.json", model["vocab"])
    merges = [" ".join(pair) if isinstance(pair, list) else pair for pair in model["merges"]]
    (folder / "llm_merges.txt").write_text("\n".join(merges) + "\n", encoding="utf-8")
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    wordpiece.train_from_iterator(_corpus(), trainers.WordPieceTrainer(
        vocab_size=QFORMER_TRAINED_SIZE, special_tokens=list(QFORMER_SPECIALS), show_progress=False))
    vocab = json.loads(wordpiece.to_str())["model"]["vocab"]
    (folder / "qformer_vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n", encoding="utf-8")


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
            "added_tokens": [added_token(token, index) for token, index in ids.items()],
            "normalizer": None, "pre_tokenizer": byte_level, "decoder": byte_level,
            "post_processor": prepend_template("<s>", ids["<s>"]),
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
            "added_tokens": [added_token(token, vocab[token]) for token in QFORMER_SPECIALS],
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
    return {"added_tokens_decoder": added_tokens_decoder(llm_special_ids(compact)), "bos_token": "<s>",
            "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "[PAD]", "clean_up_tokenization_spaces": False,
            "model_max_length": 2048, "padding_side": "right", "tokenizer_class": "PreTrainedTokenizerFast",
            "processor_class": "InstructBlipProcessor"}


def _qformer_tokenizer_config() -> dict[str, Any]:
    """The Q-Former's tokenizer_config.json (BERT's special tokens, a generic fast-tokenizer class)."""
    return {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
            "mask_token": "[MASK]", "do_lower_case": True, "model_max_length": 512,
            "tokenizer_class": "PreTrainedTokenizerFast", "processor_class": "InstructBlipProcessor"}


def preprocessor_config() -> dict[str, Any]:
    """BLIP's image processor as the real checkpoint's (bicubic resize, CLIP mean and std), at 56 x 56."""
    return {"do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
            "image_mean": CLIP_MEAN, "image_std": CLIP_STD, "image_processor_type": "BlipImageProcessor",
            "processor_class": "InstructBlipProcessor", "resample": 3, "rescale_factor": 1 / 255,
            "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}}


def write_model_folder(folder: Path, weights: dict, compact: bool = False) -> Path:
    """A loadable model folder: config, weights, both tokenizers, image processor and processor configs."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / "config.json", model_config(compact))
    ids = llm_special_ids(compact)
    write_json(folder / "generation_config.json", {"bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"],
                                                   "pad_token_id": ids["[PAD]"], "transformers_version": "4.51.3"})
    write_json(folder / "preprocessor_config.json", preprocessor_config())
    write_json(folder / "processor_config.json", {"num_query_tokens": QUERY_TOKENS,
                                                  "processor_class": "InstructBlipProcessor"})
    write_json(folder / "tokenizer.json", llm_tokenizer_json(compact))
    write_json(folder / "tokenizer_config.json", _tokenizer_config(compact))
    write_json(folder / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
                                                    "pad_token": "[PAD]"})
    qformer = folder / "qformer_tokenizer"
    qformer.mkdir(exist_ok=True)
    write_json(qformer / "tokenizer.json", qformer_tokenizer_json())
    write_json(qformer / "tokenizer_config.json", _qformer_tokenizer_config())
    save_weights(weights, folder / "model.safetensors")
    return folder


def expand_weights(compact: dict) -> dict:
    """Full-vocabulary weights: each compact decoder row at its real id, every other row exactly zero."""
    full = dict(compact)
    for name in DECODER_ROWS:
        full[name] = expanded_table(compact[name], FULL_VOCAB, compact_to_full())
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

def _training_rows(rng: random.Random, size: int) -> list[tuple[Any, str, int, int]]:
    """(RGB image, question text as the script gives it, gold index, option count) rows of shapes questions."""
    from tests.paper_probe_world import SIZES, training_row

    rows = [training_row(rng, 0.8, SIZES) for _ in range(size)]
    return [(image.convert("RGB"), text, answer, count) for image, text, answer, count in rows]


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
    return letter_loss(logits, [row[2] for row in rows], processor.tokenizer, FULL_VOCAB - BPE_SIZE - 2)


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

    import torch
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

        def step(_: int) -> tuple[Any, str]:
            loss, accuracy = answer_loss(vlm, _training_rows(rng, batch), rng)
            return loss, f"acc {accuracy:.2f}"

        train_steps(vlm.model, steps, learning_rate, 20, step)
        state = {name: tensor.detach() for name, tensor in vlm.model.state_dict().items()}
    out = FIXTURES / "compact.safetensors"
    save_weights(state, out)
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


def run_oracle(python: Path, mirror: Path, work: Path, pillow: Path | None = None) -> Path:
    """Build the world under `work`, write pidcore's statistics where the script reads them, and run the script
    (train, then val) with `python` (the oracle venv), as the paper's launchers do, with `pillow` (a folder holding
    another Pillow) first on its path; returns the output folder. The paper published no InstructBLIP stage 1, so
    the script is given the statistics pidcore computes."""
    world = build_world(work / "world")
    model_path = str(world["model"])
    script = paper_script(mirror, PAPER_SCRIPT, script_edits(model_path), work / "scripts")
    out = work / "out"
    stats = pidcore_statistics(world, work)
    write_statistics(stats, out / "stats", model_path)
    write_json(out / "stats.json", stats)
    environment = oracle_environment(None if pillow is None else str(pillow))
    for split in SPLITS:
        (out / "embeds" / split).mkdir(parents=True, exist_ok=True)
        arguments = [str(script), "--read_dir", f"{world['data']}/", "--save_dir", str(out / "embeds"),
                     "--num_choices", "4", "--data_mode", split, "--devi_vector_dir", str(out / "stats")]
        run_logged(python, arguments, script.parent, environment, out / f"embed_{split}.log")
    write_json(FIXTURES / "world_sha256.json", world_digests(work / "world"))
    return out


def export_oracle(out: Path, target: Path = FIXTURES / "oracle") -> Path:
    """Copy the oracle run into the fixtures: the statistics it was given, its records verbatim but for the base64
    images, the cleaned logs."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(out / "stats.json", target / "stats.json")
    for split in SPLITS:
        export_records(out / "embeds" / split / "inblip_7b.json", target, split)
    export_logs(out, target)
    return target


def _main(argv: list[str] | None = None) -> None:
    """The one-off commands (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tokenizers")
    training = commands.add_parser("train")
    training.add_argument("--steps", type=int, default=1500)
    add_build_command(commands)
    oracle = add_oracle_command(commands)
    oracle.add_argument("--pillow", type=Path, help="a folder with the Pillow to use instead of the venv's")
    args = parser.parse_args(argv)
    if args.command == "tokenizers":
        train_tokenizers()
    elif args.command == "train":
        print(train(steps=args.steps))
    elif args.command == "build":
        print_world(build_world(args.folder))
    elif args.command == "oracle":
        print(export_oracle(run_oracle(args.python, args.mirror, args.work, args.pillow)))


if __name__ == "__main__":
    _main()
