"""The shared task of Parts 2-3: fixed-horizon CartPole with a graded true reward (notebooks 04-06).

Why this task, and not plain ``CartPole-v1``
--------------------------------------------
Learning a reward from feedback only works when the feedback can tell behaviours apart, and when
nothing *but* the reward tells them apart. Plain CartPole fails both ways:

1. **Its episode length leaks the reward.** The reward is 1 per step and an episode ends when the
   pole falls, so a learner that sees trajectories of different lengths knows their returns
   without any feedback, and a reward model that outputs *any positive constant* already trains
   a good policy ("survival bonus"). Here every episode lasts exactly :data:`HORIZON` = 200 steps
   and is always *truncated* (``terminated`` is never True): the pole may fall and hang, the cart
   may run into the end of the track, and the episode goes on (as in seals' ``CartPole``).
2. **A constant or binary reward makes comparisons ties.** With reward 1 per step, two segments
   are always equal; even a binary "1 while upright" reward gave mostly ties between 50-step
   segments of decent policies, and preference learning on it kept clearly less of the return of
   true-reward PPO (numbers in benchmarks/README.md). The true reward here is **graded**:

   .. math::
       r(s_t) = \\underbrace{\\left(\\tfrac{1+\\cos\\theta_t}{2}\\right)^2}_{\\text{upright}}
                \\;\\cdot\\; \\underbrace{1 - (x_t / 2.4)^2}_{\\text{centred}} \\in [0, 1]

   It is 1 only with the pole straight up over the middle of the track, falls smoothly with the
   angle θ (0.98 at 12°, 0.56 at 60°, 0 hanging down) and with the distance from the centre
   (0.96 at x = ±0.5, 0.83 at ±1, 0 at the end of the track). Two segments of the same
   behaviour class still differ (how straight, how centred), so a synthetic human rarely has to
   say "equal", and the mean reward of a segment is directly the seed's score y ∈ [0, 1]. The
   reward is continuous everywhere, also where θ wraps from π to -π, so a small MLP
   r̂_θ(s, a) can represent it exactly.

Physics (otherwise Gymnasium's CartPole: same masses, pole, force ±10 N, τ = 0.02 s):

- semi-implicit Euler (the explicit Euler of CartPole-v1 gains energy once the pole swings);
- a little friction in the pole's hinge (``pole_damping`` = 1/s), so a fallen pole comes to rest
  hanging down instead of swinging round forever (without it a random policy scores ~77 of 200
  instead of ~47, mostly from a pole that keeps swinging through the top);
- the track ends at x = ±2.4 with bumpers: the cart stops there (x clipped, velocity set to 0);
- θ is wrapped to [-π, π) and velocities are clipped to ±10 m/s and ±20 rad/s, so observations
  stay bounded and finite whatever the policy does.

The observation keeps CartPole-v1's layout ``[x, ẋ, θ, θ̇]`` (float32), so a policy from Part 1
runs on it unchanged, and actions are the same (0 push left, 1 push right). Episodes start near
upright with the cart anywhere in the middle third (x ~ U(-0.5, 0.5), the rest ~ U(-0.05, 0.05)),
so a good policy has to bring the cart back to the centre.

The reward the env returns *is* the true reward (used by true-reward PPO and for evaluation); it
is also in ``info["true_reward"]`` with its two factors ``info["upright"]`` and ``info["centred"]``,
so a wrapper that swaps in a learned reward (notebook 06) still reports the true one. The reward
model of notebook 05 must never see it: only the synthetic humans of
:mod:`rlhf_tutorial.feedback` do.

Importing this module registers :data:`ENV_ID` with Gymnasium, with a NumPy-vectorised version,
so ``gym.make(ENV_ID)`` and ``rl.make_vec_env(ENV_ID, n)`` work (after ``import rlhf_tutorial.envs``,
which ``import rlhf_tutorial`` does). The task knows no algorithm: PPO settings that learn it are
:data:`rlhf_tutorial.ppo.TASK_PPO_CONFIG`.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv, CartPoleVectorEnv
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

__all__ = [
    "ENV_ID",
    "HORIZON",
    "X_LIMIT",
    "upright_score",
    "centred_score",
    "true_reward",
    "FixedHorizonCartPoleEnv",
    "FixedHorizonCartPoleVectorEnv",
    "random_policy",
    "pendulum_swing_up_policy",
    "pd_policy",
    "noisy_policy",
]

ENV_ID = "FixedHorizonCartPole-v0"
HORIZON = 200  # steps per episode, always (4 s of simulated time)
X_LIMIT = 2.4  # the track ends (bumpers) at x = ±X_LIMIT
MAX_X_DOT = 10.0  # m/s, velocity clip
MAX_THETA_DOT = 20.0  # rad/s, angular-velocity clip
POLE_DAMPING = 1.0  # 1/s, friction in the pole's hinge
RESET_X = 0.5  # initial x ~ U(-RESET_X, RESET_X)
RESET_OTHER = 0.05  # initial ẋ, θ, θ̇ ~ U(-RESET_OTHER, RESET_OTHER)

# Observation bounds: x on the track, θ wrapped, velocities clipped.
_HIGH = np.array([X_LIMIT, MAX_X_DOT, math.pi, MAX_THETA_DOT], dtype=np.float32)


# --------------------------------------------------------------------------- the true reward
def _finite_array(name: str, value) -> np.ndarray:
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__} ({value!r})"[:200]) from e
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or inf")
    return a


def upright_score(theta) -> np.ndarray:
    """The upright factor ((1 + cos θ) / 2)² ∈ [0, 1]: 1 straight up, 0 hanging down (notebook 04)."""
    th = _finite_array("theta", theta)
    return ((1.0 + np.cos(th)) / 2.0) ** 2


def centred_score(x) -> np.ndarray:
    """The centred factor 1 - (x / 2.4)² ∈ [0, 1]: 1 in the middle, 0 at the end of the track (notebook 04)."""
    xx = np.clip(_finite_array("x", x), -X_LIMIT, X_LIMIT)
    return 1.0 - (xx / X_LIMIT) ** 2


def true_reward(obs) -> np.ndarray:
    """The task's hidden true reward r(s) = upright(θ) · centred(x) for observations ``(..., 4)``.

    Notebooks 04-06: the synthetic humans judge segments by it and the learned reward r̂_θ is
    evaluated against it; the reward model itself never sees it. Returns an array of shape
    ``obs.shape[:-1]``.
    """
    o = _finite_array("obs", obs)
    if o.ndim == 0 or o.shape[-1] != 4:
        raise ValueError(f"obs must have a last dimension of 4 ([x, x_dot, theta, theta_dot]), got shape {o.shape}")
    return upright_score(o[..., 2]) * centred_score(o[..., 0])


# --------------------------------------------------------------------------- dynamics
def _physics_step(env, state: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Advance ``state`` (4, N) by one step of τ under ``action`` (N,) in {0, 1}."""
    x, x_dot, theta, theta_dot = state
    force = np.where(action == 1, env.force_mag, -env.force_mag)
    cos, sin = np.cos(theta), np.sin(theta)
    temp = (force + env.polemass_length * theta_dot**2 * sin) / env.total_mass
    theta_acc = (env.gravity * sin - cos * temp) / (
        env.length * (4.0 / 3.0 - env.masspole * cos**2 / env.total_mass)
    )
    theta_acc = theta_acc - env.pole_damping * theta_dot
    x_acc = temp - env.polemass_length * theta_acc * cos / env.total_mass
    # semi-implicit Euler: velocities first, then positions with the new velocities
    x_dot = np.clip(x_dot + env.tau * x_acc, -MAX_X_DOT, MAX_X_DOT)
    theta_dot = np.clip(theta_dot + env.tau * theta_acc, -MAX_THETA_DOT, MAX_THETA_DOT)
    x = x + env.tau * x_dot
    theta = theta + env.tau * theta_dot
    # bumpers at the end of the track: the cart stops there
    hit = np.abs(x) >= X_LIMIT
    x = np.clip(x, -X_LIMIT, X_LIMIT)
    x_dot = np.where(hit, 0.0, x_dot)
    theta = (theta + np.pi) % (2 * np.pi) - np.pi  # wrap to [-π, π)
    return np.stack([x, x_dot, theta, theta_dot])


