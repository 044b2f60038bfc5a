"""A2C and PPO for discrete-action Gymnasium tasks (notebook 03; reused in notebooks 05-06).

The losses are small functions you can test on hand-made tensors; :func:`train_ppo` is the
CleanRL-style loop around them: collect a rollout from a vector env, compute GAE (bootstrapping
at truncation, not at termination), then several epochs of minibatch updates with the clipped
surrogate, a (clipped) value loss and an entropy bonus. Diagnostics keep CleanRL's names:
``approx_kl``, ``clipfrac``, ``explained_variance``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import _validate as V
from .cache import reuse_run
from .rl import (
    ActorCritic,
    Rollout,
    RolloutCollector,
    compute_gae,
    evaluate_policy,
    explained_variance,
    make_vec_env,
    require_discrete,
)
from .utils import progress_bar, resolve_threads

__all__ = ["PPOConfig", "TASK_PPO_CONFIG", "ppo_policy_loss", "ppo_value_loss", "a2c_loss", "normalize", "rollout_to_batch",
           "ppo_update", "train_ppo", "ALGORITHMS"]

ALGORITHMS = ("ppo", "a2c")


@dataclass
class PPOConfig:
    """Every knob of :func:`train_ppo`, with defaults that solve CartPole-v1 in about 10-20 s on CPU (notebook 03).

    The defaults follow rl-zoo's tuned CartPole PPO (the same numbers as the benchmark's SB3 run).
    """

    env_id: str = "CartPole-v1"  # a Gymnasium id with a Discrete action space
    algo: str = "ppo"  # "ppo" (clipped, several epochs) or "a2c" (one plain gradient step per rollout)
    seed: int = 0  # seeds torch, the envs and the evaluation
    total_timesteps: int = 100_000  # environment steps (reset steps excluded)
    num_envs: int = 8  # parallel environments in the vector env
    num_steps: int = 32  # steps per env per rollout: batch = num_envs * num_steps
    learning_rate: float = 1e-3  # Adam step size
    anneal_lr: bool = True  # decay the learning rate linearly to 0
    gamma: float = 0.98  # discount γ
    gae_lambda: float = 0.8  # GAE λ
    update_epochs: int = 20  # passes over each rollout (PPO only)
    num_minibatches: int = 1  # minibatches per epoch (PPO only)
    norm_adv: bool = True  # whiten advantages per minibatch
    clip_coef: float = 0.2  # PPO ratio clipping ε
    anneal_clip: bool = True  # decay ε linearly with the learning rate (as rl-zoo does)
    clip_vloss: bool = False  # clip the value update around the old values
    ent_coef: float = 0.0  # entropy bonus weight
    vf_coef: float = 0.5  # value-loss weight
    max_grad_norm: float = 0.5  # global gradient-norm clip
    adam_eps: float = 1e-5  # Adam ε (the PPO implementation detail)
    hidden: tuple = (64, 64)  # hidden sizes of the actor and the critic
    bootstrap_truncated: bool = True  # at a time limit, bootstrap with V(s_final); False treats it as death
    target_kl: float | None = None  # stop an update's epochs early when approx_kl exceeds this
    eval_every: int = 4096  # evaluate every this many env steps (0: never)
    eval_episodes: int = 10  # deterministic evaluation episodes
    stop_at_return: float | None = None  # stop once an evaluation mean reaches this
    torch_threads: int = 1  # small nets run fastest on 1 thread
    env_kwargs: dict = field(default_factory=dict)  # extra keyword arguments for the env

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        V.one_of("algo", self.algo, ALGORITHMS)
        V.text("env_id", self.env_id)
        V.probability("gamma", self.gamma)
        V.probability("gae_lambda", self.gae_lambda)
        V.number("clip_coef", self.clip_coef, 0.0, 1.0, low_open=True)
        for name in ("learning_rate", "max_grad_norm", "adam_eps"):
            V.positive(name, getattr(self, name))
        for name in ("ent_coef", "vf_coef"):
            V.number(name, getattr(self, name), 0.0)
        if self.target_kl is not None:
            V.positive("target_kl", self.target_kl)
        if self.stop_at_return is not None:
            V.number("stop_at_return", self.stop_at_return)
        V.integer("seed", self.seed, low=0)
        for name in ("anneal_lr", "norm_adv", "anneal_clip", "clip_vloss", "bootstrap_truncated"):
            V.boolean(name, getattr(self, name))
        for name in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches", "torch_threads"):
            V.integer(name, getattr(self, name), low=1)
        if (self.num_envs * self.num_steps) < self.num_minibatches:
            raise ValueError(
                f"num_minibatches ({self.num_minibatches}) must not exceed the batch size "
                f"num_envs*num_steps ({self.num_envs * self.num_steps})"
            )
        V.integer("eval_every", self.eval_every, low=0)
        V.integer("eval_episodes", self.eval_episodes, low=1)


TASK_PPO_CONFIG = PPOConfig(
    env_id="FixedHorizonCartPole-v0",  # rlhf_tutorial.envs.ENV_ID, the task of Parts 2-3 (registered on import)
    total_timesteps=100_000,
    num_steps=64,  # batch 8 x 64 = 512 steps (CartPole-v1's 256 is noisier here)
    num_minibatches=4,  # 4 minibatches of 128 ...
    update_epochs=10,  # ... for 10 epochs (CartPole-v1: 1 x 20), i.e. 40 smaller Adam steps
    gamma=0.99,  # 200-step episodes that never terminate: look further ahead than 0.98
    gae_lambda=0.95,
    ent_coef=0.01,  # without it PPO can collapse to "always push one way"
    eval_every=10_000,
    eval_episodes=10,
)
"""PPO settings that learn the course task (:mod:`rlhf_tutorial.envs`) with its true reward in 100k steps.

