"""Plotly figures of atoms: the model x task heatmap, layer curves with phases, training trajectories, and the case
study's probe distributions and sample atoms.

Pure functions of DataFrames (rows of the `atoms` view) and result objects, so they are testable without Streamlit.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pidcore.analysis.phases import Phases
from pidcore.atoms import ATOMS, LABELS, PASS_LABELS, PASSES, UNITS, Atoms, option_letters

COLOURS = {"r": "#7f7f7f", "u1": "#1f77b4", "u2": "#d62728", "s": "#2ca02c"}
PHASE_COLOURS = {"silent": "rgba(150,150,150,0.15)", "language": "rgba(214,39,40,0.10)",
                 "fusion": "rgba(44,160,44,0.15)"}


def in_units(frame: pd.DataFrame, units: str) -> pd.DataFrame:
    """Atoms in bits, or as a fraction of I(X1,X2;Y) = R + U1 + U2 + S of the same row."""
    if units == "bits":
        return frame
    scaled = frame.copy()
    total = frame[list(ATOMS)].sum(axis=1).where(lambda t: t.abs() > 1e-9)
    for atom in ATOMS:
        scaled[atom] = frame[atom] / total
    return scaled


def heatmap(frame: pd.DataFrame, atom: str, unit_label: str) -> go.Figure:
    """Model x task heatmap of one atom, annotated with the value and the accuracy."""
    values = frame.pivot_table(index="model", columns="task", values=atom, aggfunc="mean")
    accuracy = frame.pivot_table(index="model", columns="task", values="accuracy", aggfunc="mean")
    accuracy = accuracy.reindex(index=values.index, columns=values.columns)
    text = [[_cell(values.iat[i, j], accuracy.iat[i, j]) for j in range(values.shape[1])]
            for i in range(values.shape[0])]
    figure = go.Figure(go.Heatmap(z=values.values, x=list(values.columns), y=list(values.index), text=text,
                                  texttemplate="%{text}", colorscale="Viridis", colorbar={"title": unit_label}))
    figure.update_layout(title=f"{LABELS[atom]} at the output layer", xaxis_title="task", yaxis_title="model")
    return figure


def _cell(value: float, accuracy: float) -> str:
    accuracy_text = "" if pd.isna(accuracy) else f"<br>acc {accuracy:.2f}"
    return ("n/a" if pd.isna(value) else f"{value:.2f}") + accuracy_text


def small_multiples(frame: pd.DataFrame, unit_label: str) -> go.Figure:
    """The four atoms as four model x task heatmaps on one shared colour scale."""
    figure = make_subplots(rows=1, cols=4, subplot_titles=[LABELS[a] for a in ATOMS], shared_yaxes=True)
    low, high = float(frame[list(ATOMS)].min().min()), float(frame[list(ATOMS)].max().max())
    for column, atom in enumerate(ATOMS, start=1):
        values = frame.pivot_table(index="model", columns="task", values=atom, aggfunc="mean")
        figure.add_trace(go.Heatmap(z=values.values, x=list(values.columns), y=list(values.index), zmin=low,
                                    zmax=high, colorscale="Viridis", showscale=column == 4,
                                    colorbar={"title": unit_label}, texttemplate="%{z:.2f}"), 1, column)
    figure.update_layout(title="All four atoms at the output layer")
    return figure


def layer_curves(frame: pd.DataFrame, selected_layer: int, phases: Phases | None, unit_label: str,
                 normalised: bool = False) -> go.Figure:
    """Atoms against depth for one model and task, the selected layer marked and the phases shaded."""
    frame = frame.sort_values("layer")
    depth = frame["layer"] / frame["n_layers"] if normalised else frame["layer"]
    scale = float(frame["n_layers"].iloc[0]) if normalised else 1.0
    figure = go.Figure()
    if phases is not None:
        for name, span in (("silent", phases.silent), ("language", phases.language), ("fusion", phases.fusion)):
            if span is not None:
                figure.add_vrect(x0=(span[0] - 0.5) / scale, x1=(span[1] + 0.5) / scale, line_width=0,
                                 fillcolor=PHASE_COLOURS[name], annotation_text=name, annotation_position="top left")
    for atom in ATOMS:
        figure.add_trace(go.Scatter(x=depth, y=frame[atom], mode="lines+markers", name=LABELS[atom],
                                    line={"color": COLOURS[atom]}))
    figure.add_vline(x=selected_layer / scale, line_dash="dash", line_color="black")
    figure.add_hline(y=0, line_color="lightgray")
    figure.update_layout(xaxis_title="depth (layer / n_layers)" if normalised else "layer (0 = embeddings)",
                         yaxis_title=unit_label, title="Atoms layer by layer (logit lens)")
    return figure


def trajectories(frame: pd.DataFrame, atoms: list[str], selected_step: int, unit_label: str) -> go.Figure:
    """Atoms at the output layer against training step, stage boundaries marked, the chosen checkpoint marked."""
    frame = frame.sort_values("step")
    figure = go.Figure()
    for atom in atoms:
        figure.add_trace(go.Scatter(x=frame["step"], y=frame[atom], mode="lines+markers", name=LABELS[atom],
                                    line={"color": COLOURS[atom]}))
    for stage, rows in frame.groupby("stage", sort=False):
        first = rows["step"].min()
        if first > frame["step"].min():
            figure.add_vline(x=first - 0.5, line_dash="dot", line_color="gray",
                             annotation_text=f"stage {stage} begins", annotation_position="top")
    figure.add_vline(x=selected_step, line_dash="dash", line_color="black")
    figure.add_hline(y=0, line_color="lightgray")
    figure.update_layout(xaxis_title="training step", yaxis_title=unit_label,
                         title="Atoms over training (output layer)")
    return figure


def task_bars(frame: pd.DataFrame, unit_label: str) -> go.Figure:
    """The four atoms per task, averaged over the models shown (rows at each model's output layer)."""
    means = frame.groupby("task")[list(ATOMS)].mean()
    figure = go.Figure([go.Bar(name=LABELS[atom], x=list(means.index), y=means[atom], marker_color=COLOURS[atom])
                        for atom in ATOMS])
    figure.update_layout(barmode="group", title="Atoms per task, averaged over models (last checkpoint, output layer)",
                         xaxis_title="task", yaxis_title=unit_label)
    return figure


def probe_bars(probs: np.ndarray, options: list[str]) -> go.Figure:
    """The three probes' answer distributions over the options at the output layer (probs is [pass, layer, k])."""
    ticks = [f"{letter}. {option}" for letter, option in zip(option_letters(len(options)), options)]
    figure = go.Figure([go.Bar(name=PASS_LABELS[name], x=ticks, y=probs[index, -1])
                        for index, name in enumerate(PASSES)])
    figure.update_layout(barmode="group", title="Answer distributions over the options (output layer)",
                         yaxis_title="probability")
    return figure


def sample_against_reference(sample: Atoms, reference: pd.DataFrame, title: str) -> go.Figure:
    """One sample's atoms (stars) against the spread of a run's per-sample atoms (boxes), in bits."""
    figure = go.Figure()
    for atom in ATOMS:
        figure.add_trace(go.Box(y=reference[atom], name=LABELS[atom], marker_color=COLOURS[atom], boxpoints=False))
        figure.add_trace(go.Scatter(x=[LABELS[atom]], y=[sample[atom]], mode="markers", showlegend=False,
                                    marker={"symbol": "star", "size": 14, "color": "black"}))
    figure.update_layout(title=title, yaxis_title=UNITS, showlegend=False)
    return figure


def sample_layers(atoms: Mapping[int, Atoms]) -> go.Figure:
    """One sample's pointwise atoms layer by layer."""
    layers = sorted(atoms)
    figure = go.Figure([go.Scatter(x=layers, y=[atoms[layer][atom] for layer in layers], name=LABELS[atom],
                                   mode="lines+markers", line={"color": COLOURS[atom]}) for atom in ATOMS])
    figure.update_layout(title="This sample's atoms layer by layer", xaxis_title="layer (0 = embeddings)",
                         yaxis_title=UNITS)
    return figure
