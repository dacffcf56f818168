"""Information-theoretic helpers on torch tensors. Inputs are probabilities; outputs are in bits."""

from __future__ import annotations

import math

import torch

LN2 = math.log(2.0)


def xlogy(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """x * log(y) with the convention 0 * log(0) = 0 (natural log)."""
    return torch.special.xlogy(x, y)


def entropy_nats(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy along `dim`, in nats."""
    return -xlogy(p, p).sum(dim)


def kl_nats(p: torch.Tensor, q: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """KL(p || q) along `dim`, in nats; cells with p = 0 contribute nothing."""
    return (xlogy(p, p) - xlogy(p, q)).sum(dim)


def mutual_information_nats(joint: torch.Tensor) -> torch.Tensor:
    """I(A;B) of a joint [..., |A|, |B|], in nats."""
    pa = joint.sum(-1, keepdim=True)
    pb = joint.sum(-2, keepdim=True)
    return (xlogy(joint, joint) - xlogy(joint, pa * pb)).sum((-2, -1))


def to_bits(nats: torch.Tensor) -> torch.Tensor:
    """Convert nats to bits."""
    return nats / LN2
