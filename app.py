"""Information Spectrum Explorer: page setup and navigation; each page lives in pages/ and draws the shared sidebar."""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Information Spectrum Explorer", layout="wide")
# No page file is named like a URL path: with a pages/ folder beside it, Streamlit serves the first request of a
# fresh server the old way (pages/NAME.py at /NAME, without this script) when its URL names a page file, and the
# whole server then keeps the old navigation. Named apart, that request runs this script and the navigation below.
PAGES = [
    st.Page("pages/overview.py", title="Overview", default=True),
    st.Page("pages/breadth.py", title="Breadth: models x tasks", url_path="heatmap"),
    st.Page("pages/depth.py", title="Depth: layer by layer", url_path="layers"),
    st.Page("pages/timeline.py", title="Time: training checkpoints", url_path="training"),
    st.Page("pages/case_study.py", title="Case study: one sample, live", url_path="case-study"),
]
st.navigation(PAGES).run()
