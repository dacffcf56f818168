"""The rules that name layer phases, a stage-2 rise in S, task regimes, family strategies and untrustworthy rows."""

import numpy as np
import pandas as pd
import pytest

from pidcore.atoms import PAPER_ESTIMATOR
from pidcore.analysis.flags import with_flags
from pidcore.analysis.findings import curve_findings
from pidcore.analysis.phases import Phases, detect_phases
from pidcore.analysis.regimes import family_strategies, final_rows, steiger_p, task_regimes
from pidcore.analysis.stages import is_stage2_rise, stage2_rise, stage_progress
from pidcore.pipeline.layers import with_fallback
from pidcore.pipeline.settings import applies_fallback, estimator_name
from pidcore.shipped import PAPER_DB
from pidcore.store import read_atoms


def _curve(rows):
    return pd.DataFrame(rows, columns=["layer", "r", "u1", "u2", "s"])


def test_a_textbook_curve_has_all_three_phases():
    curve = _curve([(0, 0, 0, 0, 0), (1, 0.01, 0, 0.02, 0), (2, 0.02, 0.01, 0.02, 0.01), (3, 0.05, 0.05, 0.4, 0.1),
                    (4, 0.05, 0.1, 0.6, 0.2), (5, 0.05, 0.1, 0.5, 0.4), (6, 0.05, 0.1, 0.3, 0.9)])
    phases = detect_phases(curve)
    assert phases.silent == (0, 2) and phases.language == (3, 5) and phases.fusion == (6, 6)
    assert phases.three_phase
    assert phases.describe() == "silent 0-2, language build-up 3-5, synergistic fusion 6-6"


def test_a_curve_where_synergy_peaks_early_has_no_fusion_phase():
    curve = _curve([(0, 0, 0, 0, 0), (1, 0, 0, 0.2, 0.9), (2, 0, 0, 0.3, 0.3), (3, 0, 0, 0.3, 0.2),
                    (4, 0, 0, 0.3, 0.1)])
    phases = detect_phases(curve)
    assert phases.silent is None and phases.fusion is None and not phases.three_phase
    assert phases.describe() == "language build-up 2-3"


def test_stage2_rise_compares_the_end_of_stage_1_with_the_last_checkpoint():
    trajectory = pd.DataFrame({"stage": ["1", "1", "2", "2"], "step": [0, 100, 200, 300], "s": [0.0, 0.1, 0.3, 0.5]})
    assert stage2_rise(trajectory) == 0.4 and is_stage2_rise(0.4)
    assert not is_stage2_rise(0.05) and not is_stage2_rise(None)
    assert stage2_rise(trajectory[trajectory["stage"] == "1"]) is None


def _models(task, accuracy, s, u2, families):
    """Final rows of one task: one model per accuracy, with the family of each."""
    n = len(accuracy)
    return pd.DataFrame({"model": [f"m{i}" for i in range(n)], "family": families, "task": task, "checkpoint": "final",
                         "step": None, "layer": 4, "n_layers": 4, "r": 0.0, "u1": 0.0, "u2": u2, "s": s,
                         "accuracy": accuracy})


def test_regimes_follow_the_rank_correlations_and_say_undetermined_where_the_data_cannot_support_them():
    rng = np.random.default_rng(0)
    accuracy = np.linspace(0.3, 0.9, 12)
    families = ["f1"] * 6 + ["f2"] * 6
    noise = rng.permutation(12) / 12
    final = pd.concat([
        _models("synergy", accuracy, accuracy + 0.01 * rng.standard_normal(12), noise, families),
        _models("knowledge", accuracy, noise, accuracy, families),
        _models("few", accuracy[:4], accuracy[:4], accuracy[:4], families[:4]),
        _models("flat", np.ones(12), accuracy, noise, families)], ignore_index=True)
    regimes = task_regimes(final)
    assert {task: regime.regime for task, regime in regimes.items()} == {
        "synergy": "synergy-driven", "knowledge": "knowledge-driven", "few": "undetermined", "flat": "undetermined"}
    assert regimes["synergy"].rho["s"] > 0.95 and regimes["synergy"].p["s"] < 1e-5 and regimes["synergy"].n_models == 12
    assert regimes["few"].why == "only 4 model(s) with an accuracy; a rank correlation needs at least 5"
    assert regimes["flat"].why == "no spread in accuracy across the 12 models (1.000)"
    assert regimes["knowledge"].why.startswith("S does not dominate")


