"""Notebook 03's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

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
from rlhf_tutorial.ppo import ppo_policy_loss, ppo_value_loss
from rlhf_tutorial.rl import compute_gae
from rlhf_tutorial.sac import soft_q_target


def gae_numpy(rewards, values, next_values, terminated, truncated, gamma, lam):
    """The notebook-03 inline version (NumPy, returns (advantages, targets))."""
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros_like(rewards[0], dtype=np.float64)
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]
        last = delta + gamma * lam * (1 - terminated[t]) * (1 - truncated[t]) * last
        adv[t] = last
    return adv, adv + values


def _gae_bootstrap_through_termination(r, v, nv, term, trunc, gamma, lam):
    return compute_gae(r, v, nv, np.zeros_like(term), trunc, gamma, lam)


def _gae_truncation_as_death(r, v, nv, term, trunc, gamma, lam):
    return compute_gae(r, v, nv, np.clip(term + trunc, 0, 1), trunc, gamma, lam)


def _gae_values_shifted(r, v, nv, term, trunc, gamma, lam):
    nv = np.concatenate([v[1:], nv[-1:]], axis=0)
    return compute_gae(r, v, nv, term, trunc, gamma, lam)


def _ppo_max(new, old, adv, clip):
    ratio = (new - old).exp()
    return -torch.max(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()


def _value_min(new, old, ret, clip):
    if clip is None:
        return 0.5 * ((new - ret) ** 2).mean()
    v_clipped = old + torch.clamp(new - old, -clip, clip)
    return 0.5 * torch.min((new - ret) ** 2, (v_clipped - ret) ** 2).mean()


def _nstep_bootstrap_through_termination(r, v, nv, term, trunc, gamma, n):
    return checks.nstep_advantage_reference(r, v, nv, np.zeros_like(term), np.maximum(term, trunc), gamma, n)


def _dual_clip_everywhere(new, old, adv, eps, c=3.0):
    ratio = torch.exp(new - old)
    obj = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
    return -torch.max(obj, c * adv).mean()


CORRECT = [
    (checks.check_gae, compute_gae),
    (checks.check_gae, gae_numpy),
    (checks.check_gae, lambda *a: compute_gae(*a)[0]),  # advantages only, a torch tensor
    (checks.check_ppo_clip_loss, ppo_policy_loss),  # returns (loss, stats)
    (checks.check_value_loss, ppo_value_loss),
    (checks.check_soft_q_target, soft_q_target),
    (checks.check_nstep_advantage, checks.nstep_advantage_reference),
    (checks.check_dual_clip_loss, checks.dual_clip_loss_reference),
    (checks.check_soft_value_discrete, checks.soft_value_discrete_reference),
    (checks.check_soft_value_discrete,
     lambda p, q1, q2, a: (torch.xlogy(p, p) * -a + p * torch.min(q1, q2)).sum(-1)),
]
WRONG = [
    (checks.check_gae, _gae_bootstrap_through_termination, "bootstraps through the termination"),
    (checks.check_gae, _gae_truncation_as_death, "treats the truncation as a termination"),
    (checks.check_gae, _gae_values_shifted, "use next_values[t]"),
    (checks.check_gae, lambda *a: compute_gae(*a)[1], "value targets"),
    (checks.check_ppo_clip_loss, _ppo_max, "not max"),
    (checks.check_ppo_clip_loss, lambda n, o, a, c: -ppo_policy_loss(n, o, a, c)[0], "minus"),
    (checks.check_ppo_clip_loss, lambda n, o, a, c: ppo_policy_loss(n, o, a, c)[0].item(), "without a gradient"),
    (checks.check_value_loss, lambda n, o, r, c: ((n - r) ** 2).mean(), "factor ½"),
    (checks.check_value_loss, _value_min, "not the min"),
    (checks.check_soft_q_target, lambda r, t, q1, q2, lp, g, a: r + g * (1 - t) * (torch.max(q1, q2) - a * lp),
     "not the max"),
    (checks.check_soft_q_target, lambda r, t, q1, q2, lp, g, a: r + g * (1 - t) * (torch.min(q1, q2) + a * lp),
     "−α·log π"),
    (checks.check_soft_q_target, lambda r, t, q1, q2, lp, g, a: r + g * (torch.min(q1, q2) - a * lp),
     "(1 − terminated)"),
    (checks.check_nstep_advantage, lambda *a: checks.nstep_advantage_reference(*a[:6], a[6] + 1), "at most n"),
    (checks.check_nstep_advantage, _nstep_bootstrap_through_termination, "no bootstrap after a termination"),
    (checks.check_dual_clip_loss, _dual_clip_everywhere, "only where Â < 0"),
    (checks.check_dual_clip_loss, lambda n, o, a, e, c=3.0: ppo_policy_loss(n, o, a, e)[0], "second clip"),
    (checks.check_soft_value_discrete, lambda p, q1, q2, a: (p * (torch.min(q1, q2) - a * torch.log(p))).sum(-1),
     "0·log 0"),
    (checks.check_soft_value_discrete,
     lambda p, q1, q2, a: (p * (torch.max(q1, q2) - a * torch.log(p.clamp_min(1e-30)))).sum(-1), "not the max"),
]



def test_gae_backend_torch(capsys):
    assert checks.check_gae(compute_gae, backend="torch")
    capsys.readouterr()


def test_learner_code_that_mutates_its_inputs_does_not_break_the_check(capsys):
    def mutating(r, v, nv, term, trunc, gamma, lam):
        adv = gae_numpy(r, v, nv, term, trunc, gamma, lam)[0]
        r *= 0
        v *= 0
        return adv

    assert checks.check_gae(mutating)
    capsys.readouterr()


def test_gae_reference_matches_the_input_type():
    r = np.ones(3)
    adv, ret = checks.gae_reference(r, np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3), 0.9, 0.9)
    assert isinstance(adv, np.ndarray) and adv.dtype == np.float64
    adv_t, _ = checks.gae_reference(*(torch.tensor(x) for x in (r, r * 0, r * 0, r * 0, r * 0)), 0.9, 0.9)
    assert isinstance(adv_t, torch.Tensor)


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb03)
