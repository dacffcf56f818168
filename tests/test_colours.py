"""The charts stay readable with deuteranopia: the four atoms' colours stay apart (CIEDE2000 >= 15), each atom also
has its own line style and marker, and the phase shadings stay apart and named. Also the details a slide needs:
stage boundaries at the true step, integer layer ticks, flagged points marked."""

import itertools

import numpy as np
import pandas as pd
import pytest

from pidcore.analysis.phases import detect_phases
from pidcore.atoms import ATOMS, LABELS, Atoms
from pidcore.dashboard import charts
from tests.colour_vision import as_deuteranope_lab, ciede2000

MIN_DIFFERENCE = 15


def curve(n_layers: int = 8) -> pd.DataFrame:
    """A layer curve with the three phases: silent, then U2, then S at the top, with intervals and one flag."""
    layers = np.arange(n_layers + 1)
    u2 = np.where((layers > 2) & (layers < n_layers - 1), 0.6, 0.0)
    s = np.where(layers >= n_layers - 1, 0.8, 0.0)
    frame = pd.DataFrame({"layer": layers, "n_layers": n_layers, "r": 0.0, "u1": 0.01, "u2": u2, "s": s,
                          "flags": ["" if layer != 3 else "only 20 held-out samples" for layer in layers]})
    for atom in ATOMS:
        frame[f"{atom}_lo"], frame[f"{atom}_hi"] = frame[atom] - 0.05, frame[atom] + 0.05
    return frame


def training() -> pd.DataFrame:
    """The zoo's schedule: stage 1 at steps 0, 150 and 300, stage 2 from step 500."""
    steps = [0, 150, 300, 500, 900, 1500]
    return pd.DataFrame({"step": steps, "stage": ["1", "1", "1", "2", "2", "2"], "r": 0.1, "u1": 0.2,
                         "u2": 0.3, "s": np.linspace(0, 1, 6), "task": "synergy", "flags": ""})


def figures() -> dict[str, object]:
    """Every chart that draws the four atoms in their colours."""
    reference = pd.DataFrame({atom: np.linspace(-0.1, 0.5, 9) for atom in ATOMS})
    sample = {layer: Atoms(0.1 * layer, 0.2, 0.3, 0.4) for layer in range(5)}
    return {"layer curves": charts.layer_curves(curve(), 4, detect_phases(curve()), "bits"),
            "trajectories": charts.trajectories(training(), list(ATOMS), 300, "bits"),
            "task bars": charts.task_bars(training(), "bits"),
            "sample against reference": charts.sample_against_reference(Atoms(0.1, 0.2, 0.3, 0.4), reference, "x"),
            "sample layers": charts.sample_layers(sample)}


def atom_colours(figure) -> dict[str, str]:
    """The colour each atom's trace is drawn in, by atom."""
    colours = {}
    for trace in figure.data:
        for atom in ATOMS:
            if trace.name == LABELS[atom]:
                line = getattr(trace, "line", None)
                colours[atom] = (line.color if line is not None and line.color else None) or trace.marker.color
    return colours


def test_the_colour_difference_is_ciede2000():
    """Sharma, Wu and Dalal's (2005) test pairs."""
    assert ciede2000((50, 2.6772, -79.7751), (50, 0, -82.7485)) == pytest.approx(2.0425, abs=1e-4)
    assert ciede2000((50, 2.5, 0), (73, 25, -18)) == pytest.approx(27.1492, abs=1e-4)
    assert ciede2000((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514)) == pytest.approx(0.9082, abs=1e-4)


@pytest.mark.parametrize("name", list(figures()))
def test_every_chart_keeps_the_four_atoms_apart_under_deuteranopia(name):
    colours = atom_colours(figures()[name])
    assert set(colours) == set(ATOMS), name
    for first, second in itertools.combinations(ATOMS, 2):
        difference = ciede2000(as_deuteranope_lab(colours[first]), as_deuteranope_lab(colours[second]))
        assert difference >= MIN_DIFFERENCE, (name, first, second, difference)


def test_the_old_palette_fails_the_same_test():
    """The red U2 and green S the pages drew before collapse into one olive for a deuteranope."""
    assert ciede2000(as_deuteranope_lab("#d62728"), as_deuteranope_lab("#2ca02c")) < MIN_DIFFERENCE


def test_each_atom_has_its_own_line_style_and_marker_in_every_curve():
    series = {"a": curve(), "b": curve(6)}
    for figure in (charts.layer_curves(curve(), 4, None, "bits"), charts.overlay_curves(series, list(ATOMS), "bits",
                                                                                          True)):
        lines = [trace for trace in figure.data if trace.name != "poor diagnostics"]
        styles = {(trace.line.dash, trace.marker.symbol) for trace in lines[:len(ATOMS)]}
        assert len(styles) == len(ATOMS)


