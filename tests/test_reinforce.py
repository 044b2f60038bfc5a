"""Tests of rlhf_tutorial.reinforce: the loss by hand, episode collection, the trainer."""

import math

import numpy as np
import pytest
import torch

from rlhf_tutorial import rl
from rlhf_tutorial.reinforce import (
    BASELINES,
    Episode,
    ReinforceConfig,
    collect_episodes,
    episode_batch,
    reinforce_loss,
    train_reinforce,
)


# --------------------------------------------------------------------------- the loss by hand
def test_reinforce_loss_by_hand_with_baseline():
    # pi(a|s) = [0.5, 0.25, 0.8], G = [3, 2, 1], b = 1  ->  A = [2, 1, 0]
    # loss = -(2 ln 0.5 + 1 ln 0.25 + 0 ln 0.8) / 3 = -(-1.386294 - 1.386294) / 3 = 0.924196
    logp = torch.log(torch.tensor([0.5, 0.25, 0.8])).requires_grad_()
    loss = reinforce_loss(logp, [3.0, 2.0, 1.0], baseline=[1.0, 1.0, 1.0], normalize=False)
    assert loss.ndim == 0
    assert loss.item() == pytest.approx(4 * math.log(2) / 3, abs=1e-6)
    loss.backward()
    # d loss / d log pi_i = -A_i / B: the gradient pushes up log pi in proportion to the advantage
    torch.testing.assert_close(logp.grad, torch.tensor([-2.0, -1.0, 0.0]) / 3)
    # a scalar baseline is the same as a constant vector
    same = reinforce_loss(logp.detach(), [3.0, 2.0, 1.0], baseline=1.0, normalize=False)
    assert same.item() == pytest.approx(loss.item())


def test_reinforce_loss_by_hand_normalized():
    # A = [2, 1, 0] has mean 1 and (unbiased) std 1  ->  normalised A = [1, 0, -1]
    # loss = -(ln 0.5 - ln 0.8) / 3 = -(-0.693147 + 0.223144) / 3 = 0.156668
    logp = torch.log(torch.tensor([0.5, 0.25, 0.8]))
    loss = reinforce_loss(logp, torch.tensor([3.0, 2.0, 1.0]), baseline=torch.ones(3), normalize=True)
    assert loss.item() == pytest.approx(-(math.log(0.5) - math.log(0.8)) / 3, abs=1e-6)
    # normalising subtracts the mean: a constant baseline no longer changes anything
    no_b = reinforce_loss(logp, torch.tensor([3.0, 2.0, 1.0]), normalize=True)
    assert no_b.item() == pytest.approx(loss.item(), abs=1e-6)


def test_reinforce_loss_only_differentiates_logprobs():
    logp = torch.log(torch.tensor([0.5, 0.5])).requires_grad_()
    b = torch.tensor([0.2, 0.3], requires_grad=True)
    reinforce_loss(logp, torch.tensor([1.0, 2.0]), baseline=b, normalize=False).backward()
    assert b.grad is None and logp.grad is not None


