"""Hidden-state features for the Gaussian PID: per layer, the full pass's mean over the image tokens and over the
question tokens, reduced on the fly.

A 7B model's 33 layers would store 2 x 33 x 4,096 floats per sample; instead each mean goes through one fixed,
seeded random projection to FEATURES dimensions (Johnson-Lindenstrauss: distances and, for a Gaussian, the
informations that PCA later keeps are preserved up to small distortion), the same matrix for every sample and run
of a hidden size, so the features of any two runs are comparable. A model narrower than FEATURES keeps its means
as they are. The estimator then fits PCA on the fitting split (pidcore.estimators.reduction).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import torch

from pidcore.atoms import PASSES
from pidcore.models.loading import LoadedVLM
from pidcore.probes.hooks import layer_states

FEATURES = 64
PROJECTION_SEED = 20_260_215  # fixed forever: stored features of every run share the projection
SOURCES = ("image", "question")  # source 0 is X1 (the image tokens' mean), source 1 is X2 (the question's)


class HiddenStatesRefused(ValueError):
    """The family lets the image into the decoder other than as rows of its sequence, so it has no image tokens."""


def check_hidden_states(vlm: LoadedVLM) -> None:
    """Refuse, before probing, a family whose image is not a run of tokens in the decoder's sequence."""
    if vlm.adapter.masking == "cross_attention":
        raise HiddenStatesRefused(f"--hidden-states needs the image as tokens of the decoder's sequence; "
                                  f"{vlm.adapter.family} lets it in through cross-attention layers instead")


@lru_cache(maxsize=8)
def projection(hidden_size: int) -> torch.Tensor | None:
    """The fixed random projection [hidden_size, FEATURES] (entries N(0, 1/FEATURES)); None where the hidden size
    is FEATURES or less (the means are kept whole)."""
    if hidden_size <= FEATURES:
        return None
    generator = torch.Generator().manual_seed(PROJECTION_SEED)
    return torch.randn(hidden_size, FEATURES, generator=generator, dtype=torch.float32) / FEATURES ** 0.5


def reduced(means: torch.Tensor) -> torch.Tensor:
    """Means [..., hidden] as stored features [..., min(hidden, FEATURES)], in float32 on the CPU."""
    matrix = projection(means.shape[-1])
    means = means.float()
    return (means if matrix is None else means @ matrix.to(means.device)).cpu()


@contextmanager
def modality_means(vlm: LoadedVLM, image_masks: torch.Tensor, text_masks: torch.Tensor) -> Iterator[list]:
    """Collect, for each sample's full-pass row, the mean hidden state over its image positions and over its
    question positions ([samples, T] masks) entering the first decoder layer and leaving each layer, reduced: a list
    with one [samples, 2, features] tensor per layer (the embeddings first). The states are transformers' own
    `output_hidden_states`: the last layer's after the decoder's final norm, as the head reads them."""
    final_norm = getattr(vlm.model.get_decoder(), vlm.adapter.final_norm_attr)
    captured: list[torch.Tensor] = []

    def read(hidden: torch.Tensor, last: bool) -> None:
        full = hidden[:: len(PASSES)]
        full = (final_norm(full) if last else full).float()
        masks = torch.stack([image_masks, text_masks], 1).to(full.device, full.dtype)
        sums = masks @ full
        captured.append(reduced(sums / masks.sum(-1, keepdim=True).clamp(min=1)))

    with layer_states(vlm, read):
        yield captured
