"""One forward's inputs for the three probe rows of several samples of any lengths, the image encoded once each.

Samples are left-padded to the longest, so every row's last position is its own last token (the only position the
lens reads), with an attention mask over the padding; positions are left to the model, which derives them from the
mask where it needs to (Qwen's M-RoPE grids) and otherwise uses rotary embeddings, which see only relative offsets
(the paper's `positions` convention sets the masked rows' own: pidcore.probes.paper_forward).
Each sample's image goes through the vision tower once; its features are handed to the forward for all three rows
(`mm_encoder_outputs`), and the text-only row's copy is overwritten by noise in the decoder hook anyway. Where the
family's image features read the prompt (InstructBLIP's Q-Former) and the encoding gives the image-only row an empty
instruction, that row's features are encoded a second time, from it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from functools import partial

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pidcore.atoms import PASSES
from pidcore.models.adapters import MM_ENCODER_OUTPUTS
from pidcore.models.loading import LoadedVLM
from pidcore.probes.encoding import Encoded
from pidcore.probes.qformer_positions import qformer_positions

# The processor output that only the vision tower reads; every other output goes to the forward, once per row.
PIXELS = "pixel_values"


@dataclass
class ProbeRows:
    """Forward keyword arguments for 3 x len(batch) rows, and each sample's image and user-text positions [n, T]
    in the padded sequence."""

    inputs: dict
    image_masks: torch.Tensor
    text_masks: torch.Tensor


def probe_rows(vlm: LoadedVLM, batch: list[Encoded]) -> ProbeRows:
    """Pad and stack the samples' inputs, three identical rows each, and encode each sample's image once."""
    lengths = [encoded.inputs["input_ids"].shape[1] for encoded in batch]
    longest = max(lengths)
    pad_id = vlm.processor.tokenizer.pad_token_id or 0
    inputs = {}
    for name in batch[0].inputs:
        if name == PIXELS:
            continue
        values = [_on_device(encoded.inputs[name], vlm) for encoded in batch]
        if _is_sequence(batch, name):
            fill = pad_id if name == "input_ids" else 0
            values = [_pad_left(value, longest, fill) for value in values]
        else:
            values = _pad_trailing(values)
        inputs[name] = torch.cat([_blocks(value, len(PASSES)) for value in values])
    rows = [features for encoded in batch for features in _row_features(vlm, encoded)]
    inputs.update(_image_input(vlm, _stacked_features(rows, vlm.adapter.features_attr)))
    inputs[PIXELS] = None  # the features stand in for the pixels (InstructBLIP's forward requires the argument)
    return ProbeRows(inputs, _padded_masks([encoded.image_mask for encoded in batch], lengths, longest),
                     _padded_masks([encoded.text_mask for encoded in batch], lengths, longest))


def image_features(vlm: LoadedVLM, encoded: Encoded, replaced: dict | None = None) -> BaseModelOutputWithPooling:
    """The model's own image features for one sample, from the processor outputs its get_image_features takes
    (those in `replaced` instead of the sample's own), or its adapter's encode_image where the model has none; a
    Q-Former's with the position table the encoding names (Encoded.qformer_positions)."""
    own = vlm.adapter.encode_image
    encode = vlm.model.get_image_features if own is None else partial(own, vlm.model)
    accepted = inspect.signature(encode).parameters
    given = {**encoded.inputs, **(replaced or {})}
    wanted = {name: _on_device(value, vlm) for name, value in given.items() if name in accepted}
    with qformer_positions(vlm.model, encoded.qformer_positions):
        return encode(**wanted, return_dict=True)


def _image_input(vlm: LoadedVLM, features: BaseModelOutputWithPooling) -> dict:
    """The rows' encoded images as the forward keyword the adapter names takes them: transformers'
    mm_encoder_outputs, or the features alone (Llama 3.2 Vision's cross_attention_states)."""
    name = vlm.adapter.image_input
    return {name: {"image": features} if name == MM_ENCODER_OUTPUTS else features[vlm.adapter.features_attr]}


def _row_features(vlm: LoadedVLM, encoded: Encoded) -> list[BaseModelOutputWithPooling]:
    """The image features of the sample's three rows: one encoding for all, except an image-only row given an
    empty instruction (`blank_instruction`), whose features are encoded from that."""
    own = image_features(vlm, encoded)
    if encoded.blank_instruction is None:
        return [own] * len(PASSES)
    return [own, image_features(vlm, encoded, encoded.blank_instruction), own]


def on_device(inputs: dict, vlm: LoadedVLM) -> dict:
    """Processor outputs on the model's input device, floating point ones in the model's dtype."""
    return {name: _on_device(value, vlm) for name, value in inputs.items()}


def _on_device(value: torch.Tensor, vlm: LoadedVLM) -> torch.Tensor:
    if torch.is_floating_point(value):
        return value.to(vlm.device, vlm.dtype)
    return value.to(vlm.device)


def _is_sequence(batch: list[Encoded], name: str) -> bool:
    """Whether an input runs along the token positions (ids, attention mask, token types, Llama 3.2 Vision's
    cross_attention_mask [1, T, images, tiles]) in every sample."""
    return all(item.inputs[name].shape[:2] == item.inputs["input_ids"].shape for item in batch)


def _pad_left(value: torch.Tensor, length: int, fill: int) -> torch.Tensor:
    padding = value.new_full((value.shape[0], length - value.shape[1], *value.shape[2:]), fill)
    return torch.cat([padding, value], 1)


def _pad_trailing(values: list[torch.Tensor]) -> list[torch.Tensor]:
    """Zero-pad every dimension but the first to the largest in the batch (e.g. Idefics3's count of image tiles,
    where an all-zero tile is the model's own marker of padding)."""
    target = [max(sizes) for sizes in zip(*(value.shape[1:] for value in values))]
    padded = []
    for value in values:
        if list(value.shape[1:]) == target:
            padded.append(value)
            continue
        grown = value.new_zeros((value.shape[0], *target))
        grown[tuple(slice(0, size) for size in value.shape)] = value
        padded.append(grown)
    return padded


def _blocks(value: torch.Tensor, times: int) -> torch.Tensor:
    """The sample's whole block (one row, or one entry per image) repeated, so each probe row gets its own copy."""
    return torch.cat([value] * times)


def _stacked_features(rows: list[BaseModelOutputWithPooling], attr: str) -> BaseModelOutputWithPooling:
    """One features object for all rows, from each row's features in row order: the features in the field `attr`
    (the adapter's features_attr: the pooled features, Fuyu's last_hidden_state), and any further per-image
    features the family returns as a list (Qwen3-VL's `deepstack_features`, one per level); the nested outputs
    some families also return (InstructBLIP's vision and Q-Former outputs) only pass through the forward to its
    output, and are left out.

    Families return the features as one tensor over the sample's images or as a tuple of per-image tensors;
    the merged object keeps that form and the family's output class.
    """
    fields = {attr: _stacked_images([row[attr] for row in rows])}
    for name in rows[0].keys() - BaseModelOutputWithPooling.__dataclass_fields__.keys():
        if isinstance(rows[0][name], (list, tuple)):
            fields[name] = [_stacked_images(list(level)) for level in zip(*(row[name] for row in rows))]
    return type(rows[0])(**fields)


def _stacked_images(features: list) -> torch.Tensor | tuple:
    """The rows' image features (a tensor or a tuple of per-image tensors each) as one, in row order."""
    if isinstance(features[0], torch.Tensor):
        return torch.cat(features)
    return tuple(image for item in features for image in item)


def _padded_masks(masks: list[torch.Tensor], lengths: list[int], longest: int) -> torch.Tensor:
    """The samples' masks left-padded as their tokens are (a mask may go on past them: cross-attention rows)."""
    return torch.stack([torch.cat([mask.new_zeros(longest - length), mask]) for mask, length in zip(masks, lengths)])
