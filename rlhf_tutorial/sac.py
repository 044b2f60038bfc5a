r"""Soft Actor-Critic (Haarnoja et al. 2018) for continuous actions, CleanRL-style (notebook 03).

SAC is an off-policy algorithm based on maximum entropy (seed §3.3.2): the policy π_φ maximises
reward *plus* entropy, :math:`\sum_t \mathbb{E}[r_t + \alpha\,\mathcal{H}(\pi_\phi(\cdot|s_t))]`,
and the temperature α is tuned automatically so the entropy stays near a target (−|A|).

Per environment step, after ``learning_starts`` random steps (one gradient step each):

1. act with a ~ π_φ(·|s_t), store (s_t, a_t, r_t, s_{t+1}, terminated, truncated) in the buffer;
2. sample a batch; critic step on :func:`sac_critic_loss` (twin Q, soft Bellman target);
3. every ``policy_frequency`` steps, actor step on :func:`sac_actor_loss` and temperature step on
   :func:`sac_alpha_loss` (a delayed actor, as in TD3 and CleanRL: cheaper, and steadier here);
4. Polyak-average the target critics: θ' ← τθ + (1−τ)θ' (:func:`polyak_update`).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Callable, NamedTuple

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as V
from .cache import reuse_run
from .rl import check_probability, evaluate_policy, make_vec_env, mlp
from .utils import progress_bar, resolve_threads, seed_everything

__all__ = [
    "SACConfig",
    "ReplayBatch",
    "ReplayBuffer",
    "SquashedGaussianActor",
    "TwinQ",
    "tanh_log_det_jacobian",
    "polyak_update",
    "soft_q_target",
    "sac_critic_loss",
    "sac_actor_loss",
    "sac_alpha_loss",
    "train_sac",
]


@dataclass
class SACConfig:
    """Every SAC hyperparameter, with its default (tuned so Pendulum-v1 is solved in < 1 min on CPU) (notebook 03)."""

    env_id: str = "Pendulum-v1"  # Gymnasium task with a Box action space
    total_timesteps: int = 8_000  # environment steps (a Pendulum episode is 200 steps)
    learning_starts: int = 1_000  # uniformly random actions before the first update
    buffer_size: int = 100_000  # replay buffer capacity, in transitions
    batch_size: int = 256  # transitions per gradient step
    gamma: float = 0.99  # discount factor γ
    tau: float = 0.01  # Polyak factor of the target critics: θ' ← τθ + (1−τ)θ'
    policy_lr: float = 1e-3  # Adam learning rate of the actor π_φ
    q_lr: float = 1e-3  # Adam learning rate of the twin critics Q_θ1, Q_θ2
    alpha_lr: float = 1e-3  # Adam learning rate of log α (when autotune)
    policy_frequency: int = 2  # update the actor and α every this many critic updates (TD3's delay)
    hidden: tuple = (128, 128)  # hidden layer sizes of the actor and of each critic
    alpha: float = 0.2  # entropy temperature α: fixed, or the initial value when autotune
    autotune: bool = True  # learn α so that the policy's entropy tracks target_entropy
    target_entropy: float | None = None  # None means −|A| (minus the action dimension)
    log_std_min: float = -5.0  # the actor's log σ is squashed into [log_std_min, log_std_max]
    log_std_max: float = 2.0
    seed: int = 0  # seeds Python, NumPy, torch, the env and the replay buffer
    torch_threads: int = 1  # CPU threads during training (small nets: 1 is fastest)
    eval_every: int = 500  # evaluate the deterministic policy every this many steps (0: never)
    eval_episodes: int = 10  # episodes per evaluation
    eval_seed: int = 10_000  # seed of the evaluation envs (evaluate_policy's default)
    target_return: float | None = None  # stop early once the eval mean is >= this (None: never)

    def __post_init__(self):
        for name in ("total_timesteps", "buffer_size", "batch_size", "policy_frequency", "torch_threads",
                     "eval_episodes"):
            V.integer(name, getattr(self, name), low=1)
        for name in ("learning_starts", "eval_every", "seed", "eval_seed"):
            V.integer(name, getattr(self, name), low=0)
        V.text("env_id", self.env_id)
        V.boolean("autotune", self.autotune)
        for name in ("log_std_min", "log_std_max"):
            V.number(name, getattr(self, name))
        if self.target_entropy is not None:
            V.number("target_entropy", self.target_entropy)
        if self.target_return is not None:
            V.number("target_return", self.target_return)
        if self.batch_size > self.buffer_size:
            raise ValueError(f"batch_size ({self.batch_size}) must be <= buffer_size ({self.buffer_size})")
        check_probability("gamma", self.gamma)
        if check_probability("tau", self.tau) == 0.0:
            raise ValueError("tau must be in (0, 1], got 0 (the target critics would never move)")
        for name in ("policy_lr", "q_lr", "alpha_lr", "alpha"):
            V.positive(name, getattr(self, name))
        V.instance("hidden", self.hidden, (tuple, list), "tuple of positive ints")
        if len(self.hidden) == 0:
            raise ValueError(f"hidden must be a non-empty tuple of positive ints, got {self.hidden!r}")
        for h in self.hidden:
            V.integer("hidden", h, low=1)
        if not self.log_std_min < self.log_std_max:
            raise ValueError(f"log_std_min ({self.log_std_min}) must be < log_std_max ({self.log_std_max})")


def _check_batch(**tensors: torch.Tensor) -> None:
    """All tensors must be 1-D ``(B,)`` with the same B (the first one named sets B)."""
    first_name, first = next(iter(tensors.items()))
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 1 or t.shape != first.shape:
            want = f"({first.shape[0]},) like {first_name}" if first.ndim == 1 else "(batch,)"
            raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
        V.check_finite(name, t)


# --------------------------------------------------------------------------- replay buffer
class ReplayBatch(NamedTuple):
    """A batch sampled from :class:`ReplayBuffer`, as float32 tensors (notebook 03)."""

    obs: torch.Tensor  # (B, obs_dim)
    actions: torch.Tensor  # (B, act_dim), in the env's units
    rewards: torch.Tensor  # (B,)
    next_obs: torch.Tensor  # (B, obs_dim): the real next state, also at episode ends
    terminated: torch.Tensor  # (B,) 1.0 where the MDP ended: no bootstrap
    truncated: torch.Tensor  # (B,) 1.0 where a time limit cut the episode: bootstrap anyway


class ReplayBuffer:
    """A ring buffer of transitions in NumPy arrays, sampled uniformly (notebook 03).

    Terminated and truncated are stored separately: only termination stops bootstrapping; a
    time-limit cut (Pendulum always ends by truncation at 200 steps) still has a future worth
    Q(s_{t+1}, a'), so ``next_obs`` must be the real final observation, not the reset one.
    """

    def __init__(self, obs_dim: int, act_dim: int, capacity: int, seed: int | None = None):
        V.integer("capacity", capacity, low=1)
        self.obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.next_obs = np.zeros((capacity, obs_dim), dtype=np.float32)
        self.actions = np.zeros((capacity, act_dim), dtype=np.float32)
        self.rewards = np.zeros(capacity, dtype=np.float32)
        self.terminated = np.zeros(capacity, dtype=np.float32)
        self.truncated = np.zeros(capacity, dtype=np.float32)
        self.capacity, self.pos, self.size = capacity, 0, 0
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.size

    def add(self, obs, action, reward: float, next_obs, terminated: bool, truncated: bool) -> None:
        """Store one transition, overwriting the oldest one when full."""
        i = self.pos
        self.obs[i], self.actions[i], self.next_obs[i] = obs, action, next_obs
        self.rewards[i], self.terminated[i], self.truncated[i] = reward, terminated, truncated
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_size: int) -> ReplayBatch:
        """``batch_size`` transitions drawn uniformly (with replacement) from the stored ones."""
        V.integer("batch_size", batch_size, low=1)
        if self.size == 0:
            raise ValueError("cannot sample from an empty ReplayBuffer; add transitions first")
        idx = self.rng.integers(0, self.size, size=batch_size)
        arrays = (self.obs, self.actions, self.rewards, self.next_obs, self.terminated, self.truncated)
        return ReplayBatch(*(torch.from_numpy(a[idx]) for a in arrays))


# --------------------------------------------------------------------------- networks
def tanh_log_det_jacobian(u: torch.Tensor) -> torch.Tensor:
    r""":math:`\log(1-\tanh(u)^2)`, elementwise, in the stable form :math:`2(\log 2 - u - \mathrm{softplus}(-2u))` (notebook 03).

    The naive ``log(1 - tanh(u)**2 + 1e-6)`` loses all precision once |u| > ~9 (tanh(u)² rounds to
    1); this identity is exact for every u.
    """
    return 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))


class SquashedGaussianActor(nn.Module):
    r"""π_φ(a|s): a = bias + scale·tanh(u), u ~ N(μ_φ(s), σ_φ(s)²) (notebook 03).

    The tanh keeps actions inside the env's bounds ``[low, high]``; the change of variables gives

    .. math:: \log\pi(a|s) = \log\mathcal{N}(u;\mu,\sigma) - \sum_i \big[\log(1-\tanh(u_i)^2) + \log \mathrm{scale}_i\big].

    The deterministic action (for evaluation) is bias + scale·tanh(μ).
    """

    def __init__(self, obs_dim: int, act_dim: int, low, high, hidden=(256, 256),
                 log_std_min: float = -5.0, log_std_max: float = 2.0):
        super().__init__()
        low, high = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
        if low.shape != (act_dim,) or high.shape != (act_dim,):
            raise ValueError(f"low and high must have shape ({act_dim},), got {low.shape} and {high.shape}")
        if not (np.isfinite(low).all() and np.isfinite(high).all() and (high > low).all()):
            raise ValueError(f"action bounds must be finite with high > low, got low={low}, high={high}")
        self.init_args = {"obs_dim": int(obs_dim), "act_dim": int(act_dim), "low": low.tolist(), "high": high.tolist(),
                          "hidden": list(hidden), "log_std_min": float(log_std_min), "log_std_max": float(log_std_max)}
        # one MLP outputs [μ, pre-log σ]; small last layer ⇒ μ ≈ 0 at the start
        self.net = mlp(obs_dim, 2 * act_dim, hidden, out_std=0.01, activation=nn.ReLU)
        self.register_buffer("action_scale", torch.as_tensor((high - low) / 2.0))
        self.register_buffer("action_bias", torch.as_tensor((high + low) / 2.0))
        self.log_std_min, self.log_std_max = log_std_min, log_std_max

    def forward(self, obs: torch.Tensor):
        """Return μ and log σ of the Gaussian over the pre-tanh u, each ``(B, act_dim)``."""
        mean, pre = self.net(obs).chunk(2, dim=-1)
        # squash log σ smoothly into [log_std_min, log_std_max] (CleanRL), instead of clamping
        log_std = self.log_std_min + 0.5 * (self.log_std_max - self.log_std_min) * (torch.tanh(pre) + 1)
        return mean, log_std

    def sample(self, obs: torch.Tensor):
        """Reparameterised sample: ``(action, log π(action|s), deterministic action)``.

        Shapes ``(B, A)``, ``(B,)``, ``(B, A)``; actions are in the env's units.
        """
        mean, log_std = self(obs)
        std = log_std.exp()
        u = mean + std * torch.randn_like(mean)  # u = μ + σε: gradients flow to μ and σ
        gauss_logp = (-0.5 * ((u - mean) / std) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = gauss_logp - (tanh_log_det_jacobian(u) + torch.log(self.action_scale)).sum(-1)
        action = self.action_bias + self.action_scale * torch.tanh(u)
        return action, logp, self.action_bias + self.action_scale * torch.tanh(mean)

    @torch.no_grad()
    def act(self, obs, deterministic: bool = False) -> np.ndarray:
        """NumPy actions for a batch of observations (or one observation); tanh(μ) when ``deterministic``."""
        obs_t = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
        single = obs_t.ndim == 1
        if single:
            obs_t = obs_t[None]
        if deterministic:
            mean, _ = self(obs_t)
            action = self.action_bias + self.action_scale * torch.tanh(mean)
        else:
            action = self.sample(obs_t)[0]
        action = action.numpy()
        return action[0] if single else action


class TwinQ(nn.Module):
    """Two independent critics Q_θ1(s,a), Q_θ2(s,a) (notebook 03).

    Taking the min of the two in the target and in the actor loss curbs the overestimation that a
    single critic maximised by the actor suffers from (the clipped double-Q trick of TD3).
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden=(256, 256)):
        super().__init__()
        self.q1 = mlp(obs_dim + act_dim, 1, hidden, out_std=1.0, activation=nn.ReLU)
        self.q2 = mlp(obs_dim + act_dim, 1, hidden, out_std=1.0, activation=nn.ReLU)

    def forward(self, obs: torch.Tensor, actions: torch.Tensor):
        """Return ``(Q1(s,a), Q2(s,a))``, each of shape ``(B,)``."""
        x = torch.cat([obs, actions], dim=-1)
        return self.q1(x).squeeze(-1), self.q2(x).squeeze(-1)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """θ' ← τ·θ + (1−τ)·θ' for every parameter: the slowly moving target critics (notebook 03)."""
    tau = check_probability("tau", tau)
    t_params, s_params = list(target.parameters()), list(source.parameters())
    if len(t_params) != len(s_params) or any(a.shape != b.shape for a, b in zip(t_params, s_params, strict=True)):
        raise ValueError("target and source must have the same architecture (parameter shapes differ)")
    for tp, sp in zip(t_params, s_params, strict=True):
        tp.lerp_(sp, tau)


