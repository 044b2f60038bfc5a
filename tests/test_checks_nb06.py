"""The notebook-06 exercise checker: check_disagreement accepts the package's version and catches the usual mistakes."""

import numpy as np
import torch

from rlhf_tutorial.checks import check_disagreement
from rlhf_tutorial.feedback import Segment
from rlhf_tutorial.reward_model import RewardNet
from rlhf_tutorial.rlhf import RewardEnsemble


def reference(ra, rb):
    return (1 / (1 + np.exp(-np.clip(ra - rb, -50, 50)))).std(0)


def test_correct_solutions_pass():
    assert check_disagreement(reference, verbose=False)
    assert check_disagreement(lambda a, b: torch.sigmoid(torch.as_tensor(a - b)).std(0, correction=0).numpy(),
                              verbose=False)


def test_the_package_ensemble_computes_the_same():
    ens = RewardEnsemble([RewardNet(4, hidden=(8,), seed=s) for s in range(3)])
    rng = np.random.default_rng(0)
    segs = [Segment(rng.normal(size=(10, 4)).astype(np.float32), np.zeros(10, dtype=np.int64), np.zeros(10))
            for _ in range(6)]
    a, b = segs[:3], segs[3:]
    np.testing.assert_allclose(reference(ens.segment_returns(a), ens.segment_returns(b)), ens.disagreement(a, b))


def test_mistakes_fail_with_a_hint(capsys):
    res = check_disagreement(lambda a, b: (1 / (1 + np.exp(-(a - b)))).std(0, ddof=1))
    assert not res and "ddof" in capsys.readouterr().out
    res = check_disagreement(lambda a, b: (a - b).std(0))
    assert not res and "preference probabilities" in capsys.readouterr().out
    res = check_disagreement(lambda a, b: (1 / (1 + np.exp(-(a - b)))).var(0))
    assert not res
    res = check_disagreement(lambda a, b: 1 / 0)
    assert not res and "ZeroDivisionError" in capsys.readouterr().out
    assert not check_disagreement("not a function", verbose=False)
