"""Real-size presets and their -cpu variants: the cpu variants build, load and give the real checkpoints' image
token counts; the real sizes are only counted on the meta device (they are too big to build here)."""

import json

import pytest
import torch
from PIL import Image

from pidcore.models.loading import load_vlm
from pidcore.models.presets import (
    CPU_SUFFIX,
    PRESETS,
    REAL_PRESETS,
    build_preset,
    count_parameters,
    preset_config,
)
from pidcore.models.tiny import family_tokenizer
from pidcore.probes.encoding import encode_sample
from tests.cli_run import run_cli

QUESTION = "What colour is the shape?"
OPTIONS = ["red", "blue", "green", "yellow"]
# Image tokens per 448 x 448 image in the real checkpoints: LLaVA-1.5 576 (24 x 24 patches of 14 px at 336 px), Qwen
# (448 / 14)**2 / 2**2 = 256, SmolVLM 4 x 4 tiles plus the whole image of 81 each, PaliGemma-224 (224 / 14)**2,
# LLaVA-OneVision 729 for the whole image plus a 2 x 2 tile grid of 54 x 54 features and a newline a row, InternVL3 one
# 448-px tile of 256, Gemma 3 256 whatever the image, Qwen3-VL (448 / 16)**2 / 2**2, Fuyu ceil(448 / 30)**2 patches,
# InstructBLIP its 32 query tokens whatever the image. Llama 3.2 Vision's image is its cross-attention state rows: 4
# tile slots (padding ones included) of (560 / 14)**2 patches and a class token.
IMAGE_TOKENS = {"llava-1.5-7b": 576, "qwen2-vl-2b": 256, "qwen2.5-vl-7b": 256, "smolvlm-instruct": 17 * 81,
                "paligemma-3b": 256, "llava-onevision-0.5b": 729 + 54 * 55, "internvl3-2b": 256, "gemma-3-4b": 256,
                "qwen3-vl-2b": 196, "qwen3-vl-4b": 196, "llama-3.2-11b-vision": 4 * (40**2 + 1), "fuyu-8b": 15 * 15,
                "instructblip-vicuna-7b": 32}
# Per 896 x 448 image: Qwen2-VL 64 x 32 patches / 4, Qwen3-VL 56 x 28 / 4, InternVL3 two tiles and a thumbnail,
# LLaVA-OneVision a 2 x 3 grid (768 x 1152) of 54 x 81 features unpadded to 40 rows of 81 and a newline, Gemma 3 256,
# Fuyu 30 x 15 patches.
WIDE_IMAGE_TOKENS = {"qwen2-vl-2b": 512, "qwen3-vl-2b": 392, "internvl3-2b": 3 * 256,
                     "llava-onevision-0.5b": 729 + 40 * 82, "gemma-3-4b": 256, "fuyu-8b": 30 * 15}


@pytest.mark.parametrize("name", [preset.name for preset in REAL_PRESETS])
def test_a_cpu_variant_loads_and_gives_the_real_image_token_count(name, tmp_path):
    folder = build_preset(name + CPU_SUFFIX, tmp_path / "model")
    vlm = load_vlm(str(folder), device="cpu")
    encoded = encode_sample(vlm, Image.new("RGB", (448, 448), "red"), QUESTION, OPTIONS)
    assert int(encoded.image_mask.sum()) == IMAGE_TOKENS[name]
    assert all(torch.isfinite(parameter).all() for parameter in vlm.model.parameters())


@pytest.mark.parametrize("name", WIDE_IMAGE_TOKENS)
def test_image_tokens_follow_the_image_size_as_the_real_processor_counts_them(name, tmp_path):
    vlm = load_vlm(str(build_preset(name + CPU_SUFFIX, tmp_path / "model")), device="cpu")
    encoded = encode_sample(vlm, Image.new("RGB", (896, 448), "blue"), QUESTION, OPTIONS)
    assert int(encoded.image_mask.sum()) == WIDE_IMAGE_TOKENS[name]


@pytest.mark.parametrize("name", ["llava-onevision-0.5b", "internvl3-2b", "gemma-3-4b", "qwen3-vl-2b",
                                  "llama-3.2-11b-vision", "fuyu-8b", "instructblip-vicuna-7b"])
def test_a_cpu_variant_of_a_newer_or_paper_family_runs_its_image_through_the_model(name, tmp_path):
    vlm = load_vlm(str(build_preset(name + CPU_SUFFIX, tmp_path / "model")), device="cpu")
    encoded = encode_sample(vlm, Image.new("RGB", (448, 448), "green"), QUESTION, OPTIONS)
    with torch.no_grad():
        logits = vlm.model(**encoded.inputs).logits
    assert logits.shape[1] == encoded.inputs["input_ids"].shape[-1] and bool(torch.isfinite(logits).all())


