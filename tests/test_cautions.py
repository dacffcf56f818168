"""Cautions where the measurement cannot say much (pidcore.analysis.cautions): each rule fires on inputs built to
trigger it and stays quiet on a control built not to, in the rules themselves, `profile`'s printed output,
`findings --json`, the depth page and the minimum y-range of its chart."""

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pidcore.analysis.cautions import (CAUTION_RULES, CONSTANT_INPUT, FALLBACK, MASKING_COST, NOISE_FLOOR,
                                       UNIFORM_PROBE, cautions, constant_inputs, masking_costs, run_cautions)
from pidcore.analysis.flags import join_diagnostics
from pidcore.atoms import ATOMS, NOISE_FLOOR_BITS, Atoms
from pidcore.cli import main
from pidcore.dashboard.charts import layer_curves, trajectories
from pidcore.models.tiny import build_tiny_model
from pidcore.pipeline.settings import DEFAULT_ESTIMATOR
from pidcore.shipped import DEFAULT_DB
from pidcore.store import read_atoms, read_diagnostics
from pidcore.store.read import read_caution_inputs
from pidcore.store import SampleRow, register_run, write_layer, write_samples
from tests.app_pages import open_page
from tests.colour_files import write_colour_task

NAMES = ("model-a", "task-a", "final")
K = 4
UNIFORM = np.full(K, 1 / K)
PEAKED = np.array([0.97, 0.01, 0.01, 0.01])  # 1.76 bits from a uniform guess
SAMPLES = 64


def _samples(questions=None, images=None, probe=PEAKED, n=SAMPLES, uniform_image_only=0):
    """Samples as store.read_caution_inputs gives them: every probe `probe` at one stored layer, the image-only
    probe uniform on the first `uniform_image_only`; questions and image digests as given (None: not stored)."""
    probs = np.tile(probe, (n, 3, 1, 1))
    probs[:uniform_image_only, 1] = UNIFORM
    return pd.DataFrame({"run_id": "run", "question": questions or [None] * n, "options": ['["a", "b"]'] * n,
                         "image_digest": images or [None] * n, "probs": list(probs)})


def _rows(*totals, n_layers=None):
    """One row per layer 0, 1, ... whose atoms add up to each total (all of it as U1)."""
    depth = len(totals) - 1 if n_layers is None else n_layers
    return pd.DataFrame([{"layer": layer, "n_layers": depth, "r": 0.0, "u1": total, "u2": 0.0, "s": 0.0}
                         for layer, total in enumerate(totals)], columns=["layer", "n_layers", *ATOMS])


def _kinds(found):
    return [caution.kind for caution in found]


def test_a_constant_question_fires_and_varied_questions_stay_quiet():
    [(modality, detail)] = constant_inputs(_samples(["What colour is the shape?"] * SAMPLES))
    assert modality == "question" and detail.startswith("the question (with its options) is the same in 64 of 64")
    assert "X2 carries no information across this set" in detail and "reads as S" in detail
    nearly = [f"q{i}" for i in range(6)] + ["same"] * 58  # 58 of 64 is at least 90%
    assert _kinds(run_cautions(NAMES, _rows(), _samples(nearly), {})) == [CONSTANT_INPUT]
    assert constant_inputs(_samples([f"q{i}" for i in range(7)] + ["same"] * 57)) == []  # 57 of 64 is not
    assert constant_inputs(_samples([f"Question {i}: what colour?" for i in range(SAMPLES)])) == []


def test_the_same_image_by_content_fires_and_varied_images_stay_quiet():
    [(modality, detail)] = constant_inputs(_samples(images=["d41d8cd9"] * SAMPLES))
    assert modality == "image" and "the same in 64 of 64 samples: X1 carries no information" in detail
    assert constant_inputs(_samples(images=[f"digest{i % 3}" for i in range(SAMPLES)])) == []
    assert constant_inputs(_samples()) == []  # neither stored: nothing to judge


def test_a_near_uniform_probe_fires_naming_it_and_a_peaked_one_stays_quiet():
    found = run_cautions(NAMES, _rows(1.0), _samples(uniform_image_only=SAMPLES), {})
    assert _kinds(found) == [UNIFORM_PROBE] and found[0].layers == (0,)
    assert found[0].detail.startswith("the image only (question masked) probe is near uniform on 64 of 64 samples "
                                      "at layer 0 (the output)")
    assert run_cautions(NAMES, _rows(1.0), _samples(), {}) == []
    assert run_cautions(NAMES, _rows(1.0), _samples(uniform_image_only=32), {}) == []  # half is not most
    assert _kinds(run_cautions(NAMES, _rows(1.0), _samples(uniform_image_only=33), {})) == [UNIFORM_PROBE]


def _fallback(replaced_image_only, applied="yes"):
    return {0: {"n_fit": 32, "n_held_out": 32, "fallback": {
        "applied": applied, "threshold": 0.3, "replaced": {"full": 0, "image_only": replaced_image_only,
                                                           "text_only": 0}}}}


