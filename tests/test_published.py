"""The paper's published results: `paper build` from the shipped CSVs, the shipped database, and `findings`, whose
JSON must give the paper's regimes, strategies, silent phases and stage-2 rise."""

import csv
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest
from scipy.stats import spearmanr

from pidcore.atoms import PAPER_ESTIMATOR
from pidcore.shipped import DEFAULT_DB, PAPER_CSV, PAPER_DB
from pidcore.store import read_atoms


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "pidcore", *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    db = tmp_path_factory.mktemp("paper") / "paper.duckdb"
    done = _cli("paper", "build", "--db", str(db))
    assert done.returncode == 0, done.stderr
    return db, done


@pytest.fixture(scope="module")
def paper_findings():
    done = _cli("findings", "--db", str(PAPER_DB), "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_build_stores_every_csv_row_in_the_store_schema(built):
    db, done = built
    assert "136 runs, 400 rows of published atoms" in done.stdout and "0 source rows skipped" in done.stdout
    atoms = read_atoms(db)
    assert set(atoms["estimator"]) == {PAPER_ESTIMATOR} and atoms["model"].nunique() == 26
    outputs = atoms[atoms["checkpoint"] == "final"]
    with (PAPER_CSV / "atoms.csv").open() as handle:
        published = list(csv.DictReader(handle))
    for row in published:
        (stored,) = outputs[(outputs["model"] == row["model"]) & (outputs["task"] == row["dataset"])
                           & (outputs["layer"].isna() | (outputs["layer"] == outputs["n_layers"]))].itertuples()
        assert (stored.family, stored.s, stored.u2, stored.accuracy) == (
            row["family"], float(row["s"]), float(row["u2"]), float(row["accuracy"]))
    depths = outputs.groupby("model")["n_layers"].first().dropna().to_dict()
    assert depths == {"InternVL3-2B": 28, "LLaVA-1.5-13B": 40, "LLaVA-1.5-7B": 32, "Qwen2.5-VL-3B": 36}


def test_a_figure_that_does_not_show_an_atom_is_stored_as_null_not_zero(built):
    atoms = read_atoms(built[0])
    curve = atoms[(atoms["model"] == "InternVL3-2B") & (atoms["task"] == "MMBench")].set_index("layer")
    assert curve.loc[1, ["r", "u1", "u2"]].isna().all() and curve.loc[1, "s"] == 0.0
    assert len(curve) == 28 and curve.index.min() == 1
    training = atoms[(atoms["model"] == "LLaVA-1.5-7B") & (atoms["checkpoint"] == "stage1-2") & (atoms["task"] == "PMC-VQA")]
    assert training["u1"].isna().all() and (training["step"] == 2).all() and (training["stage"] == "1").all()


def test_the_training_checkpoints_are_numbered_over_both_stages(built):
    atoms = read_atoms(built[0])
    trajectory = atoms[(atoms["model"] == "LLaVA-1.5-13B") & (atoms["task"] == "MMBench") & atoms["stage"].notna()]
    ordered = trajectory.sort_values("step")
    assert ordered["checkpoint"].tolist() == [f"stage{s}-{i}" for s in (1, 2) for i in (1, 2, 3, 4)]
    assert ordered["step"].tolist() == list(range(1, 9)) and (ordered["layer"] == 40).all()


def test_the_shipped_database_is_what_the_build_makes(built):
    columns = ["model", "family", "task", "checkpoint", "step", "stage", "layer", "n_layers", "r", "u1", "u2", "s",
               "accuracy"]
    key = ["model", "task", "checkpoint", "layer"]
    fresh = read_atoms(built[0])[columns].sort_values(key).reset_index(drop=True)
    shipped = read_atoms(PAPER_DB)[columns].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(fresh, shipped)


def test_a_bad_row_is_skipped_whole_and_named(tmp_path):
    folder = tmp_path / "csv"
    shutil.copytree(PAPER_CSV, folder)
    lines = (folder / "atoms.csv").read_text().splitlines()
    lines[3] = lines[3].replace(lines[3].split(",")[6], "lots", 1)
    (folder / "atoms.csv").write_text("\n".join(lines) + "\n")
    done = _cli("paper", "build", "--from", str(folder), "--db", str(tmp_path / "p.duckdb"))
    assert done.returncode == 0, done.stderr
    assert "skipped atoms.csv:4: s 'lots' is not a number" in done.stderr and "1 source rows skipped" in done.stdout
    assert len(read_atoms(tmp_path / "p.duckdb")) == 399


def test_a_folder_without_the_csvs_is_a_clear_error(tmp_path):
    done = _cli("paper", "build", "--from", str(tmp_path), "--db", str(tmp_path / "p.duckdb"))
    assert done.returncode == 2 and "lacks atoms.csv, layers.csv, training.csv" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "p.duckdb").exists()


