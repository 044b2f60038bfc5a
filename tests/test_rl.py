"""Hand-computed tests of rlhf_tutorial.rl: returns, GAE, log-probs, rollouts, evaluation."""

import numpy as np
import pytest
import torch

from rlhf_tutorial import rl


# --------------------------------------------------------------------------- discounted returns
def test_discounted_returns_three_steps_by_hand():
    # rewards [1, 2, 3], gamma 0.5, computed backwards:
    #   G_2 = 3
    #   G_1 = 2 + 0.5 * 3    = 3.5
    #   G_0 = 1 + 0.5 * 3.5  = 2.75
    np.testing.assert_allclose(rl.discounted_returns([1.0, 2.0, 3.0], 0.5), [2.75, 3.5, 3.0])


def test_discounted_returns_gamma_edges():
    np.testing.assert_allclose(rl.discounted_returns([1.0, 2.0, 3.0], 1.0), [6.0, 5.0, 3.0])
    np.testing.assert_allclose(rl.discounted_returns([1.0, 2.0, 3.0], 0.0), [1.0, 2.0, 3.0])
    assert rl.discounted_returns([], 0.9).shape == (0,)


@pytest.mark.parametrize("gamma", [-0.1, 1.5])
def test_discounted_returns_gamma_out_of_range(gamma):
    with pytest.raises(ValueError, match="gamma"):
        rl.discounted_returns([1.0, 2.0], gamma)


def test_discounted_returns_bad_inputs():
    with pytest.raises(TypeError, match="gamma"):
        rl.discounted_returns([1.0, 2.0], "0.9")
    with pytest.raises(ValueError, match="rewards must be 1-D"):
        rl.discounted_returns([[1.0, 2.0], [3.0, 4.0]], 0.9)
    with pytest.raises(ValueError, match="rewards contains NaN"):
        rl.discounted_returns([1.0, float("nan")], 0.9)


# --------------------------------------------------------------------------- GAE
def test_gae_by_hand_with_termination_and_truncation():
    # gamma = 0.9, lam = 0.8, V(s_t) = 0.5 everywhere, V(s_{t+1}) = [.5, .5, .5, .7].
    # deltas  d_t = r_t + gamma * (1 - term_t) * V(s_{t+1}) - V(s_t):
    #   d_0 = 1 + .9 * .5 - .5 = 0.95
    #   d_1 = 1 + 0       - .5 = 0.5     (terminated: the future is worth 0)
    #   d_2 = 1 + .9 * .5 - .5 = 0.95
    #   d_3 = 1 + .9 * .7 - .5 = 1.13    (truncated: bootstrap from the real next state)
    # advantages  A_t = d_t + gamma * lam * (1 - term_t) * (1 - trunc_t) * A_{t+1}:
    #   A_3 = 1.13
    #   A_2 = 0.95 + 0.72 * 1.13 = 1.7636
    #   A_1 = 0.5                        (the recursion stops at the episode end)
    #   A_0 = 0.95 + 0.72 * 0.5  = 1.31
    adv, ret = rl.compute_gae(
        rewards=[1.0, 1.0, 1.0, 1.0], values=[0.5] * 4, next_values=[0.5, 0.5, 0.5, 0.7],
        terminated=[0, 1, 0, 0], truncated=[0, 0, 0, 1], gamma=0.9, lam=0.8,
    )
    torch.testing.assert_close(adv, torch.tensor([1.31, 0.5, 1.7636, 1.13]))
    torch.testing.assert_close(ret, adv + 0.5)


def test_gae_truncation_in_the_middle_bootstraps_but_stops_the_recursion():
    # truncated at t=1 with V(s_2_final) = 2.0: d_1 = 1 + .9 * 2 - .5 = 2.3 and A_1 = d_1 exactly
    # (nothing of A_2, which belongs to the next episode); t=0 still chains: A_0 = .95 + .72 * 2.3.
    adv, _ = rl.compute_gae([1.0, 1.0, 1.0], [0.5] * 3, [0.5, 2.0, 0.5], [0, 0, 0], [0, 1, 0], 0.9, 0.8)
    torch.testing.assert_close(adv, torch.tensor([0.95 + 0.72 * 2.3, 2.3, 0.95]))


