"""Case study: one uploaded image and question, run live through one or more models."""

import random
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from pidcore.case_study import (EXPLANATIONS, LOCAL_NOTE, MAX_UPLOAD_BYTES, CaseInputError, analyse,
                                check_question, read_image, reference_runs)
from pidcore.charts import COLOURS, LABELS
from pidcore.datasets import shapes
from pidcore.models.loading import load_vlm
from pidcore.store import DEFAULT_DB, StoreError, read_pointwise
from pidcore.ui import chart, sidebar

SHIPPED = DEFAULT_DB.parent / "models"
PASSES = ["full (image + question)", "image only (question masked)", "question only (image masked)"]


@st.cache_resource(max_entries=1, show_spinner=False)
def cached_model(model_id: str):
    """One model in memory at a time."""
    return load_vlm(model_id, device="auto")


st.title("Case study: one image and question, live")
settings = sidebar()
shipped = sorted(path.name for path in SHIPPED.iterdir() if (path / "config.json").is_file()) \
    if SHIPPED.is_dir() else []
chosen = st.multiselect("Models (the shipped zoo)", shipped, default=shipped[:1], key="case_models")
other = st.text_input("Or another model: a local folder or hub id (safetensors only)", key="case_other")
models = [(name, str(SHIPPED / name)) for name in chosen] + ([(Path(other).name, other)] if other.strip() else [])

upload = st.file_uploader(f"Image (PNG or JPEG, at most {MAX_UPLOAD_BYTES // 2**20} MB)", type=["png", "jpg", "jpeg"],
                          max_upload_size=MAX_UPLOAD_BYTES // 2**20, key="case_image")
example = st.checkbox("Use an example image from the shapes benchmark (a blue shape)", key="case_example")
question = st.text_input("Question", value="What colour is the shape?", key="case_question")
options_text = st.text_area("Options, one per line (2 to 6)", value="red\ngreen\nblue\nyellow", key="case_options")

image = None
try:
    if upload is not None:
        image = read_image(upload.getvalue())
    elif example:
        image = shapes.render(2, random.Random(0))
    question, options = check_question(question, options_text.splitlines())
except CaseInputError as error:
    st.error(f"Cannot use this input: {error}.")
    st.stop()
if image is None:
    st.info("Upload an image (or tick the example) to run the models.")
    st.stop()
st.image(image, caption="the image", width=160)
if not models:
    st.info("Choose at least one model.")
    st.stop()

for name, model_id in models:
    st.header(name)
    try:
        runs = reference_runs(settings.db, name, len(options))
    except StoreError:
        runs = pd.DataFrame(columns=["run_id", "task", "checkpoint", "step"])
    run_id = None
    if runs.empty:
        st.info(f"No profiled run of {name} with {len(options)} options keeps its fitted estimators in this "
                "database, so only the probe distributions are shown (the masked probes use this sample's own "
                "embedding statistics).")
    else:
        task = st.selectbox(f"Reference task for {name}", runs["task"].tolist(), key=f"case_task_{name}")
        run_id = runs[runs["task"] == task]["run_id"].iloc[0]
    progress = st.progress(0.0, text=f"loading {name}")
    try:
        vlm = cached_model(model_id)
        progress.progress(0.5, text=f"running the three probes and scoring {name}")
        result = analyse(vlm, settings.db if run_id else None, run_id, image, question, options)
    except Exception as error:  # a user-chosen model may fail in any way; report it and go on with the others
        progress.empty()
        st.error(f"{name} could not be run: {error}")
        continue
    progress.progress(1.0, text="done")
    letters = [chr(ord("A") + i) for i in range(len(options))]
    bars = go.Figure([go.Bar(name=PASSES[i], x=[f"{l}. {o}" for l, o in zip(letters, options)],
                             y=result.probs[i, -1]) for i in range(3)])
    bars.update_layout(barmode="group", title="Answer distributions over the options (output layer)",
                       yaxis_title="probability")
    chart(bars, settings, f"case-probes-{name}")
    st.caption("Probability mass the model puts on the option letters, per pass: "
               + ", ".join(f"{mass:.2f}" for mass in result.letter_mass))
    if result.atoms.empty:
        continue
    output = result.atoms.iloc[-1]
    st.subheader("This sample's atoms (bits, output layer)")
    for atom, text in EXPLANATIONS.items():
        st.markdown(f"**{LABELS[atom]}: {output[atom]:+.3f}** — {text}")
    st.caption(LOCAL_NOTE)
    reference = read_pointwise(settings.db, name, task, runs[runs["task"] == task]["checkpoint"].iloc[0],
                               settings.estimator)
    reference = reference[reference["layer"] == int(output["layer"])]
    spread = go.Figure()
    for atom in LABELS:
        spread.add_trace(go.Box(y=reference[atom], name=LABELS[atom], marker_color=COLOURS[atom], boxpoints=False))
        spread.add_trace(go.Scatter(x=[LABELS[atom]], y=[output[atom]], mode="markers", showlegend=False,
                                    marker={"symbol": "star", "size": 14, "color": "black"}))
    spread.update_layout(title=f"This sample (star) against {name}'s per-sample atoms on {task}",
                         yaxis_title="bits", showlegend=False)
    chart(spread, settings, f"case-reference-{name}")
    depth = go.Figure([go.Scatter(x=result.atoms["layer"], y=result.atoms[atom], name=LABELS[atom],
                                  mode="lines+markers", line={"color": COLOURS[atom]}) for atom in LABELS])
    depth.update_layout(title="This sample's atoms layer by layer", xaxis_title="layer (0 = embeddings)",
                        yaxis_title="bits")
    chart(depth, settings, f"case-layers-{name}")
