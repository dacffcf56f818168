"""The other estimators of the run a page shows (the sidebar picks one for the whole database): which to offer beside
it, how their curves are named, and what to say where a BATCH and a Gaussian estimator meet (they measure different
things; pidcore.analysis.families says how far they agree)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pidcore.analysis.families import MIN_COMMON_LAYERS, agreements, estimator_family
from pidcore.dashboard import data
from pidcore.dashboard.rows import curve_label, layer_curves_of
from pidcore.dashboard.text import markdown_text
from pidcore.store import StoreError

FAMILIES_DIFFER = ("The two estimator families measure different things: BATCH reads the answer distributions of "
                   "three probe passes through the logit lens; the Gaussian PID reads the hidden states themselves "
                   "(image-token mean X1, question-token mean X2, the model's output letter logits as target). "
                   "Compare the shapes of their curves and their shares, not their values.")


def run_rows(db: str, key: tuple[str, str, str]) -> pd.DataFrame:
    """Every estimator's rows of one (model, task, checkpoint); empty, with a caption saying so, when the database
    cannot be read now (the page then shows its own estimator only)."""
    try:
        return data.run_atoms(db, key)
    except StoreError as error:
        st.caption(f"The other estimators of this run cannot be read now: {markdown_text(error)}. Reload the page in "
                   "a moment.")
        return pd.DataFrame()


def other_estimators(run: pd.DataFrame, estimator: str | None) -> list[str]:
    """The estimators of a run besides `estimator` that have a curve (atoms at two or more layers), by name."""
    curves = layer_curves_of(run)
    return [] if curves.empty else sorted(set(curves["estimator"]) - {estimator})


def estimator_label(key: tuple[str, str, str], estimator: str | None) -> str:
    """How a curve of one estimator is named in a legend: the run's label and the estimator."""
    return f"{curve_label(key)} · {estimator}"


def agreement_sentences(run: pd.DataFrame, estimator: str | None) -> list[str]:
    """How `estimator` and each estimator of the other family agree on this run (pidcore.analysis.families), one
    plain sentence each; none where `estimator` is of neither family or the run has no other family."""
    return [agreement.describe() for agreement in agreements(run)
            if estimator in (agreement.batch, agreement.gaussian)]


def families_note(run: pd.DataFrame, estimator: str | None) -> str | None:
    """The note under a chart of a run with rows of both families, as Markdown: that they measure different things,
    then how they agree, a paragraph each; None where `estimator` is of neither family or the run has no rows of the
    other one."""
    family = None if estimator is None else estimator_family(estimator)
    others = {estimator_family(name) for name in other_estimators(run, estimator)} - {None, family}
    if family is None or not others:
        return None
    sentences = agreement_sentences(run, estimator) or [
        f"No correlation: the two families share fewer than {MIN_COMMON_LAYERS} stored layers of this run."]
    return "\n\n".join(markdown_text(sentence) for sentence in [FAMILIES_DIFFER, *sentences])
