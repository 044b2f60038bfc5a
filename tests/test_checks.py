"""Exercise checkers: pass on the package's functions, fail with a useful hint on typical mistakes,
and never raise when the learner's function raises or returns the wrong shape."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rlhf_tutorial import checks
from rlhf_tutorial.checks import CheckResult
from rlhf_tutorial.ppo import ppo_policy_loss, ppo_value_loss
from rlhf_tutorial.reinforce import reinforce_loss
from rlhf_tutorial.rl import compute_gae, discounted_returns
from rlhf_tutorial.sac import soft_q_target
from rlhf_tutorial.tabular import q_learning_update


# --------------------------------------------------------------------------- learner-style solutions
def rtg_numpy(rewards, gamma):
    out, running = np.zeros(len(rewards)), 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        out[t] = running
    return out


def gae_numpy(rewards, values, next_values, terminated, truncated, gamma, lam):
    """The notebook-03 inline version (NumPy, returns (advantages, targets))."""
    adv = np.zeros_like(rewards, dtype=np.float64)
    last = np.zeros_like(rewards[0], dtype=np.float64)
    for t in reversed(range(len(rewards))):
        delta = rewards[t] + gamma * (1 - terminated[t]) * next_values[t] - values[t]
        last = delta + gamma * lam * (1 - terminated[t]) * (1 - truncated[t]) * last
        adv[t] = last
    return adv, adv + values


def bt_softplus(r1, r2, y):
    d = r1 - r2
    return (y * F.softplus(-d) + (1 - y) * F.softplus(d)).mean()


CORRECT = [
    (checks.check_discounted_returns, discounted_returns),
    (checks.check_discounted_returns, rtg_numpy),
    (checks.check_gae, compute_gae),
    (checks.check_gae, gae_numpy),
    (checks.check_gae, lambda *a: compute_gae(*a)[0]),  # advantages only, a torch tensor
    (checks.check_reinforce_loss, lambda lp, g, b: reinforce_loss(lp, g, b, normalize=False)),
    (checks.check_reinforce_loss, lambda lp, g, b: -(lp * (g - (0.0 if b is None else b))).mean()),
    (checks.check_ppo_clip_loss, ppo_policy_loss),  # returns (loss, stats)
    (checks.check_value_loss, ppo_value_loss),
    (checks.check_q_learning_update, q_learning_update),
    (checks.check_soft_q_target, soft_q_target),
    (checks.check_bradley_terry_loss, lambda r1, r2, y: F.binary_cross_entropy_with_logits(r1 - r2, y)),
    (checks.check_bradley_terry_loss, bt_softplus),
]


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    result = checker(fn)
    out = capsys.readouterr().out
    assert isinstance(result, CheckResult)
    assert result and result.passed and not result.failures, str(result)
    assert "✅" in out and "all" in out


def test_backend_torch_and_normalize_options(capsys):
    assert checks.check_gae(compute_gae, backend="torch")
    assert checks.check_discounted_returns(lambda r, g: discounted_returns(r.numpy(), g), backend="torch")
    assert checks.check_reinforce_loss(reinforce_loss, normalize=True)
    capsys.readouterr()


def test_q_learning_checker_accepts_returned_table_and_truncated_parameter(capsys):
    def returns_table(Q, s, a, r, s_next, terminated, alpha, gamma):
        Q = Q.copy()
        q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
        return Q

    def with_truncated(Q, s, a, r, s_next, terminated, alpha, gamma, truncated=False):
        return q_learning_update(Q, s, a, r, s_next, bool(terminated), alpha, gamma)

    assert checks.check_q_learning_update(returns_table)
    assert checks.check_q_learning_update(with_truncated)
    capsys.readouterr()


# --------------------------------------------------------------------------- typical wrong versions
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


def _ppo_no_minus(new, old, adv, clip):
    return -ppo_policy_loss(new, old, adv, clip)[0]


def _ppo_item(new, old, adv, clip):
    return ppo_policy_loss(new, old, adv, clip)[0].item()


def _value_min(new, old, ret, clip):
    if clip is None:
        return 0.5 * ((new - ret) ** 2).mean()
    v_clipped = old + torch.clamp(new - old, -clip, clip)
    return 0.5 * torch.min((new - ret) ** 2, (v_clipped - ret) ** 2).mean()


def _q_truncation_as_death(Q, s, a, r, s_next, terminated, alpha, gamma, truncated=False):
    return q_learning_update(Q, s, a, r, s_next, bool(terminated or truncated), alpha, gamma)


def _q_no_alpha(Q, s, a, r, s_next, terminated, alpha, gamma):
    target = r + (0.0 if terminated else gamma * Q[s_next].max())
    Q[s, a] = target


def _soft_q_max(r, term, q1, q2, logp, gamma, alpha):
    return r + gamma * (1 - term) * (torch.max(q1, q2) - alpha * logp)


def _soft_q_plus_entropy(r, term, q1, q2, logp, gamma, alpha):
    return r + gamma * (1 - term) * (torch.min(q1, q2) + alpha * logp)


def _soft_q_no_mask(r, term, q1, q2, logp, gamma, alpha):
    return r + gamma * (torch.min(q1, q2) - alpha * logp)


def _bt_naive(r1, r2, y):
    p = torch.sigmoid(r1 - r2)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


WRONG = [
    (checks.check_discounted_returns, lambda r, g: discounted_returns(r, g)[::-1], "reversed"),
    (checks.check_discounted_returns,
     lambda r, g: np.array([sum(g ** k * r[k] for k in range(t, len(r))) for t in range(len(r))]),
     "distance from t"),
    (checks.check_discounted_returns, lambda r, g: float(discounted_returns(r, g)[0]), "wrong shape"),
    (checks.check_gae, _gae_bootstrap_through_termination, "bootstraps through the termination"),
    (checks.check_gae, _gae_truncation_as_death, "treats the truncation as a termination"),
    (checks.check_gae, _gae_values_shifted, "use next_values[t]"),
    (checks.check_gae, lambda *a: compute_gae(*a)[1], "value targets"),
    (checks.check_reinforce_loss, lambda lp, g, b: (lp * (g - (0.0 if b is None else b))).mean(), "minus"),
    (checks.check_reinforce_loss, lambda lp, g, b: -(lp * g).mean(), "subtract the baseline"),
    (checks.check_reinforce_loss, lambda lp, g, b: -(lp * (g - (0.0 if b is None else b))).sum(), ".mean()"),
    (checks.check_ppo_clip_loss, _ppo_max, "not max"),
    (checks.check_ppo_clip_loss, _ppo_no_minus, "minus"),
    (checks.check_ppo_clip_loss, _ppo_item, "without a gradient"),
    (checks.check_value_loss, lambda n, o, r, c: ((n - r) ** 2).mean(), "factor ½"),
    (checks.check_value_loss, _value_min, "not the min"),
    (checks.check_q_learning_update, _q_truncation_as_death, "truncated transition still bootstraps"),
    (checks.check_q_learning_update, _q_no_alpha, "step size α"),
    (checks.check_soft_q_target, _soft_q_max, "not the max"),
    (checks.check_soft_q_target, _soft_q_plus_entropy, "−α·log π"),
    (checks.check_soft_q_target, _soft_q_no_mask, "(1 − terminated)"),
    (checks.check_bradley_terry_loss, lambda r1, r2, y: F.binary_cross_entropy_with_logits(r2 - r1, y),
     "sign is flipped"),
    (checks.check_bradley_terry_loss, _bt_naive, "logsigmoid"),
    (checks.check_bradley_terry_loss,
     lambda r1, r2, y: F.binary_cross_entropy_with_logits(r1 - r2, torch.round(y + 0.01)), "ties"),
]


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    result = checker(fn)
    out = capsys.readouterr().out
    assert not result and result.failures
    assert "❌" in out and "Hint" in out
    assert hint in out, out
    assert "Traceback" not in out


def test_every_checker_has_at_least_two_wrong_versions():
    counts = {}
    for checker, _, _ in WRONG:
        counts[checker] = counts.get(checker, 0) + 1
    assert set(counts) == {c for c, _ in CORRECT}
    assert min(counts.values()) >= 2


# --------------------------------------------------------------------------- never a traceback
ALL_CHECKERS = sorted({c for c, _ in CORRECT}, key=lambda c: c.__name__)


def _raises(*args, **kwargs):
    raise KeyError("oops, my bug")


def _wrong_shape(*args, **kwargs):
    return np.zeros((2, 3, 4))


def _returns_none(*args, **kwargs):
    return None


def _returns_text(*args, **kwargs):
    return "forty-two"


@pytest.mark.parametrize("checker", ALL_CHECKERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("bad", [_raises, _wrong_shape, _returns_none, _returns_text, 3],
                         ids=["raises", "wrong_shape", "none", "text", "not_callable"])
def test_checker_never_raises_on_broken_learner_code(checker, bad, capsys):
    result = checker(bad)
    out = capsys.readouterr().out
    assert isinstance(result, CheckResult) and not result
    assert "❌" in out and "Traceback" not in out
    if bad is _raises:
        assert "KeyError" in out and "oops, my bug" in out
        assert all("raised KeyError" in c.message for c in result.failures)
    elif isinstance(bad, int):
        assert "expected a function" in out


def test_learner_code_that_mutates_its_inputs_does_not_break_the_check(capsys):
    def mutating(r, v, nv, term, trunc, gamma, lam):
        adv = gae_numpy(r, v, nv, term, trunc, gamma, lam)[0]
        r *= 0
        v *= 0
        return adv

    assert checks.check_gae(mutating)
    capsys.readouterr()


def test_result_object_and_quiet_mode(capsys):
    result = checks.check_gae(compute_gae, verbose=False)
    assert capsys.readouterr().out == ""
    assert bool(result) and len(result.cases) == 6
    assert "passed=True" in repr(result) and "check_gae" in str(result)
    bad = checks.check_bradley_terry_loss(_bt_naive, verbose=False)
    assert not bad and [c.name for c in bad.failures] and "huge" in bad.failures[0].name
    assert capsys.readouterr().out == ""


def test_each_checker_names_its_notebook():
    expected = {"check_q_learning_update": "01", "check_discounted_returns": "02",
                "check_reinforce_loss": "02", "check_gae": "03", "check_ppo_clip_loss": "03",
                "check_value_loss": "03", "check_soft_q_target": "03", "check_bradley_terry_loss": "05"}
    for name, nb in expected.items():
        assert f"Notebook {nb}" in getattr(checks, name).__doc__, name
    assert set(expected) <= set(checks.__all__)
