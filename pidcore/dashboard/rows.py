"""The rows a page shows: loaded for the sidebar's settings and flagged by the stated rule, or, when there are
none or the database cannot be read, an explanation on the page instead of a traceback; and the paper's
published rows to compare with, each row marked with its source."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from pidcore.analysis.regimes import Regime, final_rows, is_output
from pidcore.analysis.stages import training_checkpoints
from pidcore.atoms import PAPER_ESTIMATOR
from pidcore.dashboard import data
from pidcore.dashboard.sidebar import HOW_TO_FILL, Settings
from pidcore.dashboard.text import markdown_text
from pidcore.shipped import PAPER_DB
from pidcore.store import StoreError

COMPUTED, PUBLISHED = "computed here", "published"
PAPER_SUFFIX = " (paper)"
FIGURES_DIFFER_BITS = 0.05  # the paper's two figures of one model and task disagree by more than this


def load_rows(settings: Settings) -> pd.DataFrame:
    """The `atoms` rows of the chosen estimator with their diagnostics and a `source` column; where there are none,
    the page says why and stops."""
    try:
        rows = data.atoms_with_diagnostics(settings.db, settings.estimator)
    except StoreError as error:
        st.info(f"{markdown_text(error)}. {HOW_TO_FILL}")
        st.stop()
    if rows.empty:
        st.warning(f"{markdown_text(settings.db)} holds no results for this estimator yet. {HOW_TO_FILL}")
        st.stop()
    return rows.assign(source=PUBLISHED if settings.estimator == PAPER_ESTIMATOR else COMPUTED)


def require(rows: pd.DataFrame, why_empty: str) -> pd.DataFrame:
    """`rows` when there are any; else the page shows `why_empty` and stops."""
    if rows.empty:
        st.info(why_empty)
        st.stop()
    return rows


def paper_rows() -> pd.DataFrame:
    """The paper's published rows (the shipped database), source "published", models named "MODEL (paper)" so they
    never merge with a model of the same name computed here; empty, with a note on the page, when it is missing."""
    try:
        rows = data.atoms_with_diagnostics(str(PAPER_DB), PAPER_ESTIMATOR)
    except StoreError as error:
        st.info(f"The paper's published results cannot be shown: {markdown_text(error)}. Build them with "
                "`python -m pidcore paper build`.")
        return pd.DataFrame()
    return rows.assign(source=PUBLISHED, model=rows["model"] + PAPER_SUFFIX)


def paper_figures_note(shown: list[tuple[str, str]]) -> str | None:
    """What to say where the paper's training curves are shown (`shown`: their (model, task), "(paper)" names
    included): they were read off its learning-curve figures, its final atoms off its per-dataset bar figures, and
    the two disagree at the same point; None where no shown curve is the paper's or none disagrees."""
    paper = data.atoms(str(PAPER_DB))
    paper = paper[paper["estimator"] == PAPER_ESTIMATOR]
    gaps = []
    for model, task in shown:
        model = model.removesuffix(PAPER_SUFFIX)
        rows = paper[(paper["model"] == model) & (paper["task"] == task) & is_output(paper)]
        trained, final = training_checkpoints(rows), rows[rows["checkpoint"] == "final"]
        if trained.empty or final.empty:
            continue
        last = float(trained.sort_values("step")["s"].iloc[-1])
        if abs(last - float(final["s"].iloc[0])) > FIGURES_DIFFER_BITS:
            gaps.append(f"{model} on {task}: S {float(final['s'].iloc[0]):.2f} bits in the bar figure (the breadth "
                        f"and depth pages), {last:.2f} at the last training checkpoint")
    if not gaps:
        return None
    return ("The paper's training curves were read off its learning-curve figures, its final atoms off its "
            "per-dataset bar figures, two figures of the paper that do not agree at the same point: "
            + "; ".join(gaps) + ". Both are shown as published.")


def flag_rows(rows: pd.DataFrame, settings: Settings) -> pd.DataFrame:
    """The rows a view shows with their run's letter mass and flags; stops the page, saying why, when the database
    cannot be read (locked too long, replaced meanwhile)."""
    try:
        return data.flagged(rows, settings.db)
    except StoreError as error:
        st.info(f"{markdown_text(error)}. Reload the page in a moment.")
        st.stop()


def published_final_rows(tasks: set[str]) -> pd.DataFrame:
    """The paper's rows at each model's final checkpoint and output layer, for the tasks given (by name)."""
    published = paper_rows()
    if published.empty:
        return published
    published = final_rows(published)
    return published[published["task"].isin(tasks)]


