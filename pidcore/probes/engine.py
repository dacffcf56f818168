"""The three probe passes in one forward, features, and a logit lens at every decoder layer.

Row 0 is the full pass p(y|x1,x2); row 1 the image-only probe p(y|x1), whose user-text embeddings
are replaced by noise; row 2 the text-only probe p(y|x2), whose image embeddings are replaced by
noise. The replacement happens in a forward pre-hook on model.get_decoder(), i.e. after the image
has been merged into the input embeddings, so it works the same for every family. Samples of any
lengths share a forward (pidcore.probes.batching pads them and encodes each image once).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch

from pidcore.atoms import PASSES, option_letters
from pidcore.models.loading import LoadedVLM
from pidcore.probes.batching import on_device, probe_rows
from pidcore.probes.encoding import Encoded


@dataclass
class EmbeddingStats:
    """Per-dimension mean and std of image-token and user-text embeddings over a calibration split."""

    image_mean: torch.Tensor
    image_std: torch.Tensor
    text_mean: torch.Tensor
    text_std: torch.Tensor


@dataclass
class ProbeResult:
    """Features, letter distributions [pass, layer, k] (layer 0 = embeddings), and the probability the whole
    vocabulary puts on the option letters [pass, layer], which decides the letter-mass fallback."""

    x1: torch.Tensor
    x2: torch.Tensor
    probs: torch.Tensor
    letter_mass: torch.Tensor


def letter_token_ids(tokenizer, count: int) -> list[int]:
    """One token id per option letter; an error if a letter is not a single token."""
    ids = []
    for letter in option_letters(count):
        encoded = tokenizer.encode(letter, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"option letter {letter!r} is not a single token for this tokenizer: {encoded}")
        ids.append(encoded[0])
    return ids


@contextmanager
def decoder_input_hook(vlm: LoadedVLM, edit):
    """Let `edit(inputs_embeds)` see and replace the decoder's input embeddings for one forward."""
    def hook(module, args, kwargs):
        kwargs["inputs_embeds"] = edit(kwargs["inputs_embeds"])
        return args, kwargs

    handle = vlm.model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


@torch.no_grad()
def merged_embeddings(vlm: LoadedVLM, encoded: Encoded) -> torch.Tensor:
    """The decoder's input embeddings [T, d] for the full prompt, image merged in."""
    captured = []
    with decoder_input_hook(vlm, lambda embeds: captured.append(embeds) or embeds):
        vlm.model(**on_device(encoded.inputs, vlm))
    return captured[0][0].float().cpu()


def embedding_stats(vlm: LoadedVLM, calibration: list[Encoded]) -> EmbeddingStats:
    """Mean and std of image and user-text embeddings over the calibration samples."""
    images, texts = [], []
    for encoded in calibration:
        embeds = merged_embeddings(vlm, encoded)
        images.append(embeds[encoded.image_mask])
        texts.append(embeds[encoded.text_mask])
    image, text = torch.cat(images), torch.cat(texts)
    return EmbeddingStats(image.mean(0), image.std(0), text.mean(0), text.std(0))


def run_probes(vlm: LoadedVLM, encoded: Encoded, stats: EmbeddingStats, seed: int) -> ProbeResult:
    """Run the full pass and both masked probes together; read every layer through the logit lens."""
    return run_probes_batch(vlm, [encoded], stats, [seed])[0]


@torch.no_grad()
def run_probes_batch(vlm: LoadedVLM, batch: list[Encoded], stats: EmbeddingStats,
                     seeds: list[int]) -> list[ProbeResult]:
    """run_probes for samples of any lengths in one forward of 3 x len(batch) rows (left-padded, images encoded once).

    Each sample's noise comes from its own seed, so batching does not change any result.
    """
    rows = probe_rows(vlm, batch)
    noises = [_noise(encoded, stats, seed) for encoded, seed in zip(batch, seeds)]
    captured = []

    def mask(embeds):
        captured.append(embeds[:: len(PASSES)].float().cpu())
        embeds = embeds.clone()
        for index, (image_noise, text_noise) in enumerate(noises):
            row = len(PASSES) * index
            embeds[row + 1, rows.text_masks[index].to(embeds.device)] = text_noise.to(embeds.device, embeds.dtype)
            embeds[row + 2, rows.image_masks[index].to(embeds.device)] = image_noise.to(embeds.device, embeds.dtype)
        return embeds

    with decoder_input_hook(vlm, mask), _last_position_states(vlm) as states:
        vlm.model(**rows.inputs, use_cache=False, logits_to_keep=1)
    letter_ids = [letter_token_ids(vlm.processor.tokenizer, encoded.n_options) for encoded in batch]
    lenses = logit_lens(vlm, torch.stack(states, 1), letter_ids)
    embeds = captured[0]
    return [ProbeResult(embeds[i][rows.image_masks[i]].mean(0), embeds[i][rows.text_masks[i]].mean(0), *lenses[i])
            for i in range(len(batch))]


