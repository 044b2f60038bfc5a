r"""Learning a reward function r̂_θ(s, a) from human feedback (notebook 05; reused in notebook 06).

The seed (§3.2.2) fits a neural reward r̂_θ(s_t, a_t) to the three kinds of feedback of
:mod:`rlhf_tutorial.feedback`, with the trajectory value :math:`\hat r_\theta(\tau)`:

.. math::
    \hat r_\theta(\tau) = \tfrac{1}{|\tau|}\textstyle\sum_t \hat r_\theta(s_t, a_t) \quad(\text{mean}),\qquad
    \hat R_\theta(\tau) = \textstyle\sum_t \hat r_\theta(s_t, a_t) \quad(\text{sum, Christiano et al., TRL})

- :func:`score_loss` L_score = E[(r̂_θ(τ) − y)²] with the **mean**, y ∈ [0, 1] (the seed);
- :func:`compare_loss` L_compare = E[−y log σ(Δ) − (1 − y) log(1 − σ(Δ))], Δ = r̂(τ1) − r̂(τ2),
  y ∈ {0, 0.5, 1} (0.5 = "equal", our extension); ``reduce="mean"`` (default, the seed) or ``"sum"``;
- :func:`language_loss` L_language: the MSE of L_score on the scores a language model gives the
  comments (:class:`rlhf_tutorial.language.LanguageScorer`);
- :func:`mixed_loss` L = λ1 L_score + λ2 L_compare + λ3 L_language.

**Mean or sum in L_compare.** For two segments of the same length L, Δ_sum = L · Δ_mean: the
two choices are the same Bradley-Terry model at different temperatures (Christiano et al. and
TRL use the sum). The package defaults to the seed's **mean**, for three measured reasons
(notebook 05, 50-step segments, 3 seeds): (1) trained with Adam, the factor L also multiplies
every step's change of the logits, so the sum learns like the mean at an L-times larger learning
rate and overfits noisy labels sooner: at ε = 10 % and 250-500 comparisons the mean ranked
held-out pairs better (0.90 vs 0.82-0.86); (2) with the mean all three losses use the same
r̂_θ(τ), so their per-step gradients have similar sizes and λ1 = λ2 = λ3 = 1 is a sensible mix,
while with the sum L_compare's gradients are ~L times larger and the 1:1:1 mix was unstable;
(3) it is the seed's formula. The price: a preference as confident as the human's needs
r̂ about L times larger than the per-step true reward, so the *scale* of r̂ means little, which
:class:`RewardNormalizer` removes before PPO. ``reduce="sum"`` stays available everywhere.

**Inputs.** r̂_θ(s, a) is an MLP on the observation divided by a fixed scale (the observation
bounds, so every input is in [-1, 1]) concatenated with the one-hot action: the seed writes
r̂_θ(s, a), and on the task of :mod:`rlhf_tutorial.envs` the reward of step t is computed on the
state *after* a_t, so the action does carry (a little) information. ``use_action=False`` gives
r̂_θ(s).

The rest is for evaluation and for notebook 06: :func:`train_reward_model` (Adam, minibatches,
validation split, early stopping), :func:`pairwise_accuracy` and :func:`spearman` against the
*true* reward, :class:`RewardNormalizer` (mean 0, fixed std on reference data),
:class:`LearnedRewardWrapper` / :class:`LearnedRewardVectorWrapper` (the env's reward replaced by
normalized r̂, the true one kept in ``info["true_reward"]``), and :func:`save_reward_model` /
:func:`load_reward_model` (safetensors, never pickle).
"""

from __future__ import annotations

import copy
import json
import math
import os
from pathlib import Path
from typing import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .feedback import (
    FEEDBACK_KINDS,
    ComparisonDataset,
    FeedbackDataset,
    LanguageDataset,
    ScoreDataset,
    Segment,
)
from .rl import mlp
from .utils import progress_bar

__all__ = [
    "REDUCTIONS",
    "RewardNet",
    "segment_return",
    "score_loss",
    "compare_loss",
    "language_loss",
    "check_lambdas",
    "mixed_loss",
    "feedback_tensors",
    "train_reward_model",
    "predict_returns",
    "pairwise_accuracy",
    "spearman",
    "make_eval_pairs",
    "evaluate_reward_model",
    "RewardNormalizer",
    "LearnedRewardWrapper",
    "LearnedRewardVectorWrapper",
    "save_reward_model",
    "load_reward_model",
    "RewardModelFileError",
]

REDUCTIONS = ("mean", "sum")
FORMAT = "rlhf_tutorial.reward_model"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- validation helpers
def _check_reduce(reduce) -> str:
    if reduce not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
    return reduce


def _finite_tensor(name: str, x, dtype=torch.float32) -> torch.Tensor:
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be an array or tensor of numbers, got {type(x).__name__}")
    try:
        t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be an array or tensor of numbers, got {type(x).__name__}") from e
    if t.is_floating_point() and not torch.isfinite(t).all():
        raise ValueError(f"{name} contains NaN or inf")
    return t


