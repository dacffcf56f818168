"""Real-size presets and their -cpu variants: the cpu variants build, load and give the real checkpoints' image
token counts; the real sizes are only counted on the meta device (they are too big to build here)."""

import json

import pytest
import torch
from PIL import Image

from pidcore.models.loading import load_vlm
from pidcore.models.presets import CPU_SUFFIX, PRESETS, REAL_PRESETS, build_preset, count_parameters
from pidcore.probes.encoding import encode_sample
from tests.cli_run import run_cli

QUESTION = "What colour is the shape?"
OPTIONS = ["red", "blue", "green", "yellow"]
# Image tokens per 448 x 448 image in the real checkpoints: LLaVA-1.5 576 (24 x 24 patches of 14 px at 336 px), Qwen
# (448 / 14)**2 / 2**2 = 256, SmolVLM 4 x 4 tiles plus the whole image of 81 each, PaliGemma-224 (224 / 14)**2.
IMAGE_TOKENS = {"llava-1.5-7b": 576, "qwen2-vl-2b": 256, "qwen2.5-vl-7b": 256, "smolvlm-instruct": 17 * 81,
                "paligemma-3b": 256}


@pytest.mark.parametrize("name", [preset.name for preset in REAL_PRESETS])
def test_a_cpu_variant_loads_and_gives_the_real_image_token_count(name, tmp_path):
    folder = build_preset(name + CPU_SUFFIX, tmp_path / "model")
    vlm = load_vlm(str(folder), device="cpu")
    encoded = encode_sample(vlm, Image.new("RGB", (448, 448), "red"), QUESTION, OPTIONS)
    assert int(encoded.image_mask.sum()) == IMAGE_TOKENS[name]
    assert all(torch.isfinite(parameter).all() for parameter in vlm.model.parameters())


def test_qwen_image_tokens_follow_the_image_size(tmp_path):
    vlm = load_vlm(str(build_preset("qwen2-vl-2b-cpu", tmp_path / "model")), device="cpu")
    encoded = encode_sample(vlm, Image.new("RGB", (896, 448), "blue"), QUESTION, OPTIONS)
    assert int(encoded.image_mask.sum()) == 512


@pytest.mark.parametrize("preset", REAL_PRESETS, ids=lambda preset: preset.name)
def test_a_real_size_preset_has_the_published_parameter_count(preset):
    assert count_parameters(preset.name) == pytest.approx(preset.published_params, rel=0.01)


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
