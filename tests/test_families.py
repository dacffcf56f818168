"""Every family in the adapter table, on a tiny model built offline and loaded from disk: the lens at the last layer
is the model's own output, each masked probe leaves no trace of its masked modality, `profile` runs end to end, and a
batch of mixed lengths gives the one-sample results. Family read-outs and masking strategies are shown to matter."""

import dataclasses
import importlib.util
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from pidcore.cli import main
from pidcore.models.adapters import ADAPTERS, UNSUPPORTED, adapter_for
from pidcore.models.loading import load_vlm
from pidcore.models.tiny import BUILDERS, build_tiny_model
from pidcore.probes.conventions import CLEAN, PUBLISHED, conventions_for
from pidcore.probes.encoding import encode_sample
from pidcore.probes.engine import _head_logits, _last_position_states, letter_token_ids, run_probes, run_probes_batch
from pidcore.probes.hooks import MASKINGS
from pidcore.probes.noise import seeded_noise
from pidcore.probes.statistics import PaperStatistics, embedding_stats
from pidcore.store import load_samples, read_atoms, read_runs

QUESTION = "What colour is the shape?"
# transformers' SmolVLM processor refuses to start without num2words (it spells out video frame counts).
NEEDS = {"smolvlm": "num2words"}
FAMILIES = [pytest.param(family, marks=pytest.mark.skipif(
    family in NEEDS and importlib.util.find_spec(NEEDS[family]) is None,
    reason=f"{family}'s processor needs {NEEDS.get(family)}")) for family in sorted(ADAPTERS)]


def _picture(seed: int, size=(40, 40)) -> Image.Image:
    """Random pixels: two seeds give two very different images of one size (so of one image-token count)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module", params=FAMILIES)
def built(request, tmp_path_factory):
    """The family's tiny model folder, and the model loaded with a final norm whose weights are not all equal (so a
    lens that skipped or doubled it would show)."""
    folder = build_tiny_model(request.param, tmp_path_factory.mktemp(f"family-{request.param}"))
    vlm = load_vlm(str(folder), device="cpu")
    norm = getattr(vlm.model.get_decoder(), vlm.adapter.final_norm_attr)
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, norm.weight.numel()))
    return request.param, folder, vlm


def _own_last_logits(vlm, encoded) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's own last-position logits from its transformers forward, and the lens read-out of the last layer's
    residual state captured in that same forward."""
    with torch.no_grad(), _last_position_states(vlm) as states:
        own = vlm.model(**encoded.inputs).logits[0, -1].float()
        lens = _head_logits(vlm, states[-1])[0]
    return own, lens


def test_every_adapted_family_has_a_tiny_builder_and_a_known_masking():
    assert sorted(BUILDERS) == sorted(ADAPTERS)
    assert {adapter.masking for adapter in ADAPTERS.values()} <= set(MASKINGS)
    assert {family: adapter.family for family, adapter in ADAPTERS.items()} == {family: family for family in ADAPTERS}


def test_the_lens_at_the_last_layer_is_the_models_own_output(built):
    family, _, vlm = built
    encoded = encode_sample(vlm, _picture(0), QUESTION, ["red", "blue", "green"])
    own, lens = _own_last_logits(vlm, encoded)
    assert torch.allclose(lens, own, atol=1e-5), (family, float((lens - own).abs().max()))
    result = run_probes(vlm, encoded, embedding_stats(vlm, [encoded]), seed=0)
    letters = letter_token_ids(vlm.processor.tokenizer, 3)
    assert torch.allclose(result.probs[0, -1], torch.softmax(own[letters], -1), atol=1e-5)
    assert float(result.letter_mass[0, -1]) == pytest.approx(float(torch.softmax(own, -1)[letters].sum()), abs=1e-5)
    assert result.probs.shape == (3, vlm.model.config.get_text_config().num_hidden_layers + 1, 3)


