"""Tests of rlhf_tutorial.sac: the three losses by hand, the squashed Gaussian, buffer, Polyak, bad input."""

import math

import numpy as np
import pytest
import torch
from torch.distributions import AffineTransform, Normal, TanhTransform, TransformedDistribution

from rlhf_tutorial.rl import evaluate_policy
from rlhf_tutorial.sac import (
    ReplayBuffer,
    SACConfig,
    SquashedGaussianActor,
    TwinQ,
    polyak_update,
    sac_actor_loss,
    sac_alpha_loss,
    sac_critic_loss,
    soft_q_target,
    tanh_log_det_jacobian,
    train_sac,
)

T = torch.tensor


# --------------------------------------------------------------------------- critic target and loss
def test_soft_q_target_by_hand_with_and_without_termination():
    # sample 0: y = 1 + 0.9 * (min(3, 4) - 0.2 * 0.5) = 1 + 0.9 * 2.9 = 3.61
    # sample 1: terminated, so y = r = 2 whatever the next state is worth
    y = soft_q_target(T([1.0, 2.0]), T([0.0, 1.0]), T([3.0, 5.0]), T([4.0, 1.0]), T([0.5, -1.0]),
                      gamma=0.9, alpha=0.2)
    torch.testing.assert_close(y, T([3.61, 2.0]))
    # not terminated: the second sample bootstraps from min(5, 1) - 0.2 * (-1) = 1.2
    y = soft_q_target(T([1.0, 2.0]), T([0.0, 0.0]), T([3.0, 5.0]), T([4.0, 1.0]), T([0.5, -1.0]),
                      gamma=0.9, alpha=0.2)
    torch.testing.assert_close(y, T([3.61, 2.0 + 0.9 * 1.2]))


def test_sac_critic_loss_by_hand_and_no_gradient_into_target():
    q1 = T([3.0, 2.0], requires_grad=True)
    q2 = T([4.0, 1.0], requires_grad=True)
    next_q1 = T([3.0, 5.0], requires_grad=True)
    loss = sac_critic_loss(q1, q2, T([1.0, 2.0]), T([0.0, 1.0]), next_q1, T([4.0, 1.0]),
                           T([0.5, -1.0]), gamma=0.9, alpha=0.2)
    # y = [3.61, 2]; MSE(q1, y) = (0.61² + 0²)/2, MSE(q2, y) = (0.39² + 1²)/2
    expected = (0.61**2 + 0.0) / 2 + (0.39**2 + 1.0) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    torch.testing.assert_close(q1.grad, T([(3.0 - 3.61), 0.0]))  # d/dq (q - y)²/2 = (q - y)
    assert next_q1.grad is None  # the target is a constant


def test_sac_actor_loss_by_hand():
    loss = sac_actor_loss(T([0.5, -1.0]), T([3.0, 5.0]), T([4.0, 1.0]), alpha=0.2)
    # mean of [0.2*0.5 - 3, 0.2*(-1) - 1] = mean(-2.9, -1.2)
    assert loss.item() == pytest.approx(-2.05)


def test_sac_alpha_loss_sign_moves_alpha_towards_target_entropy():
    # entropy 0.5 above the target -1: the loss gradient is positive, descent lowers α
    log_alpha = torch.zeros((), requires_grad=True)
    loss = sac_alpha_loss(log_alpha, T([-0.5, -0.5]), target_entropy=-1.0)
    loss.backward()
    assert float(log_alpha.grad) == pytest.approx(1.5)  # loss = -log α · (-0.5 - 1)
    # entropy -2 below the target -1: the gradient is negative, descent raises α
    log_alpha = torch.tensor(math.log(2.0), requires_grad=True)
    loss = sac_alpha_loss(log_alpha, T([2.0, 2.0]), target_entropy=-1.0)
    assert loss.item() == pytest.approx(-math.log(2.0) * 1.0)
    loss.backward()
    assert float(log_alpha.grad) == pytest.approx(-1.0)


