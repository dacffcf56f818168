"""The Gaussian stand-ins for masked embeddings: one seed per sample (ours), or the paper's single stream.

Each sample gets (image noise, text noise): N(mean, std) per dimension, one row per image token and per masked
text token. The paper draws them from one generator seeded once per script run, sample after sample in dataset
order, image noise then text noise, with `randn_like` in the model's dtype on the model's device, scaled in that
dtype (`noise * std + mean`); `NoiseStream` walks that stream once, keeping each sample's generator state until its
noise is drawn, so samples can be probed in any order and batch.
"""

from __future__ import annotations

import torch

from pidcore.probes.encoding import Encoded
from pidcore.probes.statistics import EmbeddingStats

Noise = tuple[torch.Tensor, torch.Tensor]


def seeded_noise(encoded: Encoded, stats: EmbeddingStats, seed: int) -> Noise:
    """Image and text noise from a generator seeded for this sample alone (the `clean` convention)."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.randn(int(encoded.image_mask.sum()), len(stats.image_mean), generator=generator)
    text = torch.randn(int(encoded.text_mask.sum()), len(stats.text_mean), generator=generator)
    return _scaled(stats, image, text)


class NoiseStream:
    """The paper's draws: one generator seeded once, each sample's image then text noise in dataset order."""

    def __init__(self, stats: EmbeddingStats, seed: int, dtype: torch.dtype, device: torch.device) -> None:
        self.stats = stats
        self.dtype = dtype
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.states: dict[str, torch.Tensor] = {}

    def advance(self, sample_id: str, encoded: Encoded) -> None:
        """Keep the generator's state for this sample, then draw past its noise, as the paper's loop does."""
        self.states[sample_id] = self.generator.get_state()
        self._draw(encoded)

    def noise(self, sample_id: str, encoded: Encoded) -> Noise:
        """The noise this sample got in the stream (`advance` must have passed it; its state is then let go)."""
        if sample_id not in self.states:
            raise KeyError(f"sample {sample_id!r} was not walked in the noise stream")
        generator = torch.Generator(device=self.generator.device)
        generator.set_state(self.states.pop(sample_id))
        image, text = self._draw(encoded, generator)
        stats = EmbeddingStats(*(value.to(image.device, self.dtype) for value in vars(self.stats).values()))
        return image[0] * stats.image_std + stats.image_mean, text[0] * stats.text_std + stats.text_mean

    def _draw(self, encoded: Encoded, generator: torch.Generator | None = None) -> Noise:
        generator = generator or self.generator
        options = {"dtype": self.dtype, "device": generator.device, "generator": generator}
        image = torch.randn(1, int(encoded.image_mask.sum()), len(self.stats.image_mean), **options)
        text = torch.randn(1, int(encoded.text_mask.sum()), len(self.stats.text_mean), **options)
        return image, text


def _scaled(stats: EmbeddingStats, image: torch.Tensor, text: torch.Tensor) -> Noise:
    return stats.image_mean + stats.image_std * image, stats.text_mean + stats.text_std * text
