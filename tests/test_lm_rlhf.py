"""PPO for language models (rlhf_tutorial.lm_rlhf, notebook 09) on a tiny random GPT-2 and a word-level tokenizer."""

import copy

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    PreTrainedTokenizerFast,
)

from rlhf_tutorial import lm_rlhf as L

WORDS = "the a food was good bad great awful service slow fast pizza room clean dirty and very not it ."


@pytest.fixture(scope="module")
def tok():
    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for w in WORDS.split():
        vocab.setdefault(w, len(vocab))
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_config(tok, **kw):
    return GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                      pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.eos_token_id, **kw)


@pytest.fixture()
def policy(tok):
    torch.manual_seed(0)
    return L.disable_dropout(GPT2LMHeadModel(tiny_config(tok))).eval()


PROMPTS = ["the food was", "service", "the pizza room was very", "a"]


def test_rollout_left_pads_truncates_and_masks(policy, tok):
    ro = L.rollout(policy, tok, PROMPTS, max_new_tokens=6, temperature=1.0, seed=0)
    B, R = ro.response_ids.shape
    assert B == 4 and R == 6
    assert ro.query_mask[:, -1].all() and not ro.query_mask[3, 0]  # left padding
    assert (ro.query_ids[ro.query_mask == 0] == tok.pad_token_id).all()
    for i in range(B):
        n = int(ro.response_mask[i].sum())
        assert ro.response_mask[i, :n].all() and not ro.response_mask[i, n:].any()  # a prefix
        assert (ro.response_ids[i, n:] == tok.pad_token_id).all()
        assert bool(ro.has_eos[i]) == (ro.response_ids[i, n - 1] == tok.eos_token_id)
        assert (ro.response_ids[i, : n - 1] != tok.eos_token_id).all()  # truncated after the first EOS
    # sampling log-probs equal a fresh forward pass with the same temperature (position ids skip the padding)
    for T in (1.0, 0.7):
        ro = L.rollout(policy, tok, PROMPTS, max_new_tokens=6, temperature=T, seed=1)
        lp = L.sequence_logprobs(policy, ro.input_ids, ro.attention_mask, ro.query_ids.shape[1], T)
        torch.testing.assert_close(lp * ro.response_mask, ro.logprobs, atol=1e-4, rtol=1e-4)
    # deterministic with a seed
    a = L.rollout(policy, tok, PROMPTS, max_new_tokens=6, seed=3)
    b = L.rollout(policy, tok, PROMPTS, max_new_tokens=6, seed=3)
    assert torch.equal(a.response_ids, b.response_ids) and a.completions == b.completions


def test_padding_does_not_change_logprobs(policy, tok):
    ro = L.rollout(policy, tok, PROMPTS, max_new_tokens=5, seed=2)
    P = ro.query_ids.shape[1]
    full = L.sequence_logprobs(policy, ro.input_ids, ro.attention_mask, P)
    for i in range(len(PROMPTS)):  # each row alone, without any left padding
        q = int(ro.query_mask[i].sum())
        ids = torch.cat([ro.query_ids[i, P - q:], ro.response_ids[i]])[None]
        am = torch.cat([ro.query_mask[i, P - q:], ro.response_mask[i]])[None]
        alone = L.sequence_logprobs(policy, ids, am, q)
        m = ro.response_mask[i].bool()
        torch.testing.assert_close(alone[0][m], full[i][m], atol=1e-5, rtol=1e-5)


def test_kl_is_zero_when_policy_equals_reference(policy, tok):
    ref = copy.deepcopy(policy)
    ro = L.rollout(policy, tok, PROMPTS, max_new_tokens=6, temperature=0.8, seed=0)
    P = ro.query_ids.shape[1]
    lp = L.sequence_logprobs(policy, ro.input_ids, ro.attention_mask, P, 0.8)
    lr = L.sequence_logprobs(ref, ro.input_ids, ro.attention_mask, P, 0.8)
    kl = L.per_token_kl(lp, lr, ro.response_mask)
    assert torch.count_nonzero(kl) == 0
    # ... and a temperature mismatch (sampling at T, reference scored at 1) makes it nonzero
    lr1 = L.sequence_logprobs(ref, ro.input_ids, ro.attention_mask, P, 1.0)
    assert L.per_token_kl(lp, lr1, ro.response_mask).abs().sum() > 0.01