def test_reinforce_loss_bad_inputs():
    logp = torch.zeros(3)
    with pytest.raises(ValueError, match=r"returns must have the shape of logprobs \(3,\), got \(2,\)"):
        reinforce_loss(logp, [1.0, 2.0])
    with pytest.raises(ValueError, match="baseline must be a number or have the shape of returns"):
        reinforce_loss(logp, [1.0, 2.0, 3.0], baseline=[0.0, 0.0])
    with pytest.raises(TypeError, match="logprobs must be a torch.Tensor"):
        reinforce_loss([0.0, 0.0, 0.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="logprobs is empty"):
        reinforce_loss(torch.zeros(0), [])
    with pytest.raises(ValueError, match="returns contains NaN"):
        reinforce_loss(logp, [1.0, float("nan"), 3.0])


# --------------------------------------------------------------------------- episodes
def test_collect_episodes_complete_and_per_env_quota():
    torch.manual_seed(0)
    policy = rl.CategoricalPolicy(4, 2)
    envs = rl.make_vec_env("CartPole-v1", 3, max_episode_steps=30)
    episodes = collect_episodes(policy, envs, episodes_per_env=2, seed=0)
    envs.close()
    assert len(episodes) == 6 and all(isinstance(ep, Episode) for ep in episodes)
    for ep in episodes:
        T = len(ep)
        assert 1 <= T <= 30
        assert ep.obs.shape == (T, 4) and ep.actions.shape == (T,) and ep.rewards.shape == (T,)
        assert ep.total_reward == T  # CartPole: 1 per step, no reset step recorded (it pays 0)
        # every episode starts from a reset state (all components in [-0.05, 0.05])
        assert np.abs(ep.obs[0]).max() <= 0.05
        # shorter than the time limit: the pole fell; not terminated: the time limit cut it
        assert ep.terminated or T == 30


def test_collect_episodes_is_reproducible_and_validates():
    def run():
        torch.manual_seed(1)
        policy = rl.CategoricalPolicy(4, 2)
        envs = rl.make_vec_env("CartPole-v1", 2)
        eps = collect_episodes(policy, envs, 1, seed=5)
        envs.close()
        return eps

    a, b = run(), run()
    assert [len(e) for e in a] == [len(e) for e in b]
    np.testing.assert_array_equal(np.concatenate([e.obs for e in a]), np.concatenate([e.obs for e in b]))
    envs = rl.make_vec_env("CartPole-v1", 2)
    with pytest.raises(ValueError, match="episodes_per_env"):
        collect_episodes(rl.CategoricalPolicy(4, 2), envs, 0)
    envs.close()
    pendulum = rl.make_vec_env("Pendulum-v1", 2)
    with pytest.raises(TypeError, match="collect_episodes needs a Discrete"):
        collect_episodes(rl.CategoricalPolicy(3, 2), pendulum, 1)
    pendulum.close()


def test_episode_batch_reward_to_go_stays_inside_each_episode():
    ep1 = Episode(np.zeros((3, 2), np.float32), np.array([0, 1, 0]), np.array([1.0, 2.0, 3.0], np.float32), True)
    ep2 = Episode(np.ones((2, 2), np.float32), np.array([1, 1]), np.array([10.0, 20.0], np.float32), False)
    obs, actions, returns = episode_batch([ep1, ep2], gamma=0.5)
    assert obs.shape == (5, 2) and actions.dtype == torch.long
    # episode 1: [1 + .5*2 + .25*3, 2 + .5*3, 3] = [2.75, 3.5, 3]; episode 2: [10 + .5*20, 20]
    torch.testing.assert_close(returns, torch.tensor([2.75, 3.5, 3.0, 20.0, 20.0]))
    with pytest.raises(ValueError, match="episodes is empty"):
        episode_batch([], 0.9)
    with pytest.raises(ValueError, match="gamma"):
        episode_batch([ep1], 1.1)


# --------------------------------------------------------------------------- configuration and trainer
def test_config_validation_names_the_setting():
    with pytest.raises(ValueError, match=r"baseline must be one of \('value', 'mean', 'none'\), got 'median'"):
        train_reinforce(ReinforceConfig(baseline="median"))
    with pytest.raises(ValueError, match="gamma"):
        train_reinforce(ReinforceConfig(gamma=1.5))
    with pytest.raises(ValueError, match="num_envs"):
        train_reinforce(ReinforceConfig(num_envs=0))
    with pytest.raises(TypeError, match="episodes_per_env must be an int"):
        train_reinforce(ReinforceConfig(episodes_per_env=1.5))
    with pytest.raises(ValueError, match="learning_rate"):
        train_reinforce(ReinforceConfig(learning_rate=-1e-3))
    with pytest.raises(ValueError, match="env_id 'CartPole-v9'"):
        train_reinforce(ReinforceConfig(env_id="CartPole-v9"))
    with pytest.raises(TypeError, match="config must be a ReinforceConfig"):
        train_reinforce({"env_id": "CartPole-v1"})
    assert BASELINES == ("value", "mean", "none")


def test_train_reinforce_rejects_continuous_actions():
    with pytest.raises(TypeError, match="needs a Discrete action space"):
        train_reinforce(ReinforceConfig(env_id="Pendulum-v1"), progress=False)


@pytest.mark.parametrize("baseline", BASELINES)
def test_train_reinforce_short_run_is_deterministic(baseline):
    cfg = ReinforceConfig(seed=3, num_envs=4, total_episodes=12, baseline=baseline, eval_every=2,
                          eval_episodes=2)
    p1, h1 = train_reinforce(cfg, progress=False)
    p2, h2 = train_reinforce(cfg, progress=False)
    assert h1["update"] == [1, 2, 3] and h1["episodes"] == [4, 8, 12]
    assert h1["episode_return"] == h2["episode_return"] and h1["policy_loss"] == h2["policy_loss"]
    assert len(h1["eval_return"]) == 2  # after update 2 and at the end (update 3)
    for a, b in zip(p1.parameters(), p2.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert h1["global_step"][-1] == sum(h1["episode_return"])  # CartPole: return = length
    assert np.all(np.diff(h1["episode_step"]) > 0) and h1["episode_step"][-1] == h1["global_step"][-1]
    assert np.isnan(h1["value_loss"]).all() == (baseline != "value")


def test_train_reinforce_callback_gets_each_update_and_true_stops():
    cfg = ReinforceConfig(seed=3, num_envs=2, total_episodes=10, eval_every=2, eval_episodes=1)
    seen = []
    _, h = train_reinforce(cfg, progress=False, callback=lambda st: seen.append(st) or st["update"] == 3)
    assert [st["update"] for st in seen] == [1, 2, 3] and h["update"] == [1, 2, 3]
    assert "eval_return" in seen[1] and "eval_return" not in seen[0]
    assert seen[-1]["global_step"] == h["global_step"][-1]
    with pytest.raises(TypeError, match="callback"):
        train_reinforce(cfg, progress=False, callback=3)


def test_train_reinforce_solves_cartpole():
    # the default config (early stop at a greedy evaluation >= 475 over 10 episodes)
    policy, history = train_reinforce(ReinforceConfig(seed=0), progress=False)
    assert history["target_reached"]
    returns = rl.evaluate_policy(lambda o: policy.act(o, deterministic=True), "CartPole-v1", 20)
    assert returns.mean() >= 195