def test_gae_lambda_one_is_discounted_return_minus_value():
    # no episode end inside: with lam = 1 the advantages telescope into
    # A_t = r_t + gamma r_{t+1} + ... + gamma^(T-t) V(s_T) - V(s_t)
    rng = np.random.default_rng(0)
    r, v, v_last, gamma = rng.normal(size=6), rng.normal(size=6), 0.7, 0.95
    next_v = np.append(v[1:], v_last)
    adv, ret = rl.compute_gae(r, v, next_v, np.zeros(6), np.zeros(6), gamma, 1.0)
    expected = rl.discounted_returns(np.append(r, v_last), gamma)[:-1]  # V(s_T) as a last reward
    np.testing.assert_allclose(ret.numpy(), expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(adv.numpy(), expected - v, rtol=1e-5, atol=1e-5)


def test_gae_lambda_zero_is_one_step_td_error():
    rng = np.random.default_rng(1)
    r, v, nv = rng.normal(size=5), rng.normal(size=5), rng.normal(size=5)
    term = np.array([0, 0, 1, 0, 0])
    trunc = np.array([0, 0, 0, 1, 0])
    adv, _ = rl.compute_gae(r, v, nv, term, trunc, 0.9, 0.0)
    np.testing.assert_allclose(adv.numpy(), r + 0.9 * (1 - term) * nv - v, rtol=1e-5, atol=1e-6)


def test_gae_two_dimensional_equals_column_by_column():
    rng = np.random.default_rng(2)
    T, N = 7, 3
    r, v, nv = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=(T, N))
    term = (rng.random((T, N)) < 0.2).astype(float)
    trunc = (rng.random((T, N)) < 0.2).astype(float)
    adv, ret = rl.compute_gae(r, v, nv, term, trunc, 0.99, 0.95)
    assert adv.shape == (T, N)
    for i in range(N):
        a_i, r_i = rl.compute_gae(r[:, i], v[:, i], nv[:, i], term[:, i], trunc[:, i], 0.99, 0.95)
        torch.testing.assert_close(adv[:, i], a_i)
        torch.testing.assert_close(ret[:, i], r_i)


def test_gae_bad_inputs():
    ok = dict(rewards=[1.0, 1.0], values=[0.0, 0.0], next_values=[0.0, 0.0],
              terminated=[0, 0], truncated=[0, 0], gamma=0.9, lam=0.9)
    with pytest.raises(ValueError, match="values must have the shape of rewards"):
        rl.compute_gae(**{**ok, "values": [0.0, 0.0, 0.0]})
    with pytest.raises(ValueError, match="next_values"):
        rl.compute_gae(**{**ok, "next_values": [[0.0, 0.0]]})
    with pytest.raises(ValueError, match="terminated"):
        rl.compute_gae(**{**ok, "terminated": [0]})
    with pytest.raises(ValueError, match="truncated"):
        rl.compute_gae(**{**ok, "truncated": [0, 0, 0]})
    with pytest.raises(ValueError, match="rewards must be a 1-D"):
        rl.compute_gae(**{**ok, "rewards": 1.0})
    with pytest.raises(ValueError, match="rewards contains NaN"):
        rl.compute_gae(**{**ok, "rewards": [1.0, float("inf")]})
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match="gamma"):
            rl.compute_gae(**{**ok, "gamma": bad})
        with pytest.raises(ValueError, match="lam"):
            rl.compute_gae(**{**ok, "lam": bad})


# --------------------------------------------------------------------------- explained variance
def test_explained_variance_by_hand():
    y = [1.0, 2.0, 3.0, 4.0]
    assert rl.explained_variance(y, y) == pytest.approx(1.0)
    assert rl.explained_variance([2.5] * 4, y) == pytest.approx(0.0)  # a constant explains nothing
    # residual [0, 0, 0, -1]: Var = 0.25 (unbiased); Var[y] = 5/3  ->  1 - 0.25 / (5/3) = 0.85
    assert rl.explained_variance([1.0, 2.0, 3.0, 5.0], y) == pytest.approx(0.85)
    assert np.isnan(rl.explained_variance([1.0, 2.0], [3.0, 3.0]))
    with pytest.raises(ValueError, match="y_pred and y_true"):
        rl.explained_variance([1.0, 2.0], [1.0, 2.0, 3.0])