def test_llama_vision_reads_every_tile_slot_and_marks_those_the_image_fills(tmp_path):
    vlm = load_vlm(str(build_preset("llama-3.2-11b-vision" + CPU_SUFFIX, tmp_path / "model")), device="cpu")
    for size, tiles in (((448, 448), 1), ((896, 448), 2)):  # one 560-px tile; a 1 x 2 layout
        encoded = encode_sample(vlm, Image.new("RGB", size, "red"), QUESTION, OPTIONS)
        assert int(encoded.image_mask.sum()) == IMAGE_TOKENS["llama-3.2-11b-vision"]
        assert int(encoded.inputs["cross_attention_mask"][0, :, 0].amax(0).sum()) == tiles  # tiles the text attends to


def test_llama_vision_presets_keep_the_real_cross_attention_layers_and_tile_layouts():
    tokenizer = family_tokenizer("mllama")
    real = preset_config(PRESETS["llama-3.2-11b-vision"], tokenizer)
    small = preset_config(PRESETS["llama-3.2-11b-vision" + CPU_SUFFIX], tokenizer)
    assert real.text_config.cross_attention_layers == [3, 8, 13, 18, 23, 28, 33, 38]
    assert small.text_config.cross_attention_layers == [3]
    layouts = [[1, 1], [1, 2], [1, 3], [1, 4], [2, 1], [2, 2], [3, 1], [4, 1]]  # the checkpoint's, in its order
    assert real.vision_config.supported_aspect_ratios == layouts
    assert real.vision_config.vision_output_dim == 7680 and small.vision_config.num_global_layers == 1


def test_gemma3_presets_keep_five_sliding_layers_to_one_global():
    tokenizer = family_tokenizer("gemma3")
    real = preset_config(PRESETS["gemma-3-4b"], tokenizer).text_config.layer_types
    small = preset_config(PRESETS["gemma-3-4b" + CPU_SUFFIX], tokenizer).text_config.layer_types
    assert [index for index, kind in enumerate(real) if kind == "full_attention"] == [5, 11, 17, 23, 29]
    assert small == ["sliding_attention"] * 3 + ["full_attention"]


@pytest.mark.parametrize("preset", REAL_PRESETS, ids=lambda preset: preset.name)
def test_a_real_size_preset_has_the_published_parameter_count(preset):
    assert count_parameters(preset.name) == pytest.approx(preset.published_params, rel=0.005)


@pytest.mark.parametrize("preset", REAL_PRESETS, ids=lambda preset: preset.name)
def test_a_cpu_variant_scales_widths_and_vocab_by_one_factor_and_keeps_head_dim(preset):
    real, small = preset.decoder, PRESETS[preset.name + CPU_SUFFIX].decoder
    factor = real.hidden // small.hidden
    assert (real.intermediate // factor, real.vocab // factor) == (small.intermediate, small.vocab)
    assert small.head_dim == real.head_dim and small.mrope_section == real.mrope_section
    assert PRESETS[preset.name + CPU_SUFFIX].imaging == preset.imaging
    assert (PRESETS[preset.name + CPU_SUFFIX].vision.patch, PRESETS[preset.name + CPU_SUFFIX].vision.image_size) == \
        (preset.vision.patch, preset.vision.image_size)


def test_a_preset_builds_in_the_dtype_asked_for_and_loads_back(tmp_path):
    folder = build_preset("qwen2.5-vl-7b-cpu", tmp_path / "model", dtype="bfloat16")
    assert json.loads((folder / "config.json").read_text())["dtype"] == "bfloat16"
    assert load_vlm(str(folder), device="cpu", dtype="bfloat16").model.dtype == torch.bfloat16


def test_an_unknown_dtype_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        build_preset("qwen2.5-vl-7b-cpu", tmp_path / "model", dtype="float8")


def test_the_cli_builds_a_preset(tmp_path):
    done = run_cli("tiny-model", "--preset", "paligemma-3b-cpu", "--out", str(tmp_path / "m"))
    assert done.returncode == 0, done.stderr
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (config["model_type"], config["text_config"]["hidden_size"]) == ("paligemma", 128)


def test_the_cli_names_the_presets_for_an_unknown_one(tmp_path):
    done = run_cli("tiny-model", "--preset", "llava-70b", "--out", str(tmp_path / "m"))
    assert done.returncode == 2
    assert "no model preset named 'llava-70b'" in done.stderr and "llava-1.5-7b-cpu" in done.stderr


def test_the_cli_refuses_a_family_and_a_preset_together(tmp_path):
    with pytest.raises(SystemExit):
        run_cli("tiny-model", "--family", "llava", "--preset", "llava-1.5-7b-cpu", "--out", str(tmp_path / "m"))


def test_the_cli_refuses_a_dtype_for_a_family_model(tmp_path):
    done = run_cli("tiny-model", "--family", "llava", "--dtype", "bfloat16", "--out", str(tmp_path / "m"))
    assert done.returncode == 2
    assert "--preset builds only" in done.stderr
