"""Case study: one uploaded image and question, run live through one or more models."""

import random
from pathlib import Path

import pandas as pd
import streamlit as st

from pidcore.atoms import LABELS
from pidcore.dashboard import data
from pidcore.dashboard.charts import probe_bars, sample_against_reference, sample_layers
from pidcore.dashboard.live import EXPLANATIONS, LOCAL_NOTE, cached_model, shipped_models
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import chart
from pidcore.datasets import shapes
from pidcore.pipeline.case_study import MAX_UPLOAD_BYTES, CaseInputError, analyse, check_question, read_image
from pidcore.shipped import MODELS
from pidcore.store import StoreError

st.title("Case study: one image and question, live")
settings = sidebar()
shipped = shipped_models()
chosen = st.multiselect("Models (the shipped zoo)", shipped, default=shipped[:1], key="case_models")
other = st.text_input("Or another model: a local folder or hub id (safetensors only)", key="case_other")
models = [(name, str(MODELS / name)) for name in chosen] + ([(Path(other).name, other)] if other.strip() else [])

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
    st.error(f"Cannot use this input: {markdown_text(error)}.")
    st.stop()
if image is None:
    st.info("Upload an image (or tick the example) to run the models.")
    st.stop()
st.image(image, caption="the image", width=160)
if not models:
    st.info("Choose at least one model.")
    st.stop()

for name, model_id in models:
    shown_name = markdown_text(name)
    st.header(shown_name)
    try:
        runs = data.reference_runs(settings.db, name, len(options), settings.estimator)
    except StoreError:
        runs = pd.DataFrame(columns=["run_id", "task", "checkpoint", "step"])
    run = None
    if runs.empty:
        st.info(f"No profiled run of {shown_name} with {len(options)} options keeps the fitted networks of "
                f"{markdown_text(settings.estimator)} in this database, so only the probe distributions are shown (the masked "
                "probes use this sample's own embedding statistics).")
    else:
        task = st.selectbox(f"Reference task for {shown_name}", runs["task"].tolist(), key=f"case_task_{name}")
        run = runs[runs["task"] == task].iloc[0]
    progress = st.progress(0.0, text=f"loading {shown_name}")
    try:
        vlm = cached_model(model_id)
        progress.progress(0.5, text=f"running the three probes and scoring {shown_name}")
        result = analyse(vlm, settings.db, None if run is None else run["run_id"], settings.estimator, image,
                         question, options)
    except Exception as error:  # a user-chosen model may fail in any way; report it and go on with the others
        progress.empty()
        st.error(f"{shown_name} could not be run: {markdown_text(error)}")
        continue
    progress.progress(1.0, text="done")
    chart(probe_bars(result.probs, options), settings, f"case-probes-{name}")
    st.caption("Probability mass the model puts on the option letters, per pass: "
               + ", ".join(f"{mass:.2f}" for mass in result.letter_mass[:, -1]))
    if not result.atoms:
        continue
    output_layer = max(result.atoms)
    output = result.atoms[output_layer]
    st.subheader("This sample's atoms (bits, output layer)")
    for atom, text in EXPLANATIONS.items():
        st.markdown(f"**{LABELS[atom]}: {output[atom]:+.3f}** — {text}")
    st.caption(LOCAL_NOTE)
    reference = data.pointwise(settings.db, name, task, run["checkpoint"], settings.estimator)
    reference = reference[reference["layer"] == output_layer]
    title = f"This sample (star) against {name}'s per-sample atoms on {task}"
    chart(sample_against_reference(output, reference, title), settings, f"case-reference-{name}")
    chart(sample_layers(result.atoms), settings, f"case-layers-{name}")
