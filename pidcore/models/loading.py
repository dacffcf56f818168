"""Load any supported Hugging Face VLM and its processor from a hub id or a local folder (safetensors only)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor

from pidcore.devices import resolve_device
from pidcore.models.adapters import Adapter, adapter_for


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


def load_vlm(model_id: str, device: str = "auto", dtype: str = "auto", trust_remote_code: bool = False) -> LoadedVLM:
    """Load model and processor; remote code runs only when trust_remote_code is passed explicitly."""
    try:
        config = AutoConfig.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    except OSError as error:
        raise ValueError(f"cannot load model {model_id!r}: it is neither a local folder with a config.json nor a "
                         f"hub id that can be fetched here ({error})") from error
    adapter = adapter_for(config.model_type)
    resolved_device = resolve_device(device)
    resolved_dtype = resolve_dtype(dtype, resolved_device)
    model = AutoModelForImageTextToText.from_pretrained(model_id, dtype=resolved_dtype, use_safetensors=True,
                                                        trust_remote_code=trust_remote_code)
    if adapter.load_processor is not None:
        processor = adapter.load_processor(model_id, trust_remote_code)
    else:
        processor = AutoProcessor.from_pretrained(model_id, trust_remote_code=trust_remote_code)
    return LoadedVLM(model.to(resolved_device).eval(), processor, adapter, resolved_device, resolved_dtype)