def _reset_state(rng: np.random.Generator, n: int) -> np.ndarray:
    state = rng.uniform(-RESET_OTHER, RESET_OTHER, size=(4, n))
    state[0] = rng.uniform(-RESET_X, RESET_X, size=n)
    return state


def _setup_physics(env, horizon: int, pole_damping: float) -> None:
    if isinstance(horizon, bool) or not isinstance(horizon, (int, np.integer)) or horizon < 1:
        raise ValueError(f"horizon must be a positive int, got {horizon!r}")
    if not (isinstance(pole_damping, (int, float)) and math.isfinite(pole_damping) and pole_damping >= 0):
        raise ValueError(f"pole_damping must be a finite number >= 0, got {pole_damping!r}")
    env.horizon = int(horizon)
    env.pole_damping = float(pole_damping)
    env.kinematics_integrator = "semi-implicit euler"
    env.x_threshold = X_LIMIT  # used by CartPole's renderer for the width of the world


class FixedHorizonCartPoleEnv(CartPoleEnv):
    """CartPole with no early termination, a graded true reward and exactly ``horizon`` steps.

    Notebook 04 (the task of Parts 2-3; the design is in this module's docstring). Gymnasium id
    :data:`ENV_ID`. ``info`` of every step has ``true_reward``, ``upright``, ``centred`` and ``t``
    (steps taken). Rendering (``render_mode="rgb_array"``) is CartPole's.
    """

    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(self, horizon: int = HORIZON, pole_damping: float = POLE_DAMPING,
                 render_mode: str | None = None):
        super().__init__(render_mode=render_mode)
        _setup_physics(self, horizon, pole_damping)
        self.observation_space = spaces.Box(-_HIGH, _HIGH, dtype=np.float32)
        self.t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.Env.reset(self, seed=seed)
        self.state = _reset_state(self.np_random, 1)[:, 0]
        self.t = 0
        if self.render_mode == "human":
            self.render()
        return self.state.astype(np.float32), {}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 or 1, got {action!r}")
        self.state = _physics_step(self, self.state[:, None], np.asarray([int(action)]))[:, 0]
        self.t += 1
        obs = self.state.astype(np.float32)
        up, cen = float(upright_score(self.state[2])), float(centred_score(self.state[0]))
        reward = up * cen
        truncated = self.t >= self.horizon
        if self.render_mode == "human":
            self.render()
        info = {"true_reward": reward, "upright": up, "centred": cen, "t": self.t}
        return obs, reward, False, truncated, info


