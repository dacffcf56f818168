"""Shared test setup: quiet, deterministic torch on shared 2-core machines, and a weights digest cache of the
session's own (never the user's)."""

import os
import tempfile

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("PIDCORE_CACHE_DIR", tempfile.mkdtemp(prefix="pidcore-test-cache-"))

import pytest  # noqa: E402
import torch  # noqa: E402

from pidcore.shipped import RESULTS_DIRS_ENV  # noqa: E402

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def results_folder(tmp_path, monkeypatch):
    """The test's own folder is the one folder the dashboard opens results from (besides the shipped databases),
    for the modules that mark themselves with it."""
    monkeypatch.setenv(RESULTS_DIRS_ENV, str(tmp_path))
    return tmp_path
