"""One forward's inputs for the three probe rows of several samples of any lengths, the image encoded once each.

Samples are left-padded to the longest, so every row's last position is its own last token (the only position the
lens reads), with an attention mask over the padding; positions are left to the model, which derives them from the
mask where it needs to (Qwen's M-RoPE grids) and otherwise uses rotary embeddings, which see only relative offsets
(the paper's `positions` convention sets the masked rows' own: pidcore.probes.paper_forward).
Each sample's image goes through the vision tower once; its features are handed to the forward for all three rows
(`mm_encoder_outputs`), and the text-only row's copy is overwritten by noise in the decoder hook anyway.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from pidcore.atoms import PASSES
from pidcore.models.loading import LoadedVLM
from pidcore.probes.encoding import Encoded

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
    inputs["mm_encoder_outputs"] = {"image": _repeated_features([image_features(vlm, encoded) for encoded in batch])}
    return ProbeRows(inputs, _padded_masks([encoded.image_mask for encoded in batch], longest),
                     _padded_masks([encoded.text_mask for encoded in batch], longest))


def image_features(vlm: LoadedVLM, encoded: Encoded) -> BaseModelOutputWithPooling:
    """The model's own image features for one sample, from the processor outputs its get_image_features takes."""
    accepted = inspect.signature(vlm.model.get_image_features).parameters
    wanted = {name: _on_device(value, vlm) for name, value in encoded.inputs.items() if name in accepted}
    return vlm.model.get_image_features(**wanted, return_dict=True)


def on_device(inputs: dict, vlm: LoadedVLM) -> dict:
    """Processor outputs on the model's input device, floating point ones in the model's dtype."""
    return {name: _on_device(value, vlm) for name, value in inputs.items()}


def _on_device(value: torch.Tensor, vlm: LoadedVLM) -> torch.Tensor:
    if torch.is_floating_point(value):
        return value.to(vlm.device, vlm.dtype)
    return value.to(vlm.device)


def _is_sequence(batch: list[Encoded], name: str) -> bool:
    """Whether an input runs along the token positions (ids, attention mask, token types) in every sample."""
    return all(item.inputs[name].shape == item.inputs["input_ids"].shape for item in batch)


def _pad_left(value: torch.Tensor, length: int, fill: int) -> torch.Tensor:
    padding = value.new_full((value.shape[0], length - value.shape[1]), fill)
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


def _repeated_features(outputs: list[BaseModelOutputWithPooling]) -> BaseModelOutputWithPooling:
    """One features object for all rows: each sample's pooled features three times over, in row order, and so any
    further per-image features the family returns (Qwen3-VL's `deepstack_features`, a list of them, one per level).

    Families return the features as one tensor over the sample's images or as a tuple of per-image tensors;
    the merged object keeps that form and the family's output class.
    """
    fields = {"pooler_output": _repeated_images([output.pooler_output for output in outputs])}
    for name in outputs[0].keys() - BaseModelOutputWithPooling.__dataclass_fields__.keys():
        levels = zip(*(output[name] for output in outputs))
        fields[name] = [_repeated_images(list(level)) for level in levels]
    return type(outputs[0])(**fields)


def _repeated_images(features: list) -> torch.Tensor | tuple:
    """The samples' image features (a tensor or a tuple of per-image tensors each) three times over, in row order."""
    if isinstance(features[0], torch.Tensor):
        return torch.cat([_blocks(item, len(PASSES)) for item in features])
    return tuple(image for item in features for _ in PASSES for image in item)


def _padded_masks(masks: list[torch.Tensor], length: int) -> torch.Tensor:
    return torch.stack([torch.cat([masks[0].new_zeros(length - len(mask)), mask]) for mask in masks])