def _check_number(name: str, value, low: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    return v


def _check_int(name: str, value, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- the reward net
class RewardNet(nn.Module):
    """r̂_θ(s, a): an MLP from (scaled observation, one-hot action) to one reward per step.

    Notebook 05. ``forward(obs, actions)`` takes ``obs`` of shape ``(..., obs_dim)`` and integer
    ``actions`` of shape ``(...)`` and returns r̂ of shape ``(...)``, so a batch of segments
    ``(N, L, obs_dim)`` gives ``(N, L)``. ``obs_scale`` (default 1) divides the observation
    first (use the observation bounds, see :meth:`for_env`); ``use_action=False`` ignores the
    action (r̂_θ(s)). ``seed`` makes the initial weights reproducible without touching the
    global torch RNG.
    """

    def __init__(self, obs_dim: int, n_actions: int = 2, hidden: Sequence[int] = (64, 64),
                 use_action: bool = True, obs_scale=None, seed: int | None = None):
        super().__init__()
        self.obs_dim = _check_int("obs_dim", obs_dim)
        self.n_actions = _check_int("n_actions", n_actions)
        if isinstance(hidden, (int, str)) or not all(isinstance(h, int) and h >= 1 for h in hidden):
            raise ValueError(f"hidden must be a list of positive ints (layer sizes), got {hidden!r}")
        if not isinstance(use_action, bool):
            raise TypeError(f"use_action must be True or False, got {use_action!r}")
        self.hidden, self.use_action = tuple(int(h) for h in hidden), use_action
        scale = torch.ones(self.obs_dim) if obs_scale is None else _finite_tensor("obs_scale", obs_scale).reshape(-1)
        if scale.shape != (self.obs_dim,) or (scale <= 0).any():
            raise ValueError(f"obs_scale must be {self.obs_dim} positive numbers, got {scale.tolist()}")
        self.register_buffer("obs_scale", scale.float())
        in_dim = self.obs_dim + (self.n_actions if use_action else 0)
        if seed is None:
            self.net = mlp(in_dim, 1, self.hidden, out_std=1.0)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_check_int("seed", seed, 0))
                self.net = mlp(in_dim, 1, self.hidden, out_std=1.0)

    @classmethod
    def for_env(cls, env, **kwargs) -> RewardNet:
        """A net sized for ``env`` (a Gymnasium env, vector env or env id) with ``obs_scale`` = the
        observation bounds where they are finite (notebooks 05-06)."""
        if isinstance(env, str):
            from .rl import make_env

            env = make_env(env)
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        act_space = getattr(env, "single_action_space", env.action_space)
        if not isinstance(act_space, gym.spaces.Discrete):
            raise TypeError(f"RewardNet needs a Discrete action space, got {act_space}")
        high = np.asarray(obs_space.high, dtype=np.float64).reshape(-1)
        scale = np.where(np.isfinite(high) & (high > 0), high, 1.0)
        kwargs.setdefault("obs_scale", scale)
        return cls(int(np.prod(obs_space.shape)), int(act_space.n), **kwargs)

    def config(self) -> dict:
        """The constructor arguments (what :func:`save_reward_model` stores)."""
        return {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "hidden": list(self.hidden),
                "use_action": self.use_action}

    def features(self, obs: torch.Tensor, actions: torch.Tensor | None) -> torch.Tensor:
        """The MLP's input: ``obs / obs_scale`` (and the one-hot action when ``use_action``)."""
        x = obs / self.obs_scale
        if not self.use_action:
            return x
        if actions is None:
            raise ValueError("this RewardNet uses the action (use_action=True): pass actions")
        return torch.cat([x, F.one_hot(actions.long(), self.n_actions).to(x.dtype)], dim=-1)

    def forward(self, obs, actions=None) -> torch.Tensor:
        obs = _finite_tensor("obs", obs)
        if obs.ndim < 1 or obs.shape[-1] != self.obs_dim:
            raise ValueError(f"obs must have a last dimension of obs_dim={self.obs_dim}, got shape {tuple(obs.shape)}")
        if actions is not None:
            actions = _finite_tensor("actions", actions, dtype=None)
            if actions.is_floating_point() and not torch.equal(actions, actions.round()):
                raise ValueError("actions must be integers (discrete actions)")
            actions = actions.long()
            if tuple(actions.shape) != tuple(obs.shape[:-1]):
                raise ValueError(f"actions must have shape {tuple(obs.shape[:-1])} to match obs, got {tuple(actions.shape)}")
            if actions.numel() and (actions.min() < 0 or actions.max() >= self.n_actions):
                raise ValueError(f"actions must be in [0, {self.n_actions - 1}], got values from "
                                 f"{int(actions.min())} to {int(actions.max())}")
        return self.net(self.features(obs, actions)).squeeze(-1)

    @torch.no_grad()
    def predict(self, obs, actions=None) -> np.ndarray:
        """r̂ per step as a NumPy array, without gradients (for envs and plots)."""
        return self(obs, actions).numpy()


def _check_net(net) -> nn.Module:
    if not isinstance(net, nn.Module):
        raise TypeError(f"net must be a torch.nn.Module such as RewardNet, got {type(net).__name__}")
    return net


# --------------------------------------------------------------------------- the three losses
def segment_return(net: nn.Module, obs, actions, reduce: str = "mean") -> torch.Tensor:
    """r̂_θ(τ) of a batch of segments: the mean (the seed) or the sum of r̂_θ(s_t, a_t) over t.

    Notebook 05. ``obs`` has shape ``(N, L, obs_dim)``, ``actions`` ``(N, L)``; returns ``(N,)``.
    """
    reduce = _check_reduce(reduce)
    r = _check_net(net)(obs, actions)
    if r.ndim != 2:
        raise ValueError(f"obs must be a batch of segments (N, L, obs_dim), got r̂ of shape {tuple(r.shape)}")
    if r.shape[1] == 0 or r.shape[0] == 0:
        raise ValueError(f"need at least one segment of at least one step, got r̂ of shape {tuple(r.shape)}")
    return r.mean(-1) if reduce == "mean" else r.sum(-1)


def _targets(name: str, y, n: int, allowed=None) -> torch.Tensor:
    t = _finite_tensor(name, y)
    if t.shape != (n,):
        raise ValueError(f"{name} must have one value per segment, expected shape ({n},), got {tuple(t.shape)}")
    if allowed is not None:
        bad = ~torch.isin(t, torch.tensor(allowed, dtype=t.dtype))
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"{name} must be 0 (second better), 0.5 (equal) or 1 (first better), "
                             f"got {float(t[i])} at index {i}")
    elif ((t < 0) | (t > 1)).any():
        i = int(((t < 0) | (t > 1)).nonzero()[0])
        raise ValueError(f"{name} must be in [0, 1], got {float(t[i])} at index {i}")
    return t


