"""GRPO and RLOO (notebook 10): group advantages by hand, the clipped loss, sampling, training, errors."""

import math

import pytest
import torch
from test_dpo import tiny_lm

from rlhf_tutorial.grpo import (
    GroupRLConfig,
    best_of_n,
    best_of_n_indices,
    best_of_n_kl,
    group_policy_loss,
    grpo_advantages,
    rloo_advantages,
    sample_groups,
    train_group_rl,
)


def test_grpo_advantages_by_hand():
    r = torch.tensor([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]])
    adv = grpo_advantages(r)
    torch.testing.assert_close(adv[0], torch.tensor([-1.0, 0.0, 1.0]) / (1 + 1e-4))  # mean 2, unbiased std 1
    torch.testing.assert_close(adv[1], torch.zeros(3))  # all equal: no signal
    flat = grpo_advantages(r.flatten(), group_size=3)
    torch.testing.assert_close(flat, adv.flatten())
    torch.testing.assert_close(grpo_advantages(r, scale_rewards=False)[0], torch.tensor([-1.0, 0.0, 1.0]))


def test_rloo_advantages_by_hand():
    adv = rloo_advantages(torch.tensor([1.0, 2.0, 3.0, 0.0, 4.0, 0.0, 0.0, 0.0]), group_size=4)
    # group 1: baselines (2+3+0)/3, (1+3+0)/3, (1+2+0)/3, (1+2+3)/3
    torch.testing.assert_close(adv[:4], torch.tensor([1 - 5 / 3, 2 - 4 / 3, 3 - 1.0, 0 - 2.0]))
    torch.testing.assert_close(adv[4:], torch.tensor([4.0, -4 / 3, -4 / 3, -4 / 3]))
    # RLOO = k/(k-1) times the mean-baseline advantage
    r = torch.randn(5, 4)
    torch.testing.assert_close(rloo_advantages(r), 4 / 3 * (r - r.mean(1, keepdim=True)))


def test_group_policy_loss_by_hand():
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    old = torch.zeros(2, 3)
    new = torch.log(torch.tensor([[1.5, 1.0, 9.0], [0.5, 1.0, 1.0]]))
    adv = torch.tensor([1.0, -2.0])
    loss, st = group_policy_loss(new, old, adv, mask, clip_eps=0.2, loss_type="grpo")
    # seq 1: tokens -min(1.5, 1.2)*1 = -1.2 and -1.0 -> mean -1.1; seq 2: -min(0.5*-2, 0.8*-2) = 1.6
    assert loss.item() == pytest.approx((-1.1 + 1.6) / 2)
    assert st["policy/clipfrac_avg"] == pytest.approx(2 / 3)
    loss_d, _ = group_policy_loss(new, old, adv, mask, clip_eps=0.2, loss_type="dapo")
    assert loss_d.item() == pytest.approx((-1.2 - 1.0 + 1.6) / 3)
    # k3 KL: zero when new = ref, positive otherwise
    loss0, st0 = group_policy_loss(old, old, adv, mask, beta=0.1, ref_logps=old)
    assert st0["kl_k3"] == 0.0 and st0["val/ratio"] == 1.0
    ref = torch.full((2, 3), -0.5)
    lk, stk = group_policy_loss(old, old, torch.zeros(2), mask, beta=0.1, ref_logps=ref)
    k3 = torch.exp(torch.tensor(-0.5)) + 0.5 - 1
    assert stk["kl_k3"] == pytest.approx(k3.item(), abs=1e-6) and lk.item() == pytest.approx(0.1 * k3.item(), abs=1e-6)


def test_sample_groups_are_contiguous_and_reproducible():
    model, tok = tiny_lm()
    ro = sample_groups(model, tok, ["the food was", "the service"], group_size=3, max_new_tokens=6, seed=0)
    assert ro.input_ids.shape[0] == 6 and ro.prompts == ["the food was"] * 3 + ["the service"] * 3
    for ids, m, e in zip(ro.response_ids, ro.response_mask, ro.has_eos):
        resp = ids[m.bool()]
        assert (resp[-1] == tok.eos_token_id) == bool(e)
    again = sample_groups(model, tok, ["the food was", "the service"], group_size=3, max_new_tokens=6, seed=0)
    assert again.completions == ro.completions


def _good_count(prompts, completions):
    return torch.tensor([c.split().count("good") - c.split().count("bad") for c in completions], dtype=torch.float)


