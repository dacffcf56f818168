"""Baseline for benchmarks only: the BATCH estimator as published (Liang et al. 2023), re-implemented on CPU.

Faithful to the published algorithm's choices, which pidcore's estimator replaces: standardised
embeddings (logits bounded by sqrt(embed_dim)), a Python loop over labels, up to 500 alternating
scaling steps with an absolute 0.01 tolerance, Adam at 1e-3 for 10 epochs, batches of 256 with the
remainder dropped, and the atoms averaged over held-out batches.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pidcore.atoms import ATOMS


def _mlp(d_in: int, out: int) -> nn.Sequential:
    blocks = [nn.Linear(d_in, 32), nn.ReLU()]
    for _ in range(3):
        blocks += [nn.Linear(32, 32), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(32, out))


def _scale(matrix, rows, cols):
    """One published scaling round: columns, check rows; rows, check columns (atol 0.01)."""
    matrix = matrix / (matrix.sum(0, keepdim=True) + 1e-8) * cols[None]
    if torch.allclose(matrix.sum(1), rows, rtol=0, atol=0.01):
        return matrix, True
    matrix = matrix / (matrix.sum(1, keepdim=True) + 1e-8) * rows[:, None]
    return matrix, torch.allclose(matrix.sum(0), cols, rtol=0, atol=0.01)


class PublishedBatch(nn.Module):
    def __init__(self, d1: int, d2: int, k: int, embed: int = 10):
        super().__init__()
        self.k, self.embed = k, embed
        self.mlp1, self.mlp2 = _mlp(d1, k * embed), _mlp(d2, k * embed)

    def coupling(self, x1, x2, p1, p2):
        e1 = self.mlp1(x1).unflatten(1, (self.k, -1))
        e2 = self.mlp2(x2).unflatten(1, (self.k, -1))
        e1 = (e1 - e1.mean(2, keepdim=True)) / torch.sqrt(e1.var(2, keepdim=True) + 1e-8)
        e2 = (e2 - e2.mean(2, keepdim=True)) / torch.sqrt(e2.var(2, keepdim=True) + 1e-8)
        kernel = torch.exp(torch.einsum("ahx,bhx->abh", e1, e2) / math.sqrt(self.embed))
        planes = []
        for label in range(self.k):
            current = kernel[..., label]
            for _ in range(500):
                current, done = _scale(current, p1[:, label], p2[:, label])
                if done:
                    break
            planes.append(current)
        return torch.stack(planes, -1)

    def forward(self, x1, x2, p1, p2, p12, p_y):
        q = self.coupling(x1, x2, p1, p2)
        q_b = q / (q.sum(1, keepdim=True) + 1e-8)
        log_term = torch.log(q_b + 1e-8) - torch.log(torch.einsum("aby,ay->ab", q_b, p1) + 1e-8)[:, :, None]
        loss = (p1[:, None, :] * q_b * log_term).sum((1, 2)).mean()
        i1, i2, i12 = (_mean_kl(p, p_y) for p in (p1, p2, p12))
        iq = i1 + loss
        atoms = torch.stack([i1 + i2 - iq, iq - i2, iq - i1, i12 - iq]) / math.log(2)
        return loss, atoms


def _mean_kl(p, p_y):
    return (p * (torch.log(p) - torch.log(p_y))).sum(1).mean()


def published_batch_pid(fit, held, epochs: int = 10, batch_size: int = 256, seed: int = 0) -> dict[str, float]:
    """Atoms (bits) of the published estimator: train on `fit`, average over full held-out batches."""
    torch.manual_seed(seed)
    fit = [torch.as_tensor(a, dtype=torch.float32) for a in fit]
    held = [torch.as_tensor(a, dtype=torch.float32) for a in held]
    model = PublishedBatch(fit[0].shape[1], fit[1].shape[1], fit[2].shape[1])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    p_y = fit[4].mean(0)
    for _ in range(epochs):
        order = torch.randperm(len(fit[0]))
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            loss, _ = model(*(a[index] for a in fit), p_y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    results = []
    with torch.no_grad():
        p_y = held[4].mean(0)
        for start in range(0, len(held[0]) - batch_size + 1, batch_size):
            results.append(model(*(a[start:start + batch_size] for a in held), p_y)[1])
    if not results:
        return {}
    atoms = torch.stack(results).mean(0)
    return dict(zip(ATOMS, atoms.tolist()))