# --------------------------------------------------------------------------- the three losses
def soft_q_target(rewards, terminated, next_q1, next_q2, next_logp, gamma: float, alpha: float) -> torch.Tensor:
    r"""Soft Bellman target :math:`y = r + \gamma(1-\mathrm{term})\,[\min_j Q'_j(s', a') - \alpha\log\pi(a'|s')]` (notebook 03).

    a' ~ π_φ(·|s') is a fresh sample at the next state; Q'_j are the *target* critics. Only
    ``terminated`` stops the bootstrap (truncation does not). Returned without gradient, ``(B,)``.
    """
    gamma = check_probability("gamma", gamma)
    alpha = V.number("alpha", alpha, 0.0)
    _check_batch(rewards=rewards, terminated=terminated, next_q1=next_q1, next_q2=next_q2, next_logp=next_logp)
    with torch.no_grad():
        soft_v = torch.min(next_q1, next_q2) - alpha * next_logp  # V(s') = E[min Q' − α log π]
        return rewards + gamma * (1.0 - terminated.float()) * soft_v


def sac_critic_loss(q1, q2, rewards, terminated, next_q1, next_q2, next_logp, gamma: float, alpha: float):
    r"""Twin-critic loss :math:`\mathrm{MSE}(Q_1(s,a), y) + \mathrm{MSE}(Q_2(s,a), y)` with y from :func:`soft_q_target`.

    Notebook 03. ``q1, q2`` are the online critics at the buffer's (s, a); every argument is a
    ``(B,)`` tensor except the floats ``gamma`` and ``alpha``.
    """
    _check_batch(q1=q1, q2=q2, rewards=rewards)
    y = soft_q_target(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha)
    return F.mse_loss(q1, y) + F.mse_loss(q2, y)


