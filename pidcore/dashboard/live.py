"""The case study's live side: one model in memory at a time, and the words that explain one sample's atoms."""

from __future__ import annotations

import streamlit as st

from pidcore.models.loading import LoadedVLM, load_vlm
from pidcore.shipped import MODELS

EXPLANATIONS = {
    "r": "Redundancy: what this sample's image and question each tell the model about its answer.",
    "u1": "Vision-unique: what only the image tells the model here.",
    "u2": "Language-unique: what only the question tells the model here.",
    "s": "Synergy: what the model gets only from the image and question together.",
}
LOCAL_NOTE = ("These are local (pointwise) atoms of one sample: their mean over a dataset is the dataset's atom, but "
              "one sample's values can be negative, which means the sample is less informative in that way than "
              "the reference batch on average.")


@st.cache_resource(max_entries=1, show_spinner=False)
def cached_model(model_id: str) -> LoadedVLM:
    """Load a model, keeping only the most recent one in memory."""
    return load_vlm(model_id, device="auto")


def shipped_models() -> list[str]:
    """Names of the shipped demo models (folders under data/models with a config)."""
    return sorted(path.name for path in MODELS.iterdir() if (path / "config.json").is_file()) if MODELS.is_dir() else []
