r"""REINFORCE with reward-to-go and a baseline (notebook 02, policy gradients).

The policy-gradient estimator (Williams 1992) that notebook 02 derives,

.. math::
    \nabla_\phi J(\pi_\phi) \approx \frac{1}{|D|} \sum_{\tau \in D} \sum_t
    \nabla_\phi \log \pi_\phi(a_t|s_t)\,\big(G_t - b(s_t)\big),
    \qquad G_t = \sum_{k \ge 0} \gamma^k r_{t+k},

written as a loss whose gradient is minus that estimate (:func:`reinforce_loss`), a collector of
complete episodes on a Gymnasium vector env (:func:`collect_episodes`) and a small trainer in the
CleanRL style: every setting in :class:`ReinforceConfig`, one readable loop in
:func:`train_reinforce`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from . import _validate as V
from .cache import reuse_run
from .rl import (
    CategoricalPolicy,
    categorical_log_prob_entropy,
    check_probability,
    discounted_returns,
    evaluate_policy,
    explained_variance,
    make_vec_env,
    mlp,
    require_discrete,
)
from .utils import progress_bar, resolve_threads, seed_everything

__all__ = [
    "BASELINES",
    "reinforce_loss",
    "Episode",
    "collect_episodes",
    "episode_batch",
    "ValueBaseline",
    "ReinforceConfig",
    "train_reinforce",
]

#: The baselines :func:`train_reinforce` knows: a learned V(s), the batch mean of G_t, or none.
BASELINES = ("value", "mean", "none")


# --------------------------------------------------------------------------- the loss
def reinforce_loss(logprobs: torch.Tensor, returns, baseline=None, normalize: bool = True) -> torch.Tensor:
    r"""The REINFORCE surrogate loss :math:`-\frac{1}{B}\sum_i \log\pi_\phi(a_i|s_i)\,\hat A_i`.

    Notebook 02. Its gradient is minus the policy-gradient estimate, so a gradient *descent* step
    on it is a gradient *ascent* step on the expected return J(π_φ).

    - ``logprobs``: log π_φ(a_t|s_t) of the actions taken, a tensor that carries the gradient;
    - ``returns``: the reward-to-go G_t of the same samples (same shape);
    - ``baseline``: ``None``, a number, or b(s_t) with the shape of ``returns``; the advantage
      estimate is :math:`\hat A_t = G_t - b(s_t)`;
    - ``normalize``: standardise :math:`\hat A` over the batch (subtract its mean, divide by its
      standard deviation). This also subtracts a constant, so with ``normalize=True`` the loss
      already has a "mean" baseline, and it fixes the step size's scale.

    ``returns`` and ``baseline`` are treated as constants (detached): only ``logprobs`` is
    differentiated. Returns a scalar tensor.
    """
    if not isinstance(logprobs, torch.Tensor):
        raise TypeError(f"logprobs must be a torch.Tensor (it carries the gradient), got {type(logprobs).__name__}")
    if logprobs.numel() == 0:
        raise ValueError("logprobs is empty: a REINFORCE batch needs at least one sample")
    ret = torch.as_tensor(returns, dtype=logprobs.dtype, device=logprobs.device).detach()
    if ret.shape != logprobs.shape:
        raise ValueError(
            f"returns must have the shape of logprobs {tuple(logprobs.shape)}, got {tuple(ret.shape)}"
        )
    if not torch.isfinite(ret).all():
        raise ValueError("returns contains NaN or inf")
    adv = ret
    if baseline is not None:
        b = torch.as_tensor(baseline, dtype=logprobs.dtype, device=logprobs.device).detach()
        if b.ndim != 0 and b.shape != ret.shape:
            raise ValueError(
                f"baseline must be a number or have the shape of returns {tuple(ret.shape)}, "
                f"got {tuple(b.shape)}"
            )
        if not torch.isfinite(b).all():
            raise ValueError("baseline contains NaN or inf")
        adv = ret - b
    if normalize and adv.numel() > 1:
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    return -(logprobs * adv).mean()


# --------------------------------------------------------------------------- collecting episodes
@dataclass
class Episode:
    """One complete episode: ``obs`` (T, obs_dim), ``actions`` (T,), ``rewards`` (T,) (notebook 02).

    ``terminated`` is True when the MDP ended (the pole fell), False when a time limit cut it.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    terminated: bool

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_reward(self) -> float:
        """The undiscounted return Σ_t r_t (what CartPole's "return 500" means)."""
        return float(self.rewards.sum())


