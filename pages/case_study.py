"""Case study: one image and question (uploaded, an example, or a stored sample opened from another page), run live
through one or more models when Run is pressed, the models side by side in columns."""

import hashlib
import random
from pathlib import Path

import pandas as pd
import streamlit as st

from pidcore.atoms import LABELS
from pidcore.dashboard import data
from pidcore.dashboard.charts import probe_bars, sample_against_reference, sample_layers
from pidcore.dashboard.export import LEGEND_LAYOUT_PX, ChartInfo
from pidcore.dashboard.live import EXPLANATIONS, LOCAL_NOTE, cached_model, load_other, shipped_models
from pidcore.dashboard.sidebar import sidebar
from pidcore.dashboard.text import markdown_text
from pidcore.dashboard.widgets import chart
from pidcore.datasets import shapes
from pidcore.pipeline.case_study import (IMAGE_DEPENDENCE_NOTE, MAX_UPLOAD_BYTES, CaseInputError, analyse,
                                         check_question, closest_task, image_dependence, read_image)
from pidcore.probes.conventions import CLEAN, PROBE_MODES
from pidcore.shipped import MODELS
from pidcore.store import StoreError

DEFAULT_QUESTION, DEFAULT_OPTIONS = "What colour is the shape?", ("red", "green", "blue", "yellow")
KEPT_RESULTS = 8  # results of the last runs kept for this session, so a rerun of the page does not run models
AS_REFERENCE = "as the reference run"
NO_RUNS = pd.DataFrame(columns=["run_id", "task", "checkpoint", "step"])
TASK_HELP = ("The profiled task whose run of each model this sample is scored inside. By default the task whose "
             "stored questions share the most words with this question, chosen again when the question or options "
             f"change; a tie goes to the task whose answers depend most on the image: {IMAGE_DEPENDENCE_NOTE}.")


def stored_sample(db: str, shipped: list[str]) -> bytes | None:
    """The image of the sample a link opens (?run=...&sample=...), its question, options and model written into the
    inputs once per sample opened; None when the link opens none or it is not stored."""
    run_id, sample_id = st.query_params.get("run"), st.query_params.get("sample")
    if run_id is None or sample_id is None:
        return None
    try:
        record, image = data.sample_record(db, run_id, sample_id), data.sample_image(db, run_id, sample_id)
        model = data.run_model(db, run_id)
    except StoreError as error:
        st.info(f"The sample this link opens cannot be read: {markdown_text(error)}.")
        return None
    except Exception as error:  # a damaged or crafted database can fail its decoding (stored arrays) in any way
        st.info("The sample this link opens cannot be read: its stored data (probe distributions, options) is "
                f"damaged or not what pidcore writes ({markdown_text(type(error).__name__)}).")
        return None
    if record is None or image is None or record["question"] is None or record["options"] is None:
        st.info(f"Sample {markdown_text(sample_id)} of run {markdown_text(run_id)} is not stored with its image and "
                "question in this database.")
        return None
    if st.session_state.get("case_opened") != (db, run_id, sample_id):
        st.session_state.update(case_opened=(db, run_id, sample_id), case_question=record["question"],
                                case_options="\n".join(record["options"]), case_use_stored=True)
        st.session_state["case_models"] = [model] if model in shipped else []
    return image


def model_runs(db: str, names: list[str], n_options: int) -> dict[str, pd.DataFrame]:
    """Each model's profiled runs with `n_options` options that kept the estimator's fitted networks (NO_RUNS where
    the database has none or cannot be read)."""
    found = {}
    for name in names:
        try:
            found[name] = data.reference_runs(db, name, n_options, settings.estimator)
        except StoreError:
            found[name] = NO_RUNS
    return found


def suggested_task(db: str, runs: pd.DataFrame, question: str) -> str:
    """The task of `runs` whose stored questions are closest to `question`, a tie going to the task whose answers
    depend most on the image among the runs' models."""
    try:
        questions = data.run_questions(db, tuple(runs["run_id"]))
        dependence = image_dependence(data.atoms(db), runs["model"].unique(), settings.estimator)
    except StoreError:
        questions, dependence = pd.DataFrame(columns=["run_id", "question"]), {}
    by_task = {task: questions[questions["run_id"].isin(runs[runs["task"] == task]["run_id"])]["question"]
               for task in runs["task"].unique()}
    return closest_task(question, by_task, dependence)


