"""The rows a page shows: loaded for the sidebar's settings and flagged by the stated rule, or, when there are
none or the database cannot be read, an explanation on the page instead of a traceback."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pidcore.dashboard import data
from pidcore.dashboard.sidebar import HOW_TO_FILL, Settings
from pidcore.store import StoreError


def load_rows(settings: Settings) -> pd.DataFrame | None:
    """The `atoms` rows of the chosen estimator with their diagnostics, or None after explaining why there are none."""
    try:
        rows = data.atoms_with_diagnostics(settings.db, settings.estimator)
    except StoreError as error:
        st.info(f"{error}. {HOW_TO_FILL}")
        return None
    if rows.empty:
        st.warning(f"{settings.db} holds no results for this estimator yet. {HOW_TO_FILL}")
        return None
    return rows


def flag_rows(rows: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows a view shows with their run's letter mass and flags; stops the page, saying why, when the database
    cannot be read (locked too long, replaced meanwhile)."""
    try:
        return data.flagged(rows, settings.db)
    except StoreError as error:
        st.info(f"{error}. Reload the page in a moment.")
        st.stop()
