r"""RLHF on Gymnasium: the online preference loop of Christiano et al. (2017) (notebook 06).

The seed's §3.3.3 loop, with the reward learned *while* the policy learns. :func:`run_preference_loop`
is these named steps (the functions of the same names below, and written inline in notebook 06):

1. **collect rollouts** with the current policy π_φ in the env whose reward is r̂
   (:class:`LearnedRewardVectorWrapper`);
2. **cut segments**: the finished episodes into segments τ of ``segment_length`` steps;
3. **select queries**: the pairs (τ1, τ2) an **ensemble** of reward nets disagrees on most
   (:func:`select_queries`, ``method="disagreement"``), or random pairs (the ablation);
4. **ask the human**: :class:`~rlhf_tutorial.feedback.ComparisonLabeler` with ε = 10 % random answers;
5. **refit the ensemble** on *all* labels so far (:meth:`RewardEnsemble.fit`: every member on its
   own bootstrap resample, early stopping on held-out labels), then normalize each member;
6. **continue the policy**: PPO updates on the normalized ensemble-mean reward r̂(s_t, a_t);
7. **decide on a restart**: when the current r̂ rates the policy's fresh rollouts more than
   ``restart_margin`` below the untrained policy's, PPO converged on an old, wrong r̂ and starts
   afresh (at most ``max_restarts`` times; every label is kept).

Labels are asked for on a schedule that asks more early, when the reward is most wrong: a share
``initial_label_fraction`` on the untrained policy's behaviour, the rest over ``label_phases``
phases with weights ∝ T₀ / (T₀ + t) (Christiano et al.'s decaying label rate). One PPO agent and
one optimizer persist across phases; only the reward changes. Everything is in
:class:`PreferenceLoopConfig`; why the restart is the default, and every measured run, is in
``benchmarks/README.md``.

Options beyond the paper's loop: ``uncertainty_penalty`` (pessimism), ``feedback_mix`` (ratings
and comments as well as comparisons, with the mixed loss of notebook 05: the seed's naive one, or
with ``mix_weighting="calibrated"`` notebook 05's links and held-out weights), ``initial_labels``
(a person's comparisons from the widget of notebook 04 as the first labels).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, NamedTuple, Sequence

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from . import _validate as V
from . import envs as task_envs
from .cache import reuse_run
from .feedback import (
    ComparisonDataset,
    ComparisonLabeler,
    LanguageLabeler,
    ScoreLabeler,
    Segment,
    cut_segments,
)
from .ppo import TASK_PPO_CONFIG, PPOConfig, ppo_update, rollout_to_batch
from .reward_model import (
    REDUCTIONS,
    REGRESSION_KINDS,
    FeedbackLinks,
    RewardNet,
    RewardNormalizer,
    compare_loss,
    linked_compare_loss,
    linked_regression_loss,
    set_noise_to_residuals,
    spearman,
    uncertainty_weighted_loss,
)
from .rl import ActorCritic, RolloutCollector, evaluate_policy, make_vec_env, require_discrete
from .utils import progress_bar, resolve_threads

__all__ = [
    "QUERY_METHODS",
    "MIX_WEIGHTINGS",
    "RewardEnsemble",
    "select_queries",
    "random_pairs",
    "LearnedRewardVectorWrapper",
    "LearnedRewardEnvs",
    "PreferenceModel",
    "state_segments",
    "PreferenceLoopConfig",
    "label_schedule",
    "run_preference_loop",
]

QUERY_METHODS = ("disagreement", "random")
MIX_WEIGHTINGS = ("naive", "calibrated")
"""How :meth:`RewardEnsemble.fit` mixes ratings and comments with comparisons (notebooks 05-06): the
seed's ``"naive"`` MSE on the rater's scale, or notebook 05's ``"calibrated"`` links and weights."""
HOLDOUT_EVERY = 5
"""The calibrated mix holds out every 5th label of each regression kind to set its σ² (notebook 06)."""


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


def _scored_tensors(scored) -> dict | None:
    if scored is None:
        return None
    if not (isinstance(scored, (tuple, list)) and len(scored) in (2, 3)):
        raise TypeError("scored must be a pair (segments, targets) or a triple (segments, targets, kinds)")
    segs = V.sequence_of("scored segments", scored[0], Segment)
    y = np.asarray(scored[1], dtype=np.float32)
    if y.shape != (len(segs),) or not (np.isfinite(y).all() and (y >= 0).all() and (y <= 1).all()):
        raise ValueError(f"scored targets must be {len(segs)} numbers in [0, 1], got shape {y.shape}")
    obs_s, act_s = _stack_segments(segs)
    return {"obs": obs_s, "actions": act_s, "y": torch.as_tensor(y)}


def _scored_kinds(scored, n: int) -> list[str]:
    """The kind of each scored segment: ``scored[2]`` if given ("score" or "language"), else all "score"."""
    if len(scored) == 2:
        return ["score"] * n
    kinds = scored[2]
    if isinstance(kinds, (str, bytes)) or not isinstance(kinds, Sequence):
        raise TypeError(f"scored kinds must be a list of {REGRESSION_KINDS}, got {type(kinds).__name__}")
    if len(kinds) != n:
        raise ValueError(f"scored kinds must be one per segment ({n}), got {len(kinds)}")
    for i, k in enumerate(kinds):
        V.one_of(f"scored kinds[{i}]", k, REGRESSION_KINDS)
    return list(kinds)


def _split_scored(st: dict, kinds: list[str]) -> tuple[dict, dict]:
    """Per kind, the labels trained on and the held-out ones: every :data:`HOLDOUT_EVERY`-th (5th, 10th, ...).

    The split is by position within the kind, so labels that arrive later (the online loop refits on
    all labels so far) never move a held-out label into training. A kind with fewer than 5 labels has
    none held out.
    """
    train, held = {}, {}
    for k in REGRESSION_KINDS:
        idx = np.flatnonzero(np.asarray(kinds) == k)
        if len(idx) == 0:
            continue
        out = (np.arange(len(idx)) % HOLDOUT_EVERY) == HOLDOUT_EVERY - 1
        train[k] = {key: v[torch.as_tensor(idx[~out])] for key, v in st.items()}
        if out.any():
            held[k] = {key: v[torch.as_tensor(idx[out])] for key, v in st.items()}
    return train, held