def chosen_task(key: str, label: str, tasks: list[str], suggested: str, basis: tuple) -> str:
    """A reference task box set to `suggested` whenever `basis` (the question, options and tasks) changes, else
    keeping the user's choice, also across reruns that do not show the box (Streamlit drops a widget's state then)."""
    kept = st.session_state.get(f"{key}_kept")  # (basis, task) of the last run that showed the box
    current = st.session_state.get(key, kept[1] if kept else None)
    if kept is None or kept[0] != basis or current not in tasks:
        current = suggested
    st.session_state[key] = current
    task = st.selectbox(label, tasks, key=key, help=TASK_HELP)
    st.session_state[f"{key}_kept"] = (basis, task)
    return task


def shared_task(db: str, runs: dict[str, pd.DataFrame], question: str, options: list[str]) -> str | None:
    """The one reference task of every column, shown in the heading and changeable once for all: among the tasks
    every model with runs has a run of; None (and a warning) where no task is shared, so each column picks its own."""
    with_runs = [found.assign(model=name) for name, found in runs.items() if not found.empty]
    if not with_runs:
        return None
    shared = set.intersection(*(set(found["task"]) for found in with_runs))
    if not shared:
        st.warning(f"No reference task has a run of every chosen model with {len(options)} options, so each column "
                   "is scored against a task of its own: their pointwise atoms are not comparable across columns.")
        return None
    pooled = pd.concat(with_runs)
    pooled = pooled[pooled["task"].isin(shared)]
    tasks = sorted(shared)
    heading = st.empty()
    task = chosen_task("case_task", "Reference task (every column)", tasks, suggested_task(db, pooled, question),
                       (question, tuple(options), tuple(tasks)))
    heading.subheader(f"Scored against the reference task {markdown_text(task)}", anchor=False)
    return task


def reference_run(db: str, name: str, runs: pd.DataFrame, task: str | None, question: str,
                  options: list[str]) -> pd.Series | None:
    """The profiled run of `name` to score the sample against: its run of the shared `task`, else (no task shared)
    one chosen in its column. None (and a note) where the database has no such run."""
    if runs.empty:
        st.info(f"No profiled run of {markdown_text(name)} with {len(options)} options keeps the fitted networks of "
                f"{markdown_text(settings.estimator)} in this database, so only the probe distributions are shown "
                "(the masked probes use this sample's own embedding statistics).")
        return None
    if task is None:
        tasks = runs["task"].unique().tolist()
        suggested = suggested_task(db, runs.assign(model=name), question)
        task = chosen_task(f"case_task_{name}", "Reference task (this column)", tasks, suggested,
                           (question, tuple(options), tuple(tasks)))
    return runs[runs["task"] == task].iloc[0]


def show_result(name: str, result, run: pd.Series | None, options: list[str], layout_px: int) -> None:
    """One model's column (`layout_px` wide): its probe distributions, its atoms explained, and where they sit among
    the run's."""
    base = ChartInfo("Answer distributions over the options", name, layer="output")
    chart(probe_bars(result.probs, options), settings, base, layout_px=layout_px)
    st.caption("Probability mass the model puts on the option letters, per pass: "
               + ", ".join(f"{mass:.2f}" for mass in result.letter_mass[:, -1]))
    if not result.atoms:
        return
    output_layer = max(result.atoms)
    output = result.atoms[output_layer]
    st.markdown(f"**This sample's atoms (bits, output layer), relative to the reference task "
                f"{markdown_text(run['task'])} ({markdown_text(name)} at {markdown_text(run['checkpoint'])})**")
    for atom, text in EXPLANATIONS.items():
        st.markdown(f"**{LABELS[atom]}: {output[atom]:+.3f}** — {text}")
    st.caption(LOCAL_NOTE)
    reference = data.pointwise(settings.db, name, run["task"], run["checkpoint"], settings.estimator)
    reference = reference[reference["layer"] == output_layer]
    info = ChartInfo("This sample (star) against the run's per-sample atoms", name, run["task"], run["checkpoint"],
                     "output", settings.estimator, "bits")
    chart(sample_against_reference(output, reference, info.what), settings, info, reference, layout_px=layout_px)
    layers_info = ChartInfo("This sample's atoms layer by layer", name, run["task"], run["checkpoint"], "all",
                            settings.estimator, "bits")
    chart(sample_layers(result.atoms), settings, layers_info, layout_px=layout_px)