def score_loss(net: nn.Module, obs, actions, scores) -> torch.Tensor:
    """L_score = mean over the batch of (r̂_θ(τ) − y)², r̂_θ(τ) the **mean** of r̂ over τ, y ∈ [0, 1].

    Notebook 05 (the seed's §3.2.2 (1)). ``obs`` (N, L, obs_dim), ``actions`` (N, L), ``scores`` (N,).
    """
    pred = segment_return(net, obs, actions, "mean")
    y = _targets("scores", scores, len(pred))
    return ((pred - y) ** 2).mean()


def compare_loss(net: nn.Module, obs_a, actions_a, obs_b, actions_b, labels,
                 reduce: str = "mean") -> torch.Tensor:
    r"""L_compare: Bradley-Terry cross-entropy of P(τ1 ≻ τ2) = σ(r̂(τ1) − r̂(τ2)) against y.

    Notebook 05 (the seed's §3.2.2 (2)). y = 1 when τ1 (``obs_a``) was preferred, 0 when τ2 was,
    0.5 for "equal" (then the loss is smallest when r̂(τ1) = r̂(τ2)). ``reduce`` turns r̂ per step
    into r̂(τ): ``"mean"`` (default; the seed) or ``"sum"`` (Christiano et al., TRL); for equal
    lengths L they differ only by the factor L inside σ (see the module docstring).
    Written with ``binary_cross_entropy_with_logits``, the numerically stable form of
    :math:`-y\log\sigma(\Delta) - (1-y)\log(1-\sigma(\Delta))`.
    """
    ra = segment_return(net, obs_a, actions_a, reduce)
    rb = segment_return(net, obs_b, actions_b, reduce)
    if ra.shape != rb.shape:
        raise ValueError(f"the two sides of the pairs differ in number: {len(ra)} and {len(rb)}")
    y = _targets("labels", labels, len(ra), allowed=(0.0, 0.5, 1.0))
    return F.binary_cross_entropy_with_logits(ra - rb, y)


def language_loss(net: nn.Module, obs, actions, language_scores) -> torch.Tensor:
    """L_language: the MSE of :func:`score_loss` against the scores a language model gave the comments.

    Notebook 05 (the seed's §3.2.2 (3)). ``language_scores`` (N,) in [0, 1] come from
    :meth:`rlhf_tutorial.language.LanguageScorer.score` (computed once per dataset).
    """
    pred = segment_return(net, obs, actions, "mean")
    y = _targets("language_scores", language_scores, len(pred))
    return ((pred - y) ** 2).mean()


def check_lambdas(lambdas) -> dict[str, float]:
    """Validate (λ1, λ2, λ3) and return ``{"score": λ1, "comparison": λ2, "language": λ3}``.

    Notebook 05. Accepts a sequence of three numbers or a dict keyed by feedback kind (missing
    kinds get 0). Each λ must be finite and >= 0, and at least one must be > 0.
    """
    if isinstance(lambdas, Mapping):
        unknown = set(lambdas) - set(FEEDBACK_KINDS)
        if unknown:
            raise ValueError(f"unknown feedback kind(s) {sorted(unknown)} in lambdas, expected keys from {FEEDBACK_KINDS}")
        lam = {k: lambdas.get(k, 0.0) for k in FEEDBACK_KINDS}
    elif isinstance(lambdas, (str, bytes)) or not isinstance(lambdas, (Sequence, np.ndarray)):
        raise TypeError(f"lambdas must be (λ1, λ2, λ3) or a dict kind -> λ, got {type(lambdas).__name__}")
    else:
        if len(lambdas) != 3:
            raise ValueError(f"lambdas must have 3 values (λ1 score, λ2 comparison, λ3 language), got {len(lambdas)}")
        lam = dict(zip(FEEDBACK_KINDS, lambdas))
    out = {k: _check_number(f"lambda for {k!r}", v) for k, v in lam.items()}
    neg = {k: v for k, v in out.items() if v < 0}
    if neg:
        raise ValueError(f"lambdas must be >= 0, got {neg}")
    if all(v == 0 for v in out.values()):
        raise ValueError("all lambdas are 0: at least one loss must have a positive weight")
    return out


