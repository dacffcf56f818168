"""Stored samples keep what they showed (question, options, image as PNG within a bound), read back light for a
table; `samples attach` gives them to databases written before, skipping aloud what disagrees with the dataset."""

import io
import shutil

import duckdb
import numpy as np
import pyarrow.compute as pc
import pytest
from PIL import Image

from pidcore.cli import main
from pidcore.datasets import load_dataset
from pidcore.models.tiny import build_tiny_model
from pidcore.store import (MAX_STORED_IMAGE_BYTES, SAMPLE_TABLE_COLUMNS, image_to_png, load_samples, read_atoms,
                           read_run, read_run_questions, read_runs, read_sample_image, read_sample_table)
from pidcore.store.schema import SAMPLES, TABLES, Table
from tests.colour_files import write_colour_task

FAST = ["--device", "cpu", "--layers", "last", "--bootstrap", "0", "--limit", "12"]
TEXT_COLUMNS = {"question", "options", "image"}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A tiny LLaVA profiled on 12 samples of the shapes synergy task and on a 12-question JSONL file."""
    root = tmp_path_factory.mktemp("texts")
    model = build_tiny_model("llava", root / "tiny-llava")
    write_colour_task(root, "colours.jsonl", 12, lambda i: f"What colour is shape {i}?", with_ids=True)
    db = root / "results.duckdb"
    for dataset in ("shapes:synergy", f"jsonl:{root / 'colours.jsonl'}"):
        assert main(["profile", "--model", str(model), "--dataset", dataset, "--db", str(db), *FAST]) == 0
    runs = read_runs(db).set_index("task")["run_id"]
    return root, db, runs["shapes:synergy"], runs["jsonl:colours.jsonl"]


def old_copy(source, target, edit=lambda samples: samples):
    """A copy of a results database as written before samples kept their texts: no question, options or image
    columns; `edit` may change the samples' rows (an Arrow table) on the way."""
    with duckdb.connect(str(source), read_only=True) as connection:
        rows = {table.name: connection.table(table.name).to_arrow_table() for table in TABLES}
    old_samples = Table(SAMPLES.name, tuple(c for c in SAMPLES.columns if c[0] not in TEXT_COLUMNS), SAMPLES.key)
    rows[SAMPLES.name] = edit(rows[SAMPLES.name].select(old_samples.column_names))
    with duckdb.connect(str(target)) as connection:
        for table in (old_samples if table is SAMPLES else table for table in TABLES):
            connection.execute(table.create_sql())
            connection.from_arrow(rows[table.name]).insert_into(table.name)
    return target


def pixels(png: bytes) -> bytes:
    return Image.open(io.BytesIO(png)).convert("RGB").tobytes()


def test_profile_stores_question_options_and_image_and_the_reads_return_them(world):
    _, db, synergy, _ = world
    dataset = load_dataset("shapes:synergy", limit=12).samples
    table = read_sample_table(db, synergy)
    assert list(table.columns) == SAMPLE_TABLE_COLUMNS
    assert list(table["sample_id"]) == [sample.id for sample in dataset] and list(table["position"]) == list(range(12))
    assert list(table["question"]) == [sample.question for sample in dataset]
    assert list(table["options"]) == [["yes", "no"]] * 12 and table["has_image"].all()
    assert list(table["gold"]) == [sample.letters.index(sample.answer) for sample in dataset]
    assert all(probs.shape[0] == 3 and probs.shape[-1] == 2 for probs in table["probs"])
    assert pixels(read_sample_image(db, synergy, dataset[3].id)) == dataset[3].image.tobytes()
    assert read_sample_image(db, synergy, "no-such-sample") is None
    rows = load_samples(db, synergy)
    assert rows[3].question == dataset[3].question and rows[3].options == ["yes", "no"]
    assert rows[3].image is None  # estimation reads no images
    questions = read_run_questions(db, [synergy])
    assert set(questions["question"]) == {sample.question for sample in dataset}
    assert set(questions["run_id"]) == {synergy}
    assert list(read_run_questions(db, ["no-such-run"]).columns) == ["run_id", "question"]
    run = read_run(db, synergy)
    assert (run["task"], run["n_layers"], run["settings"]["dataset"]) == ("shapes:synergy", 2, "shapes:synergy")


