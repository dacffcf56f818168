"""The published estimator against the paper's own stage-3 code on identical inputs.

tests/paper_oracle.json holds what the paper's script printed (run outside the project, on CPU, changing only
`.cuda()` and drop_last) for stage-2 folders that tests/stage2_files.py writes: planted gates, and the shipped
zoo's output-layer probe outputs. Here the same folders are written again, checked against the oracle's inputs
(tests/stage2_files.inputs_fingerprint), imported with `published` mode, and every atom must be within 0.01 bits.
"""

import json

import pytest

from pidcore.pipeline.settings import ProfileSettings
from pidcore.pipeline.stage2_import import import_stage2
from pidcore.shipped import DEFAULT_DB
from tests.stage2_files import inputs_fingerprint, oracle_numbers, planted_folder, same_inputs, zoo_folder

ORACLE = oracle_numbers()
TOLERANCE_BITS = 0.01


def _published_atoms(folder, model, tmp_path) -> list[float]:
    """Our published-mode atoms of a stage-2 folder's model, clipped at 0 as the paper's script prints them (no
    interval: the script prints none)."""
    settings = ProfileSettings(model="", dataset="", db=str(tmp_path / "r.duckdb"), device="cpu", progress=False,
                               bootstrap=0)
    (run,) = [found for found in import_stage2(folder, settings) if found.model == model]
    return [max(0.0, value) for value in run.results[0].atoms.as_dict().values()]


@pytest.mark.parametrize("gate", sorted(ORACLE["planted"]))
def test_published_mode_matches_the_papers_stage3_on_planted_gates(gate, tmp_path):
    folder = planted_folder(tmp_path / "stage2", gate)
    oracle = ORACLE["planted"][gate]
    assert same_inputs(inputs_fingerprint(folder, gate), oracle["inputs_fingerprint"]), "the oracle read other inputs"
    ours = _published_atoms(folder, gate, tmp_path)
    theirs = oracle["atoms"]
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < TOLERANCE_BITS, (gate, ours, theirs)


@pytest.mark.parametrize("name", sorted(ORACLE["zoo"]))
def test_published_mode_matches_the_papers_stage3_on_the_shipped_zoo(name, tmp_path):
    model, task = ORACLE["zoo"][name]["model"], ORACLE["zoo"][name]["task"]
    folder = zoo_folder(tmp_path / "stage2", DEFAULT_DB, model, task)
    oracle = ORACLE["zoo"][name]
    assert same_inputs(inputs_fingerprint(folder, name), oracle["inputs_fingerprint"]), "the shipped data changed"
    ours = _published_atoms(folder, name, tmp_path)
    theirs = oracle["atoms"]
    assert max(abs(a - b) for a, b in zip(ours, theirs)) < TOLERANCE_BITS, (name, ours, theirs)


def test_the_fingerprint_tells_other_inputs_apart(tmp_path):
    folder = planted_folder(tmp_path / "stage2", "XOR")
    original = inputs_fingerprint(folder, "XOR")
    path = folder / "val" / "XOR.json"
    records = json.loads(path.read_text())
    records[0], records[1] = records[1], records[0]
    path.write_text(json.dumps(records))
    assert not same_inputs(inputs_fingerprint(folder, "XOR"), original), "a reordering went unnoticed"
    records[0], records[1] = records[1], records[0]
    records[5]["conversations"][1]["v_feature"][3] += 1e-6
    path.write_text(json.dumps(records))
    assert not same_inputs(inputs_fingerprint(folder, "XOR"), original), "a changed value went unnoticed"
