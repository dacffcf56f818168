"""What the paper's `generate` calls do to a forward that ours must copy under three conventions.

- `positions`: its masked passes pass `inputs_embeds` alone, so under its transformers (4.51.3) Qwen-VL's M-RoPE
  falls back to plain positions 0..T-1 on all three axes, image tokens included; its full pass keeps M-RoPE.
- `scores`: it reads `generate(...).scores`, the last logits after the checkpoint's generation-config logits
  processors with greedy decoding (a repetition penalty over the prompt's ids, for one); the masked passes have no
  ids, so only what needs none touches them.
- `dropped_states`: its Llama 3.2 Vision masked passes give `generate` the image as `cross_attention_states`, which
  4.51.3 does not pass on to the forward, so every cross-attention layer is skipped in those rows: it leaves their
  hidden states as they came in.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import LogitsProcessorList

from pidcore.atoms import PASSES
from pidcore.models.loading import LoadedVLM


def paper_positions(vlm: LoadedVLM, inputs: dict) -> torch.Tensor:
    """Position ids [3, rows, T]: the model's own M-RoPE for the full rows, plain 0..T-1 over each masked row's
    tokens (left padding skipped)."""
    owner = next((module for module in vlm.model.modules() if hasattr(module, "get_rope_index")), None)
    if owner is None:
        raise ValueError(f"{vlm.adapter.family} has no get_rope_index; the positions convention does not apply")
    accepted = inspect.signature(owner.get_rope_index).parameters
    positions, _ = owner.get_rope_index(**{name: value for name, value in inputs.items() if name in accepted})
    mask = inputs["attention_mask"]
    plain = (mask.long().cumsum(-1) - 1).clamp(min=0)
    masked = torch.arange(mask.shape[0], device=mask.device) % len(PASSES) != 0
    positions[:, masked] = plain[masked].to(positions.dtype).unsqueeze(0).expand(3, -1, -1)
    return positions


def generation_processors(vlm: LoadedVLM, prompt_length: int, device: torch.device) -> LogitsProcessorList:
    """The logits processors greedy `generate` applies to the first new token after a prompt of this length, with
    their tensors on `device` (the output head's, which a model spread over GPUs has elsewhere than its input)."""
    config = copy.deepcopy(vlm.model.generation_config)
    config.do_sample, config.num_beams, config.max_new_tokens = False, 1, 1
    config.max_length = prompt_length + 1
    vlm.model._prepare_special_tokens(config, True, device=device, batch_size=1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*without `input_ids`.*")  # a masked pass has no ids, as there
        return vlm.model._get_logits_processor(generation_config=config, input_ids_seq_length=prompt_length,
                                               encoder_input_ids=None, device=device, model_kwargs={})


@torch.no_grad()
def processed_scores(vlm: LoadedVLM, logits: torch.Tensor, prompt_ids: torch.Tensor) -> torch.Tensor:
    """Logits [layers, V] of one row after the generation processors, given the row's own ids (empty for a masked
    row, which the paper feeds by its embeddings alone)."""
    processors = generation_processors(vlm, len(prompt_ids), logits.device)
    if not processors:
        return logits
    ids = prompt_ids.to(logits.device).unsqueeze(0).expand(logits.shape[0], -1)
    return processors(ids, logits)


@contextmanager
def skipped_cross_attention(vlm: LoadedVLM, rows: torch.Tensor | None) -> Iterator[None]:
    """Within the block, the decoder's cross-attention layers hand on the hidden states of `rows` (a boolean mask over
    the forward's rows) unchanged, as a forward without cross_attention_states skips them; nothing changes for None."""
    if rows is None:
        yield
        return
    layers = getattr(vlm.model.get_decoder(), vlm.adapter.layers_attr)
    indices = vlm.model.config.get_text_config().cross_attention_layers

    def skip(module, args, kwargs, output):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        out = output[0] if isinstance(output, tuple) else output
        kept = torch.where(rows.to(out.device).view(-1, 1, 1), hidden.to(out.dtype), out)
        return (kept, *output[1:]) if isinstance(output, tuple) else kept

    handles = [layers[index].register_forward_hook(skip, with_kwargs=True) for index in indices]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
