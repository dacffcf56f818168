"""The sidebar every page draws: database, estimator, units and chart download format, bound to the URL."""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from pidcore.dashboard import data
from pidcore.shipped import DEFAULT_DB
from pidcore.store import StoreError

HOW_TO_FILL = ("Profile a model with `python -m pidcore profile`, or rebuild the demo with "
               "`python -m pidcore demo build`.")


@dataclass
class Settings:
    """The sidebar's choices: database, estimator, units, whether atoms are clipped at 0, chart download format."""

    db: str
    estimator: str | None
    units: str
    image_format: str
    clip: bool = False

    @property
    def unit_label(self) -> str:
        label = "bits" if self.units == "bits" else "fraction of I(X1,X2;Y)"
        return label + (", clipped at 0" if self.clip else "")


def sidebar() -> Settings:
    """Draw the shared sidebar and return its settings (widgets bound to the URL, so a link reopens the view)."""
    with st.sidebar:
        db = st.text_input("Results database", value=str(DEFAULT_DB), key="db", bind="query-params",
                           help="Any .duckdb file written by `python -m pidcore profile` or `demo build`.")
        estimator = st.selectbox("Estimator", _estimators(db), key="estimator", bind="query-params",
                                 help="batch-published reproduces the published estimator; batch-calibrated "
                                      "rescales each probe until its mean answer matches the full pass.")
        units = st.radio("Units", ["bits", "fraction"], key="units", bind="query-params", horizontal=True,
                         help="Fraction: each atom divided by R + U1 + U2 + S = I(X1,X2;Y) of the same row.")
        clip = st.toggle("Clip at 0, as the paper prints", key="clip", bind="query-params",
                         help="The paper prints atoms clipped at 0. The store keeps them raw: a negative atom is "
                              "estimation noise or a real local effect, and clipping hides it. Off by default.")
        image_format = st.radio("Chart download format", ["png", "svg"], key="format", horizontal=True,
                                help="The camera icon in each chart's toolbar downloads it in this format "
                                     "(PNG at 4x resolution).")
    return Settings(db, estimator, units, image_format, clip)


def _estimators(db: str) -> list[str]:
    try:
        return data.estimators(db)
    except StoreError:
        return []