def test_alpha_loss_does_not_backpropagate_into_the_policy():
    logp = T([0.3, 0.1], requires_grad=True)
    sac_alpha_loss(torch.zeros((), requires_grad=True), logp, -1.0).backward()
    assert logp.grad is None


# --------------------------------------------------------------------------- squashed Gaussian actor
def test_tanh_log_det_jacobian_is_exact_and_stable():
    u = torch.linspace(-5, 5, 41, dtype=torch.float64)
    torch.testing.assert_close(tanh_log_det_jacobian(u), torch.log(1 - torch.tanh(u) ** 2))
    big = tanh_log_det_jacobian(T([-30.0, 30.0]))
    assert torch.isfinite(big).all()  # the naive formula gives log(0) = -inf here
    torch.testing.assert_close(big, T([2 * math.log(2) - 60.0] * 2))


@pytest.mark.parametrize("low,high", [([-1.0], [1.0]), ([-2.0], [2.0]), ([0.0, -2.0], [1.0, 2.0])])
def test_actor_log_prob_matches_torch_transformed_distribution(low, high):
    torch.manual_seed(0)
    act_dim = len(low)
    actor = SquashedGaussianActor(3, act_dim, low, high, hidden=(16,))
    with torch.no_grad():  # a wider policy than at init, so the tanh correction matters
        actor.net[-1].weight.mul_(50.0)
    obs = torch.randn(64, 3)
    torch.manual_seed(1)
    action, logp, det = actor.sample(obs)
    mean, log_std = actor(obs)
    scale, bias = actor.action_scale, actor.action_bias
    dist = TransformedDistribution(Normal(mean, log_std.exp()),
                                   [TanhTransform(), AffineTransform(loc=bias, scale=scale)])
    torch.testing.assert_close(logp, dist.log_prob(action).sum(-1), rtol=1e-4, atol=1e-4)
    assert action.shape == (64, act_dim) and logp.shape == (64,)
    assert (action >= T(low)).all() and (action <= T(high)).all()
    torch.testing.assert_close(det, bias + scale * torch.tanh(mean))


def test_actor_act_returns_numpy_in_bounds_and_deterministic_mode_is_tanh_mean():
    torch.manual_seed(0)
    actor = SquashedGaussianActor(3, 1, [-2.0], [2.0], hidden=(16, 16))
    obs = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    a = actor.act(obs, deterministic=True)
    assert isinstance(a, np.ndarray) and a.shape == (5, 1)
    mean, _ = actor(torch.as_tensor(obs))
    np.testing.assert_allclose(a, 2.0 * np.tanh(mean.detach().numpy()), rtol=1e-6)
    np.testing.assert_array_equal(a, actor.act(obs, deterministic=True))
    assert actor.act(obs[0]).shape == (1,)  # one observation in, one action out
    stochastic = actor.act(obs)
    assert stochastic.shape == (5, 1) and np.all(np.abs(stochastic) <= 2.0)
    returns = evaluate_policy(lambda o: actor.act(o, True), "Pendulum-v1", n_episodes=2)
    assert returns.shape == (2,)


def test_twin_q_shapes_and_independent_heads():
    q = TwinQ(3, 2, hidden=(8,))
    q1, q2 = q(torch.randn(4, 3), torch.randn(4, 2))
    assert q1.shape == (4,) and q2.shape == (4,)
    assert not torch.equal(q1, q2)


# --------------------------------------------------------------------------- buffer and Polyak
def test_replay_buffer_wraps_and_samples_shapes():
    rb = ReplayBuffer(obs_dim=3, act_dim=2, capacity=4, seed=0)
    for i in range(6):
        rb.add(np.full(3, i), np.full(2, -i), float(i), np.full(3, i + 1), terminated=(i == 5), truncated=(i == 4))
    assert len(rb) == 4
    assert sorted(rb.rewards.tolist()) == [2.0, 3.0, 4.0, 5.0]  # 0 and 1 were overwritten
    b = rb.sample(10)
    assert b.obs.shape == (10, 3) and b.next_obs.shape == (10, 3) and b.actions.shape == (10, 2)
    assert b.rewards.shape == b.terminated.shape == b.truncated.shape == (10,)
    assert b.obs.dtype == torch.float32
    torch.testing.assert_close(b.next_obs, b.obs + 1)
    torch.testing.assert_close(b.terminated, (b.rewards == 5).float())  # stored apart from truncation
    torch.testing.assert_close(b.truncated, (b.rewards == 4).float())