st.title("Case study: one image and question, live")
settings = sidebar()
shipped = shipped_models()
stored_image = stored_sample(settings.db, shipped)
st.session_state.setdefault("case_models", shipped[:1])
st.session_state.setdefault("case_question", DEFAULT_QUESTION)
st.session_state.setdefault("case_options", "\n".join(DEFAULT_OPTIONS))
chosen = st.multiselect("Models (the shipped zoo)", shipped, key="case_models")
other = st.text_input("Or another model: a hub id or a local folder (safetensors only)", key="case_other",
                      help="A hub id (organisation/name) is fetched from the hub; a local model folder must lie "
                           "inside a folder the dashboard opens results from (start a local path with ./ or /).")
# (name shown, what to load, typed by the user: checked and loaded by load_other)
models = ([(name, str(MODELS / name), False) for name in chosen]
          + ([(Path(other.strip()).name or other.strip(), other, True)] if other.strip() else []))

upload = st.file_uploader(f"Image (PNG or JPEG, at most {MAX_UPLOAD_BYTES // 2**20} MB)", type=["png", "jpg", "jpeg"],
                          max_upload_size=MAX_UPLOAD_BYTES // 2**20, key="case_image")
use_stored = stored_image is not None and st.checkbox("Use the opened sample's stored image", key="case_use_stored")
example = st.checkbox("Use an example image from the shapes benchmark (a blue shape)", key="case_example")
question = st.text_input("Question", key="case_question")
options_text = st.text_area("Options, one per line (2 to 6)", key="case_options")
probe_choice = st.radio("Probe conventions", (AS_REFERENCE, *PROBE_MODES), key="case_probes", horizontal=True,
                        help="How the masked probes are run: as the reference run of each model was made (the "
                             "sample's atoms are scored among that run's samples, so this keeps them comparable), the "
                             "paper's stages 1-2 (published) or ours (clean); the README's 'Probe conventions' says "
                             "what each one changes.")

image, image_bytes = None, b""
try:
    if upload is not None:
        image_bytes = upload.getvalue()
    elif use_stored:
        image_bytes = stored_image
    if image_bytes:
        image = read_image(image_bytes)
    elif example:
        image = shapes.render(2, random.Random(0))
        image_bytes = b"example"
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

run_now = st.button("Run", type="primary", key="case_run", icon=":material/play_arrow:",
                    help="Runs the three probes of every chosen model on this image and question.")
results = st.session_state.setdefault("case_results", {})
image_digest = hashlib.sha256(image_bytes).hexdigest()
runs = model_runs(settings.db, [name for name, _, _ in models], len(options))
task = shared_task(settings.db, runs, question, options)
for column, (name, model_id, typed) in zip(st.columns(len(models)), models):
    with column:
        st.header(markdown_text(name), anchor=False)
        run = reference_run(settings.db, name, runs[name], task, question, options)
        recorded = None if run is None else data.run_probe_mode(settings.db, run["run_id"])
        probes = (recorded or CLEAN) if probe_choice == AS_REFERENCE else probe_choice
        if recorded is not None and probes != recorded:
            st.warning(f"The reference run was probed with the {markdown_text(recorded)} conventions, this sample "
                       f"with {markdown_text(probes)}: "
                       "its atoms are scored among samples probed another way.")
        signature = (settings.db, settings.estimator, model_id, image_digest, question, tuple(options),
                     None if run is None else run["run_id"], probes)
        if run_now:
            progress = st.progress(0.0, text=f"loading {name}")
            try:
                vlm = load_other(model_id) if typed else cached_model(model_id)
                progress.progress(0.5, text=f"running the three probes and scoring {name}")
                results[signature] = analyse(vlm, settings.db, None if run is None else run["run_id"],
                                             settings.estimator, image, question, options, probes=probes)
            except Exception as error:  # a user-chosen model may fail in any way; report it, go on with the others
                results[signature] = error
            progress.empty()
            while len(results) > KEPT_RESULTS:
                results.pop(next(iter(results)))
        outcome = results.get(signature)
        if outcome is None:
            st.info(f"Press Run to run {markdown_text(name)} on this image and question.")
        elif isinstance(outcome, Exception):
            st.error(f"{markdown_text(name)} could not be run: {markdown_text(outcome)}")
        else:
            show_result(name, outcome, run, options, LEGEND_LAYOUT_PX // len(models))
