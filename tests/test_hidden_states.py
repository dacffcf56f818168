"""Hidden-state features (pidcore.probes.hidden) against transformers' own `output_hidden_states` of each family,
taken from the probes' forward at no extra forward, and unchanged by batching."""

from pathlib import Path

import pytest
import torch
from PIL import Image

from pidcore.models.adapters import adapter_for
from pidcore.models.loading import load_vlm
from pidcore.models.tiny import build_tiny_model
from pidcore.probes.encoding import encode_sample
from pidcore.probes.engine import run_probes_batch
from pidcore.probes.hidden import FEATURES, HiddenStatesRefused, check_hidden_states, projection
from pidcore.probes.noise import seeded_noise
from pidcore.probes.statistics import embedding_stats

QUESTION = "What colour is the shape?"
SHIPPED_WIDE = Path(__file__).resolve().parents[1] / "data" / "models" / "llava-m"  # hidden size 128 > FEATURES


@pytest.fixture(scope="module", params=["llava", "qwen2_vl", "idefics3", "paligemma", "wide-llava"])
def vlm(request, tmp_path_factory):
    if request.param == "wide-llava":
        return load_vlm(str(SHIPPED_WIDE), device="cpu", dtype="float32")
    return load_vlm(str(build_tiny_model(request.param, tmp_path_factory.mktemp(request.param))), device="cpu")


def _image_positions(vlm, input_ids: torch.Tensor) -> torch.Tensor:
    """The image token's positions as the family's own config names the token."""
    config = vlm.model.config
    token = getattr(config, "image_token_id", None)
    return input_ids == (token if token is not None else config.image_token_index)


def _probed(vlm, encoded_samples):
    stats = embedding_stats(vlm, encoded_samples)
    noises = [seeded_noise(encoded, stats, index) for index, encoded in enumerate(encoded_samples)]
    return run_probes_batch(vlm, encoded_samples, noises, hidden_states=True)


def test_features_are_the_models_own_hidden_states_averaged_and_projected(vlm):
    encoded = encode_sample(vlm, Image.new("RGB", (40, 40), (255, 0, 0)), QUESTION, ["red", "blue"])
    features = _probed(vlm, [encoded])[0].hidden
    with torch.no_grad():
        states = vlm.model(**encoded.inputs, output_hidden_states=True).hidden_states
    ids = encoded.inputs["input_ids"][0]
    image = _image_positions(vlm, ids)
    assert image.any() and encoded.text_mask.any()
    matrix = projection(states[0].shape[-1])
    width = min(states[0].shape[-1], FEATURES)
    assert features.shape == (2, len(states), width) and features.dtype == torch.float32
    for layer, hidden in enumerate(states):
        means = torch.stack([hidden[0][image].mean(0), hidden[0][encoded.text_mask].mean(0)]).float()
        expected = means if matrix is None else means @ matrix
        assert torch.allclose(features[:, layer], expected, atol=1e-4, rtol=1e-4), layer


def test_a_batch_of_mixed_lengths_gives_each_sample_its_own_features(vlm):
    short = encode_sample(vlm, Image.new("RGB", (40, 40), (255, 0, 0)), QUESTION, ["red", "blue"])
    long = encode_sample(vlm, Image.new("RGB", (40, 40), (0, 0, 255)), QUESTION + " Look closely at the picture.",
                         ["red", "blue", "green"])
    together = _probed(vlm, [short, long])
    alone = [_probed(vlm, [short])[0], _probed(vlm, [long])[0]]
    for batched, single in zip(together, alone):
        assert torch.allclose(batched.hidden, single.hidden, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(together[0].hidden, together[1].hidden)


def test_the_projection_is_fixed_and_kept_out_of_narrow_models():
    assert projection(FEATURES) is None
    first, again = projection(300), projection.__wrapped__(300)
    assert first.shape == (300, FEATURES) and torch.equal(first, again)


def test_a_cross_attention_family_is_refused_in_one_line():
    class Refused:
        adapter = adapter_for("mllama")

    with pytest.raises(HiddenStatesRefused, match="cross-attention"):
        check_hidden_states(Refused())
