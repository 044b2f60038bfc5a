"""Reward model of notebook 05: hand-computed losses, mean vs sum, training, evaluation, wrappers, save/load."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import nn

from rlhf_tutorial import feedback as fb
from rlhf_tutorial import reward_model as rm
from rlhf_tutorial.envs import ENV_ID
from rlhf_tutorial.feedback import ComparisonLabeler, ScoreLabeler, Segment
from rlhf_tutorial.reward_model import (
    LearnedRewardWrapper,
    RewardModelFileError,
    RewardNet,
    RewardNormalizer,
    check_lambdas,
    compare_loss,
    language_loss,
    mixed_loss,
    score_loss,
    segment_return,
)
from rlhf_tutorial.rl import make_vec_env


class FirstFeature(nn.Module):
    """A 'reward net' with a known output: r̂(s, a) = s[0] (for hand-computed losses)."""

    def forward(self, obs, actions=None):
        return torch.as_tensor(obs, dtype=torch.float32)[..., 0]


class Scaled(nn.Module):
    def __init__(self, net, c):
        super().__init__()
        self.net, self.c = net, c

    def forward(self, obs, actions=None):
        return self.c * self.net(obs, actions)


def batch(rewards):
    """obs (N, L, 4) whose first feature is ``rewards`` (N, L); actions all 0."""
    r = torch.as_tensor(rewards, dtype=torch.float32)
    obs = torch.zeros(*r.shape, 4)
    obs[..., 0] = r
    return obs, torch.zeros(r.shape, dtype=torch.long)


def seg(rewards, x=None):
    """A Segment whose obs[:, 0] is ``x`` (default: the rewards) and whose true rewards are ``rewards``."""
    r = np.asarray(rewards, np.float32)
    obs = np.zeros((len(r), 4), np.float32)
    obs[:, 0] = r if x is None else x
    return Segment(obs, np.zeros(len(r), int), r)


@pytest.fixture(scope="module")
def pool():
    return fb.collect_segments(fb.controller_pool(0), segment_length=25, episodes_per_policy=6, seed=0)


@pytest.fixture(scope="module")
def heldout():
    return fb.collect_segments(fb.controller_pool(7), segment_length=25, episodes_per_policy=4, seed=99)


# --------------------------------------------------------------------------- the three losses by hand
def test_score_loss_hand_computed():
    obs, act = batch([[0.2, 0.4], [1.0, 0.0]])  # trajectory means 0.3 and 0.5
    loss = score_loss(FirstFeature(), obs, act, [0.5, 0.0])
    assert float(loss) == pytest.approx(((0.3 - 0.5) ** 2 + (0.5 - 0.0) ** 2) / 2)  # 0.145


def test_compare_loss_hand_computed_with_a_tie():
    obs_a, act_a = batch([[1.0, 1.0], [0.0, 2.0]])  # sums 2, 2; means 1, 1
    obs_b, act_b = batch([[0.5, 0.5], [1.0, 0.0]])  # sums 1, 1; means 0.5, 0.5
    y = [1.0, 0.5]  # first pair: τ1 preferred; second: "equal"

    def log_sigmoid(z):
        return -math.log1p(math.exp(-z))

    for reduce, delta in (("sum", 1.0), ("mean", 0.5)):
        expected = (-log_sigmoid(delta) - 0.5 * log_sigmoid(delta) - 0.5 * log_sigmoid(-delta)) / 2
        got = compare_loss(FirstFeature(), obs_a, act_a, obs_b, act_b, y, reduce=reduce)
        assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(compare_loss(FirstFeature(), obs_a, act_a, obs_b, act_b, y, "sum")) == pytest.approx(0.563261, abs=1e-6)
    assert float(compare_loss(FirstFeature(), obs_a, act_a, obs_b, act_b, y)) == pytest.approx(0.599077, abs=1e-6)


def test_compare_loss_default_is_mean_and_tie_is_minimal_at_equal_returns():
    obs, act = batch([[0.3, 0.1]])
    assert float(compare_loss(FirstFeature(), obs, act, obs, act, [0.5])) == pytest.approx(math.log(2))
    obs_b, act_b = batch([[0.0, 0.0]])
    default = compare_loss(FirstFeature(), obs, act, obs_b, act_b, [1.0])
    assert float(default) == pytest.approx(float(compare_loss(FirstFeature(), obs, act, obs_b, act_b, [1.0], "mean")))
    assert float(default) == pytest.approx(math.log1p(math.exp(-0.2)))


def test_language_loss_is_the_score_mse_on_language_scores():
    obs, act = batch([[0.2, 0.4], [1.0, 0.0], [0.9, 0.9]])
    y = [0.1, 0.7, 1.0]
    assert float(language_loss(FirstFeature(), obs, act, y)) == pytest.approx(float(score_loss(FirstFeature(), obs, act, y)))


def test_mean_and_sum_differ_by_the_segment_length():
    torch.manual_seed(0)
    L = 7
    obs_a, obs_b = torch.randn(5, L, 4), torch.randn(5, L, 4)
    act_a, act_b = torch.randint(0, 2, (5, L)), torch.randint(0, 2, (5, L))
    y = torch.tensor([1.0, 0.0, 0.5, 1.0, 0.0])
    net = RewardNet(4, 2, seed=0)
    torch.testing.assert_close(segment_return(net, obs_a, act_a, "sum"), L * segment_return(net, obs_a, act_a, "mean"))
    # the sum is the mean at temperature 1/L: same loss as the mean of an L-times larger reward
    torch.testing.assert_close(compare_loss(net, obs_a, act_a, obs_b, act_b, y, "sum"),
                               compare_loss(Scaled(net, L), obs_a, act_a, obs_b, act_b, y, "mean"))


def test_mixed_loss_is_the_weighted_sum():
    obs, act = batch([[0.2, 0.4], [1.0, 0.0]])
    obs_b, act_b = batch([[0.5, 0.5], [0.0, 0.0]])
    batches = {"score": {"obs": obs, "actions": act, "scores": torch.tensor([0.5, 0.0])},
               "comparison": {"obs_a": obs, "actions_a": act, "obs_b": obs_b, "actions_b": act_b,
                              "labels": torch.tensor([0.0, 1.0])},
               "language": {"obs": obs, "actions": act, "scores": torch.tensor([0.9, 0.1])}}
    net = FirstFeature()
    ls = score_loss(net, obs, act, [0.5, 0.0])
    lc = compare_loss(net, obs, act, obs_b, act_b, [0.0, 1.0])
    ll = language_loss(net, obs, act, [0.9, 0.1])
    total, parts = mixed_loss(net, batches, (0.5, 2.0, 3.0))
    assert float(total) == pytest.approx(float(0.5 * ls + 2.0 * lc + 3.0 * ll))
    assert parts == pytest.approx({"score": float(ls), "comparison": float(lc), "language": float(ll)})
    # a kind with λ = 0 may be missing
    total, parts = mixed_loss(net, {"comparison": batches["comparison"]}, {"comparison": 1.0})
    assert set(parts) == {"comparison"} and float(total) == pytest.approx(float(lc))


# --------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("lambdas, err, match", [
    ((1.0, -0.5, 1.0), ValueError, ">= 0"),
    ((0, 0, 0), ValueError, "all lambdas are 0"),
    ((1.0, float("nan"), 0.0), ValueError, "finite"),
    ((1.0, float("inf"), 0.0), ValueError, "finite"),
    ((1.0, 1.0), ValueError, "3 values"),
    ("111", TypeError, "lambdas must be"),
    ((1.0, "a", 0.0), TypeError, "must be a number"),
    ({"preference": 1.0}, ValueError, "unknown feedback kind"),
])
def test_bad_lambdas(lambdas, err, match):
    with pytest.raises(err, match=match):
        check_lambdas(lambdas)


def test_bad_loss_inputs():
    net = FirstFeature()
    obs, act = batch([[0.2, 0.4], [1.0, 0.0]])
    with pytest.raises(ValueError, match="NaN or inf"):
        score_loss(net, obs, act, [float("nan"), 0.0])
    with pytest.raises(ValueError, match=r"scores must be in \[0, 1\], got 1.5"):
        score_loss(net, obs, act, [1.5, 0.0])
    with pytest.raises(ValueError, match="one value per segment"):
        score_loss(net, obs, act, [0.5])
    with pytest.raises(ValueError, match=r"labels must be 0 \(second better\), 0.5 \(equal\) or 1"):
        compare_loss(net, obs, act, obs, act, [0.3, 1.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        compare_loss(net, obs, act, obs, act, [float("inf"), 1.0])
    with pytest.raises(ValueError, match="reduce must be one of"):
        compare_loss(net, obs, act, obs, act, [0.0, 1.0], reduce="max")
    bad = obs.clone()
    bad[0, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="obs contains NaN or inf"):
        segment_return(RewardNet(4, 2), bad, act)
    with pytest.raises(ValueError, match="unknown feedback kind"):
        mixed_loss(net, {"scores": {}}, (1, 0, 0))
    with pytest.raises(ValueError, match="no 'language' batch"):
        mixed_loss(net, {"score": {"obs": obs, "actions": act, "scores": [0.0, 0.0]}}, (1, 0, 1))
    with pytest.raises(TypeError, match="net must be a torch.nn.Module"):
        score_loss(lambda o, a: o, obs, act, [0.0, 0.0])


def test_reward_net_validates_inputs():
    net = RewardNet(4, 2, seed=0)
    with pytest.raises(ValueError, match="last dimension of obs_dim=4"):
        net(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"actions must be in \[0, 1\]"):
        net(torch.zeros(3, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="actions must have shape"):
        net(torch.zeros(3, 4), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="pass actions"):
        net(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="obs_scale must be 4 positive numbers"):
        RewardNet(4, 2, obs_scale=[1.0, 0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="obs_dim must be an int >= 1"):
        RewardNet(0, 2)
    assert RewardNet(4, 2, use_action=False)(torch.zeros(2, 3, 4)).shape == (2, 3)


def test_reward_net_seed_is_reproducible_and_local():
    a, b = RewardNet(4, 2, seed=3), RewardNet(4, 2, seed=3)
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q)
    c, d = RewardNet(4, 2), RewardNet(4, 2)  # without a seed: different draws from the global RNG
    assert not torch.equal(c.net[0].weight, d.net[0].weight)
    net = RewardNet.for_env(ENV_ID)
    assert net.obs_dim == 4 and net.n_actions == 2
    torch.testing.assert_close(net.obs_scale, torch.tensor([2.4, 10.0, math.pi, 20.0]))


def test_train_rejects_bad_data(pool):
    net = RewardNet(4, 2, seed=0)
    scores = fb.make_dataset("score", pool[:10], seed=0)
    with pytest.raises(ValueError, match="data is empty"):
        rm.train_reward_model(net, [], (1, 0, 0))
    with pytest.raises(ValueError, match=r"lambdas give weight to \['comparison'\]"):
        rm.train_reward_model(net, scores, (1, 1, 0))
    with pytest.raises(ValueError, match="unknown feedback kind"):
        rm.train_reward_model(net, {"rating": scores}, (1, 0, 0))
    with pytest.raises(TypeError, match="feedback datasets"):
        rm.train_reward_model(net, [{"obs": 1}], (1, 0, 0))
    with pytest.raises(ValueError, match="two 'score' datasets"):
        rm.train_reward_model(net, [scores, scores], (1, 0, 0))
    with pytest.raises(ValueError, match="needs a scorer"):
        rm.train_reward_model(net, fb.make_dataset("language", pool[:10], seed=0), (0, 0, 1))
    with pytest.raises(ValueError, match="patience"):
        rm.train_reward_model(net, scores, (1, 0, 0), val_fraction=0.0, patience=3)
    with pytest.raises(ValueError, match="epochs must be"):
        rm.train_reward_model(net, scores, (1, 0, 0), epochs=0)
    bad_scorer = fb.make_dataset("language", pool[:10], seed=0)
    with pytest.raises(ValueError, match=r"one finite score in \[0, 1\]"):
        rm.train_reward_model(net, bad_scorer, (0, 0, 1), scorer=lambda c: np.full(len(c), 2.0))


# --------------------------------------------------------------------------- training and evaluation
def test_training_is_deterministic_and_learns_the_true_ranking(pool, heldout):
    comps = fb.make_dataset("comparison", pool, ComparisonLabeler(epsilon=0.1, seed=0), n_pairs=100, seed=0)
    scores = fb.make_dataset("score", pool, ScoreLabeler(seed=0))
    nets, hists = [], []
    for _ in range(2):
        net = RewardNet.for_env(ENV_ID, seed=0)
        hists.append(rm.train_reward_model(net, [comps, scores], (1, 1, 0), epochs=12, seed=0, progress=False)[1])
        nets.append(net)
    assert hists[0]["train_loss"] == hists[1]["train_loss"] and hists[0]["val_loss"] == hists[1]["val_loss"]
    for p, q in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    h = hists[0]
    assert h["epochs_run"] == 12 and 0 <= h["best_epoch"] < 12
    assert set(h) >= {"train_score", "val_score", "train_comparison", "val_comparison"}
    assert h["train_loss"][-1] < h["train_loss"][0]
    pairs = rm.make_eval_pairs(heldout, 300, seed=1, min_gap=0.5)
    res = rm.evaluate_reward_model(nets[0], pairs, heldout, min_gap=0.5)
    assert res["pairwise_accuracy"] >= 0.85 and res["spearman"] >= 0.75, res


def test_early_stopping_restores_the_best_epoch(pool):
    scores = fb.make_dataset("score", pool, ScoreLabeler(seed=0))
    net = RewardNet(4, 2, seed=0)
    _, h = rm.train_reward_model(net, scores, (1, 0, 0), epochs=200, patience=2, lr=0.05, progress=False)
    assert h["epochs_run"] < 200
    assert h["epochs_run"] == h["best_epoch"] + 3  # stopped 2 epochs without improvement after the best
    with torch.no_grad():
        _, va = scores.split(0.2, seed=0)
        t = va.tensors()
        assert float(score_loss(net, t["obs"], t["actions"], t["scores"])) == pytest.approx(min(h["val_loss"]), rel=1e-5)


def test_pairwise_accuracy_and_spearman_by_hand():
    net = FirstFeature()  # predicted return = Σ obs[:, 0]
    a = [seg([1.0, 1.0]), seg([0.0, 0.0]), seg([0.5, 0.5], x=[0.0, 0.0]), seg([0.2, 0.2])]
    b = [seg([0.0, 0.0]), seg([1.0, 0.0]), seg([0.0, 0.0]), seg([0.2, 0.1])]
    # right, right, predicted tie (half right), right but |ΔR| = 0.1
    assert rm.pairwise_accuracy(net, a, b) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert rm.pairwise_accuracy(net, a, b, min_gap=0.2) == pytest.approx((1 + 1 + 0.5) / 3)
    flipped = ([-1.0 * s.true_return for s in a], [-1.0 * s.true_return for s in b])
    assert rm.pairwise_accuracy(net, a, b, true_returns=flipped) == pytest.approx(0.5 / 4)
    with pytest.raises(ValueError, match="no pair has true returns"):
        rm.pairwise_accuracy(net, a, b, min_gap=5.0)
    with pytest.raises(ValueError, match="same length"):
        rm.pairwise_accuracy(net, a, b[:2])
    from scipy.stats import spearmanr

    x, y = [1, 2, 2, 5, 3, 0], [0.1, 0.4, 0.3, 0.9, 0.2, 0.0]
    assert rm.spearman(x, y) == pytest.approx(spearmanr(x, y)[0])
    assert math.isnan(rm.spearman([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        rm.spearman([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="NaN or inf"):
        rm.spearman([1, float("nan")], [1, 2])


def test_predict_returns_mixed_lengths():
    net = FirstFeature()
    got = rm.predict_returns(net, [seg([1.0, 2.0]), seg([1.0, 1.0, 1.0]), seg([0.5])])
    np.testing.assert_allclose(got, [3.0, 3.0, 0.5])
    np.testing.assert_allclose(rm.predict_returns(net, [seg([1.0, 2.0])], reduce="mean"), [1.5])
    with pytest.raises(ValueError, match="segments is empty"):
        rm.predict_returns(net, [])


# --------------------------------------------------------------------------- normalization and wrappers
def test_normalizer_gives_mean_0_and_target_std(pool):
    net = RewardNet.for_env(ENV_ID, seed=0)
    norm = RewardNormalizer.fit(net, pool, target_std=0.5)
    with torch.no_grad():
        r = net(np.concatenate([s.obs for s in pool]), np.concatenate([s.actions for s in pool])).double()
    z = norm(r)
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-6) and float(z.std()) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ValueError, match="constant"):
        RewardNormalizer.fit(Scaled(FirstFeature(), 0.0), pool[:3])
    with pytest.raises(ValueError, match="> 0"):
        RewardNormalizer(0.0, 0.0)


def test_wrapper_keeps_obs_terminated_truncated_info(pool):
    net = RewardNet.for_env(ENV_ID, seed=0)
    norm = RewardNormalizer.fit(net, pool)
    plain, wrapped = gym.make(ENV_ID), LearnedRewardWrapper(gym.make(ENV_ID), net, norm)
    o1, _ = plain.reset(seed=5)
    o2, _ = wrapped.reset(seed=5)
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = int(rng.integers(0, 2))
        expected = norm(float(net(o2, torch.tensor(a)).detach()))
        o1, r1, te1, tr1, i1 = plain.step(a)
        o2, r2, te2, tr2, i2 = wrapped.step(a)
        np.testing.assert_array_equal(o1, o2)
        assert (te1, tr1) == (te2, tr2)
        assert {k: i2[k] for k in i1} == i1  # the env's info passes through
        assert i2["true_reward"] == pytest.approx(r1)
        assert r2 == pytest.approx(expected, rel=1e-5, abs=1e-6)
        assert i2["learned_reward"] == pytest.approx(float(norm.mean + norm.std * r2), rel=1e-5, abs=1e-5)
    assert tr2 and not te2  # the task always ends by truncation at step 200
    with pytest.raises(ValueError, match="obs_dim=3"):
        LearnedRewardWrapper(gym.make(ENV_ID), RewardNet(3, 2))
    with pytest.raises(RuntimeError, match="reset"):
        LearnedRewardWrapper(gym.make(ENV_ID), net).step(0)


def test_vector_wrapper_matches_the_single_env_and_zeroes_autoreset_steps():
    net = RewardNet.for_env(ENV_ID, seed=1)
    from rlhf_tutorial.rlhf import LearnedRewardVectorWrapper  # the package's one vector wrapper

    venv = LearnedRewardVectorWrapper(make_vec_env(ENV_ID, 3, horizon=4), net)
    obs, _ = venv.reset(seed=0)
    for t in range(6):
        a = np.array([0, 1, t % 2])
        expected = net.predict(obs, a)
        obs, r, te, tr, info = venv.step(a)
        assert r.shape == (3,) and r.dtype == np.float32 and "upright" in info and "true_reward" in info
        if t == 4:  # step 5 only resets the copies whose episode ended at step 4
            np.testing.assert_array_equal(r, 0.0)
        else:
            np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-6)
        assert tr.all() == (t == 3) and not te.any()


# --------------------------------------------------------------------------- save / load
def test_save_load_round_trip(tmp_path, pool):
    net = RewardNet.for_env(ENV_ID, hidden=(16, 8), use_action=False, seed=2)
    norm = RewardNormalizer.fit(net, pool, target_std=0.3)
    path = rm.save_reward_model(tmp_path / "r.safetensors", net, norm)
    net2, norm2 = rm.load_reward_model(path)
    assert net2.config() == net.config() and norm2.to_dict() == norm.to_dict()
    x = torch.randn(10, 4)
    torch.testing.assert_close(net2(x), net(x))
    torch.testing.assert_close(net2.obs_scale, net.obs_scale)
    net3, norm3 = rm.load_reward_model(rm.save_reward_model(tmp_path / "plain.safetensors", net))
    assert norm3 is None


def test_load_missing_or_corrupt_file(tmp_path):
    with pytest.raises(RewardModelFileError, match="no saved reward model") as e:
        rm.load_reward_model(tmp_path / "missing.safetensors")
    assert isinstance(e.value, FileNotFoundError)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00\x01 this is not a safetensors file")
    with pytest.raises(RewardModelFileError, match="not a readable safetensors file"):
        rm.load_reward_model(bad)
    good = rm.save_reward_model(tmp_path / "good.safetensors", RewardNet(4, 2, seed=0))
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(RewardModelFileError):
        rm.load_reward_model(good)
    from safetensors.torch import save_file

    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(RewardModelFileError, match="not a reward model"):
        rm.load_reward_model(other)
    with pytest.raises(ValueError, match=r"\.safetensors"):
        rm.save_reward_model(tmp_path / "x.pt", RewardNet(4, 2))


# --------------------------------------------------------------------------- links and principled weights (issue 14)
def test_links_by_hand_and_positive_scale():
    links = rm.FeedbackLinks(init_scale=2.0)
    net = FirstFeature()
    obs, act = batch([[0.1, 0.3], [0.5, 0.7]])           # r̂(τ) = 0.2, 0.6
    links.set_link("score", 2.0, 0.1)
    y = torch.tensor([0.5, 1.0])
    want = ((2.0 * torch.tensor([0.2, 0.6]) + 0.1 - y) ** 2).mean()
    torch.testing.assert_close(rm.linked_regression_loss(net, links, "score", obs, act, y), want)
    assert links.scale("language").item() == pytest.approx(2.0)
    with torch.no_grad():
        links.raw_scale["score"].fill_(-30.0)
    assert links.scale("score").item() > 0                   # softplus keeps a_k > 0 whatever ρ_k is
    with pytest.raises(ValueError, match="scale must be > 0"):
        links.set_link("score", 0.0)
    with pytest.raises(ValueError, match="scale must be > 0"):
        links.set_link("score", -1.0)
    with pytest.raises(ValueError, match="init_scale"):
        rm.FeedbackLinks(init_scale=0.0)
    with pytest.raises(ValueError, match="init_scale"):
        rm.FeedbackLinks(init_scale=float("inf"))
    with pytest.raises(ValueError, match="links are for the kinds"):
        links.scale("comparison")


def test_linked_compare_loss_is_bradley_terry_at_a_temperature():
    net, links = FirstFeature(), rm.FeedbackLinks(init_beta=3.0)
    oa, aa = batch([[1.0, 1.0], [0.0, 0.0]])
    ob, ab = batch([[0.0, 0.0], [0.5, 0.5]])
    y = torch.tensor([1.0, 0.5])
    torch.testing.assert_close(rm.linked_compare_loss(net, links, oa, aa, ob, ab, y),
                               compare_loss(Scaled(net, 3.0), oa, aa, ob, ab, y))


def test_uncertainty_weighting_by_hand_and_its_minimum():
    losses = {"score": torch.tensor(0.04), "comparison": torch.tensor(0.6)}
    s = torch.tensor(math.log(0.04), requires_grad=True)
    total = rm.uncertainty_weighted_loss(losses, {"score": s})
    torch.testing.assert_close(total, 0.5 * torch.exp(-s) * 0.04 + 0.5 * s + 0.6)
    total.backward()
    assert abs(s.grad.item()) < 1e-6                        # minimised at σ² = the loss
    with pytest.raises(ValueError, match="losses is empty"):
        rm.uncertainty_weighted_loss({}, {})


def test_mix_objective_naive_equals_mixed_loss_and_checks_inputs(pool):
    scores = fb.make_dataset("score", pool[:20], ScoreLabeler(seed=0))
    comps = fb.make_dataset("comparison", pool, ComparisonLabeler(seed=0), n_pairs=20, seed=0)
    b = {"score": scores.tensors(), "comparison": comps.tensors()}
    net = RewardNet(4, 2, seed=0)
    got, parts = rm.mix_objective(net, b, (1, 2, 0))
    want, _ = mixed_loss(net, b, (1, 2, 0))
    torch.testing.assert_close(got, want)
    links = rm.FeedbackLinks()
    total, parts = rm.mix_objective(net, b, (1, 1, 0), links, "uncertainty")
    assert set(parts) == {"score", "comparison"} and torch.isfinite(total)
    with pytest.raises(ValueError, match="pass links"):
        rm.mix_objective(net, b, (1, 1, 0), None, "uncertainty")
    with pytest.raises(ValueError, match="weighting"):
        rm.mix_objective(net, b, (1, 1, 0), links, "magic")
    with pytest.raises(ValueError, match=">= 0"):
        rm.mix_objective(net, b, (1, -1, 0), links)
    with pytest.raises(ValueError, match="finite"):
        rm.mix_objective(net, b, (1, float("nan"), 0), links)
    with pytest.raises(ValueError, match="finite"):
        rm.mix_objective(net, b, (float("inf"), 1, 0), links)
    with pytest.raises(TypeError, match="FeedbackLinks"):
        rm.mix_objective(net, b, (1, 1, 0), "links")


def test_noise_variances_are_set_in_closed_form_from_held_out_residuals(pool):
    # σ_k² is the held-out mean squared residual of kind k (not learned by gradient): after training,
    # the restored links' σ_score² equals the best epoch's validation L_score
    scores = fb.make_dataset("score", pool, fb.realistic_raters("score", seed=0))
    comps = fb.make_dataset("comparison", pool, fb.realistic_raters("comparison", seed=0), n_pairs=100, seed=0)
    links = rm.FeedbackLinks()
    assert not links.log_var["score"].requires_grad
    cfg = rm.RewardTrainConfig(lambdas=(1, 1, 0), link=True, weighting="uncertainty", epochs=5, progress=False)
    _, h = rm.train_reward_model(RewardNet.for_env(ENV_ID, seed=0), [scores, comps], cfg, links=links)
    best = h["best_epoch"]
    assert links.summary()["sigma_score"] ** 2 == pytest.approx(h["val_score"][best], rel=1e-5)
    assert h["sigma_score"][best] ** 2 == pytest.approx(h["val_score"][best], rel=1e-5)
    links.set_noise({"score": 0.0})                          # floored: no kind claims to be noiseless
    assert links.summary()["sigma_score"] == pytest.approx(math.exp(0.5 * rm.MIN_LOG_VAR))
    with pytest.raises(ValueError, match="mse"):
        links.set_noise({"score": float("nan")})
    with pytest.raises(ValueError, match="links are for"):
        links.set_noise({"comparison": 0.1})


def test_pooled_minibatches_count_every_label_once():
    # an epoch is one pass over all labels: a mix of 96 + 32 labels gets ceil(128 / 32) = 4 steps,
    # each with the kinds in proportion to their counts and shares that weigh every label once
    train_t = {"score": {"x": torch.arange(96)}, "comparison": {"x": torch.arange(32)}}
    out = list(rm._epoch_batches(train_t, 32, torch.Generator().manual_seed(0)))
    assert len(out) == 4
    batch, shares = out[0]
    assert len(batch["score"]["x"]) == 24 and len(batch["comparison"]["x"]) == 8
    assert shares == pytest.approx({"score": 1.5, "comparison": 0.5})
    seen = torch.cat([b["score"]["x"] for b, _ in out])
    assert sorted(seen.tolist()) == list(range(96))            # one pass, no label twice
    single = list(rm._epoch_batches({"score": {"x": torch.arange(70)}}, 32, torch.Generator().manual_seed(0)))
    assert [len(b["score"]["x"]) for b, _ in single] == [32, 32, 6] and single[0][1] == {"score": 1.0}
    with pytest.raises(ValueError, match="shares"):
        rm.mix_objective(RewardNet(4, 2, seed=0), {}, (1, 0, 0), shares={"score": -1.0})


def test_train_config_validates():
    with pytest.raises(ValueError, match="link=True"):
        rm.RewardTrainConfig(weighting="uncertainty")
    with pytest.raises(ValueError, match="lr"):
        rm.RewardTrainConfig(lr=0.0)
    with pytest.raises(ValueError, match="select_on"):
        rm.RewardTrainConfig(select_on="test")
    with pytest.raises(ValueError, match="comparisons in the mix"):
        rm.RewardTrainConfig(lambdas=(1, 0, 0), select_on="comparison")
    with pytest.raises(ValueError, match=">= 0"):
        rm.RewardTrainConfig(lambdas=(-1, 1, 1))
    with pytest.raises(TypeError, match="link"):
        rm.RewardTrainConfig(link="yes")


def test_calibrated_training_learns_links_and_calls_back(pool, heldout):
    scores = fb.make_dataset("score", pool, fb.realistic_raters("score", seed=0))
    comps = fb.make_dataset("comparison", pool, fb.realistic_raters("comparison", seed=0), n_pairs=100, seed=0)
    net, links, seen = RewardNet.for_env(ENV_ID, seed=0), rm.FeedbackLinks(), []
    cfg = rm.RewardTrainConfig(lambdas=(1, 1, 0), link=True, weighting="uncertainty", epochs=6, progress=False)
    out, h = rm.train_reward_model(net, [scores, comps], cfg, links=links, callback=seen.append)
    assert out is net and [s["epoch"] for s in seen] == list(range(6))
    assert all(isinstance(h[k], list) and len(h[k]) == 6 for k in ("train_loss", "val_loss", "a_score", "beta"))
    assert h["a_score"][h["best_epoch"]] == pytest.approx(links.summary()["a_score"])
    assert h["config"]["weighting"] == "uncertainty"
    _, h2 = rm.train_reward_model(RewardNet.for_env(ENV_ID, seed=0), [scores, comps], cfg, links=rm.FeedbackLinks(),
                                  callback=lambda s: s["epoch"] >= 2)
    assert h2["epochs_run"] == 3                             # the callback returned True after epoch 2
    with pytest.raises(ValueError, match="link=True"):
        rm.train_reward_model(net, scores, (1, 0, 0), links=rm.FeedbackLinks())
    with pytest.raises(TypeError, match="callback"):
        rm.train_reward_model(net, scores, (1, 0, 0), callback=3)
    with pytest.raises(TypeError, match="config"):
        rm.train_reward_model(net, scores, "fast")
