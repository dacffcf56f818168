"""Information Spectrum Explorer: page setup and navigation; each page lives in pages/ and draws the shared sidebar."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Information Spectrum Explorer", layout="wide")
PAGES = [
    st.Page("pages/overview.py", title="Overview", default=True),
    st.Page("pages/heatmap.py", title="Breadth: models x tasks", url_path="heatmap"),
    st.Page("pages/layers.py", title="Depth: layer by layer", url_path="layers"),
    st.Page("pages/training.py", title="Time: training checkpoints", url_path="training"),
    st.Page("pages/case_study.py", title="Case study: one sample, live", url_path="case-study"),
]
st.navigation(PAGES).run()
