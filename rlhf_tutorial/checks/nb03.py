"""Notebook 03 (actor-critic, PPO and SAC): GAE, the clipped surrogate, the value loss, the soft Q target."""

from __future__ import annotations

import math

import numpy as np
import torch

from ..ppo import ppo_policy_loss, ppo_value_loss
from ..rl import compute_gae
from ..sac import soft_q_target
from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _compare,
    _convert,
    _first,
    _grad_case,
    with_reference,
)
from ._quiz import Question

__all__ = ["gae_reference", "check_gae", "ppo_clip_loss_reference", "check_ppo_clip_loss", "value_loss_reference", "check_value_loss", "soft_q_target_reference", "check_soft_q_target"]



def _gae_np(r, v, nv, term, trunc, gamma, lam, bootstrap_term=False, bootstrap_trunc=True,
            stop_at_trunc=True, next_from_values=False):
    """A reference GAE with switches that reproduce the typical mistakes (for hints)."""
    r, v, nv, term, trunc = (np.asarray(x, dtype=np.float64) for x in (r, v, nv, term, trunc))
    if next_from_values:
        nv = np.concatenate([v[1:], nv[-1:]], axis=0)
    not_term = np.ones_like(term) if bootstrap_term else 1.0 - term
    boot = not_term * (1.0 if bootstrap_trunc else 1.0 - trunc)
    delta = r + gamma * boot * nv - v
    cont = (1.0 - term) * ((1.0 - trunc) if stop_at_trunc else 1.0)
    adv = np.zeros_like(r)
    last = np.zeros_like(r[0])
    for t in range(len(r) - 1, -1, -1):
        last = delta[t] + gamma * lam * cont[t] * last
        adv[t] = last
    return adv


def gae_reference(rewards, values, next_values, terminated, truncated, gamma, lam):
    """Notebook 03's exercise, solved: ``(advantages, value targets)`` of ``rl.compute_gae``.

    NumPy arrays in give float64 NumPy arrays out (like the notebook's inline ``gae``); tensors give tensors.
    """
    adv, ret = compute_gae(rewards, values, next_values, terminated, truncated, gamma, lam)
    if isinstance(rewards, torch.Tensor):
        return adv, ret
    return adv.numpy().astype(np.float64), ret.numpy().astype(np.float64)


