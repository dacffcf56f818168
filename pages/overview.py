"""Overview: what the atoms mean and what the chosen database holds."""

import streamlit as st

from pidcore.charts import in_units, task_bars
from pidcore.patterns import final_rows
from pidcore.store import StoreError, read_atoms
from pidcore.ui import chart, sidebar

st.title("Information Spectrum Explorer")
st.markdown(
    """
How does a vision-language model use its inputs? For each multiple-choice question we measure
what the **image** (X1) and the **question** (X2) tell the model about its **answer** (Y), and split
that information, in bits, into four partial-information atoms:

| atom | meaning |
|---|---|
| **R**, redundancy | available from either the image or the question |
| **U1**, vision-unique | only the image has it |
| **U2**, language-unique | only the question has it |
| **S**, synergy | only the combination has it |

They add up: R + U1 = I(X1;Y), R + U2 = I(X2;Y), R + U1 + U2 + S = I(X1,X2;Y).
The decomposition is estimated with the BATCH estimator (Liang et al., 2023) on masked probes of the
model (the question, or the image, replaced by noise), checked against the exact discrete PID (Bertschinger et al.,
2014). The pages answer three questions: **breadth** (which tasks and models rely on what), **depth** (where in the
layers the information appears) and **time** (when in training it is learned).
"""
)
settings = sidebar()
try:
    atoms = read_atoms(settings.db)
except StoreError as error:
    st.info(f"{error}. Profile a model with `python -m pidcore profile` to create one.")
else:
    if atoms.empty:
        st.warning(f"{settings.db} holds no results yet.")
    else:
        columns = st.columns(3)
        columns[0].metric("Models", atoms["model"].nunique())
        columns[1].metric("Tasks", atoms["task"].nunique())
        columns[2].metric("Rows", len(atoms))
        if settings.estimator in set(atoms["estimator"]):
            outputs = in_units(final_rows(atoms[atoms["estimator"] == settings.estimator]), settings.units)
            chart(task_bars(outputs, settings.unit_label), settings, "overview")
        st.dataframe(atoms, hide_index=True)
