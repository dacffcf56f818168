"""Masked probes and the logit lens on tiny LLaVA, Qwen2-VL and Idefics3 models built offline, loaded from disk."""

import pytest
import torch
from PIL import Image

from pidcore.models.adapters import adapter_for
from pidcore.models.loading import load_vlm
from pidcore.models.tiny import build_tiny_model
from pidcore.probes.encoding import encode_sample
from pidcore.probes.engine import letter_token_ids, run_probes
from pidcore.probes.noise import seeded_noise
from pidcore.probes.statistics import embedding_stats

QUESTION = "What colour is the shape?"


@pytest.fixture(scope="module", params=["llava", "qwen2_vl", "qwen2_5_vl", "idefics3", "paligemma"])
def vlm(request, tmp_path_factory):
    folder = build_tiny_model(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}"))
    loaded = load_vlm(str(folder), device="cpu")
    norm = loaded.model.get_decoder().norm
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, norm.weight.numel()))
    return loaded


@pytest.fixture(scope="module")
def images():
    return Image.new("RGB", (40, 40), (255, 0, 0)), Image.new("RGB", (40, 40), (0, 0, 255))


def test_lens_at_the_last_layer_is_the_real_output(vlm, images):
    encoded = encode_sample(vlm, images[0], QUESTION, ["red", "blue", "green"])
    stats = embedding_stats(vlm, [encoded])
    result = run_probes(vlm, encoded, stats, seed=0)
    with torch.no_grad():
        logits = vlm.model(**encoded.inputs).logits[0, -1]
    letters = letter_token_ids(vlm.processor.tokenizer, 3)
    real = torch.softmax(logits[letters], -1)
    assert torch.allclose(result.probs[0, -1], real, atol=1e-6)
    assert result.probs.shape == (3, vlm.model.config.text_config.num_hidden_layers + 1, 3)
    assert torch.allclose(result.probs.sum(-1), torch.ones(3, result.probs.shape[1]), atol=1e-6)
    assert result.letter_mass.shape == result.probs.shape[:2]
    assert float(result.letter_mass[0, -1]) == pytest.approx(float(torch.softmax(logits, -1)[letters].sum()), abs=1e-6)
    assert ((result.letter_mass > 0) & (result.letter_mass <= 1)).all()


def test_text_only_probe_ignores_the_image(vlm, images):
    first = encode_sample(vlm, images[0], QUESTION, ["red", "blue"])
    second = encode_sample(vlm, images[1], QUESTION, ["red", "blue"])
    stats = embedding_stats(vlm, [first, second])
    a, b = run_probes(vlm, first, stats, seed=3), run_probes(vlm, second, stats, seed=3)
    assert torch.equal(a.probs[2], b.probs[2])
    assert not torch.equal(a.probs[0], b.probs[0])
    assert not torch.allclose(a.x1, b.x1) and torch.allclose(a.x2, b.x2)


def test_image_only_probe_ignores_the_question(vlm, images):
    first = encode_sample(vlm, images[0], QUESTION, ["red", "blue"])
    second = encode_sample(vlm, images[0], QUESTION, ["blue", "red"])
    assert int(first.text_mask.sum()) == int(second.text_mask.sum())
    stats = embedding_stats(vlm, [first, second])
    a, b = run_probes(vlm, first, stats, seed=3), run_probes(vlm, second, stats, seed=3)
    assert torch.equal(a.probs[1], b.probs[1])
    assert not torch.equal(a.probs[0], b.probs[0])


def test_user_text_positions_exclude_the_scaffolding(vlm, images):
    encoded = encode_sample(vlm, images[0], QUESTION, ["red", "blue"])
    tokenizer = vlm.processor.tokenizer
    text = tokenizer.decode(encoded.inputs["input_ids"][0][encoded.text_mask])
    assert text.startswith(QUESTION) and text.rstrip().endswith("B. blue")
    assert not (encoded.text_mask & encoded.image_mask).any()


def test_unsupported_family_names_what_is_missing():
    with pytest.raises(ValueError, match="no adapter.*image token"):
        adapter_for("made_up_vlm")


def test_bad_option_count_is_rejected(vlm, images):
    with pytest.raises(ValueError, match="between 2 and 26"):
        encode_sample(vlm, images[0], QUESTION, ["only one"])


MIXED = [((40, 40), "What colour is the shape?", ["red", "blue"]),
         ((64, 40), "Is there a circle in the image? What shape is shown?", ["yes", "no", "left", "right"]),
         ((32, 56), "Which side?", ["left", "right", "top"]),
         ((40, 40), "What colour is the shape?", ["blue", "red"])]


@pytest.fixture(scope="module")
def mixed(vlm):
    """Samples of different prompt lengths, option counts and (for Qwen) image grids, with their statistics."""
    colours = [(255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 0, 0)]
    encoded = [encode_sample(vlm, Image.new("RGB", size, colour), question, options)
               for (size, question, options), colour in zip(MIXED, colours)]
    return encoded, embedding_stats(vlm, encoded)