class _ScoreBatches:
    """Minibatches of scored segments, cycling: reshuffled with ``gen`` each time they run out."""

    def __init__(self, data: dict, batch_size: int, gen: torch.Generator):
        self.data, self.batch_size, self.gen = data, batch_size, gen
        self.perm, self.pos = torch.randperm(len(data["y"]), generator=gen), 0

    def next(self) -> dict:
        if self.pos >= len(self.perm):
            self.perm, self.pos = torch.randperm(len(self.data["y"]), generator=self.gen), 0
        sb = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return {k: v[sb] for k, v in self.data.items()}


class _FitSettings(NamedTuple):
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    patience: int | None
    bootstrap: bool


def _set_noise(net: RewardNet, links: FeedbackLinks, tensors: dict) -> dict[str, float]:
    """σ_k² := each regression kind's held-out residual (``reward_model.set_noise_to_residuals``)."""
    return set_noise_to_residuals(net, links, {k: (d["obs"], d["actions"], d["y"]) for k, d in tensors.items()})


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
        self.links: list[FeedbackLinks] | None = None  # one per member, made by the first calibrated fit
        for m in self.members:
            m.eval()

    @classmethod
    def for_env(cls, env, size: int = 3, hidden: Sequence[int] = (64, 64), seed: int = 0,
                reduce: str = "mean", **kwargs) -> RewardEnsemble:
        """``size`` nets sized for ``env`` (:meth:`RewardNet.for_env`), initialized with seeds ``seed``, ``seed+1``, ..."""
        size = _check_pos_int("size (ensemble size)", size)
        seed = _check_pos_int("seed", seed, 0)
        return cls([RewardNet.for_env(env, hidden=hidden, seed=seed + k, **kwargs) for k in range(size)], reduce)

    @classmethod
    def from_net(cls, net: RewardNet, normalizer: RewardNormalizer | None = None) -> RewardEnsemble:
        """A one-member ensemble: ``net`` with ``normalizer``'s mean and std (None: the identity) (notebooks 05-06)."""
        ens = cls([V.instance("net", net, RewardNet)])
        if normalizer is not None:
            V.instance("normalizer", normalizer, RewardNormalizer, "RewardNormalizer or None")
            ens.means = np.array([normalizer.mean])
            ens.stds = np.array([normalizer.std / normalizer.target_std])
        return ens

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
        segments = V.sequence_of("segments", segments, Segment)
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
        a, b = V.sequence_of("segments_a", segments_a, Segment), V.sequence_of("segments_b", segments_b, Segment)
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
        segments = V.sequence_of("segments", segments, Segment)
        obs = torch.as_tensor(np.concatenate([s.obs for s in segments]))
        act = torch.as_tensor(np.concatenate([s.actions for s in segments]))
        raw = self.predict(obs, act, normalized=False)
        self.means = raw.mean(1)
        self.stds = np.maximum(raw.std(1), 1e-6)

    def fit(self, train: ComparisonDataset, val: ComparisonDataset | None = None, *, epochs: int = 50,
            batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.0, patience: int | None = 5,
            bootstrap: bool = True, seed: int = 0, scored: tuple | None = None,
            score_weight: float = 1.0, mix_weighting: str = "naive") -> list[dict]:
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
        loss λ₁ L_score + λ₂ L_compare with λ₂ = 1 (notebook 05's ``mixed_loss``). A third element,
        ``(segments, targets, kinds)``, says which are ratings (``"score"``) and which comments
        (``"language"``); the naive mix treats them alike.

        ``mix_weighting="calibrated"`` is notebook 05's fix of that mix, used by notebook 06's loop
        (:meth:`_fit_calibrated`): member k gets its own :class:`~rlhf_tutorial.reward_model.FeedbackLinks`
        (``self.links[k]``, kept and warm-started across fits like the nets), each kind's labels are
        fitted through its link (y ≈ a·r̂(τ) + b, a > 0; comparisons with a learned Bradley-Terry
        temperature) and weighted by λ = 1/(2σ²), σ² set after every epoch to the kind's residual on
        its held-out labels. ``score_weight`` is the naive mix's λ₁ and must stay 1 there.
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
        score_weight = V.number("score_weight", score_weight, 0)
        V.one_of("mix_weighting", mix_weighting, MIX_WEIGHTINGS)
        if mix_weighting == "calibrated" and score_weight != 1.0:
            raise ValueError(f"score_weight={score_weight!r} is the naive mix's λ; mix_weighting='calibrated' sets "
                             "each kind's weight from its held-out residual: leave score_weight at 1")
        t = train.tensors()
        vt = val.tensors() if val is not None else None
        st = _scored_tensors(scored)
        n = len(train)
        rng = np.random.default_rng(_check_pos_int("seed", seed, 0))
        fs = _FitSettings(epochs, batch_size, lr, weight_decay, patience, bootstrap)
        if mix_weighting == "calibrated":
            kinds = _scored_kinds(scored, len(st["y"])) if st is not None else []
            return self._fit_calibrated(t, vt, _split_scored(st, kinds) if st is not None else ({}, {}), rng, fs)
        histories = []
        for net in self.members:
            idx = torch.as_tensor(rng.integers(0, n, n) if bootstrap else np.arange(n))
            data = {key: v[idx] for key, v in t.items()}
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            scores = None
            if st is not None:
                s_idx = torch.as_tensor(rng.integers(0, len(st["y"]), len(st["y"])) if bootstrap
                                        else np.arange(len(st["y"])))
                scores = _ScoreBatches({key: v[s_idx] for key, v in st.items()}, batch_size, gen)
            opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)

            def step_loss(b, net=net, scores=scores):  # L_compare (+ the naive mix's λ₁ L_score on the next scored batch)
                loss = compare_loss(net, b["obs_a"], b["actions_a"], b["obs_b"], b["actions_b"], b["labels"], self.reduce)
                if scores is not None:
                    sb = scores.next()
                    loss = loss + score_weight * ((net(sb["obs"], sb["actions"]).mean(-1) - sb["y"]) ** 2).mean()
                return loss

            histories.append(self._fit_member(net, opt, data, vt, step_loss, gen, fs))
        return histories

    def _fit_calibrated(self, t: dict, vt: dict | None, split: tuple[dict, dict], rng: np.random.Generator,
                        fs: _FitSettings) -> list[dict]:
        """:meth:`fit` with ``mix_weighting="calibrated"``: notebook 05's calibrated mix, per member (notebook 06).

        Member k trains on a bootstrap resample of the comparisons and of each regression kind's
        *training* labels (``split[0]``; every 5th label of a kind, ``split[1]``, is held out of
        every member, :func:`_split_scored`), through its own links ``self.links[k]``. Each step:
        L = L̃_compare(β) + Σ_k n_k/n_c · [e^{-s_k} L̃_k / 2 + s_k / 2]
        (:func:`~rlhf_tutorial.reward_model.uncertainty_weighted_loss`), with L̃_k the linked MSE on
        the next minibatch of kind k (cycling) and n_k/n_c the kind's labels per comparison, so that
        every label counts once, as in a likelihood. σ_k² = e^{s_k} is not learned by Adam: it is set
        (:meth:`~rlhf_tutorial.reward_model.FeedbackLinks.set_noise`) before the first and after
        every epoch to the kind's mean squared residual on its held-out labels (its training labels
        when it has fewer than 5). Early stopping on ``vt`` keeps the best epoch's net, links and σ².
        """
        if self.links is None or len(self.links) != len(self):
            self.links = [FeedbackLinks() for _ in self.members]
        train_s, held = split
        n = len(t["labels"])
        histories = []
        for net, links in zip(self.members, self.links):
            idx = torch.as_tensor(rng.integers(0, n, n) if fs.bootstrap else np.arange(n))
            data = {key: v[idx] for key, v in t.items()}
            gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
            batches, shares = {}, {}
            for k, d in train_s.items():
                m = len(d["y"])
                s_idx = torch.as_tensor(rng.integers(0, m, m) if fs.bootstrap else np.arange(m))
                batches[k] = _ScoreBatches({key: v[s_idx] for key, v in d.items()}, fs.batch_size, gen)
                shares[k] = m / n
            noise_on = {k: held.get(k, d) for k, d in train_s.items()}
            params = list(net.parameters()) + [p for name, p in links.named_parameters()
                                               if p.requires_grad and not name.startswith("log_var")]
            opt = torch.optim.Adam(params, lr=fs.lr, weight_decay=fs.weight_decay)

            def step_loss(b, net=net, links=links, batches=batches, shares=shares):  # the calibrated objective
                losses = {"comparison": linked_compare_loss(net, links, b["obs_a"], b["actions_a"], b["obs_b"],
                                                            b["actions_b"], b["labels"], self.reduce)}
                for k, sb in batches.items():
                    x = sb.next()
                    losses[k] = shares[k] * linked_regression_loss(net, links, k, x["obs"], x["actions"], x["y"])
                return uncertainty_weighted_loss(losses, {k: links.log_var[k] for k in batches})

            histories.append(self._fit_member(net, opt, data, vt, step_loss, gen, fs, links, noise_on))
        return histories

    def _fit_member(self, net: RewardNet, opt, data: dict, vt: dict | None, step_loss, gen, fs: _FitSettings,
                    links: FeedbackLinks | None = None, noise_on: dict | None = None) -> dict:
        """One member's epochs over its comparisons with early stopping on ``vt``; keeps the best epoch (notebook 06).

        ``step_loss(batch)`` is the loss of one minibatch of comparisons (the naive or the calibrated
        mix adds its other kinds inside it). With ``links`` (the calibrated mix) the links are part of
        the kept state, and σ_k² is set on ``noise_on`` before the first and after every epoch.
        """
        hist: dict = {"train_loss": [], "val_loss": [], "best_epoch": -1}
        if links is not None:
            hist["sigma2"] = []
            _set_noise(net, links, noise_on)
        best, best_state, since = math.inf, None, 0
        n = len(data["labels"])
        for epoch in range(fs.epochs):
            net.train()
            perm = torch.randperm(n, generator=gen)
            total = 0.0
            for s in range(0, n, fs.batch_size):
                b = perm[s:s + fs.batch_size]
                loss = step_loss({key: v[b] for key, v in data.items()})
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += float(V.check_finite_loss(loss.detach(), epoch, "the reward ensemble's loss")) * len(b)
            hist["train_loss"].append(total / n)
            if links is not None:
                hist["sigma2"].append(_set_noise(net, links, noise_on))
            if vt is not None:
                v = self._loss(net, vt, links)
                hist["val_loss"].append(v)
                if v < best:
                    best, since, hist["best_epoch"] = v, 0, epoch
                    best_state = copy.deepcopy((net.state_dict(), links.state_dict() if links is not None else None))
                else:
                    since += 1
                    if fs.patience is not None and since >= fs.patience:
                        break
        if best_state is not None:
            net.load_state_dict(best_state[0])
            if links is not None:
                links.load_state_dict(best_state[1])
        net.eval()
        hist["epochs_run"] = len(hist["train_loss"])
        if links is not None:
            hist["links"] = links.summary()
        return hist

    @torch.no_grad()
    def _loss(self, net: RewardNet, t: dict, links: FeedbackLinks | None = None) -> float:
        net.eval()
        if links is not None:
            return float(linked_compare_loss(net, links, t["obs_a"], t["actions_a"], t["obs_b"], t["actions_b"],
                                             t["labels"], self.reduce))
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
class LearnedRewardVectorWrapper(gym.vector.VectorWrapper):
    """A vector env whose reward is a learned r̂(s_t, a_t): the env PPO and SAC train in (notebook 06).

    The seed's §3.3.1, r_t = r̂_θ*(s_t, a_t). ``reward_model`` is a :class:`RewardEnsemble` (the
    reward is the mean of its normalized members, minus ``uncertainty_penalty`` β times their
    std: :meth:`RewardEnsemble.reward`) or one :class:`~rlhf_tutorial.reward_model.RewardNet`
    with an optional :class:`~rlhf_tutorial.reward_model.RewardNormalizer` (a one-member
    ensemble, :meth:`RewardEnsemble.from_net`). The ensemble is read at every step, so refitting
    it changes the reward from the next step on. A net of the state only (``use_action=False``)
    works with any action space (Pendulum's torques too).

    ``info["true_reward"]`` keeps the env's true reward (so ``RolloutCollector``, ``train_ppo``
    and ``train_sac`` report the true return) and ``info["learned_reward"]`` the reward given.
    With Gymnasium's ``NEXT_STEP`` auto-reset the reset step gets reward 0. With
    ``record_episodes=True`` (needs ``NEXT_STEP``) every finished episode is kept (``obs``,
    ``actions``, true ``rewards``, as :func:`rlhf_tutorial.feedback.rollout_episodes` returns
    them) until :meth:`pop_episodes` hands them over for cutting into segments.
    """

    def __init__(self, env: gym.vector.VectorEnv, reward_model, normalizer=None, uncertainty_penalty: float = 0.0,
                 record_episodes: bool = False):
        super().__init__(env)
        if isinstance(reward_model, RewardNet):
            reward_model = RewardEnsemble.from_net(reward_model, normalizer)
        elif normalizer is not None:
            raise ValueError("normalizer is for a single RewardNet; a RewardEnsemble normalizes its members itself")
        self.ensemble = V.instance("reward_model", reward_model, RewardEnsemble, "RewardEnsemble or RewardNet")
        self.uncertainty_penalty = V.number("uncertainty_penalty", uncertainty_penalty, 0)
        self.record = V.boolean("record_episodes", record_episodes)
        reward_model.check_env(env)
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        self._next_step = str(getattr(mode, "value", mode)) == gym.vector.AutoresetMode.NEXT_STEP.value
        if self.record and not self._next_step:
            raise ValueError(f"record_episodes=True needs autoreset_mode NEXT_STEP, got {mode}")
        self._use_action = reward_model.members[0].use_action
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
        act_in = torch.as_tensor(acts).long() if self._use_action else None
        learned = self.ensemble.reward(obs_in, act_in, self.uncertainty_penalty).astype(np.float32)
        obs, reward, terminated, truncated, info = self.env.step(actions)
        info = dict(info)
        true = np.asarray(info.get("true_reward", reward), dtype=np.float32)
        info["true_reward"] = true
        if self._next_step:
            learned = np.where(self._prev_done, np.float32(0.0), learned)
        info["learned_reward"] = learned
        done = np.asarray(terminated) | np.asarray(truncated)
        if self.record:
            self._record(obs_in, acts, true, done)
        self._last_obs = obs
        self._prev_done = done & ~self._prev_done if self._next_step else done
        return obs, learned, terminated, truncated, info

    def _record(self, obs_in, acts, true, done) -> None:
        for i in range(self.num_envs):
            if self._prev_done[i]:  # the auto-reset step: not part of any episode
                continue
            b = self._bufs[i]
            b["obs"].append(obs_in[i])
            b["actions"].append(acts[i])
            b["rewards"].append(float(true[i]))
            if done[i]:
                self.finished.append({"obs": np.stack(b["obs"]), "actions": np.asarray(b["actions"]),
                                      "rewards": np.asarray(b["rewards"], dtype=np.float32)})
                self._bufs[i] = {"obs": [], "actions": [], "rewards": []}

    def pop_episodes(self) -> list[dict]:
        """The episodes finished since the last call (and forget them); empty unless ``record_episodes``."""
        out, self.finished = self.finished, []
        return out


