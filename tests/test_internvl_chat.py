"""The internvl_chat (InternVL2.5 remote code) to native `internvl` converter, checked against the ORIGINAL code's
outputs: tiny checkpoints that OpenGVLab's InternVLChatModel built and ran, with its logits and its tokenizers' ids
(tests/fixtures/internvl_chat/README.md says how they were made)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from pidcore.models.internlm2_tokenizer import UnsupportedTokenizer
from pidcore.models.internvl_chat import ConversionError, convert_internvl_chat, source_tokenizer
from pidcore.models.loading import LoadedVLM, load_vlm

FIXTURES = Path(__file__).parent / "fixtures" / "internvl_chat"
LLM_KINDS = ("qwen2", "internlm2")


@pytest.fixture(scope="module", params=LLM_KINDS)
def converted(request, tmp_path_factory) -> tuple[str, LoadedVLM]:
    """Each tiny original checkpoint, converted and loaded through pidcore's loader in float32."""
    target = convert_internvl_chat(FIXTURES / request.param, tmp_path_factory.mktemp(request.param) / "native")
    return request.param, load_vlm(str(target), device="cpu", dtype="float32")


def _oracle(kind: str) -> dict[str, torch.Tensor]:
    """The original model's inputs and float32 logits on them."""
    return load_file(FIXTURES / kind / "oracle_logits.safetensors")


def test_the_converted_model_gives_the_original_logits(converted):
    kind, vlm = converted
    oracle = _oracle(kind)
    assert vlm.adapter.family == "internvl"
    with torch.no_grad():
        logits = vlm.model(input_ids=oracle["input_ids"], pixel_values=oracle["pixel_values"].float()).logits
    torch.testing.assert_close(logits, oracle["logits"], atol=1e-5, rtol=0)


def test_select_layer_becomes_the_vision_feature_layer(converted):
    kind, vlm = converted
    oracle = _oracle(kind)
    with torch.no_grad():
        logits = vlm.model(input_ids=oracle["input_ids"], pixel_values=oracle["pixel_values"].float(),
                           vision_feature_layer=-2).logits
    torch.testing.assert_close(logits, oracle["logits_select_layer_-2"], atol=1e-5, rtol=0)


def test_the_converted_tokenizer_gives_the_original_ids(converted):
    kind, vlm = converted
    tokenizer = vlm.processor.tokenizer
    expected = json.loads((FIXTURES / kind / "oracle_token_ids.json").read_text())
    assert {text: tokenizer(text).input_ids for text in expected} == expected
    assert tokenizer.convert_tokens_to_ids("<IMG_CONTEXT>") == vlm.model.config.image_token_id


def test_an_internlm2_tokenizer_with_a_dummy_prefix_gives_the_original_ids():
    folder = FIXTURES / "internlm2_dummy_prefix_tokenizer"
    tokenizer = source_tokenizer(folder, "internlm2")
    expected = json.loads((folder / "oracle_token_ids.json").read_text())
    assert {text: tokenizer(text).input_ids for text in expected} == expected


def test_the_processor_builds_the_original_prompt_and_image_tokens(converted):
    kind, vlm = converted
    oracle = json.loads((FIXTURES / "oracle_chat_prompt.json").read_text())
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": oracle["question"]}]}]
    prompt = vlm.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert prompt.replace("<IMG_CONTEXT>", "<image>") == oracle["prompt"]
    inputs = vlm.processor(text="<IMG_CONTEXT>", images=[Image.new("RGB", (56, 56), "red")], return_tensors="pt")
    tokenizer = vlm.processor.tokenizer
    image_tokens = tokenizer.convert_tokens_to_ids(["<img>", *["<IMG_CONTEXT>"] * 4, "</img>"])
    assert inputs["input_ids"][0, -6:].tolist() == image_tokens
    assert tuple(inputs["pixel_values"].shape) == (1, 3, 56, 56)


def test_images_are_cut_into_as_many_tiles_as_the_original_cuts(converted):
    """The original dynamic_preprocess's tile counts (thumbnail included, max_dynamic_patch 12) for random images of
    these sizes, drawn in this order from numpy's default_rng(0)."""
    _, vlm = converted
    expected = json.loads((FIXTURES / "oracle_tiles.json").read_text())
    rng = np.random.default_rng(0)
    counts = {}
    for size in expected:
        width, height = map(int, size.split("x"))
        image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        counts[size] = int(vlm.processor.image_processor(images=[image], return_tensors="pt")["num_patches"][0])
    assert counts == expected


def _copy(kind: str, tmp_path: Path) -> Path:
    """A writable copy of a fixture checkpoint."""
    return Path(shutil.copytree(FIXTURES / kind, tmp_path / kind))