def test_most_probes_replaced_by_the_fallback_fires_with_the_fraction_and_few_stay_quiet():
    (caution,) = run_cautions(NAMES, _rows(1.0), _samples(), _fallback(60))
    assert caution.kind == FALLBACK
    assert "replaced the image only (question masked) probe on 60 of 64 (94%)" in caution.detail
    assert run_cautions(NAMES, _rows(1.0), _samples(), _fallback(10)) == []
    assert run_cautions(NAMES, _rows(1.0), _samples(), _fallback(60, applied="no")) == []


def test_total_information_below_the_floor_fires_at_those_layers_only():
    (caution,) = run_cautions(NAMES, _rows(4e-16, 0.01, 1.5), _samples(), {})
    assert caution.kind == NOISE_FLOOR and caution.layers == (0, 1)
    assert caution.detail.startswith("I(X1,X2;Y) = R + U1 + U2 + S = +0.0100 bits at layer 1, below the 0.05-bit")
    assert run_cautions(NAMES, _rows(0.2, 1.5), _samples(), {}) == []
    assert f"below {NOISE_FLOOR_BITS} bits" in CAUTION_RULES


def _curve(values):
    frame = _rows(*values).assign(step=range(len(values)), stage="2")
    for atom in ATOMS:
        frame[f"{atom}_lo"], frame[f"{atom}_hi"] = frame[atom] - 1e-16, frame[atom] + 1e-16
    return frame


def test_curves_of_rounding_noise_are_drawn_flat_on_the_least_range():
    noise = _curve([4e-16, -4e-16, 2e-16])
    for figure in (layer_curves(noise, 2, None, "bits"), trajectories(noise, list(ATOMS), None, "bits")):
        low, high = figure.layout.yaxis.range
        assert high - low == pytest.approx(2 * NOISE_FLOOR_BITS) and abs(low + high) < 1e-12
    for figure in (layer_curves(_curve([0.0, 1.0]), 1, None, "bits"),
                   trajectories(_curve([0.0, 1.0]), list(ATOMS), None, "bits")):
        assert figure.layout.yaxis.range is None  # Plotly's own range where the values span the floor


@pytest.fixture(scope="module")
def profiled(tmp_path_factory):
    """A tiny random LLaVA profiled on 32 samples asking one question (the trigger) and on 32 asking varied ones
    (the control), each with what `profile` printed."""
    root = tmp_path_factory.mktemp("cautions")
    model = build_tiny_model("llava", root / "tiny-llava")
    printed = {}
    for name, question in (("constant", lambda i: "What colour is the shape?"),
                           ("varied", lambda i: f"Question {i}: what colour is the shape?")):
        data = write_colour_task(root, f"{name}.jsonl", 32, question)
        printed[name] = root / f"{name}.duckdb", _printed(["profile", "--model", str(model), "--dataset",
                                                           f"jsonl:{data}", "--db", str(root / f"{name}.duckdb"),
                                                           "--device", "cpu", "--bootstrap", "0", "--layers", "last"])
    return printed