Notebooks 05-06. Kept with the algorithm, as rl-zoo keeps tuned hyperparameters per env, so the
task knows no algorithm. Copy with ``dataclasses.replace(TASK_PPO_CONFIG, seed=1)``; measured
returns per seed, and why CartPole-v1's defaults were changed, are in ``benchmarks/README.md``.
"""


# --------------------------------------------------------------------------- losses
def normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Whiten to mean 0, std 1 (advantage normalisation); a single element is returned centred (notebook 03)."""
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def ppo_policy_loss(new_logp: torch.Tensor, old_logp: torch.Tensor, advantages: torch.Tensor, clip_coef: float):
    r"""PPO's clipped surrogate, returned as a loss to minimise, with diagnostics.

    .. math::
        \rho_t = \frac{\pi_\phi(a_t|s_t)}{\pi_{\phi_{old}}(a_t|s_t)}, \qquad
        L^{CLIP} = -\mathbb{E}_t\left[\min\left(\rho_t A_t,\ \mathrm{clip}(\rho_t, 1-\epsilon, 1+\epsilon) A_t\right)\right]

    Returns ``(loss, stats)`` where ``stats`` has ``approx_kl`` (the low-variance estimator
    E[(ρ-1) - log ρ]), ``clipfrac`` (share of samples whose ratio was clipped) and ``ratio`` (mean ρ).
    Notebook 03.
    """
    V.same_shape(new_logp=new_logp, old_logp=old_logp, advantages=advantages)
    for name, x in (("new_logp", new_logp), ("old_logp", old_logp), ("advantages", advantages)):
        V.check_finite(name, x)
    V.probability("clip_coef", clip_coef)
    log_ratio = new_logp - old_logp
    ratio = log_ratio.exp()
    unclipped = ratio * advantages
    clipped = torch.clamp(ratio, 1.0 - clip_coef, 1.0 + clip_coef) * advantages
    loss = -torch.min(unclipped, clipped).mean()
    with torch.no_grad():
        stats = {
            "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
            "clipfrac": float(((ratio - 1.0).abs() > clip_coef).float().mean()),
            "ratio": float(ratio.mean()),
        }
    return loss, stats


def ppo_value_loss(new_values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                   clip_coef: float | None = None) -> torch.Tensor:
    r"""Value loss :math:`\tfrac12\mathbb{E}[(V_\phi(s_t) - \hat R_t)^2]`, optionally clipped.

    With ``clip_coef`` the new value may move at most ε from the old one, and the larger of the
    clipped and unclipped errors is used (PPO's value clipping). Notebook 03.
    """
    V.same_shape(new_values=new_values, old_values=old_values, returns=returns)
    for name, x in (("new_values", new_values), ("old_values", old_values), ("returns", returns)):
        V.check_finite(name, x)
    if clip_coef is not None:
        V.number("clip_coef", clip_coef, 0.0)
    unclipped = (new_values - returns) ** 2
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    v_clipped = old_values + torch.clamp(new_values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (v_clipped - returns) ** 2).mean()


