"""The "Export report (HTML)" button: one styled, self-contained file that opens offline and holds what a page
shows (its figures, the numbers with their 95% intervals, the rules applied and what they found, the diagnostics)
and the link back to the same view; built only when the button is clicked."""

from __future__ import annotations

import html
import ipaddress
from collections.abc import Sequence
from functools import partial
from urllib.parse import urlencode, urlsplit

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pidcore.atoms import ATOMS, SYMBOLS, UNITS
from pidcore.dashboard.export import FONT_FAMILY, TEXT_COLOUR

# The diagnostics a row has when its estimator measured any (the paper's published atoms have none).
MEASURED_DIAGNOSTICS = ["n_samples", "letter_mass", "marginal_gap", "best_epoch", "sinkhorn_residual"]
SHOWN_DIAGNOSTICS = ["model", "task", "checkpoint", "layer", "n_samples", "letter_mass", "marginal_gap", "best_epoch",
                     "sinkhorn_residual", "mode", "probes", "flags"]
STYLE = f"""
body {{ font-family: {FONT_FAMILY}; color: {TEXT_COLOUR}; max-width: 1200px; margin: 2rem auto; padding: 0 1rem;
       line-height: 1.45; }}
h1 {{ font-size: 1.7rem; margin-bottom: .2rem; }} h2 {{ font-size: 1.25rem; margin-top: 2rem; }}
.meta {{ color: #444; font-size: .95rem; }}
table {{ border-collapse: collapse; font-size: .85rem; margin: .5rem 0 1rem; }}
th, td {{ border-bottom: 1px solid #ddd; padding: .3rem .6rem; text-align: left; vertical-align: top; }}
th {{ background: #f2f2f2; }} tr:nth-child(even) td {{ background: #fafafa; }}
td.flagged {{ color: #8a2b62; font-weight: bold; }}
.figure {{ margin: 1rem 0 2rem; }}
"""