def _printed(argv):
    """What a command prints on stdout, through the command line's entry point in this process."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(argv) == 0
    return out.getvalue()


def test_profile_prints_each_caution_on_a_line_with_its_rule_name(profiled):
    _, printed = profiled["constant"]
    lines = [line for line in printed.splitlines() if line.startswith("caution ")]
    assert lines[0].startswith("caution constant-input: tiny-llava on jsonl:constant.jsonl (final): the question "
                               "(with its options) is the same in 32 of 32 samples: X2 carries no information")
    # a random tiny model puts about 1% of its mass on the letters: every probe replaced, nothing left
    assert {line.split(":")[0] for line in lines} >= {"caution constant-input", "caution fallback",
                                                       "caution noise-floor"}
    assert printed.index("caution ") < printed.index("layer ")
    _, control = profiled["varied"]
    assert "caution constant-input" not in control and "caution noise-floor" in control


def test_findings_json_lists_the_cautions_of_each_run(profiled):
    cautions = json.loads(_printed(["findings", "--db", str(profiled["constant"][0]), "--json"]))["cautions"]
    constant = [row for row in cautions if row["kind"] == CONSTANT_INPUT]
    assert constant == [{"model": "tiny-llava", "task": "jsonl:constant.jsonl", "checkpoint": "final",
                         "kind": CONSTANT_INPUT, "detail": constant[0]["detail"], "layers": []}]
    assert "the same in 32 of 32 samples" in constant[0]["detail"]
    control = json.loads(_printed(["findings", "--db", str(profiled["varied"][0]), "--json"]))["cautions"]
    assert CONSTANT_INPUT not in _kinds_of(control) and NOISE_FLOOR in _kinds_of(control)


def _kinds_of(records):
    return {record["kind"] for record in records}


def _stored_run(db: Path, model: str, totals: list[float], replaced: int, probe: np.ndarray) -> None:
    """A run stored as `profile` stores it, without a model: 8 samples asking varied questions about varied
    images, every probe `probe` at every layer, each layer's atoms adding up to its total and `replaced` probes of
    each pass counted by the fallback."""
    n_layers, n = len(totals) - 1, 8
    register_run(db, run_id=model, model=model, family="llava", task="shapes", checkpoint="final", step=None,
                 stage=None, n_layers=n_layers, settings={})
    probs = np.tile(probe, (3, n_layers + 1, 1)).astype(np.float32)
    write_samples(db, [SampleRow(model, f"q{i}", i, 0, np.zeros(4, np.float32), np.zeros(4, np.float32), probs,
                                 np.full((3, n_layers + 1), 0.9, np.float32), question=f"Question {i}?",
                                 options=["a", "b", "c", "d"], image=bytes([i])) for i in range(n)])
    for layer, total in enumerate(totals):
        diagnostics = {"n_fit": n // 2, "n_held_out": n // 2,
                       "fallback": {"applied": "yes", "replaced": dict.fromkeys(("full", "image_only", "text_only"),
                                                                              replaced)}}
        write_layer(db, run_id=model, layer=layer, estimator=DEFAULT_ESTIMATOR, atoms=Atoms(0.0, total, 0.0, 0.0),
                    n_samples=n // 2, accuracy=0.5, diagnostics=diagnostics, fitted=None, pointwise={},
                    sample_ids=[])


def test_findings_json_lists_no_caution_for_a_sound_run(tmp_path):
    db = tmp_path / "sound.duckdb"
    _stored_run(db, "sound", [0.8, 1.2, 1.6], replaced=0, probe=PEAKED)
    assert json.loads(_printed(["findings", "--db", str(db), "--json"]))["cautions"] == []


def test_the_depth_page_warns_of_the_cautions_shown_and_draws_rounding_noise_flat(results_folder):
    db = results_folder / "results.duckdb"
    _stored_run(db, "noise", [4e-16, -4e-16, 2e-16], replaced=8, probe=UNIFORM)
    _stored_run(db, "sound", [0.8, 1.2, 1.6], replaced=0, probe=PEAKED)
    noisy = open_page("pages/depth.py", db, model="noise", task="shapes")
    (warning,) = [warning.value for warning in noisy.warning if "cannot say much" in warning.value]
    for kind in (UNIFORM_PROBE, FALLBACK, NOISE_FLOOR):
        assert f"**{kind}**" in warning
    assert "cautions, each in full below" in warning  # more than three: summed up by rule, each in full below
    assert any("it holds at layers 0\\-2" in markdown.value for markdown in noisy.markdown)
    low, high = json.loads(noisy.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]["range"]
    assert high - low == pytest.approx(2 * NOISE_FLOOR_BITS)
    sound = open_page("pages/depth.py", db, model="sound", task="shapes")
    assert not [warning for warning in sound.warning if "cannot say much" in warning.value]
    assert "range" not in json.loads(sound.get("plotly_chart")[0].proto.spec)["layout"]["yaxis"]


def _gaps(probs):
    """log2(k) minus each distribution's entropy, in bits."""
    return np.log2(probs.shape[-1]) + np.where(probs > 0, probs * np.log2(np.where(probs > 0, probs, 1)), 0).sum(-1)


def test_a_masked_probe_that_picks_the_full_answer_while_s_is_high_fires_and_chance_or_low_s_stay_quiet():
    answers = np.arange(SAMPLES) % K
    full = np.eye(K)[answers] * 0.96 + 0.01
    flatter = np.eye(K)[answers] * 0.4 + 0.15  # the same letter, less sure
    at_chance = np.eye(K)[(answers + np.arange(SAMPLES) // K) % K] * 0.4 + 0.15  # right on a quarter of samples
    agreeing = np.stack([full, flatter, at_chance], axis=1)
    [(probe, detail)] = masking_costs(agreeing, _gaps(agreeing), 0.45, "at layer 4 (the output)")
    assert probe == "image_only" and "picks the full pass's answer on 64 of 64 samples" in detail
    assert "S = +0.450 bits" in detail and "when the question is replaced by noise" in detail
    assert masking_costs(agreeing, _gaps(agreeing), NOISE_FLOOR_BITS / 2, "at layer 4") == []  # S below the floor
    synergy = np.stack([full, at_chance, at_chance], axis=1)  # each masked probe at chance: synergy proper
    assert masking_costs(synergy, _gaps(synergy), 0.9, "at layer 4") == []


def test_on_the_demo_s_of_the_planted_vision_task_is_named_a_masking_cost_and_the_synergy_task_is_not():
    atoms = join_diagnostics(read_atoms(DEFAULT_DB), read_diagnostics(DEFAULT_DB))
    final = atoms[(atoms["estimator"] == DEFAULT_ESTIMATOR) & (atoms["layer"] == atoms["n_layers"])
                  & (atoms["checkpoint"] == "stage2-step1500")]
    found = [caution for caution in cautions(final, *read_caution_inputs(DEFAULT_DB, sorted(final["run_id"]),
                                                                         DEFAULT_ESTIMATOR))
             if caution.kind == MASKING_COST]
    assert sorted((caution.model, caution.task) for caution in found) == [
        (model, "vision") for model in ("idefics3-s", "llava-m", "llava-s", "qwen2vl-s")]
    assert final[final["task"] == "synergy"]["s"].min() > 0.5  # the synergy task's S is high, and not named
