"""Overview: the paper's findings first (each a link to its page on the published results), how to open the demo or
one's own results, where to go for which question, what the atoms mean, and what the chosen database holds."""

import streamlit as st

from pidcore.analysis.findings import headline
from pidcore.analysis.regimes import final_rows, is_output
from pidcore.atoms import ATOMS, LABELS, MEANINGS, PAPER_ESTIMATOR
from pidcore.dashboard import data
from pidcore.dashboard.charts import as_shown, task_bars
from pidcore.dashboard.export import ChartInfo
from pidcore.dashboard.sidebar import HOW_TO_FILL, carried_params, sidebar
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import chart, fitted_columns
from pidcore.shipped import PAPER_DB, SHIPPED_DBS
from pidcore.store import StoreError

PAPER_SOURCE = next(name for name, path in SHIPPED_DBS.items() if path == PAPER_DB)
# The page each kind of finding is read on, and how its link names it.
FINDING_PAGES = {"tasks": ("pages/breadth.py", "the breadth page"),
                 "families": ("pages/breadth.py", "the breadth page"),
                 "layers": ("pages/depth.py", "a three-phase curve on the depth page"),
                 "training": ("pages/timeline.py", "the time page")}
OPEN_OTHERS = ("These are the paper's published atoms (Xiu, Luo and Nakayama, ICLR 2026: 26 models on MMBench, POPE, "
               "Reefknot and PMC-VQA, read off its figures), judged by the rules each page states; the link under "
               "each opens its page on them. The demo zoo computed by this tool is under **Results** in the sidebar; "
               "to open your own results, start the dashboard on them: `pidcore dashboard --db runs/results.duckdb`.")

# (page file, its name, the question it answers, what to do there)
WHERE_TO_GO = [
    ("pages/breadth.py", "Breadth", "Which tasks and models rely on what?",
     "the model x task heatmap, the task regimes and family strategies; click a cell for its samples"),
    ("pages/depth.py", "Depth", "Where in the layers does the information appear?",
     "the atoms layer by layer with the phases shaded; overlay other models, open a layer's samples"),
    ("pages/timeline.py", "Time", "When in training is it learned?",
     "the atoms over training checkpoints, stage by stage; overlay other trajectories"),
    ("pages/case_study.py", "Case study", "What does one image and question do?",
     "upload an image, ask a question, run one or more models live and compare them side by side"),
]

st.title("Information Spectrum Explorer")
st.markdown("How does a vision-language model use its inputs? For multiple-choice questions it splits what the "
            "**image** (X1) and the **question** (X2) tell the model about its **answer** (Y) into four "
            "partial-information atoms, in bits.")
settings = sidebar()
st.subheader("The paper's landscape")


def example_view(found: dict, kind: str) -> dict[str, str]:
    """The view a finding's link opens on its page: the first three-phase layer curve, the first stage-2 rise."""
    curves = [curve for curve in found["curves"] if curve["three_phase"]]
    rises = [row for row in found["training"] if row["rise"]]
    if kind == "layers" and curves:
        return {"model": curves[0]["model"], "task": curves[0]["task"], "checkpoint": curves[0]["checkpoint"]}
    if kind == "training" and rises:
        return {"train_model": rises[0]["model"], "train_task": rises[0]["task"]}
    return {}


paper_findings = data.findings(str(PAPER_DB), PAPER_ESTIMATOR)
for kind, sentence in headline(paper_findings).items():
    page, where = FINDING_PAGES[kind]
    st.markdown(markdown_text(sentence))  # a sentence wraps; a page link's label would be cut at the line's end
    st.page_link(page, label=f"Open {where} on the paper's results", icon=":material/arrow_forward:",
                 query_params={"source": PAPER_SOURCE, **example_view(paper_findings, kind)})
st.caption(OPEN_OTHERS)

st.subheader("Where to go")
for page, name, question, what in WHERE_TO_GO:
    st.page_link(page, label=f"**{name}: {question}**  \n{what}", query_params=carried_params())

st.subheader("The four atoms")
st.markdown(
    "| atom | meaning |\n|---|---|\n" + "\n".join(f"| **{LABELS[atom]}** | {MEANINGS[atom]} |" for atom in ATOMS)
    + """

They add up: R + U1 = I(X1;Y), R + U2 = I(X2;Y), R + U1 + U2 + S = I(X1,X2;Y).
The decomposition is estimated with the BATCH estimator (Liang et al., 2023) on masked probes of the
model (the question, or the image, replaced by noise), checked against the exact discrete PID (Bertschinger et al.,
2014).
"""
)
try:
    atoms = data.atoms(settings.db)
except StoreError as error:
    st.info(f"{markdown_text(error)}. {HOW_TO_FILL}")
else:
    if atoms.empty:
        st.warning(f"{markdown_text(settings.db)} holds no results yet. {HOW_TO_FILL}")
    else:
        st.subheader("What this database holds")
        columns = st.columns(3)
        columns[0].metric("Models", atoms["model"].nunique())
        columns[1].metric("Tasks", atoms["task"].nunique())
        columns[2].metric("Rows", len(atoms))
        if settings.estimator in set(atoms["estimator"]):
            final = final_rows(atoms[atoms["estimator"] == settings.estimator])
            outputs = as_shown(final, settings.units, settings.clip)
            info = ChartInfo("Atoms per task, averaged over models", checkpoint="each model's last", layer="output",
                             estimator=settings.estimator, units=settings.unit_label)
            chart(task_bars(outputs, settings.unit_label), settings, info, outputs)
        with st.expander(f"Every row of the database ({len(atoms)}), output layers first"):
            ordered = atoms.assign(output=is_output(atoms)).sort_values(["output", "model", "task", "checkpoint"],
                                                                        ascending=[False, True, True, True])
            shown_rows = ordered.drop(columns="output")
            st.dataframe(shown_rows, hide_index=True, column_config=fitted_columns(shown_rows))