# --------------------------------------------------------------------------- categorical policy
def test_categorical_log_prob_entropy_matches_torch_distributions():
    torch.manual_seed(0)
    logits = torch.randn(6, 4) * 3
    actions = torch.tensor([0, 1, 2, 3, 3, 0])
    logp, ent = rl.categorical_log_prob_entropy(logits, actions)
    dist = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(logp, dist.log_prob(actions))
    torch.testing.assert_close(ent, dist.entropy())


def test_categorical_policy_act_shapes_and_greedy():
    torch.manual_seed(0)
    pol = rl.CategoricalPolicy(4, 3)
    obs = np.zeros((5, 4), dtype=np.float32)
    a = pol.act(obs)
    assert a.shape == (5,) and set(a.tolist()) <= {0, 1, 2}
    greedy = pol.act(obs, deterministic=True)
    assert (greedy == pol(torch.as_tensor(obs)).argmax(-1).numpy()).all()


# --------------------------------------------------------------------------- envs
def test_make_vec_env_unknown_id_and_bad_num_envs():
    with pytest.raises(ValueError, match="env_id 'NoSuchEnv-v0'"):
        rl.make_vec_env("NoSuchEnv-v0", 2)
    with pytest.raises(ValueError, match="env_id"):
        rl.make_env("CartPol-v1")
    with pytest.raises(TypeError, match="env_id"):
        rl.make_env(42)
    with pytest.raises(ValueError, match="num_envs"):
        rl.make_vec_env("CartPole-v1", 0)


def test_discrete_only_functions_reject_pendulum():
    envs = rl.make_vec_env("Pendulum-v1", 2)
    try:
        with pytest.raises(TypeError, match="Discrete action space"):
            rl.require_discrete(envs.single_action_space, "test")
        with pytest.raises(TypeError, match="RolloutCollector needs a Discrete"):
            rl.RolloutCollector(envs)
    finally:
        envs.close()


# --------------------------------------------------------------------------- rollouts
CART_X_LIMIT, POLE_ANGLE_LIMIT = 2.4, 12 * 2 * np.pi / 360


def _probe_value(obs):
    """max(|x| / 2.4, |theta| / 0.2094): > 1 exactly at a failed CartPole state.

    CartPole's reset states have every component in [-0.05, 0.05] (value < 0.25), so next_values
    tell whether the collector used the *final* observation or the reset one.
    """
    return torch.maximum(obs[..., 0].abs() / CART_X_LIMIT, obs[..., 2].abs() / POLE_ANGLE_LIMIT)


class _ProbeAgent(rl.ActorCritic):
    """Random actions (an untrained actor) with :func:`_probe_value` as V(s)."""

    def value(self, obs):
        return _probe_value(obs)


def _collect(num_envs=4, steps=150, max_episode_steps=None, calls=1, seed=0):
    torch.manual_seed(seed)
    kwargs = {} if max_episode_steps is None else {"max_episode_steps": max_episode_steps}
    envs = rl.make_vec_env("CartPole-v1", num_envs, **kwargs)
    collector = rl.RolloutCollector(envs, seed=seed)
    agent = _ProbeAgent(4, 2)
    rollouts = [collector.collect(agent, steps) for _ in range(calls)]
    envs.close()
    return collector, rollouts


def test_rollout_valid_mask_is_false_exactly_after_an_episode_end():
    _, (first, second) = _collect(calls=2)
    for ro in (first, second):
        done = (ro.terminated + ro.truncated) > 0
        assert done.any(), "the random policy should end some episodes in 150 steps"
        # step t+1 is a reset step  <=>  step t ended an episode
        assert torch.equal(ro.valid[1:], ~done[:-1])
        # the reset steps carry no reward and no done flag
        assert (ro.rewards[~ro.valid] == 0).all() and not done[~ro.valid].any()
    assert first.valid[0].all()  # the first step after envs.reset is a real step
    # the mask carries over between calls: the first step of the second call
    last_done = (first.terminated[-1] + first.truncated[-1]) > 0
    assert torch.equal(second.valid[0], ~last_done)


