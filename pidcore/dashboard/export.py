"""Figures that explain themselves once they leave the dashboard: a title naming what is shown (model, task,
checkpoint, layer, estimator, units), a file name built from the same words, system fonts (what the browser
measures is what the exported image draws, so nothing is clipped), a legend sized for its longest entry, and the
PNG, SVG and CSV files a chart's export buttons hand out.

Pure functions of figures and DataFrames, testable without Streamlit; PNG and SVG are drawn by kaleido in a local
Chrome or Chromium (never downloaded).
"""

from __future__ import annotations

import io
import math
import re
import textwrap
import threading
import warnings
import zipfile
from dataclasses import dataclass, fields

import kaleido
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio
from choreographer.browsers.chromium import Chromium

from pidcore.dashboard.charts import SERIES_COLOURS
from pidcore.dashboard.text import plotly_text

# Fonts every system has under one of these names; a web font (Streamlit's own) is measured in the page but missing
# when the browser draws the exported image, which is how a legend loses its last characters.
FONT_FAMILY = "Arial, 'Liberation Sans', Helvetica, 'DejaVu Sans', sans-serif"
TEXT_COLOUR = "#1a1a1a"  # near-black on the white chart background: about 17:1 contrast
GRID_COLOUR = "#e5e8ee"
TEXT_PX = {False: 14, True: 20}  # normal, presentation (a projector at the back of a room)
LINE_PX = {False: 2, True: 3.5}
MARKER_PX = {False: 7, True: 11}
# Width per character of the widest common sans-serif font, in em: a legend entry sized with it fits in any of them.
WIDE_CHARACTER_EM = 0.62
LEGEND_SYMBOL_PX = 46
LEGEND_LAYOUT_PX = 900  # the width legends are laid out for (a narrower chart wraps them into more rows)
LEGEND_ROW_EM = 1.9
PLOT_PX = 450  # a chart's height without its legend, where the chart sets none
MARGIN_PX = {"l": 70, "r": 30}
LINE_EM = 1.3  # the height of a wrapped title line, in font sizes
AXIS_BELOW_PX = 90  # tick labels and axis title under the plot
IMAGE_SCALE = 3  # PNG pixels per CSS pixel: sharp on a slide
# One kaleido browser serves every export of the process (a browser started per image took over 3 s a click); it
# answers one request at a time in order, so requests from several sessions take turns.
_KALEIDO_TURN = threading.Lock()


class ExportError(RuntimeError):
    """An image cannot be drawn here (no local Chrome or Chromium for kaleido); the message says what to do."""


@dataclass(frozen=True)
class ChartInfo:
    """What a chart shows, named in its title, subtitle and file name (None: not one value, left out)."""

    what: str
    model: str | None = None
    task: str | None = None
    checkpoint: str | None = None
    layer: str | None = None
    estimator: str | None = None
    units: str | None = None

    def subtitle(self) -> str:
        """The named parts as "model llava-s · task synergy · ... · units bits"."""
        return " · ".join(f"{name} {value}" for name, value in self._parts())

    def widget_key(self) -> str:
        """A key for the chart on its page that stays the same while only its checkpoint or layer changes, so
        Streamlit updates the drawn chart instead of drawing a new one."""
        return _slug([self.what, self.model or "", self.task or ""])

    def file_stem(self) -> str:
        """A file name without suffix from the same words, safe on every file system."""
        return _slug([self.what, *(value for _, value in self._parts())])

    def _parts(self) -> list[tuple[str, str]]:
        return [(field.name, str(getattr(self, field.name))) for field in fields(self)
                if field.name != "what" and getattr(self, field.name) is not None]


def _slug(words: list[str]) -> str:
    """Words joined into a name safe on every file system: letters, digits and . _ + - only, at most 180."""
    return re.sub(r"_+", "_", re.sub(r"[^A-Za-z0-9._+-]+", "_", "_".join(words))).strip("_")[:180]


def _template(presentation: bool) -> go.layout.Template:
    """White background, light grid, Okabe-Ito series colours and dark system-font text of the size a screen (or a
    projector) needs; when presenting, thicker lines and larger markers. Small on purpose: Plotly validates a
    template each time a figure takes it, and plotly_white's full one costs 20 ms a chart."""
    size = TEXT_PX[presentation]
    axis = {"gridcolor": GRID_COLOUR, "zerolinecolor": GRID_COLOUR, "linecolor": GRID_COLOUR, "automargin": True,
            "tickfont": {"color": TEXT_COLOUR}, "title": {"font": {"color": TEXT_COLOUR}}}
    layout = {"font": {"family": FONT_FAMILY, "size": size, "color": TEXT_COLOUR}, "paper_bgcolor": "white",
              "plot_bgcolor": "white", "colorway": list(SERIES_COLOURS), "xaxis": axis, "yaxis": axis,
              "title": {"x": 0, "xref": "paper", "xanchor": "left", "font": {"size": size + 4},
                        "subtitle": {"font": {"size": size - 2}}},
              "hoverlabel": {"font": {"family": FONT_FAMILY, "size": size}},
              "annotationdefaults": {"font": {"size": size - 2, "color": TEXT_COLOUR}}}
    thick = {"scatter": [{"line": {"width": LINE_PX[True]}, "marker": {"size": MARKER_PX[True]}}]}
    data = thick if presentation else {}
    return go.layout.Template(layout=layout, data=data)


TEMPLATES = {presentation: _template(presentation) for presentation in (False, True)}