@with_reference(gae_reference)
def check_gae(fn, verbose: bool = True, backend: str = "numpy") -> CheckResult:
    r"""Check generalized advantage estimation ``fn(rewards, values, next_values, terminated, truncated, gamma, lam)``.

    Notebook 03 (exercise 1, "write GAE yourself"). Compared with the advantages of
    ``rl.compute_gae``; your function may return the advantages or ``(advantages, returns)``.
    Inputs are float arrays of shape ``(T,)`` or ``(T, N)`` (time first), ``terminated`` and
    ``truncated`` hold 0.0/1.0; ``backend="torch"`` passes float32 tensors instead of NumPy arrays.
    ``next_values[t]`` is V(s_{t+1}) of the *real* next state (at an episode end, the final
    observation, not the reset one). Hidden cases: a single episode, a termination, a truncation
    (bootstrap!), a (T, N) batch, λ = 0 and λ = 1.
    """
    chk = _Checker("check_gae", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(4)

    def rollout(shape, term_at=(), trunc_at=()):
        r = np.round(rng.normal(1.0, 0.5, size=shape), 3)
        v = np.round(rng.normal(2.0, 1.0, size=shape), 3)
        term, trunc = np.zeros(shape), np.zeros(shape)
        for idx in term_at:
            term[idx] = 1.0
        for idx in trunc_at:
            trunc[idx] = 1.0
        nv = np.concatenate([v[1:], np.round(rng.normal(2.0, 1.0, size=(1,) + shape[1:]), 3)], axis=0)
        ends = (term + trunc) > 0  # at an episode end V(s_{t+1}) is the final observation's value
        nv[ends] = np.round(rng.normal(5.0, 1.0, size=int(ends.sum())), 3)
        return r, v, nv, term, trunc

    cases = [
        ("a single episode, no ends (T,)", rollout((6,)), 0.99, 0.95,
         "δ_t = r_t + γ V(s_{t+1}) − V(s_t) and A_t = δ_t + γλ A_{t+1}, computed backwards from the last step."),
        ("a termination at t=2", rollout((6,), term_at=[2]), 0.9, 0.8,
         "at a termination the future is worth 0: no γ·V(s_{t+1}) in δ_t, and A_t does not add A_{t+1}."),
        ("a truncation at t=3 (bootstrap)", rollout((6,), trunc_at=[3]), 0.9, 0.8,
         "at a truncation δ_t still bootstraps with γ·next_values[t] (the time limit is not death), "
         "but A_t does not add A_{t+1}, which belongs to the next episode."),
        ("a (T, N) batch with both kinds of ends", rollout((7, 3), term_at=[(1, 0), (4, 2)],
                                                           trunc_at=[(3, 1), (5, 0)]), 0.95, 0.9,
         "handle (T, N) arrays: loop over time only, every env (column) at once; the masks are per (t, env)."),
        ("λ = 0 (one-step TD error)", rollout((5, 2), term_at=[(2, 1)], trunc_at=[(3, 0)]), 0.9, 0.0,
         "with λ = 0, A_t = δ_t, the one-step TD error."),
        ("λ = 1 (Monte-Carlo return minus V)", rollout((5, 2), term_at=[(1, 0)], trunc_at=[(2, 1)]), 0.9, 1.0,
         "with λ = 1, A_t = Σ_k γ^k δ_{t+k} = (discounted return, bootstrapped at the end) − V(s_t)."),
    ]
    for name, (r, v, nv, term, trunc), gamma, lam, hint in cases:
        expected = compute_gae(r, v, nv, term, trunc, gamma, lam)[0].numpy().astype(np.float64)
        mistakes = [
            (_gae_np(r, v, nv, term, trunc, gamma, lam, bootstrap_term=True),
             "this bootstraps through the termination: multiply γ·next_values[t] by (1 − terminated[t])."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam, bootstrap_trunc=False),
             "this treats the truncation as a termination: at a time limit δ_t must still add "
             "γ·next_values[t]; only `terminated` removes it."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam, stop_at_trunc=False),
             "the recursion crosses the truncation into the next episode: A_t may add A_{t+1} only if "
             "step t neither terminated nor was truncated (mask with (1−term)(1−trunc))."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam, next_from_values=True),
             "use next_values[t] for V(s_{t+1}): at an episode end values[t+1] is the reset state of "
             "the next episode, not the final observation."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam) + v,
             "you returned the value targets (A + V); return the advantages A (or the pair (A, A + V))."),
        ]
        args = _convert(backend, r, v, nv, term, trunc)
        out = chk.call(name, *args, gamma, lam)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


def ppo_clip_loss_reference(new_logp, old_logp, advantages, clip_coef):
    """Notebook 03's exercise, solved: the loss of ``ppo.ppo_policy_loss`` (without its stats)."""
    return ppo_policy_loss(new_logp, old_logp, advantages, clip_coef)[0]


