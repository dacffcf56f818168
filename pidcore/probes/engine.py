"""The three probe passes in one forward, features, and a logit lens at every decoder layer.

Row 0 is the full pass p(y|x1,x2); row 1 the image-only probe p(y|x1), whose user-text embeddings
are replaced by noise; row 2 the text-only probe p(y|x2), whose image embeddings are replaced by
noise. The replacement happens in a forward pre-hook on model.get_decoder(), i.e. after the image
has been merged into the input embeddings, so it works the same for every family; where a family lets the image into
the decoder elsewhere too (Qwen3-VL's deepstack features), its adapter's masking strategy (pidcore.probes.hooks)
removes it there as well, and the lens applies any logit scale its adapter names. Samples of any
lengths share a forward (pidcore.probes.batching pads them and encodes each image once). The paper's
`positions`, `scores` and `dropped_states` conventions act here (pidcore.probes.paper_forward).
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch

from pidcore.atoms import PASSES, option_letters
from pidcore.models.loading import LoadedVLM
from pidcore.probes.batching import probe_rows
from pidcore.probes.conventions import CLEAN_CONVENTIONS, ProbeConventions
from pidcore.probes.encoding import Encoded
from pidcore.probes.hidden import modality_means
from pidcore.probes.hooks import decoder_input_hook, layer_states
from pidcore.probes.noise import Noise, seeded_noise
from pidcore.probes.paper_forward import paper_positions, processed_scores, skipped_cross_attention
from pidcore.probes.statistics import EmbeddingStats


@dataclass
class ProbeResult:
    """Features, letter distributions [pass, layer, k] (layer 0 = embeddings), the probability the whole
    vocabulary puts on the option letters [pass, layer], which decides the letter-mass fallback, and where asked the
    full pass's hidden-state features [source, layer, feature] (pidcore.probes.hidden)."""

    x1: torch.Tensor
    x2: torch.Tensor
    probs: torch.Tensor
    letter_mass: torch.Tensor
    hidden: torch.Tensor | None = None


def letter_token_ids(tokenizer, count: int) -> list[int]:
    """One token id per option letter; an error if a letter is not a single token."""
    ids = []
    for letter in option_letters(count):
        encoded = tokenizer.encode(letter, add_special_tokens=False)
        if len(encoded) != 1:
            raise ValueError(f"option letter {letter!r} is not a single token for this tokenizer: {encoded}")
        ids.append(encoded[0])
    return ids


def run_probes(vlm: LoadedVLM, encoded: Encoded, stats: EmbeddingStats, seed: int) -> ProbeResult:
    """Run the full pass and both masked probes together, with noise seeded for this sample; read every layer
    through the logit lens."""
    return run_probes_batch(vlm, [encoded], [seeded_noise(encoded, stats, seed)])[0]


@torch.no_grad()
def run_probes_batch(vlm: LoadedVLM, batch: list[Encoded], noises: list[Noise],
                     conventions: ProbeConventions = CLEAN_CONVENTIONS,
                     hidden_states: bool = False) -> list[ProbeResult]:
    """The probes of samples of any lengths in one forward of 3 x len(batch) rows (left-padded, images encoded
    once), each sample's masked rows filled with its own (image, text) noise, so batching changes no result; with
    `hidden_states`, the full rows' hidden-state features from the same forward."""
    rows = probe_rows(vlm, batch)
    if conventions.positions and vlm.adapter.rope_positions:
        rows.inputs["position_ids"] = paper_positions(vlm, rows.inputs)
    captured = []

    def mask(embeds):
        # x1 is the image as the image-only row sees it (where image features read the prompt, from an empty one
        # under clean: Encoded.blank_instruction), x2 the text as the full row sees it; else the rows are the same.
        captured.append((embeds[1:: len(PASSES)].float().cpu(), embeds[:: len(PASSES)].float().cpu()))
        embeds = embeds.clone()
        for index, (image_noise, text_noise) in enumerate(noises):
            row = len(PASSES) * index
            embeds[row + 1, rows.text_masks[index].to(embeds.device)] = text_noise.to(embeds.device, embeds.dtype)
            embeds[row + 2, rows.image_masks[index].to(embeds.device)] = image_noise.to(embeds.device, embeds.dtype)
        return embeds

    # The text-only rows' image positions [rows, T]: where the family's masking strategy removes the image.
    image_masked = torch.zeros_like(rows.image_masks).repeat_interleave(len(PASSES), 0)
    image_masked[len(PASSES) - 1:: len(PASSES)] = rows.image_masks
    dropped = _dropped_rows(vlm, batch, conventions)
    means = modality_means(vlm, rows.image_masks, rows.text_masks) if hidden_states else nullcontext([])
    with (decoder_input_hook(vlm, mask, image_masked), skipped_cross_attention(vlm, dropped),
          _last_position_states(vlm) as states, means as hidden):
        vlm.model(**rows.inputs, use_cache=False, logits_to_keep=1)
    letter_ids = [letter_token_ids(vlm.processor.tokenizer, encoded.n_options) for encoded in batch]
    prompts = [encoded.inputs["input_ids"][0] for encoded in batch] if conventions.scores else None
    lenses = logit_lens(vlm, torch.stack(states, 1), letter_ids, prompts)
    images, texts = captured[0]
    features = torch.stack(hidden, 2) if hidden else None  # [samples, source, layer, feature]
    return [ProbeResult(images[i][rows.image_masks[i]].mean(0), texts[i][rows.text_masks[i]].mean(0), *lenses[i],
                        hidden=None if features is None else features[i]) for i in range(len(batch))]


