"""`python -m pidcore import-paper`: stage-2 JSON files become one-layer runs in the `atoms` view."""

import json
import re

import numpy as np
import pytest

from pidcore.pipeline.stage2_records import PaperFileError
from pidcore.pipeline.stage2_records import read_stage2_file as read_paper_file
from pidcore.store import load_samples, read_atoms, read_runs
from tests.cli_run import run_cli
from tests.stage2_files import conversation_records, write_folder


def _vision_unique_records(n=400, seed=0):
    """y = the image's bit; the image-only probe knows it, the text-only probe is uniform."""
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        a, b = int(rng.integers(2)), int(rng.integers(2))
        x1 = np.eye(2)[a] + 0.05 * rng.standard_normal(2)
        x2 = np.eye(2)[b] + 0.05 * rng.standard_normal(2)
        knows = [0.95, 0.05] if a == 0 else [0.05, 0.95]
        records.append({"id": f"q{i}", "image_feature": x1.tolist(), "text_feature": x2.tolist(),
                        "p_y_x1": knows, "p_y_x2": [0.5, 0.5], "p_y_x1x2": knows, "answer": "AB"[a]})
    return records


def _run(*args):
    return run_cli("import-paper", *args)


@pytest.fixture(scope="module")
def stage2(tmp_path_factory):
    folder = tmp_path_factory.mktemp("paper")
    records = _vision_unique_records()
    records[3] = {"id": "broken", "image_feature": [1.0, 0.0], "text_feature": [0.0, 1.0],
                  "p_y_x1": [0.7, 0.7], "p_y_x2": [0.5, 0.5], "p_y_x1x2": [0.5, 0.5]}
    records[5]["text_feature"] = [1.0, 2.0, 3.0]
    records[7] = "not a record"
    path = folder / "llava-1.5-7b_mmbench.json"
    path.write_text(json.dumps({"model": "llava-1.5-7b", "task": "MMBench", "family": "llava", "samples": records}))
    return folder, path


def test_import_stores_one_layer_with_the_planted_atoms(stage2):
    folder, path = stage2
    db = folder / "paper.duckdb"
    done = _run(str(path), "--db", str(db), "--n-layers", "32", "--stage", "2", "--checkpoint-step", "5000")
    assert done.returncode == 0, done.stderr[-2000:]
    atoms = read_atoms(db)
    assert len(atoms) == 1
    row = atoms.iloc[0]
    assert (row["model"], row["task"], row["family"]) == ("llava-1.5-7b", "MMBench", "llava")
    assert row["layer"] == row["n_layers"] == 32 and row["stage"] == "2" and row["step"] == 5000
    assert row["accuracy"] == pytest.approx(1.0)
    expected_u1 = 1 + 0.95 * np.log2(0.95) + 0.05 * np.log2(0.05)
    assert row["u1"] == pytest.approx(expected_u1, abs=0.03)
    assert abs(row["r"]) < 0.03 and abs(row["u2"]) < 0.03 and abs(row["s"]) < 0.03
    assert "skipped" in done.stderr and "broken" in done.stderr
    rerun = _run(str(path), "--db", str(db), "--n-layers", "32", "--stage", "2", "--checkpoint-step", "5000")
    assert rerun.returncode == 0 and read_atoms(db).equals(atoms)


def test_bad_records_are_skipped_with_reasons(stage2):
    run = read_paper_file(stage2[1])
    reasons = dict(run.skipped)
    assert set(reasons) == {"broken", "q5", "7"}
    assert "not a distribution" in reasons["broken"]
    assert "differ from the first record" in reasons["q5"]
    assert reasons["7"] == "not a JSON object"
    assert len(run.ids) == 397


def test_a_record_with_a_bad_answer_is_skipped_whole_and_later_labels_stay_aligned(tmp_path):
    records = _vision_unique_records(n=40)
    records[10]["answer"] = "Z"
    path = tmp_path / "m_task.json"
    path.write_text(json.dumps(records))
    run = read_paper_file(path)
    assert dict(run.skipped) == {"q10": "answer 'Z' is neither a letter A-B nor an index below 2"}
    assert len(run.ids) == len(run.gold) == len(run.x1) == 39
    assert run.gold == [int(np.argmax(probs[0])) for probs in run.probs]


def test_a_bad_file_is_a_clear_error_and_the_good_file_still_lands(stage2, tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps([{"id": 1, "image_feature": [1]}]))
    garbage = tmp_path / "garbage.json"
    garbage.write_bytes(b"\x00{not json")
    with pytest.raises(PaperFileError, match="no usable record.*missing x2"):
        read_paper_file(empty)
    db = tmp_path / "r.duckdb"
    done = _run(str(garbage), str(empty), str(stage2[1]), "--db", str(db))
    assert done.returncode == 2
    assert "garbage.json is not valid JSON" in done.stderr and "Traceback" not in done.stderr
    assert len(read_atoms(db)) == 1