@with_reference(ppo_clip_loss_reference)
def check_ppo_clip_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check PPO's clipped surrogate loss ``fn(new_logp, old_logp, advantages, clip_coef)``.

    Notebook 03. Compared with ``ppo.ppo_policy_loss``: with ρ = exp(new_logp − old_logp),
    :math:`L = -\mathbb{E}[\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon) A)]`. Inputs are
    float32 tensors of shape ``(B,)``; your function may return the loss or ``(loss, stats)``.
    Hidden cases: positive and negative advantages with the ratio inside the clip range, above
    1 + ε and below 1 − ε, a mixed batch, and the gradient with respect to ``new_logp`` (zero
    where the clipped term is the minimum).
    """
    chk = _Checker("check_ppo_clip_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    eps = 0.2
    cases = [
        ("A > 0, ratio inside [1−ε, 1+ε]", [1.05, 0.9, 1.1], [1.0, 2.0, 0.5],
         "inside the clip range the loss is −mean(ρ·A)."),
        ("A > 0, ratio above 1+ε (clipped)", [1.5, 2.0, 1.3], [1.0, 0.5, 2.0],
         "with A > 0 the gain stops at ρ = 1+ε: min(ρA, clip(ρ)A) picks the clipped term."),
        ("A > 0, ratio below 1−ε (not clipped)", [0.5, 0.6, 0.7], [1.0, 2.0, 0.5],
         "with A > 0 and ρ < 1−ε the min picks the *unclipped* ρA (the pessimistic bound): "
         "clipping only removes incentives, it never rewards going further."),
        ("A < 0, ratio below 1−ε (clipped)", [0.5, 0.6, 0.7], [-1.0, -2.0, -0.5],
         "with A < 0 the gain stops at ρ = 1−ε: the min picks clip(ρ)·A."),
        ("A < 0, ratio above 1+ε (not clipped)", [1.5, 2.0, 1.3], [-1.0, -0.5, -2.0],
         "with A < 0 and ρ > 1+ε the min picks the unclipped ρA: a bad action made more likely is "
         "fully penalised."),
        ("a mixed batch, ε = 0.1", [0.8, 1.05, 1.3, 0.95, 1.2, 0.7], [1.0, -1.0, 2.0, -0.5, -1.5, -1.0],
         "ρ = exp(new_logp − old_logp); clip with the given clip_coef, not a fixed 0.2."),
    ]

    def tensors(ratios, adv):
        old = torch.log(torch.linspace(0.2, 0.6, len(ratios)))
        new = old + torch.log(torch.tensor(ratios, dtype=torch.float32))
        return new, old, torch.tensor(adv, dtype=torch.float32)

    for name, ratios, adv, hint in cases:
        clip = 0.1 if "ε = 0.1" in name else eps
        new, old, a = tensors(ratios, adv)
        expected = float(ppo_policy_loss(new, old, a, clip)[0])
        rho = (new - old).exp()
        unc, clipped = rho * a, torch.clamp(rho, 1 - clip, 1 + clip) * a
        mistakes = [
            (float(-torch.max(unc, clipped).mean()),
             "use min(ρA, clip(ρ)A), not max: PPO takes the pessimistic (lower) bound of the objective."),
            (float(torch.min(unc, clipped).mean()),
             "return *minus* the clipped objective: the optimiser minimises the loss."),
            (float(-clipped.mean()),
             "take min(ρA, clip(ρ)A): using only the clipped term drops the pessimistic bound."),
            (float(-unc.mean()), "clip the ratio to [1 − clip_coef, 1 + clip_coef]."),
            (float(-torch.min((new - old) * a, torch.clamp(new - old, -clip, clip) * a).mean()),
             "ρ is the probability ratio exp(new_logp − old_logp), not the log difference."),
        ]
        out = chk.call(name, *tensors(ratios, adv), clip)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    ratios, adv = [0.5, 1.05, 1.5, 0.6, 1.4, 0.95], [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    _grad_case(chk, "gradient with respect to new_logp",
               lambda: tensors(ratios, adv), lambda n, o, a: ppo_policy_loss(n, o, a, eps)[0], 0,
               "where the clipped term is the minimum the gradient is 0 (use torch.min / torch.clamp "
               "on tensors, keep old_logp and the advantages constant).", extra=(eps,))
    return chk.finish()


def value_loss_reference(new_values, old_values, returns, clip_coef):
    """Notebook 03's exercise, solved: ``ppo.ppo_value_loss``."""
    return ppo_value_loss(new_values, old_values, returns, clip_coef)


