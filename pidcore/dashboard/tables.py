"""The tables the pages show beside their charts: the task regimes with their rank correlations (the paper's
Table 2), the family strategies with their medians, each row marked with its source, and the samples behind one
run at one layer."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from pidcore.analysis.regimes import CORRELATES, Regime, Strategy
from pidcore.atoms import ATOMS, PASS_LABELS, PASSES, SYMBOLS, UNITS, option_letters


STEIGER_P = "Steiger p (S vs U2)"
# The regime table's p-value columns, which are shown in scientific notation (1.0e-05, not a cut-off ".00001").
P_COLUMNS = (*(f"p {label}" for label in CORRELATES.values()), STEIGER_P)


def regime_table(regimes: Mapping[str, Mapping[str, Regime]]) -> pd.DataFrame:
    """One row per (source, task): regime, models, Spearman's rho of accuracy with each correlate and its p."""
    rows = []
    for source, by_task in regimes.items():
        for task, regime in sorted(by_task.items()):
            row = {"source": source, "task": task, "regime": regime.regime, "models": regime.n_models}
            for name, label in CORRELATES.items():
                row[f"rho {label}"] = round(regime.rho[name], 3)
                row[f"p {label}"] = float(f"{regime.p[name]:.2g}")
            row[STEIGER_P] = float(f"{regime.steiger_p:.2g}")
            row["why"] = regime.why
            rows.append(row)
    return pd.DataFrame(rows)


def family_table(strategies: Mapping[str, Mapping[str, Strategy]]) -> pd.DataFrame:
    """One row per (source, family): strategy, median S and U2 on the synergy-driven tasks, models, why."""
    rows = [{"source": source, "family": family, "strategy": strategy.strategy,
             "median S (bits)": round(strategy.median_s, 3), "median U2 (bits)": round(strategy.median_u2, 3),
             "models": strategy.n_models, "why": strategy.why}
            for source, by_family in strategies.items() for family, strategy in sorted(by_family.items())]
    return pd.DataFrame(rows)


def samples_table(samples: pd.DataFrame, pointwise: pd.DataFrame, layer: int, n_layers: int) -> pd.DataFrame:
    """One row per stored sample of a run at one layer: its pointwise atoms in bits first (the table is sorted by one
    of them, which stays in view), gold and answer letters, question, options and the three probe distributions over
    the letters (samples: read_sample_table's rows; pointwise: the run's per-sample atoms at this layer)."""
    atoms = pointwise.set_index("sample_id")[list(ATOMS)] if not pointwise.empty else None
    rows = []
    for sample in samples.itertuples(index=False):
        letters = option_letters(int(sample.n_options))
        probs = _at_layer(sample.probs, layer, n_layers)
        row = {"sample": sample.sample_id}
        for atom in ATOMS:
            known = atoms is not None and sample.sample_id in atoms.index
            row[f"{SYMBOLS[atom]} ({UNITS})"] = float(atoms.at[sample.sample_id, atom]) if known else np.nan
        row.update({"gold": letters[int(sample.gold)] if pd.notna(sample.gold) else None,
                    "answer": letters[int(np.argmax(probs[0]))] if probs is not None else None,
                    "question": sample.question, "options": _options(letters, sample.options)})
        for index, name in enumerate(PASSES):
            row[PASS_LABELS[name]] = _distribution(letters, probs[index]) if probs is not None else None
        row["image stored"] = bool(sample.has_image)
        rows.append(row)
    return pd.DataFrame(rows)


def _at_layer(probs: np.ndarray, layer: int, n_layers: int) -> np.ndarray | None:
    """The [pass, k] distributions at `layer`: stored layers are the last ones of 0..n_layers (None: not stored)."""
    index = layer - (n_layers + 1 - probs.shape[1])
    return probs[:, index] if 0 <= index < probs.shape[1] else None


def _options(letters: list[str], options: list[str] | None) -> str | None:
    return None if options is None else " | ".join(f"{letter}. {text}" for letter, text in zip(letters, options))


def _distribution(letters: list[str], probs: np.ndarray) -> str:
    """A distribution over the letters as "A .82 B .10 ...", for a table cell."""
    return " ".join(f"{letter} {value:.2f}" for letter, value in zip(letters, probs))
