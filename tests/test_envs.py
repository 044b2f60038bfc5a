"""The shared task of Parts 2-3: registration, fixed horizon, graded true reward, physics, PPO smoke."""

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest

from rlhf_tutorial import envs
from rlhf_tutorial.envs import (
    ENV_ID,
    HORIZON,
    X_LIMIT,
    centred_score,
    noisy_policy,
    pd_policy,
    random_policy,
    true_reward,
    upright_score,
)
from rlhf_tutorial.ppo import TASK_PPO_CONFIG, train_ppo
from rlhf_tutorial.rl import ActorCritic, RolloutCollector, evaluate_policy, make_vec_env


def run_single(act, seed=0, **kwargs):
    env = gym.make(ENV_ID, **kwargs)
    obs, _ = env.reset(seed=seed)
    out = {"obs": [obs], "reward": [], "info": [], "term": [], "trunc": []}
    done = False
    while not done:
        obs, r, term, trunc, info = env.step(int(act(obs[None])[0]))
        for k, v in (("obs", obs), ("reward", r), ("info", info), ("term", term), ("trunc", trunc)):
            out[k].append(v)
        done = term or trunc
    env.close()
    return out


def test_registered_and_checks_pass():
    assert ENV_ID in gym.registry
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make(ENV_ID).unwrapped, skip_render_check=True)
    assert TASK_PPO_CONFIG.env_id == ENV_ID


@pytest.mark.parametrize("policy", ["random", "pd", "push_right"])
def test_every_episode_lasts_the_horizon_and_never_terminates(policy):
    act = {"random": random_policy(0), "pd": pd_policy(), "push_right": lambda o: np.ones(len(o), int)}[policy]
    ep = run_single(act)
    assert len(ep["reward"]) == HORIZON
    assert not any(ep["term"]) and ep["trunc"][-1] and not any(ep["trunc"][:-1])
    obs = np.array(ep["obs"])
    space = gym.make(ENV_ID).observation_space
    assert all(space.contains(o) for o in obs)


def test_reward_is_graded_true_reward_and_in_info():
    ep = run_single(random_policy(1))
    r = np.array(ep["reward"])
    assert ((r >= 0) & (r <= 1)).all()
    np.testing.assert_allclose(r, [i["true_reward"] for i in ep["info"]])
    np.testing.assert_allclose(r, true_reward(np.array(ep["obs"][1:])), atol=1e-5)
    np.testing.assert_allclose(r, [i["upright"] * i["centred"] for i in ep["info"]])
    assert len(np.unique(np.round(r, 4))) > 50  # graded, not binary


def test_reward_shape_values():
    assert upright_score(0.0) == pytest.approx(1.0)
    assert upright_score(math.pi) == pytest.approx(0.0)
    assert upright_score(math.radians(12)) == pytest.approx(0.978, abs=1e-3)
    assert upright_score(math.pi - 1e-6) == pytest.approx(upright_score(-math.pi + 1e-6))  # continuous at the wrap
    assert centred_score(0.0) == 1.0 and centred_score(X_LIMIT) == 0.0 and centred_score(-1.0) == pytest.approx(1 - 1 / 2.4**2)
    assert true_reward([0.0, 0.0, 0.0, 0.0]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        true_reward([0.0, 0.0, float("nan"), 0.0])
    with pytest.raises(ValueError, match="last dimension of 4"):
        true_reward(np.zeros((3, 5)))


def test_pushing_one_way_stops_at_the_bumper_and_fallen_pole_settles():
    ep = run_single(lambda o: np.ones(len(o), int))
    obs = np.array(ep["obs"])
    assert obs[:, 0].max() == pytest.approx(X_LIMIT)
    at_wall = obs[:, 0] >= X_LIMIT - 1e-6
    assert (obs[at_wall, 1] == 0).all()  # the cart stops at the bumper
    ep = run_single(random_policy(2))
    up = np.array([i["upright"] for i in ep["info"]])
    assert up[-50:].mean() < 0.15  # hinge friction: a fallen pole hangs, it does not spin forever


def test_vector_env_matches_single_env_and_autoresets():
    venv = make_vec_env(ENV_ID, 3)
    env = gym.make(ENV_ID).unwrapped
    obs, _ = venv.reset(seed=5)
    env.reset(seed=0)
    env.state = venv.unwrapped.state[:, 0].copy()
    rng = np.random.default_rng(0)
    for t in range(HORIZON):
        a = rng.integers(0, 2, 3)
        o1, r1, term, trunc, info = venv.step(a)
        o2, r2, *_ = env.step(int(a[0]))
        np.testing.assert_allclose(o1[0], o2, atol=1e-5)
        assert r1[0] == pytest.approx(r2, abs=1e-6)
        assert not term.any() and trunc.all() == (t == HORIZON - 1)
    o, r, term, trunc, _ = venv.step(np.zeros(3, int))  # the NEXT_STEP reset step
    assert (r == 0).all() and not trunc.any()
    assert (np.abs(o[:, 0]) <= 0.5).all() and (np.abs(o[:, 2]) <= 0.05).all()
    venv.close()


def test_rollout_collector_and_evaluate_policy_work():
    venv = make_vec_env(ENV_ID, 2)
    col = RolloutCollector(venv, seed=0)
    ro = col.collect(ActorCritic(4, 2), HORIZON + 5)
    assert ro.episode_lengths == [HORIZON, HORIZON]
    assert (~ro.valid).sum() == 2 and ro.terminated.sum() == 0
    venv.close()
    good = evaluate_policy(pd_policy(), ENV_ID, 5).mean()
    bad = evaluate_policy(random_policy(0), ENV_ID, 5).mean()
    middling = evaluate_policy(noisy_policy(pd_policy(), 0.7, seed=0), ENV_ID, 5).mean()
    assert good > 190 and bad < 80 and bad < middling < good


def test_train_ppo_runs_on_the_task():
    cfg = dataclasses.replace(TASK_PPO_CONFIG, total_timesteps=1024, eval_every=512, eval_episodes=2)
    agent, hist = train_ppo(cfg, progress=False)
    assert hist["eval_return"] and all(0 <= r <= HORIZON for r in hist["eval_return"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="horizon must be a positive int"):
        envs.FixedHorizonCartPoleEnv(horizon=0)
    with pytest.raises(ValueError, match="pole_damping"):
        envs.FixedHorizonCartPoleEnv(pole_damping=-1.0)
    env = envs.FixedHorizonCartPoleEnv()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be 0 or 1"):
        env.step(2)
    with pytest.raises(ValueError, match="p_random must be a number in"):
        noisy_policy(pd_policy(), 1.5)
    with pytest.raises(TypeError, match="act must be callable"):
        noisy_policy(3, 0.5)
    with pytest.raises(ValueError, match="gains must be finite"):
        pd_policy(k_theta=float("inf"))
    assert gym.make(ENV_ID, horizon=20).unwrapped.horizon == 20


def test_the_task_imports_no_algorithm():
    import ast
    import inspect
    tree = ast.parse(inspect.getsource(envs))
    modules = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    assert not any(m in ("ppo", "sac", "reinforce", "tabular") for m in modules), modules


def test_pendulum_swing_up_policy_spans_good_to_random():
    good = evaluate_policy(envs.pendulum_swing_up_policy(0.0, seed=0), "Pendulum-v1", 4).mean()
    bad = evaluate_policy(envs.pendulum_swing_up_policy(1.0, seed=0), "Pendulum-v1", 4).mean()
    assert good > -400 and bad < -700 and good > bad
    with pytest.raises(ValueError, match="p_random"):
        envs.pendulum_swing_up_policy(1.5)
