"""Breadth: the model x task heatmap at each model's last checkpoint and output layer."""

import streamlit as st

from pidcore.analysis.regimes import REGIME_RULE, family_strategies, final_rows, task_regimes
from pidcore.atoms import ATOMS, LABELS, MENU
from pidcore.dashboard.charts import as_shown, heatmap, small_multiples
from pidcore.dashboard.report import report_button
from pidcore.dashboard.rows import flag_rows, load_rows
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.widgets import chart, diagnostics

st.title("Breadth: which tasks and models rely on what")
settings = sidebar()
rows = load_rows(settings)
if rows is None:
    st.stop()
final = flag_rows(final_rows(rows), settings)
view = st.radio("Show", ["one atom", "all four atoms"], key="view", bind="query-params", horizontal=True)
atom = st.selectbox("Atom", MENU, format_func=LABELS.get, key="atom", bind="query-params",
                    disabled=view != "one atom")
shown = as_shown(final, settings.units, settings.clip)
figure = heatmap(shown, atom, settings.unit_label) if view == "one atom" else small_multiples(shown,
                                                                                             settings.unit_label)
chart(figure, settings, "heatmap")

regimes, strategies = task_regimes(final), family_strategies(final)
left, right = st.columns(2)
left.markdown("**Tasks**\n\n" + "\n".join(f"- {task}: {regime}" for task, regime in regimes.items()))
right.markdown("**Families**\n\n" + "\n".join(f"- {family}: {kind}" for family, kind in strategies.items()))
st.caption(REGIME_RULE)

st.subheader("Open a cell on the layer page")
pick_model, pick_task, go = st.columns([2, 2, 1])
model = pick_model.selectbox("Model", sorted(final["model"].unique()), key="cell_model")
task = pick_task.selectbox("Task", sorted(final["task"].unique()), key="cell_task")
if go.button("Open layers"):
    st.switch_page("pages/layers.py", query_params={"model": model, "task": task})

diagnostics(final)
report_button("Breadth: models x tasks", [figure],
              final[["model", "family", "task", "checkpoint", "layer", *ATOMS, "accuracy", "flags"]], "heatmap")
