"""Building blocks shared by the RL algorithms of Part 1 (and reused in Part 3).

Returns and reward-to-go (notebook 02), generalized advantage estimation with the
truncation/termination distinction (notebook 03), small policy/value networks with orthogonal
initialisation, rollout collection on Gymnasium vector environments, and policy evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from . import _validate as V

__all__ = [
    "check_probability",
    "discounted_returns",
    "compute_gae",
    "explained_variance",
    "layer_init",
    "mlp",
    "CategoricalPolicy",
    "ActorCritic",
    "categorical_log_prob_entropy",
    "make_env",
    "make_vec_env",
    "require_discrete",
    "require_vector_obs",
    "Rollout",
    "RolloutCollector",
    "evaluate_policy",
]


# --------------------------------------------------------------------------- validation helpers
def check_probability(name: str, value: float) -> float:
    """Raise ``ValueError`` unless ``value`` is a number in [0, 1] (used for γ, λ, ε, ...) (notebook 01)."""
    return V.probability(name, value)


def _as_float_tensor(name: str, x) -> torch.Tensor:
    t = V.finite_tensor(name, x)
    if t.ndim not in (1, 2):
        raise ValueError(f"{name} must be a 1-D (time) or 2-D (time, env) array, got shape {tuple(t.shape)}")
    if t.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one time step, got shape {tuple(t.shape)}")
    return t


# --------------------------------------------------------------------------- returns and advantages
def discounted_returns(rewards, gamma: float) -> np.ndarray:
    r"""Reward-to-go of one episode: :math:`G_t = \sum_{k\ge 0} \gamma^k r_{t+k}` for every t.

    Notebook 02 (REINFORCE). ``rewards`` is a 1-D sequence of one episode's rewards; ``G_0`` is
    the episode's discounted return.
    """
    gamma = check_probability("gamma", gamma)
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim != 1:
        raise ValueError(f"rewards must be 1-D (one episode), got shape {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("rewards contains NaN or inf")
    out = np.zeros_like(r)
    running = 0.0
    for t in range(len(r) - 1, -1, -1):
        running = r[t] + gamma * running
        out[t] = running
    return out


def compute_gae(rewards, values, next_values, terminated, truncated, gamma: float, lam: float):
    r"""Generalized advantage estimation (Schulman et al. 2016); returns ``(advantages, returns)``.

    Notebook 03. All inputs have shape ``(T,)`` or ``(T, N)`` (time first, N parallel envs):

    - ``values[t]`` = V(s_t) and ``next_values[t]`` = V(s_{t+1}), where s_{t+1} is the *real* next
      state, also when the episode ended at t (the final observation, not the reset one);
    - ``terminated[t]``: the MDP really ended (pole fell): the future is worth 0, no bootstrap;
    - ``truncated[t]``: a time limit cut the episode: the future is worth V(s_{t+1}), bootstrap.

    .. math::
        \delta_t = r_t + \gamma (1-\mathrm{term}_t) V(s_{t+1}) - V(s_t), \qquad
        A_t = \delta_t + \gamma\lambda (1-\mathrm{term}_t)(1-\mathrm{trunc}_t) A_{t+1}

    and ``returns = advantages + values`` are the value-function targets.
    """
    gamma = check_probability("gamma", gamma)
    lam = check_probability("lam", lam)
    r = _as_float_tensor("rewards", rewards)
    v = _as_float_tensor("values", values)
    nv = _as_float_tensor("next_values", next_values)
    term = torch.as_tensor(terminated, dtype=torch.float32)
    trunc = torch.as_tensor(truncated, dtype=torch.float32)
    for name, t in (("values", v), ("next_values", nv), ("terminated", term), ("truncated", trunc)):
        if t.shape != r.shape:
            raise ValueError(f"{name} must have the shape of rewards {tuple(r.shape)}, got {tuple(t.shape)}")
    for name, t in (("terminated", term), ("truncated", trunc)):
        if not ((t == 0) | (t == 1)).all():
            raise ValueError(f"{name} must hold only 0/1 (or booleans), got values {sorted(set(t.flatten().tolist()))[:5]}")
    not_term = 1.0 - term
    deltas = r + gamma * not_term * nv - v
    cont = not_term * (1.0 - trunc)  # the advantage recursion stops at any episode end
    adv = torch.zeros_like(r)
    last = torch.zeros_like(r[0])
    for t in range(r.shape[0] - 1, -1, -1):
        last = deltas[t] + gamma * lam * cont[t] * last
        adv[t] = last
    return adv, adv + v


def explained_variance(y_pred, y_true) -> float:
    r"""1 - Var[y_true - y_pred] / Var[y_true]: 1 is a perfect critic, 0 no better than a constant.

    Notebook 03 (a PPO debug signal). Returns ``nan`` when ``y_true`` has zero variance.
    """
    y_pred = torch.as_tensor(y_pred, dtype=torch.float32)
    y_true = torch.as_tensor(y_true, dtype=torch.float32)
    if y_pred.shape != y_true.shape:
        raise ValueError(f"y_pred and y_true must have the same shape, got {tuple(y_pred.shape)} and {tuple(y_true.shape)}")
    y_pred, y_true = y_pred.flatten(), y_true.flatten()
    if y_true.numel() < 2:
        return float("nan")
    var = torch.var(y_true)
    if var == 0:
        return float("nan")
    return float(1.0 - torch.var(y_true - y_pred) / var)


# --------------------------------------------------------------------------- networks
def layer_init(layer: nn.Linear, std: float = 2**0.5, bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights with gain ``std`` and constant bias (the PPO implementation detail).

    Notebook 03: hidden layers use √2, the policy head 0.01 (a near-uniform first policy) and the
    value head 1.
    """
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(in_dim: int, out_dim: int, hidden=(64, 64), out_std: float = 1.0, activation=nn.Tanh) -> nn.Sequential:
    """A small MLP with orthogonal init; ``out_std`` is the gain of the last layer (notebook 02)."""
    V.integer("in_dim", in_dim, low=1)
    V.integer("out_dim", out_dim, low=1)
    for h in hidden:
        V.integer("hidden", h, low=1)
    layers: list[nn.Module] = []
    last = in_dim
    for h in hidden:
        layers += [layer_init(nn.Linear(last, h)), activation()]
        last = h
    layers.append(layer_init(nn.Linear(last, out_dim), std=out_std))
    return nn.Sequential(*layers)


