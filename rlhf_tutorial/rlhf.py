r"""RLHF on Gymnasium: the online preference loop of Christiano et al. (2017) (notebook 06).

The seed's §3.3.3 loop, with the reward learned *while* the policy learns:

1. collect rollouts with the current policy π_φ (PPO on the current learned reward);
2. cut the finished episodes into segments τ of ``segment_length`` steps;
3. choose which pairs (τ1, τ2) to ask about: those an **ensemble** of reward nets disagrees on
   most (:func:`select_queries`, ``method="disagreement"``), or random pairs (the ablation);
4. ask the (synthetic) human, :class:`~rlhf_tutorial.feedback.ComparisonLabeler` with ε = 10 %
   random answers;
5. refit the ensemble on *all* labels so far (:meth:`RewardEnsemble.fit`: every member on its
   own bootstrap resample, early stopping on a held-out validation set), then normalize each
   member (mean 0, std 1 on the labelled segments);
6. continue PPO on the normalized ensemble-mean reward r̂(s_t, a_t) (:class:`EnsembleRewardVectorWrapper`).

Labels are asked for on a schedule that asks more early, when the reward is most wrong: a share
``initial_label_fraction`` on the untrained policy's behaviour, the rest over ``label_phases``
phases with weights ∝ T₀ / (T₀ + t) (Christiano et al.'s decaying label rate).

:func:`run_preference_loop` keeps one PPO agent and one optimizer across phases; only the
reward changes. Everything is in :class:`PreferenceLoopConfig`.

**Robustness.** Without a safeguard about one run in six failed, always the same way: early
on, PPO converged on the reward learned from the untrained policy's segments to a one-action
policy ("always push one way", true return ~17), whose segments are all equally bad, so the
comparisons between them taught nothing that pulled it out (seed 1, 100k steps: 61.3 with 250
active queries, 94.3 with 500 random ones; true-reward PPO 198.5). Measured on those two runs:
re-initializing the critic after each refit (25.0 at 30k steps) or normalizing the members on
the recent rollouts (18.4 at 30k) did not help; a pessimistic reward mean − 1·std over 5
members fixed the random-query run (198.0) but not the other (90.8); **restarting PPO** when,
after a refit, the current ensemble rates the policy's fresh rollouts more than
``restart_margin`` = 0.2 (per step, normalized units) below the untrained policy's
(``restart_margin``, at most ``max_restarts`` = 2 times; every label is kept) brought the
active-query run to 186.2 and the random-query one to 143.7. It is the default. With it, the
defaults (500 active comparisons, ε = 10 %, 100k steps) reached 193.9 / 192.2 / 197.4 / 199.2 /
199.4 for seeds 0-4, 96.8-99.9 % of true-reward PPO (seed 1 restarted twice); more in
benchmarks/README.md (``benchmarks/preference_rl.py``).

Options beyond the paper's loop: ``uncertainty_penalty`` (pessimism), ``feedback_mix`` (ratings
and comments as well as comparisons, with the mixed loss of notebook 05), ``initial_labels``
(a person's comparisons from the widget of notebook 04 as the first labels).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from . import envs as task_envs
from .feedback import (
    ComparisonDataset,
    ComparisonLabeler,
    LanguageLabeler,
    ScoreLabeler,
    Segment,
    cut_segments,
)
from .ppo import PPOConfig, ppo_update, rollout_to_batch
from .reward_model import REDUCTIONS, RewardNet, compare_loss, spearman
from .reward_model import _check_segment_list as _check_segments
from .rl import ActorCritic, RolloutCollector, evaluate_policy, make_vec_env, require_discrete
from .utils import progress_bar

__all__ = [
    "QUERY_METHODS",
    "RewardEnsemble",
    "select_queries",
    "EnsembleRewardVectorWrapper",
    "PreferenceLoopConfig",
    "label_schedule",
    "run_preference_loop",
]

QUERY_METHODS = ("disagreement", "random")


def _check_pos_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return int(value)


def _check_fraction(name: str, value, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if not (0.0 <= v <= 1.0) or (low_open and v == 0.0) or (high_open and v == 1.0):
        raise ValueError(f"{name} must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}, got {value!r}")
    return v


def _stack_segments(segments: Sequence[Segment]) -> tuple[torch.Tensor, torch.Tensor]:
    return (torch.as_tensor(np.stack([s.obs for s in segments])),
            torch.as_tensor(np.stack([s.actions for s in segments])))


# --------------------------------------------------------------------------- the ensemble
class RewardEnsemble:
    """K reward nets r̂_θ1 .. r̂_θK fitted on bootstrap resamples of the same labels (notebook 06).

    Their *mean* (each member normalized first) is the reward PPO optimizes; their *disagreement*
    on a pair, the standard deviation over members of the predicted preference
    P_k(τ1 ≻ τ2) = σ(r̂_k(τ1) − r̂_k(τ2)), says where a label would teach the most
    (:func:`select_queries`). r̂_k(τ) is the mean (``reduce="mean"``, the package default) or
    the sum of r̂_k over the segment, as in :func:`rlhf_tutorial.reward_model.compare_loss`.

    ``members`` is a non-empty list of :class:`~rlhf_tutorial.reward_model.RewardNet` with the
    same ``obs_dim`` and ``n_actions``; :meth:`for_env` builds them. Each member has a
    normalizer (``means``, ``stds``) set by :meth:`fit_normalizers`; until then it is the identity.
    """

    def __init__(self, members: Sequence[RewardNet], reduce: str = "mean"):
        if isinstance(members, nn.Module) or not isinstance(members, Sequence):
            raise TypeError(f"members must be a list of RewardNet, got {type(members).__name__}")
        if len(members) < 1:
            raise ValueError(f"an ensemble needs at least 1 member (ensemble size >= 1), got {len(members)}")
        for i, m in enumerate(members):
            if not isinstance(m, RewardNet):
                raise TypeError(f"members[{i}] must be a RewardNet, got {type(m).__name__}")
            if (m.obs_dim, m.n_actions, m.use_action) != (members[0].obs_dim, members[0].n_actions,
                                                         members[0].use_action):
                raise ValueError(f"members[{i}] takes obs_dim={m.obs_dim}, n_actions={m.n_actions}, "
                                 f"use_action={m.use_action}; members[0] takes obs_dim={members[0].obs_dim}, "
                                 f"n_actions={members[0].n_actions}, use_action={members[0].use_action}")
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.members = list(members)
        self.reduce = reduce
        self.means = np.zeros(len(members))
        self.stds = np.ones(len(members))
        for m in self.members:
            m.eval()

    @classmethod
    def for_env(cls, env, size: int = 3, hidden: Sequence[int] = (64, 64), seed: int = 0,
                reduce: str = "mean", **kwargs) -> RewardEnsemble:
        """``size`` nets sized for ``env`` (:meth:`RewardNet.for_env`), initialized with seeds ``seed``, ``seed+1``, ..."""
        size = _check_pos_int("size (ensemble size)", size)
        seed = _check_pos_int("seed", seed, 0)
        return cls([RewardNet.for_env(env, hidden=hidden, seed=seed + k, **kwargs) for k in range(size)], reduce)

    def __len__(self) -> int:
        return len(self.members)

    def __repr__(self) -> str:
        m = self.members[0]
        return f"RewardEnsemble({len(self)} x RewardNet(obs_dim={m.obs_dim}, hidden={m.hidden}), reduce={self.reduce!r})"

    @property
    def obs_dim(self) -> int:
        return self.members[0].obs_dim

    def check_env(self, env) -> None:
        """Raise ``ValueError`` unless the members' inputs fit ``env`` (a Gymnasium env or vector env)."""
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        n_obs = int(np.prod(obs_space.shape))
        m = self.members[0]
        if n_obs != m.obs_dim:
            raise ValueError(f"the env's observations have {n_obs} numbers but the reward nets expect "
                             f"obs_dim={m.obs_dim}: build the ensemble with RewardEnsemble.for_env(env)")
        if m.use_action and not (isinstance(act_space, gym.spaces.Discrete) and int(act_space.n) == m.n_actions):
            raise ValueError(f"the reward nets expect Discrete({m.n_actions}) actions, the env has {act_space}")

    # ---- predictions
    @torch.no_grad()
    def predict(self, obs, actions=None, normalized: bool = True) -> np.ndarray:
        """r̂_k(s, a) of every member, shape ``(K,) + obs.shape[:-1]`` (normalized unless told)."""
        out = np.stack([m.predict(obs, actions) for m in self.members]).astype(np.float64)
        if normalized:
            shape = (-1,) + (1,) * (out.ndim - 1)
            out = (out - self.means.reshape(shape)) / self.stds.reshape(shape)
        return out

    def mean(self, obs, actions=None) -> np.ndarray:
        """The ensemble's reward: the mean over members of the normalized r̂_k(s, a)."""
        return self.predict(obs, actions).mean(0)

    def std(self, obs, actions=None) -> np.ndarray:
        """Standard deviation over members of the normalized r̂_k(s, a) (0 for one member)."""
        return self.predict(obs, actions).std(0)

    def reward(self, obs, actions=None, uncertainty_penalty: float = 0.0) -> np.ndarray:
        """The reward PPO gets: mean − ``uncertainty_penalty`` · std over the normalized members (notebook 06).

        With a penalty β > 0 the reward is pessimistic where the members disagree, i.e. off the
        data the labels covered, which is where a policy would otherwise find states r̂ overrates.
        """
        z = self.predict(obs, actions)
        return z.mean(0) - float(uncertainty_penalty) * z.std(0) if uncertainty_penalty else z.mean(0)

    @torch.no_grad()
    def segment_returns(self, segments: Sequence[Segment], normalized: bool = False) -> np.ndarray:
        """r̂_k(τ) per member and segment, shape ``(K, N)`` (mean or sum over steps, ``self.reduce``)."""
        segments = _check_segments("segments", segments)
        out = np.empty((len(self), len(segments)))
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(segments):
            by_len.setdefault(len(s), []).append(i)
        for idx in by_len.values():
            obs, act = _stack_segments([segments[i] for i in idx])
            r = self.predict(obs, act, normalized=normalized)  # (K, n, L)
            out[:, idx] = r.mean(-1) if self.reduce == "mean" else r.sum(-1)
        return out

    def preference_probabilities(self, segments_a: Sequence[Segment], segments_b: Sequence[Segment]) -> np.ndarray:
        """P_k(τ1 ≻ τ2) = σ(r̂_k(τ1) − r̂_k(τ2)) per member and pair, shape ``(K, N)`` (raw r̂, as trained)."""
        a, b = _check_segments("segments_a", segments_a), _check_segments("segments_b", segments_b)
        if len(a) != len(b):
            raise ValueError(f"segments_a and segments_b must have the same length, got {len(a)} and {len(b)}")
        diff = self.segment_returns(a) - self.segment_returns(b)
        return 1.0 / (1.0 + np.exp(-np.clip(diff, -50, 50)))

    def disagreement(self, segments_a: Sequence[Segment], segments_b: Sequence[Segment]) -> np.ndarray:
        """Std over members of P_k(τ1 ≻ τ2), one value per pair (0 for a one-member ensemble)."""
        return self.preference_probabilities(segments_a, segments_b).std(0)

    # ---- fitting
    def fit_normalizers(self, segments: Sequence[Segment]) -> None:
        """Set each member's mean and std of r̂ per step over every step of ``segments`` (reference data)."""
        segments = _check_segments("segments", segments)
        obs = torch.as_tensor(np.concatenate([s.obs for s in segments]))
        act = torch.as_tensor(np.concatenate([s.actions for s in segments]))
        raw = self.predict(obs, act, normalized=False)
        self.means = raw.mean(1)
        self.stds = np.maximum(raw.std(1), 1e-6)

    def fit(self, train: ComparisonDataset, val: ComparisonDataset | None = None, *, epochs: int = 50,
            batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.0, patience: int | None = 5,
            bootstrap: bool = True, seed: int = 0, scored: tuple | None = None,
            score_weight: float = 1.0) -> list[dict]:
        """Fit every member with Adam on L_compare; returns one history dict per member (notebook 06).

        Member k trains on its own bootstrap resample of ``train`` (n pairs drawn with
        replacement; ``bootstrap=False`` uses ``train`` as it is), so members differ where the
        labels leave the reward undetermined. With ``val`` (labels the members never train on)
        each member stops after ``patience`` epochs without a better validation loss and keeps
        its best weights. Members keep training from their current weights (warm start), which
        is what the online loop wants between phases.

        ``scored`` (optional): ``(segments, targets)``, segments with a score y ∈ [0, 1] (a rating,
        or a comment turned into a score by a language model). Each step then adds
        ``score_weight`` · L_score on the next minibatch of them (cycling), i.e. the seed's mixed
        loss λ₁ L_score + λ₂ L_compare with λ₂ = 1 (notebook 05's ``mixed_loss``).
        """
        if not isinstance(train, ComparisonDataset):
            raise TypeError(f"train must be a ComparisonDataset, got {type(train).__name__}")
        if val is not None and not isinstance(val, ComparisonDataset):
            raise TypeError(f"val must be a ComparisonDataset or None, got {type(val).__name__}")
        epochs, batch_size = _check_pos_int("epochs", epochs), _check_pos_int("batch_size", batch_size)
        if patience is not None:
            patience = _check_pos_int("patience", patience)
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        t = train.tensors()
        vt = val.tensors() if val is not None else None
        n = len(train)
        st = None
        if scored is not None:
            if not (isinstance(scored, (tuple, list)) and len(scored) == 2):
                raise TypeError("scored must be a pair (segments, targets)")
            segs = _check_segments("scored segments", scored[0])
            y = np.asarray(scored[1], dtype=np.float32)
            if y.shape != (len(segs),) or not (np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()):
                raise ValueError(f"scored targets must be {len(segs)} numbers in [0, 1], got shape {y.shape}")
            obs_s, act_s = _stack_segments(segs)
            st = {"obs": obs_s, "actions": act_s, "y": torch.as_tensor(y)}
        rng = np.random.default_rng(_check_pos_int("seed", seed, 0))
        histories = []
        for net in self.members:
            idx = torch.as_tensor(rng.integers(0, n, n) if bootstrap else np.arange(n))
            data = {key: v[idx] for key, v in t.items()}
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
            hist: dict = {"train_loss": [], "val_loss": [], "best_epoch": -1}
            best, best_state, since = math.inf, None, 0
            if st is not None:
                s_idx = torch.as_tensor(rng.integers(0, len(st["y"]), len(st["y"])) if bootstrap
                                        else np.arange(len(st["y"])))
                sdata = {key: v[s_idx] for key, v in st.items()}
                s_perm, s_pos = torch.randperm(len(s_idx), generator=gen), 0
            for epoch in range(epochs):
                net.train()
                perm = torch.randperm(n, generator=gen)
                total = 0.0
                for s in range(0, n, batch_size):
                    b = perm[s:s + batch_size]
                    loss = compare_loss(net, data["obs_a"][b], data["actions_a"][b], data["obs_b"][b],
                                        data["actions_b"][b], data["labels"][b], self.reduce)
                    if st is not None:
                        if s_pos >= len(s_perm):
                            s_perm, s_pos = torch.randperm(len(s_idx), generator=gen), 0
                        sb = s_perm[s_pos:s_pos + batch_size]
                        s_pos += batch_size
                        pred = net(sdata["obs"][sb], sdata["actions"][sb]).mean(-1)
                        loss = loss + score_weight * ((pred - sdata["y"][sb]) ** 2).mean()
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(b)
                hist["train_loss"].append(total / n)
                if vt is not None:
                    v = self._loss(net, vt)
                    hist["val_loss"].append(v)
                    if v < best:
                        best, best_state, since, hist["best_epoch"] = v, copy.deepcopy(net.state_dict()), 0, epoch
                    else:
                        since += 1
                        if patience is not None and since >= patience:
                            break
            if best_state is not None:
                net.load_state_dict(best_state)
            net.eval()
            hist["epochs_run"] = len(hist["train_loss"])
            histories.append(hist)
        return histories

    @torch.no_grad()
    def _loss(self, net: RewardNet, t: dict) -> float:
        net.eval()
        return float(compare_loss(net, t["obs_a"], t["actions_a"], t["obs_b"], t["actions_b"], t["labels"],
                                  self.reduce))