def state_segments(policies: dict, segment_length: int = 50, episodes_per_policy: int = 4,
                   env_id: str = "Pendulum-v1", seed: int = 0) -> list[Segment]:
    """Segments of the *state* only, for a reward r̂(s) on a task with continuous actions (notebook 06).

    Like :func:`rlhf_tutorial.feedback.collect_segments` (``policies`` maps a name to
    ``act(obs batch) -> action batch``), but the actions are stored as 0: a
    :class:`~rlhf_tutorial.feedback.Segment` holds discrete actions, and a net of the state only
    (``RewardNet(..., use_action=False)``) never reads them. For fixed-horizon tasks (all episodes
    of a policy end together at the time limit, as Pendulum-v1's 200 steps).
    """
    out: list[Segment] = []
    for k, (name, act) in enumerate(V.instance("policies", policies, dict).items()):
        venv = make_vec_env(env_id, V.integer("episodes_per_policy", episodes_per_policy, low=1))
        obs, _ = venv.reset(seed=V.integer("seed", seed, low=0) + 1000 * k)
        steps_obs, steps_rew, done = [], [], np.zeros(venv.num_envs, dtype=bool)
        while not done.all() and len(steps_obs) < 100_000:
            next_obs, r, term, trunc, _ = venv.step(act(obs))
            steps_obs.append(np.asarray(obs, dtype=np.float32))
            steps_rew.append(np.asarray(r, dtype=np.float32))
            done |= np.asarray(term) | np.asarray(trunc)
            obs = next_obs
        venv.close()
        o, r = np.stack(steps_obs, 1), np.stack(steps_rew, 1)  # (episodes, T, obs_dim), (episodes, T)
        for i in range(o.shape[0]):
            ep = {"obs": o[i], "actions": np.zeros(o.shape[1], dtype=np.int64), "rewards": r[i]}
            out += cut_segments(ep, segment_length, env_id=env_id, source=name)
    return out


