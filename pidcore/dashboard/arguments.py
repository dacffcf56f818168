"""The app script's own arguments (`streamlit run app.py -- --db PATH`), applied as `pidcore dashboard --db PATH`
applies them, by the sidebar every page draws."""

from __future__ import annotations

import os

import streamlit as st

from pidcore.shipped import db_argument, started_env

# Said by whoever opens a page, so it names no path: the local user who started the dashboard knows which one.
STARTED_REFUSED = ("The file given to --db when the dashboard was started is not a readable .duckdb file; showing "
                   "the shipped results instead. Restart it with the path of a results file written by "
                   "`python -m pidcore profile`.")


def start_arguments(argv: list[str]) -> None:
    """Apply the script's own arguments through the environment, as `pidcore dashboard --db PATH` does; a PATH that
    is no readable .duckdb file gets an error on the page and is left out."""
    try:
        os.environ.update(started_env(db_argument(argv)))
    except (OSError, ValueError):
        st.error(STARTED_REFUSED)