def test_findings_give_the_papers_task_regimes_with_its_table_2_correlations(paper_findings):
    tasks = paper_findings["tasks"]
    assert {task: found["regime"] for task, found in tasks.items()} == {
        "MMBench": "synergy-driven", "POPE": "synergy-driven", "Reefknot": "knowledge-driven",
        "PMC-VQA": "knowledge-driven"}
    published = pd.read_csv(PAPER_CSV / "atoms.csv")
    for task, rows in published.groupby("dataset"):
        assert tasks[task]["rho"]["s"] == pytest.approx(spearmanr(rows["accuracy"], rows["s"]).statistic)
        assert tasks[task]["rho"]["u2"] == pytest.approx(spearmanr(rows["accuracy"], rows["u2"]).statistic)
        assert tasks[task]["p"]["s"] == pytest.approx(spearmanr(rows["accuracy"], rows["s"]).pvalue)
        assert tasks[task]["n_models"] == 26 and set(tasks[task]["rho"]) == {"s", "u2", "i12", "coinfo"}
    assert tasks["MMBench"]["rho"]["s"] == pytest.approx(0.750, abs=5e-4)
    assert tasks["POPE"]["rho"]["s"] == pytest.approx(0.742, abs=5e-4)


def test_findings_give_the_papers_family_strategies(paper_findings):
    strategies = {family: found["strategy"] for family, found in paper_findings["families"].items()}
    for family in ("InternVL2.5", "InternVL3", "Qwen2-VL", "Qwen2.5-VL", "LLaVA-OneVision"):
        assert strategies[family] == "fusion-centric", family
    for family in ("Gemma3", "Cambrian-1"):
        assert strategies[family] == "language-centric", family
    assert all(strategy.startswith(("fusion", "language", "undetermined")) for strategy in strategies.values())


def test_findings_find_a_silent_phase_on_every_published_layer_curve(paper_findings):
    curves = paper_findings["curves"]
    assert len(curves) == 8
    assert all(curve["phases"]["silent"] is not None and curve["phases"]["silent"][0] == 1 for curve in curves)


def test_findings_call_qwen2_5_vl_3b_not_three_phase_its_fusion_beginning_inside_its_language_build_up(paper_findings):
    qwen = [curve for curve in paper_findings["curves"] if curve["model"] == "Qwen2.5-VL-3B"]
    assert len(qwen) == 2 and not any(curve["three_phase"] for curve in qwen)
    assert all(curve["phases"]["fusion"][0] <= curve["phases"]["language"][1] for curve in qwen)
    assert sum(curve["three_phase"] for curve in paper_findings["curves"]) == 3


def test_findings_find_the_stage_2_rise_of_llava_1_5_7b_on_mmbench(paper_findings):
    (row,) = [row for row in paper_findings["training"] if (row["model"], row["task"]) == ("LLaVA-1.5-7B", "MMBench")]
    assert row["rise"] is True and row["stage2_rise_s"] == pytest.approx(0.977 - 0.493)


def test_findings_on_the_demo_zoo_say_undetermined_with_a_reason():
    done = _cli("findings", "--db", str(DEFAULT_DB), "--json")
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert {regime["regime"] for regime in found["tasks"].values()} == {"undetermined"}
    assert all("a rank correlation needs at least 5" in regime["why"] for regime in found["tasks"].values())
    assert {strategy["strategy"] for strategy in found["families"].values()} == {"undetermined"}
    assert len(found["curves"]) == 4 * 4 * 9 and any(row["rise"] for row in found["training"])
    text = _cli("findings", "--db", str(DEFAULT_DB))
    assert "estimator batch-published" in text.stdout and "Rules:" in text.stdout


def test_findings_name_a_missing_estimator():
    done = _cli("findings", "--db", str(PAPER_DB), "--estimator", "batch-published")
    assert done.returncode == 2 and "no rows of estimator 'batch-published'" in done.stderr