def a2c_loss(logp: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor, returns: torch.Tensor,
             entropy: torch.Tensor, vf_coef: float = 0.5, ent_coef: float = 0.0):
    r"""The advantage actor-critic loss: :math:`-\mathbb{E}[\log\pi A] + c_v \tfrac12\mathbb{E}[(V-\hat R)^2] - c_e \mathbb{E}[H]`.

    ``advantages`` are treated as constants (detached). Returns ``(loss, stats)``. Notebook 03.
    """
    V.same_shape(logp=logp, advantages=advantages, values=values, returns=returns, entropy=entropy)
    for name, x in (("logp", logp), ("advantages", advantages), ("returns", returns)):
        V.check_finite(name, x)
    V.number("vf_coef", vf_coef, 0.0)
    V.number("ent_coef", ent_coef, 0.0)
    pg = -(logp * advantages.detach()).mean()
    v = 0.5 * ((values - returns) ** 2).mean()
    ent = entropy.mean()
    loss = pg + vf_coef * v - ent_coef * ent
    return loss, {"policy_loss": pg.item(), "value_loss": v.item(), "entropy": ent.item()}


def rollout_to_batch(ro: Rollout, gamma: float, gae_lambda: float, bootstrap_truncated: bool = True) -> dict:
    """GAE advantages and value targets for a :class:`~rlhf_tutorial.rl.Rollout`, flattened to 1-D.

    Notebook 03. Auto-reset steps (``valid == False``) are dropped. With
    ``bootstrap_truncated=False`` a time-limit truncation is treated like a termination (the
    common bug the notebook demonstrates). Returns a dict of tensors: ``obs``, ``actions``,
    ``logprobs``, ``values``, ``advantages``, ``returns``.
    """
    term = ro.terminated if bootstrap_truncated else torch.clamp(ro.terminated + ro.truncated, max=1.0)
    adv, returns = compute_gae(ro.rewards, ro.values, ro.next_values, term, ro.truncated, gamma, gae_lambda)
    m = ro.valid.reshape(-1)
    return {
        "obs": ro.obs.reshape((-1,) + ro.obs.shape[2:])[m],
        "actions": ro.actions.reshape(-1)[m],
        "logprobs": ro.logprobs.reshape(-1)[m],
        "values": ro.values.reshape(-1)[m],
        "advantages": adv.reshape(-1)[m],
        "returns": returns.reshape(-1)[m],
    }