def _probes_of(vlm, first, second, kept_row: int):
    """Both samples' probes under one set of statistics and one seed; `kept_row` (1 image-only, 2 text-only) must
    not move between them, while the full pass does (so the check is not empty)."""
    stats = embedding_stats(vlm, [first, second])
    a, b = run_probes(vlm, first, stats, seed=3), run_probes(vlm, second, stats, seed=3)
    moved = (a.probs[kept_row] - b.probs[kept_row]).abs().max()
    assert torch.allclose(a.probs[kept_row], b.probs[kept_row], atol=1e-6, rtol=0), (vlm.adapter.family, moved)
    assert not torch.allclose(a.probs[0], b.probs[0], atol=1e-6, rtol=0)
    return a, b


def test_the_text_only_probe_ignores_the_image(built):
    _, _, vlm = built
    first = encode_sample(vlm, _picture(1), QUESTION, ["red", "blue"])
    second = encode_sample(vlm, _picture(2), QUESTION, ["red", "blue"])
    assert torch.equal(first.image_mask, second.image_mask)
    a, b = _probes_of(vlm, first, second, kept_row=2)
    assert not torch.allclose(a.x1, b.x1) and torch.allclose(a.x2, b.x2)


def test_the_image_only_probe_ignores_the_question(built):
    _, _, vlm = built
    first = encode_sample(vlm, _picture(1), QUESTION, ["red", "blue"])
    second = encode_sample(vlm, _picture(1), "What colour is a banana?", ["yellow", "green"])
    assert torch.equal(first.text_mask, second.text_mask)
    a, b = _probes_of(vlm, first, second, kept_row=1)
    assert not torch.allclose(a.x2, b.x2) and torch.allclose(a.x1, b.x1)


MIXED = [((40, 40), "What colour is the shape?", ["red", "blue"]),
         ((64, 40), "Is there a circle in the image? What shape is shown?", ["yes", "no", "left", "right"]),
         ((32, 56), "Which side?", ["left", "right", "top"])]


def test_a_batch_of_mixed_lengths_gives_the_one_sample_results(built):
    family, _, vlm = built
    encoded = [encode_sample(vlm, _picture(seed, size), question, options)
               for seed, (size, question, options) in enumerate(MIXED)]
    assert len({item.inputs["input_ids"].shape[1] for item in encoded}) == len(MIXED)
    stats = embedding_stats(vlm, encoded)
    seeds = [5, 6, 7]
    together = run_probes_batch(vlm, encoded, [seeded_noise(item, stats, seed) for item, seed in zip(encoded, seeds)])
    for item, seed, batched in zip(encoded, seeds, together):
        alone = run_probes(vlm, item, stats, seed=seed)
        assert torch.allclose(alone.probs, batched.probs, atol=1e-5), family
        assert torch.allclose(alone.letter_mass, batched.letter_mass, atol=1e-5)
        assert torch.allclose(alone.x1, batched.x1, atol=1e-5) and torch.allclose(alone.x2, batched.x2, atol=1e-5)


def test_the_batch_encodes_each_image_once_in_the_adapters_vision_module(built):
    """The adapter's vision and projector modules exist, and the vision tower runs once per sample of a batch (twice
    where the image-only row's image features read an empty instruction: InstructBLIP's)."""
    family, _, vlm = built
    tower = vlm.model.get_submodule(vlm.adapter.vision_module)
    assert any(True for _ in vlm.model.get_submodule(vlm.adapter.projector_module).parameters())
    encoded = [encode_sample(vlm, _picture(seed, size), question, options)
               for seed, (size, question, options) in enumerate(MIXED)]
    stats = embedding_stats(vlm, encoded)
    calls = []
    handle = tower.register_forward_pre_hook(lambda module, args: calls.append(module))
    try:
        run_probes_batch(vlm, encoded, [seeded_noise(item, stats, seed) for seed, item in enumerate(encoded)])
    finally:
        handle.remove()
    assert len(calls) == sum(1 + (item.blank_instruction is not None) for item in encoded), family