def test_family_strategies_compare_medians_on_the_synergy_driven_tasks_only():
    accuracy = np.linspace(0.3, 0.9, 10)
    families = ["quiet"] * 2 + ["language"] * 4 + ["fusion"] * 4
    s = np.r_[[0.02, 0.03], 0.1 + accuracy[2:6] / 100, 0.8 + accuracy[6:] / 100]
    u2 = np.r_[[0.01, 0.02], np.full(4, 2.0), np.full(4, 0.2)]
    synergy = _models("synergy", accuracy, s, u2, families)
    other = _models("other", accuracy, np.zeros(10), np.full(10, 3.0), families)
    final = pd.concat([synergy, other], ignore_index=True)
    regimes = task_regimes(final)
    assert regimes["synergy"].regime == "synergy-driven"
    strategies = family_strategies(final, regimes)
    assert {family: strategy.strategy for family, strategy in strategies.items()} == {
        "fusion": "fusion-centric", "language": "language-centric", "quiet": "undetermined"}
    assert strategies["fusion"].tasks == ["synergy"] and strategies["fusion"].median_u2 == 0.2
    assert strategies["quiet"].why.startswith("too little information to tell")
    without = family_strategies(other, task_regimes(other))
    assert all(strategy.strategy == "undetermined" and strategy.why.startswith("no synergy-driven task")
               for strategy in without.values())


def test_steiger_p_is_one_half_for_equal_correlations_and_falls_as_the_gap_grows():
    assert steiger_p(0.5, 0.5, 0.3, 30) == pytest.approx(0.5)
    assert steiger_p(0.7, 0.2, 0.0, 30) < steiger_p(0.7, 0.4, 0.0, 30) < 0.5
    assert steiger_p(0.7, 0.2, 0.0, 100) < steiger_p(0.7, 0.2, 0.0, 30)
    assert steiger_p(0.2, 0.7, 0.0, 30) == pytest.approx(1 - steiger_p(0.7, 0.2, 0.0, 30))
    assert np.isnan(steiger_p(float("nan"), 0.2, 0.0, 30)) and np.isnan(steiger_p(0.7, 0.2, 0.0, 3))


def test_final_rows_keep_each_models_last_checkpoint_at_its_output_layer():
    atoms = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 2, "checkpoint": ["s0", "s0", "s10", "s10", "x", "x"],
                          "step": [0, 0, 10, 10, None, None], "layer": [1, 2, 1, 2, 3, 2], "n_layers": [2, 2, 2, 2, 3, 3]})
    assert final_rows(atoms).index.tolist() == [3, 4]


def test_final_rows_prefer_the_checkpoint_named_final_and_count_an_unknown_depth_as_the_output():
    atoms = pd.DataFrame({"model": ["a", "a", "a", "b"], "checkpoint": ["stage2-4", "final", "final", "final"],
                          "step": [8, None, None, None], "layer": pd.array([32, 32, 5, None], dtype="Int32"),
                          "n_layers": pd.array([32, 32, 32, None], dtype="Int32")})
    assert final_rows(atoms).index.tolist() == [1, 3]


def test_phases_leave_out_atoms_a_figure_does_not_show():
    nan = float("nan")
    curve = _curve([(1, nan, nan, nan, 0.0), (2, nan, nan, nan, 0.0), (3, nan, nan, 0.01, 0.02),
                    (4, nan, nan, 0.6, 0.1), (5, nan, nan, 0.7, 0.2), (6, 0.02, 0.0, 0.6, 0.9)])
    phases = detect_phases(curve)
    assert phases.silent == (1, 3) and phases.language == (4, 5) and phases.fusion == (6, 6) and phases.three_phase


def test_stage2_rise_uses_only_checkpoints_of_known_stage_and_stage_progress_lines_up_runs():
    trajectory = pd.DataFrame({"checkpoint": ["final", "a", "b", "c", "d"], "stage": [None, "1", "1", "2", "2"],
                               "step": [None, 1, 2, 3, 4], "s": [5.0, 0.0, 0.1, 0.3, 0.5]})
    assert stage2_rise(trajectory) == pytest.approx(0.4)
    progress = stage_progress(trajectory)
    assert np.isnan(progress[0]) and progress[1:].tolist() == [0.5, 1.0, 1.5, 2.0]
    zoo = pd.DataFrame({"stage": ["1", "1", "1", "2", "2"], "step": [0, 150, 300, 900, 1500], "s": 0.0})
    assert stage_progress(zoo).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0]


def test_flags_name_every_reason_and_leave_good_rows_clean():
    nan = float("nan")
    rows = pd.DataFrame({"run_id": ["good", "bad", None, "nothing-to-learn"], "n_samples": [96, 20, 96, 96],
                         "marginal_gap": [0.01, 0.3, nan, 0.01], "sinkhorn_converged": [True, False, None, True],
                         "sinkhorn_residual": [1e-8, 0.5, nan, 1e-8], "initial_bits": [0.4, 0.3, nan, 1.9],
                         "kept_bits": [0.1, 0.3, nan, 1.9], "floor_bits": [0.0, 0.0, nan, 1.895]})
    flagged = with_flags(rows, {"good": 0.95, "bad": 0.2, "nothing-to-learn": 0.99})
    assert flagged["flags"].tolist() == [
        "", "only 20 held-out samples; letter mass 0.20; marginal gap 0.30; Sinkhorn residual 5.0e-01; "
            "untrained alignment (0.300 -> 0.300 bits)", "no diagnostics", ""]
    assert "run_id" in rows and "flags" not in rows