def ppo_update(agent: ActorCritic, optimizer: torch.optim.Optimizer, batch: dict, cfg: PPOConfig,
               clip_coef: float | None = None) -> dict:
    """One PPO (or A2C) update on a batch from :func:`rollout_to_batch`; returns mean diagnostics.

    Notebook 03. PPO: ``cfg.update_epochs`` passes over the batch in ``cfg.num_minibatches``
    shuffled minibatches (``torch.randperm``, so seed torch for a reproducible update); each
    minibatch whitens its advantages, adds the clipped surrogate, the (optionally clipped) value
    loss and the entropy bonus, clips the global gradient norm and takes an Adam step. Stops
    early once ``approx_kl > cfg.target_kl`` when that is set. A2C: one plain gradient step on the
    whole batch.
    """
    clip = cfg.clip_coef if clip_coef is None else clip_coef
    epochs = cfg.update_epochs if cfg.algo == "ppo" else 1
    minibatches = cfg.num_minibatches if cfg.algo == "ppo" else 1
    n = batch["obs"].shape[0]
    if n == 0:
        raise ValueError("batch is empty: the rollout had no valid steps")
    mb_size = max(1, n // minibatches)
    totals = {"approx_kl": 0.0, "clipfrac": 0.0, "policy_loss": 0.0, "value_loss": 0.0, "entropy": 0.0, "ratio": 0.0}
    count = 0
    for _ in range(epochs):
        perm = torch.randperm(n)
        for start in range(0, n - mb_size + 1, mb_size):
            idx = perm[start:start + mb_size]
            new_logp, entropy, new_v = agent.evaluate(batch["obs"][idx], batch["actions"][idx])
            mb_adv = normalize(batch["advantages"][idx]) if cfg.norm_adv else batch["advantages"][idx]
            if cfg.algo == "ppo":
                pg_loss, st = ppo_policy_loss(new_logp, batch["logprobs"][idx], mb_adv, clip)
                v_loss = ppo_value_loss(new_v, batch["values"][idx], batch["returns"][idx],
                                        clip if cfg.clip_vloss else None)
                ent = entropy.mean()
                loss = pg_loss + cfg.vf_coef * v_loss - cfg.ent_coef * ent
                st.update(policy_loss=pg_loss.item(), value_loss=v_loss.item(), entropy=ent.item())
            else:
                loss, st = a2c_loss(new_logp, mb_adv, new_v, batch["returns"][idx], entropy, cfg.vf_coef, cfg.ent_coef)
                st.update(approx_kl=0.0, clipfrac=0.0, ratio=1.0)
            V.check_finite_loss(loss, count, "PPO loss (policy + value - entropy)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.parameters(), cfg.max_grad_norm)
            optimizer.step()
            for k in totals:
                totals[k] += st[k]
            count += 1
            if cfg.target_kl is not None and st["approx_kl"] > cfg.target_kl:
                return {k: v / count for k, v in totals.items()}
    return {k: v / count for k, v in totals.items()}


# --------------------------------------------------------------------------- training loop
_PPO_HISTORY = ("global_step", "approx_kl", "clipfrac", "explained_variance", "policy_loss", "value_loss",
                "entropy", "lr", "clip_coef", "train_seconds", "episode_step", "episode_return",
                "episode_true_return", "eval_step", "eval_return", "eval_train_seconds")
_CALLBACK_KEYS = ("global_step", "approx_kl", "clipfrac", "explained_variance", "policy_loss", "value_loss",
                  "entropy", "lr")


def _training_envs(cfg: PPOConfig, envs):
    """The vector env to train in, and how to build one for evaluation (None: ``config.env_id``)."""
    if envs is None:
        return make_vec_env(cfg.env_id, cfg.num_envs, **cfg.env_kwargs), None
    if callable(envs) and not hasattr(envs, "step"):
        make = envs
        envs = make(cfg.num_envs)
    else:
        make = None
    if not hasattr(envs, "num_envs"):
        raise TypeError(f"envs must be a vector env or a callable n -> vector env, got {type(envs).__name__}")
    if envs.num_envs != cfg.num_envs:
        raise ValueError(f"envs has {envs.num_envs} copies but config.num_envs is {cfg.num_envs}")
    return envs, make


def _ppo_iteration(cfg: PPOConfig, agent, optimizer, collector, hist: dict) -> None:
    """One iteration: anneal, 1) collect a rollout, 2) GAE, 3) flatten, 4) PPO update, 5) log."""
    frac = 1.0 - collector.global_step / cfg.total_timesteps  # linear annealing schedule
    lr = cfg.learning_rate * frac if cfg.anneal_lr else cfg.learning_rate
    clip = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
    for g in optimizer.param_groups:
        g["lr"] = lr
    ro = collector.collect(agent, cfg.num_steps)
    batch = rollout_to_batch(ro, cfg.gamma, cfg.gae_lambda, cfg.bootstrap_truncated)
    stats = ppo_update(agent, optimizer, batch, cfg, clip)
    hist["global_step"].append(collector.global_step)
    for k in ("approx_kl", "clipfrac", "policy_loss", "value_loss", "entropy"):
        hist[k].append(stats[k])
    hist["explained_variance"].append(explained_variance(batch["values"], batch["returns"]))
    hist["lr"].append(lr)
    hist["clip_coef"].append(clip)
    hist["episode_return"] += ro.episode_returns
    hist["episode_true_return"] += ro.episode_true_returns
    hist["episode_step"] += [collector.global_step] * len(ro.episode_returns)


def _ppo_evaluate(cfg: PPOConfig, agent, make_envs) -> float:
    """Mean TRUE return of the greedy policy: in ``make_envs(eval_episodes)`` (the training wrappers) if given."""
    return float(evaluate_policy(lambda o: agent.act(o, deterministic=True), cfg.env_id, cfg.eval_episodes,
                                 seed=10_000 + cfg.seed, env_kwargs=cfg.env_kwargs,
                                 envs=None if make_envs is None else make_envs(cfg.eval_episodes)).mean())


def train_ppo(config: PPOConfig | None = None, callback: Callable[[dict], bool | None] | None = None,
              progress: bool = True, agent: ActorCritic | None = None, envs=None):
    """Train an :class:`~rlhf_tutorial.rl.ActorCritic` with PPO (or A2C); return ``(agent, history)``.

    Notebook 03. ``history`` is a dict of lists: per update ``global_step``, ``approx_kl``,
    ``clipfrac``, ``explained_variance``, ``policy_loss``, ``value_loss``, ``entropy``, ``lr``,
    ``train_seconds`` (wall time excluding evaluation); per finished episode ``episode_step`` and
    ``episode_return``; per evaluation ``eval_step``, ``eval_return`` (mean) and
    ``eval_train_seconds``. ``callback(stats)`` (the trainers' contract, docs/DESIGN.md) receives the latest
    update's stats (with ``global_step``) after every update; returning True stops training.

    ``envs`` (notebooks 05-06): the env to train *and evaluate* in instead of
    ``make_vec_env(config.env_id, n)``, as a callable ``n -> vector env`` of ``n`` copies, e.g.
    ``lambda n: LearnedRewardVectorWrapper(make_vec_env(ENV_ID, n), net, norm)``
    (:class:`rlhf_tutorial.rlhf.LearnedRewardVectorWrapper`, a learned reward). It is called with
    ``config.num_envs`` for training and ``config.eval_episodes`` for each evaluation, so wrappers
    (a learned reward, observation normalization) act end to end; ``eval_return`` is the *true*
    return when the env reports ``info["true_reward"]``, and ``episode_true_return`` then holds the
    true return of each training episode. A ready vector env is accepted too: it is trained in,
    and evaluation then builds ``config.env_id``. ``train_ppo`` closes the envs.
    """
    cfg = PPOConfig() if config is None else config
    cfg.validate()
    V.callable_("callback", callback, allow_none=True)
    torch.set_num_threads(resolve_threads(cfg.torch_threads))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    if callback is None and agent is None:  # a fresh run, nothing outside it: may be recorded/reused
        return reuse_run("ppo", (cfg, envs), lambda: _train_ppo(cfg, None, progress, None, envs),
                         seeded=("torch", "numpy"))
    return _train_ppo(cfg, callback, progress, agent, envs)


def _train_ppo(cfg: PPOConfig, callback, progress: bool, agent, envs):
    """The body of :func:`train_ppo` (which may instead reuse a recorded run: :func:`rlhf_tutorial.cache.reuse_run`)."""
    envs, make_envs = _training_envs(cfg, envs)
    n_actions = require_discrete(envs.single_action_space, "train_ppo")
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    if agent is None:
        agent = ActorCritic(obs_dim, n_actions, cfg.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=cfg.learning_rate, eps=cfg.adam_eps, fused=True)
    collector = RolloutCollector(envs, seed=cfg.seed)
    hist: dict = {k: [] for k in _PPO_HISTORY}
    hist["config"] = asdict(cfg)
    train_seconds, next_eval = 0.0, cfg.eval_every
    bar = progress_bar(total=cfg.total_timesteps, desc=f"{cfg.algo.upper()} {cfg.env_id}", disable=not progress)
    while collector.global_step < cfg.total_timesteps:
        t0 = time.perf_counter()
        _ppo_iteration(cfg, agent, optimizer, collector, hist)
        train_seconds += time.perf_counter() - t0
        hist["train_seconds"].append(train_seconds)
        step = collector.global_step
        bar.update(step - bar.n)
        if callback is not None and callback({k: hist[k][-1] for k in _CALLBACK_KEYS}):
            break
        if cfg.eval_every and step >= next_eval:
            next_eval += cfg.eval_every
            mean = _ppo_evaluate(cfg, agent, make_envs)
            hist["eval_step"].append(step)
            hist["eval_return"].append(mean)
            hist["eval_train_seconds"].append(train_seconds)
            bar.set_postfix(eval=f"{mean:.0f}")
            if cfg.stop_at_return is not None and mean >= cfg.stop_at_return:
                break
    bar.close()
    envs.close()
    return agent, hist
