"""The sidebar every page draws: which results (a shipped database by name, or any file), the estimator, whether to
compare with the paper's published results, units and chart download format, bound to the URL."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import streamlit as st

from pidcore.dashboard import data
from pidcore.dashboard.arguments import start_arguments
from pidcore.shipped import PAPER_DB, SHIPPED_DBS, started_db
from pidcore.store import StoreError

HOW_TO_FILL = ("Profile a model with `python -m pidcore profile`, or rebuild the demo with "
               "`python -m pidcore demo build`.")
OTHER_FILE = "Another database file"
STARTED = "File given at start (--db)"
SIDEBAR_PARAMS = ("source", "db", "estimator", "compare", "units", "clip", "presentation")
NORMAL_ROOT_PX = 16  # the page's root font size (Streamlit sizes its text in rem)
PRESENTATION_ROOT_PX = 22  # the page's root font size when presenting


@dataclass
class Settings:
    """The sidebar's choices: database, estimator, units, whether atoms are clipped at 0, chart download format,
    and whether the paper's published rows are shown beside this database's (never when it is the paper's)."""

    db: str
    estimator: str | None
    units: str
    image_format: str
    clip: bool = False
    compare: bool = False
    presentation: bool = False

    @property
    def is_paper(self) -> bool:
        """Whether the chosen database is the shipped one of the paper's published results."""
        return self.db == str(PAPER_DB)

    @property
    def unit_label(self) -> str:
        label = "bits" if self.units == "bits" else "fraction of I(X1,X2;Y)"
        return label + (", clipped at 0" if self.clip else "")


def sidebar() -> Settings:
    """Draw the shared sidebar and return its settings (widgets bound to the URL, so a link reopens the view), having
    applied the app's own arguments (`streamlit run app.py -- --db PATH`): here, not in app.py, which imports
    nothing before its navigation (a slower app.py made a fresh server answer its first link with the old one)."""
    start_arguments(sys.argv[1:])
    with st.sidebar:
        db = _database()
        estimator = st.selectbox("Estimator", _estimators(db), key="estimator", bind="query-params",
                                 help="batch-published reproduces the published estimator; batch-calibrated "
                                      "rescales each probe until its mean answer matches the full pass; "
                                      "paper-digitized are the paper's own atoms, read off its figures.")
        compare = st.toggle("Compare with the paper", key="compare", bind="query-params", disabled=db == str(PAPER_DB),
                            help="Show the paper's published atoms (Xiu et al. 2026) beside these results: on the "
                                 "breadth page for the tasks both have, on the depth and time pages as curves to "
                                 "overlay.")
        units = st.radio("Units", ["bits", "fraction"], key="units", bind="query-params", horizontal=True,
                         help="Fraction: each atom divided by R + U1 + U2 + S = I(X1,X2;Y) of the same row.")
        clip = st.toggle("Clip at 0, as the paper prints", key="clip", bind="query-params",
                         help="The paper prints atoms clipped at 0. The store keeps them raw: a negative atom is "
                              "estimation noise or a real local effect, and clipping hides it. Off by default.")
        image_format = st.radio("Chart toolbar download format", ["png", "svg"], key="format", horizontal=True,
                                help="The camera icon in each chart's toolbar downloads it in this format (PNG at "
                                     "3x resolution); the PNG + SVG button under a chart gives both at once.")
        presentation = st.toggle("Presentation", key="presentation", bind="query-params",
                                 help="Larger text, lines and markers everywhere, for a projector at the back of a "
                                      "room; exports are enlarged too.")
    if presentation:
        st.html(f"<style>html {{ font-size: {PRESENTATION_ROOT_PX}px; }}</style>")
    return Settings(db, estimator, units, image_format, clip, compare and db != str(PAPER_DB), presentation)


def carried_params() -> dict[str, str]:
    """The sidebar's choices in the current URL, for a link to another page that keeps them."""
    return {key: value for key, value in st.query_params.to_dict().items() if key in SIDEBAR_PARAMS}


def _database() -> str:
    """The results to show: the file the dashboard was started on, a shipped database by name, or a .duckdb file by
    path (a link with ?db= names it; the pages open it only where pidcore.dashboard.data.results_file allows)."""
    started = started_db()
    names = [*([STARTED] if started else []), *SHIPPED_DBS, OTHER_FILE]
    default = names.index(OTHER_FILE) if "db" in st.query_params else 0
    source = st.selectbox("Results", names, index=default, key="source", bind="query-params",
                          help="The file the dashboard was started on (`pidcore dashboard --db PATH`), the demo zoo "
                               "computed by this tool, the paper's published results, or a .duckdb file written by "
                               "`python -m pidcore profile`, `import-paper` or `demo build`.")
    if source == STARTED:
        return str(started)
    if source != OTHER_FILE:
        return str(SHIPPED_DBS[source])
    return st.text_input("Database file", value=str(next(iter(SHIPPED_DBS.values()))), key="db",
                         bind="query-params", help=f"A .duckdb file in a folder the dashboard opens results from: "
                                                   f"{data.RESULTS_FOLDERS}.")


def _estimators(db: str) -> list[str]:
    try:
        return data.estimators(db)
    except StoreError:
        return []