def collect_episodes(policy, envs: gym.vector.VectorEnv, episodes_per_env: int = 1,
                     seed: int | None = None, max_steps: int = 100_000) -> list[Episode]:
    """Run ``policy`` until every env of ``envs`` has finished ``episodes_per_env`` episodes.

    Notebook 02. ``policy.act(obs)`` samples a batch of actions (e.g. :class:`~rlhf_tutorial.rl.
    CategoricalPolicy`). The envs are reset at the start (with ``seed`` if given), so every episode
    is a fresh one played by the current policy: REINFORCE is on-policy.

    Each env contributes exactly ``episodes_per_env`` episodes. (Keeping "the first K episodes to
    finish" instead would over-represent short episodes, a biased sample.) Gymnasium's
    ``NEXT_STEP`` auto-reset is handled as in :class:`~rlhf_tutorial.rl.RolloutCollector`: the
    step after an episode ends only resets that env, its action is ignored and it is not
    recorded. Episodes are returned env by env, in the order they finished. ``max_steps`` caps the
    vector steps: an env whose episodes never end (no time limit) raises ``RuntimeError`` instead
    of hanging.
    """
    V.integer("episodes_per_env", episodes_per_env, low=1)
    V.integer("max_steps", max_steps, low=1)
    V.seed("seed", seed)
    mode = envs.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
    if mode != gym.vector.AutoresetMode.NEXT_STEP:
        raise ValueError(f"collect_episodes expects autoreset_mode NEXT_STEP (Gymnasium's default), got {mode}")
    require_discrete(envs.single_action_space, "collect_episodes")
    n = envs.num_envs
    obs, _ = envs.reset(seed=seed)
    finished = np.zeros(n, dtype=int)      # complete episodes recorded per env
    prev_done = np.zeros(n, dtype=bool)    # True: this step is an auto-reset step
    current = [([], [], []) for _ in range(n)]  # the running episode of each env
    episodes: list[list[Episode]] = [[] for _ in range(n)]
    for _ in range(max_steps):
        if not (finished < episodes_per_env).any():
            break
        actions = np.asarray(policy.act(obs))
        next_obs, rewards, term, trunc, _ = envs.step(actions)
        record = ~prev_done & (finished < episodes_per_env)
        for i in np.flatnonzero(record):
            o, a, r = current[i]
            o.append(obs[i])
            a.append(actions[i])
            r.append(rewards[i])
            if term[i] or trunc[i]:
                episodes[i].append(Episode(np.asarray(o, dtype=np.float32), np.asarray(a),
                                           np.asarray(r, dtype=np.float32), bool(term[i])))
                current[i] = ([], [], [])
                finished[i] += 1
        prev_done = np.asarray(term) | np.asarray(trunc)
        obs = next_obs
    else:
        if (finished < episodes_per_env).any():
            raise RuntimeError(f"collect_episodes: episodes did not end within max_steps={max_steps} vector steps; "
                               "wrap the env in a TimeLimit (gymnasium.wrappers.TimeLimit) or raise max_steps")
    return [ep for per_env in episodes for ep in per_env]


def episode_batch(episodes: list[Episode], gamma: float):
    """Concatenate episodes into tensors ``(obs, actions, returns)`` with per-episode reward-to-go.

    Notebook 02. ``returns[t]`` is G_t of the episode that step t belongs to: the reward-to-go
    never crosses an episode boundary.
    """
    if len(episodes) == 0:
        raise ValueError("episodes is empty")
    obs = torch.as_tensor(np.concatenate([ep.obs for ep in episodes]), dtype=torch.float32)
    actions = torch.as_tensor(np.concatenate([ep.actions for ep in episodes]), dtype=torch.long)
    returns = torch.as_tensor(np.concatenate([discounted_returns(ep.rewards, gamma) for ep in episodes]),
                              dtype=torch.float32)
    return obs, actions, returns


