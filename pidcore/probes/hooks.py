"""A forward pre-hook on the decoder that sees, and may replace, the input embeddings after the image is merged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from pidcore.models.loading import LoadedVLM


@contextmanager
def decoder_input_hook(vlm: LoadedVLM, edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """Let `edit(inputs_embeds)` see and replace the decoder's input embeddings for one forward."""
    def hook(module, args, kwargs):
        kwargs["inputs_embeds"] = edit(kwargs["inputs_embeds"])
        return args, kwargs

    handle = vlm.model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()
