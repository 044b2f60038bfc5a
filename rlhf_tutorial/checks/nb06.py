"""Notebook 06 (RLHF on Gymnasium): query selection by ensemble disagreement."""

from __future__ import annotations

import numpy as np

from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _compare,
    _first,
    with_reference,
)
from ._quiz import Question

__all__ = ["disagreement_reference", "check_disagreement"]

def disagreement_reference(returns_a, returns_b):
    """Notebook 06's exercise, solved: the population std over members of σ(r̂_k(τ1) − r̂_k(τ2))."""
    delta = np.asarray(returns_a, dtype=np.float64) - np.asarray(returns_b, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * delta))).std(0)


@with_reference(disagreement_reference)
def check_disagreement(fn, verbose: bool = True) -> CheckResult:
    r"""Check an ensemble-disagreement function ``fn(returns_a, returns_b) -> (N,)``.

    Notebook 06 (exercise, "choose queries by disagreement"). ``returns_a`` and ``returns_b`` are
    float64 arrays ``(K, N)``: member k's value r̂_k(τ) of the first and of the second segment of
    each of N candidate pairs. The disagreement of a pair is the standard deviation over the K
    members (population std, ddof = 0) of the predicted preference
    :math:`P_k(\tau_1 \succ \tau_2) = \sigma(\hat r_k(\tau_1) - \hat r_k(\tau_2))`, as in
    ``rlhf.RewardEnsemble.disagreement``. Hidden cases: members that agree, one member, pairs
    where the members disagree by a little and by a lot, huge differences (where ``exp``
    overflows) and swapped pairs (the disagreement is symmetric).
    """
    chk = _Checker("check_disagreement", fn, verbose)
    if not chk.ok:
        return chk.finish()

    def sig(x):
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))

    rng = np.random.default_rng(6)
    ra, rb = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    cases = [
        ("three members, five pairs", ra, rb, "the std over members (axis 0) of σ(r̂_k(τ1) − r̂_k(τ2))."),
        ("members that agree", np.tile([[1.0, -2.0, 0.5]], (4, 1)), np.tile([[0.0, 0.0, 0.5]], (4, 1)),
         "when every member predicts the same preference, the disagreement is 0."),
        ("one member", np.array([[2.0, -1.0]]), np.array([[0.0, 0.0]]),
         "one member cannot disagree with itself: 0 for every pair (use ddof=0, not ddof=1)."),
        ("members that agree on the difference, not the offset", np.array([[1.0], [11.0]]), np.array([[0.0], [10.0]]),
         "a Bradley–Terry reward is defined up to a constant: compare the members' *preferences* "
         "σ(Δ_k), not their values r̂_k(τ)."),
        ("huge differences (|Δ| = 800)", np.array([[800.0, -800.0], [-800.0, 800.0]]), np.zeros((2, 2)),
         "σ(800) = 1 and σ(−800) = 0, so the disagreement is 0.5; compute σ stably "
         "(e.g. 0.5·(1 + tanh(Δ/2)), or torch.sigmoid) so exp does not overflow to inf/NaN."),
        ("swapped pairs", rb, ra, "the disagreement of (τ2, τ1) equals that of (τ1, τ2)."),
    ]
    for name, a, b, hint in cases:
        p = sig(a - b)
        expected = p.std(0)
        mistakes = [
            (p.std(0, ddof=1) if p.shape[0] > 1 else np.full(p.shape[1], np.nan),
             "use the population std (ddof = 0, NumPy's default; torch.std needs correction=0)."),
            ((a - b).std(0), "take the std of the preference probabilities σ(Δ_k), not of the differences Δ_k."),
            (a.std(0) + b.std(0), "the disagreement is about the *pair*: σ(r̂_k(τ1) − r̂_k(τ2)) per member, then the std."),
            (p.var(0), "the standard deviation, not the variance (take the square root)."),
            (p.std(1) if p.shape[1] == p.shape[0] else np.full(p.shape[1], np.nan),
             "members are along axis 0, pairs along axis 1: reduce over axis 0."),
        ]
        out = chk.call(name, np.array(a, dtype=np.float64), np.array(b, dtype=np.float64))
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'Why does the online loop ask for labels on the pairs where the reward ensemble disagrees most?',
        ('they are the easiest for the human', 'that is where a label changes the reward model most: the models are uncertain there', 'disagreement measures the true return', 'to save compute',),
        1,
        'Pairs every member already ranks the same way teach little; uncertain pairs are informative.'),
    Question(
        'What is reward hacking?',
        ("the policy reaches behaviour that r̂ scores high but the true reward scores low, usually off r̂'s training data", 'a bug in the environment', 'a learning rate that is too large', 'labels given by an adversary',),
        0,
        'PPO optimises r̂ wherever it is wrong; the narrow-data reward in this notebook shows it.'),
    Question(
        "Why refit r̂ during training instead of learning it once from the first policy's behaviour?",
        ('it is cheaper', 'PPO requires a changing reward', 'it makes the reward smaller', 'the policy moves to new states, and r̂ must be right where the policy goes',),
        3,
        'Online queries follow the policy, so r̂ keeps being checked where it matters.'),
    Question(
        'To compare two kinds of feedback fairly, compare them at',
        ('equal numbers of training epochs', 'equal network size only', 'equal numbers of labels and equal human time', 'equal final reward',),
        2,
        'A comparison takes longer to give than a score; labels and time are both budgets.'),
]
