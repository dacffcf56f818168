"""The rules that name the layer phases and a stage-2 rise in S."""

import pandas as pd

from pidcore.analysis.phases import detect_phases
from pidcore.analysis.stages import stage2_rise


def _curve(rows):
    return pd.DataFrame(rows, columns=["layer", "r", "u1", "u2", "s"])


def test_a_textbook_curve_has_all_three_phases():
    curve = _curve([(0, 0, 0, 0, 0), (1, 0.01, 0, 0.02, 0), (2, 0.02, 0.01, 0.02, 0.01), (3, 0.05, 0.05, 0.4, 0.1),
                    (4, 0.05, 0.1, 0.6, 0.2), (5, 0.05, 0.1, 0.5, 0.4), (6, 0.05, 0.1, 0.3, 0.9)])
    phases = detect_phases(curve)
    assert phases.silent == (0, 2) and phases.language == (3, 5) and phases.fusion == (6, 6)
    assert phases.three_phase


def test_a_curve_where_synergy_peaks_early_has_no_fusion_phase():
    curve = _curve([(0, 0, 0, 0, 0), (1, 0, 0, 0.2, 0.9), (2, 0, 0, 0.3, 0.3), (3, 0, 0, 0.3, 0.2),
                    (4, 0, 0, 0.3, 0.1)])
    phases = detect_phases(curve)
    assert phases.silent is None and phases.fusion is None and not phases.three_phase


def test_stage2_rise_compares_the_end_of_stage_1_with_the_last_checkpoint():
    trajectory = pd.DataFrame({"stage": ["1", "1", "2", "2"], "step": [0, 100, 200, 300], "s": [0.0, 0.1, 0.3, 0.5]})
    assert stage2_rise(trajectory) == 0.4
    assert stage2_rise(trajectory[trajectory["stage"] == "1"]) is None
