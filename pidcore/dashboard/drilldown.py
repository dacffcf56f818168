"""The samples behind a heatmap cell or a layer: a sortable table of one run's stored samples at one layer, and
the way from a chosen sample to the case study, which runs it live."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pidcore.atoms import SYMBOLS, UNITS
from pidcore.dashboard import data
from pidcore.dashboard.sidebar import carried_params
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import fitted_columns
from pidcore.store import StoreError

CASE_STUDY = "pages/case_study.py"
SORTED_BY = f"{SYMBOLS['s']} ({UNITS})"  # the most synergistic samples first: the question a drill-down asks most


def samples_panel(row: pd.Series, db: str, estimator: str) -> None:
    """The table of the samples behind one row of the `atoms` view (a run at one layer), most synergy first; the
    selected sample opens in the case study where its image is stored."""
    layer = int(row["layer"])
    st.subheader(f"Samples behind {markdown_text(row['model'])} on {markdown_text(row['task'])} "
                 f"({markdown_text(row['checkpoint'])}, layer {layer})", anchor=False)
    try:
        table = data.samples_at_layer(db, row, estimator)
    except StoreError as error:
        st.info(f"{markdown_text(error)}.")
        return
    if table.empty:
        st.info("This run keeps no samples (the paper's published atoms come without them, and `demo build` keeps "
                "them for the last checkpoint only). `python -m pidcore profile` stores every sample it probes.")
        return
    table = table.sort_values(SORTED_BY, ascending=False, na_position="last", ignore_index=True)
    if table["question"].isna().all():
        st.caption("This database was written before questions were stored with the samples: "
                   "`python -m pidcore samples attach --db DB` adds them from the run's dataset.")
    event = st.dataframe(table, hide_index=True, on_select="rerun", selection_mode="single-row",
                         key=f"samples-{row['run_id']}-{layer}",
                         column_config={**fitted_columns(table), "image stored": st.column_config.CheckboxColumn()})
    st.caption("Pointwise (local) atoms of each sample at this layer: their mean is the run's atom, and one sample's "
               "can be negative. Click a column to sort; select a row to open that sample in the case study.")
    chosen = event.selection.rows
    if chosen:
        sample = table.iloc[chosen[0]]
        if st.button(f"Open {markdown_text(sample['sample'])} in the case study", disabled=not sample["image stored"],
                     help=None if sample["image stored"] else "Its image is not stored in this database.",
                     key="open-case-study", icon=":material/biotech:"):
            st.switch_page(CASE_STUDY, query_params={**carried_params(), "run": row["run_id"],
                                                     "sample": sample["sample"]})
