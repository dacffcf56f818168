"""Load any supported Hugging Face VLM and its processor from a hub id or a local folder (safetensors only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor, PretrainedConfig

from pidcore.devices import resolve_device
from pidcore.models.adapters import CONVERTED, Adapter, adapter_for
from pidcore.models.conversion import native_folder
from pidcore.models.identity import PICKLE_WEIGHTS, SAFETENSORS_INDEX
from pidcore.models.listing import first_few

REDO_CHECKPOINT = "download it again, or save it again with save_pretrained"


class ModelLoadError(ValueError):
    """A model cannot be loaded: no config, no safetensors weights, or weights that do not load or do not match it."""


@dataclass
class LoadedVLM:
    """A model in eval mode with its processor, family adapter, device and dtype."""

    model: torch.nn.Module
    processor: object
    adapter: Adapter
    device: torch.device
    dtype: torch.dtype


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """"auto" is bfloat16 on CUDA and float32 on CPU; otherwise a torch dtype name."""
    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r}; use auto, float32, bfloat16 or float16")
    return resolved


def load_vlm(model_id: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False,
             revision: str | None = None, spread: bool = False) -> LoadedVLM:
    """Load model and processor (a hub id at `revision`, default its main branch); remote code runs only when
    trust_remote_code is passed explicitly. `spread` places the layers over every visible GPU (device_map="auto",
    which needs accelerate) instead of moving the whole model to `device`."""
    declared = declared_model_type(model_id, revision, local_files_only=False)
    if declared is not None:
        adapter_for(declared)  # a family that cannot be profiled is named with its reason before its config loads
    if declared in CONVERTED:  # transformers cannot load it: its native conversion, written once, is loaded
        model_id, revision = str(native_folder(model_id, declared, revision)), None
    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code, revision=revision)
    except OSError as error:
        raise ModelLoadError(f"cannot load model {model_id!r}: it is neither a local folder with a config.json nor "
                             f"a hub id that can be fetched here ({error})") from error
    adapter = adapter_for(config.model_type)
    check_safetensors(model_id)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    placement = {"device_map": "auto"} if spread else {}
    try:
        model, info = AutoModelForImageTextToText.from_pretrained(
            model_id, dtype=resolved_dtype, use_safetensors=True, trust_remote_code=trust_remote_code,
            revision=revision, output_loading_info=True, ignore_mismatched_sizes=True, **placement)
    except OSError as error:
        raise ModelLoadError(f"cannot load the weights of model {model_id!r} (safetensors only): {error}") from error
    except SafetensorError as error:
        raise ModelLoadError(f"cannot load the weights of model {model_id!r}: {_damaged_file(model_id)} is not a "
                             f"whole safetensors file ({error}); it is likely cut short by a failed download or copy: "
                             f"{REDO_CHECKPOINT}") from error
    check_loading_info(model_id, info)
    if adapter.load_processor is not None:
        processor = adapter.load_processor(model_id, trust_remote_code, revision)
    else:
        processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code, revision=revision)
    if spread:
        return LoadedVLM(model.eval(), processor, adapter, model.get_input_embeddings().weight.device, resolved_dtype)
    return LoadedVLM(model.to(resolved_device).eval(), processor, adapter, resolved_device, resolved_dtype)


def declared_model_type(model_id: str, revision: str | None, local_files_only: bool = True) -> str | None:
    """The model type a model's config.json declares, read as a file (no remote code runs, so a family transformers
    lacks is named too); None where there is no config to read (by default only a local copy is looked at)."""
    try:
        config, _ = PretrainedConfig.get_config_dict(model_id, revision=revision, local_files_only=local_files_only)
    except (OSError, ValueError):
        return None
    return config.get("model_type")


def check_loading_info(model_id: str, info: dict) -> None:
    """Refuse weights that do not match the model's config (parameters missing, so randomly initialised; unexpected,
    so skipped; or of another shape), naming the first few of each kind, instead of profiling a model it is not."""
    problems = []
    for kind, meaning in (("missing_keys", "missing from the checkpoint (they would be randomly initialised)"),
                          ("unexpected_keys", "in the checkpoint but not in the model (they would be skipped)")):
        names = sorted(info.get(kind) or ())
        if names:
            problems.append(f"{len(names)} parameter(s) {meaning}: {first_few(names)}")
    mismatched = sorted(info.get("mismatched_keys") or ())
    if mismatched:
        shapes = [f"{name} (checkpoint {tuple(stored)}, config {tuple(expected)})"
                  for name, stored, expected in mismatched]
        problems.append(f"{len(mismatched)} parameter(s) of another shape in the checkpoint than the config gives: "
                        f"{first_few(shapes)}")
    if info.get("error_msgs"):
        problems.append(f"loading errors: {first_few(list(info['error_msgs']))}")
    if problems:
        raise ModelLoadError(f"cannot load the weights of model {model_id!r}: they do not match its config: "
                             f"{'; '.join(problems)}. The checkpoint is partly downloaded or was edited, or "
                             f"config.json describes another model: {REDO_CHECKPOINT}")


def _damaged_file(model_id: str) -> str:
    """The name of the first safetensors file in a local model folder whose header does not match the file (the
    error transformers passes on does not name it), or "a weights file" where none is found."""
    folder = Path(model_id).expanduser()
    for path in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            with safe_open(path, framework="pt"):
                pass
        except (SafetensorError, OSError):
            return path.name
    return "a weights file"


def check_safetensors(model_id: str) -> None:
    """Refuse a local folder without safetensors weights, naming it and the pickle files it holds instead, before
    transformers reports a bare file-not-found."""
    folder = Path(model_id).expanduser()
    try:
        is_folder = folder.is_dir()
    except OSError:  # a name longer than a path can be: not a folder, and config loading has named it already
        return
    if not is_folder or any(folder.glob("*.safetensors")) or (folder / SAFETENSORS_INDEX).is_file():
        return
    pickles = sorted({path.name for pattern in PICKLE_WEIGHTS for path in folder.glob(pattern)})
    found = f"only pickle weights ({', '.join(pickles)})" if pickles else "no weights file"
    raise ModelLoadError(f"cannot load model folder {folder}: weights load from safetensors only, and it holds "
                         f"{found}; save the model with save_pretrained(..., safe_serialization=True)")
