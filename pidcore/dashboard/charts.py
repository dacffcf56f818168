"""Plotly figures of atoms: the model x task heatmap, layer curves with phases, training trajectories, and the case
study's probe distributions and sample atoms.

Pure functions of DataFrames (rows of the `atoms` view) and result objects, so they are testable without Streamlit.
Names from the database reach a figure through plotly_text, so Plotly shows them as text, not as its HTML subset.
"""

from __future__ import annotations

import itertools

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from pidcore.analysis.phases import Phases
from pidcore.analysis.regimes import KNOWLEDGE_DRIVEN, SYNERGY_DRIVEN, UNDETERMINED
from pidcore.atoms import (ATOMS, BOUND_COLUMNS, LABELS, MENU, NOISE_FLOOR_BITS, PASS_LABELS, PASSES, SYMBOLS, UNITS,
                           Atoms, option_letters)
from pidcore.dashboard.text import plotly_text

# Okabe-Ito colours, chosen so the four atoms stay apart under deuteranopia (CIEDE2000 >= 22 between any two,
# tests/test_colours.py), S against U2 (the paper's central contrast) as blue against vermillion. Every atom also
# has its own line style and marker, so colour is never the only cue.
COLOURS = {"r": "#7F7F7F", "u1": "#56B4E9", "u2": "#D55E00", "s": "#0072B2"}
DASHES = {"s": "solid", "u2": "dash", "u1": "dot", "r": "dashdot"}
MARKERS = {"s": "circle", "u2": "square", "u1": "diamond", "r": "triangle-up"}
PATTERNS = {"s": "", "u2": "/", "u1": ".", "r": "x"}
# Overlaid series: one colour per series, the atom shown by line style and marker. None is an atom's colour (a
# second curve in U2's vermillion would read as U2): Okabe-Ito's bluish green, orange and reddish purple, then three
# more that stay apart from them and from the atoms.
SERIES_COLOURS = ("#009E73", "#E69F00", "#CC79A7", "#8C564B", "#BCBD22", "#2F4F4F")
# Phases shaded in their atom's colour (silence grey, language build-up as U2, fusion as S), each band also named.
PHASE_COLOURS = {"silent": "rgba(127,127,127,0.15)", "language": "rgba(213,94,0,0.20)",
                 "fusion": "rgba(0,114,178,0.20)"}
PASS_PATTERNS = ("", "/", ".")  # full, image only, question only: a second cue besides the colour
STAGE_ONE_SHADE = "rgba(127,127,127,0.10)"
# Marks drawn over the data (the selected layer or step, the sample's star): mid-grey and yellow read on light and
# dark themes alike.
MARK_COLOUR, STAR_COLOUR = "#999999", "#F0E442"
# Each heatmap cell is tiled by CELL_MARKS_ACROSS columns of clickable squares CELL_MARK_PX wide, rows enough for
# its height; the clicked square is drawn in half-opaque near-black, which reads on every colour of Viridis.
CELL_MARKS_ACROSS, CELL_MARK_PX = 7, 36
CELL_MARK_OPACITY = 0.004  # they overlap: nearly invisible together, still taking hovers and clicks
CHOSEN_CELL = "#1a1a1a"
FLAG_MARKER = {"symbol": "x-open", "size": 13, "color": "#CC79A7", "line": {"width": 2}}
REGIME_SYMBOLS = {SYNERGY_DRIVEN: "circle", KNOWLEDGE_DRIVEN: "square", UNDETERMINED: "x"}


def _trace(kind: str, **properties: object) -> dict:
    """A trace as a plain dict: a figure validates its traces once, where go.Scatter and the like would be checked
    twice (made, then copied into the figure), a third of a chart's build time."""
    return {"type": kind, **properties}


def as_shown(frame: pd.DataFrame, units: str, clip: bool = False) -> pd.DataFrame:
    """Atoms and their bounds as a page shows them: clipped at 0 when asked (the paper's printed view; the store
    keeps them raw), then in bits or as a fraction of I(X1,X2;Y) = R + U1 + U2 + S of the same row."""
    columns = [column for column in (*ATOMS, *BOUND_COLUMNS) if column in frame]
    shown = frame.copy()
    if clip:
        shown[columns] = shown[columns].clip(lower=0)
    if units != "bits":
        total = shown[list(ATOMS)].sum(axis=1).where(lambda t: t.abs() > 1e-9)
        shown[columns] = shown[columns].div(total, axis=0)
    return shown


