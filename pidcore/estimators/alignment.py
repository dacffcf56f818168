"""The two small networks of BATCH: per-label embeddings of x1 and x2 whose dot products give pair logits."""

from __future__ import annotations

import math

import torch
from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """A ReLU MLP with `layers` hidden layers of width `hidden_dim`."""
    blocks: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
    for _ in range(layers - 1):
        blocks += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    blocks.append(nn.Linear(hidden_dim, out_dim))
    return nn.Sequential(*blocks)


class AlignmentNet(nn.Module):
    """Maps a batch of (x1, x2) to pair logits [n1, n2, k].

    embedding="standardised" is the published choice: each label's embedding is standardised over its
    dimensions, which bounds the logits to +-sqrt(embed_dim), too narrow for the near-zero couplings that optima
    such as AND's need. embedding="capped" soft-caps the raw logits at +-logit_cap instead. With
    standardise_features, the inputs are standardised with the fitting split's statistics, so features of any
    scale train alike; without, they enter raw, as published.
    """

    def __init__(self, d1: int, d2: int, k: int, hidden_dim: int, embed_dim: int, layers: int,
                 embedding: str, logit_cap: float):
        super().__init__()
        self.k, self.embed_dim, self.embedding, self.logit_cap = k, embed_dim, embedding, logit_cap
        self.embed1 = mlp(d1, hidden_dim, k * embed_dim, layers)
        self.embed2 = mlp(d2, hidden_dim, k * embed_dim, layers)
        for name, dim in (("x1", d1), ("x2", d2)):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))

    def set_feature_stats(self, x1: torch.Tensor, x2: torch.Tensor) -> None:
        """Record per-dimension mean and std of the fitting features, to standardise inputs with."""
        for name, x in (("x1", x1), ("x2", x2)):
            getattr(self, f"{name}_mean").copy_(x.mean(0))
            getattr(self, f"{name}_std").copy_(x.std(0).clamp(min=1e-6) if len(x) > 1 else torch.ones_like(x[0]))

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        e1 = self._embed(self.embed1, (x1 - self.x1_mean) / self.x1_std)
        e2 = self._embed(self.embed2, (x2 - self.x2_mean) / self.x2_std)
        logits = torch.einsum("ayd,byd->aby", e1, e2) / math.sqrt(self.embed_dim)
        return logits if self.embedding == "standardised" else self.logit_cap * torch.tanh(logits / self.logit_cap)

    def _embed(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        embedded = net(x).unflatten(1, (self.k, self.embed_dim))
        if self.embedding == "standardised":
            embedded = (embedded - embedded.mean(2, keepdim=True)) / torch.sqrt(embedded.var(2, keepdim=True) + 1e-8)
        return embedded


def alignment_net(d1: int, d2: int, k: int, config) -> AlignmentNet:
    """The alignment networks a BatchConfig asks for."""
    return AlignmentNet(d1, d2, k, config.hidden_dim, config.embed_dim, config.layers, config.embedding,
                        config.logit_cap)
