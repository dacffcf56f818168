"""Processor inputs for one sample, with the positions of its image tokens and of its own text."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pidcore.atoms import option_letters
from pidcore.models.adapters import image_token_id
from pidcore.models.loading import LoadedVLM
from pidcore.probes.prompt import render_prompt, user_text


@dataclass
class Encoded:
    """Model inputs (batch of one) and boolean masks over its token positions."""

    inputs: dict
    image_mask: torch.Tensor
    text_mask: torch.Tensor
    n_options: int


def encode_sample(vlm: LoadedVLM, image, question: str, options: list[str], hint: str | None = None) -> Encoded:
    """Render the prompt, run the processor, and locate image tokens and user-text tokens."""
    option_letters(len(options))
    own_text = user_text(question, options, hint)
    prompt = render_prompt(vlm.processor, own_text, vlm.adapter.plain_prompt)
    start = prompt.find(own_text)
    if start < 0:
        raise ValueError("the chat template changed the user text; cannot locate it in the prompt")
    ids = _token_ids(vlm, image, prompt)
    first = _prefix_length(vlm, image, prompt[:start], ids)
    last = _prefix_length(vlm, image, prompt[: start + len(own_text)], ids)
    text_mask = torch.zeros(len(ids), dtype=torch.bool)
    text_mask[first:last] = True
    image_mask = ids == image_token_id(vlm.model.config, vlm.adapter)
    if not image_mask.any():
        raise ValueError("the processed prompt has no image tokens")
    inputs = {name: value for name, value in vlm.processor(images=[image], text=[prompt], return_tensors="pt").items()
              if name != "labels"}
    return Encoded(inputs, image_mask, text_mask & ~image_mask, len(options))


def _token_ids(vlm: LoadedVLM, image, text: str) -> torch.Tensor:
    return vlm.processor(images=[image], text=[text], return_tensors="pt")["input_ids"][0]


def _prefix_length(vlm: LoadedVLM, image, prefix: str, full_ids: torch.Tensor) -> int:
    """Token count of a prompt prefix, checked to be a true prefix of the full tokenisation."""
    ids = _token_ids(vlm, image, prefix)
    ids = ids[: len(ids) - vlm.adapter.processor_suffix_tokens]
    if len(ids) > len(full_ids) or not torch.equal(ids, full_ids[: len(ids)]):
        raise ValueError("tokenising a prompt prefix does not give a prefix of the prompt's tokens")
    return len(ids)
