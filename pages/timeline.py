"""Time: the atoms at the output layer over training checkpoints, stage boundaries marked, and any other
trajectories (of this database, or the paper's LLaVA-1.5) overlaid on stage progress."""

import pandas as pd
import streamlit as st

from pidcore.analysis.regimes import is_output
from pidcore.analysis.stages import STAGE2_RULE, is_stage2_rise, stage2_rise, stage_progress, training_checkpoints
from pidcore.atoms import ATOMS, LABELS, MENU
from pidcore.dashboard.cautions import show_cautions
from pidcore.dashboard.charts import as_shown, overlay_trajectories, trajectories
from pidcore.dashboard.export import ChartInfo
from pidcore.dashboard.rows import (PAPER_SUFFIX, checkpoint_label, flag_rows, load_rows, paper_figures_note,
                                    paper_rows, require, trajectories_of)
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import asked_in_link, atom_metrics, chart, footer, say_if_unmet

REPORT_COLUMNS = ["checkpoint", "step", "stage", *ATOMS, "accuracy", "flags"]
NO_TRAJECTORY = "No model in this database has two or more checkpoints with a training stage and step."


def why_no_trajectory(rows: pd.DataFrame) -> str:
    """The note where no model has a trajectory, naming what its checkpoints lack (not the options given already):
    the step or stage, or, where checkpoints have both, a second checkpoint under the same model name."""
    outputs = rows[is_output(rows)]
    staged = training_checkpoints(outputs)
    if staged.empty:
        missing = [flag for flag, column in (("--checkpoint-step", "step"), ("--stage", "stage"))
                   if outputs[column].isna().all()] or ["--checkpoint-step", "--stage"]
        return (f"{NO_TRAJECTORY} Profile checkpoints with {' and '.join(f'`{flag}`' for flag in missing)} to see a "
                "trajectory.")
    models = sorted(staged["model"].unique())
    shown = ", ".join(markdown_text(name) for name in models[:5]) + (", ..." if len(models) > 5 else "")
    return (f"{NO_TRAJECTORY} Checkpoints with both are here, but one per model and task ({shown}): a model's "
            "checkpoints need one model name and a checkpoint name each. Profile a checkpoint folder with "
            "`--checkpoint-step` and no `--checkpoint` (the folder's name names the checkpoint, the folder above it "
            "the model), or give every checkpoint `--name MODEL` and its own `--checkpoint NAME`.")


st.title("Time: when in training the information is learned")
settings = sidebar()
rows = load_rows(settings)
training = require(trajectories_of(rows), why_no_trajectory(rows))
asked = {key: asked_in_link(key) for key in ("train_model", "train_task", "train_checkpoint")}
choose_model, choose_task = st.columns(2)
model = choose_model.selectbox("Model", sorted(training["model"].unique()), key="train_model", bind="query-params")
task = choose_task.selectbox("Task", sorted(training[training["model"] == model]["task"].unique()), key="train_task",
                             bind="query-params")
for key, shown in (("train_model", model), ("train_task", task)):
    say_if_unmet(asked[key], shown, key.removeprefix("train_"),
                 "it has no two checkpoints with a stage and step here")
outputs = flag_rows(training[(training["model"] == model) & (training["task"] == task)], settings)
show_cautions(outputs, settings)
labels = {row["checkpoint"]: checkpoint_label(row["stage"], row["step"], row["checkpoint"])
          for _, row in outputs.iterrows()}
# The slider renders its options as Markdown (and writes the chosen one into the URL): names escaped there only.
options = {checkpoint: markdown_text(label) for checkpoint, label in labels.items()}
asked_checkpoint = next((labels[checkpoint] for checkpoint, option in options.items()
                         if option == asked["train_checkpoint"]), asked["train_checkpoint"])
chosen = as_shown(outputs, settings.units, settings.clip)
others = training[~((training["model"] == model) & (training["task"] == task))]
if settings.compare:
    others = pd.concat([others, trajectories_of(paper_rows())], ignore_index=True)
choices = {f"{key[0]} · {key[1]}": frame for key, frame in others.groupby(["model", "task"], sort=True)}
rise = stage2_rise(outputs)
rise_text = None if rise is None else f"{rise:+.3f} bits ({'a' if is_stage2_rise(rise) else 'no'} stage-2 rise)"
findings = [] if rise is None else [f"S from the end of stage 1 to the end of stage 2 for {model} on {task}: "
                                    f"{rise_text}."]


@st.fragment
def checkpoint_view() -> None:
    """The checkpoint scrubber, its atoms and the trajectories: scrubbing reruns this part only."""
    checkpoint = st.select_slider("Checkpoint", list(labels), value=list(labels)[-1], format_func=options.get,
                                  key="train_checkpoint", bind="query-params")
    say_if_unmet(asked_checkpoint, labels[checkpoint], "checkpoint", "it is not on this trajectory")
    atom_metrics(chosen[chosen["checkpoint"] == checkpoint].iloc[0], settings.unit_label)
    shown_atoms = st.multiselect("Atoms", MENU, default=MENU[:2], format_func=LABELS.get, key="train_atoms")
    compared = st.multiselect("Compare with other trajectories" + (" (the paper's among them)" if settings.compare
                                                                   else ""),
                              list(choices), key="train_overlay", bind="query-params",
                              help="Steps differ between runs, so compared trajectories are drawn against stage "
                                   "progress: each stage one unit wide, from its first to its last checkpoint.")
    if compared:
        series = {f"{model} · {task}": chosen}
        series.update({label: as_shown(choices[label], settings.units, settings.clip) for label in compared})
        info = ChartInfo("Atoms over training, compared", " vs ".join(series), checkpoint="all", layer="output",
                         estimator=settings.estimator, units=settings.unit_label)
        figure = overlay_trajectories({label: frame.assign(progress=stage_progress(frame))
                                       for label, frame in series.items()}, shown_atoms, settings.unit_label)
        numbers = pd.concat([frame.assign(series=label) for label, frame in series.items()], ignore_index=True)
    else:
        step = outputs[outputs["checkpoint"] == checkpoint]["step"].iloc[0]
        info = ChartInfo("Atoms over training", model, task, f"{labels[checkpoint]} marked", "output",
                         settings.estimator, settings.unit_label)
        figure = trajectories(chosen, shown_atoms, None if pd.isna(step) else float(step), settings.unit_label)
        numbers = chosen
    shown_figure = chart(figure, settings, info, numbers[[c for c in ["series", "model", "task", *REPORT_COLUMNS]
                                                          if c in numbers]])
    if rise_text is not None:
        st.markdown(f"**S from the end of stage 1 to the end of stage 2:** {rise_text}.")
    published = ([(model, task)] if settings.is_paper else []) + [
        tuple(choices[label][["model", "task"]].iloc[0]) for label in compared if PAPER_SUFFIX in label]
    if published and (note := paper_figures_note(published)) is not None:
        st.caption(markdown_text(note))
    footer(STAGE2_RULE, outputs, f"Time: {model} on {task}", shown_figure, REPORT_COLUMNS, "training", findings)


checkpoint_view()
