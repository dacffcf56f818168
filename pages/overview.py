"""Overview: what the atoms mean and what the chosen database holds."""

import streamlit as st

from pidcore.analysis.regimes import final_rows
from pidcore.atoms import ATOMS, LABELS, MEANINGS
from pidcore.dashboard import data
from pidcore.dashboard.charts import as_shown, task_bars
from pidcore.dashboard.sidebar import HOW_TO_FILL, sidebar
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import chart
from pidcore.store import StoreError

st.title("Information Spectrum Explorer")
st.markdown(
    "How does a vision-language model use its inputs? For each multiple-choice question we measure what the "
    "**image** (X1) and the **question** (X2) tell the model about its **answer** (Y), and split that information, "
    "in bits, into four partial-information atoms:\n\n| atom | meaning |\n|---|---|\n"
    + "\n".join(f"| **{LABELS[atom]}** | {MEANINGS[atom]} |" for atom in ATOMS)
    + """

They add up: R + U1 = I(X1;Y), R + U2 = I(X2;Y), R + U1 + U2 + S = I(X1,X2;Y).
The decomposition is estimated with the BATCH estimator (Liang et al., 2023) on masked probes of the
model (the question, or the image, replaced by noise), checked against the exact discrete PID (Bertschinger et al.,
2014). The pages answer three questions: **breadth** (which tasks and models rely on what), **depth** (where in the
layers the information appears) and **time** (when in training it is learned).
"""
)
settings = sidebar()
try:
    atoms = data.atoms(settings.db)
except StoreError as error:
    st.info(f"{markdown_text(error)}. {HOW_TO_FILL}")
else:
    if atoms.empty:
        st.warning(f"{markdown_text(settings.db)} holds no results yet. {HOW_TO_FILL}")
    else:
        columns = st.columns(3)
        columns[0].metric("Models", atoms["model"].nunique())
        columns[1].metric("Tasks", atoms["task"].nunique())
        columns[2].metric("Rows", len(atoms))
        if settings.estimator in set(atoms["estimator"]):
            final = final_rows(atoms[atoms["estimator"] == settings.estimator])
            outputs = as_shown(final, settings.units, settings.clip)
            chart(task_bars(outputs, settings.unit_label), settings, "overview")
        st.dataframe(atoms, hide_index=True)
