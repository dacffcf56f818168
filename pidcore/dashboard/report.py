"""The "Export report (HTML)" button: one self-contained offline file with a page's figures and numbers, built only
when the button is clicked."""

from __future__ import annotations

import html
from functools import partial

import pandas as pd
import plotly.graph_objects as go
import streamlit as st


def report_html(title: str, figures: list[go.Figure], table: pd.DataFrame) -> str:
    """The page as one HTML file: title, figures (plotly.js inlined once, so it works offline) and the table."""
    parts = [f"<h1>{html.escape(title)}</h1>"]
    for index, figure in enumerate(figures):
        parts.append(figure.to_html(full_html=False, include_plotlyjs="inline" if index == 0 else False))
    parts.append(table.to_html(index=False, float_format=lambda value: f"{value:.4f}"))
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title></head><body>"
            + "".join(parts) + "</body></html>")


def report_button(title: str, figures: list[go.Figure], table: pd.DataFrame, key: str) -> None:
    """A download button whose file is written on click, not on every rerun (plotly.js alone is 4.8 MB)."""
    st.download_button("Export report (HTML)", partial(report_html, title, figures, table.copy()),
                       file_name=f"{key}.html", mime="text/html", key=f"report-{key}", on_click="ignore")
