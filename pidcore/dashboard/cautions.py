"""Where the measurement cannot say much: the cautions on the rows a page shows, as one warning a page calls in one
line."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pidcore.analysis.cautions import CAUTION_RULES, Caution
from pidcore.atoms import PAPER_ESTIMATOR
from pidcore.dashboard import data
from pidcore.dashboard.rows import layer_spans
from pidcore.dashboard.sidebar import Settings
from pidcore.dashboard.text import markdown_text
from pidcore.store import StoreError

RUN_KEYS = ["model", "task", "checkpoint"]
LISTED = 3  # up to this many cautions are said in full in the warning; more are summed up by rule


def show_cautions(rows: pd.DataFrame, settings: Settings) -> None:
    """Warn of the cautions (pidcore.analysis.cautions) that hold for the rows shown, at the layers shown, with the
    rules one click away; nothing where none holds. Published rows read off the paper's figures are not judged."""
    own = rows[(rows["estimator"] != PAPER_ESTIMATOR) & rows["run_id"].notna()]
    if own.empty:
        return
    try:
        found = data.cautions(settings.db, settings.estimator, tuple(sorted(own["run_id"].unique())))
    except StoreError as error:
        st.info(f"The cautions cannot be judged: {markdown_text(error)}. Reload the page in a moment.")
        return
    shown = [caution for caution in found if _holds(caution, own)]
    if not shown:
        return
    lines = [f"- {_line(caution)}" for caution in shown]
    if len(shown) <= LISTED:
        st.warning("The measurement cannot say much here:\n\n" + "\n".join(lines))
    else:
        st.warning(f"The measurement cannot say much here ({len(shown)} cautions, each in full below):\n\n"
                   + "\n".join(f"- {_summary(kind, found)}" for kind, found in _by_kind(shown).items()))
    with st.expander("Each caution, and when one is raised" if len(shown) > LISTED else "When a caution is raised"):
        if len(shown) > LISTED:
            st.markdown("\n".join(lines))
        st.caption(markdown_text(CAUTION_RULES))


def _by_kind(shown: list[Caution]) -> dict[str, list[Caution]]:
    """The cautions grouped by rule, in the order they come."""
    groups: dict[str, list[Caution]] = {}
    for caution in shown:
        groups.setdefault(caution.kind, []).append(caution)
    return groups


def _summary(kind: str, found: list[Caution]) -> str:
    """One rule's cautions in a line: the rule and the runs it holds on."""
    runs = sorted({f"{caution.model} on {caution.task}" for caution in found})
    return f"**{kind}** on {len(runs)} run{'s' if len(runs) > 1 else ''}: {markdown_text(', '.join(runs))}"


def _holds(caution: Caution, rows: pd.DataFrame) -> bool:
    """Whether a caution is on a run shown, and (for a per-layer rule) at one of the layers shown of it."""
    run = rows[(rows[RUN_KEYS] == [caution.model, caution.task, caution.checkpoint]).all(axis=1)]
    return not run.empty and (not caution.layers or run["layer"].isin(caution.layers).any())


def _line(caution: Caution) -> str:
    """One caution as a Markdown list item: its rule, its run, what it says and the layers where it holds."""
    where = f" (it holds at layers {layer_spans(pd.Series(caution.layers))})" if len(caution.layers) > 1 else ""
    run = f"{caution.model} on {caution.task} ({caution.checkpoint})"
    return f"**{caution.kind}**, {markdown_text(run)}: {markdown_text(caution.detail + where)}"