def test_reward_at_last_real_token_left_padded_and_early_eos():
    # 3 rows: EOS at index 1 (early), no EOS (full length 4), EOS at index 2
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 1, 1, 0]], dtype=torch.float)
    lp = torch.tensor([[-1.0, -2.0, -9.0, -9.0], [-1.0, -1.0, -1.0, -1.0], [-0.5, -0.5, -0.5, 7.0]])
    ref = torch.tensor([[-1.5, -1.0, 3.0, 3.0], [-1.0, -2.0, -1.0, -1.0], [-0.5, -1.5, -0.5, 0.0]])
    scores = torch.tensor([10.0, 20.0, 30.0])
    rewards, kl, non_score = L.compute_rewards(scores, lp, ref, mask, kl_coef=0.1)
    expected_kl = torch.tensor([[0.5, -1.0, 0, 0], [0, 1.0, 0, 0], [0, 1.0, 0, 0]])
    torch.testing.assert_close(kl, expected_kl)
    expected = -0.1 * expected_kl
    expected[0, 1] += 10.0
    expected[1, 3] += 20.0
    expected[2, 2] += 30.0
    torch.testing.assert_close(rewards, expected)
    torch.testing.assert_close(non_score, -0.1 * expected_kl)


def test_reward_model_scored_at_last_real_token_not_pad(policy, tok):
    torch.manual_seed(1)
    rm = GPT2ForSequenceClassification(tiny_config(tok, num_labels=1)).eval()
    ro = L.rollout(policy, tok, PROMPTS, max_new_tokens=8, seed=5)
    got = L.score_rollout(rm, ro)
    for i in range(len(PROMPTS)):  # score each (prompt + response up to EOS) alone, unpadded
        q, n = int(ro.query_mask[i].sum()), int(ro.response_mask[i].sum())
        ids = torch.cat([ro.query_ids[i, -q:], ro.response_ids[i, :n]])[None]
        with torch.no_grad():
            want = rm(input_ids=ids).logits[0, 0]
        torch.testing.assert_close(got[i], want, atol=1e-5, rtol=1e-5)
    # a reward function on the text gets the prompts and completions
    seen = {}

    def reward_fn(prompts, completions):
        seen["p"], seen["c"] = prompts, completions
        return torch.tensor([float(len(c)) for c in completions])

    s = L.score_rollout(reward_fn, ro)
    assert seen["p"] == PROMPTS and seen["c"] == ro.completions and s.shape == (4,)


def test_token_gae_against_hand_computation():
    rewards = torch.tensor([[0.0, 0.5, 1.0], [2.0, 0.0, 0.0]])
    values = torch.tensor([[0.1, 0.2, 0.3], [0.4, 9.0, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0]], dtype=torch.float)
    gamma, lam = 1.0, 0.95
    # row 0: deltas with V after the last token = 0
    d2 = 1.0 - 0.3
    d1 = 0.5 + 0.3 - 0.2
    d0 = 0.0 + 0.2 - 0.1
    a2 = d2
    a1 = d1 + lam * a2
    a0 = d0 + lam * a1
    # row 1: a one-token response: A = r - V; the padded values (9.0) must not leak in
    adv, ret = L.token_gae(rewards, values, mask, gamma, lam)
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2], [2.0 - 0.4, 0.0, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.1, a1 + 0.2, a2 + 0.3], [2.0, 0.0, 0.0]]))
    # γ = λ = 1 with zero values: the advantage is the reward-to-go
    adv, _ = L.token_gae(rewards, torch.zeros(2, 3), torch.ones(2, 3), 1.0, 1.0)
    torch.testing.assert_close(adv, torch.tensor([[1.5, 1.5, 1.0], [2.0, 0.0, 0.0]]))


def test_masked_whiten_ignores_padding():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    m = torch.tensor([[1, 1, 1, 0]])
    w = L.masked_whiten(x, m)
    torch.testing.assert_close(w, torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-4, rtol=1e-4)


def test_lm_ppo_loss_values():
    old = torch.log(torch.tensor([[0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.25]]))  # ratios 1.5 and 0.5
    adv = torch.tensor([[1.0, 1.0]])
    z = torch.zeros(1, 2)
    loss, st = L.lm_ppo_loss(new, old, adv, z, z, z, torch.ones(1, 2), clip_coef=0.2, clip_value=0.2, vf_coef=0.0)
    # max(-1.5, -1.2) = -1.2 ; max(-0.5, -0.8) = -0.5
    torch.testing.assert_close(loss, torch.tensor(-(1.2 + 0.5) / 2))
    assert st["policy/clipfrac_avg"] == 1.0
    # value loss: clipped prediction is worse -> it counts
    loss, st = L.lm_ppo_loss(old, old, z, torch.tensor([[1.0, 0.0]]), z, torch.tensor([[1.0, 1.0]]),
                             torch.ones(1, 2), clip_value=0.2, vf_coef=1.0)
    torch.testing.assert_close(loss, torch.tensor(0.5 * ((1 - 0.2) ** 2 + 1.0) / 2))