def mixed_loss(net: nn.Module, batches: Mapping[str, Mapping], lambdas=(1.0, 1.0, 1.0),
               compare_reduce: str = "mean") -> tuple[torch.Tensor, dict[str, float]]:
    """L = λ1 L_score + λ2 L_compare + λ3 L_language on one batch of each kind; returns ``(L, parts)``.

    Notebook 05 (the seed's mixed loss). ``batches`` maps a feedback kind to its tensors:
    ``"score"``: ``obs``, ``actions``, ``scores``; ``"comparison"``: ``obs_a``, ``actions_a``,
    ``obs_b``, ``actions_b``, ``labels`` (as ``ComparisonDataset.tensors()``); ``"language"``:
    ``obs``, ``actions``, ``scores`` (the language model's). Kinds with λ = 0 may be missing;
    a kind with λ > 0 must be there. ``parts`` holds each unweighted loss as a float.
    """
    lam = check_lambdas(lambdas)
    if not isinstance(batches, Mapping):
        raise TypeError(f"batches must be a dict feedback kind -> tensors, got {type(batches).__name__}")
    unknown = set(batches) - set(FEEDBACK_KINDS)
    if unknown:
        raise ValueError(f"unknown feedback kind(s) {sorted(unknown)}, expected some of {FEEDBACK_KINDS}")
    total, parts = None, {}
    for kind in FEEDBACK_KINDS:
        if lam[kind] == 0:
            continue
        if kind not in batches:
            raise ValueError(f"lambda for {kind!r} is {lam[kind]} but there is no {kind!r} batch; "
                             "give one or set its lambda to 0")
        b = batches[kind]
        try:
            if kind == "comparison":
                loss = compare_loss(net, b["obs_a"], b["actions_a"], b["obs_b"], b["actions_b"], b["labels"],
                                    compare_reduce)
            elif kind == "score":
                loss = score_loss(net, b["obs"], b["actions"], b["scores"])
            else:
                loss = language_loss(net, b["obs"], b["actions"], b["scores"])
        except KeyError as e:
            raise ValueError(f"the {kind!r} batch is missing {e.args[0]!r}") from e
        parts[kind] = float(loss.detach())
        total = lam[kind] * loss if total is None else total + lam[kind] * loss
    return total, parts


# --------------------------------------------------------------------------- training
def _score_with(scorer, comments: list[str]) -> np.ndarray:
    fn = getattr(scorer, "score", scorer)
    if not callable(fn):
        raise TypeError(f"scorer must be a LanguageScorer or a function comments -> scores, got {type(scorer).__name__}")
    y = np.asarray(fn(comments), dtype=np.float64)
    if y.shape != (len(comments),) or not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
        raise ValueError(f"scorer must return one finite score in [0, 1] per comment, got shape {y.shape}, "
                         f"range [{np.nanmin(y) if y.size else 'nan'}, {np.nanmax(y) if y.size else 'nan'}]")
    return y


def feedback_tensors(dataset: FeedbackDataset, scorer=None) -> dict[str, torch.Tensor]:
    """The tensors of one dataset as :func:`mixed_loss` wants them (notebook 05).

    For a :class:`~rlhf_tutorial.feedback.LanguageDataset`, ``scorer`` (a
    :class:`~rlhf_tutorial.language.LanguageScorer` or any ``comments -> scores`` function) maps
    the comments to ``scores`` in [0, 1].
    """
    if isinstance(dataset, ScoreDataset):
        return dataset.tensors()
    if isinstance(dataset, ComparisonDataset):
        return dataset.tensors()
    if isinstance(dataset, LanguageDataset):
        if scorer is None:
            raise ValueError("a LanguageDataset needs a scorer (e.g. rlhf_tutorial.language.LanguageScorer()) "
                             "to turn its comments into scores")
        return {**dataset.tensors(), "scores": torch.as_tensor(_score_with(scorer, dataset.comments), dtype=torch.float32)}
    raise TypeError(f"dataset must be a ScoreDataset, ComparisonDataset or LanguageDataset, got {type(dataset).__name__}")


def _collect_datasets(data) -> dict[str, FeedbackDataset]:
    if isinstance(data, FeedbackDataset):
        data = [data]
    if isinstance(data, Mapping):
        unknown = set(data) - set(FEEDBACK_KINDS)
        if unknown:
            raise ValueError(f"unknown feedback kind(s) {sorted(unknown)}, expected some of {FEEDBACK_KINDS}")
        data = list(data.values())
    if isinstance(data, (str, bytes)) or not isinstance(data, Sequence):
        raise TypeError(f"data must be a feedback dataset or a list of them, got {type(data).__name__}")
    out: dict[str, FeedbackDataset] = {}
    for d in data:
        if not isinstance(d, FeedbackDataset):
            raise TypeError(f"data must hold feedback datasets, got {type(d).__name__}")
        if d.kind in out:
            raise ValueError(f"two {d.kind!r} datasets: give at most one dataset per feedback kind")
        if len(d) == 0:
            raise ValueError(f"the {d.kind!r} dataset is empty")
        out[d.kind] = d
    if not out:
        raise ValueError("data is empty: give at least one feedback dataset")
    return out