def test_replay_buffer_bad_use():
    rb = ReplayBuffer(3, 1, capacity=10)
    with pytest.raises(ValueError, match="empty ReplayBuffer"):
        rb.sample(2)
    with pytest.raises(ValueError, match="capacity must be >= 1, got 0"):
        ReplayBuffer(3, 1, capacity=0)


def test_polyak_update():
    source, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    for p in source.parameters():
        torch.nn.init.constant_(p, 1.0)
    for p in target.parameters():
        torch.nn.init.constant_(p, 0.0)
    polyak_update(target, source, tau=0.1)
    for p in target.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.1))
    polyak_update(target, source, tau=0.5)  # 0.5 * 1 + 0.5 * 0.1
    for p in target.parameters():
        torch.testing.assert_close(p, torch.full_like(p, 0.55))
    polyak_update(target, source, tau=1.0)
    for p in target.parameters():
        torch.testing.assert_close(p, torch.ones_like(p))
    with pytest.raises(ValueError, match="same architecture"):
        polyak_update(torch.nn.Linear(2, 3), source, tau=0.1)
    with pytest.raises(ValueError, match="tau must be in"):
        polyak_update(target, source, tau=1.5)


# --------------------------------------------------------------------------- bad input
def test_losses_reject_mismatched_shapes():
    two, col = T([1.0, 2.0]), torch.ones(2, 1)
    with pytest.raises(ValueError, match=r"q2 must have shape \(2,\) like q1, got \(2, 1\)"):
        sac_critic_loss(two, col, two, two, two, two, two, 0.99, 0.2)
    with pytest.raises(ValueError, match=r"next_logp must have shape \(2,\) like rewards, got \(3,\)"):
        soft_q_target(two, two, two, two, torch.ones(3), 0.99, 0.2)
    with pytest.raises(ValueError, match=r"q1_pi must have shape \(2,\) like logp, got \(2, 1\)"):
        sac_actor_loss(two, col, two, 0.2)
    with pytest.raises(ValueError, match="alpha must be >= 0"):
        sac_actor_loss(two, two, two, -0.1)
    with pytest.raises(ValueError, match="log_alpha must be a 1-element tensor"):
        sac_alpha_loss(torch.zeros(2), two, -1.0)
    with pytest.raises(ValueError, match="gamma must be in"):
        soft_q_target(two, two, two, two, two, 1.5, 0.2)
    with pytest.raises(TypeError, match="rewards must be a torch.Tensor"):
        soft_q_target([1.0, 2.0], two, two, two, two, 0.99, 0.2)


def test_bad_config_values():
    with pytest.raises(ValueError, match="gamma must be in"):
        SACConfig(gamma=1.5)
    with pytest.raises(ValueError, match="tau must be in"):
        SACConfig(tau=0.0)
    with pytest.raises(ValueError, match=r"batch_size \(512\) must be <= buffer_size \(100\)"):
        SACConfig(batch_size=512, buffer_size=100)
    with pytest.raises(ValueError, match="total_timesteps must be >= 1"):
        SACConfig(total_timesteps=0)
    with pytest.raises(TypeError, match="batch_size must be an int"):
        SACConfig(batch_size=32.0)
    with pytest.raises(ValueError, match="policy_frequency must be >= 1, got 0"):
        SACConfig(policy_frequency=0)
    with pytest.raises(ValueError, match="q_lr must be > 0"):
        SACConfig(q_lr=0.0)
    with pytest.raises(ValueError, match="hidden must be"):
        SACConfig(hidden=())
    with pytest.raises(ValueError, match="low and high must have shape"):
        SquashedGaussianActor(3, 2, [-1.0], [1.0])


