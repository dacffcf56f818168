"""Time: the atoms at the output layer over training checkpoints, stage boundaries marked."""

import streamlit as st

from pidcore.analysis.stages import STAGE2_RULE, is_stage2_rise, stage2_rise
from pidcore.atoms import ATOMS, LABELS, MENU
from pidcore.dashboard.charts import as_shown, trajectories
from pidcore.dashboard.rows import flag_rows, load_rows
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.widgets import atom_metrics, chart, footer

st.title("Time: when in training the information is learned")
settings = sidebar()
rows = load_rows(settings)
if rows is None:
    st.stop()
choose_model, choose_task = st.columns(2)
model = choose_model.selectbox("Model", sorted(rows["model"].unique()), key="train_model", bind="query-params")
task = choose_task.selectbox("Task", sorted(rows[rows["model"] == model]["task"].unique()), key="train_task",
                             bind="query-params")
outputs = rows[(rows["model"] == model) & (rows["task"] == task) & (rows["layer"] == rows["n_layers"])]
outputs = flag_rows(outputs.sort_values("step", na_position="first"), settings)
if outputs["step"].isna().all() or len(outputs) < 2:
    st.info(f"{model} on {task} has {len(outputs)} checkpoint(s) with a training step; profile checkpoints with "
            "`--checkpoint-step` and `--stage` to see a trajectory.")
    st.stop()
labels = {row["checkpoint"]: f"stage {row['stage']} · step {int(row['step'])}" for _, row in outputs.iterrows()}
checkpoint = st.select_slider("Checkpoint", list(labels), value=list(labels)[-1], format_func=labels.get,
                              key="train_checkpoint", bind="query-params")
chosen = as_shown(outputs, settings.units, settings.clip)
atom_metrics(chosen[chosen["checkpoint"] == checkpoint].iloc[0], settings.unit_label)
shown_atoms = st.multiselect("Atoms", MENU, default=MENU[:2], format_func=LABELS.get,
                             key="train_atoms")
step = int(outputs[outputs["checkpoint"] == checkpoint]["step"].iloc[0])
figure = trajectories(chosen, shown_atoms, step, settings.unit_label)
chart(figure, settings, f"training-{model}-{task}")
rise = stage2_rise(outputs)
if rise is not None:
    st.markdown(f"**S from the end of stage 1 to the last checkpoint:** {rise:+.3f} bits "
                f"({'a stage-2 rise' if is_stage2_rise(rise) else 'no stage-2 rise'}).")
footer(STAGE2_RULE, outputs, f"Time: {model} on {task}", figure,
       ["checkpoint", "step", "stage", *ATOMS, "accuracy", "flags"], "training")
