"""The rules that name layer phases, a stage-2 rise in S, task regimes, family strategies and untrustworthy rows."""

import numpy as np
import pandas as pd

from pidcore.analysis.flags import with_flags
from pidcore.analysis.phases import detect_phases
from pidcore.analysis.regimes import family_strategies, final_rows, task_regimes
from pidcore.analysis.stages import is_stage2_rise, stage2_rise
from pidcore.pipeline.layers import with_fallback
from pidcore.pipeline.settings import applies_fallback, estimator_name


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


def test_regimes_and_strategies_follow_the_stated_rule():
    final = pd.DataFrame({"model": ["a", "a", "b", "b"], "family": ["f1", "f1", "f2", "f2"],
                          "task": ["t1", "t2", "t1", "t2"], "s": [0.9, 0.1, 0.7, 0.2], "u2": [0.1, 0.8, 0.2, 0.1]})
    assert task_regimes(final) == {"t1": "synergy-driven", "t2": "knowledge-driven"}
    assert family_strategies(final) == {"f1": "fusion-centric", "f2": "fusion-centric"}
    final.loc[3, "u2"] = 1.0
    assert family_strategies(final)["f2"] == "language-centric"


def test_final_rows_keep_each_models_last_checkpoint_at_its_output_layer():
    atoms = pd.DataFrame({"model": ["a"] * 4 + ["b"] * 2, "step": [0, 0, 10, 10, None, None],
                          "layer": [1, 2, 1, 2, 3, 2], "n_layers": [2, 2, 2, 2, 3, 3]})
    assert final_rows(atoms).index.tolist() == [3, 4]


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
