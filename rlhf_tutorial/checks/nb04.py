"""Notebook 04 (human feedback): the answer distribution of the synthetic comparison human."""

from __future__ import annotations

import math

import numpy as np

from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _compare,
    _fmt,
    _to_numpy,
    with_reference,
)
from ._quiz import Question

__all__ = ["answer_probabilities_reference", "check_answer_probabilities"]

def _answer_probabilities(delta: float, beta: float, epsilon: float, tie_margin: float) -> np.ndarray:
    """Reference for :func:`check_answer_probabilities` (the model of ``feedback.ComparisonLabeler``)."""
    if abs(delta) <= tie_margin:
        p_first, attentive_tie = 0.5, 1.0
    else:
        attentive_tie = 0.0
        if math.isinf(beta):
            p_first = 1.0 if delta > 0 else 0.0
        else:
            z = beta * delta
            p_first = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    attentive = 1.0 - epsilon
    p_equal = attentive * attentive_tie
    p_left = epsilon / 2 + attentive * (1 - attentive_tie) * p_first
    p_right = epsilon / 2 + attentive * (1 - attentive_tie) * (1 - p_first)
    return np.array([p_left, p_equal, p_right])


def answer_probabilities_reference(delta, beta, epsilon, tie_margin):
    """Notebook 04's exercise, solved: ``(p_left, p_equal, p_right)`` of ``feedback.ComparisonLabeler``."""
    return tuple(float(p) for p in _answer_probabilities(delta, beta, epsilon, tie_margin))


@with_reference(answer_probabilities_reference)
def check_answer_probabilities(fn, verbose: bool = True) -> CheckResult:
    r"""Check ``fn(delta, beta, epsilon, tie_margin) -> (p_left, p_equal, p_right)``.

    Notebook 04 (exercise 5). The probabilities of the three answers of
    ``feedback.ComparisonLabeler`` for a pair whose true returns differ by ``delta`` =
    R(τ1) − R(τ2): with probability ε a coin flip (left or right, never "equal"); otherwise
    "equal" when :math:`|\Delta| \le` ``tie_margin``, else left with the Bradley–Terry
    probability :math:`\sigma(\beta\Delta)`. So :math:`p_\text{left} = \varepsilon/2 +
    (1-\varepsilon)[|\Delta| > m]\,\sigma(\beta\Delta)`. Hidden cases: a clear pair, a tie, τ2
    better, a perfectly rational human (β = ∞), a huge difference (overflow), ε = 1.
    """
    chk = _Checker("check_answer_probabilities", fn, verbose)
    if not chk.ok:
        return chk.finish()
    cases = [
        ("a clear pair, τ1 better", (3.0, 1.0, 0.1, 0.5),
         "p_left = ε/2 + (1 − ε)·σ(βΔ): the inattentive ε share splits evenly between left and right."),
        ("a near tie (|Δ| ≤ tie_margin)", (0.3, 1.0, 0.1, 0.5),
         "an attentive human says 'equal' when |Δ| ≤ tie_margin; only the ε coin flips say left or right."),
        ("τ2 better (Δ < 0)", (-2.0, 0.7, 0.2, 0.5),
         "P(left) = σ(βΔ) is small when Δ < 0; Δ = R(τ1) − R(τ2)."),
        ("a perfectly rational human (β = inf)", (1.0, math.inf, 0.1, 0.5),
         "with β = ∞ the attentive human always picks the better segment: σ(∞·Δ) is 1 for Δ > 0."),
        ("a huge difference (βΔ = −1000)", (-100.0, 10.0, 0.05, 0.5),
         "σ(x) for very negative x: use exp(x) / (1 + exp(x)) (or scipy.special.expit) so exp does not overflow."),
        ("ε = 1 (never paying attention)", (5.0, 1.0, 1.0, 0.5),
         "with ε = 1 every answer is a coin flip: (0.5, 0, 0.5), whatever Δ."),
    ]
    for name, args, hint in cases:
        expected = _answer_probabilities(*args)
        delta, beta, epsilon, m = args
        no_eps = _answer_probabilities(delta, beta, 0.0, m)
        no_tie = _answer_probabilities(delta, beta, epsilon, -1.0)
        mistakes = [
            (no_eps, "include the inattentive human: with probability ε the answer is a fair coin (ε/2 each side)."),
            (no_tie, "an attentive human answers 'equal' (p_equal = 1 − ε) when |Δ| ≤ tie_margin."),
            (expected[::-1], "left means τ1 is better: p_left grows with Δ = R(τ1) − R(τ2)."),
        ]
        out = chk.call(name, *args)
        if out is _FAILED:
            continue
        try:
            got = _to_numpy(list(out) if isinstance(out, tuple) else out)
        except TypeError as exc:
            chk.add(name, f"{exc}. Hint: return three numbers (p_left, p_equal, p_right).")
            continue
        if got.shape == (3,) and np.isfinite(got).all() and not math.isclose(float(got.sum()), 1.0, abs_tol=1e-6):
            chk.add(name, f"your probabilities {_fmt(got)} sum to {got.sum():.4g}, not 1. Hint: {hint}")
            continue
        chk.add(name, _compare(got, expected, hint, mistakes))
    return chk.finish()


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'Why does Part 2 use a fixed-horizon CartPole instead of CartPole-v1?',
        ('it renders faster', 'in CartPole-v1 the episode length is the return, so feedback could be about length instead of behaviour', 'CartPole-v1 has no reward', 'fixed horizons make PPO unnecessary',),
        1,
        'When length leaks the reward, a labeler (and a reward model) can judge segments by length alone.'),
    Question(
        'In the Bradley–Terry human model, what happens as the rationality β grows to ∞?',
        ('the attentive human always picks the better segment', 'the human answers at random', "the human says 'equal' more often", 'nothing: β only scales the labels',),
        0,
        'P(τ1 ≻ τ2) = σ(β·ΔR) becomes a step function of ΔR.'),
    Question(
        'The synthetic comparison human has ε = 0.1. What does ε model?',
        ('the tie margin', "the human's bias towards the left segment", 'the learning rate of the reward model', 'the share of answers that are coin flips (inattention)',),
        3,
        "With probability ε the answer is left or right at random, never 'equal'."),
    Question(
        'Which kind of feedback needs raters to share a scale to be comparable across people?',
        ('comparisons', 'neither', 'scores', 'both equally',),
        2,
        "A 7/10 from one person is not a 7/10 from another; 'A is better than B' needs no shared scale."),
    Question(
        'Behaviour cloning a demonstrator fails mostly because',
        ('it needs a reward function', 'small errors lead to states the demonstrator never showed, where the clone has no data (compounding errors)', 'it cannot use neural networks', 'it is on-policy',),
        1,
        'DAgger-style correction labels the states the learner actually visits.'),
]