# --------------------------------------------------------------------------- configuration
def _task_ppo() -> PPOConfig:
    return replace(TASK_PPO_CONFIG)


@dataclass
class PreferenceLoopConfig:
    """Every knob of :func:`run_preference_loop` (notebook 06), CleanRL style: one line of help each.

    PPO itself uses ``ppo`` (default: the task's true-reward settings,
    :data:`rlhf_tutorial.ppo.TASK_PPO_CONFIG`) with ``env_id``, ``seed`` and ``total_timesteps``
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
    phase_steps: int = 2_500  # PPO env steps between two refits (why not 5_000: benchmarks/README.md)
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
    mix_weighting: str = "naive"  # how ratings/comments join: "naive" (seed's MSE, λ = 1) or "calibrated" (notebook 05's links, λ = 1/2σ²)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Check every field (``TypeError`` for a wrong type, ``ValueError`` for a wrong value, naming it)."""
        V.instance("ppo", self.ppo, PPOConfig)
        V.text("env_id", self.env_id)
        V.integer("seed", self.seed, low=0)
        for name in ("total_timesteps", "label_budget", "segment_length", "ensemble_size", "candidate_factor",
                     "pool_size", "initial_steps", "label_phases", "phase_steps", "reward_epochs",
                     "reward_batch_size", "reward_patience", "eval_episodes"):
            V.integer(name, getattr(self, name), low=1)
        V.integer("eval_every", self.eval_every, low=0)
        V.integer("max_restarts", self.max_restarts, low=0)
        V.probability("epsilon", self.epsilon)
        V.probability("initial_label_fraction", self.initial_label_fraction)
        V.probability("val_fraction", self.val_fraction, high_open=True)
        for name in ("label_decay_steps", "reward_lr"):
            V.positive(name, getattr(self, name))
        V.number("uncertainty_penalty", self.uncertainty_penalty, 0)
        if self.restart_margin is not None:
            V.number("restart_margin", self.restart_margin, 0)
        V.one_of("query_method", self.query_method, QUERY_METHODS)
        V.one_of("compare_reduce", self.compare_reduce, REDUCTIONS)
        V.one_of("normalize_on", self.normalize_on, ("labelled", "recent"))
        V.one_of("mix_weighting", self.mix_weighting, MIX_WEIGHTINGS)
        V.boolean("reward_use_action", self.reward_use_action)
        V.boolean("reset_critic", self.reset_critic)
        mix = V.instance("feedback_mix", self.feedback_mix, (tuple, list), "tuple (scores, comparisons, comments)")
        if len(mix) != 3:
            raise ValueError(f"feedback_mix must be 3 shares (scores, comparisons, comments), got {mix!r}")
        for k, v in enumerate(mix):
            V.number(f"feedback_mix[{k}]", v, 0)
        V.number("feedback_mix[1] (the comparisons' share)", mix[1], 0, low_open=True)
        self._check_segment_fits()

    def _check_segment_fits(self) -> None:
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
    V.instance("config", config, PreferenceLoopConfig)
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


