"""Notebook 09's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

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
from rlhf_tutorial import lm_rlhf as L


def _score_in_last_column(scores, logp, ref_logp, mask, beta):
    kl = (logp - ref_logp) * mask
    rewards = -beta * kl
    rewards[:, -1] += scores
    return rewards, kl


def _kl_unmasked(scores, logp, ref_logp, mask, beta):
    kl = logp - ref_logp
    rewards = -beta * kl
    rewards[torch.arange(len(scores)), mask.sum(1).long() - 1] += scores
    return rewards, kl


def _plain_mean(new_logp, old_logp, adv, new_v, old_v, returns, mask, clip=0.2, clip_v=0.2, vf_coef=0.1):
    ratio = torch.exp(new_logp - old_logp)
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    v_clipped = old_v + (new_v - old_v).clamp(-clip_v, clip_v)
    vf = 0.5 * torch.max((new_v - returns) ** 2, (v_clipped - returns) ** 2)
    return pg.mean() + vf_coef * vf.mean()


def _no_value_loss(new_logp, old_logp, adv, new_v, old_v, returns, mask, clip=0.2, clip_v=0.2, vf_coef=0.1):
    ratio = torch.exp(new_logp - old_logp)
    pg = torch.max(-adv * ratio, -adv * ratio.clamp(1 - clip, 1 + clip))
    return (pg * mask).sum() / mask.sum()


def _token_gae_forward(r, v, m, gamma, lam):
    out, acc = torch.zeros_like(r), torch.zeros(r.shape[0])
    for t in range(r.shape[1]):
        nv = v[:, t + 1] * m[:, t + 1] if t + 1 < r.shape[1] else torch.zeros_like(acc)
        acc = (r[:, t] + gamma * nv - v[:, t] + gamma * lam * acc) * m[:, t]
        out[:, t] = acc
    return out


CORRECT = [
    (checks.check_token_gae, L.token_gae),
    (checks.check_token_gae, lambda r, v, m, g, lam: L.token_gae(r, v, m, g, lam)[0].numpy()),
    (checks.check_shaped_rewards, lambda s, lp, ref, m, b: L.compute_rewards(s, lp, ref, m, b)[:2]),
    (checks.check_lm_ppo_loss, lambda *a: L.lm_ppo_loss(*a[:7], clip_coef=a[7], clip_value=a[8], vf_coef=a[9])),
]
WRONG = [
    (checks.check_token_gae, lambda r, v, m, g, lam: L.token_gae(r, v, torch.ones_like(m), g, lam)[0] * m, "padding"),
    (checks.check_token_gae, _token_gae_forward, "backwards"),
    (checks.check_shaped_rewards, _score_in_last_column, "last real token"),
    (checks.check_shaped_rewards, _kl_unmasked, "mask"),
    (checks.check_lm_ppo_loss, _plain_mean, "real tokens"),
    (checks.check_lm_ppo_loss, _no_value_loss, "Hint"),
]


def test_shaped_rewards_must_return_a_pair(capsys):
    res = checks.check_shaped_rewards(lambda s, lp, ref, m, b: L.compute_rewards(s, lp, ref, m, b)[0])
    assert not res and "(rewards, kl)" in capsys.readouterr().out


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb09)