def sac_actor_loss(logp, q1_pi, q2_pi, alpha: float) -> torch.Tensor:
    r"""Actor loss :math:`\mathbb{E}_s[\alpha\log\pi(\tilde a|s) - \min_j Q_j(s,\tilde a)]`, ã ~ π_φ(·|s) reparameterised.

    Notebook 03. Minimising it maximises the soft value: high Q *and* high entropy. ``logp``,
    ``q1_pi``, ``q2_pi`` are ``(B,)``; ``alpha`` is a float (held fixed in this step).
    """
    _check_batch(logp=logp, q1_pi=q1_pi, q2_pi=q2_pi)
    V.number("alpha", alpha, 0.0)
    return (alpha * logp - torch.min(q1_pi, q2_pi)).mean()


def sac_alpha_loss(log_alpha: torch.Tensor, logp, target_entropy: float) -> torch.Tensor:
    r"""Temperature loss :math:`-\log\alpha\cdot\mathbb{E}[\log\pi(a|s) + \bar{\mathcal{H}}]` (``logp`` detached).

    Notebook 03. When the entropy −E[log π] is below the target H̄ the bracket is positive, the
    gradient descent step raises log α, and a larger α pushes the actor to explore more (and vice
    versa). ``log_alpha`` is a scalar tensor with ``requires_grad``; ``logp`` is ``(B,)``.
    """
    if not isinstance(log_alpha, torch.Tensor) or log_alpha.numel() != 1:
        raise ValueError(f"log_alpha must be a 1-element tensor, got {type(log_alpha).__name__} "
                         f"{tuple(getattr(log_alpha, 'shape', ()))}")
    _check_batch(logp=logp)
    V.check_finite("log_alpha", log_alpha)
    V.number("target_entropy", target_entropy)
    return -(log_alpha.reshape(()) * (logp.detach() + target_entropy)).mean()


