"""Load any supported Hugging Face VLM and its processor from a hub id or a local folder (safetensors only)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from pidcore.devices import resolve_device
from pidcore.models.adapters import Adapter, adapter_for

# Weights files that unpickle (and so may run code) when loaded: named in the error, never loaded.
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")
SAFETENSORS_INDEX = "model.safetensors.index.json"


class ModelLoadError(ValueError):
    """A model cannot be loaded: no config, no safetensors weights, or weights that do not load."""


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
        model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=resolved_dtype, use_safetensors=True,
                                                            trust_remote_code=trust_remote_code, revision=revision,
                                                            **placement)
    except OSError as error:
        raise ModelLoadError(f"cannot load the weights of model {model_id!r} (safetensors only): {error}") from error
    if adapter.load_processor is not None:
        processor = adapter.load_processor(model_id, trust_remote_code, revision)
    else:
        processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code, revision=revision)
    if spread:
        return LoadedVLM(model.eval(), processor, adapter, model.get_input_embeddings().weight.device, resolved_dtype)
    return LoadedVLM(model.to(resolved_device).eval(), processor, adapter, resolved_device, resolved_dtype)


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