def _take(t: dict, idx: torch.Tensor) -> dict:
    return {k: v[idx] for k, v in t.items()}


def train_reward_model(net: nn.Module, data, lambdas=(1.0, 1.0, 1.0), *, scorer=None, epochs: int = 30,
                       batch_size: int = 32, lr: float = 3e-3, weight_decay: float = 0.0,
                       val_fraction: float = 0.2, patience: int | None = None, restore_best: bool = True,
                       compare_reduce: str = "mean", seed: int = 0, progress: bool = True) -> dict:
    """Fit ``net`` to feedback with Adam on the mixed loss; returns the training history.

    Notebook 05. ``data`` is one feedback dataset or a list (or dict) with at most one per kind;
    ``lambdas`` = (λ1, λ2, λ3) weighs L_score, L_compare, L_language (kinds with λ = 0 are not
    used, a kind with λ > 0 must be in ``data``); ``scorer`` maps language comments to scores.
    Each dataset is split once into training and validation parts (``val_fraction``; 0 for no
    validation). An epoch has as many steps as the largest training part has minibatches of
    ``batch_size``; each step takes the next minibatch of *every* kind (the smaller datasets
    cycle) and does one Adam step on their λ-weighted sum. With validation, training stops after
    ``patience`` epochs without a better validation loss (``None``: never) and the weights of the
    best epoch are restored (``restore_best``). Shuffling and splitting use ``seed`` only, so the
    result is deterministic for a given net initialisation and seed.

    The history has per epoch ``train_loss``, ``val_loss`` (NaN without validation) and per kind
    ``train_<kind>``/``val_<kind>`` (unweighted); plus ``best_epoch``, ``epochs_run``, ``lambdas``.
    """
    _check_net(net)
    lam = check_lambdas(lambdas)
    _check_reduce(compare_reduce)
    epochs, batch_size = _check_int("epochs", epochs), _check_int("batch_size", batch_size)
    lr = _check_number("lr", lr, 0.0)
    weight_decay = _check_number("weight_decay", weight_decay, 0.0)
    val_fraction = _check_number("val_fraction", val_fraction, 0.0)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    if patience is not None:
        patience = _check_int("patience", patience)
        if val_fraction == 0:
            raise ValueError("early stopping (patience) needs a validation split: set val_fraction > 0")
    seed = _check_int("seed", seed, 0)
    datasets = _collect_datasets(data)
    missing = [k for k, v in lam.items() if v > 0 and k not in datasets]
    if missing:
        raise ValueError(f"lambdas give weight to {missing} but data has no such dataset (it has {sorted(datasets)})")
    kinds = [k for k in FEEDBACK_KINDS if lam[k] > 0]

    train_t, val_t = {}, {}
    for k in kinds:
        ds = datasets[k]
        if val_fraction > 0:
            tr, va = ds.split(val_fraction, seed=seed)
            train_t[k], val_t[k] = feedback_tensors(tr, scorer), feedback_tensors(va, scorer)
        else:
            train_t[k] = feedback_tensors(ds, scorer)
    n_train = {k: len(next(iter(t.values()))) for k, t in train_t.items()}
    steps = max(math.ceil(n / batch_size) for n in n_train.values())

    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
    hist: dict = {"train_loss": [], "val_loss": [], "lambdas": lam, "compare_reduce": compare_reduce}
    for k in kinds:
        hist[f"train_{k}"], hist[f"val_{k}"] = [], []
    best, best_state, best_epoch, since_best = math.inf, None, -1, 0
    bar = progress_bar(range(epochs), desc="reward model", disable=not progress)
    for epoch in bar:
        net.train()
        perms = {k: torch.randperm(n, generator=gen) for k, n in n_train.items()}
        pos = dict.fromkeys(kinds, 0)
        sums = {"loss": 0.0, **dict.fromkeys(kinds, 0.0)}
        for _ in range(steps):
            batch = {}
            for k in kinds:
                if pos[k] >= n_train[k]:  # a smaller dataset starts its next pass
                    perms[k], pos[k] = torch.randperm(n_train[k], generator=gen), 0
                idx = perms[k][pos[k]:pos[k] + batch_size]
                pos[k] += batch_size
                batch[k] = _take(train_t[k], idx)
            loss, parts = mixed_loss(net, batch, lam, compare_reduce)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sums["loss"] += float(loss.detach())
            for k in kinds:
                sums[k] += parts[k]
        hist["train_loss"].append(sums["loss"] / steps)
        for k in kinds:
            hist[f"train_{k}"].append(sums[k] / steps)
        if val_t:
            net.eval()
            with torch.no_grad():
                vloss, vparts = mixed_loss(net, val_t, lam, compare_reduce)
            v = float(vloss)
            hist["val_loss"].append(v)
            for k in kinds:
                hist[f"val_{k}"].append(vparts[k])
            if v < best:
                best, best_epoch, since_best = v, epoch, 0
                best_state = copy.deepcopy(net.state_dict()) if restore_best else None
            else:
                since_best += 1
            bar.set_postfix(train=f"{hist['train_loss'][-1]:.3f}", val=f"{v:.3f}")
            if patience is not None and since_best >= patience:
                break
        else:
            hist["val_loss"].append(float("nan"))
            for k in kinds:
                hist[f"val_{k}"].append(float("nan"))
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state)
    net.eval()
    hist["best_epoch"] = best_epoch if val_t else len(hist["train_loss"]) - 1
    hist["epochs_run"] = len(hist["train_loss"])
    return hist