def test_a_pickle_only_folder_is_refused(tmp_path):
    source = _copy("qwen2", tmp_path)
    (source / "model.safetensors").unlink()
    (source / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(ConversionError, match=r"safetensors only.*pytorch_model\.bin"):
        convert_internvl_chat(source, tmp_path / "native")


def test_an_unknown_llm_architecture_is_refused(tmp_path):
    source = _copy("qwen2", tmp_path)
    config = json.loads((source / "config.json").read_text())
    config["llm_config"]["architectures"] = ["Phi3ForCausalLM"]
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="'Phi3ForCausalLM'"):
        convert_internvl_chat(source, tmp_path / "native")


def test_a_missing_weight_is_named(tmp_path):
    source = _copy("internlm2", tmp_path)
    weights = load_file(source / "model.safetensors")
    del weights["mlp1.3.bias"]
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=r"not filled by any source weight: model\.multi_modal_projector\."
                                              r"linear_2\.bias"):
        convert_internvl_chat(source, tmp_path / "native")
    assert not (tmp_path / "native").exists()


def test_an_unmapped_weight_is_named(tmp_path):
    source = _copy("qwen2", tmp_path)
    weights = load_file(source / "model.safetensors")
    weights["vision_model.encoder.layers.0.attn.extra.weight"] = torch.zeros(1)
    save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ConversionError, match=r"no native counterpart: vision_model\.encoder\.layers\.0\.attn\.extra"):
        convert_internvl_chat(source, tmp_path / "native")


def test_a_transposed_pixel_shuffle_is_refused(tmp_path):
    source = _copy("qwen2", tmp_path)
    config = json.loads((source / "config.json").read_text())
    config["ps_version"] = "v1"
    (source / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="ps_version = .v1."):
        convert_internvl_chat(source, tmp_path / "native")


def _without_added(folder: Path, tmp_path: Path, tokens: set[str]) -> Path:
    """A copy of a tokenizer folder whose tokenizer_config no longer lists `tokens` as added tokens."""
    copy = Path(shutil.copytree(folder, tmp_path / folder.name))
    settings = json.loads((copy / "tokenizer_config.json").read_text())
    settings["added_tokens_decoder"] = {index: token for index, token in settings["added_tokens_decoder"].items()
                                        if token["content"] not in tokens}
    (copy / "tokenizer_config.json").write_text(json.dumps(settings))
    return copy


def test_user_defined_pieces_are_matched_inside_the_text_without_a_dummy_prefix(tmp_path):
    """Without a dummy prefix, sentencepiece's whole-piece match of <|im_start|> gives the ids of splitting it out."""
    folder = _without_added(FIXTURES / "internlm2", tmp_path, {"<|im_start|>", "<|im_end|>"})
    tokenizer = source_tokenizer(folder, "internlm2")
    expected = json.loads((folder / "oracle_token_ids.json").read_text())
    assert {text: tokenizer(text).input_ids for text in expected} == expected


def test_user_defined_pieces_with_a_dummy_prefix_are_refused(tmp_path):
    folder = _without_added(FIXTURES / "internlm2_dummy_prefix_tokenizer", tmp_path, {"<|im_start|>"})
    with pytest.raises(UnsupportedTokenizer, match=r"user-defined pieces <\|im_start\|> are not added tokens"):
        source_tokenizer(folder, "internlm2")


def test_an_internvl_chat_folder_profiles_through_its_native_conversion_made_once(tmp_path, monkeypatch):
    """`profile` on the original folder: converted into pidcore's cache on the first load (the original's logits),
    found there on the next, and every layer stored."""
    from pidcore import cli
    from pidcore.models import adapters
    from pidcore.store import read_atoms, read_runs
    from tests.test_families import _task

    monkeypatch.setenv("PIDCORE_CACHE_DIR", str(tmp_path / "cache"))
    source = _copy("qwen2", tmp_path)
    conversions = []
    counted = adapters.Conversion("internvl", lambda *folders: conversions.append(folders) or
                                  convert_internvl_chat(*folders))
    monkeypatch.setitem(adapters.CONVERTED, "internvl_chat", counted)
    vlm = load_vlm(str(source), device="cpu", dtype="float32")
    oracle = _oracle("qwen2")
    with torch.no_grad():
        logits = vlm.model(input_ids=oracle["input_ids"], pixel_values=oracle["pixel_values"].float()).logits
    torch.testing.assert_close(logits, oracle["logits"], atol=1e-5, rtol=0)
    db = tmp_path / "results.duckdb"
    assert cli.main(["profile", "--model", str(source), "--dataset", _task(tmp_path), "--db", str(db),
                     "--device", "cpu", "--layers", "all", "--bootstrap", "0"]) == 0
    assert len(conversions) == 1 and (tmp_path / "cache" / "converted").is_dir()
    (depth,) = read_runs(db)["n_layers"]
    assert sorted(read_atoms(db)["layer"]) == list(range(depth + 1))