class ValueBaseline(nn.Module):
    """b(s) = V_ψ(s): a small MLP regressed on the Monte-Carlo returns G_t (notebook 02)."""

    def __init__(self, obs_dim: int, hidden=(64, 64)):
        super().__init__()
        self.net = mlp(obs_dim, 1, hidden, out_std=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs).squeeze(-1)


# --------------------------------------------------------------------------- configuration
@dataclass
class ReinforceConfig:
    """Every setting of :func:`train_reinforce` (notebook 02), CleanRL style."""

    env_id: str = "CartPole-v1"  # Gymnasium id; the action space must be Discrete
    seed: int = 0  # seeds torch, NumPy and the env resets: same seed, same run (on CPU)
    num_envs: int = 8  # parallel envs in the vector env
    episodes_per_env: int = 1  # complete episodes each env plays per update
    total_episodes: int = 2_000  # budget: stop after this many training episodes
    gamma: float = 0.99  # discount γ of the reward-to-go G_t
    learning_rate: float = 5e-3  # Adam step size of the policy π_φ
    hidden: tuple = (64, 64)  # hidden layer sizes of the policy (and value) MLP
    baseline: str = "value"  # "value" (learned V_ψ(s)), "mean" (batch mean of G_t) or "none"
    value_learning_rate: float = 1e-2  # Adam step size of the value baseline V_ψ
    value_steps: int = 10  # full-batch regression steps of V_ψ on G_t per update
    normalize_advantages: bool = True  # standardise G_t - b(s_t) over the batch
    ent_coef: float = 0.0  # weight of an entropy bonus (0: plain REINFORCE)
    max_grad_norm: float = 1.0  # clip the policy gradient's global norm (0: no clipping)
    eval_every: int = 5  # updates between deterministic evaluations (0: never evaluate)
    eval_episodes: int = 10  # episodes per periodic evaluation
    eval_seed: int = 1_000  # env seed of the periodic evaluations (kept apart from the final test)
    target_return: float | None = 475.0  # stop early once the evaluation mean reaches it (None: never)
    torch_threads: int = 1  # CPU threads for torch (tiny nets: 1 is fastest and deterministic)

    def __post_init__(self):
        self.validate()

    def validate(self) -> ReinforceConfig:
        """Raise ``ValueError``/``TypeError`` naming the first bad setting; return ``self``."""
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        check_probability("gamma", self.gamma)
        for name in ("seed", "num_envs", "episodes_per_env", "total_episodes", "value_steps",
                     "eval_every", "eval_episodes", "eval_seed", "torch_threads"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"{name} must be an int, got {type(v).__name__} ({v!r})")
        for name in ("num_envs", "episodes_per_env", "total_episodes", "eval_episodes", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "value_steps", "eval_every", "eval_seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.baseline == "value" and self.value_steps < 1:
            raise ValueError("value_steps must be >= 1 when baseline='value'")
        for name in ("learning_rate", "value_learning_rate"):
            V.positive(name, getattr(self, name))
        for name in ("ent_coef", "max_grad_norm"):  # max_grad_norm = 0: no clipping
            V.number(name, getattr(self, name), 0)
        if self.target_return is not None:
            V.number("target_return", self.target_return)
        V.boolean("normalize_advantages", self.normalize_advantages)
        if not all(isinstance(h, int) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden must be a tuple of positive ints, got {self.hidden!r}")
        return self


# --------------------------------------------------------------------------- training
def train_reinforce(config: ReinforceConfig, progress: bool = True, callback: Callable[[dict], bool | None] | None = None):
    """Train a :class:`~rlhf_tutorial.rl.CategoricalPolicy` with REINFORCE; return ``(policy, history)``.

    Notebook 02. Each update:

    1. collect ``num_envs * episodes_per_env`` complete episodes with the current π_φ;
    2. compute the reward-to-go G_t of every step, inside its own episode;
    3. advantages Â_t = G_t - b(s_t) (b from ``config.baseline``; V_ψ is evaluated *before* it
       is refitted, so b never saw these returns), normalised if asked;
    4. one gradient step on :func:`reinforce_loss` (minus an entropy bonus if ``ent_coef > 0``);
    5. with the value baseline, ``value_steps`` steps of MSE regression of V_ψ(s_t) on G_t;
    6. every ``eval_every`` updates, the greedy policy's mean return over ``eval_episodes``
       episodes; stop once it reaches ``target_return``, or when ``total_episodes`` are used.

    ``history`` is a dict of lists, named like :func:`rlhf_tutorial.ppo.train_ppo`'s: per update
    ``update``, ``episodes`` (so far), ``global_step`` (environment steps in the collected episodes
    so far; the ignored steps of envs that already finished their quota are not counted),
    ``return_mean``, ``length_mean``, ``policy_loss``, ``value_loss``, ``entropy``,
    ``explained_variance`` (of G_t by the value baseline, ``nan`` without one); per training
    episode ``episode_step`` (steps used up to the end of that episode) and ``episode_return``;
    per evaluation ``eval_step``, ``eval_episodes``, ``eval_return``; and ``target_reached``,
    ``stopped_early`` and ``config``. ``callback(stats)`` (the trainers' contract, docs/DESIGN.md)
    gets each update's values (plus ``eval_return`` after an evaluation); returning True stops training.
    Runs are deterministic on CPU for a fixed ``config.seed``. ``progress`` shows a ``tqdm.auto``
    bar (off when ``TQDM_DISABLE=1``, as in ``scripts/run_notebooks.py``).
    """
    if not isinstance(config, ReinforceConfig):
        raise TypeError(f"config must be a ReinforceConfig, got {type(config).__name__}")
    config.validate()
    V.callable_("callback", callback, allow_none=True)
    if callback is None:  # nothing outside the run: it may be recorded/reused (rlhf_tutorial.cache.reuse_run)
        return reuse_run("reinforce", config, lambda: _train_reinforce(config, progress, None))
    return _train_reinforce(config, progress, callback)


def _train_reinforce(config: ReinforceConfig, progress: bool, callback):
    envs = make_vec_env(config.env_id, config.num_envs)
    try:
        n_actions = require_discrete(envs.single_action_space, "train_reinforce (REINFORCE)")
        obs_shape = envs.single_observation_space.shape
        if obs_shape is None or len(obs_shape) != 1:
            raise ValueError(f"train_reinforce needs flat (1-D) observations, got shape {obs_shape}")
        return _train(config, envs, obs_shape[0], n_actions, progress, callback)
    finally:
        envs.close()


_HISTORY_KEYS = ("update", "episodes", "global_step", "return_mean", "length_mean", "policy_loss", "value_loss",
                 "entropy", "explained_variance", "episode_step", "episode_return", "eval_step", "eval_episodes",
                 "eval_return")
_UPDATE_KEYS = _HISTORY_KEYS[:9]  # one value per update: what the callback gets


def _policy_step(config: ReinforceConfig, policy, optimizer, obs, actions, returns, b, update: int):
    """Step 4: one gradient step on the REINFORCE loss minus the entropy bonus; ``(pg_loss, entropy)``."""
    logp, entropy = categorical_log_prob_entropy(policy(obs), actions)
    pg_loss = reinforce_loss(logp, returns, b, normalize=config.normalize_advantages)
    loss = pg_loss - config.ent_coef * entropy.mean()
    V.check_finite_loss(loss, update, "REINFORCE loss (policy gradient - entropy bonus)")
    optimizer.zero_grad()
    loss.backward()
    if config.max_grad_norm > 0:
        nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
    optimizer.step()
    return pg_loss.item(), entropy.mean().item()


def _value_step(config: ReinforceConfig, value, value_opt, obs, returns, b) -> tuple[float, float]:
    """Step 5: refit V_ψ on this batch's returns; ``(value_loss, explained_variance)`` (NaN without V_ψ)."""
    if value is None:
        return float("nan"), float("nan")
    ev = explained_variance(b, returns)
    for _ in range(config.value_steps):
        v_loss_t = ((value(obs) - returns) ** 2).mean()
        value_opt.zero_grad()
        v_loss_t.backward()
        value_opt.step()
    return v_loss_t.item(), ev


def _baseline(config: ReinforceConfig, value, obs, returns):
    """Step 3: b(s_t), evaluated before V_ψ is refitted (``None`` without a baseline)."""
    if value is not None:
        with torch.no_grad():
            return value(obs)
    return returns.mean() if config.baseline == "mean" else None


def _record(history: dict, row: dict, episodes, n_obs: int) -> None:
    for k, v in row.items():
        history[k].append(v)
    history["episode_return"].extend(ep.total_reward for ep in episodes)
    ends = row["global_step"] - n_obs + np.cumsum([len(ep) for ep in episodes])
    history["episode_step"].extend(ends.tolist())


def _evaluate(config: ReinforceConfig, policy, history: dict) -> float:
    """Step 6: the greedy policy's mean return over ``eval_episodes``, recorded in ``history``."""
    eval_ret = float(evaluate_policy(lambda o: policy.act(o, deterministic=True), config.env_id,
                                     config.eval_episodes, seed=config.eval_seed).mean())
    history["eval_step"].append(history["global_step"][-1])
    history["eval_episodes"].append(history["episodes"][-1])
    history["eval_return"].append(eval_ret)
    return eval_ret


def _train(config: ReinforceConfig, envs, obs_dim: int, n_actions: int, progress: bool, callback):
    torch.set_num_threads(resolve_threads(config.torch_threads))
    seed_everything(config.seed)
    policy = CategoricalPolicy(obs_dim, n_actions, config.hidden)
    optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    value = value_opt = None
    if config.baseline == "value":
        value = ValueBaseline(obs_dim, config.hidden)
        value_opt = torch.optim.Adam(value.parameters(), lr=config.value_learning_rate)
    history: dict = {k: [] for k in _HISTORY_KEYS}
    history.update(target_reached=False, stopped_early=False, config=asdict(config))
    n_updates = math.ceil(config.total_episodes / (config.num_envs * config.episodes_per_env))
    episodes_done = steps_done = 0
    bar = progress_bar(range(1, n_updates + 1), desc="REINFORCE", disable=not progress)  # tqdm.auto
    for update in bar:
        # 1-2. a batch of complete, fresh episodes from the current policy; reward-to-go G_t within each
        episodes = collect_episodes(policy, envs, config.episodes_per_env, seed=config.seed if update == 1 else None)
        obs, actions, returns = episode_batch(episodes, config.gamma)
        b = _baseline(config, value, obs, returns)
        pg_loss, entropy = _policy_step(config, policy, optimizer, obs, actions, returns, b, update)
        v_loss, ev = _value_step(config, value, value_opt, obs, returns, b)
        episodes_done += len(episodes)
        steps_done += len(obs)
        ep_returns = [ep.total_reward for ep in episodes]
        row = dict(zip(_UPDATE_KEYS, (update, episodes_done, steps_done, float(np.mean(ep_returns)),
                                      float(np.mean([len(ep) for ep in episodes])), pg_loss, v_loss, entropy, ev)))
        _record(history, row, episodes, len(obs))
        postfix = {"return": f"{np.mean(ep_returns):.1f}"}
        if config.eval_every and (update % config.eval_every == 0 or update == n_updates):
            row["eval_return"] = _evaluate(config, policy, history)
            postfix["eval"] = f"{row['eval_return']:.1f}"
            if config.target_return is not None and row["eval_return"] >= config.target_return:
                history["target_reached"] = True
                history["stopped_early"] = update < n_updates
        bar.set_postfix(postfix)
        if history["target_reached"] or (callback is not None and callback(row)):
            break
    bar.close()
    return policy, history