def test_train_sac_rejects_discrete_actions_and_unknown_envs():
    with pytest.raises(TypeError, match="SAC here needs a Box action space, got Discrete"):
        train_sac(SACConfig(env_id="CartPole-v1"), progress=False)
    with pytest.raises(ValueError, match="unknown Gymnasium env_id"):
        train_sac(SACConfig(env_id="Pendulum-v99"), progress=False)
    with pytest.raises(TypeError, match="config must be a SACConfig"):
        train_sac({"env_id": "Pendulum-v1"}, progress=False)


# --------------------------------------------------------------------------- smoke runs
SMOKE = dict(total_timesteps=300, learning_starts=100, batch_size=32, hidden=(32, 32),
             eval_every=150, eval_episodes=2, seed=3)


def test_train_sac_smoke_is_deterministic_and_restores_threads():
    threads = torch.get_num_threads()
    actor, h = train_sac(SACConfig(**SMOKE), progress=False)
    assert torch.get_num_threads() == threads
    assert h["steps"] == 300 and not h["stopped_early"]
    assert h["eval_step"] == [150, 300] and len(h["eval_return"]) == 2
    assert h["episode_step"] == [200] and len(h["episode_return"]) == 1
    assert h["log_step"] == [200, 300]
    for key in ("q_loss", "actor_loss", "alpha", "entropy", "q_value"):
        assert len(h[key]) == 2 and np.isfinite(h[key]).all(), key
    assert h["alpha"][-1] != pytest.approx(0.2)  # autotune moved α
    obs = np.zeros((4, 3), dtype=np.float32)
    assert actor.act(obs, deterministic=True).shape == (4, 1)
    torch.set_num_threads(2)  # the caller's thread count must not change the run
    try:
        actor2, h2 = train_sac(SACConfig(**SMOKE), progress=False)
    finally:
        torch.set_num_threads(threads)
    assert h2["eval_return"] == h["eval_return"] and h2["q_loss"] == h["q_loss"]
    np.testing.assert_array_equal(actor.act(obs, True), actor2.act(obs, True))


def test_train_sac_early_stop_and_callback():
    _, h = train_sac(SACConfig(**{**SMOKE, "target_return": -1e9}), progress=False)
    assert h["steps"] == 150 and h["stopped_early"]
    seen = []

    def callback(info):  # the trainers' contract: one dict, True stops
        seen.append((info["global_step"], info["eval_return"]))
        return True

    cfg = SACConfig(**{**SMOKE, "autotune": False, "eval_every": 200})
    _, h = train_sac(cfg, callback=callback, progress=False)
    assert h["steps"] == 200 and len(seen) == 1 and seen[0][0] == 200
    assert h["alpha"] == [0.2]  # fixed temperature


def test_train_sac_on_a_learned_reward_evaluates_the_true_return():
    from rlhf_tutorial.reward_model import RewardNet
    from rlhf_tutorial.rl import make_vec_env
    from rlhf_tutorial.rlhf import LearnedRewardVectorWrapper

    net = RewardNet(3, n_actions=1, hidden=(8,), use_action=False, seed=0)
    cfg = SACConfig(**SMOKE)
    actor, h = train_sac(cfg, progress=False, envs=lambda n: LearnedRewardVectorWrapper(make_vec_env("Pendulum-v1", n), net))
    ref, h_true = train_sac(cfg, progress=False)
    assert h["episode_return"] != h_true["episode_return"]  # it trained on r̂ ...
    assert len(h["episode_true_return"]) == 1 and h["episode_true_return"][0] < 0  # the true return, logged
    from rlhf_tutorial.rl import evaluate_policy
    want = evaluate_policy(lambda o: actor.act(o, deterministic=True), "Pendulum-v1", 2, seed=cfg.eval_seed)
    assert h["eval_return"][-1] == pytest.approx(float(want.mean()))  # ... and is judged on the true reward
    with pytest.raises(TypeError, match="envs"):
        train_sac(cfg, progress=False, envs=3)