def test_an_old_database_is_upgraded_and_attach_fills_every_sample(world, tmp_path, capsys):
    _, db, synergy, colours = world
    old = old_copy(db, tmp_path / "old.duckdb")
    before = read_sample_table(old, colours)
    assert before["question"].isna().all() and not before["has_image"].any() and before["options"].isna().all()
    assert main(["samples", "attach", "--db", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"run {synergy}, task shapes:synergy: attached 12, skipped 0" in out
    assert "attached 24 samples in 2 runs" in out
    for run_id in (synergy, colours):
        new, attached = read_sample_table(db, run_id), read_sample_table(old, run_id)
        assert attached.drop(columns="probs").equals(new.drop(columns="probs"))
        assert all(np.array_equal(a, b) for a, b in zip(attached["probs"], new["probs"]))
        assert read_sample_image(old, run_id, new["sample_id"][5]) == read_sample_image(db, run_id, new["sample_id"][5])
    assert read_atoms(old).equals(read_atoms(db))
    assert main(["samples", "attach", "--db", str(old)]) == 0
    assert "every stored sample has its question and options already" in capsys.readouterr().out


def test_a_sample_that_disagrees_with_its_dataset_is_skipped_whole_and_named(world, tmp_path, capsys):
    _, db, synergy, _ = world

    def edit(samples):
        third, fifth = pc.equal(samples["sample_id"], "synergy-3"), pc.equal(samples["sample_id"], "synergy-5")
        gold = pc.if_else(third, pc.subtract(1, samples["gold"]), samples["gold"])
        n_options = pc.if_else(fifth, 3, samples["n_options"])
        return samples.set_column(samples.schema.get_field_index("gold"), "gold", gold).set_column(
            samples.schema.get_field_index("n_options"), "n_options", n_options)

    old = old_copy(db, tmp_path / "old.duckdb", edit)
    assert main(["samples", "attach", "--db", str(old)]) == 0
    captured = capsys.readouterr()
    summary = f"run {synergy}, task shapes:synergy: attached 10, skipped 2 (gold differs: 1, options differ: 1)"
    assert summary in captured.out
    assert "skipped sample synergy-3: gold differs: option index" in captured.err
    assert "skipped sample synergy-5: options differ: 3 stored, 2 in the dataset" in captured.err
    table = read_sample_table(old, synergy).set_index("sample_id")
    assert table.loc[["synergy-3", "synergy-5"], "question"].isna().all()
    assert not table.loc[["synergy-3", "synergy-5"], "has_image"].any()
    assert table.drop(index=["synergy-3", "synergy-5"])["question"].notna().all()


def test_a_run_whose_dataset_cannot_be_loaded_fails_aloud_and_the_others_are_attached(world, tmp_path, capsys):
    root, db, synergy, colours = world
    old = old_copy(db, tmp_path / "old.duckdb")
    shutil.move(root / "colours.jsonl", tmp_path / "moved.jsonl")
    try:
        assert main(["samples", "attach", "--db", str(old)]) == 2
    finally:
        shutil.move(tmp_path / "moved.jsonl", root / "colours.jsonl")
    captured = capsys.readouterr()
    assert f"error: run {colours} (jsonl:colours.jsonl): cannot load its dataset" in captured.err
    assert "jsonl dataset file not found" in captured.err and "1 runs failed" in captured.out
    assert read_sample_table(old, synergy)["question"].notna().all()
    assert read_sample_table(old, colours)["question"].isna().all()


def test_an_image_whose_png_exceeds_the_bound_is_not_stored():
    assert MAX_STORED_IMAGE_BYTES == 2**20
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8))
    assert image_to_png(noise) is None
    small = noise.crop((0, 0, 64, 64))
    png = image_to_png(small)
    assert len(png) <= MAX_STORED_IMAGE_BYTES and pixels(png) == small.tobytes()


def test_a_run_whose_dataset_was_edited_since_it_was_probed_is_refused(world, tmp_path, capsys):
    root, db, _, colours = world
    old = old_copy(db, tmp_path / "old.duckdb")
    original = (root / "colours.jsonl").read_text()
    (root / "colours.jsonl").write_text(original.replace("shape 4?", "shape four?"))
    try:
        assert main(["samples", "attach", "--db", str(old)]) == 2
    finally:
        (root / "colours.jsonl").write_text(original)
    assert "its content has changed since the run probed it" in capsys.readouterr().err
    assert read_sample_table(old, colours)["question"].isna().all()