def _reward_len(prompts, completions):
    return torch.tensor([len(c.split()) / 4.0 for c in completions])


def test_ratio_is_one_before_first_update_and_training_runs(policy, tok):
    cfg = L.LMPPOConfig(num_iterations=3, batch_size=8, response_length=6, num_ppo_epochs=2, num_minibatches=2,
                        learning_rate=1e-3, temperature=0.9, seed=0)
    before = {k: v.clone() for k, v in policy.state_dict().items()}
    model, hist = L.train_lm_ppo(policy, tok, _reward_len, PROMPTS, cfg, progress=False)
    assert model is policy and isinstance(hist, dict) and hist["iteration"] == [0, 1, 2]
    assert all(isinstance(v, list) and len(v) == 3 for v in hist.values())  # one contract: a dict of lists
    assert all(abs(r - 1) < 1e-5 for r in hist["val/ratio_first"]) and max(hist["val/ratio_first_max_dev"]) < 1e-3
    for k in ("objective/kl", "objective/entropy", "objective/rlhf_reward", "objective/scores",
              "policy/clipfrac_avg", "val/ratio", "val/eos_frac"):
        assert torch.isfinite(torch.tensor(hist[k])).all()
    assert hist["objective/kl"][0] == 0.0  # the reference is the policy at iteration 0
    assert any(not torch.equal(before[k], v) for k, v in policy.state_dict().items())
    # deterministic
    torch.manual_seed(0)
    p2 = L.disable_dropout(GPT2LMHeadModel(tiny_config(tok))).eval()
    _, hist2 = L.train_lm_ppo(p2, tok, _reward_len, PROMPTS, cfg, progress=False)
    assert hist["objective/scores"] == hist2["objective/scores"]


def test_separate_critic_and_adaptive_kl(policy, tok):
    torch.manual_seed(2)
    critic = GPT2ForSequenceClassification(tiny_config(tok, num_labels=1))
    cfg = L.LMPPOConfig(num_iterations=2, batch_size=4, response_length=4, num_ppo_epochs=1, num_minibatches=2,
                        adaptive_kl=True, kl_coef=0.1, target_kl=1.0, kl_horizon=100)
    critic.requires_grad_(False)  # a frozen copy (as a copy of a frozen reward model would be) is still trained
    before = critic.score.weight.clone()
    _, hist = L.train_lm_ppo(policy, tok, _reward_len, PROMPTS, cfg, critic=critic, progress=False)
    assert hist["kl_coef"][1] != 0.1 and not torch.equal(before, critic.score.weight)
    ctl = L.AdaptiveKLController(0.1, target=6.0, horizon=10_000)
    assert ctl.update(12.0, 1000) == pytest.approx(0.1 * (1 + 0.2 * 0.1))  # error clipped at +0.2