def test_the_phase_shadings_stay_apart_under_deuteranopia_and_are_named():
    figure = charts.layer_curves(curve(), 4, detect_phases(curve()), "bits")
    bands = [shape.fillcolor for shape in figure.layout.shapes if shape.type == "rect"]
    assert bands == [charts.PHASE_COLOURS[name] for name in ("silent", "language", "fusion")]
    language, fusion = (as_deuteranope_lab(charts.PHASE_COLOURS[name]) for name in ("language", "fusion"))
    assert ciede2000(language, fusion) >= MIN_DIFFERENCE
    assert [note.text for note in figure.layout.annotations] == ["silent", "language", "fusion"]


def test_marks_over_the_data_are_not_black():
    """Black vanishes on the dark theme."""
    figure = charts.layer_curves(curve(), 4, None, "bits")
    lines = [shape.line.color for shape in figure.layout.shapes if shape.type == "line"]
    assert "black" not in lines and charts.MARK_COLOUR in lines


def test_stage_two_begins_where_stage_one_ended_and_stage_one_is_shaded():
    figure = charts.trajectories(training(), ["s"], 300, "bits")
    boundaries = [shape.x0 for shape in figure.layout.shapes if shape.type == "line" and shape.line.dash == "dot"]
    assert boundaries == [300]
    (band,) = [shape for shape in figure.layout.shapes if shape.type == "rect"]
    assert (band.x0, band.x1) == (0, 300)
    assert [note.text for note in figure.layout.annotations] == ["stage 2 begins"]


def test_layer_ticks_are_integers_and_flagged_points_are_marked():
    figure = charts.layer_curves(curve(40), 4, None, "bits")
    assert (figure.layout.xaxis.tickmode, figure.layout.xaxis.dtick) == ("linear", 4)
    (flagged,) = [trace for trace in figure.data if trace.name == "poor diagnostics"]
    assert list(flagged.x) == [3] * len(ATOMS) and set(flagged.customdata) == {"only 20 held-out samples"}
    hover = next(trace for trace in figure.data if trace.name == LABELS["s"])
    assert "bits" in hover.hovertemplate and hover.customdata[0] == "[-0.050, +0.050]"


def test_compared_curves_keep_the_phase_shading_and_never_take_an_atoms_colour():
    """An overlaid second curve in U2's vermillion would read as U2; the page's own curve keeps its phases."""
    frame = curve()
    series = {"this": frame, "second": frame.assign(u2=frame["u2"] / 2), "third": frame.assign(s=frame["s"] / 2)}
    for normalised, scale in ((False, 1.0), (True, 8.0)):
        figure = charts.overlay_curves(series, ["s", "u2"], "bits", normalised, detect_phases(frame))
        assert [note.text for note in figure.layout.annotations] == ["silent", "language", "fusion"]
        bands = [shape for shape in figure.layout.shapes if shape.type == "rect"]
        assert bands[-1].x1 == pytest.approx((8 + 0.5) / scale)  # fusion to the top layer, on either depth
    series_colours = {trace.line.color for trace in figure.data}
    assert len(series_colours) == 3 and not series_colours & set(charts.COLOURS.values())
    for first, second in itertools.combinations(series_colours, 2):
        assert ciede2000(as_deuteranope_lab(first), as_deuteranope_lab(second)) >= MIN_DIFFERENCE


def test_a_heatmap_cell_takes_clicks_anywhere_in_it_and_draws_the_clicked_square_dark():
    """One marker per cell took clicks only within 40 px of its centre; now squares tile each cell, every one
    naming its row, and the clicked one is drawn dark by the browser (a selection style)."""
    frame = pd.DataFrame([{"model": model, "task": task, "r": 0.1, "u1": 0.2, "u2": 0.3, "s": 0.4, "s_lo": 0.3,
                           "s_hi": 0.5, "accuracy": 0.9}
                          for model in ("m1", "m2") for task in ("t1", "t2", "t3")])
    markers = charts.heatmap(frame, "s", "bits").data[1]
    height = charts._grid_height(2)
    for position, (model, task) in enumerate(zip(frame["model"], frame["task"])):
        xs = [x for x, row in zip(markers.x, markers.customdata) if row == position]
        ys = [y for y, row in zip(markers.y, markers.customdata) if row == position]
        column, row = ["t1", "t2", "t3"].index(task), ["m1", "m2"].index(model)
        assert min(xs) == pytest.approx(column - 0.4) and max(xs) == pytest.approx(column + 0.4)
        assert min(ys) == pytest.approx(row - 0.35) and max(ys) == pytest.approx(row + 0.35)
        row_px = (height - 150) / 2  # the squares, CELL_MARK_PX wide, leave no gap down a cell
        assert (0.7 / (len(set(ys)) - 1)) * row_px <= charts.CELL_MARK_PX
    assert markers.selected.marker.opacity > 0.5 > markers.unselected.marker.opacity