# --------------------------------------------------------------------------- training
def _sac_envs(cfg: SACConfig, envs):
    """The 1-copy vector env to train in (``envs(1)`` or ``config.env_id``) and the factory for evaluation."""
    make = None
    if envs is None:
        venv = make_vec_env(cfg.env_id, 1)  # ValueError for an unknown id
    elif callable(envs) and not hasattr(envs, "step"):
        make, venv = envs, envs(1)
    else:
        raise TypeError(f"envs must be None or a callable n -> vector env of n copies, got {type(envs).__name__}")
    if getattr(venv, "num_envs", None) != 1:
        raise ValueError(f"envs(1) must return a vector env of 1 copy, got {venv!r}")
    act_space, obs_space = venv.single_action_space, venv.single_observation_space
    problem = None
    if not isinstance(act_space, gym.spaces.Box):
        problem = TypeError(f"SAC here needs a Box action space, got {type(act_space).__name__} {act_space} for "
                            f"{cfg.env_id}; use rlhf_tutorial.ppo for discrete actions")
    elif not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) != 1:
        problem = TypeError(f"SAC here needs a flat Box observation space, got {obs_space}")
    elif not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
        problem = ValueError(f"SAC here needs finite action bounds to squash into, got low={act_space.low}, "
                             f"high={act_space.high}")
    if problem is not None:
        venv.close()
        raise problem
    return venv, make