# --------------------------------------------------------------------------- evaluation
def _check_segment_list(name: str, segments) -> list[Segment]:
    if isinstance(segments, Segment) or not isinstance(segments, Sequence):
        raise TypeError(f"{name} must be a list of Segment, got {type(segments).__name__}")
    if len(segments) == 0:
        raise ValueError(f"{name} is empty")
    for i, s in enumerate(segments):
        if not isinstance(s, Segment):
            raise TypeError(f"{name}[{i}] must be a Segment, got {type(s).__name__}")
    return list(segments)


@torch.no_grad()
def predict_returns(net: nn.Module, segments: Sequence[Segment], reduce: str = "sum") -> np.ndarray:
    """Σ_t r̂_θ(s_t, a_t) (or the mean) of each segment, as a NumPy array (notebook 05).

    Segments may have different lengths (they are grouped by length).
    """
    _check_net(net)
    reduce = _check_reduce(reduce)
    segments = _check_segment_list("segments", segments)
    out = np.empty(len(segments))
    by_len: dict[int, list[int]] = {}
    for i, s in enumerate(segments):
        by_len.setdefault(len(s), []).append(i)
    for idx in by_len.values():
        obs = torch.as_tensor(np.stack([segments[i].obs for i in idx]))
        act = torch.as_tensor(np.stack([segments[i].actions for i in idx]))
        out[idx] = segment_return(net, obs, act, reduce).double().numpy()
    return out


def pairwise_accuracy(net: nn.Module, segments_a: Sequence[Segment], segments_b: Sequence[Segment],
                      true_returns=None, min_gap: float = 0.0) -> float:
    """Share of pairs that r̂ orders like the true return: sign(R̂(τa) − R̂(τb)) = sign(R(τa) − R(τb)).

    Notebook 05; evaluation against the TRUE reward, not the (noisy) labels. ``true_returns`` is
    ``(R_a, R_b)`` (two arrays) or ``None`` to use each segment's ``true_return``. Pairs whose
    true returns differ by ``min_gap`` or less are left out (the synthetic human would call them
    equal with ``min_gap = tie_margin``); a predicted tie counts as half right.
    """
    a = _check_segment_list("segments_a", segments_a)
    b = _check_segment_list("segments_b", segments_b)
    if len(a) != len(b):
        raise ValueError(f"segments_a and segments_b must have the same length, got {len(a)} and {len(b)}")
    if true_returns is None:
        ra = np.array([s.true_return for s in a])
        rb = np.array([s.true_return for s in b])
    else:
        if not isinstance(true_returns, (tuple, list)) or len(true_returns) != 2:
            raise TypeError("true_returns must be a pair (R_a, R_b) of arrays, or None")
        ra, rb = (np.asarray(_finite_tensor("true_returns", r, torch.float64)) for r in true_returns)
        if ra.shape != (len(a),) or rb.shape != (len(b),):
            raise ValueError(f"true_returns must be two arrays of shape ({len(a)},), got {ra.shape} and {rb.shape}")
    gap = _check_number("min_gap", min_gap, 0.0)
    keep = np.abs(ra - rb) > gap
    if not keep.any():
        raise ValueError(f"no pair has true returns that differ by more than min_gap={gap}")
    pa, pb = predict_returns(net, a), predict_returns(net, b)
    agree = np.sign(pa - pb) * np.sign(ra - rb)
    return float(np.where(agree == 0, 0.5, agree > 0)[keep].mean())


def spearman(x, y) -> float:
    """Spearman's rank correlation of ``x`` and ``y`` (ties get their average rank; notebook 05).

    Returns NaN when either input is constant (the correlation is undefined).
    """
    from scipy.stats import rankdata

    xa = np.asarray(_finite_tensor("x", x, torch.float64))
    ya = np.asarray(_finite_tensor("y", y, torch.float64))
    if xa.ndim != 1 or xa.shape != ya.shape:
        raise ValueError(f"x and y must be 1-D arrays of the same length, got shapes {xa.shape} and {ya.shape}")
    if len(xa) < 2:
        raise ValueError(f"need at least 2 values for a correlation, got {len(xa)}")
    rx, ry = rankdata(xa) - (len(xa) + 1) / 2, rankdata(ya) - (len(ya) + 1) / 2
    den = math.sqrt(float((rx**2).sum() * (ry**2).sum()))
    return float("nan") if den == 0 else float((rx * ry).sum() / den)


