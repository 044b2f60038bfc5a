"""PPO / A2C losses against hand-computed values, the trainer, and bad inputs."""

import math

import numpy as np
import pytest
import torch

from rlhf_tutorial.ppo import (
    PPOConfig,
    a2c_loss,
    normalize,
    ppo_policy_loss,
    ppo_value_loss,
    train_ppo,
)
from rlhf_tutorial.rl import evaluate_policy


def test_ppo_policy_loss_hand_computed():
    # ratios 1.5, 0.5, 1.0 ; advantages +1, +1, -2 ; eps 0.2
    new = torch.log(torch.tensor([1.5, 0.5, 1.0]))
    old = torch.zeros(3)
    adv = torch.tensor([1.0, 1.0, -2.0])
    loss, st = ppo_policy_loss(new, old, adv, 0.2)
    # min(1.5*1, 1.2*1)=1.2 ; min(0.5*1, 0.8*1)=0.5 ; min(1*-2, 1*-2)=-2  -> mean = -0.1 -> loss 0.1
    assert loss.item() == pytest.approx(0.1, abs=1e-6)
    assert st["clipfrac"] == pytest.approx(2 / 3)
    approx_kl = np.mean([(r - 1) - math.log(r) for r in (1.5, 0.5, 1.0)])
    assert st["approx_kl"] == pytest.approx(approx_kl, rel=1e-5)
    assert st["ratio"] == pytest.approx(1.0)


def test_ratio_is_one_and_gradient_is_plain_pg_before_any_update():
    logits = torch.randn(5, 3, requires_grad=True)
    a = torch.tensor([0, 1, 2, 1, 0])
    logp = torch.log_softmax(logits, -1)[torch.arange(5), a]
    adv = torch.randn(5)
    loss, st = ppo_policy_loss(logp, logp.detach(), adv, 0.2)
    assert st["ratio"] == pytest.approx(1.0) and st["clipfrac"] == 0.0 and st["approx_kl"] == pytest.approx(0.0, abs=1e-7)
    (g1,) = torch.autograd.grad(loss, logits)
    logp2 = torch.log_softmax(logits, -1)[torch.arange(5), a]
    (g2,) = torch.autograd.grad(-(logp2 * adv).mean(), logits)
    torch.testing.assert_close(g1, g2)


def test_value_loss_clipped_and_unclipped():
    new, old, ret = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    assert ppo_value_loss(new, old, ret).item() == pytest.approx(0.5 * (1 + 1) / 2)
    # clipped: v_clip = 1 + clamp(1, -.5, .5) = 1.5 -> (1.5-3)^2 = 2.25 > 1 ; second: 0 -> 1
    assert ppo_value_loss(new, old, ret, 0.5).item() == pytest.approx(0.5 * (2.25 + 1) / 2)


def test_a2c_loss_hand_computed():
    logp = torch.tensor([-1.0, -2.0])
    adv = torch.tensor([1.0, -1.0])
    v, ret, ent = torch.tensor([0.0, 1.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.7])
    loss, st = a2c_loss(logp, adv, v, ret, ent, vf_coef=0.5, ent_coef=0.1)
    pg = -((-1.0 * 1.0) + (-2.0 * -1.0)) / 2  # -0.5
    vl = 0.5 * (1.0 + 0.0) / 2  # 0.25
    assert loss.item() == pytest.approx(pg + 0.5 * vl - 0.1 * 0.6)
    assert st["policy_loss"] == pytest.approx(pg)


def test_normalize():
    x = torch.tensor([1.0, 2.0, 3.0])
    y = normalize(x)
    assert y.mean().item() == pytest.approx(0.0, abs=1e-6) and y.std().item() == pytest.approx(1.0, abs=1e-4)
    assert normalize(torch.tensor([5.0])).item() == 0.0


@pytest.mark.parametrize("fn,args", [
    (ppo_policy_loss, (torch.zeros(3), torch.zeros(4), torch.zeros(3), 0.2)),
    (ppo_value_loss, (torch.zeros(3), torch.zeros(3), torch.zeros(2))),
    (a2c_loss, (torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(1))),
])
def test_losses_reject_mismatched_shapes(fn, args):
    with pytest.raises(ValueError, match="same shape"):
        fn(*args)


def test_policy_loss_rejects_bad_clip():
    with pytest.raises(ValueError, match="clip_coef"):
        ppo_policy_loss(torch.zeros(2), torch.zeros(2), torch.zeros(2), 1.5)


@pytest.mark.parametrize("kwargs,match", [
    (dict(algo="trpo"), "algo must be one of"),
    (dict(gamma=1.2), "gamma"),
    (dict(gae_lambda=-0.1), "gae_lambda"),
    (dict(num_envs=0), "num_envs"),
    (dict(num_minibatches=10_000), "num_minibatches"),
    (dict(learning_rate=0.0), "learning_rate"),
    (dict(env_id="CartPol-v1"), "unknown Gymnasium env_id"),
])
def test_config_rejects_bad_values(kwargs, match):
    with pytest.raises(ValueError, match=match):
        train_ppo(PPOConfig(total_timesteps=256, **kwargs), progress=False)


def test_continuous_env_is_rejected_with_type_error():
    with pytest.raises(TypeError, match="Discrete action space.*Box"):
        train_ppo(PPOConfig(env_id="Pendulum-v1", total_timesteps=256), progress=False)


