"""Device selection shared by the estimators and the probing engine."""

from __future__ import annotations

import torch

DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" into CUDA when present, else CPU; refuse, in one line naming it, a device torch does not know or
    that is not available on this machine (CUDA absent, a GPU index past the last one)."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not one torch knows; use {DEVICE_CHOICES}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} was asked for, but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} was asked for, but this machine has {torch.cuda.device_count()} "
                             f"CUDA device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    elif resolved.type != "cpu" and not _available(resolved.type):
        raise ValueError(f"device {device!r} is not available on this machine; use {DEVICE_CHOICES}")
    return resolved


def _available(kind: str) -> bool:
    """Whether torch has a backend of this device type that says it is available here (mps, xpu, ...)."""
    if kind == "mps":
        return torch.backends.mps.is_available()
    backend = getattr(torch, kind, None)
    is_available = getattr(backend, "is_available", None)
    try:
        return bool(is_available()) if callable(is_available) else False
    except Exception:  # noqa: BLE001 - a backend that cannot tell is not available
        return False