class _SACLearner:
    """SAC's networks, optimizers and temperature, with the update of steps 2-4 (notebook 03)."""

    def __init__(self, cfg: SACConfig, obs_dim: int, act_dim: int, low, high):
        hidden = tuple(int(h) for h in cfg.hidden)
        self.cfg = cfg
        self.actor = SquashedGaussianActor(obs_dim, act_dim, low, high, hidden, cfg.log_std_min, cfg.log_std_max)
        self.qf = TwinQ(obs_dim, act_dim, hidden)
        self.qf_target = copy.deepcopy(self.qf).requires_grad_(False)
        self.q_opt = torch.optim.Adam(self.qf.parameters(), lr=cfg.q_lr)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=cfg.policy_lr)
        self.target_entropy = -float(act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
        self.log_alpha = torch.tensor(math.log(cfg.alpha), requires_grad=True)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=cfg.alpha_lr)
        self.alpha = cfg.alpha
        self.actor_loss = self.logp = torch.full((1,), float("nan"))  # logged before the first actor update

    def critic_step(self, b: ReplayBatch, step: int):
        """Step 2: regress both Q's on the soft Bellman target."""
        with torch.no_grad():
            next_a, next_logp, _ = self.actor.sample(b.next_obs)
            next_q1, next_q2 = self.qf_target(b.next_obs, next_a)
        q1, q2 = self.qf(b.obs, b.actions)
        q_loss = sac_critic_loss(q1, q2, b.rewards, b.terminated, next_q1, next_q2, next_logp,
                                 self.cfg.gamma, self.alpha)
        V.check_finite_loss(q_loss, step, "SAC critic loss")
        self.q_opt.zero_grad()
        q_loss.backward()
        self.q_opt.step()
        return q_loss, q1

    def actor_and_alpha_step(self, b: ReplayBatch, step: int) -> None:
        """Step 3: the actor through the (frozen) critics, then the temperature α."""
        self.qf.requires_grad_(False)  # gradients flow through Q to the action, not into θ
        pi_a, self.logp, _ = self.actor.sample(b.obs)
        q1_pi, q2_pi = self.qf(b.obs, pi_a)
        self.actor_loss = sac_actor_loss(self.logp, q1_pi, q2_pi, self.alpha)
        V.check_finite_loss(self.actor_loss, step, "SAC actor loss")
        self.actor_opt.zero_grad()
        self.actor_loss.backward()
        self.actor_opt.step()
        self.qf.requires_grad_(True)
        if self.cfg.autotune:
            alpha_loss = sac_alpha_loss(self.log_alpha, self.logp, self.target_entropy)
            self.alpha_opt.zero_grad()
            alpha_loss.backward()
            self.alpha_opt.step()
            self.alpha = float(self.log_alpha.detach().exp())

    def update(self, rb: ReplayBuffer, step: int, history: dict) -> None:
        """Steps 2-4 on one batch from the buffer; logs every 100 env steps."""
        b = rb.sample(self.cfg.batch_size)
        q_loss, q1 = self.critic_step(b, step)
        if step % self.cfg.policy_frequency == 0:
            self.actor_and_alpha_step(b, step)
        polyak_update(self.qf_target, self.qf, self.cfg.tau)  # step 4: the target critics follow slowly
        if step % 100 == 0:
            for k, v in (("log_step", step), ("q_loss", float(q_loss.detach())),
                         ("actor_loss", float(self.actor_loss.detach())), ("alpha", self.alpha),
                         ("entropy", -float(self.logp.detach().mean())), ("q_value", float(q1.detach().mean()))):
                history[k].append(v)