@pytest.mark.parametrize("estimator", ["rloo", "grpo"])
def test_train_group_rl_raises_the_reward(estimator):
    model, tok = tiny_lm()
    cfg = GroupRLConfig(estimator=estimator, max_steps=25, learning_rate=1e-2, max_completion_length=6,
                        num_iterations=2, num_minibatches=2, prompts_per_step=8)
    trained, hist = train_group_rl(model, tok, ["the food was", "the service"] * 4, _good_count, cfg,
                                   eval_fn=_good_count, progress=False)
    assert trained is model and all(isinstance(v, list) and len(v) == 25 for v in hist.values())
    assert all(abs(r - 1) < 1e-5 for r in hist["val/ratio_first"])  # on-policy before each update
    assert sum(hist["objective/scores"][-5:]) / 5 > sum(hist["objective/scores"][:3]) / 3 + 1.0
    assert hist["objective/gold"] == hist["objective/scores"]
    assert hist["objective/kl"][0] == pytest.approx(0.0, abs=1e-5)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="group_size"):
        rloo_advantages(torch.ones(6))
    with pytest.raises(ValueError, match="groups of 4"):
        grpo_advantages(torch.ones(6), group_size=4)
    with pytest.raises(ValueError, match="at least 2"):
        grpo_advantages(torch.ones(3, 1))
    with pytest.raises(ValueError, match="NaN"):
        rloo_advantages(torch.tensor([1.0, float("nan")]), group_size=2)
    with pytest.raises(ValueError, match="beta"):
        GroupRLConfig(beta=-1.0)
    with pytest.raises(ValueError, match="estimator"):
        GroupRLConfig(estimator="ppo")
    with pytest.raises(ValueError, match="advantages"):
        group_policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match="ref_logps"):
        group_policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.ones(2, 3), beta=0.1)
    model, tok = tiny_lm()
    with pytest.raises(ValueError, match="non-empty"):
        sample_groups(model, tok, "the food", 2)
    with pytest.raises(ValueError, match="group_size"):
        sample_groups(model, tok, ["the food"], 0)
    cfg = GroupRLConfig(max_steps=1, prompts_per_step=2, max_completion_length=3)
    with pytest.raises(ValueError, match="one score per completion"):
        train_group_rl(model, tok, ["the food", "the service"], lambda p, c: torch.zeros(3), cfg, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        train_group_rl(model, tok, ["the food", "the service"], lambda p, c: torch.full((len(c),), float("nan")),
                       cfg, progress=False)
    with pytest.raises(ValueError, match="frozen copy"):
        train_group_rl(model, tok, ["the food", "the service"], lambda p, c: torch.zeros(len(c)), cfg,
                       ref_model=model, progress=False)
    with pytest.raises(TypeError, match="callable"):
        train_group_rl(model, tok, ["the food", "the service"], 3.0, cfg, progress=False)


def test_train_group_rl_callback_stops_early():
    model, tok = tiny_lm()
    cfg = GroupRLConfig(max_steps=10, max_completion_length=4, prompts_per_step=2, num_generations=2)
    _, hist = train_group_rl(model, tok, ["the food was", "the service"], _good_count, cfg, progress=False,
                             callback=lambda st: len(st["rollout"].completions) == 4 and st["step"] == 2)
    assert hist["step"] == [0, 1, 2]


def test_best_of_n_kl_formula():
    assert best_of_n_kl(1) == 0.0
    assert best_of_n_kl(2) == pytest.approx(math.log(2) - 0.5)
    # exact KL of best-of-n over a discrete policy with many outcomes and distinct rewards: close to the
    # formula from below (the formula is exact in the continuous limit, an upper bound otherwise)
    p = torch.distributions.Dirichlet(torch.ones(2000)).sample((1,), ).squeeze(0).double()
    cdf = torch.cumsum(p, 0)  # outcomes sorted by reward, ascending
    for n in (2, 4, 16):
        bon = cdf ** n - torch.cat([torch.zeros(1, dtype=cdf.dtype), cdf[:-1]]) ** n
        kl = float((bon * (bon / p).log()).sum())
        assert kl <= best_of_n_kl(n) + 1e-9 and kl == pytest.approx(best_of_n_kl(n), abs=0.01)
    with pytest.raises(ValueError, match="n must be"):
        best_of_n_kl(0)


def test_best_of_n_keeps_the_highest_score():
    model, tok = tiny_lm()
    texts, scores, ro = best_of_n(model, tok, ["the food was", "the service"], _good_count, 4, max_new_tokens=6, seed=0)
    assert scores.shape == (2, 4) and len(ro.completions) == 8 and ro.prompts[:4] == ["the food was"] * 4
    for p in range(2):
        assert _good_count(None, [texts[p]])[0] == scores[p].max()
        assert texts[p] in ro.completions[p * 4:(p + 1) * 4]
    assert best_of_n_indices(torch.tensor([[0.0, 3.0, 1.0, 5.0]]), 3).tolist() == [1]  # best among the first 3
    assert best_of_n_indices(torch.tensor([[2.0, 2.0]]), 2).tolist() == [0]  # ties: the first
    with pytest.raises(ValueError, match="n must be"):
        best_of_n_indices(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="NaN"):
        best_of_n_indices(torch.tensor([[float("nan"), 1.0]]), 2)