@with_reference(value_loss_reference)
def check_value_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check PPO's value loss ``fn(new_values, old_values, returns, clip_coef)`` (``clip_coef=None``: unclipped).

    Notebook 03 (exercise 4, value clipping). Compared with ``ppo.ppo_value_loss``:
    unclipped :math:`\tfrac12\mathbb{E}[(V - \hat R)^2]`; clipped
    :math:`\tfrac12\mathbb{E}[\max((V-\hat R)^2, (V_{old} + \mathrm{clip}(V - V_{old}, -\epsilon, \epsilon) - \hat R)^2)]`.
    Inputs are float32 tensors ``(B,)``. Hidden cases: unclipped, clipped with small moves
    (nothing clipped), clipped with large moves both ways, and the gradient.
    """
    chk = _Checker("check_value_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    old = [1.0, 2.0, -1.0, 0.5, 3.0]
    ret = [1.5, 1.0, 0.0, 2.5, 2.0]
    cases = [
        ("unclipped (clip_coef=None)", [1.2, 1.8, -0.6, 1.5, 2.4], None,
         "without clipping the loss is ½·mean((V − R̂)²); accept clip_coef=None."),
        ("clipped, every move smaller than ε", [1.1, 1.9, -0.9, 0.6, 2.95], 0.2,
         "when |V − V_old| ≤ ε nothing is clipped and the loss equals the unclipped one."),
        ("clipped, large moves towards and past the target", [2.0, 0.2, 0.8, 2.0, 1.0], 0.2,
         "clip the *move* around the old value, V_old + clip(V − V_old, −ε, ε), then take the max "
         "of the two squared errors (the pessimistic one), and ½·mean."),
        ("clipped, ε = 0.5, mixed", [1.2, 3.0, -2.0, 0.7, 3.2], 0.5,
         "use the given clip_coef; clip around old_values, not around the returns."),
    ]

    def tensors(new):
        return (torch.tensor(new, dtype=torch.float32), torch.tensor(old, dtype=torch.float32),
                torch.tensor(ret, dtype=torch.float32))

    for name, new, clip, hint in cases:
        n, o, r = tensors(new)
        expected = float(ppo_value_loss(n, o, r, clip))
        unc = (n - r) ** 2
        c = 0.0 if clip is None else clip
        vc = o + torch.clamp(n - o, -c, c)
        mistakes = [
            (2 * expected, "the package's value loss has the factor ½: 0.5 · mean(squared error)."),
            (float(0.5 * torch.min(unc, (vc - r) ** 2).mean()),
             "take the max of the clipped and unclipped squared errors, not the min."),
            (float(0.5 * ((vc - r) ** 2).mean()),
             "use max(unclipped error, clipped error), not the clipped error alone."),
            (float(0.5 * ((r + torch.clamp(n - r, -c, c) - r) ** 2).mean()) if clip is not None else math.nan,
             "clip the new value around old_values (V_old ± ε), not around the returns."),
            (float(0.5 * unc.mean()) if clip is not None else math.nan,
             "with a clip_coef, also compute the clipped error and take the max."),
        ]
        out = chk.call(name, *tensors(new), clip)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, [m for m in mistakes if np.isfinite(m[0])]))
    _grad_case(chk, "gradient with respect to new_values (clipped)",
               lambda: tensors([2.0, 0.2, 0.8, 2.0, 1.0]), lambda n, o, r: ppo_value_loss(n, o, r, 0.2), 0,
               "the gradient flows through V (new_values); old_values and the returns are constants.",
               extra=(0.2,))
    return chk.finish()


def soft_q_target_reference(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha):
    """Notebook 03's exercise, solved: ``sac.soft_q_target``."""
    return soft_q_target(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha)