def _task(root) -> str:
    """An 8-question two-option JSONL task with small images, as `profile --dataset jsonl:...` reads it."""
    with open(root / "task.jsonl", "w") as handle:
        for i in range(8):
            Image.new("RGB", (36, 36), (255 * (i % 2), 0, 0)).save(root / f"img{i}.png")
            handle.write(json.dumps({"id": f"q{i}", "image": f"img{i}.png", "question": "Red?",
                                     "options": ["yes", "no"], "answer": "yes" if i % 2 else "no"}) + "\n")
    return f"jsonl:{root / 'task.jsonl'}"


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_then_profile_runs_end_to_end(family, tmp_path):
    """`pidcore tiny-model --family F`, then `profile` on its folder (the default, published probes), all the way to
    stored samples and every layer's atoms, the embeddings (layer 0) to the output."""
    assert main(["tiny-model", "--family", family, "--out", str(tmp_path / "model")]) == 0
    db = tmp_path / "results.duckdb"
    assert main(["profile", "--model", str(tmp_path / "model"), "--dataset", _task(tmp_path), "--db", str(db),
                 "--device", "cpu", "--layers", "all", "--bootstrap", "0"]) == 0
    atoms = read_atoms(db)
    (run_id,), (depth,) = read_runs(db)["run_id"], read_runs(db)["n_layers"]
    assert sorted(atoms["layer"]) == list(range(depth + 1)) and depth >= 2 and set(atoms["family"]) == {family}
    assert sorted(row.sample_id for row in load_samples(db, run_id)) == [f"q{i}" for i in range(8)]


def test_a_saved_processor_loads_back_as_the_class_it_names(built):
    """Processors built without their video processors (which need torchvision) save and load as the family's own
    class; the Qwen2-VL families save their tokenizer and image processor alone."""
    family, folder, vlm = built
    saved = folder / "processor_config.json"
    if not saved.is_file():
        pytest.skip(f"{family}'s tiny model has no processor config")
    assert json.loads(saved.read_text())["processor_class"] == type(vlm.processor).__name__


def test_aya_visions_lens_applies_its_logit_scale(tmp_path):
    """Aya Vision's head multiplies the logits by logit_scale; without the adapter's read-out field the lens would
    not be the model's output."""
    vlm = load_vlm(str(build_tiny_model("aya_vision", tmp_path / "aya")), device="cpu")
    assert vlm.model.config.get_text_config().logit_scale != 1
    encoded = encode_sample(vlm, _picture(0), QUESTION, ["red", "blue", "green"])
    own, lens = _own_last_logits(vlm, encoded)
    assert torch.allclose(lens, own, atol=1e-5)
    vlm.adapter = dataclasses.replace(vlm.adapter, logit_scale_attr=None)
    _, unscaled = _own_last_logits(vlm, encoded)
    assert not torch.allclose(unscaled, own, atol=1e-3)


def test_qwen3_vls_deepstack_must_be_masked_too(tmp_path):
    """Replacing only the merged image rows leaves Qwen3-VL's text-only probe seeing the image through the deepstack
    features added after its first decoder layer; the adapter's merged_rows_deepstack strategy removes them."""
    vlm = load_vlm(str(build_tiny_model("qwen3_vl", tmp_path / "qwen3")), device="cpu")
    assert vlm.adapter.masking == "merged_rows_deepstack"
    first = encode_sample(vlm, _picture(1), QUESTION, ["red", "blue"])
    second = encode_sample(vlm, _picture(2), QUESTION, ["red", "blue"])
    stats = embedding_stats(vlm, [first, second])

    def text_only_change() -> float:
        a, b = run_probes(vlm, first, stats, seed=3), run_probes(vlm, second, stats, seed=3)
        return float((a.probs[2] - b.probs[2]).abs().max())

    assert text_only_change() <= 1e-6
    vlm.adapter = dataclasses.replace(vlm.adapter, masking="merged_rows")
    assert text_only_change() > 1e-4


