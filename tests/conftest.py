"""Shared settings of the unit tests (the notebooks' settings are in the repository's conftest.py)."""

import pytest
import torch

from rlhf_tutorial.cache import RUNS_ENV


@pytest.fixture(autouse=True)
def no_recorded_runs(monkeypatch):
    """Unit tests train for real (tests/test_recorded_runs.py turns recording on where it tests it)."""
    monkeypatch.delenv(RUNS_ENV, raising=False)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks train fastest (and steadiest on a busy 2-core machine) with one torch thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

