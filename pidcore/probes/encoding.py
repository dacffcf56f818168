"""Processor inputs for one sample, with the positions of its image tokens and of its own text."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pidcore.atoms import option_letters
from pidcore.models.adapters import image_token_id
from pidcore.models.loading import LoadedVLM
from pidcore.probes.conventions import CLEAN_CONVENTIONS, ProbeConventions
from pidcore.probes.prompt import human_turn, render_turn, user_text
from pidcore.probes.qformer_positions import PAPER_QFORMER_POSITIONS


class ImageRefused(ValueError):
    """The processor (or the family's paper image preparation) refuses this sample's image, e.g. Qwen2-VL's
    `smart_resize` on an aspect ratio over 200: a reason to skip that sample, not the run."""


@dataclass
class Encoded:
    """Model inputs (batch of one), boolean masks over its token positions, the user's whole turn as text
    (what the paper's statistics embed on its own), and where the family's image features read the prompt, the
    inputs that give them an empty instruction in the image-only row (`blank_instruction`; None: the prompt's),
    the length of the Q-Former position table they are computed with (`qformer_positions`; None: the model's), and
    the conventions it was encoded under (which the paper's statistics read: scalar_std, context_text)."""

    inputs: dict
    image_mask: torch.Tensor
    text_mask: torch.Tensor
    n_options: int
    turn: str = ""
    blank_instruction: dict | None = None
    qformer_positions: int | None = None
    conventions: ProbeConventions = CLEAN_CONVENTIONS


def encode_sample(vlm: LoadedVLM, image, question: str, options: list[str], hint: str | None = None,
                  prompt: str | None = None, conventions: ProbeConventions = CLEAN_CONVENTIONS) -> Encoded:
    """Render the prompt, run the processor, and locate image tokens and the text the probes mask.

    The masked text is the sample's own question and options, or with the `span` convention the user's whole
    turn: `prompt` (the dataset's own turn text, e.g. the paper's JSON) where given, else ours with the instruction.
    The `images` convention prepares the image as the family's paper script does, and `qformer_positions` has a
    Q-Former's image features computed with the script's stretched position table.
    """
    option_letters(len(options))
    own_text = user_text(question, options, hint)
    turn = prompt if conventions.span and prompt is not None else human_turn(own_text)
    masked = turn if conventions.span else own_text
    text = render_turn(vlm.processor, turn, vlm.adapter.plain_prompt)
    start = text.rfind(masked)  # the user's turn comes after any system prompt that might repeat its words
    if start < 0:
        raise ValueError("the chat template changed the user text; cannot locate it in the prompt")
    try:
        image, processor_kwargs = _paper_image(vlm, image) if conventions.images else (image, {})
        ids = _token_ids(vlm, image, text, processor_kwargs)
    except ValueError as error:
        size = "x".join(map(str, image.size)) if isinstance(getattr(image, "size", None), tuple) else "given"
        raise ImageRefused(f"the processor refuses the image ({size}): {error}") from error
    first = _prefix_length(vlm, image, text[:start], ids, processor_kwargs)
    last = _prefix_length(vlm, image, text[: start + len(masked)], ids, processor_kwargs)
    text_mask = torch.zeros(len(ids), dtype=torch.bool)
    text_mask[first:last] = True
    image_mask = ids == image_token_id(vlm.model.config, vlm.adapter)
    if not image_mask.any():
        raise ValueError("the processed prompt has no image tokens")
    inputs = {name: value for name, value in _process(vlm, image, text, processor_kwargs).items() if name != "labels"}
    if vlm.adapter.image_rows is not None:
        image_mask, text_mask = _state_rows(vlm, inputs, image_mask, text_mask & ~image_mask)
    blank = _blank_instruction(vlm, image, processor_kwargs) if not conventions.instruction else None
    stretch = conventions.qformer_positions and getattr(vlm.model, "qformer", None) is not None
    positions = PAPER_QFORMER_POSITIONS if stretch else None
    return Encoded(inputs, image_mask, text_mask & ~image_mask, len(options), turn, blank, positions, conventions)


def _state_rows(vlm: LoadedVLM, inputs: dict, image_mask: torch.Tensor,
                text_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The masks of a family whose image enters as cross-attention states (the adapter's image_rows), which the
    masking strategy shows after the token rows: the image is those rows, its placeholder token neither."""
    count = vlm.adapter.image_rows(vlm.model.config, inputs)
    rows = torch.ones(count, dtype=torch.bool)
    return torch.cat([torch.zeros_like(image_mask), rows]), torch.cat([text_mask, ~rows])


def _blank_instruction(vlm: LoadedVLM, image, processor_kwargs: dict) -> dict | None:
    """The processor's outputs for an empty prompt that the family's image features read (its adapter's
    `instruction_inputs`), so the image-only row's image tokens do not depend on the question; None for a family
    whose image features do not read the prompt."""
    if not vlm.adapter.instruction_inputs:
        return None
    empty = _process(vlm, image, "", processor_kwargs)
    return {name: empty[name] for name in vlm.adapter.instruction_inputs}


def _paper_image(vlm: LoadedVLM, image) -> tuple[object, dict]:
    """The image and processor arguments as the family's paper script prepares them (unchanged without one)."""
    adapter = vlm.adapter
    prepared = adapter.paper_image(image) if adapter.paper_image is not None else image
    if adapter.paper_pixel_bounds is None:
        return prepared, {}
    low, high = adapter.paper_pixel_bounds
    return prepared, {"size": {"shortest_edge": low, "longest_edge": high}}


def _process(vlm: LoadedVLM, image, text: str, processor_kwargs: dict) -> dict:
    """The processor's outputs for one image and prompt, with the family's own processor arguments."""
    arguments = {**vlm.adapter.processor_kwargs, **processor_kwargs}
    return vlm.processor(images=[image], text=[text], return_tensors="pt", **arguments)


def _token_ids(vlm: LoadedVLM, image, text: str, processor_kwargs: dict) -> torch.Tensor:
    return _process(vlm, image, text, processor_kwargs)["input_ids"][0]


def _prefix_length(vlm: LoadedVLM, image, prefix: str, full_ids: torch.Tensor, processor_kwargs: dict) -> int:
    """Token count of a prompt prefix, checked to be a true prefix of the full tokenisation."""
    ids = _token_ids(vlm, image, prefix, processor_kwargs)
    ids = ids[: len(ids) - vlm.adapter.processor_suffix_tokens]
    if len(ids) > len(full_ids) or not torch.equal(ids, full_ids[: len(ids)]):
        raise ValueError("tokenising a prompt prefix does not give a prefix of the prompt's tokens")
    return len(ids)