def _sac_evaluate(cfg: SACConfig, actor: SquashedGaussianActor, make, step: int, history: dict) -> float:
    """Deterministic evaluation: the TRUE return, in ``make(eval_episodes)`` (the training wrappers) if given."""
    returns = evaluate_policy(lambda o: actor.act(o, deterministic=True), cfg.env_id, cfg.eval_episodes,
                              seed=cfg.eval_seed, envs=None if make is None else make(cfg.eval_episodes))
    history["eval_step"].append(step)
    history["eval_return"].append(float(returns.mean()))
    history["eval_return_std"].append(float(returns.std()))
    return float(returns.mean())


_SAC_HISTORY = ("episode_step", "episode_return", "episode_true_return", "eval_step", "eval_return",
                "eval_return_std", "log_step", "q_loss", "actor_loss", "alpha", "entropy", "q_value")


def train_sac(config: SACConfig | None = None, callback: Callable[[dict], bool | None] | None = None,
              progress: bool = True, envs=None):
    """Train SAC on ``config.env_id``; return ``(actor, history)`` (notebook 03; on a learned reward, notebook 06).

    Per env step: 1 act (uniformly random for ``learning_starts`` steps) and store the transition,
    then 2 critic step, 3 every ``policy_frequency`` steps actor and temperature steps, 4 Polyak
    update of the target critics. ``envs`` (notebook 06): a callable ``n -> vector env`` of n
    copies to train in (``envs(1)``) and evaluate in (``envs(eval_episodes)``) instead of
    ``config.env_id``, e.g. ``lambda n: LearnedRewardVectorWrapper(make_vec_env("Pendulum-v1", n), net)``;
    ``eval_return`` is then the TRUE return (``info["true_reward"]``).

    ``history`` holds lists: ``episode_step``/``episode_return`` (every finished training
    episode; ``episode_true_return`` too when the env reports the true reward),
    ``eval_step``/``eval_return``/``eval_return_std`` (deterministic evaluations), ``log_step``
    with ``q_loss``, ``actor_loss``, ``alpha``, ``entropy`` (−mean log π) and ``q_value`` (mean
    Q1 on the batch) every 100 env steps once updates start, plus ``steps`` (env steps done),
    ``seconds`` (wall time) and ``stopped_early``. ``callback(info)`` (the trainers' contract) gets
    ``{"global_step", "eval_return", "alpha"}`` after every evaluation; returning True stops
    training. Seeds are fixed, so a run is deterministic on CPU for a given config.
    """
    cfg = SACConfig() if config is None else V.instance("config", config, SACConfig)
    V.callable_("callback", callback, allow_none=True)
    if callback is not None:  # a callback may stop the run or have side effects: never reused
        return _train_sac(cfg, callback, progress, envs)
    return reuse_run("sac", (cfg, envs), lambda: _train_sac(cfg, None, progress, envs))