# --------------------------------------------------------------------------- the loop, as its named steps
def random_pairs(pool: list[Segment], n: int, rng: np.random.Generator) -> list[tuple[Segment, Segment]]:
    """Up to ``n`` distinct random pairs of different segments of ``pool``: the candidates of step 3 (notebook 06)."""
    V.integer("n", n, low=0)
    V.instance("rng", rng, np.random.Generator, "numpy.random.Generator")
    m = len(V.instance("pool", pool, (list, tuple), "list of Segment"))
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


def _dataset(triples: list) -> ComparisonDataset | None:
    if not triples or all(y == 0.5 for _, _, y in triples):
        return None
    return ComparisonDataset([a for a, _, _ in triples], [b for _, b, _ in triples], [y for _, _, y in triples])


class LearnedRewardEnvs:
    """``n -> LearnedRewardVectorWrapper(make_vec_env(env_id, n), reward_model, normalizer)``: the ``envs`` of the trainers (notebook 06).

    What ``train_ppo(cfg, envs=...)`` and ``train_sac(cfg, envs=...)`` call to build ``n`` copies of
    an env whose reward is learned, as the lambda ``lambda n: LearnedRewardVectorWrapper(...)``
    would; unlike a lambda, its inputs (the env id and the reward model's weights) can be
    fingerprinted, so a run on it can be recorded and reused (:func:`rlhf_tutorial.cache.reuse_run`).
    """

    def __init__(self, env_id: str, reward_model, normalizer=None, uncertainty_penalty: float = 0.0):
        self.env_id = V.text("env_id", env_id)
        self.reward_model = V.instance("reward_model", reward_model, (RewardEnsemble, RewardNet), "RewardEnsemble or RewardNet")
        self.normalizer, self.uncertainty_penalty = normalizer, V.number("uncertainty_penalty", uncertainty_penalty, 0)

    def __call__(self, n: int) -> LearnedRewardVectorWrapper:
        return LearnedRewardVectorWrapper(make_vec_env(self.env_id, n), self.reward_model, self.normalizer,
                                          self.uncertainty_penalty)

    def __repr__(self) -> str:
        return f"LearnedRewardEnvs({self.env_id!r}, {type(self.reward_model).__name__})"


class PreferenceModel(NamedTuple):
    """What :func:`run_preference_loop` learns: the policy π_φ and the reward ensemble r̂ (notebook 06)."""

    policy: ActorCritic
    reward: RewardEnsemble