# --------------------------------------------------------------------------- choosing queries
def select_queries(ensemble: RewardEnsemble, candidate_pairs: Sequence[tuple[Segment, Segment]], n: int,
                   method: str = "disagreement", seed: int | None = 0) -> list[int]:
    """Indices of the ``n`` candidate pairs to ask the human about (notebook 06).

    ``method="disagreement"`` (Christiano et al.'s active queries): the pairs with the largest
    :meth:`RewardEnsemble.disagreement`, most uncertain first; ``"random"`` (the ablation): ``n``
    distinct pairs drawn uniformly with ``seed``. ``candidate_pairs`` is a list of
    ``(segment_a, segment_b)``; at most ``len(candidate_pairs)`` indices are returned.
    """
    if not isinstance(ensemble, RewardEnsemble):
        raise TypeError(f"ensemble must be a RewardEnsemble, got {type(ensemble).__name__}")
    if method not in QUERY_METHODS:
        raise ValueError(f"method must be one of {QUERY_METHODS}, got {method!r}")
    n = _check_pos_int("n", n)
    if isinstance(candidate_pairs, (str, bytes)) or not isinstance(candidate_pairs, Sequence):
        raise TypeError(f"candidate_pairs must be a list of (segment_a, segment_b), got {type(candidate_pairs).__name__}")
    if len(candidate_pairs) == 0:
        raise ValueError("candidate_pairs is empty")
    for i, p in enumerate(candidate_pairs):
        if not (isinstance(p, (tuple, list)) and len(p) == 2):
            raise TypeError(f"candidate_pairs[{i}] must be a pair (segment_a, segment_b), got {type(p).__name__}")
    n = min(n, len(candidate_pairs))
    if method == "random":
        return [int(i) for i in np.random.default_rng(seed).choice(len(candidate_pairs), n, replace=False)]
    d = ensemble.disagreement([p[0] for p in candidate_pairs], [p[1] for p in candidate_pairs])
    return [int(i) for i in np.argsort(-d, kind="stable")[:n]]