def test_mixed_lengths_batch_to_the_one_sample_results(vlm, mixed):
    from pidcore.probes.engine import run_probes_batch

    encoded, stats = mixed
    assert len({item.inputs["input_ids"].shape[1] for item in encoded}) == 3
    seeds = [5, 6, 7, 8]
    noises = [seeded_noise(item, stats, seed) for item, seed in zip(encoded, seeds)]
    together = run_probes_batch(vlm, encoded, noises)
    for item, seed, batched in zip(encoded, seeds, together):
        alone = run_probes(vlm, item, stats, seed=seed)
        assert batched.probs.shape == alone.probs.shape
        assert torch.allclose(alone.probs, batched.probs, atol=1e-4)
        assert torch.allclose(alone.x1, batched.x1, atol=1e-5) and torch.allclose(alone.x2, batched.x2, atol=1e-5)
        assert torch.allclose(alone.letter_mass, batched.letter_mass, atol=1e-4)


def _images_seen(args, kwargs) -> int:
    """Images in one vision-tower call: Qwen's tower takes a grid per image, the others a batch of images."""
    if "grid_thw" in kwargs:
        return kwargs["grid_thw"].shape[0]
    pixels = kwargs["pixel_values"] if "pixel_values" in kwargs else args[0]
    return pixels.shape[0]


def test_the_vision_tower_sees_each_image_once(vlm, mixed):
    from pidcore.probes.engine import run_probes_batch

    encoded, stats = mixed
    seen = []
    tower = vlm.model.get_submodule(vlm.adapter.vision_module)
    handle = tower.register_forward_pre_hook(lambda module, args, kwargs: seen.append(_images_seen(args, kwargs)),
                                             with_kwargs=True)
    try:
        run_probes_batch(vlm, encoded, [seeded_noise(item, stats, seed) for seed, item in enumerate(encoded)])
    finally:
        handle.remove()
    assert sum(seen) == len(encoded)


def test_lens_applies_the_models_final_logit_softcap(tmp_path, images):
    loaded = load_vlm(str(build_tiny_model("paligemma", tmp_path / "capped")), device="cpu")
    encoded = encode_sample(loaded, images[0], QUESTION, ["red", "blue", "green"])
    letters = letter_token_ids(loaded.processor.tokenizer, 3)

    def output_and_lens():
        with torch.no_grad():
            real = torch.softmax(loaded.model(**encoded.inputs).logits[0, -1, letters], -1)
        return real, run_probes(loaded, encoded, embedding_stats(loaded, [encoded]), seed=0).probs[0, -1]

    uncapped, _ = output_and_lens()
    loaded.model.config.get_text_config().final_logit_softcapping = 0.01
    capped, lens = output_and_lens()
    assert torch.allclose(lens, capped, atol=1e-6)
    assert not torch.allclose(capped, uncapped, atol=1e-3)


def test_the_lens_keeps_only_the_last_position_of_each_layer(vlm, mixed):
    """Each kept state owns just its rows' last position: a view would pin every layer's whole hidden states."""
    from pidcore.probes.batching import probe_rows
    from pidcore.probes.engine import _last_position_states

    encoded, _ = mixed
    rows = probe_rows(vlm, encoded)
    with torch.no_grad(), _last_position_states(vlm) as states:
        vlm.model(**rows.inputs, use_cache=False, logits_to_keep=1)
    width = vlm.model.config.get_text_config().hidden_size
    assert len(states) == vlm.model.config.get_text_config().num_hidden_layers + 1
    for state in states:
        assert state.shape == (3 * len(encoded), width)
        assert state.untyped_storage().nbytes() == state.numel() * state.element_size()


def test_images_split_into_different_tile_counts_batch_to_the_one_sample_results(tmp_path):
    """SmolVLM splits a 384-pixel square into 17 tiles and a 2:1 image into 9; the batch pads the tile count."""
    from pidcore.models.presets import build_preset
    from pidcore.probes.engine import run_probes_batch

    vlm = load_vlm(str(build_preset("smolvlm-instruct-cpu", tmp_path / "smol")), device="cpu")
    encoded = [encode_sample(vlm, Image.new("RGB", size, colour), QUESTION, ["red", "blue"])
               for size, colour in (((384, 384), (255, 0, 0)), ((800, 400), (0, 0, 255)))]
    assert [item.inputs["pixel_values"].shape[1] for item in encoded] == [17, 9]
    stats = embedding_stats(vlm, encoded)
    noises = [seeded_noise(item, stats, seed) for item, seed in zip(encoded, [1, 2])]
    for item, seed, batched in zip(encoded, [1, 2], run_probes_batch(vlm, encoded, noises)):
        alone = run_probes(vlm, item, stats, seed=seed)
        assert torch.allclose(alone.probs, batched.probs, atol=1e-4)
        assert torch.allclose(alone.x1, batched.x1, atol=1e-5)