def heatmap(frame: pd.DataFrame, atom: str, unit_label: str) -> go.Figure:
    """Model x task heatmap of one atom, annotated with the value and the accuracy; each cell is covered by clickable
    markers (Streamlit selects scatter points, not heatmap cells) whose hover gives all four atoms, the clicked one
    drawn dark."""
    values = _grid(frame, atom)
    grids = [values.to_numpy()] + [_grid(frame, column).reindex_like(values).to_numpy()
                                   for column in (f"{atom}_lo", f"{atom}_hi", "accuracy")]
    text = [[_cell(*cell) for cell in zip(*rows)] for rows in zip(*grids)]
    columns, rows = list(values.columns), list(values.index)
    height = _grid_height(len(rows))
    trace = _trace("heatmap", z=values.to_numpy(), x=list(range(len(columns))), y=list(range(len(rows))), text=text,
                   texttemplate="%{text}", colorscale="Viridis", colorbar={"title": unit_label}, hoverinfo="skip")
    return go.Figure([trace, _cell_markers(frame, unit_label, columns, rows, height)],
                     {"title": f"{LABELS[atom]} at the output layer",
                      **_axes("task", "model", _category_ticks(columns), _category_ticks(rows)),
                      "height": height, "clickmode": "event+select"})


def _category_ticks(names: list[object]) -> dict:
    """An axis whose integer positions 0, 1, ... are named (the cells' markers sit between them)."""
    return {"tickmode": "array", "tickvals": list(range(len(names))), "ticktext": _names(names), "showgrid": False,
            "zeroline": False}


def _cell_markers(frame: pd.DataFrame, unit_label: str, columns: list[object], rows: list[object],
                  height: int) -> dict:
    """Near-invisible squares tiling each (model, task) cell, so a click anywhere in it selects it (their
    customdata is the row's position in `frame`) and the browser draws the clicked square dark (a selection style,
    so the figure Streamlit holds the selection of stays the same); hovering tells all four atoms with their
    intervals, the accuracy and any flags."""
    across = np.linspace(-0.4, 0.4, CELL_MARKS_ACROSS)
    down = np.linspace(-0.35, 0.35, max(2, int(np.ceil((height - 150) / len(rows) / CELL_MARK_PX)) + 1))
    x, y, positions, hovers = [], [], [], []
    for position, (task, model, hover) in enumerate(zip(frame["task"], frame["model"],
                                                        _cell_hovers(frame, unit_label))):
        for dx, dy in itertools.product(across, down):
            x.append(columns.index(task) + dx)
            y.append(rows.index(model) + dy)
            positions.append(position)
            hovers.append(hover)
    marker = {"symbol": "square", "size": CELL_MARK_PX, "opacity": CELL_MARK_OPACITY, "color": MARK_COLOUR}
    return _trace("scatter", x=x, y=y, mode="markers", showlegend=False, marker=marker,
                  customdata=positions, text=hovers, hovertemplate="%{text}<extra></extra>", name="cells",
                  hoverlabel={"bgcolor": "white"}, selected={"marker": {"opacity": 0.55, "color": CHOSEN_CELL}},
                  unselected={"marker": {"opacity": CELL_MARK_OPACITY}})


def _cell_hovers(frame: pd.DataFrame, unit_label: str) -> list[str]:
    """Each row's hover: model and task, the four atoms with intervals, the accuracy and its flags."""
    intervals, hovers = {atom: _interval(frame, atom) for atom in MENU}, []
    for index, (_, row) in enumerate(frame.iterrows()):
        lines = [f"{plotly_text(row['model'])} · {plotly_text(row['task'])}"]
        lines += [f"{SYMBOLS[atom]} {row[atom]:+.3f} {intervals[atom][index]} {unit_label}" for atom in MENU]
        if pd.notna(row.get("accuracy")):
            lines.append(f"accuracy {row['accuracy']:.3f}")
        if row.get("flags"):
            lines.append(f"flagged: {plotly_text(row['flags'])}")
        hovers.append("<br>".join(lines) + "<br>click to see its samples")
    return hovers