# --------------------------------------------------------------------------- the env wrapper
class EnsembleRewardVectorWrapper(gym.vector.VectorWrapper):
    """A vector env whose reward is the ensemble's normalized mean r̂(s_t, a_t) (notebook 06).

    ``info["true_reward"]`` keeps the env's true reward (so ``RolloutCollector`` and
    ``train_ppo`` report the true return) and ``info["learned_reward"]`` the reward given. With
    Gymnasium's ``NEXT_STEP`` auto-reset (required) the reset step gets reward 0. The wrapper
    also records every finished episode (``obs``, ``actions``, true ``rewards``, as
    :func:`rlhf_tutorial.feedback.rollout_episodes` returns them); :meth:`pop_episodes` hands
    them over for cutting into segments. The ensemble is read at every step, so refitting it
    changes the reward from the next step on. ``uncertainty_penalty`` β > 0 gives PPO the
    pessimistic reward mean − β·std over the members (:meth:`RewardEnsemble.reward`).
    """

    def __init__(self, env: gym.vector.VectorEnv, ensemble: RewardEnsemble, uncertainty_penalty: float = 0.0):
        super().__init__(env)
        if not isinstance(ensemble, RewardEnsemble):
            raise TypeError(f"ensemble must be a RewardEnsemble, got {type(ensemble).__name__}")
        if isinstance(uncertainty_penalty, bool) or not isinstance(uncertainty_penalty, (int, float)) or not (
                math.isfinite(uncertainty_penalty) and uncertainty_penalty >= 0):
            raise ValueError(f"uncertainty_penalty must be a finite number >= 0, got {uncertainty_penalty!r}")
        self.uncertainty_penalty = float(uncertainty_penalty)
        ensemble.check_env(env)
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        if str(getattr(mode, "value", mode)) != gym.vector.AutoresetMode.NEXT_STEP.value:
            raise ValueError(f"EnsembleRewardVectorWrapper needs autoreset_mode NEXT_STEP, got {mode}")
        self.ensemble = ensemble
        self._last_obs, self._prev_done = None, None
        self._bufs: list[dict] = []
        self.finished: list[dict] = []

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last_obs, self._prev_done = obs, np.zeros(self.num_envs, dtype=bool)
        self._bufs = [{"obs": [], "actions": [], "rewards": []} for _ in range(self.num_envs)]
        return obs, info

    def step(self, actions):
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        obs_in = np.asarray(self._last_obs, dtype=np.float32).reshape(self.num_envs, -1)
        acts = np.asarray(actions)
        learned = self.ensemble.reward(obs_in, torch.as_tensor(acts).long(),
                                       self.uncertainty_penalty).astype(np.float32)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info = dict(info)
        true = np.asarray(info.get("true_reward", reward), dtype=np.float32)
        info["true_reward"] = true
        learned = np.where(self._prev_done, np.float32(0.0), learned)
        info["learned_reward"] = learned
        done = np.asarray(terminated) | np.asarray(truncated)
        for i in range(self.num_envs):
            if self._prev_done[i]:  # the auto-reset step: not part of any episode
                continue
            b = self._bufs[i]
            b["obs"].append(obs_in[i])
            b["actions"].append(int(acts[i]))
            b["rewards"].append(float(true[i]))
            if done[i]:
                self.finished.append({"obs": np.stack(b["obs"]), "actions": np.asarray(b["actions"], dtype=np.int64),
                                      "rewards": np.asarray(b["rewards"], dtype=np.float32)})
                self._bufs[i] = {"obs": [], "actions": [], "rewards": []}
        self._last_obs, self._prev_done = obs, done & ~self._prev_done
        return obs, learned, terminated, truncated, info

    def pop_episodes(self) -> list[dict]:
        """The episodes finished since the last call (and forget them)."""
        out, self.finished = self.finished, []
        return out