def test_mllamas_image_is_its_cross_attention_states_and_they_must_be_masked(tmp_path, monkeypatch):
    """Llama 3.2 Vision has no image rows: the masks mark its cross-attention states after the tokens, x1 is their
    mean, and a strategy that replaced only the token rows would leave the text-only probe seeing the image."""
    vlm = load_vlm(str(build_tiny_model("mllama", tmp_path / "mllama")), device="cpu")
    first = encode_sample(vlm, _picture(1), QUESTION, ["red", "blue"])
    second = encode_sample(vlm, _picture(2), QUESTION, ["red", "blue"])
    images = {name: first.inputs[name] for name in ("pixel_values", "aspect_ratio_ids", "aspect_ratio_mask")}
    with torch.no_grad():
        states = vlm.adapter.encode_image(vlm.model, **images).pooler_output
    tokens = first.inputs["input_ids"].shape[1]
    assert not first.image_mask[:tokens].any() and int(first.image_mask[tokens:].sum()) == states[..., 0].numel()
    stats = embedding_stats(vlm, [first, second])
    result = run_probes(vlm, first, stats, seed=3)
    assert torch.allclose(result.x1, states.reshape(-1, states.shape[-1]).mean(0), atol=1e-5)

    def text_only_change() -> float:
        a, b = run_probes(vlm, first, stats, seed=3), run_probes(vlm, second, stats, seed=3)
        return float((a.probs[2] - b.probs[2]).abs().max())

    def tokens_only(kwargs, edit, image_masked):
        states = kwargs["cross_attention_states"]
        MASKINGS["cross_attention"](kwargs, edit, image_masked)
        kwargs["cross_attention_states"] = states

    assert text_only_change() <= 1e-6
    monkeypatch.setitem(MASKINGS, "tokens_only", tokens_only)
    vlm.adapter = dataclasses.replace(vlm.adapter, masking="tokens_only")
    assert text_only_change() > 1e-4


def test_instructblips_image_only_probe_is_complete_only_with_an_empty_instruction(tmp_path):
    """InstructBLIP's Q-Former reads the prompt, so with the paper's `instruction` convention (published) the
    image-only probe moves with the question; `clean` gives its row's Q-Former an empty instruction and it does not.
    The text-only probe ignores the image either way."""
    vlm = load_vlm(str(build_tiny_model("instructblip", tmp_path / "blip")), device="cpu")
    assert vlm.adapter.instruction_inputs == ("qformer_input_ids", "qformer_attention_mask")
    clean = conventions_for(CLEAN, vlm.adapter.paper_conventions)
    published = conventions_for(PUBLISHED, vlm.adapter.paper_conventions)
    assert published.instruction and not clean.instruction

    def change(conventions, row: int, first: tuple, second: tuple) -> float:
        """How far the `row` probe moves between two (picture seed, question, options) samples, at any layer."""
        encoded = [encode_sample(vlm, _picture(seed), question, options, conventions=conventions)
                   for seed, question, options in (first, second)]
        stats = embedding_stats(vlm, encoded)
        a, b = (run_probes_batch(vlm, [item], [seeded_noise(item, stats, 3)], conventions)[0] for item in encoded)
        return float((a.probs[row] - b.probs[row]).abs().max())

    questions = (1, QUESTION, ["red", "blue"]), (1, "What colour is a banana?", ["yellow", "green"])
    pictures = (1, QUESTION, ["red", "blue"]), (2, QUESTION, ["red", "blue"])
    assert change(clean, 1, *questions) <= 1e-6
    assert change(published, 1, *questions) > 1e-5
    assert change(clean, 2, *pictures) <= 1e-6 and change(published, 2, *pictures) <= 1e-6


@pytest.mark.parametrize("probes", [PUBLISHED, CLEAN])
def test_instructblips_incomplete_image_only_probe_is_reported_at_profile_time(probes, tmp_path, caplog):
    """`profile` warns, naming the Q-Former's inputs, where the image-only probe carries the question (published,
    the default), and not where its row's Q-Former reads an empty instruction (clean)."""
    assert main(["tiny-model", "--family", "instructblip", "--out", str(tmp_path / "model")]) == 0
    with caplog.at_level(logging.WARNING, logger="pidcore.pipeline.profiling"):
        assert main(["profile", "--model", str(tmp_path / "model"), "--dataset", _task(tmp_path), "--db",
                     str(tmp_path / "results.duckdb"), "--device", "cpu", "--layers", "last", "--bootstrap", "0",
                     "--probes", probes]) == 0
    warned = [record.getMessage() for record in caplog.records if "qformer_input_ids" in record.getMessage()]
    assert len(warned) == (probes == PUBLISHED), warned