# --------------------------------------------------------------------------- bad inputs
def test_bad_inputs(policy, tok):
    m = torch.ones(2, 3)
    with pytest.raises(ValueError, match="β"):
        L.compute_rewards(torch.zeros(2), torch.zeros(2, 3), torch.zeros(2, 3), m, kl_coef=-0.1)
    with pytest.raises(ValueError, match="kl_coef"):
        L.LMPPOConfig(kl_coef=-1.0).validate()
    with pytest.raises(ValueError, match="scores must have shape"):
        L.compute_rewards(torch.zeros(3), torch.zeros(2, 3), torch.zeros(2, 3), m, kl_coef=0.1)
    with pytest.raises(ValueError, match="same shape"):
        L.per_token_kl(torch.zeros(2, 3), torch.zeros(3, 3), m)
    with pytest.raises(ValueError, match="rewards, values"):
        L.token_gae(torch.zeros(2, 3), torch.zeros(2, 4), m)
    with pytest.raises(ValueError, match="empty"):
        L.rollout(policy, tok, [], max_new_tokens=3)
    with pytest.raises(ValueError, match="no tokens"):
        L.rollout(policy, tok, ["the food", ""], max_new_tokens=3)
    with pytest.raises(TypeError, match="list of strings"):
        L.rollout(policy, tok, "the food", max_new_tokens=3)
    with pytest.raises(ValueError, match="temperature"):
        L.rollout(policy, tok, PROMPTS, temperature=0.0)
    ro = L.rollout(policy, tok, PROMPTS, max_new_tokens=3, seed=0)
    with pytest.raises(ValueError, match=r"expected shape \(4,\)"):
        L.score_rollout(lambda p, c: torch.zeros(3), ro)
    with pytest.raises(ValueError, match="NaN"):
        L.score_rollout(lambda p, c: torch.tensor([0.0, float("nan"), 1.0, 2.0]), ro)
    with pytest.raises(TypeError, match="reward must be"):
        L.score_rollout(42, ro)
    cfg = L.LMPPOConfig(num_iterations=1, batch_size=4, response_length=3)
    with pytest.raises(ValueError, match="NaN"):
        L.train_lm_ppo(policy, tok, lambda p, c: torch.full((len(c),), float("nan")), PROMPTS, cfg, progress=False)
    with pytest.raises(ValueError, match="empty"):
        L.train_lm_ppo(policy, tok, _reward_len, [], cfg, progress=False)
    with pytest.raises(ValueError, match="reference"):
        L.train_lm_ppo(policy, tok, _reward_len, PROMPTS, cfg, ref_policy=policy, progress=False)
    with pytest.raises(ValueError, match="num_minibatches"):
        L.LMPPOConfig(batch_size=2, num_minibatches=4).validate()
    eos_pad = copy.deepcopy(tok)
    eos_pad.pad_token = eos_pad.eos_token
    with pytest.raises(ValueError, match="pad token == eos"):
        L.left_pad(eos_pad, PROMPTS)


# --------------------------------------------------------------------------- the exercise checker
def test_check_token_gae_accepts_package_and_rejects_mistakes(capsys):
    from rlhf_tutorial import checks

    assert checks.check_token_gae(L.token_gae)
    assert checks.check_token_gae(lambda r, v, m, g, lam: L.token_gae(r, v, m, g, lam)[0].numpy())

    def no_mask(r, v, m, g, lam):
        return L.token_gae(r, v, torch.ones_like(m), g, lam)

    res = checks.check_token_gae(no_mask)
    assert not res and any("padding" in c.name for c in res.failures)

    def raises(*a):
        raise RuntimeError("boom")

    res = checks.check_token_gae(raises)
    assert not res and "RuntimeError: boom" in str(res)
    assert not checks.check_token_gae(42)
    capsys.readouterr()


def test_fuse_gelu_keeps_the_function(policy, tok):
    ids = torch.tensor([[3, 4, 5, 6, 7]])
    with torch.no_grad():
        before = policy(input_ids=ids).logits
        L.fuse_gelu(policy)
        after = policy(input_ids=ids).logits
    assert not any(type(m).__name__ == "NewGELUActivation" for m in policy.modules())
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)


def test_score_temperature_reproduces_the_mismatch_bug(policy, tok):
    cfg = L.LMPPOConfig(num_iterations=1, batch_size=4, response_length=5, num_ppo_epochs=1, num_minibatches=1,
                        temperature=1.0, score_temperature=0.5)
    _, hist = L.train_lm_ppo(policy, tok, _reward_len, PROMPTS, cfg, progress=False)
    assert hist["val/ratio_first_max_dev"][0] > 0.05 and hist["objective/kl"][0] != 0.0
    with pytest.raises(ValueError, match="temperature"):
        L.LMPPOConfig(score_temperature=0.0).validate()


def test_callback_stops_training_and_fused_gelu_is_a_switch(policy, tok):
    cfg = L.LMPPOConfig(num_iterations=5, batch_size=4, response_length=4, num_ppo_epochs=1, num_minibatches=1,
                        fused_gelu=False)
    seen = []
    _, hist = L.train_lm_ppo(policy, tok, _reward_len, PROMPTS, cfg, progress=False,
                             callback=lambda st: seen.append(st["iteration"]) or st["iteration"] == 1)
    assert seen == [0, 1] and hist["iteration"] == [0, 1]
    assert any(type(m).__name__ == "NewGELUActivation" for m in policy.modules())  # switch off: not swapped
    with pytest.raises(TypeError, match="fused_gelu"):
        L.LMPPOConfig(fused_gelu="yes")


def test_frozen_reference(policy):
    ref = L.frozen_reference(policy)
    assert ref is not policy and not any(p.requires_grad for p in ref.parameters()) and not ref.training
    with pytest.raises(ValueError, match="frozen copy"):
        L.frozen_reference(policy, policy)
