"""Information Spectrum Explorer: page setup and navigation; each page lives in pages/ and draws the shared sidebar."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Information Spectrum Explorer", layout="wide")
# A server's first script run still serves pages/ the old way (by file name, before this script's navigation
# exists). So each page lives in a file not named like its URL path (run only through the navigation below), and
# pages/NAME.py for each URL path runs this script, whose navigation then opens that page: a shared link to a
# page on a fresh server lands on it, with no "Page not found" dialog.
PAGES = [
    st.Page("pages/overview.py", title="Overview", default=True),
    st.Page("pages/breadth.py", title="Breadth: models x tasks", url_path="heatmap"),
    st.Page("pages/depth.py", title="Depth: layer by layer", url_path="layers"),
    st.Page("pages/timeline.py", title="Time: training checkpoints", url_path="training"),
    st.Page("pages/case_study.py", title="Case study: one sample, live", url_path="case-study"),
]
st.navigation(PAGES).run()
