"""Tests of rlhf_tutorial.utils (notebook 00): seeding, threads, device choice, setup report, timer."""

from __future__ import annotations

import os
import random
import time

import numpy as np
import pytest
import torch

from rlhf_tutorial import utils


@pytest.fixture
def restore_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def _draws(seed):
    rng = utils.seed_everything(seed)
    return random.random(), float(np.random.rand()), float(torch.rand(1)), float(rng.random())


def test_seed_everything_is_reproducible():
    assert _draws(123) == _draws(123)
    assert _draws(np.int64(123)) == _draws(123)  # NumPy ints are accepted
    first, other = _draws(123), _draws(124)
    assert all(a != b for a, b in zip(first, other))


def test_seed_everything_returns_a_generator():
    assert isinstance(utils.seed_everything(0), np.random.Generator)


def test_seed_everything_large_seed():
    # NumPy's legacy seed must be < 2**32; the helper folds bigger seeds instead of failing.
    assert _draws(2**40) == _draws(2**40)


@pytest.mark.parametrize("bad", [1.5, "3", None, True])
def test_seed_everything_rejects_non_int(bad):
    with pytest.raises(TypeError, match=r"seed must be an int, got"):
        utils.seed_everything(bad)


def test_seed_everything_rejects_negative():
    with pytest.raises(ValueError, match="seed must be >= 0, got -1"):
        utils.seed_everything(-1)


def test_set_torch_threads(restore_threads):
    assert utils.set_torch_threads(1) == 1
    assert torch.get_num_threads() == 1
    expected = min(2, os.cpu_count() or 1)
    assert utils.set_torch_threads() == expected
    assert torch.get_num_threads() == expected


@pytest.mark.parametrize("bad,exc", [(0, ValueError), (-2, ValueError), (1.5, TypeError), (True, TypeError),
                                     ("2", TypeError)])
def test_set_torch_threads_rejects_bad_counts(bad, exc, restore_threads):
    # issue 13's one rule: a wrong type is a TypeError, a wrong value a ValueError
    with pytest.raises(exc, match=r"n must be (an int|>= 1), got"):
        utils.set_torch_threads(bad)


def test_get_device_options():
    assert utils.get_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert utils.get_device().type == expected
    assert utils.get_device("auto").type == expected


@pytest.mark.parametrize("bad", ["gpu", "CUDA", "", None])
def test_get_device_rejects_unknown_option(bad):
    with pytest.raises(ValueError, match=r"prefer must be one of \('auto', 'cpu', 'cuda'\), got"):
        utils.get_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_get_device_cuda_without_cuda():
    with pytest.raises(ValueError, match="prefer='cuda' but torch.cuda.is_available\\(\\) is False"):
        utils.get_device("cuda")


def test_describe_setup_keys_and_values():
    info = utils.describe_setup()
    expected = {"python", "torch", "gymnasium", "numpy", "matplotlib", "device", "cuda_available",
                "cpu_count", "torch_threads", "transformers"}
    assert expected <= set(info)
    assert info["torch"] == torch.__version__
    assert info["numpy"] == np.__version__
    assert info["device"] in ("cpu", "cuda")
    assert isinstance(info["cuda_available"], bool)
    assert info["torch_threads"] == torch.get_num_threads()
    assert ("gpu" in info) == torch.cuda.is_available()
    # notebook 00 prints it: no value may reveal a machine path
    for key, value in info.items():
        assert "/" not in str(value) and "\\" not in str(value), (key, value)


def test_timer_measures_and_freezes():
    with utils.timer() as elapsed:
        time.sleep(0.01)
        inside = elapsed()
    after = elapsed()
    assert inside >= 0.009
    assert after >= inside
    time.sleep(0.01)
    assert elapsed() == after  # stopped when the block ended


def test_resolve_threads_env_override(monkeypatch):
    from rlhf_tutorial.utils import resolve_threads, set_torch_threads

    monkeypatch.delenv("RLHF_TORCH_THREADS", raising=False)
    assert resolve_threads(1) == 1
    monkeypatch.setenv("RLHF_TORCH_THREADS", "2")
    assert resolve_threads(1) == 2 and set_torch_threads(1) == 2
    monkeypatch.setenv("RLHF_TORCH_THREADS", "two")
    with pytest.raises(ValueError, match="RLHF_TORCH_THREADS"):
        resolve_threads(1)
    monkeypatch.setenv("RLHF_TORCH_THREADS", "0")
    with pytest.raises(ValueError, match="RLHF_TORCH_THREADS"):
        resolve_threads(1)
    monkeypatch.delenv("RLHF_TORCH_THREADS")
    set_torch_threads(1)