# --------------------------------------------------------------------------- configuration
def _task_ppo() -> PPOConfig:
    return replace(task_envs.TASK_PPO_CONFIG)


@dataclass
class PreferenceLoopConfig:
    """Every knob of :func:`run_preference_loop` (notebook 06), CleanRL style: one line of help each.

    PPO itself uses ``ppo`` (default: the task's true-reward settings,
    :data:`rlhf_tutorial.envs.TASK_PPO_CONFIG`) with ``env_id``, ``seed`` and ``total_timesteps``
    taken from here, so a comparison with true-reward PPO at the same env steps is one line.
    """

    env_id: str = task_envs.ENV_ID  # the Gymnasium task (its reward is hidden from the learner)
    seed: int = 0  # seeds torch, the envs, the labeler and the query choice
    total_timesteps: int = 100_000  # env steps in all, the initial random-policy steps included
    ppo: PPOConfig = field(default_factory=_task_ppo)  # PPO settings (env_id/seed/total_timesteps overridden)
    label_budget: int = 500  # synthetic comparisons in all
    segment_length: int = 50  # steps per segment τ (Christiano et al.: 25-50 for Atari/MuJoCo)
    epsilon: float = 0.1  # the synthetic human answers at random with this probability
    ensemble_size: int = 3  # reward nets in the ensemble (1: no disagreement, random-like queries)
    query_method: str = "disagreement"  # "disagreement" (active) or "random" (ablation)
    candidate_factor: int = 10  # candidate pairs looked at per query asked
    pool_size: int = 400  # the most recent segments that candidate pairs are drawn from
    initial_steps: int = 3_200  # steps of the untrained policy before the first labels (8 envs: 2 episodes each)
    initial_label_fraction: float = 0.25  # share of the budget asked about the untrained policy's segments
    label_phases: int = 20  # phases after the first that ask labels, one every phase_steps
    phase_steps: int = 2_500  # PPO env steps between two refits (5_000 left seed 1 at 124 of 199)
    label_decay_steps: float = 20_000.0  # T₀: phase weight T₀ / (T₀ + t), so early phases ask more
    val_fraction: float = 0.2  # share of labels held out to stop the reward nets' training
    reward_hidden: tuple = (64, 64)  # hidden sizes of each reward net
    reward_use_action: bool = False  # r̂(s) by default: with r̂(s, a) PPO exploited a learned action bias
    reward_lr: float = 3e-3  # Adam step size of the reward nets
    reward_epochs: int = 40  # max epochs per refit (early stopping on the held-out labels)
    reward_batch_size: int = 32  # pairs per reward-net minibatch
    reward_patience: int = 5  # epochs without a better validation loss before a member stops
    compare_reduce: str = "mean"  # r̂(τ) as the mean (seed, package default) or the sum of r̂ over τ
    eval_every: int = 10_000  # evaluate the TRUE return of the greedy policy every this many steps (0: never)
    eval_episodes: int = 10  # episodes per evaluation
    uncertainty_penalty: float = 0.0  # β: PPO's reward is mean − β·std over the members (pessimism off the data)
    normalize_on: str = "labelled"  # fit each member's mean/std on the "labelled" segments or the "recent" pool
    reset_critic: bool = False  # re-initialize the value head after each refit (its targets came from the old r̂)
    restart_margin: float | None = 0.2  # restart PPO when r̂ rates its rollouts this far (per step) below the initial ones
    max_restarts: int = 2  # at most this many restarts
    feedback_mix: tuple = (0.0, 1.0, 0.0)  # shares of the budget for (scores, comparisons, comments); mixed loss λ = 1

    def validate(self) -> None:
        if not isinstance(self.ppo, PPOConfig):
            raise TypeError(f"ppo must be a PPOConfig, got {type(self.ppo).__name__}")
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id must be a Gymnasium id (a non-empty string), got {self.env_id!r}")
        _check_pos_int("seed", self.seed, 0)
        _check_pos_int("total_timesteps", self.total_timesteps)
        if isinstance(self.label_budget, bool) or not isinstance(self.label_budget, (int, np.integer)):
            raise TypeError(f"label_budget must be an int, got {type(self.label_budget).__name__}")
        if self.label_budget < 1:
            raise ValueError(f"label_budget must be >= 1 (comparisons to ask), got {self.label_budget}")
        _check_pos_int("segment_length", self.segment_length)
        _check_fraction("epsilon", self.epsilon)
        if isinstance(self.ensemble_size, bool) or not isinstance(self.ensemble_size, (int, np.integer)):
            raise TypeError(f"ensemble_size must be an int, got {type(self.ensemble_size).__name__}")
        if self.ensemble_size < 1:
            raise ValueError(f"ensemble_size must be >= 1, got {self.ensemble_size}")
        if self.query_method not in QUERY_METHODS:
            raise ValueError(f"query_method must be one of {QUERY_METHODS}, got {self.query_method!r}")
        for name in ("candidate_factor", "pool_size", "initial_steps", "label_phases", "phase_steps",
                     "reward_epochs", "reward_batch_size", "reward_patience", "eval_episodes"):
            _check_pos_int(name, getattr(self, name))
        _check_pos_int("eval_every", self.eval_every, 0)
        _check_fraction("initial_label_fraction", self.initial_label_fraction)
        _check_fraction("val_fraction", self.val_fraction, high_open=True)
        if not (isinstance(self.label_decay_steps, (int, float)) and self.label_decay_steps > 0):
            raise ValueError(f"label_decay_steps must be a number > 0, got {self.label_decay_steps!r}")
        if not (isinstance(self.reward_lr, (int, float)) and self.reward_lr > 0):
            raise ValueError(f"reward_lr must be a number > 0, got {self.reward_lr!r}")
        if self.compare_reduce not in REDUCTIONS:
            raise ValueError(f"compare_reduce must be one of {REDUCTIONS}, got {self.compare_reduce!r}")
        if isinstance(self.uncertainty_penalty, bool) or not isinstance(self.uncertainty_penalty, (int, float)) \
                or not (math.isfinite(self.uncertainty_penalty) and self.uncertainty_penalty >= 0):
            raise ValueError(f"uncertainty_penalty must be a finite number >= 0, got {self.uncertainty_penalty!r}")
        if self.restart_margin is not None and not (isinstance(self.restart_margin, (int, float)) and
                                                    math.isfinite(self.restart_margin) and self.restart_margin >= 0):
            raise ValueError(f"restart_margin must be None or a finite number >= 0, got {self.restart_margin!r}")
        _check_pos_int("max_restarts", self.max_restarts, 0)
        mix = self.feedback_mix
        if not (isinstance(mix, (tuple, list)) and len(mix) == 3 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in mix)
                and mix[1] > 0):
            raise ValueError(f"feedback_mix must be 3 shares >= 0 (scores, comparisons, comments) with "
                             f"comparisons > 0, got {mix!r}")
        if self.normalize_on not in ("labelled", "recent"):
            raise ValueError(f"normalize_on must be 'labelled' or 'recent', got {self.normalize_on!r}")
        ppo = replace(self.ppo, env_id=self.env_id, seed=self.seed, total_timesteps=self.total_timesteps)
        ppo.validate()
        per_env = self.initial_steps // ppo.num_envs
        if self.segment_length > per_env:
            raise ValueError(f"segment_length={self.segment_length} is longer than the initial rollout of "
                             f"{per_env} steps per env (initial_steps={self.initial_steps} over "
                             f"{ppo.num_envs} envs): no segment could be cut; shorten it or raise initial_steps")
        if self.segment_length > self.phase_steps // ppo.num_envs:
            raise ValueError(f"segment_length={self.segment_length} is longer than a phase's rollout of "
                             f"{self.phase_steps // ppo.num_envs} steps per env; shorten it or raise phase_steps")