def with_intervals(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows with each atom written as "value [low, high]" (its 95% interval, where stored), in bits."""
    shown = rows.copy()
    for atom in ATOMS:
        if atom not in shown:
            continue
        low, high = shown.get(f"{atom}_lo"), shown.get(f"{atom}_hi")
        shown[f"{SYMBOLS[atom]} ({UNITS})"] = [_with_interval(value, lo, hi) for value, lo, hi in
                                                zip(shown[atom], _or_nan(low, shown), _or_nan(high, shown))]
        shown = shown.drop(columns=[column for column in (atom, f"{atom}_lo", f"{atom}_hi") if column in shown])
    return shown


def _or_nan(column: pd.Series | None, rows: pd.DataFrame) -> pd.Series:
    return column if column is not None else pd.Series(float("nan"), index=rows.index)


def _with_interval(value: float, low: float, high: float) -> str:
    if pd.isna(value):
        return "n/a"
    return f"{value:+.3f}" + ("" if pd.isna(low) or pd.isna(high) else f" [{low:+.3f}, {high:+.3f}]")


def report_html(title: str, link: str, figures: Sequence[go.Figure], numbers: pd.DataFrame, rules: Sequence[str],
                findings: Sequence[str], diagnostics: pd.DataFrame) -> str:
    """The page as one HTML file: plotly.js inlined once, so the figures stay interactive offline."""
    parts = [f"<h1>{html.escape(title)}</h1>", _link_back(link)]
    if findings:
        parts += ["<h2>Findings</h2><ul>", *(f"<li>{html.escape(finding)}</li>" for finding in findings), "</ul>"]
    for index, figure in enumerate(figures):
        parts.append("<div class='figure'>" + figure.to_html(full_html=False, include_plotlyjs="inline" if index == 0
                                                             else False) + "</div>")
    parts += [f"<h2>Numbers ({_interval_note(numbers)})</h2>", _table(with_intervals(numbers))]
    if rules:
        parts += ["<h2>Rules applied</h2>", *(f"<p>{html.escape(rule)}</p>" for rule in rules)]
    parts += ["<h2>Diagnostics</h2>", _diagnostics(diagnostics)]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>" + "".join(parts) + "</body></html>")


def _link_back(link: str) -> str:
    """The link to the same view live; a view exported from a dashboard on the exporting machine's own (loopback)
    address is named by its path, since its address opens nothing on a reader's machine."""
    parts = urlsplit(link)
    if not _is_loopback(parts.hostname or ""):
        return (f"<p class='meta'>Information Spectrum Explorer. The same view, live: <a href='{html.escape(link)}'>"
                f"{html.escape(link)}</a></p>")
    view = parts.path + (f"?{parts.query}" if parts.query else "")
    return (f"<p class='meta'>Information Spectrum Explorer. The same view, live: <code>{html.escape(view)}</code> "
            f"on the dashboard it was exported from (started on that machine's own address, "
            f"{html.escape(parts.netloc)}, which opens nothing elsewhere: start the dashboard on the same results with "
            f"<code>pidcore dashboard --db PATH</code> and open that path).</p>")


def _is_loopback(host: str) -> bool:
    """Whether a host name or address names the machine itself (localhost, 127.0.0.0/8, ::1, or the unspecified
    0.0.0.0 / :: a browser may be pointed at)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_loopback or address.is_unspecified


def _interval_note(numbers: pd.DataFrame) -> str:
    """What the numbers' brackets hold: 95% intervals, on the rows that have them."""
    bounds = [column for atom in ATOMS for column in (f"{atom}_lo", f"{atom}_hi") if column in numbers]
    with_bounds = int(numbers[bounds].notna().any(axis=1).sum()) if bounds else 0
    if with_bounds == len(numbers):
        return f"{UNITS}, 95% intervals in brackets"
    if with_bounds == 0:
        return f"{UNITS}; no row shown has an interval (the paper's published atoms come without them)"
    return (f"{UNITS}, 95% intervals in brackets on the {with_bounds} of {len(numbers)} rows that have them (the "
            f"paper's published atoms come without them)")


def _diagnostics(diagnostics: pd.DataFrame) -> str:
    """The diagnostics table of the rows that have any, and a sentence for those that have none."""
    measured = [column for column in MEASURED_DIAGNOSTICS if column in diagnostics]
    has_any = diagnostics[measured].notna().any(axis=1) if measured else pd.Series(False, index=diagnostics.index)
    missing = int((~has_any).sum())
    note = (f"<p>{missing} of {len(diagnostics)} rows have no estimator diagnostics (the paper's published atoms, "
            f"read off its figures, come without them) and are left out here.</p>" if missing else "")
    return note + (_table(diagnostics[has_any]) if has_any.any() else "")


def _table(frame: pd.DataFrame) -> str:
    """A frame as an HTML table, names escaped, floats to four places."""
    return frame.to_html(index=False, float_format=lambda value: f"{value:.4f}", na_rep="n/a", escape=True)


def view_link() -> str:
    """The URL of the view on screen, its widget choices in the query string."""
    query = urlencode(st.query_params.to_dict())
    return str(st.context.url).split("?")[0] + (f"?{query}" if query else "")


def report_button(title: str, figures: Sequence[go.Figure], rows: pd.DataFrame, columns: Sequence[str], key: str,
                  rules: Sequence[str], findings: Sequence[str]) -> None:
    """A download button whose file (`columns` of the rows as the numbers, their diagnostics) is written on click,
    not on every rerun (plotly.js alone is 4.8 MB)."""
    numbers = rows[[column for column in columns if column in rows]].copy()
    diagnostics = rows[[column for column in SHOWN_DIAGNOSTICS if column in rows]].copy()
    st.download_button("Export report (HTML)", partial(report_html, title, view_link(), list(figures), numbers,
                                                       list(rules), list(findings), diagnostics),
                       file_name=f"{key}.html", mime="text/html", key=f"report-{key}", on_click="ignore",
                       icon=":material/description:")