class _Loop:
    """The loop's state between its steps (notebook 06): env, agent, human, labels so far, history."""

    def __init__(self, cfg: PreferenceLoopConfig, ensemble, scorer, initial_labels):
        self.cfg, self.scorer = cfg, scorer
        self.ppo = ppo = replace(cfg.ppo, env_id=cfg.env_id, seed=cfg.seed, total_timesteps=cfg.total_timesteps)
        self.t_start = time.perf_counter()
        torch.set_num_threads(resolve_threads(ppo.torch_threads))
        torch.manual_seed(cfg.seed)
        np.random.seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        base = make_vec_env(cfg.env_id, ppo.num_envs, **ppo.env_kwargs)
        try:
            horizon = getattr(base, "max_episode_steps", None) or getattr(base, "horizon", None)
            if horizon is not None and cfg.segment_length > int(horizon):
                raise ValueError(f"segment_length={cfg.segment_length} is longer than an episode of {cfg.env_id} "
                                 f"({horizon} steps)")
            if ensemble is None:
                ensemble = RewardEnsemble.for_env(base, cfg.ensemble_size, cfg.reward_hidden, seed=cfg.seed,
                                                  reduce=cfg.compare_reduce, use_action=cfg.reward_use_action)
            V.instance("ensemble", ensemble, RewardEnsemble, "RewardEnsemble or None")
            self.envs = LearnedRewardVectorWrapper(base, ensemble, uncertainty_penalty=cfg.uncertainty_penalty,
                                                   record_episodes=True)
        except (TypeError, ValueError):
            base.close()
            raise
        self.ensemble = ensemble
        self.n_actions = require_discrete(self.envs.single_action_space, "run_preference_loop")
        self.obs_dim = int(np.prod(self.envs.single_observation_space.shape))
        self.agent = ActorCritic(self.obs_dim, self.n_actions, ppo.hidden)
        self.optimizer = torch.optim.Adam(self.agent.parameters(), lr=ppo.learning_rate, eps=ppo.adam_eps)
        self.collector = RolloutCollector(self.envs, seed=cfg.seed)
        self.human = ComparisonLabeler(epsilon=cfg.epsilon, seed=cfg.seed)
        self.rater, self.speaker = ScoreLabeler(seed=cfg.seed), LanguageLabeler(seed=cfg.seed)
        self.mix = np.asarray(cfg.feedback_mix, dtype=float) / float(np.sum(cfg.feedback_mix))
        self.given = _given_labels(initial_labels, cfg.segment_length)
        self.schedule = label_schedule(cfg)
        if self.given:
            left = max(0, cfg.label_budget - len(self.given))
            self.schedule = label_schedule(replace(cfg, label_budget=max(1, left)))
            if left == 0:
                self.schedule = [0] * len(self.schedule)
        self.train_set: list = []  # (τ1, τ2, y) the members train on
        self.val_set: list = []  # (τ1, τ2, y) held out for early stopping
        self.scored: list = []  # (τ, y in [0, 1]) from ratings and comments
        self.scored_kinds: list[str] = []  # "score" or "language" for each entry of scored
        self.pool: list[Segment] = []  # the most recent segments, where queries come from
        self.initial: list[Segment] = []  # the untrained policy's segments (the restart's yardstick)
        self.restarts: list[int] = []
        self.hist: dict = {k: [] for k in _LOOP_HISTORY}
        self.hist["config"] = asdict(cfg)
        self.hist["schedule"] = self.schedule

    @property
    def step(self) -> int:
        return self.collector.global_step

    @property
    def n_labels(self) -> int:
        return len(self.train_set) + len(self.val_set) + len(self.scored)

    def evaluate(self) -> float:
        """The TRUE return of the greedy policy (the loop itself never sees it)."""
        return float(evaluate_policy(lambda o: self.agent.act(o, deterministic=True), self.cfg.env_id,
                                     self.cfg.eval_episodes, seed=10_000 + self.cfg.seed,
                                     env_kwargs=self.ppo.env_kwargs).mean())

    def mean_reward(self, segments: list[Segment]) -> float:
        obs = np.concatenate([s.obs for s in segments])
        act = torch.as_tensor(np.concatenate([s.actions for s in segments]))
        return float(self.ensemble.reward(obs, act, self.cfg.uncertainty_penalty).mean())


_LOOP_HISTORY = ("global_step", "labels", "approx_kl", "clipfrac", "entropy", "episode_step", "episode_true_return",
                 "eval_step", "eval_labels", "eval_return", "eval_seconds", "phase_step", "phase_labels",
                 "labels_total", "spearman", "tie_rate", "val_loss", "query_phase", "query_return_a", "query_return_b",
                 "query_label")


def _given_labels(initial_labels, segment_length: int) -> list:
    if initial_labels is None:
        return []
    V.instance("initial_labels", initial_labels, ComparisonDataset, "ComparisonDataset or None")
    given = [(initial_labels.segments_a[i], initial_labels.segments_b[i], float(initial_labels.labels[i]))
             for i in range(len(initial_labels))]
    for seg in (x for a, b, _ in given for x in (a, b)):
        if len(seg) != segment_length:
            raise ValueError(f"initial_labels has a segment of {len(seg)} steps; this loop cuts segments of "
                             f"segment_length={segment_length}")
    return given


def _collect_rollouts(loop: _Loop, num_steps: int):
    """Step 1: π_φ acts in the env whose reward is r̂ (the true return is only logged)."""
    ro = loop.collector.collect(loop.agent, num_steps)
    loop.hist["episode_true_return"] += ro.episode_true_returns
    loop.hist["episode_step"] += [loop.step] * len(ro.episode_true_returns)
    return ro


def _cut_segments(loop: _Loop, phase: int) -> list[Segment]:
    """Step 2: the episodes finished since the last phase, cut into segments τ of ``segment_length`` steps."""
    return [s for ep in loop.envs.pop_episodes()
            for s in cut_segments(ep, loop.cfg.segment_length, env_id=loop.cfg.env_id, source=f"phase{phase}")]


def _select_pairs(loop: _Loop, n: int, phase: int) -> list[tuple[Segment, Segment]]:
    """Step 3: ``candidate_factor``·n random pairs from the pool; keep the n the members disagree on most.

    Phase 0 picks at random: untrained members' disagreement means nothing.
    """
    cands = random_pairs(loop.pool, loop.cfg.candidate_factor * n, loop.rng) if n > 0 else []
    if not cands:
        return []
    method = "random" if phase == 0 else loop.cfg.query_method
    chosen = select_queries(loop.ensemble, cands, n, method, seed=int(loop.rng.integers(2**31)))
    return [cands[i] for i in chosen]


def _ask_human(loop: _Loop, pairs: list, phase: int) -> None:
    """Step 4: the (synthetic) human labels each pair; a share ``val_fraction`` is held out."""
    for a, b in pairs:
        y = loop.human.label(a, b)
        (loop.val_set if loop.rng.random() < loop.cfg.val_fraction else loop.train_set).append((a, b, y))
        for k, v in (("query_phase", phase), ("query_return_a", a.true_return), ("query_return_b", b.true_return),
                     ("query_label", y)):
            loop.hist[k].append(v)