def _mixed_records(n, seed, width=4, prefix="r"):
    """Records in the paper's layout with 2, 3 or 4 options zero-padded to `width`; the gold letter is the option
    the image decides, and the full pass agrees with it."""
    rng = np.random.default_rng(seed)
    features, probes, counts, labels = [], [], [], []
    for _ in range(n):
        k = int(rng.integers(2, width + 1))
        gold = int(rng.integers(k))
        image = np.full(k, 0.02 / (k - 1))
        image[gold] = 0.98
        features.append((np.eye(width)[gold] + 0.05 * rng.standard_normal(width), rng.standard_normal(3)))
        probes.append((image, np.full(k, 1.0 / k), image))
        counts.append(k)
        labels.append("ABCD"[gold])
    x1, x2 = (np.stack(column) for column in zip(*features))
    p1, p2, p12 = ([probe[i] for probe in probes] for i in range(3))
    return conversation_records(x1, x2, p1, p2, p12, num_options=counts, width=width, labels=labels, prefix=prefix)


@pytest.fixture(scope="module")
def stage2_folder(tmp_path_factory):
    """A train/val folder: one four-wide model with bad records among good ones, one two-option model, and a
    model without a val file."""
    folder = tmp_path_factory.mktemp("stage2")
    train, val = _mixed_records(200, seed=1, prefix="t"), _mixed_records(120, seed=2, prefix="v")
    bad = {("train", 50): ("label", "E"), ("train", 51): ("vl_prob", [0.5, 0.25, 0.25, 0.0]),
           ("val", 10): ("label", "Z"), ("val", 11): ("v_feature", None)}
    for (split, index), (key, value) in bad.items():
        records = train if split == "train" else val
        records[index]["num_options"] = 2 if key == "vl_prob" else records[index]["num_options"]
        records[index]["conversations"][1][key] = value
    val[12] = {"id": "no-turn", "num_options": 4, "conversations": [{"from": "human", "value": "?"}]}
    val[13]["id"] = val[14]["id"]
    write_folder(folder, "wide", train, val)
    write_folder(folder, "two", _mixed_records(80, seed=3, width=2, prefix="t"),
                 _mixed_records(60, seed=4, width=2, prefix="v"))
    (folder / "train" / "lonely.json").write_text(json.dumps(_mixed_records(20, seed=5)))
    return folder, {"train": train, "val": val}


def test_a_stage2_folder_imports_every_model_in_both_splits(stage2_folder):
    folder, _ = stage2_folder
    db = folder / "paper.duckdb"
    done = _run(str(folder), "--db", str(db), "--task", "MMBench", "--n-layers", "28", "--family", "llava",
                "--bootstrap", "20")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "imported two: 140 records kept, 0 skipped" in done.stdout
    assert "imported wide: 314 records kept, 6 skipped" in done.stdout
    assert "lonely.json has no val/ counterpart" in done.stderr
    atoms = read_atoms(db).set_index("model")
    assert sorted(atoms.index) == ["two", "wide"] and set(atoms["layer"]) == {28} and set(atoms["task"]) == {"MMBench"}
    assert atoms.loc["wide", "accuracy"] == 1.0 and atoms.loc["wide", "n_samples"] == 116
    assert atoms.loc["wide", "u1"] > 0.5 and abs(atoms.loc["wide", "u2"]) < 0.05
    assert atoms.loc["wide", "u1_lo"] <= atoms.loc["wide", "u1"] <= atoms.loc["wide", "u1_hi"]


def test_every_good_record_lands_with_its_own_label_and_every_bad_one_is_skipped_whole(stage2_folder):
    folder, records = stage2_folder
    db = folder / "paper.duckdb"
    (run_id,) = read_runs(db).set_index("model").loc[["wide"], "run_id"]
    stored = {sample.sample_id: sample for sample in load_samples(db, run_id)}
    skipped = {"t50", "t51", "v10", "v11", "no-turn"}
    expected = {}
    for split in ("train", "val"):
        for record in records[split]:
            key = f"{split}:{record['id']}"
            if record["id"] not in skipped and key not in expected:
                turn = record["conversations"][1]
                split_name = {"train": "fit", "val": "evaluation"}[split]
                expected[key] = ("ABCD".index(turn["label"]), turn["vl_prob"], split_name)
    assert set(stored) == set(expected) and len(stored) == 314
    for sample_id, (gold, full, split) in expected.items():
        sample = stored[sample_id]
        assert (sample.gold, sample.split) == (gold, split) and np.allclose(sample.probs[0, 0], full)


def test_bad_records_in_the_papers_layout_are_named_with_their_reasons(stage2_folder):
    folder, records = stage2_folder
    found = read_paper_file(folder / "val" / "wide.json")
    reasons = dict(found.skipped)
    assert reasons["v10"] == "label 'Z' is not one of the option letters " + \
        ("A-" + "ABCD"[records["val"][10]["num_options"] - 1])
    assert reasons["v11"] == "missing v_feature"
    assert reasons["no-turn"] == "no gpt turn in conversations"
    assert reasons[records["val"][14]["id"]] == f"duplicate id {records['val'][14]['id']!r}"
    train = dict(read_paper_file(folder / "train" / "wide.json").skipped)
    assert train["t51"] == "vl_prob puts probability past its 2 options"
    assert train["t50"].startswith("label 'E' is not one of the option letters")


