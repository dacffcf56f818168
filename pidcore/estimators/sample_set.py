"""One split's features and probe distributions, and how a split is cut into batches."""

from __future__ import annotations

from dataclasses import dataclass

import torch

TENSOR_NAMES = ("x1", "x2", "p1", "p2", "p12")


@dataclass
class SampleSet:
    """One split's features and probe distributions (p1, p2 already calibrated if the mode asks)."""

    x1: torch.Tensor
    x2: torch.Tensor
    p1: torch.Tensor
    p2: torch.Tensor
    p12: torch.Tensor

    def subset(self, index: torch.Tensor) -> "SampleSet":
        return SampleSet(*(getattr(self, name)[index] for name in TENSOR_NAMES))

    def to(self, device: torch.device, dtype: torch.dtype) -> "SampleSet":
        return SampleSet(*(getattr(self, name).to(device, dtype) for name in TENSOR_NAMES))

    def __len__(self) -> int:
        return len(self.x1)


def even_chunks(index: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """Split indices into near-equal batches of about batch_size; nothing is dropped."""
    n_chunks = max(1, round(len(index) / batch_size))
    return list(torch.tensor_split(index, n_chunks))