@with_reference(soft_q_target_reference)
def check_soft_q_target(fn, verbose: bool = True) -> CheckResult:
    r"""Check SAC's soft Bellman target ``fn(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha)``.

    Notebook 03 (SAC). Compared with ``sac.soft_q_target``:
    :math:`y = r + \gamma(1-\mathrm{term})\,[\min(Q'_1, Q'_2) - \alpha\log\pi(a'|s')]`. Inputs are
    float32 tensors ``(B,)`` (``terminated`` holds 0.0/1.0). Hidden cases: no episode ends, a
    termination, a truncated step (``terminated = 0``: it still bootstraps), α = 0, a large α.
    """
    chk = _Checker("check_soft_q_target", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(5)

    def batch(term):
        B = len(term)
        return (np.round(rng.normal(size=B), 3), np.array(term, dtype=np.float64),
                np.round(rng.normal(3, 1, size=B), 3), np.round(rng.normal(3, 1, size=B), 3),
                np.round(rng.normal(-1, 0.5, size=B), 3))

    cases = [
        ("no episode ends", batch([0, 0, 0, 0]), 0.99, 0.2,
         "y = r + γ·(min(Q'_1, Q'_2) − α·log π(a'|s'))."),
        ("a termination", batch([0, 1, 0, 1]), 0.99, 0.2,
         "after a termination the future is worth 0: y = r (no Q' and no entropy term)."),
        ("a truncated step (terminated=0)", batch([0, 0, 0]), 0.9, 0.1,
         "a time-limit truncation is not in `terminated`: those steps still bootstrap."),
        ("α = 0 (no entropy bonus)", batch([0, 1, 0]), 0.9, 0.0,
         "with α = 0 the target is the clipped double-Q target r + γ(1 − term)·min(Q'_1, Q'_2)."),
        ("a large α = 1.5", batch([1, 0, 0, 0, 1]), 0.95, 1.5,
         "the entropy bonus is −α·log π (log π < 0, so it *adds* value), inside γ(1 − term)."),
    ]
    for name, (r, term, q1, q2, lp), gamma, alpha, hint in cases:
        T = [torch.tensor(x, dtype=torch.float32) for x in (r, term, q1, q2, lp)]
        expected = soft_q_target(*T, gamma, alpha).numpy().astype(np.float64)
        nt = 1.0 - term
        mistakes = [
            (r + gamma * nt * (np.maximum(q1, q2) - alpha * lp),
             "take the min of the two target critics (clipped double Q), not the max."),
            (r + gamma * nt * ((q1 + q2) / 2 - alpha * lp), "take the min of the two target critics, not their mean."),
            (r + gamma * nt * (np.minimum(q1, q2) + alpha * lp),
             "the entropy term is −α·log π(a'|s') (minus): high entropy means a *larger* soft value."),
            (r + gamma * (np.minimum(q1, q2) - alpha * lp),
             "multiply the future by (1 − terminated): no bootstrap after a real end."),
            (r - alpha * lp + gamma * nt * np.minimum(q1, q2),
             "the −α·log π term belongs to the next state's soft value, inside γ(1 − term)[...]."),
        ]
        out = chk.call(name, *[t.clone() for t in T], gamma, alpha)
        if out is not _FAILED:
            chk.add(name, _compare(out, expected, hint, mistakes))
    return chk.finish()


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'In GAE, which λ gives A_t = δ_t = r_t + γV(s_{t+1}) − V(s_t), low variance but biased by V?',
        ('λ = 0.95', 'λ = 1', 'λ = γ', 'λ = 0',),
        3,
        'λ = 0 is the one-step TD error; λ = 1 is the Monte-Carlo return minus V (unbiased, high variance).'),
    Question(
        'PPO with ε = 0.2, a sample with A > 0 and ratio ρ = 1.5. Its gradient through the clipped objective is',
        ('large and positive', 'negative', 'zero: the clipped term is the minimum and does not depend on φ', 'undefined',),
        2,
        'min(ρA, clip(ρ)A) = 1.2·A is constant in φ, so the sample stops pushing ρ further up.'),
    Question(
        'approx_kl and clipfrac jump during training. The most likely cause is',
        ('too small a learning rate', 'the policy moved far from the one that collected the batch (too large a step or too many epochs)', 'the value function is perfect', 'the environment is deterministic',),
        1,
        'Both measure how far the new policy is from the old one on the batch.'),
    Question(
        "What does the −α·log π term in SAC's soft target reward?",
        ('keeping the policy random (high entropy), which helps exploration', 'short episodes', 'agreeing with the twin critic', 'large actions',),
        0,
        '−log π is large when the policy spreads its probability: SAC maximises return plus entropy.'),
]
