"""The paper's stage-1/2 probe conventions one by one, each checked against what it copies: transformers' own
`generate` scores, torch's global generator, plain torch statistics, the paper's span and image sizes."""

import json
import shutil

import pytest
import torch
from PIL import Image

from pidcore.atoms import PASSES
from pidcore.models.adapters import ADAPTERS
from pidcore.models.loading import load_vlm
from pidcore.models.paper_images import qwen_utils_image, smart_resize
from pidcore.pipeline.settings import ProfileSettings
from pidcore.probes.batching import image_features, probe_rows
from pidcore.probes.conventions import (
    CLEAN_CONVENTIONS,
    CONVENTIONS,
    QWEN_SCRIPT_CONVENTIONS,
    SHARED_CONVENTIONS,
    ProbeConventions,
    conventions_for,
)
from pidcore.probes.encoding import encode_sample
from pidcore.probes.engine import letter_token_ids, run_probes_batch
from pidcore.probes.noise import NoiseStream, seeded_noise
from pidcore.probes.paper_forward import paper_positions
from pidcore.probes.prompt import INSTRUCTION
from pidcore.probes.statistics import PaperStatistics, embedding_stats
from pidcore.shipped import MODELS

QUESTION, OPTIONS = "What colour is the shape?", ["red", "green", "blue", "yellow"]
PUBLISHED = ProbeConventions.of(QWEN_SCRIPT_CONVENTIONS)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory):
    """The zoo's trained Qwen2-VL with a repetition penalty in its generation config, as Qwen's checkpoints have."""
    folder = tmp_path_factory.mktemp("qwen") / "qwen2vl-s"
    shutil.copytree(MODELS / "qwen2vl-s", folder)
    config = json.loads((folder / "generation_config.json").read_text())
    (folder / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    return load_vlm(str(folder), device="cpu", dtype="float32")


def _images():
    return [Image.new("RGB", (64, 64), (200, 30, 30)), Image.new("RGB", (90, 130), (30, 30, 200))]


def test_published_applies_a_familys_own_script_or_the_shared_conventions():
    assert conventions_for("published", ADAPTERS["qwen2_vl"].paper_conventions) == PUBLISHED
    assert conventions_for("published", ADAPTERS["qwen2_5_vl"].paper_conventions) == PUBLISHED
    assert conventions_for("published", ADAPTERS["llava"].paper_conventions).applied == sorted(
        SHARED_CONVENTIONS, key=CONVENTIONS.index)
    assert conventions_for("clean", ADAPTERS["qwen2_vl"].paper_conventions) == CLEAN_CONVENTIONS
    assert conventions_for("published-minus-scores", frozenset(CONVENTIONS)).applied == [
        name for name in CONVENTIONS if name != "scores"]
    for bad in ("paper", "clean-minus-span", "published-minus-colour"):
        with pytest.raises(ValueError, match="unknown probe conventions"):
            conventions_for(bad, frozenset(CONVENTIONS))


def test_clean_runs_keep_the_ids_they_had_before_the_option_and_published_runs_get_their_own():
    clean = ProfileSettings(model="m", dataset="shapes:synergy", db="x.duckdb", probes="clean")
    published = ProfileSettings(model="m", dataset="shapes:synergy", db="x.duckdb")
    assert clean.run_id() == "821ddeb39d6b6401"  # the id this spelling had before `probes` existed
    assert published.run_id() != clean.run_id()


def test_span_masks_the_whole_turn_and_keeps_a_datasets_own_turn_verbatim(qwen):
    image = _images()[0]
    tokenizer = qwen.processor.tokenizer
    clean = encode_sample(qwen, image, QUESTION, OPTIONS)
    span = encode_sample(qwen, image, QUESTION, OPTIONS, conventions=ProbeConventions(span=True))
    masked = tokenizer.decode(clean.inputs["input_ids"][0][clean.text_mask])
    assert masked.startswith(QUESTION) and masked.endswith("D. yellow")
    assert tokenizer.decode(span.inputs["input_ids"][0][span.text_mask]).endswith(INSTRUCTION)
    own = "Look closely.\nWhat colour is the shape?\nA. red\nB. green\nC. blue\nD. yellow\nReply with a letter."
    paper = encode_sample(qwen, image, QUESTION, OPTIONS, prompt=own, conventions=ProbeConventions(span=True))
    assert tokenizer.decode(paper.inputs["input_ids"][0][paper.text_mask]) == own
    assert paper.turn == own


def test_image_sizes_follow_qwen_vl_utils_and_the_papers_processor_bounds(qwen):
    assert smart_resize(112, 112) == (112, 112)
    assert smart_resize(64, 64) == (56, 56)
    assert smart_resize(130, 90) == (140, 84)
    assert smart_resize(10, 1000) == (28, 1008)
    rgba = Image.new("RGBA", (64, 64), (255, 0, 0, 0))
    assert qwen_utils_image(rgba).getpixel((0, 0)) == (255, 255, 255)
    clean = encode_sample(qwen, _images()[0], QUESTION, OPTIONS)
    paper = encode_sample(qwen, _images()[0], QUESTION, OPTIONS, conventions=ProbeConventions(images=True))
    merge = 2 * 8  # the zoo model's spatial merge times its patch size
    assert int(clean.image_mask.sum()) == 64 * 64 // merge**2
    assert int(paper.image_mask.sum()) == 448 * 448 // merge**2  # 56 px from qwen_vl_utils, then >= 256*28*28 px


def test_masked_rows_get_plain_positions_and_the_full_row_keeps_mrope(qwen):
    encoded = [encode_sample(qwen, image, QUESTION, OPTIONS[: 2 + i]) for i, image in enumerate(_images())]
    rows = probe_rows(qwen, encoded)
    positions = paper_positions(qwen, rows.inputs)
    mask = rows.inputs["attention_mask"].bool()
    for row in range(len(PASSES) * len(encoded)):
        real = positions[:, row, mask[row]]
        plain = torch.arange(real.shape[1]).expand(3, -1)
        assert torch.equal(real, plain) != (row % len(PASSES) == 0)
    own, _ = next(m for m in qwen.model.modules() if hasattr(m, "get_rope_index")).get_rope_index(
        **{name: rows.inputs[name] for name in ("input_ids", "mm_token_type_ids", "image_grid_thw", "attention_mask")})
    assert torch.equal(positions[:, 0::3], own[:, 0::3])


def test_scores_are_generates_scores_for_the_full_pass_and_change_nothing_else(qwen):
    encoded = encode_sample(qwen, _images()[1], QUESTION, OPTIONS, conventions=PUBLISHED)
    stats = embedding_stats(qwen, [encoded])
    noise = [seeded_noise(encoded, stats, 1)]
    published = run_probes_batch(qwen, [encoded], noise, PUBLISHED)[0]
    unscored = run_probes_batch(qwen, [encoded], noise, ProbeConventions.of(set(CONVENTIONS) - {"scores"}))[0]
    with torch.no_grad():
        scores = qwen.model.generate(**encoded.inputs, max_new_tokens=1, do_sample=False, output_scores=True,
                                     return_dict_in_generate=True).scores[0][0]
    letters = letter_token_ids(qwen.processor.tokenizer, len(OPTIONS))
    assert torch.allclose(published.probs[0, -1], torch.softmax(scores[letters], -1), atol=1e-5)
    assert torch.allclose(published.letter_mass[0, -1], torch.softmax(scores, -1)[letters].sum(), atol=1e-5)
    assert (published.probs[0, -1] - unscored.probs[0, -1]).abs().max() > 1e-3
    assert torch.equal(published.probs[1:], unscored.probs[1:])


def test_the_stream_draws_what_torch_manual_seed_42_and_randn_like_draw_in_dataset_order(qwen):
    encoded = [encode_sample(qwen, image, QUESTION, OPTIONS[: 2 + i], conventions=PUBLISHED)
               for i, image in enumerate(_images() * 2)]
    stats = embedding_stats(qwen, encoded)
    stream = NoiseStream(stats, 42, torch.float32, torch.device("cpu"))
    for index, item in enumerate(encoded):
        stream.advance(str(index), item)
    drawn = {index: stream.noise(str(index), encoded[index]) for index in (3, 0, 2, 1)}
    torch.manual_seed(42)
    dim = len(stats.image_mean)
    for index, item in enumerate(encoded):
        image = torch.randn_like(torch.empty(1, int(item.image_mask.sum()), dim)) * stats.image_std + stats.image_mean
        text = torch.randn_like(torch.empty(1, int(item.text_mask.sum()), dim)) * stats.text_std + stats.text_mean
        assert torch.equal(drawn[index][0], image[0]) and torch.equal(drawn[index][1], text[0])


def test_paper_statistics_are_the_population_moments_of_image_features_and_the_turn_embedded_alone(qwen):
    encoded = [encode_sample(qwen, image, QUESTION, OPTIONS[: 2 + i], conventions=PUBLISHED)
               for i, image in enumerate(_images())]
    statistics = PaperStatistics()
    for item in encoded:
        statistics.add(qwen, item)
    stats = statistics.result()
    with torch.no_grad():
        images = torch.cat([torch.cat(list(image_features(qwen, item).pooler_output)) for item in encoded])
        texts = torch.cat([qwen.model.get_input_embeddings()(
            qwen.processor.tokenizer([item.turn], return_tensors="pt").input_ids)[0] for item in encoded])
    assert torch.allclose(stats.image_mean, images.mean(0), atol=1e-6)
    assert torch.allclose(stats.image_std, images.std(0, unbiased=False), atol=1e-6)
    assert torch.allclose(stats.text_mean, texts.mean(0), atol=1e-6)
    assert torch.allclose(stats.text_std, texts.std(0, unbiased=False), atol=1e-6)


def test_a_resumed_published_run_draws_what_a_whole_run_draws(tmp_path, monkeypatch):
    from pidcore.pipeline import profiling
    from pidcore.store import load_samples

    def settings(db):
        return ProfileSettings(model=str(MODELS / "qwen2vl-s"), dataset="shapes:language", db=str(tmp_path / db),
                               limit=10, chunk=2, device="cpu", dtype="float32", progress=False)

    _, whole_id = profiling.probe_run(settings("whole.duckdb"))
    real_write, writes = profiling.write_samples, []

    def killed_after_two(db, rows):
        if len(writes) == 2:
            raise KeyboardInterrupt("killed")
        writes.append(rows)
        real_write(db, rows)

    monkeypatch.setattr(profiling, "write_samples", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        profiling.probe_run(settings("resumed.duckdb"))
    monkeypatch.setattr(profiling, "write_samples", real_write)
    _, resumed_id = profiling.probe_run(settings("resumed.duckdb"))
    whole = {row.sample_id: row for row in load_samples(str(tmp_path / "whole.duckdb"), whole_id)}
    resumed = {row.sample_id: row for row in load_samples(str(tmp_path / "resumed.duckdb"), resumed_id)}
    assert whole.keys() == resumed.keys() and len(whole) == 10
    for sample_id, row in whole.items():
        assert (row.probs == resumed[sample_id].probs).all() and (row.x2 == resumed[sample_id].x2).all()


def test_the_diagnostics_name_each_runs_probe_conventions(tmp_path):
    from pidcore.pipeline.settings import probe_label

    assert probe_label({"dataset": "shapes:synergy"}) == "clean"  # made before the option existed
    assert probe_label({"dataset": "paper:/d", "probes": "published", "probe_conventions": ["span", "draws"]}) == \
        "published (span, draws)"
    assert probe_label({"dataset": "paper-stage2:/d/train"}).startswith("imported")
    assert probe_label({"source": "the paper's figures"}) == ""
    imported = ProfileSettings(model="m", dataset="paper-stage2:/d:abc:widen=False", db="x.duckdb")
    assert imported.run_id() == ProfileSettings(model="m", dataset="paper-stage2:/d:abc:widen=False", db="x.duckdb",
                                                probes="clean").run_id()
