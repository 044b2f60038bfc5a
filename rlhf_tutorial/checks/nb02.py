"""Notebook 02 (policy gradients): reward-to-go and the REINFORCE loss."""

from __future__ import annotations

import numpy as np
import torch

from ..reinforce import reinforce_loss
from ..rl import discounted_returns
from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _compare,
    _convert,
    _grad_case,
    with_reference,
)
from ._quiz import Question

__all__ = ["discounted_returns_reference", "check_discounted_returns", "reinforce_loss_reference", "check_reinforce_loss"]



def discounted_returns_reference(rewards, gamma):
    """Notebook 02's exercise, solved: ``rl.discounted_returns`` (a tensor in gives a float32 tensor out)."""
    if isinstance(rewards, torch.Tensor):
        return torch.as_tensor(discounted_returns(rewards.detach().cpu().numpy(), gamma), dtype=torch.float32)
    return discounted_returns(np.asarray(rewards, dtype=np.float64), gamma)


@with_reference(discounted_returns_reference)
def check_discounted_returns(fn, verbose: bool = True, backend: str = "numpy") -> CheckResult:
    r"""Check a reward-to-go function ``fn(rewards, gamma) -> G`` of shape ``(T,)``.

    Notebook 02 (REINFORCE; exercise 1, "reward-to-go without a loop"). Compared with
    ``rl.discounted_returns``: :math:`G_t = \sum_{k\ge0}\gamma^k r_{t+k}` for every t. ``rewards``
    is a 1-D NumPy array (``backend="torch"``: a float32 tensor). Hidden cases: one step, γ = 1,
    γ = 0, a long episode with γ = 0.99, negative rewards.
    """
    chk = _Checker("check_discounted_returns", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(2)
    cases = [
        ("a one-step episode", np.array([3.0]), 0.9, "with one step, G_0 = r_0."),
        ("γ = 1 (undiscounted)", np.array([1.0, 2.0, 3.0, 4.0]), 1.0,
         "with γ = 1, G_t is the plain sum of the rewards from t to the end: [10, 9, 7, 4]."),
        ("γ = 0", np.array([1.0, -2.0, 3.0]), 0.0, "with γ = 0, G_t = r_t."),
        ("a 50-step episode, γ = 0.99", np.round(rng.normal(size=50), 3), 0.99,
         "G_t looks forward: G_t = r_t + γ·G_{t+1}, computed from the last step backwards."),
        ("negative rewards, γ = 0.5", np.array([-1.0, 0.0, -4.0, 2.0, -1.0]), 0.5,
         "G_t = Σ_k γ^k r_{t+k}: each reward is discounted by its distance from t, not from 0."),
    ]
    for name, r, gamma, hint in cases:
        expected = discounted_returns(r, gamma)
        T = len(r)
        from_start = np.array([sum(gamma ** k * r[k] for k in range(t, T)) for t in range(T)])
        backward = np.array([sum(gamma ** (t - k) * r[k] for k in range(t + 1)) for t in range(T)])
        mistakes = [
            (from_start, "discount each reward by its distance from t (γ^(k−t)), not from the episode start (γ^k)."),
            (backward, "the reward-to-go looks *forward* (rewards at t, t+1, ...), not back to the start."),
            (expected[::-1], "the result is reversed: G_t must be at index t (reverse back after a backward pass)."),
            (np.full(T, expected[0]), "every step gets its own G_t; G_0 is only the first entry."),
        ]
        (arg,) = _convert(backend, r)
        out = chk.call(name, arg, gamma)
        if out is not _FAILED:
            chk.add(name, _compare(out, expected, hint, mistakes))
    return chk.finish()


def reinforce_loss_reference(logprobs, returns, baseline, normalize: bool = False):
    """Notebook 02's exercise, solved: ``reinforce.reinforce_loss``."""
    return reinforce_loss(logprobs, returns, baseline, normalize=normalize)


@with_reference(reinforce_loss_reference)
def check_reinforce_loss(fn, verbose: bool = True, normalize: bool = False) -> CheckResult:
    r"""Check a REINFORCE loss ``fn(logprobs, returns, baseline) -> scalar tensor``.

    Notebook 02. The loss is :math:`-\frac1B\sum_i \log\pi_\phi(a_i|s_i)\,(G_i - b_i)`, compared
    with ``reinforce.reinforce_loss(..., normalize=normalize)`` (default: no advantage
    normalisation; pass ``normalize=True`` if your function standardises Â over the batch).
    ``logprobs`` and ``returns`` are float32 tensors of shape ``(B,)``; ``baseline`` is ``None``,
    a number, or a ``(B,)`` tensor. Hidden cases: no baseline, a constant baseline, a per-sample
    baseline, negative returns, and the gradient with respect to ``logprobs``.
    """
    chk = _Checker("check_reinforce_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(3)
    logp = np.log(rng.uniform(0.1, 0.9, size=6))
    ret = np.round(rng.normal(2.0, 3.0, size=6), 3)
    cases = [
        ("no baseline (baseline=None)", ret, None, "without a baseline Â_t = G_t; accept baseline=None."),
        ("a constant baseline (a number)", ret, 1.5, "Â_t = G_t − b with a number b (broadcast it)."),
        ("a per-sample baseline b(s_t)", ret, np.round(rng.normal(size=6), 3), "Â_t = G_t − b(s_t), elementwise."),
        ("all returns negative", -np.abs(ret) - 1.0, None,
         "the loss is −mean(log π · Â): minimising it raises log π where Â > 0 and lowers it where Â < 0."),
    ]

    def tensors(r, b):
        lp = torch.tensor(logp, dtype=torch.float32)
        rt = torch.tensor(r, dtype=torch.float32)
        bt = b if b is None or isinstance(b, float) else torch.tensor(b, dtype=torch.float32)
        return lp, rt, bt

    for name, r, b, hint in cases:
        lp, rt, bt = tensors(r, b)
        expected = float(reinforce_loss(lp, rt, bt, normalize=normalize))
        adv = rt - (0.0 if bt is None else torch.as_tensor(bt))
        mistakes = [
            (float((lp * adv).mean()), "return *minus* mean(log π · Â): the optimiser minimises the loss."),
            (float(-(lp * adv).sum()), "average over the batch (.mean()), do not sum."),
            (float(-(lp * rt).mean()), "subtract the baseline: Â_t = G_t − b(s_t)."),
            (float(reinforce_loss(lp, rt, bt, normalize=not normalize)),
             "advantage normalisation: pass normalize=True to the checker if your loss standardises Â "
             "(or drop the standardisation)."),
        ]
        out = chk.call(name, *tensors(r, b))
        if out is not _FAILED:
            chk.add(name, _compare(out, expected, hint, mistakes))
    b = np.round(rng.normal(size=6), 3)
    _grad_case(chk, "gradient with respect to logprobs",
               lambda: tensors(ret, b),
               lambda lp, rt, bt: reinforce_loss(lp, rt, bt, normalize=normalize),
               0, "only log π carries the gradient; returns and baseline are constants (dL/dlog π_i = −Â_i/B).")
    return chk.finish()


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        "Why does the policy gradient ∇J = E[∇ log π_φ(a_t|s_t) · G_t] not need the environment's dynamics?",
        ('the dynamics are deterministic in CartPole', 'the log-probabilities of the transitions do not depend on φ, so their gradient is 0', 'Gymnasium differentiates the environment', 'because G_t is normalised',),
        1,
        "log p(τ) = Σ log π_φ + Σ log P(s'|s,a); only the first sum depends on φ."),
    Question(
        'Subtracting a baseline b(s_t) from the return',
        ('keeps the gradient unbiased and can lower its variance', 'biases the gradient but lowers its variance', 'changes which policy is optimal', 'is only allowed when b is a constant',),
        0,
        'E[∇ log π(a|s) b(s)] = b(s)·∇Σ_a π(a|s) = 0, so the expectation is unchanged.'),
    Question(
        'Why may REINFORCE weight log π(a_t|s_t) by the reward-to-go G_t instead of the whole return R(τ)?',
        ('because γ < 1', 'it is an approximation that adds bias', 'the whole return is not observable', 'rewards before t do not depend on a_t, so their terms average to zero',),
        3,
        'An action cannot change the past: the dropped terms have expectation 0 and only add variance.'),
    Question(
        'The REINFORCE loss is −mean(log π · Â) rather than +mean(log π · Â) because',
        ('log π is negative', 'the advantages are negative on average', 'optimizers minimise, so the minus sign turns descent on the loss into ascent on the return', 'it makes the loss positive',),
        2,
        'Minimising −J is maximising J.'),
]