def test_rollout_next_values_use_the_final_observation():
    _, (ro,) = _collect(steps=200)
    ended = ro.terminated > 0
    assert ended.sum() >= 4
    # at a termination V(s_{t+1}) is taken on the failed state (outside the limits), not the reset one
    assert (ro.next_values[ended] > 1.0).all()
    # everywhere else the next state is still inside the limits
    assert (ro.next_values[ro.valid & ~ended] <= 1.0).all()
    # and next_values[t] is V of the observation the agent sees at t+1 (the final obs at a reset step)
    torch.testing.assert_close(ro.next_values[:-1], _probe_value(ro.obs[1:]))


def test_rollout_truncation_and_step_counts():
    collector, (ro,) = _collect(num_envs=3, steps=60, max_episode_steps=10)
    n_valid = int(ro.valid.sum())
    assert collector.global_step == n_valid
    assert ro.obs.shape == (60, 3, 4) and ro.actions.shape == (60, 3)
    ends = ((ro.terminated + ro.truncated) > 0) & ro.valid
    assert len(ro.episode_returns) == int(ends.sum()) == len(ro.episode_lengths)
    assert all(1 <= n <= 10 for n in ro.episode_lengths)
    assert ro.truncated.sum() > 0  # the random policy rarely survives, but some hit the 10-step limit
    # CartPole pays 1 per step, so every finished episode's return equals its length
    assert ro.episode_returns == [float(n) for n in ro.episode_lengths]
    # every valid step before an episode's end is counted once
    assert sum(ro.episode_lengths) <= n_valid
    assert float(ro.rewards.sum()) == n_valid


def test_rollout_collect_bad_num_steps():
    envs = rl.make_vec_env("CartPole-v1", 2)
    collector = rl.RolloutCollector(envs, seed=0)
    with pytest.raises(ValueError, match="num_steps"):
        collector.collect(rl.ActorCritic(4, 2), 0)
    envs.close()


# --------------------------------------------------------------------------- evaluation
def test_evaluate_policy_is_deterministic():
    torch.manual_seed(0)
    pol = rl.CategoricalPolicy(4, 2)

    def act(o):
        return pol.act(o, deterministic=True)

    a = rl.evaluate_policy(act, "CartPole-v1", n_episodes=5, seed=123)
    b = rl.evaluate_policy(act, "CartPole-v1", n_episodes=5, seed=123)
    assert a.shape == (5,)
    np.testing.assert_array_equal(a, b)
    assert (a >= 1).all() and (a <= 500).all()
    # a constant policy pushes the cart one way: the pole falls within a few dozen steps
    always_left = rl.evaluate_policy(lambda o: np.zeros(len(o), dtype=int), "CartPole-v1", 3)
    assert (always_left < 50).all()


def test_evaluate_policy_bad_inputs():
    with pytest.raises(ValueError, match="n_episodes"):
        rl.evaluate_policy(lambda o: np.zeros(len(o), dtype=int), "CartPole-v1", n_episodes=0)
    with pytest.raises(ValueError, match="env_id"):
        rl.evaluate_policy(lambda o: np.zeros(len(o), dtype=int), "NoSuchEnv-v0")


def test_gae_rejects_non_binary_done_flags():
    with pytest.raises(ValueError, match="terminated must hold only 0/1"):
        rl.compute_gae([1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0, 2], [0, 0], 0.9, 0.9)


def test_explained_variance_edge_cases():
    assert np.isnan(rl.explained_variance([1.0], [2.0]))
    with pytest.raises(ValueError, match="same shape"):
        rl.explained_variance(np.zeros((2, 2)), np.zeros(4))


def test_evaluate_policy_stops_envs_without_time_limit():
    with pytest.raises(RuntimeError, match="max_steps"):
        rl.evaluate_policy(lambda o: np.zeros((len(o), 1)), "Pendulum-v1", 1, max_steps=10)
    with pytest.raises(ValueError, match="n_episodes"):
        rl.evaluate_policy(lambda o: o, "CartPole-v1", 0)
