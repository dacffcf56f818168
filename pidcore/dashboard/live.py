"""The case study's live side: one model in memory at a time, and the words that explain one sample's atoms."""

from __future__ import annotations

import re
from pathlib import Path

import streamlit as st

from pidcore.models.loading import LoadedVLM, ModelLoadError, load_vlm
from pidcore.shipped import MODELS, RESULTS_DIRS_ENV, results_dirs

# A hub id as the hub spells one: organisation/name, letters, digits, "-", "_" and "." (no "..", no leading "." or
# "-"), at most 96 characters each side. Typed text of this form is a hub id, never a path on this machine.
HUB_ID = re.compile(r"(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}")
# Files of a hub snapshot never fetched: pickle and other frameworks' weights (only safetensors are loaded).
HUB_SKIPPED = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl", "*.h5", "*.msgpack", "*.onnx", "*.gguf", "*.tflite"]
NOT_A_MODEL_HERE = ("cannot load model: it is neither a model folder (with a config.json) inside the folders this "
                    f"dashboard opens results from (those in `{RESULTS_DIRS_ENV}`, by default the shipped data/ "
                    "folder and the folder it was started in) nor a hub id of the form organisation/name")

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


def other_model(text: str) -> str:
    """What to load for a model typed into the case study: a hub id (organisation/name) fetched from the hub into
    its cache, never read as a path here; else a local model folder inside the results folders or the shipped
    models folder, symlinks and `..` resolved. Anything else is refused with NOT_A_MODEL_HERE, one message whatever
    the path is, so the field tells nobody what exists on this machine."""
    text = text.strip()
    if HUB_ID.fullmatch(text):
        return _hub_snapshot(text)
    try:
        folder = Path(text).expanduser().resolve()
        allowed = any(folder.is_relative_to(root) for root in [*results_dirs(), MODELS.resolve()])
        if allowed and (folder / "config.json").is_file():
            return str(folder)
    except (OSError, RuntimeError, ValueError):
        pass
    raise ModelLoadError(NOT_A_MODEL_HERE)


def _hub_snapshot(repo_id: str) -> str:
    """The local folder of a hub model's snapshot (its safetensors, configs and processor files), fetched once."""
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(repo_id, ignore_patterns=HUB_SKIPPED)
    except Exception as error:  # any hub or network failure: say which model, not where anything lives here
        raise ModelLoadError(f"cannot load model {repo_id!r} from the hub: it does not exist there, is private, or "
                             f"cannot be fetched here ({type(error).__name__})") from error


def load_other(text: str) -> LoadedVLM:
    """Load a model typed into the case study (see other_model); a failure names the hub id typed, not the folder
    of this machine's hub cache it was fetched into."""
    model_id = other_model(text)
    try:
        return cached_model(model_id)
    except Exception as error:  # a user-chosen model may fail in any way: report it with the cache path hidden
        if not HUB_ID.fullmatch(text.strip()):
            raise
        raise ModelLoadError(str(error).replace(model_id, text.strip())) from error
