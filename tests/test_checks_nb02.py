"""Notebook 02's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

import numpy as np  # noqa: F401
import pytest
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from checker_asserts import (
    assert_checker_fails_with_hint,
    assert_checker_passes,
    assert_two_wrong_versions_each,
)

from rlhf_tutorial import checks
from rlhf_tutorial.reinforce import reinforce_loss
from rlhf_tutorial.rl import discounted_returns


def rtg_numpy(rewards, gamma):
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


CORRECT = [
    (checks.check_discounted_returns, discounted_returns),
    (checks.check_discounted_returns, rtg_numpy),
    (checks.check_reinforce_loss, lambda lp, g, b: reinforce_loss(lp, g, b, normalize=False)),
    (checks.check_reinforce_loss, lambda lp, g, b: -(lp * (g - (0.0 if b is None else b))).mean()),
]
WRONG = [
    (checks.check_discounted_returns, lambda r, g: discounted_returns(r, g)[::-1], "reversed"),
    (checks.check_discounted_returns,
     lambda r, g: np.array([sum(g ** k * r[k] for k in range(t, len(r))) for t in range(len(r))]),
     "distance from t"),
    (checks.check_discounted_returns, lambda r, g: float(discounted_returns(r, g)[0]), "wrong shape"),
    (checks.check_reinforce_loss, lambda lp, g, b: (lp * (g - (0.0 if b is None else b))).mean(), "minus"),
    (checks.check_reinforce_loss, lambda lp, g, b: -(lp * g).mean(), "subtract the baseline"),
    (checks.check_reinforce_loss, lambda lp, g, b: -(lp * (g - (0.0 if b is None else b))).sum(), ".mean()"),
]


def test_backend_torch_and_normalize_options(capsys):
    assert checks.check_discounted_returns(lambda r, g: discounted_returns(r.numpy(), g), backend="torch")
    assert checks.check_reinforce_loss(reinforce_loss, normalize=True)
    capsys.readouterr()


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb02)