def _rate_and_describe(loop: _Loop, n_score: int, n_text: int, phase: int) -> None:
    """Step 4 for scores and comments: the segments whose r̂(τ) the members disagree on most."""
    idx = loop.rng.choice(len(loop.pool), min(len(loop.pool), loop.cfg.candidate_factor * (n_score + n_text)),
                          replace=False)
    spread = loop.ensemble.segment_returns([loop.pool[i] for i in idx], normalized=True).std(0)
    order = idx if phase == 0 else idx[np.argsort(-spread, kind="stable")]
    rated, commented = order[:n_score], order[n_score:n_score + n_text]
    loop.scored.extend((loop.pool[i], loop.rater.label(loop.pool[i])) for i in rated)
    loop.scored_kinds.extend(["score"] * len(rated))
    if len(commented):
        texts = [loop.speaker.label(loop.pool[i]) for i in commented]
        scorer = loop.scorer
        ys = np.clip(np.asarray(scorer(texts) if callable(scorer) else scorer.score(texts), float), 0, 1)
        loop.scored.extend((loop.pool[i], float(y)) for i, y in zip(commented, ys))
        loop.scored_kinds.extend(["language"] * len(commented))


def _refit_ensemble(loop: _Loop) -> float | None:
    """Step 5: refit every member on all labels so far, then normalize each; returns the mean val loss.

    Ratings and comments are passed with their kinds, so ``mix_weighting="calibrated"`` gives each
    its own link (the naive mix treats them alike).
    """
    cfg = loop.cfg
    tr, va = _dataset(loop.train_set), _dataset(loop.val_set)
    if tr is None:
        return None
    scored = ([x for x, _ in loop.scored], [y for _, y in loop.scored], loop.scored_kinds) if loop.scored else None
    fits = loop.ensemble.fit(tr, va, epochs=cfg.reward_epochs, batch_size=cfg.reward_batch_size, lr=cfg.reward_lr,
                             patience=cfg.reward_patience, seed=int(loop.rng.integers(2**31)), scored=scored,
                             mix_weighting=cfg.mix_weighting)
    labelled = [s for a, b, _ in loop.train_set + loop.val_set for s in (a, b)]
    loop.ensemble.fit_normalizers(labelled if cfg.normalize_on == "labelled" else loop.pool)
    return float(np.mean([f["val_loss"][f["best_epoch"]] if f["best_epoch"] >= 0 and f["val_loss"] else math.nan
                          for f in fits]))


def _restart_if_stuck(loop: _Loop, fresh: list[Segment]) -> bool:
    """Step 7: restart PPO when the *current* r̂ rates its fresh rollouts ``restart_margin`` below the untrained policy's.

    Such a policy converged on an old, wrong r̂, and its rollouts no longer teach much. Labels are kept.
    """
    cfg = loop.cfg
    if (cfg.restart_margin is None or len(loop.restarts) >= cfg.max_restarts or not fresh or not loop.initial
            or loop.mean_reward(fresh) >= loop.mean_reward(loop.initial) - cfg.restart_margin):
        return False
    with torch.random.fork_rng():
        torch.manual_seed(cfg.seed + 7919 * (len(loop.restarts) + 1))
        loop.agent.load_state_dict(ActorCritic(loop.obs_dim, loop.n_actions, loop.ppo.hidden).state_dict())
    loop.optimizer.state.clear()
    loop.restarts.append(loop.step)
    return True


def _reset_critic(loop: _Loop, phase: int) -> None:
    with torch.random.fork_rng():
        torch.manual_seed(loop.cfg.seed + phase)
        fresh = ActorCritic(loop.obs_dim, loop.n_actions, loop.ppo.hidden)
    with torch.no_grad():
        loop.agent.critic.load_state_dict(fresh.critic.state_dict())


def _labelling_phase(loop: _Loop, phase: int) -> dict:
    """Steps 2-5 and 7 at one phase: cut, (rate, describe,) select, ask, refit, decide on a restart."""
    cfg, out = loop.cfg, {"phase": phase}
    fresh = _cut_segments(loop, phase)
    if len(fresh) >= 2:  # how well r̂ ranks the behaviour of *now*, before it is labelled
        out["spearman"] = spearman(loop.ensemble.segment_returns(fresh).mean(0), [s.true_return for s in fresh])
    loop.pool = (loop.pool + fresh)[-cfg.pool_size:]
    if phase == 0:
        loop.initial.extend(fresh)
        for a, b, y in loop.given:
            (loop.val_set if loop.rng.random() < cfg.val_fraction else loop.train_set).append((a, b, y))
    n = loop.schedule[phase]
    n_score, n_text = int(math.floor(loop.mix[0] * n)), int(math.floor(loop.mix[2] * n))  # comparisons keep >= 1
    if n_score + n_text:
        _rate_and_describe(loop, n_score, n_text, phase)
    pairs = _select_pairs(loop, n - n_score - n_text, phase)
    if not pairs and not (phase == 0 and loop.given) and not n_score + n_text:
        return out
    _ask_human(loop, pairs, phase)
    val_loss = _refit_ensemble(loop)
    if val_loss is not None:
        if cfg.reset_critic and phase > 0:
            _reset_critic(loop, phase)
        if phase > 0 and _restart_if_stuck(loop, fresh):
            out["restart"] = True
        out["val_loss"] = val_loss
    h = loop.hist
    h["phase_step"].append(loop.step)
    h["phase_labels"].append(len(pairs) + n_score + n_text)
    h["labels_total"].append(loop.n_labels)
    h["spearman"].append(out.get("spearman", math.nan))
    h["tie_rate"].append(float(np.mean([y == 0.5 for _, _, y in loop.train_set + loop.val_set])))
    h["val_loss"].append(out.get("val_loss", math.nan))
    if h["tie_rate"][-1] == 1.0 and not loop.scored:
        warnings.warn("every comparison label so far is a tie (y = 0.5): r̂ learns no ranking and spearman is NaN; "
                      "use longer segments or a labeler with a smaller tie margin", RuntimeWarning, stacklevel=2)
    return out