def _dropped_rows(vlm: LoadedVLM, batch: list[Encoded], conventions: ProbeConventions) -> torch.Tensor | None:
    """The masked rows, whose cross-attention layers the `dropped_states` convention skips (None where it does not
    apply: off, or a family whose image enters otherwise)."""
    if not conventions.dropped_states or vlm.adapter.masking != "cross_attention":
        return None
    return torch.arange(len(PASSES) * len(batch)) % len(PASSES) != 0


def length_groups(encoded: list[Encoded], size: int) -> list[list[int]]:
    """Indices of the samples in groups of `size`, neighbours in length together, so that little of each forward
    is padding."""
    order = sorted(range(len(encoded)), key=lambda i: encoded[i].inputs["input_ids"].shape[1])
    return [order[start:start + size] for start in range(0, len(order), size)]


def run_probes_by_length(vlm: LoadedVLM, encoded: list[Encoded], noises: list[Noise], size: int,
                         conventions: ProbeConventions = CLEAN_CONVENTIONS) -> list[ProbeResult]:
    """run_probes_batch on each of the length groups; results come back in input order."""
    results: list[ProbeResult | None] = [None] * len(encoded)
    for members in length_groups(encoded, size):
        outputs = run_probes_batch(vlm, [encoded[i] for i in members], [noises[i] for i in members], conventions)
        for index, output in zip(members, outputs):
            results[index] = output
    return results


@contextmanager
def _last_position_states(vlm: LoadedVLM):
    """Collect the last position's residual stream [rows, d] entering the first decoder layer and leaving each layer
    (pidcore.probes.hooks.layer_states), copied onto the device of the output embedding (a model spread over GPUs
    has its layers on several); a copy, because a view of the last position would keep every layer's whole hidden
    states alive until the forward ends."""
    head = vlm.model.get_output_embeddings().weight.device
    states: list[torch.Tensor] = []
    with layer_states(vlm, lambda hidden, last: states.append(hidden[:, -1].detach().to(head, copy=True))):
        yield states


def _head_logits(vlm: LoadedVLM, states: torch.Tensor) -> torch.Tensor:
    """The model's own read-out of residual states: final norm, output embedding, the family's logit scale (the
    text config field its adapter names), and any final logit soft-cap."""
    norm = getattr(vlm.model.get_decoder(), vlm.adapter.final_norm_attr)
    logits = vlm.model.get_output_embeddings()(norm(states)).float()
    text_config = vlm.model.config.get_text_config()
    if vlm.adapter.logit_scale_attr is not None:
        logits = logits * getattr(text_config, vlm.adapter.logit_scale_attr)
    cap = getattr(text_config, "final_logit_softcapping", None)
    return cap * torch.tanh(logits / cap) if cap else logits


def logit_lens(vlm: LoadedVLM, states: torch.Tensor, letter_ids: list[list[int]],
               prompts: list[torch.Tensor] | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per sample: letter distributions [pass, layer, k] and the vocabulary's mass on the letters [pass, layer].

    `states` is [rows, layers + 1, d], rows grouped by sample, three passes each. Every layer, the last one
    included, goes through the same read-out, so the lens at the last layer is the model's own output. With the
    samples' prompt ids (`prompts`, the `scores` convention), every layer's logits go through the generation
    processors as `generate` would apply them: the full row with its ids, the masked rows with none.
    """
    logits = _head_logits(vlm, states)
    results = []
    for sample, ids in enumerate(letter_ids):
        rows = logits[len(PASSES) * sample: len(PASSES) * (sample + 1)]
        if prompts is not None:
            rows = torch.stack([processed_scores(vlm, row, prompts[sample] if index == 0 else prompts[sample][:0])
                                for index, row in enumerate(rows)])
        letters_only = torch.softmax(rows[..., ids], -1).cpu()
        mass = torch.exp(torch.logsumexp(rows[..., ids], -1) - torch.logsumexp(rows, -1)).cpu()
        results.append((letters_only, mass))
    return results
