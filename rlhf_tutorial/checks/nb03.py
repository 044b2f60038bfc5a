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

__all__ = ["gae_reference", "check_gae", "ppo_clip_loss_reference", "check_ppo_clip_loss", "value_loss_reference", "check_value_loss", "soft_q_target_reference", "check_soft_q_target",
           "nstep_advantage_reference", "check_nstep_advantage", "dual_clip_loss_reference", "check_dual_clip_loss",
           "soft_value_discrete_reference", "check_soft_value_discrete"]



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


def _random_rollout(rng, shape, term_at=(), trunc_at=()):
    """A random rollout (rewards, values, next values, terminated, truncated) for the hidden cases of notebook 03."""
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
        return _random_rollout(rng, shape, term_at, trunc_at)

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


# --------------------------------------------------------------------------- notebook 03's exercises (variants)
def _nstep_np(r, v, nv, term, trunc, gamma, n, bootstrap_term=False, cross_episodes=False, next_from_values=False):
    """A reference n-step advantage with switches that reproduce the typical mistakes (for hints)."""
    r, v, nv, term, trunc = (np.asarray(x, dtype=np.float64) for x in (r, v, nv, term, trunc))
    if next_from_values:
        nv = np.concatenate([v[1:], nv[-1:]], axis=0)
    T = len(r)
    adv = np.zeros_like(r)
    for t in range(T):
        steps = min(int(n), T - t)
        G, disc, alive = np.zeros_like(v[t]), 1.0, np.ones_like(v[t])
        for k in range(steps):
            G = G + alive * disc * r[t + k]
            disc *= gamma
            ended = np.zeros_like(v[t]) if cross_episodes else np.maximum(term[t + k], trunc[t + k])
            stops = alive * np.maximum(ended, float(k == steps - 1))
            G = G + stops * (1.0 if bootstrap_term else 1.0 - term[t + k]) * disc * nv[t + k]
            alive = alive * (1.0 - ended)
        adv[t] = G - v[t]
    return adv


def nstep_advantage_reference(rewards, values, next_values, terminated, truncated, gamma, n):
    r"""Notebook 03's exercise 1, solved: the n-step advantage :math:`\sum_{l<k}\gamma^l r_{t+l} + \gamma^k V(s_{t+k}) - V(s_t)`.

    The sum stops after :math:`k \le n` steps: at an episode end (no bootstrap after a termination,
    ``next_values`` after a truncation) or at the rollout's end. NumPy in, float64 NumPy out, ``(T,)`` or ``(T, N)``.
    """
    return _nstep_np(rewards, values, next_values, terminated, truncated, gamma, n)


