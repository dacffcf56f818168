"""What a run depends on: the settings of `profile` and `import-paper`, and the run id they hash to."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass


@dataclass
class ProfileSettings:
    """Everything a profile run depends on; the run id hashes the fields that change results.

    keep_fitted: store each layer's fitted estimator (about 50 kB), needed to score new samples later.
    progress: show tqdm bars (off when a caller shows its own).
    """

    model: str
    dataset: str
    db: str
    layers: str = "all"
    device: str = "auto"
    dtype: str = "auto"
    limit: int | None = None
    seed: int = 0
    estimator_mode: str = "published"
    checkpoint: str = "final"
    step: int | None = None
    stage: str | None = None
    calibration_samples: int = 32
    chunk: int = 8
    trust_remote_code: bool = False
    task: str | None = None
    keep_fitted: bool = True
    progress: bool = True

    def run_id(self) -> str:
        keys = ("model", "dataset", "dtype", "limit", "seed", "checkpoint", "calibration_samples")
        canonical = json.dumps({key: getattr(self, key) for key in keys}, sort_keys=True, default=str)
        return hashlib.sha1(canonical.encode()).hexdigest()[:16]

    @property
    def estimator(self) -> str:
        return f"batch-{self.estimator_mode}"

    @property
    def task_name(self) -> str:
        """The task as shown in the store: the explicit name, else KIND:FILENAME of the dataset spec."""
        return self.task or self.dataset.split(":", 1)[0] + ":" + self.dataset.rsplit("/", 1)[-1]

    @property
    def model_name(self) -> str:
        """The model as shown in the store: the last part of its hub id or folder."""
        return self.model.rstrip("/").rsplit("/", 1)[-1]