def categorical_log_prob_entropy(logits: torch.Tensor, actions: torch.Tensor):
    r"""log π(a|s) and the entropy H[π(·|s)] of a categorical policy given its logits (notebook 02).

    Written with ``log_softmax`` instead of ``torch.distributions`` so the math is visible:
    :math:`\log\pi(a|s) = z_a - \log\sum_b e^{z_b}`, :math:`H = -\sum_b \pi_b \log \pi_b`.
    """
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, entropy


class CategoricalPolicy(nn.Module):
    """π_φ(a|s) for discrete actions: an MLP from observations to action logits (notebook 02)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden=(64, 64)):
        super().__init__()
        self.init_args = {"obs_dim": int(obs_dim), "n_actions": int(n_actions), "hidden": list(hidden)}  # to rebuild it
        self.net = mlp(obs_dim, n_actions, hidden, out_std=0.01)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of observations (greedy when ``deterministic``)."""
        logits = self(torch.as_tensor(obs, dtype=torch.float32))
        if deterministic:
            return logits.argmax(-1).numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1).numpy()


class ActorCritic(nn.Module):
    """Separate actor (logits) and critic (V(s)) MLPs for discrete actions (notebook 03)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden=(64, 64)):
        super().__init__()
        self.init_args = {"obs_dim": int(obs_dim), "n_actions": int(n_actions), "hidden": list(hidden)}  # to rebuild it
        self.actor = mlp(obs_dim, n_actions, hidden, out_std=0.01)
        self.critic = mlp(obs_dim, 1, hidden, out_std=1.0)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)

    def evaluate(self, obs: torch.Tensor, actions: torch.Tensor):
        """Return log π(a|s), entropy and V(s) for a batch: what the PPO/A2C losses need."""
        logp, entropy = categorical_log_prob_entropy(self.actor(obs), actions)
        return logp, entropy, self.value(obs)

    @torch.no_grad()
    def step(self, obs: torch.Tensor):
        """Sample actions; return ``(actions, log π(a|s), V(s))`` for rollout collection."""
        logits = self.actor(obs)
        actions = torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1)
        logp, _ = categorical_log_prob_entropy(logits, actions)
        return actions, logp, self.value(obs)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        """Actions for a batch of observations (greedy when ``deterministic``)."""
        logits = self.actor(torch.as_tensor(obs, dtype=torch.float32))
        if deterministic:
            return logits.argmax(-1).numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1).squeeze(-1).numpy()


# --------------------------------------------------------------------------- environments
def _check_env_id(env_id: str) -> None:
    if not isinstance(env_id, str):
        raise TypeError(f"env_id must be a string such as 'CartPole-v1', got {type(env_id).__name__}")
    if env_id not in gym.registry:
        close = [k for k in gym.registry if k.lower().startswith(env_id.split("-")[0].lower()[:4])][:5]
        hint = f" Did you mean one of {close}?" if close else ""
        raise ValueError(f"unknown Gymnasium env_id {env_id!r}.{hint}")


def make_env(env_id: str, **kwargs) -> gym.Env:
    """``gym.make`` with a clear ``ValueError`` for an unknown id (notebook 01)."""
    _check_env_id(env_id)
    return gym.make(env_id, **kwargs)


def make_vec_env(env_id: str, num_envs: int, **kwargs) -> gym.vector.VectorEnv:
    """A vector env of ``num_envs`` copies (notebooks 01-03).

    Uses the environment's own NumPy-vectorised implementation when it has one (CartPole does:
    one array operation steps all copies) and a ``SyncVectorEnv`` otherwise. Either way episodes
    reset automatically on the step *after* they end (Gymnasium's default ``NEXT_STEP`` mode);
    :class:`RolloutCollector` masks those reset steps out.
    """
    _check_env_id(env_id)
    V.integer("num_envs", num_envs, low=1)
    spec = gym.registry[env_id]
    if spec.vector_entry_point is not None:
        return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **kwargs)


def require_vector_obs(space: gym.Space, where: str) -> int:
    """Return the size of a 1-D ``Box`` observation space, else raise ``TypeError`` (notebook 03).

    The MLP policies of this package read a vector of numbers; a ``Discrete`` observation (a grid
    cell index) must be one-hot encoded first, or solved with :mod:`rlhf_tutorial.tabular`.
    """
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise TypeError(
            f"{where} needs a 1-D Box observation space (a vector of numbers), got {type(space).__name__} {space}; "
            "for a Discrete observation one-hot encode it or use rlhf_tutorial.tabular"
        )
    return int(space.shape[0])


def require_discrete(space: gym.Space, where: str) -> int:
    """Return the number of actions of a ``Discrete`` space, else raise ``TypeError`` (notebook 02)."""
    if not isinstance(space, gym.spaces.Discrete):
        raise TypeError(
            f"{where} needs a Discrete action space, got {type(space).__name__} {space}; "
            "for continuous actions (e.g. Pendulum-v1) use rlhf_tutorial.sac"
        )
    return int(space.n)


# --------------------------------------------------------------------------- rollouts
@dataclass
class Rollout:
    """``T`` steps from ``N`` envs, arrays shaped ``(T, N, ...)`` (notebook 03).

    ``valid`` is False on Gymnasium's auto-reset steps (the step after an episode ended, whose
    action is ignored by the env); those samples are excluded from the losses. ``next_values``
    holds V of the real next state, the final observation at episode ends.
    """

    obs: torch.Tensor
    actions: torch.Tensor
    logprobs: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    next_values: torch.Tensor
    valid: torch.Tensor
    episode_returns: list
    episode_lengths: list
    episode_true_returns: list = field(default_factory=list)


class RolloutCollector:
    """Steps a vector env with an :class:`ActorCritic` and returns :class:`Rollout` batches.

    Notebook 03. It keeps the env's current observation between calls, tracks finished episodes'
    returns and lengths, and knows Gymnasium's ``NEXT_STEP`` auto-reset: after an episode ends,
    the observation returned *is* the final observation (used for bootstrapping at truncation),
    and the next step only resets that env (marked ``valid=False``).
    """

    def __init__(self, envs: gym.vector.VectorEnv, seed: int | None = None):
        mode = envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if mode != gym.vector.AutoresetMode.NEXT_STEP:
            raise ValueError(f"RolloutCollector expects autoreset_mode NEXT_STEP (Gymnasium's default), got {mode}")
        require_discrete(envs.single_action_space, "RolloutCollector")
        require_vector_obs(envs.single_observation_space, "RolloutCollector")
        self.envs = envs
        self.num_envs = envs.num_envs
        obs, _ = envs.reset(seed=seed)
        self.obs = torch.as_tensor(obs, dtype=torch.float32)
        self.prev_done = np.zeros(self.num_envs, dtype=bool)
        self.ep_ret = np.zeros(self.num_envs)
        self.ep_true_ret = np.zeros(self.num_envs)  # from info["true_reward"], when a wrapper provides it
        self.ep_len = np.zeros(self.num_envs, dtype=int)
        self.global_step = 0

    def collect(self, agent: ActorCritic, num_steps: int) -> Rollout:
        V.integer("num_steps", num_steps, low=1)
        T, N = num_steps, self.num_envs
        obs_buf = torch.zeros((T, N) + self.obs.shape[1:])
        act_buf = torch.zeros((T, N), dtype=torch.long)
        logp_buf, val_buf, rew_buf = torch.zeros((T, N)), torch.zeros((T, N)), torch.zeros((T, N))
        term_buf, trunc_buf, valid_buf = torch.zeros((T, N)), torch.zeros((T, N)), torch.zeros((T, N), dtype=torch.bool)
        next_obs_buf = torch.zeros_like(obs_buf)
        ep_returns, ep_lengths, ep_true = [], [], []
        for t in range(T):
            actions, logp, value = agent.step(self.obs)
            next_obs, reward, term, trunc, info = self.envs.step(actions.numpy())
            valid = ~self.prev_done
            obs_buf[t], act_buf[t], logp_buf[t], val_buf[t] = self.obs, actions, logp, value
            rew_buf[t] = torch.as_tensor(reward, dtype=torch.float32)
            term_buf[t] = torch.as_tensor(term, dtype=torch.float32)
            trunc_buf[t] = torch.as_tensor(trunc, dtype=torch.float32)
            valid_buf[t] = torch.as_tensor(valid)
            self.obs = torch.as_tensor(next_obs, dtype=torch.float32)
            next_obs_buf[t] = self.obs
            # episode bookkeeping (reset steps carry no reward and are not counted)
            self.ep_ret[valid] += reward[valid]
            if "true_reward" in info:
                self.ep_true_ret[valid] += np.asarray(info["true_reward"], dtype=float)[valid]
            self.ep_len[valid] += 1
            done = (term | trunc) & valid
            for i in np.flatnonzero(done):
                ep_returns.append(float(self.ep_ret[i]))
                if "true_reward" in info:
                    ep_true.append(float(self.ep_true_ret[i]))
                self.ep_true_ret[i] = 0.0
                ep_lengths.append(int(self.ep_len[i]))
                self.ep_ret[i], self.ep_len[i] = 0.0, 0
            self.prev_done = done
            self.global_step += int(valid.sum())
        with torch.no_grad():  # V(s_{t+1}) for every t in one batched call
            next_values = agent.value(next_obs_buf.reshape((T * N,) + self.obs.shape[1:])).reshape(T, N)
        return Rollout(obs_buf, act_buf, logp_buf, val_buf, rew_buf, term_buf, trunc_buf,
                       next_values, valid_buf, ep_returns, ep_lengths, ep_true)


# --------------------------------------------------------------------------- evaluation
def evaluate_policy(
    act: Callable[[np.ndarray], np.ndarray],
    env_id: str,
    n_episodes: int = 10,
    seed: int = 10_000,
    env_kwargs: dict | None = None,
    max_steps: int = 100_000,
    envs: gym.vector.VectorEnv | None = None,
) -> np.ndarray:
    """Undiscounted return of ``n_episodes`` episodes, run in parallel in a vector env.

    Notebooks 01-03. ``act`` maps a batch of observations to a batch of actions (e.g.
    ``lambda o: agent.act(o, deterministic=True)``). The vector env is reset with ``seed``, so two
    evaluations of the same deterministic policy give the same numbers. An env without a time
    limit is stopped after ``max_steps`` steps (raising ``RuntimeError``) instead of looping forever.
    ``envs`` (notebook 06): a ready vector env of ``n_episodes`` copies to evaluate in instead of
    ``make_vec_env(env_id)``, e.g. the wrapped env a trainer trains in; the TRUE return is summed
    from ``info["true_reward"]`` when the env reports it (a learned-reward wrapper does). It is closed after.
    """
    V.integer("n_episodes", n_episodes, low=1)
    V.integer("max_steps", max_steps, low=1)
    V.callable_("act", act)
    true_key = envs is not None
    if envs is None:
        envs = make_vec_env(env_id, n_episodes, **(env_kwargs or {}))
    elif getattr(envs, "num_envs", None) != n_episodes:
        raise ValueError(f"envs must be a vector env of n_episodes={n_episodes} copies, got {envs!r}")
    obs, _ = envs.reset(seed=seed)
    returns = np.zeros(n_episodes)
    finished = np.zeros(n_episodes, dtype=bool)
    steps = 0
    while not finished.all():
        if steps >= max_steps:
            envs.close()
            raise RuntimeError(f"evaluate_policy: episodes of {env_id} did not end within max_steps={max_steps}; "
                               "wrap the env in a TimeLimit or raise max_steps")
        steps += 1
        obs, reward, term, trunc, info = envs.step(np.asarray(act(obs)))
        if true_key:
            reward = info.get("true_reward", reward)
        returns[~finished] += np.asarray(reward)[~finished]
        finished |= np.asarray(term) | np.asarray(trunc)
    envs.close()
    return returns
