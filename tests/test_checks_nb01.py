"""Notebook 01's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

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
from rlhf_tutorial.tabular import q_learning_update


def _q_truncation_as_death(Q, s, a, r, s_next, terminated, alpha, gamma, truncated=False):
    return q_learning_update(Q, s, a, r, s_next, bool(terminated or truncated), alpha, gamma)


def _q_no_alpha(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r + (0.0 if terminated else gamma * Q[s_next].max())
    Q[s, a] = target


def _returns_table(Q, s, a, r, s_next, terminated, alpha, gamma):
    Q = Q.copy()
    q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
    return Q


def _with_truncated(Q, s, a, r, s_next, terminated, alpha, gamma, truncated=False):
    return q_learning_update(Q, s, a, r, s_next, bool(terminated), alpha, gamma)


CORRECT = [(checks.check_q_learning_update, q_learning_update),
           (checks.check_q_learning_update, _returns_table),
           (checks.check_q_learning_update, _with_truncated)]
WRONG = [(checks.check_q_learning_update, _q_truncation_as_death, "truncated transition still bootstraps"),
         (checks.check_q_learning_update, _q_no_alpha, "step size α")]


def test_sarsa_reference_learns_cliffwalking():
    import gymnasium as gym

    env = gym.make("CliffWalking-v1")
    Q, returns = checks.sarsa_reference(env, 200, 0.5, 1.0, 0.1, seed=0)
    assert Q.shape == (48, 4) and returns[-50:].mean() > returns[:50].mean()


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb01)