def length_groups(encoded: list[Encoded], size: int) -> list[list[int]]:
    """Indices of the samples in groups of `size`, neighbours in length together, so that little of each forward
    is padding."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].inputs["input_ids"].shape[1])
    return [order[start:start + size] for start in range(0, len(order), size)]


def run_probes_by_length(vlm: LoadedVLM, encoded: list[Encoded], stats: EmbeddingStats, seeds: list[int],
                         size: int) -> list[ProbeResult]:
    """run_probes_batch on each of the length groups; results come back in input order."""
    results: list[ProbeResult | None] = [None] * len(encoded)
    for members in length_groups(encoded, size):
        outputs = run_probes_batch(vlm, [encoded[i] for i in members], stats, [seeds[i] for i in members])
        for index, output in zip(members, outputs):
            results[index] = output
    return results


@contextmanager
def _last_position_states(vlm: LoadedVLM):
    """Collect the last position's residual stream [rows, d] entering the first decoder layer and leaving each layer.

    Layers are read by module, not by index into an output tuple, so the list has one entry per layer module
    plus the embeddings, and only the last position is kept (the lens needs nothing else), copied onto the device of
    the output embedding (a model spread over GPUs has its layers on several); a copy, because a view of the last
    position would keep every layer's whole hidden states alive until the forward ends.
    """
    layers = list(getattr(vlm.model.get_decoder(), vlm.adapter.layers_attr))
    head = vlm.model.get_output_embeddings().weight.device
    states: list[torch.Tensor] = []

    def before_first(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        states.append(hidden[:, -1].detach().to(head, copy=True))

    def after(module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        states.append(hidden[:, -1].detach().to(head, copy=True))

    handles = [layers[0].register_forward_pre_hook(before_first, with_kwargs=True)]
    handles += [layer.register_forward_hook(after) for layer in layers]
    try:
        yield states
    finally:
        for handle in handles:
            handle.remove()


def _head_logits(vlm: LoadedVLM, states: torch.Tensor) -> torch.Tensor:
    """The model's own read-out of residual states: final norm, output embedding, and any final logit soft-cap."""
    norm = getattr(vlm.model.get_decoder(), vlm.adapter.final_norm_attr)
    logits = vlm.model.get_output_embeddings()(norm(states)).float()
    cap = getattr(vlm.model.config.get_text_config(), "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


def _noise(encoded: Encoded, stats: EmbeddingStats, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian stand-ins for the sample's image embeddings and its user-text embeddings."""
    generator = torch.Generator().manual_seed(seed)
    image_noise = stats.image_mean + stats.image_std * torch.randn(
        int(encoded.image_mask.sum()), len(stats.image_mean), generator=generator)
    text_noise = stats.text_mean + stats.text_std * torch.randn(
        int(encoded.text_mask.sum()), len(stats.text_mean), generator=generator)
    return image_noise, text_noise


def logit_lens(vlm: LoadedVLM, states: torch.Tensor,
               letter_ids: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per sample: letter distributions [pass, layer, k] and the vocabulary's mass on the letters [pass, layer].

    `states` is [rows, layers + 1, d], rows grouped by sample, three passes each. Every layer, the last one
    included, goes through the same read-out, so the lens at the last layer is the model's own output.
    """
    logits = _head_logits(vlm, states)
    results = []
    for sample, ids in enumerate(letter_ids):
        rows = logits[len(PASSES) * sample: len(PASSES) * (sample + 1)]
        letters_only = torch.softmax(rows[..., ids], -1).cpu()
        mass = torch.exp(torch.logsumexp(rows[..., ids], -1) - torch.logsumexp(rows, -1)).cpu()
        results.append((letters_only, mass))
    return results