def _continue_policy(loop: _Loop, ppo_start: int) -> dict:
    """Step 6: one PPO update (notebook 03) on a rollout rewarded by the current r̂; agent and optimizer persist."""
    ppo = loop.ppo
    frac = 1.0 - (loop.step - ppo_start) / max(1, loop.cfg.total_timesteps - ppo_start)
    for g in loop.optimizer.param_groups:
        g["lr"] = ppo.learning_rate * frac if ppo.anneal_lr else ppo.learning_rate
    ro = _collect_rollouts(loop, ppo.num_steps)
    batch = rollout_to_batch(ro, ppo.gamma, ppo.gae_lambda, ppo.bootstrap_truncated)
    stats = ppo_update(loop.agent, loop.optimizer, batch, ppo, ppo.clip_coef * frac if ppo.anneal_clip else ppo.clip_coef)
    h = loop.hist
    h["global_step"].append(loop.step)
    h["labels"].append(loop.n_labels)
    for k in ("approx_kl", "clipfrac", "entropy"):
        h[k].append(stats[k])
    return stats


def _record_evaluation(loop: _Loop) -> None:
    h = loop.hist
    h["eval_step"].append(loop.step)
    h["eval_labels"].append(loop.n_labels)
    h["eval_return"].append(loop.evaluate())
    h["eval_seconds"].append(time.perf_counter() - loop.t_start)


def run_preference_loop(config: PreferenceLoopConfig | None = None, callback: Callable[[dict], bool | None] | None = None,
                        progress: bool = True, ensemble: RewardEnsemble | None = None, scorer=None,
                        initial_labels: ComparisonDataset | None = None) -> tuple[PreferenceModel, dict]:
    """Christiano et al.'s online RLHF loop; returns ``((policy, reward_ensemble), history)`` (notebook 06).

    The seed's §3.3.3, as its named steps: 1 collect rollouts with π_φ on r̂, 2 cut segments,
    3 select queries (disagreement or random), 4 ask the human, 5 refit the ensemble, 6 continue
    PPO, 7 decide on a restart; settings in :class:`PreferenceLoopConfig`. ``ensemble`` (optional)
    is a ready :class:`RewardEnsemble` that fits the env. With comments in ``config.feedback_mix``,
    ``scorer`` (a :class:`~rlhf_tutorial.language.LanguageScorer`, or any ``list[str] -> scores``)
    turns them into scores. ``initial_labels``: comparisons a person gave beforehand (the widget of
    notebook 04); they join phase 0's labels and count towards the budget.

    ``callback(info)`` (the trainers' contract) gets, after every PPO update, a dict with
    ``global_step``, ``labels`` (asked so far), ``phase``, the PPO diagnostics and, after a
    refit, ``spearman``; returning True stops the loop. ``history`` holds lists: per update
    ``global_step``, ``labels``, ``approx_kl``, ``clipfrac``, ``entropy``; per training episode
    ``episode_step``, ``episode_true_return`` (TRUE return); per evaluation ``eval_step``,
    ``eval_labels``, ``eval_return`` (TRUE return of the greedy policy), ``eval_seconds``; per
    labelling phase ``phase_step``, ``phase_labels``, ``labels_total``, ``spearman`` (of Σ r̂ with
    the true return on that phase's fresh segments, before the refit), ``tie_rate``, ``val_loss``;
    per comparison asked ``query_phase``, ``query_return_a``, ``query_return_b`` (true returns), ``query_label``;
    ``restarts`` (steps) and ``schedule``; and the scalars ``final_return``, ``labels_used``, ``seconds``.
    """
    cfg = PreferenceLoopConfig() if config is None else V.instance("config", config, PreferenceLoopConfig)
    cfg.validate()
    V.callable_("callback", callback, allow_none=True)
    if cfg.feedback_mix[2] > 0 and scorer is None:
        raise ValueError("feedback_mix asks for comments: pass scorer= (e.g. rlhf_tutorial.language.LanguageScorer())")
    if callback is None and ensemble is None:  # a fresh run, nothing outside it: may be recorded/reused
        return reuse_run("preference_loop", (cfg, scorer, initial_labels),
                         lambda: _run_loop(cfg, None, progress, None, scorer, initial_labels), seeded=("torch", "numpy"))
    return _run_loop(cfg, callback, progress, ensemble, scorer, initial_labels)


def _run_loop(cfg: PreferenceLoopConfig, callback, progress: bool, ensemble, scorer, initial_labels):
    """The body of :func:`run_preference_loop` (which may instead reuse a recorded run: :func:`rlhf_tutorial.cache.reuse_run`)."""
    loop = _Loop(cfg, ensemble, scorer, initial_labels)
    bar = progress_bar(total=cfg.total_timesteps, desc="RLHF loop", disable=not progress)
    while loop.step < min(cfg.initial_steps, cfg.total_timesteps):  # the untrained policy acts first
        _collect_rollouts(loop, min(loop.ppo.num_steps, max(1, (cfg.initial_steps - loop.step) // loop.ppo.num_envs)))
    phase = 0
    _labelling_phase(loop, phase)
    ppo_start = loop.step
    next_phase, next_eval = ppo_start + cfg.phase_steps, cfg.eval_every
    while loop.step < cfg.total_timesteps:
        stats = _continue_policy(loop, ppo_start)
        info = {}
        if loop.step >= next_phase and phase < cfg.label_phases:
            phase, next_phase = phase + 1, next_phase + cfg.phase_steps
            info = _labelling_phase(loop, phase)
        elif loop.step >= next_phase:
            loop.envs.pop_episodes()  # no more labels: forget the episodes
        if cfg.eval_every and loop.step >= next_eval:
            next_eval += cfg.eval_every
            _record_evaluation(loop)
            bar.set_postfix(true_return=f"{loop.hist['eval_return'][-1]:.0f}", labels=loop.n_labels)
        bar.update(loop.step - bar.n)
        if callback is not None and callback({"global_step": loop.step, "labels": loop.n_labels, "phase": phase,
                                              **stats, **info}):
            break
    bar.close()
    loop.envs.close()
    h = loop.hist
    h.update(final_return=loop.evaluate(), labels_used=loop.n_labels, restarts=loop.restarts,
             seconds=time.perf_counter() - loop.t_start)
    return PreferenceModel(loop.agent, loop.ensemble), h
