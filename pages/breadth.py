"""Breadth: the model x task heatmap at each model's final checkpoint and output layer (click a cell for its
samples), the task regimes by rank correlation across models (the paper's Table 2), and the family strategies."""

import pandas as pd
import streamlit as st

from pidcore.analysis.regimes import REGIME_RULE, family_strategies, final_rows, task_shares
from pidcore.atoms import ATOMS, LABELS, MENU
from pidcore.dashboard.cautions import show_cautions
from pidcore.dashboard.charts import as_shown, heatmap, regime_plot, small_multiples
from pidcore.dashboard.drilldown import samples_panel
from pidcore.dashboard.export import ChartInfo, styled
from pidcore.dashboard.report import report_button
from pidcore.dashboard.rows import (COMPUTED, PUBLISHED, flag_rows, load_rows, missing_outputs_note,
                                    published_final_rows, regimes_of, require)
from pidcore.dashboard.sidebar import carried_params, sidebar
from pidcore.dashboard.tables import P_COLUMNS, family_table, regime_table
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import chart, diagnostics, fitted_columns, selection

HEATMAP_KEY = "heatmap"  # one chart whichever atom it shows: a clicked cell stays open when the atom changes
REPORT_COLUMNS = ["source", "model", "family", "task", "checkpoint", "layer", *ATOMS, "accuracy", "flags"]
NO_OUTPUT = ("No run in this database has its output layer stored at its model's final checkpoint, so there is no "
             "cell to show: the heatmap, the regimes and the strategies read each model's last checkpoint at its "
             "output layer.")

st.title("Breadth: which tasks and models rely on what")
settings = sidebar()
rows = load_rows(settings)
if (note := missing_outputs_note(rows)) is not None:
    st.info(note)
final = require(final_rows(rows), NO_OUTPUT)
groups = {rows["source"].iloc[0]: final}
if settings.compare:
    published = published_final_rows(set(final["task"]))
    if published.empty:
        st.info("No task of this database has one of the paper's task names (MMBench, POPE, Reefknot, PMC-VQA), so "
                "there is nothing to compare cell by cell. Profile with `--task MMBench` (and so on) to line up.")
    else:
        groups[PUBLISHED] = published
shown_rows = flag_rows(pd.concat(groups.values(), ignore_index=True), settings)
show_cautions(shown_rows, settings)
regimes = regimes_of(settings, groups)
findings = [f"{task} ({source}): {regime.regime}. {regime.why}" for source, by_task in regimes.items()
            for task, regime in sorted(by_task.items())]


@st.fragment
def cells() -> None:
    """The heatmap and the samples behind its clicked cell: a new atom or a click reruns this part only."""
    view = st.radio("Show", ["one atom", "all four atoms"], key="view", bind="query-params", horizontal=True)
    atom = st.selectbox("Atom", MENU, format_func=LABELS.get, key="atom", bind="query-params",
                        disabled=view != "one atom")
    shown = as_shown(shown_rows, settings.units, settings.clip)
    one_atom = view == "one atom"
    info = ChartInfo(f"{LABELS[atom] if one_atom else 'All four atoms'} by model and task",
                     checkpoint="each model's last", layer="output", estimator=settings.estimator,
                     units=settings.unit_label)
    figure = heatmap(shown, atom, settings.unit_label) if one_atom else small_multiples(shown, settings.unit_label)
    shown_figure = chart(figure, settings, info, shown[REPORT_COLUMNS], key=HEATMAP_KEY, selectable=one_atom)
    if len(groups) > 1:
        st.caption(f"Rows named \"(paper)\" are the published atoms (Xiu et al. 2026, read off its figures); the "
                   f"others are {COMPUTED}.")
    clicked = selection(HEATMAP_KEY) if one_atom else []
    if not clicked:
        st.caption("Click a cell to list the samples behind it and open its layers." if one_atom else
                   "Switch to one atom to click a cell.")
    else:
        cell = shown_rows.iloc[int(clicked[0]["customdata"])]
        model, task = cell["model"], cell["task"]
        if st.button(f"Open the layers of {markdown_text(model)} on {markdown_text(task)}", key="open-layers",
                     icon=":material/stacks:"):
            st.switch_page("pages/depth.py", query_params={**carried_params(), "model": model, "task": task,
                                                           "checkpoint": cell["checkpoint"]})
        samples_panel(cell, settings.db, settings.estimator)
    report_button("Breadth: models x tasks", [shown_figure, regime_figure], shown_rows, REPORT_COLUMNS, "heatmap",
                  [REGIME_RULE], findings)


shares = pd.concat([task_shares(group).assign(source=source) for source, group in groups.items()], ignore_index=True)
shares["regime"] = [regimes[source][task].regime for source, task in zip(shares["source"], shares["task"])]
regime_info = ChartInfo("Task regimes: mean S share against mean U2 share", checkpoint="each model's last",
                        layer="output", estimator=settings.estimator, units="fraction of I(X1,X2;Y)")
regime_figure = styled(regime_plot(shares), regime_info, settings.presentation)
cells()
st.subheader("Task regimes: how accuracy ranks with the atoms across models")
regime_rows = regime_table(regimes)
st.dataframe(regime_rows, hide_index=True, column_config=fitted_columns(regime_rows, P_COLUMNS))
chart(regime_figure, settings, regime_info, shares)

st.subheader("Family strategies: median S against median U2 on the synergy-driven tasks")
strategies = {source: family_strategies(group, regimes[source]) for source, group in groups.items()}
family_rows = family_table(strategies)
st.dataframe(family_rows, hide_index=True, column_config=fitted_columns(family_rows))
st.caption(REGIME_RULE)
diagnostics(shown_rows)
