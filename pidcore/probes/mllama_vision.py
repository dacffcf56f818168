"""Llama 3.2 Vision's image features as its reference code and transformers 4.x compute them.

Its vision tower joins to the last layer's output the hidden states of chosen local layers
(`intermediate_layers_indices`, [3, 7, 15, 23, 30] in the released checkpoints), entry i being the input of layer i:
Meta's reference appends each layer's input before running it, and transformers 4.x (the paper's 4.51.3) lists the
encoder's input first. transformers 5.25 lists only the layers' outputs, so entry i is the output of layer i, one
layer later, and every image feature differs from the reference's. Within `reference_intermediates`, the local
encoder's input is put back first, so the indices mean what they meant; where the encoder lists it already (one
entry more than it has layers), nothing changes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def _local_encoder(model: nn.Module) -> nn.Module | None:
    """The local (per-tile) encoder of a Llama 3.2 Vision model's vision tower; None for other models."""
    inner = getattr(model, "model", model)
    vision = getattr(inner, "vision_model", None)
    if vision is None or not hasattr(vision, "intermediate_layers_indices"):
        return None
    return vision.transformer


def _with_input_first(module: nn.Module, args: tuple, kwargs: dict, output) -> None:
    """Put the encoder's input before its layers' outputs in its hidden states, unless it is there already."""
    states = output.hidden_states
    if states is None or len(states) != len(module.layers):
        return
    output.hidden_states = (kwargs.get("hidden_states", args[0] if args else None), *states)


@contextmanager
def reference_intermediates(model: nn.Module) -> Iterator[None]:
    """Within the block, a Llama 3.2 Vision model's vision tower picks its intermediate layers as its reference code
    does (nothing changes for other models)."""
    encoder = _local_encoder(model)
    if encoder is None:
        yield
        return
    handle = encoder.register_forward_hook(_with_input_first, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
