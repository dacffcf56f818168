"""The settings of a BATCH fit and the estimator modes."""

from __future__ import annotations

from dataclasses import dataclass

MODES = ("published", "calibrated")


@dataclass
class BatchConfig:
    """Everything that shapes a BATCH fit; stored with a fitted estimator."""

    mode: str = "published"
    # the two alignment networks (MLPs), and the cap on their pair logits in nats
    hidden_dim: int = 32
    embed_dim: int = 10
    layers: int = 3
    logit_cap: float = 5.0
    # training: Adam, batches of about batch_size, early stopping on the monitored objective
    learning_rate: float = 1e-2
    batch_size: int = 256
    max_epochs: int = 40
    patience: int = 3
    min_improvement_bits: float = 1e-3
    monitor_samples: int = 4096
    # the Sinkhorn projection onto couplings that keep both probe marginals
    sinkhorn_tol: float = 1e-5
    sinkhorn_max_iter: int = 100
    # the split and the seed of every random choice
    held_out_fraction: float = 0.5
    seed: int = 0

    def validate(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be at least 2, got {self.batch_size}")
        if not 0 < self.held_out_fraction < 1:
            raise ValueError(f"held_out_fraction must be in (0, 1), got {self.held_out_fraction}")