def make_eval_pairs(segments: Sequence[Segment], n_pairs: int, seed: int = 0,
                    min_gap: float = 0.0) -> tuple[list[Segment], list[Segment]]:
    """Random pairs of distinct segments (equal lengths) whose true returns differ by more than ``min_gap``.

    Notebook 05: held-out pairs for :func:`pairwise_accuracy`, drawn like the labelled ones.
    """
    segments = _check_segment_list("segments", segments)
    n_pairs = _check_int("n_pairs", n_pairs)
    gap = _check_number("min_gap", min_gap, 0.0)
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments to make pairs, got {len(segments)}")
    rng = np.random.default_rng(_check_int("seed", seed, 0))
    ret = np.array([s.true_return for s in segments])
    lengths = np.array([len(s) for s in segments])
    a, b = [], []
    for _ in range(100):
        i = rng.integers(0, len(segments), 4 * n_pairs)
        j = (i + rng.integers(1, len(segments), 4 * n_pairs)) % len(segments)
        ok = (np.abs(ret[i] - ret[j]) > gap) & (lengths[i] == lengths[j])
        for p, q in zip(i[ok], j[ok]):
            a.append(segments[p])
            b.append(segments[q])
        if len(a) >= n_pairs:
            return a[:n_pairs], b[:n_pairs]
    raise ValueError(f"could not find {n_pairs} pairs whose true returns differ by more than {gap}")


def evaluate_reward_model(net: nn.Module, pairs: tuple[Sequence[Segment], Sequence[Segment]],
                          trajectories: Sequence[Segment], min_gap: float = 0.0) -> dict[str, float]:
    """``{"pairwise_accuracy", "spearman"}`` of r̂ against the true reward (notebook 05).

    ``pairs`` = (segments_a, segments_b) for :func:`pairwise_accuracy`; ``trajectories`` for the
    Spearman correlation of Σ r̂ with the true return.
    """
    if not isinstance(pairs, (tuple, list)) or len(pairs) != 2:
        raise TypeError("pairs must be (segments_a, segments_b)")
    trajectories = _check_segment_list("trajectories", trajectories)
    return {"pairwise_accuracy": pairwise_accuracy(net, pairs[0], pairs[1], min_gap=min_gap),
            "spearman": spearman(predict_returns(net, trajectories), [s.true_return for s in trajectories])}


# --------------------------------------------------------------------------- normalization
class RewardNormalizer:
    """r ↦ (r − mean) / std · target_std, with mean and std of r̂ per step on reference data.

    Notebooks 05-06. PPO is sensitive to the scale of rewards and a Bradley-Terry reward is only
    defined up to a constant (and, with mixed losses, its scale is arbitrary), so notebook 06
    hands PPO the normalized reward: mean 0 and std ``target_std`` on the reference data (the
    segments the feedback was given on), *fixed* afterwards so the reward of a state does not
    change while the policy learns. Build it with :meth:`fit`.
    """

    def __init__(self, mean: float = 0.0, std: float = 1.0, target_std: float = 1.0):
        self.mean = _check_number("mean", mean)
        self.std = _check_number("std", std)
        self.target_std = _check_number("target_std", target_std)
        if self.std <= 0 or self.target_std <= 0:
            raise ValueError(f"std and target_std must be > 0, got {std!r} and {target_std!r}")

    @classmethod
    @torch.no_grad()
    def fit(cls, net: nn.Module, segments: Sequence[Segment], target_std: float = 1.0) -> RewardNormalizer:
        """Mean and std of r̂_θ(s_t, a_t) over every step of ``segments``."""
        _check_net(net)
        segments = _check_segment_list("segments", segments)
        obs = torch.as_tensor(np.concatenate([s.obs for s in segments]))
        act = torch.as_tensor(np.concatenate([s.actions for s in segments]))
        r = net(obs, act).double()
        std = float(r.std()) if len(r) > 1 else 0.0
        if not std > 1e-8:
            raise ValueError(f"r̂ is constant on the reference data (std {std:.3g}): it cannot be normalized")
        return cls(float(r.mean()), std, target_std)

    def __call__(self, r):
        """Normalize r̂ (a number, array or tensor)."""
        return (r - self.mean) / self.std * self.target_std

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "target_std": self.target_std}

    def __repr__(self) -> str:
        return f"RewardNormalizer(mean={self.mean:.4g}, std={self.std:.4g}, target_std={self.target_std})"


# --------------------------------------------------------------------------- reward wrappers
def _check_env_for(net: nn.Module, obs_space, act_space) -> None:
    if not isinstance(net, RewardNet):
        raise TypeError(f"net must be a RewardNet, got {type(net).__name__}")
    if int(np.prod(obs_space.shape)) != net.obs_dim:
        raise ValueError(f"the env's observations have {int(np.prod(obs_space.shape))} numbers, "
                         f"the reward net expects obs_dim={net.obs_dim}")
    if net.use_action and not (isinstance(act_space, gym.spaces.Discrete) and int(act_space.n) == net.n_actions):
        raise ValueError(f"the reward net expects Discrete({net.n_actions}) actions, the env has {act_space}")


def _check_normalizer(normalizer) -> Callable:
    if normalizer is None:
        return lambda r: r
    if not isinstance(normalizer, RewardNormalizer):
        raise TypeError(f"normalizer must be a RewardNormalizer or None, got {type(normalizer).__name__}")
    return normalizer