def _names(names: Iterable[object]) -> list[str]:
    """Names from the database as Plotly categories that show literally."""
    return [plotly_text(name) for name in names]


def _grid_height(rows: int) -> int:
    """A heatmap tall enough for its rows to hold three lines of text each."""
    return max(450, 150 + 48 * rows)


def _grid(frame: pd.DataFrame, column: str) -> pd.DataFrame:
    """A model x task table of one column's mean, models and tasks sorted."""
    return frame.groupby(["model", "task"])[column].mean().unstack("task").sort_index().sort_index(axis=1)


def _cell(value: float, low: float, high: float, accuracy: float) -> str:
    """A heatmap cell: the value, its 95% interval where there is one, and the accuracy."""
    interval = "" if pd.isna(low) or pd.isna(high) else f"<br>[{low:.2f}, {high:.2f}]"
    accuracy_text = "" if pd.isna(accuracy) else f"<br>acc {accuracy:.2f}"
    return ("n/a" if pd.isna(value) else f"{value:.2f}") + interval + accuracy_text


def small_multiples(frame: pd.DataFrame, unit_label: str) -> go.Figure:
    """The four atoms as four model x task heatmaps on one shared colour scale."""
    figure = make_subplots(rows=1, cols=4, subplot_titles=[LABELS[a] for a in ATOMS], shared_yaxes=True)
    low, high = float(frame[list(ATOMS)].min().min()), float(frame[list(ATOMS)].max().max())
    for column, atom in enumerate(ATOMS, start=1):
        values = _grid(frame, atom)
        figure.add_trace(_trace("heatmap", z=values.values, x=_names(values.columns), y=_names(values.index),
                                zmin=low, zmax=high, colorscale="Viridis", showscale=column == 4,
                                colorbar={"title": unit_label}, texttemplate="%{z:.2f}"), 1, column)
    figure.update_layout(title="All four atoms at the output layer", height=_grid_height(len(values)) * 2 // 3)
    return figure


def layer_curves(frame: pd.DataFrame, selected_layer: int, phases: Phases | None, unit_label: str,
                 normalised: bool = False) -> go.Figure:
    """Atoms against depth for one model and task, the selected layer marked and the phases shaded."""
    frame = frame.sort_values("layer")
    depth = frame["layer"] / frame["n_layers"] if normalised else frame["layer"]
    scale = float(frame["n_layers"].iloc[0]) if normalised else 1.0
    shapes, notes = _phase_bands(phases, scale)
    shapes = [_zero_line(), *shapes, _vertical_line(selected_layer / scale, "dash", MARK_COLOUR)]
    traces = [_atom_trace(atom, depth, frame, unit_label) for atom in ATOMS] + _flagged(depth, frame, ATOMS)
    return go.Figure(traces, {"shapes": shapes, "annotations": notes, "title": "Atoms layer by layer (logit lens)",
                              **_axes(_depth_title(normalised), unit_label,
                                      {} if normalised else _layer_ticks(frame["n_layers"].max()),
                                      _least_range([frame], ATOMS)),
                              "hovermode": "x unified"})


def _phase_bands(phases: Phases | None, scale: float) -> tuple[list[dict], list[dict]]:
    """Each phase found as a band in its colour (layers divided by `scale`, n_layers on normalised depth), named."""
    shapes, notes = [], []
    if phases is not None:
        for name, span in (("silent", phases.silent), ("language", phases.language), ("fusion", phases.fusion)):
            if span is not None:
                shapes.append(_band((span[0] - 0.5) / scale, (span[1] + 0.5) / scale, PHASE_COLOURS[name]))
                notes.append(_note((span[0] - 0.5) / scale, name, "left"))
    return shapes, notes


def trajectories(frame: pd.DataFrame, atoms: list[str], selected_step: float | None, unit_label: str) -> go.Figure:
    """Atoms at the output layer against training step, stage boundaries marked, the chosen checkpoint marked (not
    when its step is unknown, None)."""
    frame = frame.sort_values("step")
    shapes, notes = [_zero_line()], []
    ends = frame.groupby("stage", sort=False)["step"].max()
    if len(ends) > 1:
        shapes.append(_band(frame["step"].min(), ends.iloc[0], STAGE_ONE_SHADE))
    for end, following in zip(ends.iloc[:-1], ends.index[1:]):
        shapes.append(_vertical_line(end, "dot", MARK_COLOUR))
        notes.append(_note(end, f"stage {plotly_text(following)} begins", "left"))
    if selected_step is not None:
        shapes.append(_vertical_line(selected_step, "dash", MARK_COLOUR))
    traces = [_atom_trace(atom, frame["step"], frame, unit_label) for atom in atoms]
    traces += _flagged(frame["step"], frame, atoms)
    return go.Figure(traces, {"shapes": shapes, "annotations": notes, "title": "Atoms over training (output layer)",
                              **_axes("training step (a stage begins where the one before ended)", unit_label,
                                      y_extra=_least_range([frame], atoms)),
                              "hovermode": "x unified"})


def _atom_trace(atom: str, x: pd.Series, frame: pd.DataFrame, unit_label: str) -> dict:
    """One atom's curve in its colour, line style and marker, its hover giving the value, interval and units."""
    return _trace("scatter", x=x, y=frame[atom], mode="lines+markers", name=LABELS[atom],
                  line={"color": COLOURS[atom], "dash": DASHES[atom]}, marker={"symbol": MARKERS[atom]},
                  error_y=_error_bars(frame, atom), customdata=_interval(frame, atom),
                  hovertemplate=f"{SYMBOLS[atom]} %{{y:+.3f}} {unit_label} %{{customdata}}<extra></extra>")


def _interval(frame: pd.DataFrame, atom: str) -> list[str]:
    """Each row's 95% interval of an atom as hover text ("" where there is none)."""
    low, high = frame.get(f"{atom}_lo"), frame.get(f"{atom}_hi")
    if low is None or high is None:
        return [""] * len(frame)
    return ["" if pd.isna(lo) or pd.isna(hi) else f"[{lo:+.3f}, {hi:+.3f}]" for lo, hi in zip(low, high)]


def _flagged(x: pd.Series, frame: pd.DataFrame, atoms: Iterable[str]) -> list[dict]:
    """A cross over every point of a row with poor diagnostics (its `flags`), the reasons in the hover."""
    if "flags" not in frame:
        return []
    bad = frame["flags"].fillna("").astype(bool).to_numpy()
    if not bad.any():
        return []
    atoms = list(atoms)
    xs, whys = x.to_numpy()[bad].tolist(), _names(frame["flags"].to_numpy()[bad])
    ys = [value for atom in atoms for value in frame[atom].to_numpy()[bad].tolist()]
    return [_trace("scatter", x=xs * len(atoms), y=ys, mode="markers", name="poor diagnostics", marker=FLAG_MARKER,
                   customdata=whys * len(atoms), hovertemplate="flagged: %{customdata}<extra></extra>")]


def _layer_ticks(n_layers: float) -> dict:
    """Integer layer ticks, about ten of them, from layer 0."""
    step = max(1, int(np.ceil(float(n_layers) / 10))) if pd.notna(n_layers) else 1
    return {"tickmode": "linear", "tick0": 0, "dtick": step}


def overlay_curves(series: Mapping[str, pd.DataFrame], atoms: list[str], unit_label: str,
                   normalised: bool, phases: Phases | None = None) -> go.Figure:
    """Several layer curves at once: a colour per series (label -> rows), a line style per atom, and the phases of
    the first series (the page's own curve) shaded as on its single chart."""
    traces = []
    for index, (label, frame) in enumerate(series.items()):
        frame = frame.sort_values("layer")
        depth = frame["layer"] / frame["n_layers"] if normalised else frame["layer"]
        traces += _series_traces(label, depth, frame, atoms, SERIES_COLOURS[index % len(SERIES_COLOURS)])
    first = next(iter(series.values()))
    shapes, notes = _phase_bands(phases, float(first["n_layers"].max()) if normalised else 1.0)
    return go.Figure(traces, {"shapes": [_zero_line(), *shapes], "annotations": notes,
                              "title": "Atoms layer by layer (logit lens), compared",
                              **_axes(_depth_title(normalised), unit_label,
                                      y_extra=_least_range(series.values(), atoms))})


def overlay_trajectories(series: Mapping[str, pd.DataFrame], atoms: list[str], unit_label: str) -> go.Figure:
    """Several training trajectories at once against stage progress (each stage one unit wide, so runs with other
    step counts line up): a colour per series (label -> rows with a `progress` column), a line style per atom."""
    traces = []
    for index, (label, frame) in enumerate(series.items()):
        frame = frame.sort_values("progress")
        traces += _series_traces(label, frame["progress"], frame, atoms, SERIES_COLOURS[index % len(SERIES_COLOURS)])
    shapes = [_zero_line(), _vertical_line(1.0, "dot", "gray")]
    notes = [_note(0.5, "stage 1", "center"), _note(1.5, "stage 2", "center")]
    return go.Figure(traces, {"shapes": shapes, "annotations": notes, "title": "Atoms over training, compared",
                              **_axes("stage progress (stage 1: 0-1, stage 2: 1-2)", unit_label,
                                      y_extra=_least_range(series.values(), atoms))})


def _series_traces(label: str, x: pd.Series, frame: pd.DataFrame, atoms: list[str], colour: str) -> list[dict]:
    return [_trace("scatter", x=x, y=frame[atom], mode="lines+markers", name=f"{plotly_text(label)} · {SYMBOLS[atom]}",
                   line={"color": colour, "dash": DASHES[atom]}, marker={"symbol": MARKERS[atom]},
                   error_y=_error_bars(frame, atom), connectgaps=False) for atom in atoms]


def regime_plot(shares: pd.DataFrame) -> go.Figure:
    """Each task's mean S share against its mean U2 share (rows: task, s_share, u2_share, regime, source)."""
    traces = []
    for (regime, source), rows in shares.groupby(["regime", "source"]):
        traces.append(_trace("scatter", x=rows["u2_share"], y=rows["s_share"], mode="markers+text",
                             text=_names(rows["task"]), textposition="top center", name=f"{regime} ({source})",
                             marker={"size": 12, "symbol": REGIME_SYMBOLS.get(regime, "circle")}))
    return go.Figure(traces, {"title": "Task regimes: mean S share against mean U2 share of I(X1,X2;Y)",
                              "xaxis_title": "mean U2 / I(X1,X2;Y)", "yaxis_title": "mean S / I(X1,X2;Y)",
                              "xaxis": {"range": [-0.05, 1.05]}, "yaxis": {"range": [-0.05, 1.1]}})


def _error_bars(frame: pd.DataFrame, atom: str) -> dict:
    """Plotly error bars from an atom's 95% interval columns; none where the rows carry no interval."""
    low, high = frame.get(f"{atom}_lo"), frame.get(f"{atom}_hi")
    if low is None or high is None or low.isna().all():
        return {"visible": False}
    return {"type": "data", "symmetric": False, "array": (high - frame[atom]).fillna(0).tolist(),
            "arrayminus": (frame[atom] - low).fillna(0).tolist(), "thickness": 1, "width": 3}


def _axes(x_title: str, y_title: str, x_extra: dict | None = None, y_extra: dict | None = None) -> dict:
    """Layout axes with their titles, spelled out (Plotly's "xaxis_title" shorthand costs a parse per key)."""
    return {"xaxis": {"title": {"text": x_title}, **(x_extra or {})},
            "yaxis": {"title": {"text": y_title}, **(y_extra or {})}}


def _least_range(frames: Iterable[pd.DataFrame], atoms: Iterable[str]) -> dict:
    """A y-axis range 2 x NOISE_FLOOR_BITS tall around the values drawn (the atoms and their intervals) where they
    span less than NOISE_FLOOR_BITS (pidcore.analysis.cautions), so rounding noise of 1e-16 is a flat line, not
    curves apart; empty (Plotly's own range) otherwise."""
    columns = [column for atom in atoms for column in (atom, f"{atom}_lo", f"{atom}_hi")]
    values = pd.concat([pd.to_numeric(frame[column], errors="coerce") for frame in frames for column in columns
                        if column in frame] or [pd.Series(dtype=float)]).dropna()
    if values.empty or values.max() - values.min() >= NOISE_FLOOR_BITS:
        return {}
    middle = (values.max() + values.min()) / 2
    return {"range": [middle - NOISE_FLOOR_BITS, middle + NOISE_FLOOR_BITS]}


def _depth_title(normalised: bool) -> str:
    return "depth (layer / n_layers)" if normalised else "layer (0 = embeddings)"


def _vertical_line(x: float, dash: str, colour: str) -> dict:
    """A vertical line across the plot at data x (layout shapes are much cheaper to build than add_vline)."""
    return {"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
            "line": {"dash": dash, "color": colour}}


def _band(x0: float, x1: float, colour: str) -> dict:
    """A shaded vertical band between data x0 and x1, behind the traces."""
    return {"type": "rect", "xref": "x", "yref": "paper", "x0": x0, "x1": x1, "y0": 0, "y1": 1,
            "fillcolor": colour, "line": {"width": 0}, "layer": "below"}


def _zero_line() -> dict:
    """The horizontal line at 0 bits."""
    return {"type": "line", "xref": "paper", "yref": "y", "x0": 0, "x1": 1, "y0": 0, "y1": 0,
            "line": {"color": "lightgray"}}


def _note(x: float, text: str, align: str) -> dict:
    """A label at the top of the plot at data x; `text` is Plotly's HTML subset, so names in it go through
    plotly_text first."""
    return {"x": x, "y": 1, "xref": "x", "yref": "paper", "text": text, "showarrow": False, "xanchor": align,
            "yanchor": "bottom"}


def task_bars(frame: pd.DataFrame, unit_label: str) -> go.Figure:
    """The four atoms per task, averaged over the models shown (rows at each model's output layer)."""
    means = frame.groupby("task")[list(ATOMS)].mean()
    figure = go.Figure([_trace("bar", name=LABELS[atom], x=_names(means.index), y=means[atom],
                               marker={"color": COLOURS[atom], "pattern": {"shape": PATTERNS[atom]}})
                        for atom in ATOMS])
    figure.update_layout(barmode="group", title="Atoms per task, averaged over models (last checkpoint, output layer)",
                         xaxis_title="task", yaxis_title=unit_label)
    return figure


def probe_bars(probs: np.ndarray, options: list[str]) -> go.Figure:
    """The three probes' answer distributions over the options at the output layer (probs is [pass, layer, k])."""
    ticks = [f"{letter}. {plotly_text(option)}" for letter, option in zip(option_letters(len(options)), options)]
    figure = go.Figure([_trace("bar", name=PASS_LABELS[name], x=ticks, y=probs[index, -1],
                               marker={"color": SERIES_COLOURS[index], "pattern": {"shape": PASS_PATTERNS[index]}})
                        for index, name in enumerate(PASSES)])
    figure.update_layout(barmode="group", title="Answer distributions over the options (output layer)",
                         yaxis_title="probability")
    return figure


def sample_against_reference(sample: Atoms, reference: pd.DataFrame, title: str) -> go.Figure:
    """One sample's atoms (stars) against the spread of a run's per-sample atoms (boxes), in bits."""
    figure = go.Figure()
    for atom in ATOMS:
        figure.add_trace(_trace("box", y=reference[atom], name=LABELS[atom], marker={"color": COLOURS[atom]},
                                boxpoints=False))
        figure.add_trace(_trace("scatter", x=[LABELS[atom]], y=[sample[atom]], mode="markers", showlegend=False,
                                marker={"symbol": "star", "size": 15, "color": STAR_COLOUR,
                                        "line": {"color": MARK_COLOUR, "width": 1}}))
    figure.update_layout(title=plotly_text(title), yaxis_title=UNITS, showlegend=False)
    return figure


def sample_layers(atoms: Mapping[int, Atoms]) -> go.Figure:
    """One sample's pointwise atoms layer by layer."""
    layers = sorted(atoms)
    figure = go.Figure([_trace("scatter", x=layers, y=[atoms[layer][atom] for layer in layers], name=LABELS[atom],
                               mode="lines+markers", line={"color": COLOURS[atom], "dash": DASHES[atom]},
                               marker={"symbol": MARKERS[atom]}) for atom in ATOMS])
    figure.update_layout(title="This sample's atoms layer by layer", xaxis_title="layer (0 = embeddings)",
                         xaxis=_layer_ticks(max(layers)), yaxis_title=UNITS, hovermode="x unified")
    return figure