def regimes_of(settings: Settings, groups: dict[str, pd.DataFrame]) -> dict[str, dict[str, Regime]]:
    """Per source of the final rows shown (this database, and the paper's when compared): each task's regime."""
    own, *compared = groups
    regimes = {own: data.regimes(settings.db, settings.estimator)}
    for source in compared:
        paper = data.regimes(str(PAPER_DB), PAPER_ESTIMATOR)
        regimes[source] = {task: paper[task] for task in sorted(set(groups[source]["task"])) if task in paper}
    return regimes


def layer_curves_of(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of runs with atoms at two or more layers: the ones a depth page can draw as curves."""
    if rows.empty:
        return rows
    layered = rows.dropna(subset=["layer"])
    counts = layered.groupby(["model", "task", "checkpoint"])["layer"].transform("nunique")
    return layered[counts >= 2]


def curve_keys(rows: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The (model, task, checkpoint) curves of `rows` in menu order: by model and task, then by training step (so
    step 500 comes before step 1100), a checkpoint without a step (a released "final") last."""
    keys = rows[["model", "task", "checkpoint", "step"]].drop_duplicates(["model", "task", "checkpoint"])
    ordered = keys.assign(unknown=keys["step"].isna()).sort_values(["model", "task", "unknown", "step", "checkpoint"])
    return list(ordered[["model", "task", "checkpoint"]].itertuples(index=False, name=None))


def curve_label(key: tuple[str, str, str]) -> str:
    """How a (model, task, checkpoint) series is named in menus and legends."""
    model, task, checkpoint = key
    return f"{model} · {task} · {checkpoint}"


def partial_run_note(curve: pd.DataFrame) -> str | None:
    """What to say about a curve whose run lacks its output layer (layer = n_layers): `profile` writes the layers
    in order and the output last, so it may still be estimating the rest; None for a finished curve."""
    depth, layers = curve["n_layers"].max(), curve["layer"].dropna()
    if pd.isna(depth) or (layers == depth).any():
        return None
    return (f"Layers {layer_spans(layers)} of this run are stored so far, not yet its output layer {int(depth)}: a "
            "`profile` may still be estimating the others (reload the page to see the layers written meanwhile).")


def missing_outputs_note(rows: pd.DataFrame) -> str | None:
    """What to say about the runs at their model's final checkpoint that have no output-layer row (layer =
    n_layers), so no cell on the breadth page: `profile` writes the output last and may still be estimating them;
    None where there are none."""
    # each row's layer set to its run's depth: final_rows then keeps every layer of each model's final checkpoint
    every_layer = rows.loc[final_rows(rows.assign(layer=rows["n_layers"])).index]
    waiting = []
    for (model, task, checkpoint), run in every_layer.groupby(["model", "task", "checkpoint"]):
        layers = run["layer"].dropna()
        if run["n_layers"].notna().any() and not is_output(run).any():
            waiting.append(f"- {markdown_text(model)} on {markdown_text(task)} ({markdown_text(checkpoint)}): "
                           f"layer{'s' if layers.nunique() > 1 else ''} {layer_spans(layers)} stored, not yet its "
                           f"output layer {int(run['n_layers'].max())}")
    if not waiting:
        return None
    return ("These runs have no cell yet: their output layer is not stored, and a `profile` may still be estimating "
            "it (it writes the output layer last; reload the page to see it once written). The depth page draws "
            "the layers stored so far, from two on.\n\n" + "\n".join(waiting))


def layer_spans(layers: pd.Series) -> str:
    """Layer numbers as runs of consecutive ones, e.g. "0-2, 4"."""
    numbers, spans = sorted({int(layer) for layer in layers}), []
    for number in numbers:
        if spans and number == spans[-1][1] + 1:
            spans[-1][1] = number
        else:
            spans.append([number, number])
    return ", ".join(str(low) if low == high else f"{low}-{high}" for low, high in spans)


def checkpoint_label(stage: object, step: object, checkpoint: str) -> str:
    """How the time page names a checkpoint: its stage and step, or its name where the step is not known (a
    released "final" beside the training checkpoints); plain text (a slider's options go through markdown_text)."""
    where = f"step {int(step)}" if pd.notna(step) else checkpoint
    return where if pd.isna(stage) else f"stage {stage} · {where}"


def trajectories_of(rows: pd.DataFrame) -> pd.DataFrame:
    """Output-layer rows of (model, task) pairs with two or more checkpoints of known stage and step, in step order:
    the ones a time page can draw as trajectories."""
    if rows.empty:
        return rows
    outputs = training_checkpoints(rows[is_output(rows)])
    counts = outputs.groupby(["model", "task"])["checkpoint"].transform("nunique")
    return outputs[counts >= 2]
