"""Shared test setup: quiet, deterministic torch on shared 2-core machines."""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))