@pytest.mark.parametrize("family", sorted(UNSUPPORTED))
def test_a_known_unsupported_family_is_refused_with_its_reason(family, tmp_path):
    """Families transformers knows but that cannot be profiled yet: loading one names the family and the reason,
    not the generic missing-adapter message."""
    assert family not in ADAPTERS and family not in BUILDERS
    (tmp_path / "config.json").write_text(json.dumps({"model_type": family}))  # as its own config declares it
    with pytest.raises(ValueError) as refused:
        load_vlm(str(tmp_path), device="cpu")
    assert str(refused.value) == f"model type {family!r} is not supported: {UNSUPPORTED[family]}"
    with pytest.raises(ValueError, match="has no adapter"):
        adapter_for("not_a_family")


def _unfolded(image: torch.Tensor, size: int) -> torch.Tensor:
    """An image [C, H, W] as patches [patches, size x size x C] in the order of torch's unfold, as Fuyu's own
    (torchvision) image processor gives them."""
    channels = image.shape[0]
    patches = image.unfold(1, size, size).unfold(2, size, size).reshape(channels, -1, size, size)
    return patches.permute(1, 2, 3, 0).reshape(-1, size * size * channels)


def test_fuyus_processor_patchifies_its_own_tensors_into_rows_of_image_tokens(tmp_path):
    """Fuyu's loaded processor gives pixel_values (the adapter's processor_kwargs; without them the legacy
    image_patches) in torch's unfold order, one |SPEAKER| a patch in rows each ended by an unmasked |NEWLINE|, then
    <s> (none of the placeholders lost to the tokenizer); saved again, it names transformers' image processor."""
    folder = build_tiny_model("fuyu", tmp_path / "fuyu")
    vlm = load_vlm(str(folder), device="cpu")
    picture = _picture(1, (64, 40))  # fitted into 32 px: 32 x 20, so 3 rows of 4 patches of 8 px
    encoded = encode_sample(vlm, picture, QUESTION, ["red", "blue"])
    ids, pixels = encoded.inputs["input_ids"][0], encoded.inputs["pixel_values"]
    padded = vlm.processor.image_processor([picture], return_tensors="pt")["images"][0, 0]
    assert torch.equal(pixels, _unfolded(padded[:, :24], 8))
    tokenizer = vlm.processor.tokenizer
    speaker, newline = tokenizer.convert_tokens_to_ids(["|SPEAKER|", "|NEWLINE|"])
    assert ids[:16].tolist() == ([speaker] * 4 + [newline]) * 3 + [tokenizer.bos_token_id]
    assert int(encoded.image_mask.sum()) == pixels.shape[0] == 12
    assert not (encoded.image_mask | encoded.text_mask)[ids == newline].any()
    vlm.processor.save_pretrained(tmp_path / "saved")
    saved, built = (json.loads((path / "processor_config.json").read_text())["image_processor"]
                    for path in (tmp_path / "saved", folder))
    assert saved["image_processor_type"] == built["image_processor_type"] == "FuyuImageProcessor"
    vlm.adapter = dataclasses.replace(vlm.adapter, processor_kwargs={})
    legacy = encode_sample(vlm, picture, QUESTION, ["red", "blue"]).inputs
    assert "pixel_values" not in legacy and "image_patches" in legacy


def test_fuyus_image_statistics_are_its_projected_patches(tmp_path):
    """Fuyu's image features are in last_hidden_state (the adapter's features_attr): the paper's statistics take
    their moments, the vision_embed_tokens projection of the sample's patches."""
    vlm = load_vlm(str(build_tiny_model("fuyu", tmp_path / "fuyu")), device="cpu")
    encoded = encode_sample(vlm, _picture(1, (64, 40)), QUESTION, ["red", "blue"])
    statistics = PaperStatistics()
    statistics.add(vlm, encoded)
    with torch.no_grad():
        projected = vlm.model.model.vision_embed_tokens(encoded.inputs["pixel_values"])
    result = statistics.result()
    assert torch.allclose(result.image_mean, projected.mean(0), atol=1e-6)
    assert torch.allclose(result.image_std, projected.std(0, unbiased=False), atol=1e-5)
