"""Breadth: the model x task heatmap at each model's final checkpoint and output layer, the task regimes by rank
correlation across models (the paper's Table 2), and the family strategies."""

import pandas as pd
import streamlit as st

from pidcore.analysis.regimes import REGIME_RULE, family_strategies, final_rows, task_shares
from pidcore.atoms import ATOMS, LABELS, MENU
from pidcore.dashboard.charts import as_shown, heatmap, regime_plot, small_multiples
from pidcore.dashboard.report import report_button
from pidcore.dashboard.rows import COMPUTED, PUBLISHED, flag_rows, load_rows, published_final_rows, regimes_of
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.tables import family_table, regime_table
from pidcore.dashboard.widgets import chart, diagnostics

st.title("Breadth: which tasks and models rely on what")
settings = sidebar()
rows = load_rows(settings)
final = final_rows(rows)
groups = {rows["source"].iloc[0]: final}
if settings.compare:
    published = published_final_rows(set(final["task"]))
    if published.empty:
        st.info("No task of this database has one of the paper's task names (MMBench, POPE, Reefknot, PMC-VQA), so "
                "there is nothing to compare cell by cell. Profile with `--task MMBench` (and so on) to line up.")
    else:
        groups[PUBLISHED] = published
shown_rows = flag_rows(pd.concat(groups.values(), ignore_index=True), settings)

view = st.radio("Show", ["one atom", "all four atoms"], key="view", bind="query-params", horizontal=True)
atom = st.selectbox("Atom", MENU, format_func=LABELS.get, key="atom", bind="query-params",
                    disabled=view != "one atom")
shown = as_shown(shown_rows, settings.units, settings.clip)
figure = heatmap(shown, atom, settings.unit_label) if view == "one atom" else small_multiples(shown,
                                                                                             settings.unit_label)
chart(figure, settings, "heatmap")
if len(groups) > 1:
    st.caption(f"Rows named \"(paper)\" are the published atoms (Xiu et al. 2026, read off its figures); the others "
               f"are {COMPUTED}.")

st.subheader("Task regimes: how accuracy ranks with the atoms across models")
regimes = regimes_of(settings, groups)
shares = pd.concat([task_shares(group).assign(source=source) for source, group in groups.items()], ignore_index=True)
shares["regime"] = [regimes[source][task].regime for source, task in zip(shares["source"], shares["task"])]
regime_figure = regime_plot(shares)
left, right = st.columns([3, 2])
left.dataframe(regime_table(regimes), hide_index=True)
with right:
    chart(regime_figure, settings, "regimes")

st.subheader("Family strategies: median S against median U2 on the synergy-driven tasks")
strategies = {source: family_strategies(group, regimes[source]) for source, group in groups.items()}
st.dataframe(family_table(strategies), hide_index=True)
st.caption(REGIME_RULE)

st.subheader("Open a cell on the layer page")
pick_model, pick_task, go = st.columns([2, 2, 1])
model = pick_model.selectbox("Model", sorted(final["model"].unique()), key="cell_model")
task = pick_task.selectbox("Task", sorted(final["task"].unique()), key="cell_task")
if go.button("Open layers"):
    st.switch_page("pages/depth.py", query_params={"model": model, "task": task})

diagnostics(shown_rows)
report_button("Breadth: models x tasks", [figure, regime_figure],
              shown_rows[["source", "model", "family", "task", "checkpoint", "layer", *ATOMS, "accuracy", "flags"]],
              "heatmap")
