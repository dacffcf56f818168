"""The result an estimator gives for a stack of inputs at once (distributions, covariances): the four atoms and the
mutual informations they come from, each a tensor shaped like the stack."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pidcore.atoms import ATOMS, Atoms


@dataclass
class BatchedPID:
    """Atoms and mutual informations in bits; tensors shaped like the input's batch dimensions."""

    r: torch.Tensor
    u1: torch.Tensor
    u2: torch.Tensor
    s: torch.Tensor
    i1: torch.Tensor
    i2: torch.Tensor
    i12: torch.Tensor
    iq: torch.Tensor

    def stacked(self) -> torch.Tensor:
        """The atoms as one tensor [..., 4] in the order of pidcore.atoms.ATOMS."""
        return torch.stack([getattr(self, name) for name in ATOMS], dim=-1)

    def atoms(self) -> Atoms:
        """The atoms of a single input; for a stack, index the tensor fields."""
        if self.r.ndim:
            raise ValueError("atoms() is for a single input; index the fields for a stack")
        return Atoms(*(float(getattr(self, name)) for name in ATOMS))