def test_published_rows_are_not_flagged_for_the_diagnostics_they_cannot_have():
    nan = float("nan")
    rows = pd.DataFrame({"run_id": ["ours", "paper"], "estimator": ["batch-published", PAPER_ESTIMATOR],
                         "n_samples": [nan, nan], "marginal_gap": nan, "sinkhorn_converged": None,
                         "sinkhorn_residual": nan, "initial_bits": nan, "kept_bits": nan, "floor_bits": nan})
    assert with_flags(rows, {})["flags"].tolist() == ["no diagnostics", ""]


def test_the_letter_mass_fallback_replaces_each_probe_below_the_threshold_by_the_uniform():
    probs = np.array([[[0.9, 0.1], [0.8, 0.2], [0.6, 0.4]], [[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]]])
    mass = np.array([[0.95, 0.2, np.nan], [0.31, 0.29, 0.9]])
    replaced, counts = with_fallback(probs, mass, 0.3)
    assert replaced.tolist() == [[[0.9, 0.1], [0.5, 0.5], [0.6, 0.4]], [[0.7, 0.3], [0.5, 0.5], [0.1, 0.9]]]
    assert counts == {"threshold": 0.3, "replaced": {"full": 0, "image_only": 2, "text_only": 0}, "unknown_mass": 1}


def test_estimator_names_record_the_fallback_where_it_is_not_the_modes_default():
    assert estimator_name("published", True) == "batch-published" and applies_fallback("batch-published")
    assert estimator_name("published", False) == "batch-published-nofallback"
    assert not applies_fallback("batch-published-nofallback")
    assert estimator_name("calibrated", False) == "batch-calibrated" and not applies_fallback("batch-calibrated")
    assert applies_fallback(estimator_name("calibrated", True))


@pytest.mark.parametrize(("silent", "language", "fusion", "three"), [
    ((0, 2), (3, 5), (6, 6), True),    # in order, each next to the next
    ((0, 1), (3, 4), (7, 8), True),    # in order, with gaps
    ((0, 2), (3, 6), (6, 8), False),   # language build-up and fusion share a layer
    ((0, 3), (3, 5), (6, 8), False),   # silence and language build-up share a layer
    ((0, 2), (7, 8), (4, 8), False),   # fusion begins before the language build-up
    ((0, 2), None, (6, 8), False),     # a phase missing
])
def test_the_three_phase_pattern_needs_all_three_phases_in_order_and_apart(silent, language, fusion, three):
    assert Phases(silent, language, fusion, 0.05).three_phase is three


def _late_curve(language_from: int) -> pd.DataFrame:
    """13 layers: silent 0-2, S peaking at layer 10 (fusion 10-12), U2 >= S from `language_from` to 11 but at 10."""
    rows = [(layer, 0.0, 0.0, 0.0, 0.0) for layer in range(3)]
    rows += [(layer, 0.3, 0.05, 0.4 if layer >= language_from else 0.0, 0.1) for layer in range(3, 10)]
    return _curve(rows + [(10, 0.05, 0.05, 0.3, 0.9), (11, 0.05, 0.05, 0.8, 0.7), (12, 0.05, 0.05, 0.2, 0.6)])


@pytest.mark.parametrize(("language_from", "language"), [(4, (4, 11)), (11, (11, 11))])
def test_a_curve_whose_language_build_up_runs_into_or_after_fusion_is_not_three_phase(language_from, language):
    phases = detect_phases(_late_curve(language_from))
    assert phases.silent == (0, 2) and phases.language == language and phases.fusion == (10, 12)
    assert not phases.three_phase


def _paper_curves() -> pd.DataFrame:
    atoms = read_atoms(PAPER_DB)
    return atoms[(atoms["estimator"] == PAPER_ESTIMATOR) & atoms["layer"].notna()]


def test_qwen2_5_vl_3b_is_not_three_phase_on_the_papers_data_its_fusion_begins_inside_language_build_up():
    atoms = _paper_curves()
    for task in ("MMBench", "PMC-VQA"):
        phases = detect_phases(atoms[(atoms["model"] == "Qwen2.5-VL-3B") & (atoms["task"] == task)])
        assert None not in (phases.silent, phases.language, phases.fusion)
        assert phases.fusion[0] <= phases.language[1] and not phases.three_phase


def test_three_of_the_papers_eight_layer_curves_are_three_phase():
    """InternVL3-2B on PMC-VQA and LLaVA-1.5-7B on MMBench and PMC-VQA; Qwen2.5-VL-3B has all three phases out of
    order, InternVL3-2B on MMBench no language build-up, LLaVA-1.5-13B no fusion."""
    curves = curve_findings(_paper_curves())
    three = [curve for curve in curves if curve["three_phase"]]
    assert len(curves) == 8 and len(three) == 3
    assert all(curve["phases"]["silent"][1] < curve["phases"]["language"][0] <= curve["phases"]["language"][1]
               < curve["phases"]["fusion"][0] for curve in three)