class FixedHorizonCartPoleVectorEnv(CartPoleVectorEnv):
    """``num_envs`` copies of :class:`FixedHorizonCartPoleEnv` stepped by NumPy array operations.

    Notebooks 04-06 (used by ``rl.make_vec_env`` and ``ppo.train_ppo``). Auto-reset follows
    Gymnasium's ``NEXT_STEP`` mode like ``CartPoleVectorEnv``: the step after an episode ends only
    resets that copy and returns reward 0. ``info`` holds arrays ``true_reward``, ``upright``,
    ``centred`` and ``t``.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 50, "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, horizon: int = HORIZON, pole_damping: float = POLE_DAMPING,
                 render_mode: str | None = None, max_episode_steps: int | None = None):
        if isinstance(num_envs, bool) or not isinstance(num_envs, (int, np.integer)) or num_envs < 1:
            raise (TypeError if not isinstance(num_envs, (int, np.integer)) else ValueError)(
                f"num_envs must be an int >= 1, got {num_envs!r}")
        super().__init__(num_envs=num_envs, render_mode=render_mode)
        if max_episode_steps is not None and max_episode_steps != horizon:
            horizon = max_episode_steps
        _setup_physics(self, horizon, pole_damping)
        self.max_episode_steps = self.horizon
        self.single_observation_space = spaces.Box(-_HIGH, _HIGH, dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        gym.vector.VectorEnv.reset(self, seed=seed)
        self.state = _reset_state(self.np_random, self.num_envs)
        self.steps = np.zeros(self.num_envs, dtype=np.int32)
        self.prev_done = np.zeros(self.num_envs, dtype=np.bool_)
        return self.state.T.astype(np.float32), {}

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(action)
        if a.shape != (self.num_envs,) or not np.isin(a, (0, 1)).all():
            raise ValueError(f"action must be an array of {self.num_envs} values in {{0, 1}}, got {action!r}")
        self.state = _physics_step(self, self.state, a)
        self.steps += 1
        # copies whose episode ended on the previous step are reset instead (NEXT_STEP auto-reset)
        done_before = self.prev_done
        if done_before.any():
            self.state[:, done_before] = _reset_state(self.np_random, int(done_before.sum()))
            self.steps[done_before] = 0
        up, cen = upright_score(self.state[2]), centred_score(self.state[0])
        reward = (up * cen).astype(np.float32)
        reward[done_before] = 0.0
        terminated = np.zeros(self.num_envs, dtype=np.bool_)
        truncated = self.steps >= self.horizon
        self.prev_done = truncated.copy()
        info = {"true_reward": reward.copy(), "upright": up, "centred": cen, "t": self.steps.copy()}
        return self.state.T.astype(np.float32), reward, terminated, truncated, info


# --------------------------------------------------------------------------- reference policies
def random_policy(seed: int | None = None):
    """A policy that pushes left or right at random: the "bad" end of the feedback pool (notebook 04).

    Returns ``act(obs) -> actions`` for a batch of observations, with its own seeded generator.
    """
    rng = np.random.default_rng(seed)

    def act(obs):
        o = np.asarray(obs)
        return rng.integers(0, 2, size=o.shape[:-1] if o.ndim > 1 else ())

    return act


def pd_policy(k_theta: float = 10.0, k_theta_dot: float = 1.0, k_x: float = 0.3, k_x_dot: float = 0.6):
    """A hand-written controller that balances the pole and keeps the cart centred (notebook 04).

    Pushes right when ``k_θ·θ + k_θ̇·θ̇ + k_x·x + k_ẋ·ẋ > 0`` (a PD controller on the angle with a
    weak pull towards the centre: leaning the pole towards the middle moves the cart there).
    Used as the "good" end of the feedback pool and in tests, where training PPO would be too slow.
    """
    gains = np.array([k_x, k_x_dot, k_theta, k_theta_dot])
    if not np.isfinite(gains).all():
        raise ValueError(f"gains must be finite, got {gains}")

    def act(obs):
        return (np.asarray(obs, dtype=np.float64) @ gains > 0).astype(np.int64)

    return act


def pendulum_swing_up_policy(p_random: float = 0.0, seed: int | None = None, k_energy: float = 1.0):
    """A hand-written swing-up controller for Pendulum-v1, with a share of random torques (notebook 06).

    Pendulum-v1 (the continuous-action task SAC solves in notebook 03) gives behaviour to learn a
    reward r̂(s) from: far from the top it pumps energy (torque ``k_energy``·(E_top − E)·sign θ̇,
    clipped to ±2), near the top (cos θ > 0.85) a PD controller holds the pole up; with
    probability ``p_random`` each torque is replaced by a uniform one in [−2, 2], so
    ``p_random`` from 0 to 1 spans good to random behaviour. Observations are Pendulum's
    ``[cos θ, sin θ, θ̇]``; returns ``act(obs batch) -> torques (batch, 1)``.
    """
    p_random = float(p_random)
    if not 0.0 <= p_random <= 1.0:
        raise ValueError(f"p_random must be in [0, 1], got {p_random!r}")
    rng = np.random.default_rng(seed)

    def act(obs):
        o = np.asarray(obs, dtype=np.float64).reshape(-1, 3)
        c, s, w = o[:, 0], o[:, 1], o[:, 2]
        energy = w ** 2 / 6 + 5 * (c - 1)  # m = l = 1, g = 10: 0 when upright at rest
        pump = np.clip(-k_energy * energy * np.sign(w + 1e-9), -2, 2)
        hold = np.clip(-10 * np.arctan2(s, c) - 2 * w, -2, 2)
        u = np.where(c > 0.85, hold, pump)
        u = np.where(rng.random(u.shape) < p_random, rng.uniform(-2, 2, u.shape), u)
        return u[:, None].astype(np.float32)

    return act


def noisy_policy(act, p_random: float, seed: int | None = None):
    """Wrap ``act`` so that each action is replaced by a random one with probability ``p_random``.

    Notebook 04: mixing a good controller with random actions gives a continuum of behaviour
    quality (p_random = 0 good, 1 random) for the feedback pool.
    """
    if not (isinstance(p_random, (int, float)) and 0.0 <= p_random <= 1.0):
        raise ValueError(f"p_random must be a number in [0, 1], got {p_random!r}")
    if not callable(act):
        raise TypeError(f"act must be callable (obs -> actions), got {type(act).__name__}")
    rng = np.random.default_rng(seed)

    def noisy(obs):
        a = np.asarray(act(obs))
        flip = rng.random(a.shape) < p_random
        return np.where(flip, rng.integers(0, 2, size=a.shape), a)

    return noisy


def _register() -> None:
    if ENV_ID not in gym.registry:
        gym.register(
            id=ENV_ID,
            entry_point="rlhf_tutorial.envs:FixedHorizonCartPoleEnv",
            vector_entry_point="rlhf_tutorial.envs:FixedHorizonCartPoleVectorEnv",
            max_episode_steps=None,
        )


_register()
