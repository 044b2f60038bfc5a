"""Notebook 04's exercise checker: check_answer_probabilities passes on correct functions, fails with a hint on
typical mistakes and stubs, and its reference is the synthetic labeler's model."""

import math

import numpy as np
import pytest

from rlhf_tutorial import checks
from rlhf_tutorial.feedback import ComparisonLabeler, Segment


def answer_probabilities(delta, beta, epsilon, tie_margin):
    if abs(delta) <= tie_margin:
        return (epsilon / 2, 1 - epsilon, epsilon / 2)
    z = beta * delta
    p = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    return (epsilon / 2 + (1 - epsilon) * p, 0.0, epsilon / 2 + (1 - epsilon) * (1 - p))


def stub(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker, fn", [(checks.check_answer_probabilities, answer_probabilities)])
def test_new_checkers_pass_on_correct_and_fail_on_stub(checker, fn, capsys):
    assert checker(fn)
    assert "✅" in capsys.readouterr().out
    result = checker(stub)
    out = capsys.readouterr().out
    assert not result and "❌" in out and "NotImplementedError" in out and "Traceback" not in out


def test_answer_probabilities_hints():
    no_eps = checks.check_answer_probabilities(lambda d, b, e, m: answer_probabilities(d, b, 0.0, m), verbose=False)
    assert not no_eps and any("inattentive" in c.message for c in no_eps.failures)
    no_tie = checks.check_answer_probabilities(lambda d, b, e, m: answer_probabilities(d, b, e, -1.0), verbose=False)
    assert not no_tie and any("equal" in c.message for c in no_tie.failures)
    naive = checks.check_answer_probabilities(
        lambda d, b, e, m: (e / 2 + (1 - e) / (1 + math.exp(-b * d)), 0.0, 0.0), verbose=False)
    assert not naive and any("OverflowError" in c.message or "sum to" in c.message for c in naive.failures)
    assert not checks.check_answer_probabilities(42, verbose=False)


def _segment(total_return, length=10):
    return Segment(np.zeros((length, 4)), np.zeros(length, dtype=int), np.full(length, total_return / length))


@pytest.mark.parametrize("r1, r2, beta, eps", [(6.0, 4.0, 1.0, 0.1), (4.0, 4.3, 1.0, 0.2), (1.0, 3.0, 0.5, 0.3)])
def test_reference_matches_the_synthetic_labeler(r1, r2, beta, eps):
    """The checker's reference is the distribution ComparisonLabeler samples from (10,000 draws)."""
    labeler = ComparisonLabeler(beta=beta, epsilon=eps, tie_margin=0.5, seed=0)
    a, b = _segment(r1), _segment(r2)
    labels = np.array([labeler.label(a, b) for _ in range(10_000)])
    freq = np.array([np.mean(labels == 1.0), np.mean(labels == 0.5), np.mean(labels == 0.0)])
    expected = checks.answer_probabilities_reference(a.true_return - b.true_return, beta, eps, 0.5)
    np.testing.assert_allclose(freq, expected, atol=0.015)