@with_reference(nstep_advantage_reference)
def check_nstep_advantage(fn, verbose: bool = True) -> CheckResult:
    r"""Check an n-step advantage ``fn(rewards, values, next_values, terminated, truncated, gamma, n)``.

    Notebook 03 (exercise 1). Arrays ``(T,)`` or ``(T, N)``, time first, as for :func:`check_gae`.
    Hidden cases: n = 1 (the TD error, GAE with λ = 0), n ≥ T (GAE with λ = 1), n = 3 with a
    termination and a truncation inside the window, a ``(T, N)`` batch, γ = 1.
    """
    chk = _Checker("check_nstep_advantage", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(13)

    def rollout(shape, term_at=(), trunc_at=()):
        return _random_rollout(rng, shape, term_at, trunc_at)

    cases = [
        ("n = 1: the one-step TD error", rollout((6,), term_at=[2]), 0.9, 1,
         "with n = 1, Â_t = r_t + γ(1 − term_t)·next_values[t] − V(s_t) (GAE with λ = 0)."),
        ("n ≥ T: Monte-Carlo to the episode's end", rollout((6,), trunc_at=[3]), 0.9, 10,
         "with n ≥ T the sum runs to the end of the episode or of the rollout, then bootstraps (GAE with λ = 1)."),
        ("n = 3, a termination inside the window", rollout((7,), term_at=[3]), 0.95, 3,
         "stop the sum at the termination and add no γ^k·V after it: the future of a real end is 0."),
        ("n = 3, a truncation inside the window", rollout((7,), trunc_at=[2]), 0.95, 3,
         "stop the sum at the truncation but bootstrap with next_values[t + k − 1] (the final observation)."),
        ("a (T, N) batch, n = 2", rollout((6, 3), term_at=[(1, 0)], trunc_at=[(3, 2)]), 0.9, 2,
         "loop over time; every env (column) at once; the episode ends are per (t, env)."),
        ("γ = 1, n = 4", rollout((8,), term_at=[5]), 1.0, 4, "with γ = 1 the rewards are summed undiscounted."),
    ]
    for name, (r, v, nv, term, trunc), gamma, n, hint in cases:
        expected = _nstep_np(r, v, nv, term, trunc, gamma, n)
        mistakes = [
            (_nstep_np(r, v, nv, term, trunc, gamma, n, bootstrap_term=True),
             "no bootstrap after a termination: multiply γ^k·next_values by (1 − terminated)."),
            (_nstep_np(r, v, nv, term, trunc, gamma, n, cross_episodes=True),
             "the sum crosses an episode end: stop at the first step that terminated or was truncated."),
            (_nstep_np(r, v, nv, term, trunc, gamma, n, next_from_values=True),
             "bootstrap with next_values[t + k − 1], not values[t + k] (at an end that is the next episode's start)."),
            (_nstep_np(r, v, nv, term, trunc, gamma, n + 1), "take at most n rewards: l = 0 … n − 1, then γ^n·V."),
            (_nstep_np(r, v, nv, term, trunc, gamma, n) + v, "return the advantage (minus V(s_t)), not the n-step return."),
        ]
        out = chk.call(name, r.copy(), v.copy(), nv.copy(), term.copy(), trunc.copy(), gamma, n)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


def dual_clip_loss_reference(new_logp, old_logp, adv, eps, c=3.0):
    r"""Notebook 03's exercise 2, solved: dual-clip PPO (Ye et al. 2020), minus the mean objective.

    :math:`\max(\min(\rho\hat A, \mathrm{clip}(\rho, 1\pm\epsilon)\hat A),\ c\hat A)` where :math:`\hat A < 0`,
    PPO's objective where :math:`\hat A \ge 0`.
    """
    ratio = torch.exp(new_logp - old_logp)
    obj = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
    return -torch.where(adv < 0, torch.max(obj, c * adv), obj).mean()


@with_reference(dual_clip_loss_reference)
def check_dual_clip_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check dual-clip PPO's loss ``fn(new_logp, old_logp, adv, eps, c=3.0) -> scalar tensor``.

    Notebook 03 (exercise 2). float32 tensors ``(B,)``. Hidden cases: good actions only (plain PPO),
    bad actions with ratios below c (plain PPO), bad actions with ratios above c (the floor c·Â), a
    mixed batch with ``c = 2`` passed explicitly, and the gradient (0 where the floor binds).
    """
    chk = _Checker("check_dual_clip_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()

    def tensors(ratios, adv):
        old = torch.log(torch.linspace(0.2, 0.6, len(ratios)))
        return old + torch.log(torch.tensor(ratios, dtype=torch.float32)), old, torch.tensor(adv, dtype=torch.float32)

    cases = [
        ("good actions only (Â > 0)", [0.5, 1.1, 1.5, 5.0], [1.0, 2.0, 0.5, 1.0], None,
         "for Â ≥ 0 the loss is PPO's: −mean(min(ρÂ, clip(ρ)Â))."),
        ("bad actions, ratios below c", [0.5, 1.1, 1.5, 2.5], [-1.0, -2.0, -0.5, -1.0], None,
         "while ρ < c the floor c·Â is below PPO's objective, so nothing changes."),
        ("bad actions, ratios above c (the floor)", [4.0, 6.0, 10.0], [-1.0, -0.5, -2.0], None,
         "for Â < 0 and ρ > c the objective is c·Â: max(PPO's objective, c·Â)."),
        ("a mixed batch, c = 2", [0.7, 1.3, 2.5, 4.0, 1.0, 3.0], [1.0, -1.0, -1.0, 2.0, -0.5, -1.5], 2.0,
         "use the c argument; the floor only applies where Â < 0."),
    ]
    for name, ratios, adv, c, hint in cases:
        new, old, a = tensors(ratios, adv)
        cc = 3.0 if c is None else c
        expected = float(dual_clip_loss_reference(new, old, a, 0.2, cc))
        rho = (new - old).exp()
        obj = torch.min(rho * a, torch.clamp(rho, 0.8, 1.2) * a)
        mistakes = [
            (float(-torch.max(obj, cc * a).mean()), "apply the floor c·Â only where Â < 0 (torch.where(adv < 0, ...))."),
            (float(torch.where(a < 0, torch.max(obj, cc * a), obj).mean()), "return minus the mean objective: it is minimised."),
            (float(-torch.where(a < 0, torch.min(obj, cc * a), obj).mean()),
             "the floor bounds the objective from below: max(PPO's objective, c·Â), not min."),
            (float(-obj.mean()), "add the second clip: for Â < 0 and ρ > c the objective is c·Â."),
        ]
        args = tensors(ratios, adv)
        out = chk.call(name, *args, 0.2) if c is None else chk.call(name, *args, 0.2, c)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    _grad_case(chk, "gradient with respect to new_logp", lambda: tensors([0.5, 1.1, 6.0, 4.0], [1.0, -1.0, -1.0, -2.0]),
               lambda n, o, a: dual_clip_loss_reference(n, o, a, 0.2, 3.0), 0,
               "where the floor c·Â binds the objective does not depend on ρ: its gradient is 0.", extra=(0.2,))
    return chk.finish()


def soft_value_discrete_reference(probs, q1, q2, alpha):
    r"""Notebook 03's exercise 6, solved: :math:`V(s') = \sum_a \pi(a|s')[\min_j Q'_j(s', a) - \alpha\log\pi(a|s')]`.

    ``probs``, ``q1``, ``q2``: tensors ``(B, A)``; returns ``(B,)``. A zero probability contributes 0 (0·log 0 = 0).
    """
    logp = torch.log(probs.clamp_min(1e-30))
    return (probs * (torch.min(q1, q2) - alpha * logp)).sum(-1)


@with_reference(soft_value_discrete_reference)
def check_soft_value_discrete(fn, verbose: bool = True) -> CheckResult:
    r"""Check SAC-discrete's exact soft value ``fn(probs, q1, q2, alpha) -> (B,)``.

    Notebook 03 (exercise 6; Christodoulou 2019). float32 tensors ``(B, A)``. Hidden cases: a random
    batch, α = 0, a deterministic (one-hot) policy (0·log 0 must be 0, not NaN), a uniform policy with
    a large α (the entropy bonus is α·log A), two actions.
    """
    chk = _Checker("check_soft_value_discrete", fn, verbose)
    if not chk.ok:
        return chk.finish()
    g = torch.Generator().manual_seed(17)

    def qs(B, A):
        return torch.randn(B, A, generator=g), torch.randn(B, A, generator=g)

    probs = torch.softmax(torch.randn(6, 4, generator=g), -1)
    cases = [
        ("a random batch, α = 0.2", probs, *qs(6, 4), 0.2,
         "V(s') = Σ_a π(a|s')·[min(Q'_1, Q'_2)(s', a) − α·log π(a|s')], one value per row."),
        ("α = 0", probs, *qs(6, 4), 0.0, "with α = 0 it is the expected clipped double-Q value Σ_a π(a)·min_j Q'_j."),
        ("a deterministic policy (one-hot)", torch.eye(4)[[0, 2, 3]], *qs(3, 4), 0.5,
         "0·log 0 is 0: clamp the probabilities before the log (or use torch.xlogy), or the row becomes NaN."),
        ("a uniform policy, α = 2", torch.full((3, 5), 0.2), *qs(3, 5), 2.0,
         "the entropy bonus of a uniform policy over A actions is α·log A."),
        ("two actions", torch.tensor([[0.9, 0.1], [0.3, 0.7]]), *qs(2, 2), 0.1,
         "sum over the actions (dim −1), weighted by their probabilities."),
    ]
    for name, p, q1, q2, alpha, hint in cases:
        expected = soft_value_discrete_reference(p, q1, q2, alpha).numpy()
        lp = torch.log(p.clamp_min(1e-30))
        m = torch.min(q1, q2)
        mistakes = [
            ((p * (torch.max(q1, q2) - alpha * lp)).sum(-1).numpy(), "take the min of the twin critics, not the max."),
            ((p * (m + alpha * lp)).sum(-1).numpy(), "the entropy term is −α·log π (it adds value)."),
            ((p * (m - alpha * lp)).mean(-1).numpy(), "sum over the actions (the expectation), do not average them."),
            ((m - alpha * lp).sum(-1).numpy(), "weight each action by its probability π(a|s')."),
        ]
        out = chk.call(name, p.clone(), q1.clone(), q2.clone(), alpha)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()