def test_repeats_report_how_much_the_split_moves_the_atoms(stage2):
    folder, path = stage2
    db = folder / "repeats.duckdb"
    done = _run(str(path), "--db", str(db), "--repeats", "3", "--bootstrap", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(line for line in done.stdout.splitlines() if "refitted on 3 seeds" in line)
    assert "(redrawn per seed)" in line
    spread = {name: float(value) for name, value in re.findall(r"(R|U1|U2|S) ([0-9.]+)", line)}
    assert set(spread) == {"R", "U1", "U2", "S"} and 0 < spread["U1"] < 0.1
    assert read_atoms(db)["r_lo"].isna().all()


def test_widen_uniform_follows_the_papers_mmbench_stage3(tmp_path):
    records = _mixed_records(6, seed=7)
    three = next(record for record in records if record["num_options"] == 3)
    three["conversations"][1]["l_prob"] = [1 / 3, 1 / 3, 1 / 3, 0.0]
    path = tmp_path / "m.json"
    path.write_text(json.dumps([three]))
    assert np.allclose(read_paper_file(path).probs[0][2], [1 / 3, 1 / 3, 1 / 3, 0])
    assert np.allclose(read_paper_file(path, widen_uniform=True).probs[0][2], [0.25] * 4)


def test_odd_records_first_or_later_are_skipped_by_name_and_the_common_width_kept(tmp_path):
    """Issue 26 N1/N2: the file's width is the most common one, so two six-wide records at its head are the ones
    skipped (not every four-wide record after them), and a record whose probes differ in length is skipped by name
    instead of refusing the file; every kept record keeps its own label."""
    records = _mixed_records(30, seed=3)
    for record in records[:2]:
        turn = record["conversations"][1]
        for key in ("v_prob", "l_prob", "vl_prob"):
            turn[key] = turn[key] + [0.0, 0.0]
    records[7]["conversations"][1]["l_prob"] = records[7]["conversations"][1]["l_prob"][:3]
    path = tmp_path / "m.json"
    path.write_text(json.dumps(records))
    found = read_paper_file(path)
    reasons = dict(found.skipped)
    assert set(reasons) == {"r0", "r1", "r7"} and len(found.ids) == 27
    assert reasons["r0"].startswith("shapes (4,), (3,), k=6 differ from the first record of the most common shapes "
                                    "(27 of 29 records), 'r2': (4,), (3,), k=4")
    assert reasons["r7"] == "its probabilities differ in length (vl_prob 4, v_prob 4, l_prob 3)"
    by_id = {record["id"]: record["conversations"][1]["label"] for record in records}
    assert ["ABCD"[gold] for gold in found.gold] == [by_id[row_id] for row_id in found.ids]


def test_two_organisations_models_of_one_name_stay_two_models(tmp_path):
    """N5: teamA/vlm-7b and teamB/vlm-7b are names, not paths: both are stored and shown under their whole ids."""
    db = tmp_path / "r.duckdb"
    for team, seed in (("teamA", 0), ("teamB", 1)):
        path = tmp_path / f"{team}.json"
        path.write_text(json.dumps({"model": f"{team}/vlm-7b", "task": "MMBench",
                                    "samples": _vision_unique_records(n=40, seed=seed)}))
        assert _run(str(path), "--db", str(db), "--bootstrap", "0").returncode == 0
    assert _run(str(tmp_path / "teamA.json"), "--db", str(db), "--model", "org/final", "--bootstrap", "0",
                "--task", "other").returncode == 0
    assert sorted(read_atoms(db)["model"]) == ["org/final", "teamA/vlm-7b", "teamB/vlm-7b"]


def test_importing_again_with_another_family_says_so_and_another_depth_is_refused_by_name(tmp_path):
    """N4: the same file imported again with another --family takes it and names the old and new family; with
    another --n-layers it is refused, naming the stored depth's flag and leaving every stored row as it was."""
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"model": "m", "task": "MMBench", "samples": _vision_unique_records(n=40)}))
    db = tmp_path / "r.duckdb"
    assert _run(str(path), "--db", str(db), "--n-layers", "32", "--family", "llava", "--bootstrap", "0").returncode == 0
    again = _run(str(path), "--db", str(db), "--n-layers", "32", "--family", "qwen", "--bootstrap", "0")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "family 'llava' -> 'qwen'" in again.stderr
    assert list(read_runs(db)["family"]) == ["qwen"] and list(read_atoms(db)["family"]) == ["qwen"]
    before = read_atoms(db)
    deeper = _run(str(path), "--db", str(db), "--n-layers", "40", "--family", "qwen", "--bootstrap", "0")
    assert deeper.returncode == 2
    assert "stored with depth 32, not 40" in deeper.stderr and "--n-layers 32" in deeper.stderr
    assert "Traceback" not in deeper.stderr
    assert read_atoms(db).equals(before) and list(read_runs(db)["n_layers"]) == [32]
