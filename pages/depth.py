"""Depth: the atoms layer by layer (logit lens) for one model, task and checkpoint, with the phases shaded."""

import streamlit as st

from pidcore.analysis.phases import PHASE_RULE, detect_phases
from pidcore.atoms import ATOMS
from pidcore.dashboard.charts import as_shown, layer_curves
from pidcore.dashboard.rows import flag_rows, load_rows
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.widgets import atom_metrics, chart, footer

st.title("Depth: where in the layers the information appears")
settings = sidebar()
rows = load_rows(settings)
if rows is None:
    st.stop()
choose_model, choose_task, choose_checkpoint = st.columns(3)
model = choose_model.selectbox("Model", sorted(rows["model"].unique()), key="model", bind="query-params")
task = choose_task.selectbox("Task", sorted(rows[rows["model"] == model]["task"].unique()), key="task",
                             bind="query-params")
runs = rows[(rows["model"] == model) & (rows["task"] == task)]
checkpoints = runs.sort_values("step", na_position="first")["checkpoint"].unique().tolist()
checkpoint = choose_checkpoint.selectbox("Checkpoint", checkpoints, index=len(checkpoints) - 1, key="checkpoint",
                                         bind="query-params")
curve = flag_rows(runs[runs["checkpoint"] == checkpoint].sort_values("layer"), settings)
n_layers = int(curve["n_layers"].iloc[0])
layer = st.slider("Layer (0 = embeddings, last = the model's output)", 0, n_layers, n_layers, key="layer",
                  bind="query-params")
normalised = st.toggle("Normalised depth (layer / n_layers), to line up models of different depth", key="depth",
                       bind="query-params")
selected = as_shown(curve, settings.units, settings.clip)
atom_metrics(selected[selected["layer"] == layer].iloc[0], settings.unit_label)
phases = detect_phases(curve) if len(curve) > 2 else None
figure = layer_curves(selected, layer, phases, settings.unit_label, normalised)
chart(figure, settings, f"layers-{model}-{task}")
if phases is not None:
    st.markdown(f"**Phases found:** {phases.describe()}. Three-phase pattern: "
                f"**{'yes' if phases.three_phase else 'no'}**.")
footer(PHASE_RULE, curve, f"Depth: {model} on {task} ({checkpoint})", figure,
       ["layer", "n_layers", *ATOMS, "accuracy", "flags"], "layers")
