"""Streamlit pieces the pages share: charts with export options, the four atoms as metrics, the diagnostics, and
what a page says when a link asks for something it cannot show."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pidcore.analysis.flags import FLAG_RULE
from pidcore.atoms import ATOMS, SYMBOLS
from pidcore.dashboard.report import report_button
from pidcore.dashboard.sidebar import Settings
from pidcore.dashboard.text import markdown_text

NOT_STORED = "n/a: not stored for this row (the database holds no value there, or NaN)."
SHOWN_DIAGNOSTICS = ["model", "task", "checkpoint", "layer", "n_samples", "letter_mass", "marginal_gap", "best_epoch",
                      "sinkhorn_residual", "mode", "flags"]


def chart(figure: go.Figure, settings: Settings, name: str) -> None:
    """Show a figure whose toolbar downloads it as high-resolution PNG or as SVG."""
    options = {"format": settings.image_format, "filename": name, "scale": 4 if settings.image_format == "png" else 1}
    st.plotly_chart(figure, config={"toImageButtonOptions": options, "displaylogo": False}, key=f"chart-{name}")


def diagnostics(rows: pd.DataFrame) -> None:
    """The run diagnostics behind the atoms shown, one click away, with flagged rows called out."""
    flagged = rows[rows["flags"] != ""]
    if not flagged.empty:
        st.warning(f"{len(flagged)} of {len(rows)} rows shown have poor diagnostics (marked in the table below).")
    label = "Diagnostics" + (" (some rows flagged)" if not flagged.empty else "")
    with st.expander(label, key="diagnostics", on_change="rerun", bind="query-params") as box:
        st.caption(FLAG_RULE + " Per-sample (local) atoms can be negative; dataset atoms are never clipped.")
        if box.open:
            st.dataframe(rows[[column for column in SHOWN_DIAGNOSTICS if column in rows]], hide_index=True)


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


def footer(rule: str, rows: pd.DataFrame, title: str, figure: go.Figure, columns: list[str], key: str) -> None:
    """The end a results page shares: the rule it applied, the diagnostics behind its rows, the HTML report."""
    st.caption(rule)
    diagnostics(rows)
    report_button(title, [figure], rows[columns], key)