def _train_sac(cfg: SACConfig, callback, progress: bool, envs):
    """The body of :func:`train_sac` (which may instead reuse a recorded run: :func:`rlhf_tutorial.cache.reuse_run`)."""
    venv, make = _sac_envs(cfg, envs)
    space = venv.single_action_space
    obs_dim, act_dim = venv.single_observation_space.shape[0], space.shape[0]
    # the thread count changes the last bits of the (orthogonal) init and of every update, so it is
    # part of what makes a run reproducible; set before the networks are built, restored at the end
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(resolve_threads(cfg.torch_threads))
    seed_everything(cfg.seed)
    space.seed(cfg.seed)
    sac = _SACLearner(cfg, obs_dim, act_dim, space.low, space.high)
    rb = ReplayBuffer(obs_dim, act_dim, cfg.buffer_size, seed=cfg.seed)
    history: dict = {k: [] for k in _SAC_HISTORY}
    history.update(steps=0, seconds=0.0, stopped_early=False)
    start = time.perf_counter()
    bar = progress_bar(total=cfg.total_timesteps, desc=f"SAC {cfg.env_id}", disable=not progress)
    obs = venv.reset(seed=cfg.seed)[0][0]
    ep_return = ep_true = 0.0
    step = 0
    try:
        for step in range(1, cfg.total_timesteps + 1):
            # 1. act: uniformly random at first, then a ~ π_φ(·|s); store the transition
            action = space.sample() if step <= cfg.learning_starts else sac.actor.act(obs, deterministic=False)
            next_obs, reward, terminated, truncated, info = venv.step(action[None])  # a batch of 1 copy
            next_obs, reward, terminated, truncated = next_obs[0], reward[0], bool(terminated[0]), bool(truncated[0])
            rb.add(obs, action, reward, next_obs, terminated, truncated)  # next_obs: the real s_{t+1}
            ep_return += float(reward)
            ep_true += float(info["true_reward"][0]) if "true_reward" in info else 0.0
            obs = next_obs
            if terminated or truncated:
                history["episode_step"].append(step)
                history["episode_return"].append(ep_return)
                if "true_reward" in info:
                    history["episode_true_return"].append(ep_true)
                bar.set_postfix(ep_return=f"{ep_return:.0f}", alpha=f"{sac.alpha:.3f}", refresh=False)
                obs, ep_return, ep_true = venv.step(action[None])[0][0], 0.0, 0.0  # the auto-reset step
            if step > cfg.learning_starts:
                sac.update(rb, step, history)
            bar.update(1)
            if cfg.eval_every and (step % cfg.eval_every == 0 or step == cfg.total_timesteps):
                mean = _sac_evaluate(cfg, sac.actor, make, step, history)
                bar.set_postfix(eval=f"{mean:.0f}", alpha=f"{sac.alpha:.3f}", refresh=False)
                stop = cfg.target_return is not None and mean >= cfg.target_return
                if callback is not None and callback({"global_step": step, "eval_return": mean, "alpha": sac.alpha}):
                    stop = True
                if stop:
                    history["stopped_early"] = step < cfg.total_timesteps
                    break
    finally:
        history["steps"] = step
        history["seconds"] = time.perf_counter() - start
        bar.close()
        venv.close()
        torch.set_num_threads(prev_threads)
    sac.actor.eval()
    return sac.actor, history