class LearnedRewardWrapper(gym.Wrapper):
    """Replaces the env's reward by the (normalized) learned reward r̂_θ(s_t, a_t) (notebook 06).

    The seed's §3.3.1: r_t = r̂_θ*(s_t, a_t), with s_t the observation the action was taken in.
    Observations, ``terminated``, ``truncated`` and ``info`` are passed through unchanged, except
    that ``info`` also gets ``"learned_reward"`` (r̂ before normalization) and keeps the true
    reward in ``"true_reward"`` (the env's own value if it sets one, else the reward it returned),
    so the true return can still be measured.
    """

    def __init__(self, env: gym.Env, net: RewardNet, normalizer: RewardNormalizer | None = None):
        super().__init__(env)
        _check_env_for(net, env.observation_space, env.action_space)
        self.net, self.normalize = net.eval(), _check_normalizer(normalizer)
        self._last_obs = None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last_obs = obs
        return obs, info

    def step(self, action):
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        with torch.no_grad():
            raw = float(self.net(np.asarray(self._last_obs, dtype=np.float32).reshape(-1),
                                 torch.as_tensor(int(action))))
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = dict(info)
        info.setdefault("true_reward", reward)
        info["learned_reward"] = raw
        self._last_obs = obs
        return obs, float(self.normalize(raw)), terminated, truncated, info


class LearnedRewardVectorWrapper(gym.vector.VectorWrapper):
    """:class:`LearnedRewardWrapper` for a Gymnasium vector env: one r̂ call for all copies (notebook 06).

    Knows the auto-reset modes: with ``NEXT_STEP`` (Gymnasium's default, used by
    :func:`rlhf_tutorial.rl.make_vec_env`) the step after an episode ends only resets that copy,
    its action is ignored, and the learned reward there is 0 (like the env's own reward).
    ``info["true_reward"]`` (an array) keeps the true reward, ``info["learned_reward"]`` holds r̂.
    """

    def __init__(self, env: gym.vector.VectorEnv, net: RewardNet, normalizer: RewardNormalizer | None = None):
        super().__init__(env)
        _check_env_for(net, env.single_observation_space, env.single_action_space)
        self.net, self.normalize = net.eval(), _check_normalizer(normalizer)
        mode = env.metadata.get("autoreset_mode", gym.vector.AutoresetMode.NEXT_STEP)
        self._next_step = str(getattr(mode, "value", mode)) == gym.vector.AutoresetMode.NEXT_STEP.value
        self._last_obs, self._prev_done = None, None

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._last_obs, self._prev_done = obs, np.zeros(self.num_envs, dtype=bool)
        return obs, info

    def step(self, actions):
        if self._last_obs is None:
            raise RuntimeError("call reset() before step()")
        obs_in = np.asarray(self._last_obs, dtype=np.float32).reshape(self.num_envs, -1)
        with torch.no_grad():
            raw = self.net(obs_in, torch.as_tensor(np.asarray(actions)).long()).double().numpy()
        obs, reward, terminated, truncated, info = self.env.step(actions)
        if self._next_step:
            raw = np.where(self._prev_done, 0.0, raw)
        learned = np.asarray(self.normalize(raw), dtype=np.float32)
        if self._next_step:
            learned = np.where(self._prev_done, np.float32(0.0), learned)
        info = dict(info)
        info.setdefault("true_reward", np.asarray(reward))
        info["learned_reward"] = raw
        self._last_obs = obs
        self._prev_done = np.asarray(terminated) | np.asarray(truncated)
        return obs, learned, terminated, truncated, info


# --------------------------------------------------------------------------- save / load
class RewardModelFileError(ValueError, FileNotFoundError):
    """A saved reward model is missing or unreadable (a ``ValueError``; when missing also a ``FileNotFoundError``) (notebook 05)."""


def save_reward_model(path, net: RewardNet, normalizer: RewardNormalizer | None = None) -> Path:
    """Write ``net`` (and its normalizer) to one ``.safetensors`` file, atomically (notebooks 05-06).

    The weights are tensors; the net's configuration and the normalizer go to the file's metadata.
    """
    from safetensors.torch import save_file

    if not isinstance(net, RewardNet):
        raise TypeError(f"net must be a RewardNet, got {type(net).__name__}")
    if normalizer is not None and not isinstance(normalizer, RewardNormalizer):
        raise TypeError(f"normalizer must be a RewardNormalizer or None, got {type(normalizer).__name__}")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"path must end in .safetensors, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT, "version": str(FORMAT_VERSION), "config": json.dumps(net.config()),
            "normalizer": json.dumps(normalizer.to_dict() if normalizer else None)}
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)
    return path


def load_reward_model(path) -> tuple[RewardNet, RewardNormalizer | None]:
    """Load what :func:`save_reward_model` wrote; returns ``(net, normalizer or None)`` (notebooks 05-06).

    Raises :class:`RewardModelFileError` when the file is missing, not a safetensors file, not a
    reward model, or does not match its stored configuration.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise RewardModelFileError(f"no saved reward model at {str(path)!r} (expected a .safetensors file "
                                   "written by save_reward_model)")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for a damaged header or data
        raise RewardModelFileError(f"{str(path)!r} is not a readable safetensors file (corrupt or truncated): {e}") from e
    if meta.get("format") != FORMAT:
        raise RewardModelFileError(f"{str(path)!r} is not a reward model saved by save_reward_model "
                                   f"(metadata format {meta.get('format')!r})")
    try:
        cfg = json.loads(meta["config"])
        net = RewardNet(**cfg)
        net.load_state_dict(tensors)
        norm = json.loads(meta.get("normalizer", "null"))
        normalizer = RewardNormalizer(**norm) if norm else None
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise RewardModelFileError(f"{str(path)!r} is corrupt: {type(e).__name__}: {e}") from e
    return net.eval(), normalizer
