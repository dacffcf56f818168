"""Depth: the atoms layer by layer (logit lens) for one model, task and checkpoint, with the phases shaded and the
samples behind the chosen layer, and any other curves (of this database, or the paper's, or of other estimators of
the same run, a Gaussian PID on hidden states among them) overlaid on raw or normalised depth."""

import pandas as pd
import streamlit as st

from pidcore.analysis.phases import PHASE_RULE, detect_phases
from pidcore.atoms import ATOMS, LABELS, MENU
from pidcore.dashboard.cautions import show_cautions
from pidcore.dashboard.charts import as_shown, layer_curves, overlay_curves
from pidcore.dashboard.drilldown import samples_panel
from pidcore.dashboard.estimators import (agreement_sentences, estimator_label, families_note, other_estimators,
                                          run_rows)
from pidcore.dashboard.export import ChartInfo
from pidcore.dashboard.rows import (curve_keys, curve_label, flag_rows, layer_curves_of, layer_spans, load_rows,
                                    paper_rows, partial_run_note, require)
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import asked_in_link, atom_metrics, chart, footer, say_if_unmet

REPORT_COLUMNS = ["layer", "n_layers", *ATOMS, "accuracy", "flags"]
SERIES_KEYS = ["model", "task", "checkpoint"]

st.title("Depth: where in the layers the information appears")
settings = sidebar()
rows = load_rows(settings)
curves = require(layer_curves_of(rows), "No run in this database has atoms at more than one layer (imports hold "
                 "the output layer only). Profile a model with `python -m pidcore profile --layers all` to see its "
                 "layers.")
asked = {key: asked_in_link(key) for key in ("model", "task", "checkpoint", "layer")}


def open_on_the_output() -> None:
    """Another model, task or checkpoint opens on its output layer, not on the layer number the slider had."""
    st.session_state.pop("layer", None)
    st.query_params.pop("layer", None)


choose_model, choose_task, choose_checkpoint = st.columns(3)
model = choose_model.selectbox("Model", sorted(curves["model"].unique()), key="model", bind="query-params",
                               on_change=open_on_the_output)
task = choose_task.selectbox("Task", sorted(curves[curves["model"] == model]["task"].unique()), key="task",
                             bind="query-params", on_change=open_on_the_output)
runs = curves[(curves["model"] == model) & (curves["task"] == task)]
checkpoints = runs.sort_values("step", na_position="first")["checkpoint"].unique().tolist()
checkpoint = choose_checkpoint.selectbox("Checkpoint", checkpoints, index=len(checkpoints) - 1, key="checkpoint",
                                         bind="query-params", on_change=open_on_the_output)
for key, shown in (("model", model), ("task", task), ("checkpoint", checkpoint)):
    say_if_unmet(asked[key], shown, key, "it has no run with atoms at two or more layers here")
curve = flag_rows(runs[runs["checkpoint"] == checkpoint].sort_values("layer"), settings)
if (note := partial_run_note(curve)) is not None:
    st.info(note)
show_cautions(curve, settings)
selected = as_shown(curve, settings.units, settings.clip)
phases = detect_phases(curve) if len(curve) > 2 else None
others = curves[~((curves["model"] == model) & (curves["task"] == task) & (curves["checkpoint"] == checkpoint))]
if settings.compare:
    others = pd.concat([others, layer_curves_of(paper_rows())], ignore_index=True)
choices = {curve_label(key): key for key in curve_keys(others)}
run = run_rows(settings.db, (model, task, checkpoint))
estimators = other_estimators(run, settings.estimator)
note = families_note(run, settings.estimator)
findings = [] if phases is None else [f"Phases of {model} on {task} ({checkpoint}): {phases.describe()}. "
                                      f"Three-phase pattern: {'yes' if phases.three_phase else 'no'}."]
findings += agreement_sentences(run, settings.estimator)


@st.fragment
def layer_view() -> None:
    """The layer slider, the curves, the chosen layer's atoms and samples: moving the slider reruns this part only."""
    layers = [int(layer) for layer in curve["layer"]]
    layer = st.select_slider("Layer (0 = embeddings, last = the model's output)", layers, value=layers[-1],
                             key="layer", bind="query-params")
    say_if_unmet(asked["layer"], layer, "layer", f"this run stores layers {layer_spans(curve['layer'])} only")
    normalised = st.toggle("Normalised depth (layer / n_layers), to line up models of different depth", key="depth",
                           bind="query-params")
    at_layer = selected[selected["layer"] == layer].iloc[0]
    atom_metrics(at_layer, settings.unit_label)
    compared = st.multiselect("Compare with other curves" + (" (the paper's among them)" if settings.compare else ""),
                              list(choices), key="overlay", bind="query-params",
                              help="Each curve gets its colour and each atom its line style; normalised depth lines "
                                   "up models of different depth.")
    also = st.multiselect("Also show (other estimators of this run)", estimators, key="also",
                          bind="query-params", help="The same run's curves by another estimator, each named with its "
                                                    "estimator: a BATCH variant, or the Gaussian PID on hidden "
                                                    "states.") if estimators else []
    run_key = (model, task, checkpoint)
    this = estimator_label(run_key, settings.estimator) if also else curve_label(run_key)
    if compared or also:
        shown_atoms = st.multiselect("Atoms", MENU, default=MENU[:2], format_func=LABELS.get, key="overlay_atoms")
        series = {this: selected}
        series.update({estimator_label(run_key, name): as_shown(run[run["estimator"] == name], settings.units,
                                                                settings.clip) for name in also})
        series.update({label: as_shown(others[(others[SERIES_KEYS] == list(choices[label])).all(axis=1)],
                                       settings.units, settings.clip) for label in compared})
        what = "Atoms layer by layer, " + ("compared across estimators" if also else "(logit lens), compared")
        info = ChartInfo(what, " vs ".join(series), layer="all",
                         estimator=" vs ".join([str(settings.estimator), *also]) if also else settings.estimator,
                         units=settings.unit_label)
        figure = overlay_curves(series, shown_atoms, settings.unit_label, normalised, phases)
        numbers = pd.concat([frame.assign(series=label) for label, frame in series.items()], ignore_index=True)
    else:
        info = ChartInfo("Atoms layer by layer (logit lens)", model, task, checkpoint, f"{layer} marked",
                         settings.estimator, settings.unit_label)
        figure = layer_curves(selected, layer, phases, settings.unit_label, normalised)
        numbers = selected
    shown_figure = chart(figure, settings, info, numbers[[c for c in ["series", *SERIES_KEYS, "estimator",
                                                                       *REPORT_COLUMNS] if c in numbers]])
    if note is not None:
        st.markdown(note)
    if phases is not None:
        st.markdown(f"**Phases found** ({markdown_text(model)} on {markdown_text(task)}): {phases.describe()}. "
                    f"Three-phase pattern: **{'yes' if phases.three_phase else 'no'}**.")
    with st.expander("Samples behind this layer: questions, answers, probe distributions, pointwise atoms",
                     key="samples", on_change="rerun", bind="query-params") as box:
        if box.open:  # built only when asked for: the table is the slowest part of a slider step
            samples_panel(curve[curve["layer"] == layer].iloc[0], settings.db, settings.estimator)
    footer(PHASE_RULE, curve, f"Depth: {model} on {task} ({checkpoint})", shown_figure, REPORT_COLUMNS, "layers",
           findings)


layer_view()