def label_schedule(config: PreferenceLoopConfig) -> list[int]:
    """Labels to ask at each phase: index 0 on the untrained policy, then ``label_phases`` more (notebook 06).

    Phase 0 gets ``round(initial_label_fraction · budget)``; phase k ≥ 1 (at step
    t_k = k · phase_steps of PPO) a share of the rest ∝ T₀ / (T₀ + t_k). Rounded so that the
    numbers sum to ``label_budget`` exactly.
    """
    config.validate()
    budget = int(config.label_budget)
    first = int(round(config.initial_label_fraction * budget))
    if config.initial_label_fraction > 0:
        first = max(first, 1)
    rest = budget - first
    t = np.arange(1, config.label_phases + 1) * config.phase_steps
    w = config.label_decay_steps / (config.label_decay_steps + t)
    share = rest * w / w.sum()
    counts = np.floor(share).astype(int)
    for i in np.argsort(-(share - counts), kind="stable")[: rest - counts.sum()]:
        counts[i] += 1
    return [first] + [int(c) for c in counts]


# --------------------------------------------------------------------------- the loop
def _random_pairs(pool: list[Segment], n: int, rng: np.random.Generator) -> list[tuple[Segment, Segment]]:
    m = len(pool)
    if m < 2:
        return []
    i = rng.integers(0, m, n)
    j = (i + rng.integers(1, m, n)) % m
    seen, pairs = set(), []
    for a, b in zip(i.tolist(), j.tolist()):
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            pairs.append((pool[a], pool[b]))
    return pairs