def styled(figure: go.Figure, info: ChartInfo, presentation: bool = False,
           layout_px: int = LEGEND_LAYOUT_PX) -> go.Figure:
    """`figure`, restyled in place and returned: the self-describing title, dark system-font text (larger, with
    thicker lines and markers, for a presentation), and a legend below the plot sized to hold its longest entry.
    Title, subtitle and legend are laid out for `layout_px` wide (a narrower chart, a column of the case study,
    gets them wrapped into more lines instead of cut off)."""
    size = TEXT_PX[presentation]
    _size_cell_text(figure, size)
    legend, legend_px = _legend(figure, size, layout_px)
    title = _wrapped(info.what, size + 4, layout_px)
    subtitle = _wrapped(info.subtitle(), size - 2, layout_px)
    extra_px = round(LINE_EM * ((size + 4) * (len(title) - 1) + (size - 2) * (len(subtitle) - 1)))
    figure.update_layout(template=TEMPLATES[presentation], legend=legend,
                         height=(figure.layout.height or PLOT_PX) + legend_px + extra_px,
                         margin={"t": 70 + 3 * size + extra_px, "l": MARGIN_PX["l"], "r": MARGIN_PX["r"],
                                 "b": AXIS_BELOW_PX + legend_px},
                         title={"text": "<br>".join(title), "subtitle": {"text": "<br>".join(subtitle)}})
    return figure


def _size_cell_text(figure: go.Figure, size: int) -> None:
    """Heatmap cell text at the chart's text size (Plotly's default stays small when presenting), the figure made
    taller in proportion so each cell still holds its lines."""
    cells = [trace for trace in figure.data if trace.type == "heatmap" and trace.texttemplate]
    if not cells:
        return
    for trace in cells:
        trace.textfont = {"size": size - 2}
    if figure.layout.height:
        figure.layout.height = round(figure.layout.height * (size - 2) / (TEXT_PX[False] - 2))


def _wrapped(text: str, size: int, layout_px: int) -> list[str]:
    """`text` as Plotly text in lines that fit between a chart's side margins at font size `size`, in a wide font."""
    characters = max(12, int((layout_px - MARGIN_PX["l"] - MARGIN_PX["r"]) / (size * WIDE_CHARACTER_EM)))
    return [plotly_text(line) for line in textwrap.wrap(text, characters, break_on_hyphens=False)] or [""]


def _legend(figure: go.Figure, size: int, layout_px: int) -> tuple[dict, int]:
    """A horizontal legend at the bottom of the figure, under the axis title, whose entries are each wide enough
    for the longest name in a wide font; with the height its rows take (0 without a legend)."""
    names = [trace.name for trace in figure.data if trace.name and trace.showlegend is not False]
    entry = round(max((len(name) for name in names), default=0) * size * WIDE_CHARACTER_EM + LEGEND_SYMBOL_PX)
    rows = math.ceil(len(names) / max(1, layout_px // entry))
    legend = {"orientation": "h", "x": 0, "xanchor": "left", "yref": "container", "y": 0, "yanchor": "bottom",
              "entrywidth": entry, "entrywidthmode": "pixels", "font": {"size": size, "color": TEXT_COLOUR}}
    return legend, rows * round(size * LEGEND_ROW_EM)


NO_BROWSER = ("PNG and SVG files are drawn with a local Chrome or Chromium, and there is none on this machine: "
              "install one (on Debian: apt-get install chromium), or use the camera icon in the chart's toolbar, "
              "which draws in your browser.")


def browser_available() -> bool:
    """Whether kaleido finds a Chrome or Chromium installed here (it is never downloaded)."""
    return Chromium.find_browser(skip_local=False) is not None


def image_bytes(figure: go.Figure, image_format: str) -> bytes:
    """The figure as PNG (at IMAGE_SCALE) or SVG, drawn by kaleido in the local Chrome or Chromium."""
    if not browser_available():
        raise ExportError(NO_BROWSER)
    with _KALEIDO_TURN:
        kaleido.start_sync_server(**_kaleido_options(), silence_warnings=True)
        with warnings.catch_warnings():  # plotly passes its options again, which the running browser already has
            warnings.filterwarnings("ignore", "The kopts argument is ignored", UserWarning)
            return figure.to_image(format=image_format, scale=IMAGE_SCALE if image_format == "png" else 1,
                                   width=_width(figure), height=figure.layout.height or PLOT_PX)


def _kaleido_options() -> dict[str, object]:
    """The plotly.js and MathJax a user set in plotly's defaults (plotly 6.1 has no such defaults; unset, kaleido
    finds its own), for the browser that draws every export."""
    return {name: value for name in ("plotlyjs", "mathjax") if (value := getattr(pio.defaults, name, None))}


def _width(figure: go.Figure) -> int:
    """The exported width: the figure's own, or a slide's."""
    return int(figure.layout.width or 1100)


def images_zip(figure: go.Figure, stem: str) -> bytes:
    """One zip holding the figure as STEM.png and STEM.svg: both formats from one click."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for image_format in ("png", "svg"):
            archive.writestr(f"{stem}.{image_format}", image_bytes(figure, image_format))
    return buffer.getvalue()


def csv_bytes(numbers: pd.DataFrame, info: ChartInfo) -> bytes:
    """The numbers behind a chart as CSV, headed by a comment line naming what they are."""
    return (f"# {info.what}: {info.subtitle()}\n" + numbers.to_csv(index=False)).encode("utf-8")
