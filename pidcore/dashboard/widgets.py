"""Streamlit pieces the pages share: charts with export options, the four atoms as metrics, the diagnostics, and
what a page says when a link asks for something it cannot show."""

from __future__ import annotations

from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pidcore.analysis.flags import FLAG_RULE
from pidcore.atoms import ATOMS, SYMBOLS
from pidcore.dashboard.export import (IMAGE_SCALE, LEGEND_LAYOUT_PX, NO_BROWSER, ChartInfo, browser_available,
                                      csv_bytes, images_zip, styled)
from pidcore.dashboard.report import SHOWN_DIAGNOSTICS, report_button
from pidcore.dashboard.sidebar import NORMAL_ROOT_PX, PRESENTATION_ROOT_PX, Settings
from pidcore.dashboard.text import markdown_text

NOT_STORED = "n/a: not stored for this row (the database holds no value there, or NaN)."
# Column widths that fit a table's text: the data grid otherwise sizes a column by its first cells and clips the rest
# (numbers from the left). A generous width of one character of its 14-px font, the cell's padding, and the widest
# column before its text is cut (hover shows the whole cell).
CHARACTER_PX = 8
CELL_PADDING_PX = 28
WIDEST_COLUMN_PX = 480
P_VALUE_FORMAT = "%.1e"  # p-values down to 1e-05 and below, never cut to ".00001"


def fitted_columns(frame: pd.DataFrame, p_values: tuple[str, ...] = ()) -> dict[str, object]:
    """A column_config giving each column of `frame` the width of its header and widest cell, the `p_values`
    columns in scientific notation."""
    config = {}
    for column in frame.columns:
        if column in p_values:
            cells = [P_VALUE_FORMAT % value for value in frame[column].dropna()]
            config[column] = st.column_config.NumberColumn(format=P_VALUE_FORMAT, width=_fitted_px(column, cells))
        else:
            cells = [f"{value:g}" if isinstance(value, float) else str(value) for value in frame[column].dropna()]
            config[column] = st.column_config.Column(width=_fitted_px(column, cells))
    return config


def _fitted_px(header: str, cells: list[str]) -> int:
    """The width in pixels that shows the header and the widest cell whole, up to WIDEST_COLUMN_PX; larger in
    proportion to the root font when presenting (the grid's text grows with it)."""
    characters = max([len(str(header)), *map(len, cells)])
    scale = PRESENTATION_ROOT_PX / NORMAL_ROOT_PX if st.session_state.get("presentation") else 1.0
    return round(min(characters * CHARACTER_PX + CELL_PADDING_PX, WIDEST_COLUMN_PX) * scale)


def chart(figure: go.Figure, settings: Settings, info: ChartInfo, numbers: pd.DataFrame | None = None,
          key: str | None = None, selectable: bool = False, layout_px: int = LEGEND_LAYOUT_PX) -> go.Figure:
    """Show a figure titled by what it shows, with buttons that download it as PNG + SVG (one zip) and its numbers
    as CSV; its toolbar's camera downloads it in the sidebar's format. Returns the figure as shown (for reports).
    `key` (by default info.widget_key()) names the chart on the page; with `selectable`, clicks on its points rerun
    the page (read them with `selection(key)`). `layout_px`: the width its text is laid out for (a column's)."""
    shown = styled(figure, info, settings.presentation, layout_px)
    stem, key = info.file_stem(), key or info.widget_key()
    options = {"format": settings.image_format, "filename": stem, "scale": IMAGE_SCALE}
    st.plotly_chart(shown, theme=None, key=f"chart-{key}", on_select="rerun" if selectable else "ignore",
                    selection_mode="points", config={"toImageButtonOptions": options, "displaylogo": False})
    buttons = st.container(horizontal=True)
    available = browser_available()
    buttons.download_button("PNG + SVG", partial(images_zip, shown, stem) if available else b"",
                            file_name=f"{stem}.zip", mime="application/zip", key=f"images-{key}", on_click="ignore",
                            disabled=not available, help=None if available else NO_BROWSER, icon=":material/image:")
    if numbers is not None:
        buttons.download_button("CSV", partial(csv_bytes, numbers.copy(), info), file_name=f"{stem}.csv",
                                mime="text/csv", key=f"csv-{key}", on_click="ignore", icon=":material/table:")
    return shown


def selection(key: str) -> list[dict]:
    """The points clicked on the selectable chart shown under `key`: their customdata and coordinates."""
    state = st.session_state.get(f"chart-{key}")
    return list(state.selection.points) if state is not None else []


def diagnostics(rows: pd.DataFrame) -> None:
    """The run diagnostics behind the atoms shown, one click away, with flagged rows called out."""
    flagged = rows[rows["flags"] != ""]
    if not flagged.empty:
        st.warning(f"{len(flagged)} of {len(rows)} rows shown have poor diagnostics (marked in the table below).")
    label = "Diagnostics" + (" (some rows flagged)" if not flagged.empty else "")
    with st.expander(label, key="diagnostics", on_change="rerun", bind="query-params") as box:
        st.caption(FLAG_RULE + " Per-sample (local) atoms can be negative; dataset atoms are never clipped.")
        if box.open:
            shown = rows[[column for column in SHOWN_DIAGNOSTICS if column in rows]]
            st.dataframe(shown, hide_index=True, column_config=fitted_columns(shown))


def atom_metrics(row: pd.Series, unit_label: str) -> None:
    """The four atoms of one row as metrics with their 95% intervals, flagged when its diagnostics are poor."""
    for column, atom in zip(st.columns(len(ATOMS)), ATOMS):
        column.metric(SYMBOLS[atom], "n/a" if pd.isna(row[atom]) else f"{row[atom]:+.3f}", help=unit_label)
        low, high = row.get(f"{atom}_lo"), row.get(f"{atom}_hi")
        if not (pd.isna(low) or pd.isna(high)):
            column.caption(f"95% interval [{low:+.3f}, {high:+.3f}]")
    if row[list(ATOMS)].isna().any():
        st.info(NOT_STORED)
    if row.get("flags"):
        st.warning(f"Poor diagnostics for this row: {row['flags']}")


def asked_in_link(key: str) -> str | None:
    """The value the page's URL asks widget `key` for; read it before the widget, which writes its own value there."""
    return st.query_params.get(key)


def say_if_unmet(asked: str | None, shown: object, what: str, why: str) -> None:
    """When a link asked for a `what` the page does not show (`asked` is not `shown`), say so, why, and what it shows
    instead (`why` is Markdown without names from the database)."""
    if asked is not None and asked != str(shown):
        st.info(f"The link asks for {what} {markdown_text(asked)}, but {why}; showing {what} {markdown_text(shown)}.")


def footer(rule: str, rows: pd.DataFrame, title: str, figure: go.Figure, columns: list[str], key: str,
           findings: list[str]) -> None:
    """The end a results page shares: the rule it applied, the diagnostics behind its rows, the HTML report (with
    the rule, its `findings` as plain sentences, and the interval columns of the atoms shown)."""
    st.caption(rule)
    diagnostics(rows)
    report_button(title, [figure], rows, with_bounds(columns, rows), key, [rule, FLAG_RULE], findings)


def with_bounds(columns: list[str], rows: pd.DataFrame) -> list[str]:
    """`columns` with each atom's interval columns after it, where the rows have them."""
    return [name for column in columns for name in (column, f"{column}_lo", f"{column}_hi")
            if name == column or (column in ATOMS and name in rows)]