def _reset_critic(agent: ActorCritic, obs_dim: int, n_actions: int, hidden, seed: int) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        fresh = ActorCritic(obs_dim, n_actions, hidden)
    with torch.no_grad():
        agent.critic.load_state_dict(fresh.critic.state_dict())


def _dataset(triples: list) -> ComparisonDataset | None:
    if not triples or all(y == 0.5 for _, _, y in triples):
        return None
    return ComparisonDataset([a for a, _, _ in triples], [b for _, b, _ in triples], [y for _, _, y in triples])


def run_preference_loop(config: PreferenceLoopConfig | None = None, callback: Callable[[dict], None] | None = None,
                        progress: bool = True, ensemble: RewardEnsemble | None = None, scorer=None,
                        initial_labels: ComparisonDataset | None = None):
    """Christiano et al.'s online RLHF loop on a Gymnasium task; returns ``(agent, ensemble, history)``.

    Notebook 06 (the seed's §3.3.3). See the module docstring for the steps and
    :class:`PreferenceLoopConfig` for the settings. ``ensemble`` (optional) is a ready
    :class:`RewardEnsemble`; it must fit the env (else ``ValueError``). With comments in
    ``config.feedback_mix``, ``scorer`` (a :class:`~rlhf_tutorial.language.LanguageScorer`, or any
    ``list[str] -> scores``) turns them into scores. ``initial_labels`` (optional): comparisons a
    person gave beforehand (e.g. with the widget of notebook 04); they join the labels of phase 0
    and count towards the budget (the synthetic human asks only the rest). The default ensemble
    uses r̂(s) (``reward_use_action=False``): on this task the action carries almost no
    information about the reward, and with r̂(s, a) a small bias towards one action, learned
    from a few noisy labels, was the easiest thing for PPO to exploit (seed 1 collapsed to
    "always push one way", true return 18, for the first 30k steps and ended at 79 of 199). ``callback`` receives, after
    every PPO update, a dict with ``global_step``, ``labels`` (asked so far), ``phase``, the PPO
    diagnostics and, after a refit, ``spearman``.

    ``history`` holds lists: per update ``global_step``, ``labels``, ``approx_kl``, ``clipfrac``,
    ``entropy``; per finished training episode ``episode_step`` and ``episode_true_return``
    (the TRUE return); per evaluation ``eval_step``, ``eval_labels``, ``eval_return`` (TRUE return
    of the greedy policy, mean of ``eval_episodes``); per labelling phase ``phase_step``,
    ``phase_labels`` (asked in the phase), ``labels_total``, ``spearman`` (rank correlation of the
    ensemble's Σ r̂ with the true return on that phase's fresh, not yet labelled segments, before
    the refit), ``tie_rate``, ``val_loss`` (mean over members after the refit); and at the end
    ``final_return``, ``labels_used``, ``seconds`` and ``config``.
    """
    cfg = config or PreferenceLoopConfig()
    if not isinstance(cfg, PreferenceLoopConfig):
        raise TypeError(f"config must be a PreferenceLoopConfig, got {type(cfg).__name__}")
    cfg.validate()
    if initial_labels is not None and not isinstance(initial_labels, ComparisonDataset):
        raise TypeError(f"initial_labels must be a ComparisonDataset or None, got {type(initial_labels).__name__}")
    if cfg.feedback_mix[2] > 0 and scorer is None:
        raise ValueError("feedback_mix asks for comments: pass scorer= (e.g. rlhf_tutorial.language.LanguageScorer())")
    ppo = replace(cfg.ppo, env_id=cfg.env_id, seed=cfg.seed, total_timesteps=cfg.total_timesteps)
    t_start = time.perf_counter()
    torch.set_num_threads(ppo.torch_threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    base = make_vec_env(cfg.env_id, ppo.num_envs, **ppo.env_kwargs)
    horizon = getattr(base, "max_episode_steps", None) or getattr(base, "horizon", None)
    if horizon is not None and cfg.segment_length > int(horizon):
        base.close()
        raise ValueError(f"segment_length={cfg.segment_length} is longer than an episode of {cfg.env_id} "
                         f"({horizon} steps)")
    if ensemble is None:
        ensemble = RewardEnsemble.for_env(base, cfg.ensemble_size, cfg.reward_hidden, seed=cfg.seed,
                                          reduce=cfg.compare_reduce, use_action=cfg.reward_use_action)
    elif not isinstance(ensemble, RewardEnsemble):
        base.close()
        raise TypeError(f"ensemble must be a RewardEnsemble or None, got {type(ensemble).__name__}")
    try:
        envs = EnsembleRewardVectorWrapper(base, ensemble, cfg.uncertainty_penalty)
    except ValueError:
        base.close()
        raise
    n_actions = require_discrete(envs.single_action_space, "run_preference_loop")
    obs_dim = int(np.prod(envs.single_observation_space.shape))
    agent = ActorCritic(obs_dim, n_actions, ppo.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)
    collector = RolloutCollector(envs, seed=cfg.seed)
    labeler = ComparisonLabeler(epsilon=cfg.epsilon, seed=cfg.seed)
    score_labeler, speaker = ScoreLabeler(seed=cfg.seed), LanguageLabeler(seed=cfg.seed)
    mix = np.asarray(cfg.feedback_mix, dtype=float) / float(np.sum(cfg.feedback_mix))
    scored: list = []  # (segment, y in [0, 1]) from ratings and from comments
    schedule = label_schedule(cfg)
    if initial_labels is not None:
        given = [(initial_labels.segments_a[i], initial_labels.segments_b[i], float(initial_labels.labels[i]))
                 for i in range(len(initial_labels))]
        for seg in (x for a, b, _ in given for x in (a, b)):
            if len(seg) != cfg.segment_length:
                raise ValueError(f"initial_labels has a segment of {len(seg)} steps; this loop cuts segments of "
                                 f"segment_length={cfg.segment_length}")
        left = max(0, cfg.label_budget - len(given))
        schedule = label_schedule(replace(cfg, label_budget=max(1, left)))
        if left == 0:
            schedule = [0] * len(schedule)

    hist: dict = {k: [] for k in ("global_step", "labels", "approx_kl", "clipfrac", "entropy", "episode_step",
                                  "episode_true_return", "eval_step", "eval_labels", "eval_return", "eval_seconds", "phase_step",
                                  "phase_labels", "labels_total", "spearman", "tie_rate", "val_loss")}
    hist["config"] = asdict(cfg)
    hist["schedule"] = schedule
    train_set: list = []
    val_set: list = []
    pool: list[Segment] = []

    def evaluate() -> float:
        return float(evaluate_policy(lambda o: agent.act(o, deterministic=True), cfg.env_id, cfg.eval_episodes,
                                     seed=10_000 + cfg.seed, env_kwargs=ppo.env_kwargs).mean())

    initial: list[Segment] = []
    restarts: list[int] = []

    def mean_reward(segments: list[Segment]) -> float:
        obs = np.concatenate([s.obs for s in segments])
        act = torch.as_tensor(np.concatenate([s.actions for s in segments]))
        return float(ensemble.reward(obs, act, cfg.uncertainty_penalty).mean())

    def labelling_phase(phase: int) -> dict:
        nonlocal pool
        fresh = [s for ep in envs.pop_episodes()
                 for s in cut_segments(ep, cfg.segment_length, env_id=cfg.env_id, source=f"phase{phase}")]
        out: dict = {"phase": phase}
        if len(fresh) >= 2:
            out["spearman"] = spearman(ensemble.segment_returns(fresh).mean(0), [s.true_return for s in fresh])
        pool = (pool + fresh)[-cfg.pool_size:]
        if phase == 0:
            initial.extend(fresh)
            if initial_labels is not None:
                for a, b, y in given:
                    (val_set if rng.random() < cfg.val_fraction else train_set).append((a, b, y))
        n = schedule[phase]
        n_score, n_text = int(math.floor(mix[0] * n)), int(math.floor(mix[2] * n))  # comparisons keep >= 1
        if n_score + n_text:  # ratings and comments on the segments the members disagree on most
            idx = rng.choice(len(pool), min(len(pool), cfg.candidate_factor * (n_score + n_text)), replace=False)
            spread = ensemble.segment_returns([pool[i] for i in idx], normalized=True).std(0)
            order = idx if phase == 0 else idx[np.argsort(-spread, kind="stable")]
            rated, commented = order[:n_score], order[n_score:n_score + n_text]
            scored.extend((pool[i], score_labeler.label(pool[i])) for i in rated)
            if len(commented):
                texts = [speaker.label(pool[i]) for i in commented]
                ys = np.clip(np.asarray(scorer(texts) if callable(scorer) else scorer.score(texts), float), 0, 1)
                scored.extend((pool[i], float(y)) for i, y in zip(commented, ys))
            n = n - n_score - n_text
        cands = _random_pairs(pool, cfg.candidate_factor * n, rng) if n > 0 else []
        given_now = phase == 0 and initial_labels is not None
        if not cands and not given_now and not n_score + n_text:
            return out
        method = "random" if phase == 0 else cfg.query_method  # untrained nets: disagreement means nothing
        chosen = select_queries(ensemble, cands, n, method, seed=int(rng.integers(2**31))) if cands else []
        for i in chosen:
            a, b = cands[i]
            y = labeler.label(a, b)
            (val_set if rng.random() < cfg.val_fraction else train_set).append((a, b, y))
        tr, va = _dataset(train_set), _dataset(val_set)
        if tr is not None:
            fits = ensemble.fit(tr, va, epochs=cfg.reward_epochs, batch_size=cfg.reward_batch_size, lr=cfg.reward_lr,
                                patience=cfg.reward_patience, seed=int(rng.integers(2**31)),
                                scored=([x for x, _ in scored], [y for _, y in scored]) if scored else None)
            labelled = [s for a, b, _ in train_set + val_set for s in (a, b)]
            ensemble.fit_normalizers(labelled if cfg.normalize_on == "labelled" else pool)
            if cfg.reset_critic and phase > 0:
                _reset_critic(agent, obs_dim, n_actions, ppo.hidden, cfg.seed + phase)
            if (cfg.restart_margin is not None and phase > 0 and len(restarts) < cfg.max_restarts and fresh
                    and initial and mean_reward(fresh) < mean_reward(initial) - cfg.restart_margin):
                # the policy got worse than the untrained one by the *current* r̂: it converged on an
                # old, wrong r̂ and its rollouts no longer teach much. Start PPO afresh.
                with torch.random.fork_rng():
                    torch.manual_seed(cfg.seed + 7919 * (len(restarts) + 1))
                    agent.load_state_dict(ActorCritic(obs_dim, n_actions, ppo.hidden).state_dict())
                optimizer.state.clear()
                restarts.append(collector.global_step)
                out["restart"] = True
            out["val_loss"] = float(np.mean([f["val_loss"][f["best_epoch"]] if f["best_epoch"] >= 0 and
                                             f["val_loss"] else math.nan for f in fits]))
        step = collector.global_step
        hist["phase_step"].append(step)
        hist["phase_labels"].append(len(chosen) + n_score + n_text)
        hist["labels_total"].append(len(train_set) + len(val_set) + len(scored))
        hist["spearman"].append(out.get("spearman", math.nan))
        hist["tie_rate"].append(float(np.mean([y == 0.5 for _, _, y in train_set + val_set])))
        hist["val_loss"].append(out.get("val_loss", math.nan))
        return out

    bar = progress_bar(total=cfg.total_timesteps, desc="RLHF loop", disable=not progress)
    # 0) the untrained policy acts; its segments get the first labels
    while collector.global_step < min(cfg.initial_steps, cfg.total_timesteps):
        ro = collector.collect(agent, min(ppo.num_steps, max(1, (cfg.initial_steps - collector.global_step)
                                                             // ppo.num_envs)))
        hist["episode_true_return"] += ro.episode_true_returns
        hist["episode_step"] += [collector.global_step] * len(ro.episode_true_returns)
    phase = 0
    info = labelling_phase(phase)
    bar.update(collector.global_step - bar.n)
    ppo_start = collector.global_step
    next_phase = ppo_start + cfg.phase_steps
    next_eval = cfg.eval_every
    while collector.global_step < cfg.total_timesteps:
        frac = 1.0 - (collector.global_step - ppo_start) / max(1, cfg.total_timesteps - ppo_start)
        lr = ppo.learning_rate * frac if ppo.anneal_lr else ppo.learning_rate
        clip = ppo.clip_coef * frac if ppo.anneal_clip else ppo.clip_coef
        for g in optimizer.param_groups:
            g["lr"] = lr
        ro = collector.collect(agent, ppo.num_steps)  # 1) rollouts, rewarded by the ensemble
        batch = rollout_to_batch(ro, ppo.gamma, ppo.gae_lambda, ppo.bootstrap_truncated)
        stats = ppo_update(agent, optimizer, batch, ppo, clip)  # 6) PPO on r̂
        step = collector.global_step
        hist["global_step"].append(step)
        hist["labels"].append(len(train_set) + len(val_set) + len(scored))
        for k in ("approx_kl", "clipfrac", "entropy"):
            hist[k].append(stats[k])
        hist["episode_true_return"] += ro.episode_true_returns
        hist["episode_step"] += [step] * len(ro.episode_true_returns)
        info = {}
        if step >= next_phase and phase < cfg.label_phases:  # 2)-5) segments, queries, labels, refit
            phase += 1
            next_phase += cfg.phase_steps
            info = labelling_phase(phase)
        elif step >= next_phase:
            envs.pop_episodes()  # no more labels: forget the episodes
        if cfg.eval_every and step >= next_eval:
            next_eval += cfg.eval_every
            hist["eval_step"].append(step)
            hist["eval_labels"].append(len(train_set) + len(val_set) + len(scored))
            hist["eval_return"].append(evaluate())
            hist["eval_seconds"].append(time.perf_counter() - t_start)
            bar.set_postfix(true_return=f"{hist['eval_return'][-1]:.0f}", labels=hist["labels"][-1])
        bar.update(step - bar.n)
        if callback is not None:
            callback({"global_step": step, "labels": hist["labels"][-1], "phase": phase, **stats, **info})
    bar.close()
    envs.close()
    hist["final_return"] = evaluate()
    hist["labels_used"] = len(train_set) + len(val_set) + len(scored)
    hist["restarts"] = restarts
    hist["seconds"] = time.perf_counter() - t_start
    return agent, ensemble, hist
