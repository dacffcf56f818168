"""Streamlit pieces shared by the pages: the sidebar settings, charts with export options, diagnostics, reports.

Widgets that define a view are bound to the URL (`bind="query-params"`), so a copied link reopens the view.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pidcore.store import DEFAULT_DB, StoreError, read_atoms, read_diagnostics
from pidcore.trust import RULE, with_flags

ATOM_NAMES = {"r": "R", "u1": "U1", "u2": "U2", "s": "S"}


@dataclass
class Settings:
    """The sidebar's choices: database, estimator, units and chart download format."""

    db: str
    estimator: str | None
    units: str
    image_format: str

    @property
    def unit_label(self) -> str:
        return "bits" if self.units == "bits" else "fraction of I(X1,X2;Y)"


def sidebar() -> Settings:
    """Draw the shared sidebar and return its settings."""
    with st.sidebar:
        db = st.text_input("Results database", value=str(DEFAULT_DB), key="db", bind="query-params",
                           help="Any .duckdb file written by `python -m pidcore profile` or `demo build`.")
        estimators = _estimators(db)
        estimator = st.selectbox("Estimator", estimators, key="estimator", bind="query-params",
                                 help="batch-published reproduces the published estimator; batch-calibrated "
                                      "rescales each probe until its mean answer matches the full pass.")
        units = st.radio("Units", ["bits", "fraction"], key="units", bind="query-params", horizontal=True,
                         help="Fraction: each atom divided by R + U1 + U2 + S = I(X1,X2;Y) of the same row.")
        image_format = st.radio("Chart download format", ["png", "svg"], key="format", horizontal=True,
                                help="The camera icon in each chart's toolbar downloads it in this format "
                                     "(PNG at 4x resolution).")
    return Settings(db, estimator, units, image_format)


def _estimators(db: str) -> list[str]:
    try:
        return sorted(read_atoms(db)["estimator"].unique())
    except StoreError:
        return []


def load_atoms(settings: Settings) -> pd.DataFrame | None:
    """The `atoms` rows of the chosen estimator with diagnostics and flags, or None after explaining why not."""
    try:
        atoms = read_atoms(settings.db)
        atoms = atoms[atoms["estimator"] == settings.estimator]
        if atoms.empty:
            st.warning(f"{settings.db} holds no results for this estimator yet.")
            return None
        return with_flags(atoms, read_diagnostics(settings.db))
    except StoreError as error:
        st.info(f"{error}. Profile a model with `python -m pidcore profile`, or rebuild the demo with "
                "`python -m pidcore demo build`.")
        return None


def chart(figure: go.Figure, settings: Settings, name: str) -> None:
    """Show a figure whose toolbar downloads it as high-resolution PNG or as SVG."""
    options = {"format": settings.image_format, "filename": name, "scale": 4 if settings.image_format == "png" else 1}
    st.plotly_chart(figure, config={"toImageButtonOptions": options, "displaylogo": False}, key=f"chart-{name}")


def diagnostics(rows: pd.DataFrame) -> None:
    """The run diagnostics behind the atoms shown, one click away, with flagged rows called out."""
    flagged = rows[rows["flags"] != ""]
    if not flagged.empty:
        st.warning(f"{len(flagged)} of {len(rows)} rows shown have poor diagnostics (marked in the table below).")
    with st.expander("Diagnostics" + (" (some rows flagged)" if not flagged.empty else "")):
        st.caption(RULE + " Per-sample (local) atoms can be negative; dataset atoms are never clipped.")
        columns = ["model", "task", "checkpoint", "layer", "n_samples", "letter_mass", "marginal_gap",
                   "sinkhorn_residual", "mode", "flags"]
        st.dataframe(rows[[c for c in columns if c in rows]], hide_index=True)


def report_button(title: str, figures: list[go.Figure], table: pd.DataFrame, key: str) -> None:
    """A download of one self-contained offline HTML file with the page's figures and numbers."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for index, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs="inline" if index == 0 else False))
    parts.append(table.to_html(index=False, float_format=lambda value: f"{value:.4f}"))
    page = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title></head><body>"
            + "".join(parts) + "</body></html>")
    st.download_button("Export report (HTML)", page, file_name=f"{key}.html", mime="text/html", key=f"report-{key}")


def atom_metrics(row: pd.Series, unit_label: str) -> None:
    """The four atoms of one row as metrics, flagged when its diagnostics are poor."""
    columns = st.columns(4)
    for column, atom in zip(columns, ATOM_NAMES):
        column.metric(ATOM_NAMES[atom], f"{row[atom]:+.3f}", help=unit_label)
    if row.get("flags"):
        st.warning(f"Poor diagnostics for this row: {row['flags']}")