def test_train_ppo_is_deterministic_and_logs_diagnostics():
    cfg = PPOConfig(total_timesteps=2048, eval_every=1024, eval_episodes=2, seed=3)
    a1, h1 = train_ppo(cfg, progress=False)
    a2, h2 = train_ppo(cfg, progress=False)
    assert h1["approx_kl"] == h2["approx_kl"] and h1["eval_return"] == h2["eval_return"]
    for p1, p2 in zip(a1.parameters(), a2.parameters()):
        torch.testing.assert_close(p1, p2)
    n = len(h1["global_step"])
    # reset steps are not counted as env steps, so a few more than 2048 / 256 rollouts are needed
    assert n >= 2048 // 256 and h1["global_step"][-1] >= 2048 and h1["global_step"][-2] < 2048
    for k in ("approx_kl", "clipfrac", "explained_variance", "value_loss", "entropy", "lr"):
        assert len(h1[k]) == n
    assert h1["lr"][0] == pytest.approx(1e-3) and h1["lr"][-1] < h1["lr"][0]
    assert 0.0 <= min(h1["clipfrac"]) and max(h1["clipfrac"]) <= 1.0
    assert len(h1["eval_step"]) == 2


def test_a2c_runs_and_ppo_learns_cartpole_quickly():
    # a tiny budget: PPO must already beat the random policy (~22) by a wide margin
    agent, h = train_ppo(PPOConfig(total_timesteps=12_288, eval_every=0, seed=0), progress=False)
    ret = evaluate_policy(lambda o: agent.act(o, deterministic=True), "CartPole-v1", 10, seed=1)
    assert ret.mean() > 100
    _, ha = train_ppo(PPOConfig(algo="a2c", total_timesteps=1024, eval_every=0), progress=False)
    assert len(ha["clipfrac"]) >= 4 and set(ha["clipfrac"]) == {0.0}


def test_truncation_bootstrap_changes_value_targets():
    """With bootstrap, a truncated CartPole episode's last target is r + γV(s_T); without, just r."""
    from rlhf_tutorial.rl import compute_gae
    r = torch.ones(3)
    v = torch.full((3,), 10.0)
    nv = torch.full((3,), 10.0)
    trunc = torch.tensor([0.0, 0.0, 1.0])
    zeros = torch.zeros(3)
    _, ret_boot = compute_gae(r, v, nv, zeros, trunc, 0.9, 1.0)
    _, ret_dead = compute_gae(r, v, nv, trunc, trunc, 0.9, 1.0)  # truncation treated as termination
    assert ret_boot[-1].item() == pytest.approx(1 + 0.9 * 10)
    assert ret_dead[-1].item() == pytest.approx(1.0)


def test_train_ppo_in_a_given_env_tracks_the_true_return():
    """A wrapper that hides the reward (all zeros) but reports it in info: PPO sees 0, history keeps the truth."""
    import gymnasium as gym
    import numpy as np

    from rlhf_tutorial.rl import make_vec_env

    class HideReward(gym.vector.VectorWrapper):
        def step(self, actions):
            obs, reward, term, trunc, info = self.env.step(actions)
            info = dict(info, true_reward=np.asarray(reward, dtype=float))
            return obs, np.zeros_like(reward), term, trunc, info

    envs = HideReward(make_vec_env("CartPole-v1", 8))
    _, h = train_ppo(PPOConfig(total_timesteps=1024, eval_every=0), progress=False, envs=envs)
    assert len(h["episode_return"]) == len(h["episode_true_return"]) > 0
    assert set(h["episode_return"]) == {0.0} and min(h["episode_true_return"]) >= 8
    with pytest.raises(ValueError, match="num_envs"):
        train_ppo(PPOConfig(total_timesteps=256), progress=False, envs=make_vec_env("CartPole-v1", 2))


def test_train_ppo_evaluates_through_the_wrappers_it_trains_with():
    import gymnasium as gym

    from rlhf_tutorial.rl import evaluate_policy, make_vec_env

    class HideReward(gym.vector.VectorWrapper):
        def step(self, actions):
            obs, reward, term, trunc, info = self.env.step(actions)
            return obs, np.zeros_like(reward), term, trunc, dict(info, true_reward=np.asarray(reward, dtype=float))

    made = []

    def make(n):
        made.append(n)
        return HideReward(make_vec_env("CartPole-v1", n))

    cfg = PPOConfig(total_timesteps=512, eval_every=256, eval_episodes=3)
    agent, h = train_ppo(cfg, progress=False, envs=make)
    assert made == [8, 3, 3]  # training, then each evaluation, through the same wrapper
    want = evaluate_policy(lambda o: agent.act(o, deterministic=True), "CartPole-v1", 3, seed=10_000)
    assert h["eval_return"][-1] == pytest.approx(float(want.mean()))  # the true return, from info
    _, h = train_ppo(cfg, progress=False, callback=lambda info: info["global_step"] >= 256)
    assert len(h["global_step"]) == 2 and h["global_step"][0] < 256 <= h["global_step"][1]  # True stops training
    with pytest.raises(TypeError, match="envs"):
        train_ppo(cfg, progress=False, envs=3)
