"""A forward pre-hook on the decoder that sees, and may replace, the input embeddings after the image is merged, and
the masking strategies that remove a modality wherever the family lets it enter the decoder."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from pidcore.models.loading import LoadedVLM

Edit = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def decoder_input_hook(vlm: LoadedVLM, edit: Edit, image_masked: torch.Tensor | None = None) -> Iterator[None]:
    """Let `edit(inputs_embeds)` see and replace the decoder's input embeddings for one forward; with `image_masked`
    ([rows, T], the positions whose image rows `edit` replaces by noise), the family's masking strategy (its
    adapter's `masking`) also removes the image from whatever else of the decoder's inputs carries it. A decoder
    given token ids (Llama 3.2 Vision's) gets their embeddings instead, so that `edit` sees them too."""
    strategy = MASKINGS[vlm.adapter.masking]

    def hook(module, args, kwargs):
        if kwargs.get("inputs_embeds") is None:
            kwargs["inputs_embeds"] = module.get_input_embeddings()(kwargs["input_ids"])
            kwargs["input_ids"] = None
        strategy(kwargs, edit, image_masked)
        return args, kwargs

    handle = vlm.model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def merged_rows(kwargs: dict, edit: Edit, image_masked: torch.Tensor | None) -> None:
    """The image enters the decoder only as rows of inputs_embeds: editing them is the whole masking."""
    kwargs["inputs_embeds"] = edit(kwargs["inputs_embeds"])


def merged_rows_deepstack(kwargs: dict, edit: Edit, image_masked: torch.Tensor | None) -> None:
    """Qwen3-VL: the merged rows, and the "deepstack" image features the decoder adds to the image positions
    (`visual_pos_masks`) after its first layers, zeroed where the image is masked: an absent image adds nothing."""
    merged_rows(kwargs, edit, image_masked)
    deepstack, positions = kwargs.get("deepstack_visual_embeds"), kwargs.get("visual_pos_masks")
    if deepstack is None or image_masked is None:
        return
    masked = image_masked.to(positions.device)[positions].unsqueeze(-1)
    kwargs["deepstack_visual_embeds"] = [layer.masked_fill(masked.to(layer.device), 0) for layer in deepstack]


def cross_attention(kwargs: dict, edit: Edit, image_masked: torch.Tensor | None) -> None:
    """Llama 3.2 Vision: the image enters only as the cross-attention states its cross-attention layers read, so
    `edit` sees each row's states after its token rows (where Encoded.image_mask marks them) and replaces them
    with the rest: noise in the text-only row, and the image is gone."""
    embeds, states = kwargs["inputs_embeds"], kwargs["cross_attention_states"]
    rows, length = embeds.shape[:2]
    joined = edit(torch.cat([embeds, states.reshape(rows, -1, states.shape[-1]).to(embeds.dtype)], 1))
    kwargs["inputs_embeds"] = joined[:, :length]
    kwargs["cross_attention_states"] = joined[:, length:].reshape(states.shape).to(states.dtype)


@contextmanager
def layer_states(vlm: LoadedVLM, read: Callable[[torch.Tensor, bool], None]) -> Iterator[None]:
    """Call `read(hidden [rows, T, d], last)` on the residual stream entering the first decoder layer and leaving
    each layer (`last` for the final one), found by module, not by index into an output tuple, so there is one call
    per layer module plus the embeddings."""
    layers = list(getattr(vlm.model.get_decoder(), vlm.adapter.layers_attr))

    def before_first(module, args, kwargs):
        read(kwargs["hidden_states"] if "hidden_states" in kwargs else args[0], False)

    def after(module, args, output):
        read(output[0] if isinstance(output, tuple) else output, module is layers[-1])

    handles = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(after) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


# The adapter's `masking` names one of these.
MASKINGS: dict[str, Callable[[dict, Edit, torch.Tensor | None], None]] = {
    "merged_rows": merged_rows, "merged_rows_deepstack": merged_rows_deepstack, "cross_attention": cross_attention}
