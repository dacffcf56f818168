"""The per-dimension mean and std of image-token and user-text embeddings that the masked probes draw noise from.

Ours (`embedding_stats`): the merged input embeddings of a few calibration samples, sample std. The paper's
(`PaperStatistics`, the `statistics` convention; its `devis/qwen2_small_devi.py`): over the whole training split,
the image features as the vision tower hands them to the language model and the user's turn tokenised on its own
and embedded, population std; accumulated in float64, so a large split need not fit in memory. The paper's Llama
stage 1 (`devis/llama_11b_devi.py`) varies it in two ways, each a convention the sample's encoding carries:
`context_text` takes the text rows from the masked span of the full prompt, and `scalar_std` gives each modality one
std over all its values, the same in every dimension.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pidcore.models.loading import LoadedVLM
from pidcore.probes.batching import image_features, on_device
from pidcore.probes.encoding import Encoded
from pidcore.probes.hooks import decoder_input_hook
from pidcore.probes.mllama_vision import reference_intermediates
from pidcore.probes.qformer_positions import qformer_positions


@dataclass
class EmbeddingStats:
    """Per-dimension mean and std of image-token and user-text embeddings over a calibration split."""

    image_mean: torch.Tensor
    image_std: torch.Tensor
    text_mean: torch.Tensor
    text_std: torch.Tensor


@torch.no_grad()
def merged_embeddings(vlm: LoadedVLM, encoded: Encoded) -> torch.Tensor:
    """The decoder's input embeddings [T, d] for the full prompt, image merged in."""
    captured = []
    with (decoder_input_hook(vlm, lambda embeds: captured.append(embeds) or embeds),
          qformer_positions(vlm.model, encoded.qformer_positions), reference_intermediates(vlm.model)):
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


class _Moments:
    """Running count, sum and sum of squares of rows, in float64."""

    def __init__(self) -> None:
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.double()
        self.count += rows.shape[0]
        self.total = self.total + rows.sum(0)
        self.squares = self.squares + (rows * rows).sum(0)

    def mean_std(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and population std (the paper's `std(unbiased=False)`)."""
        if self.count == 0:
            raise ValueError("no embedding rows to compute statistics from")
        mean = self.total / self.count
        variance = (self.squares / self.count - mean * mean).clamp(min=0)
        return mean.float(), variance.sqrt().float()

    def scalar_std(self) -> torch.Tensor:
        """One population std over every value of every row (all dimensions together), repeated per dimension."""
        if self.count == 0:
            raise ValueError("no embedding rows to compute statistics from")
        values = self.count * len(self.total)
        mean = self.total.sum() / values
        variance = (self.squares.sum() / values - mean * mean).clamp(min=0)
        return variance.sqrt().float().expand(len(self.total)).clone()


class PaperStatistics:
    """The paper's stage 1, fed one training sample at a time: image features and the turn embedded alone (or, under
    `context_text`, in its prompt)."""

    def __init__(self) -> None:
        self.image, self.text = _Moments(), _Moments()
        self.scalar_std = False

    @torch.no_grad()
    def add(self, vlm: LoadedVLM, encoded: Encoded) -> None:
        """Add one sample's image feature rows and its turn's token embeddings (under `context_text`, those of the
        masked span as the full prompt tokenises it)."""
        features = image_features(vlm, encoded)[vlm.adapter.features_attr]
        rows = features if isinstance(features, torch.Tensor) else torch.cat(list(features))
        self.image.add(rows.reshape(-1, rows.shape[-1]).float().cpu())
        self.text.add(_text_rows(vlm, encoded).float().cpu())
        self.scalar_std = encoded.conventions.scalar_std

    def result(self) -> EmbeddingStats:
        """The statistics of every sample added (under `scalar_std`, one std per modality)."""
        (image_mean, image_std), (text_mean, text_std) = self.image.mean_std(), self.text.mean_std()
        if self.scalar_std:
            image_std, text_std = self.image.scalar_std(), self.text.scalar_std()
        return EmbeddingStats(image_mean, image_std, text_mean, text_std)


def _text_rows(vlm: LoadedVLM, encoded: Encoded) -> torch.Tensor:
    """The text rows of the paper's statistics: the turn tokenised and embedded on its own, or (`context_text`) the
    masked span's embeddings in the full prompt."""
    embed = vlm.model.get_input_embeddings()
    if not encoded.conventions.context_text:
        ids = vlm.processor.tokenizer([encoded.turn], return_tensors="pt")["input_ids"].to(vlm.device)
        return embed(ids)[0]
    ids = encoded.inputs["input_ids"].to(vlm.device)
    return embed(ids)[0][encoded.text_mask[: ids.shape[1]].to(vlm.device)]
