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
- :func:`mixed_loss` L = λ1 L_score + λ2 L_compare + λ3 L_language (the seed's naive mix).

**A mix that pays off** (notebook 05). Ratings and language scores are on a rater's scale, not the
reward's, and comparisons carry a temperature, so the naive mix makes the kinds fight over the scale
of r̂. :class:`FeedbackLinks` gives each regression kind a learned link y ≈ a_k r̂_θ(τ) + b_k
(a_k = softplus(ρ_k) > 0) and comparisons a Bradley-Terry β, learned jointly with θ;
:func:`uncertainty_weighted_loss` sets the λ's from learned noise variances (Kendall et al. 2018);
:func:`mix_objective` is one step's objective, naive or calibrated, and
:func:`train_reward_model` (a :class:`RewardTrainConfig`) trains either.

**Mean or sum in L_compare.** For two segments of the same length L, Δ_sum = L · Δ_mean: the
two choices are the same Bradley-Terry model at different temperatures (Christiano et al. and
TRL use the sum). The package defaults to the seed's **mean**, for three measured reasons
(notebook 05, 50-step segments, 3 seeds): (1) trained with Adam, the factor L also multiplies
every step's change of the logits, so the sum learns like the mean at an L-times larger learning
rate and overfits noisy labels sooner: with noisy labels the mean ranked held-out pairs
better (numbers in benchmarks/README.md, "Numbers moved from docstrings"); (2) with the mean all three losses use the same
r̂_θ(τ), so their per-step gradients have comparable sizes (with the sum L_compare's gradients are
~L times larger), though the three still disagree on the *scale* of r̂, which is why a mix needs
the per-kind links below;
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
:class:`LearnedRewardWrapper` (the env's reward replaced by normalized r̂, the true one kept in
``info["true_reward"]``; its vector-env form is :class:`rlhf_tutorial.rlhf.LearnedRewardVectorWrapper`), and :func:`save_reward_model` /
:func:`load_reward_model` (safetensors, never pickle).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as V
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
    "REGRESSION_KINDS",
    "MIN_LOG_VAR",
    "WEIGHTINGS",
    "FeedbackLinks",
    "linked_regression_loss",
    "linked_compare_loss",
    "uncertainty_weighted_loss",
    "set_noise_to_residuals",
    "mix_objective",
    "RewardTrainConfig",
    "feedback_tensors",
    "train_reward_model",
    "predict_returns",
    "pairwise_accuracy",
    "spearman",
    "make_eval_pairs",
    "evaluate_reward_model",
    "RewardNormalizer",
    "LearnedRewardWrapper",
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
        self.init_args = {"obs_dim": self.obs_dim, "n_actions": self.n_actions, "hidden": list(self.hidden),
                          "use_action": use_action}  # to rebuild it (obs_scale is a buffer, in the state dict)
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


# --------------------------------------------------------------------------- a mix that pays off: links and weights
REGRESSION_KINDS = ("score", "language")
WEIGHTINGS = ("fixed", "uncertainty")
MIN_LOG_VAR = math.log(1e-4)  # σ_k ≥ 0.01 on the 0-1 scale: a kind cannot claim to be noiseless


def _inv_softplus(x: float) -> float:
    return x + math.log(-math.expm1(-x))


class FeedbackLinks(nn.Module):
    r"""Per-kind links between r̂_θ(τ) and what each kind of human answer measures (notebook 05).

    Ratings and language scores are on a *rater's* scale, not the reward's: only their order and an
    affine relation to r̂ are identified, so kind k ∈ {score, language} gets its own
    :math:`y \approx a_k\,\hat r_\theta(\tau) + b_k` with :math:`a_k = \operatorname{softplus}(\rho_k) > 0`
    (:meth:`link`); comparisons get a Bradley-Terry inverse temperature
    :math:`\beta = e^{\log\beta}`, :math:`P(\tau_1 \succ \tau_2) = \sigma(\beta\,\Delta)`
    (:meth:`beta`). ``log_var[k]`` = log σ_k² is each regression kind's learned noise variance for
    :func:`mix_objective`'s uncertainty weighting (Kendall, Gal & Cipolla 2018). All are learned
    jointly with θ. ``init_scale`` > 0 is the starting a_k.
    """

    def __init__(self, init_scale: float = 1.0, init_beta: float = 1.0):
        super().__init__()
        a = _check_number("init_scale", init_scale)
        beta = _check_number("init_beta", init_beta)
        self.init_args = {"init_scale": a, "init_beta": beta}  # to rebuild it
        if a <= 0 or beta <= 0:
            raise ValueError(f"a link scale must be > 0: init_scale and init_beta must be > 0, got {init_scale!r} "
                             f"and {init_beta!r}")
        self.raw_scale = nn.ParameterDict({k: nn.Parameter(torch.tensor(_inv_softplus(a))) for k in REGRESSION_KINDS})
        self.offset = nn.ParameterDict({k: nn.Parameter(torch.tensor(0.0)) for k in REGRESSION_KINDS})
        self.log_beta = nn.Parameter(torch.tensor(math.log(beta)))
        # σ_k² is not learned by gradient: train_reward_model sets it in closed form (set_noise)
        self.log_var = nn.ParameterDict({k: nn.Parameter(torch.tensor(0.0), requires_grad=False)
                                         for k in REGRESSION_KINDS})

    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in REGRESSION_KINDS:
            raise ValueError(f"links are for the kinds {REGRESSION_KINDS}, got {kind!r}")
        return kind

    def scale(self, kind: str) -> torch.Tensor:
        """a_k = softplus(ρ_k) > 0."""
        return F.softplus(self.raw_scale[self._kind(kind)])

    def link(self, kind: str, r_tau: torch.Tensor) -> torch.Tensor:
        """The rater-scale prediction a_k · r̂(τ) + b_k."""
        return self.scale(kind) * r_tau + self.offset[self._kind(kind)]

    def beta(self) -> torch.Tensor:
        """The Bradley-Terry inverse temperature β > 0."""
        return self.log_beta.exp()

    def set_link(self, kind: str, scale: float, offset: float = 0.0) -> None:
        """Set a_k and b_k by hand (``scale`` must be > 0), e.g. to start from a fitted line."""
        a = _check_number("scale", scale)
        if a <= 0:
            raise ValueError(f"a link scale must be > 0 (y = a·r̂ + b with a > 0 keeps the order), got scale={scale!r}")
        with torch.no_grad():
            self.raw_scale[self._kind(kind)].fill_(_inv_softplus(a))
            self.offset[kind].fill_(_check_number("offset", offset))

    @torch.no_grad()
    def set_noise(self, mse: Mapping[str, float]) -> None:
        """Set each regression kind's σ_k² to its closed-form optimum, the given mean squared residual.

        ∂/∂s_k of ½e^{-s_k}·L̃_k + ½s_k is zero at σ_k² = L̃_k (:func:`uncertainty_weighted_loss`).
        :func:`train_reward_model` calls this after every epoch with the *held-out* residuals (the
        training ones shrink as the net overfits), so λ_k = 1/(2σ_k²) weighs each kind by how well
        it predicts labels it was not trained on (notebook 05). Floored at :data:`MIN_LOG_VAR`.
        """
        for k, v in mse.items():
            v = V.number(f"mse[{k!r}]", v, 0.0)
            self.log_var[self._kind(k)].fill_(max(math.log(max(v, 1e-12)), MIN_LOG_VAR))

    def summary(self) -> dict[str, float]:
        """``{"a_score", "b_score", "a_language", "b_language", "beta", "sigma_score", "sigma_language"}`` as floats."""
        with torch.no_grad():
            out = {}
            for k in REGRESSION_KINDS:
                out[f"a_{k}"], out[f"b_{k}"] = float(self.scale(k)), float(self.offset[k])
                out[f"sigma_{k}"] = float(self.log_var[k].clamp_min(MIN_LOG_VAR).mul(0.5).exp())
            out["beta"] = float(self.beta())
            return out


def _check_links(links) -> FeedbackLinks:
    if not isinstance(links, FeedbackLinks):
        raise TypeError(f"links must be a FeedbackLinks, got {type(links).__name__}")
    return links


def linked_regression_loss(net: nn.Module, links: FeedbackLinks, kind: str, obs, actions, targets) -> torch.Tensor:
    """E[(a_k r̂_θ(τ) + b_k − y)²]: L_score or L_language through kind ``kind``'s link (notebook 05)."""
    pred = _check_links(links).link(kind, segment_return(net, obs, actions, "mean"))
    y = _targets("scores" if kind == "score" else "language_scores", targets, len(pred))
    return ((pred - y) ** 2).mean()


def linked_compare_loss(net: nn.Module, links: FeedbackLinks, obs_a, actions_a, obs_b, actions_b, labels,
                        reduce: str = "mean") -> torch.Tensor:
    """L_compare with a learned temperature: cross-entropy of σ(β (r̂(τ1) − r̂(τ2))) against y (notebook 05)."""
    ra = segment_return(net, obs_a, actions_a, reduce)
    rb = segment_return(net, obs_b, actions_b, reduce)
    y = _targets("labels", labels, len(ra), allowed=(0.0, 0.5, 1.0))
    return F.binary_cross_entropy_with_logits(_check_links(links).beta() * (ra - rb), y)


def uncertainty_weighted_loss(losses: Mapping[str, torch.Tensor], log_vars: Mapping[str, torch.Tensor],
                              shares: Mapping[str, float] | None = None) -> torch.Tensor:
    r"""Σ_k of each loss divided by its learned noise variance, plus log σ (Kendall et al. 2018; notebook 05).

    A regression kind k with mean squared error :math:`\mathcal L_k` and log variance
    :math:`s_k = \log\sigma_k^2` contributes its Gaussian negative log-likelihood per label,
    :math:`\tfrac12 e^{-s_k}\mathcal L_k + \tfrac12 s_k` (minimised at :math:`\sigma_k^2 = \mathcal L_k`,
    so a noisy kind gets the weight :math:`\lambda_k = 1/(2\sigma_k^2)` it deserves); a kind without a
    log variance (comparisons: the Bradley-Terry cross-entropy is already a likelihood, with its own
    temperature) is added as it is. ``s_k`` is clamped at :data:`MIN_LOG_VAR`. ``shares`` (optional,
    kind -> weight) multiplies each kind's term, as in :func:`mix_objective`.
    """
    total = None
    for k, loss in losses.items():
        if k in log_vars:
            s = log_vars[k].clamp_min(MIN_LOG_VAR)
            term = 0.5 * torch.exp(-s) * loss + 0.5 * s
        else:
            term = loss
        if shares is not None and k in shares:
            term = shares[k] * term
        total = term if total is None else total + term
    if total is None:
        raise ValueError("losses is empty: give at least one kind's loss")
    return total


def _kind_loss(net, kind: str, b: Mapping, links, compare_reduce: str) -> torch.Tensor:
    try:
        if kind == "comparison":
            args = (b["obs_a"], b["actions_a"], b["obs_b"], b["actions_b"], b["labels"])
            return (compare_loss(net, *args, compare_reduce) if links is None
                    else linked_compare_loss(net, links, *args, reduce=compare_reduce))
        if links is None:
            fn = score_loss if kind == "score" else language_loss
            return fn(net, b["obs"], b["actions"], b["scores"])
        return linked_regression_loss(net, links, kind, b["obs"], b["actions"], b["scores"])
    except KeyError as e:
        raise ValueError(f"the {kind!r} batch is missing {e.args[0]!r}") from e


def mix_objective(net: nn.Module, batches: Mapping[str, Mapping], lambdas=(1.0, 1.0, 1.0),
                  links: FeedbackLinks | None = None, weighting: str = "fixed",
                  compare_reduce: str = "mean", shares: Mapping[str, float] | None = None
                  ) -> tuple[torch.Tensor, dict[str, float]]:
    """The training objective of one step, naive or calibrated; returns ``(L, parts)`` (notebooks 05-06).

    ``links=None, weighting="fixed"`` is the seed's naive mix, exactly :func:`mixed_loss`. With
    ``links`` each kind's loss goes through its link (:func:`linked_regression_loss`,
    :func:`linked_compare_loss`); ``weighting="fixed"`` then weighs them with ``lambdas``, and
    ``"uncertainty"`` with the learned noise variances (:func:`uncertainty_weighted_loss`; the
    ``lambdas`` only say which kinds are used: λ_k > 0). ``batches`` as for :func:`mixed_loss`;
    ``parts`` holds each kind's (linked, unweighted) loss. ``shares`` (kind -> weight > 0, default 1)
    multiplies each kind's term: the trainer passes each kind's share of the minibatch, so that
    every label counts once (:func:`_epoch_batches`).
    """
    lam = check_lambdas(lambdas)
    if shares is not None:
        shares = {k: V.positive(f"shares[{k!r}]", v) for k, v in shares.items()}
        if shares and all(v == 1 for v in shares.values()):
            shares = None
    if shares is not None:
        lam = {k: v * shares.get(k, 1.0) for k, v in lam.items()}
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
    if weighting == "uncertainty" and links is None:
        raise ValueError("weighting='uncertainty' learns each kind's noise variance in its links: pass links")
    if links is None:
        return mixed_loss(net, batches, lam, compare_reduce)
    _check_links(links)
    if not isinstance(batches, Mapping):
        raise TypeError(f"batches must be a dict feedback kind -> tensors, got {type(batches).__name__}")
    losses = {}
    for kind in FEEDBACK_KINDS:
        if lam[kind] == 0:
            continue
        if kind not in batches:
            raise ValueError(f"lambda for {kind!r} is {lam[kind]} but there is no {kind!r} batch; "
                             "give one or set its lambda to 0")
        losses[kind] = _kind_loss(net, kind, batches[kind], links, compare_reduce)
    parts = {k: float(v.detach()) for k, v in losses.items()}
    if weighting == "uncertainty":
        return uncertainty_weighted_loss(losses, {k: links.log_var[k] for k in losses if k in REGRESSION_KINDS},
                                         shares), parts
    return sum(lam[k] * v for k, v in losses.items()), parts


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


SELECT_ON = ("total", "comparison")


@dataclass
class RewardTrainConfig:
    """Everything :func:`train_reward_model` needs besides the net and the data (notebooks 05-06).

    ``lambdas``: (λ1, λ2, λ3) or a dict kind -> λ (kinds with λ = 0 are not used);
    ``link``: learn a link per kind (:class:`FeedbackLinks`); ``weighting``: ``"fixed"`` (the λ's) or
    ``"uncertainty"`` (learned noise variances, needs ``link``); ``epochs``, ``batch_size``, ``lr``,
    ``weight_decay``: Adam on minibatches; ``val_fraction``: share of each dataset held out for
    validation (0: none); ``patience``: stop after this many epochs without a better validation
    loss (None: never); ``restore_best``: keep the best validation epoch's weights; ``select_on``:
    which validation loss picks that epoch, ``"total"`` (the objective) or ``"comparison"`` (the
    held-out comparisons' L_compare alone); ``compare_reduce``: ``"mean"`` or ``"sum"`` in
    L_compare; ``seed``: shuffling and splitting; ``progress``: a tqdm bar.
    """

    lambdas: object = (1.0, 1.0, 1.0)
    link: bool = False
    weighting: str = "fixed"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.2
    patience: int | None = None
    restore_best: bool = True
    select_on: str = "total"
    compare_reduce: str = "mean"
    seed: int = 0
    progress: bool = True

    def __post_init__(self):
        self.lambdas = check_lambdas(self.lambdas)
        self.link = V.boolean("link", self.link)
        self.weighting = V.one_of("weighting", self.weighting, WEIGHTINGS)
        if self.weighting == "uncertainty" and not self.link:
            raise ValueError("weighting='uncertainty' learns the noise variances in the links: set link=True")
        self.epochs, self.batch_size = V.integer("epochs", self.epochs, 1), V.integer("batch_size", self.batch_size, 1)
        self.lr = V.positive("lr", self.lr)
        self.weight_decay = V.number("weight_decay", self.weight_decay, 0.0)
        self.val_fraction = V.number("val_fraction", self.val_fraction, 0.0, 1.0, high_open=True)
        if self.patience is not None:
            self.patience = V.integer("patience", self.patience, 1)
            if self.val_fraction == 0:
                raise ValueError("early stopping (patience) needs a validation split: set val_fraction > 0")
        self.restore_best, self.progress = V.boolean("restore_best", self.restore_best), V.boolean("progress", self.progress)
        self.select_on = V.one_of("select_on", self.select_on, SELECT_ON)
        if self.select_on == "comparison" and self.lambdas["comparison"] == 0:
            raise ValueError("select_on='comparison' needs comparisons in the mix (lambda for 'comparison' > 0)")
        self.compare_reduce = V.one_of("compare_reduce", self.compare_reduce, REDUCTIONS)
        self.seed = V.integer("seed", self.seed, 0)

    @property
    def kinds(self) -> list[str]:
        """The feedback kinds with λ > 0, in the order of FEEDBACK_KINDS."""
        return [k for k in FEEDBACK_KINDS if self.lambdas[k] > 0]


def _make_config(config, overrides: dict) -> RewardTrainConfig:
    from dataclasses import asdict

    if config is None:
        return RewardTrainConfig(**overrides)
    if isinstance(config, RewardTrainConfig):
        return RewardTrainConfig(**{**asdict(config), **overrides}) if overrides else config
    if isinstance(config, (Sequence, Mapping, np.ndarray)) and not isinstance(config, (str, bytes)):
        return RewardTrainConfig(lambdas=config, **overrides)  # the older call train_reward_model(net, data, lambdas)
    raise TypeError(f"config must be a RewardTrainConfig (or lambdas), got {type(config).__name__}")


def _split_tensors(datasets: dict, cfg: RewardTrainConfig, scorer) -> tuple[dict, dict]:
    """Step 1: split each dataset once into training and validation tensors (same seed for every kind)."""
    train_t, val_t = {}, {}
    for k in cfg.kinds:
        if cfg.val_fraction > 0:
            tr, va = datasets[k].split(cfg.val_fraction, seed=cfg.seed)
            train_t[k], val_t[k] = feedback_tensors(tr, scorer), feedback_tensors(va, scorer)
        else:
            train_t[k] = feedback_tensors(datasets[k], scorer)
    return train_t, val_t


def _epoch_batches(train_t: dict, batch_size: int, gen: torch.Generator):
    """Step 2: one epoch of minibatches over the pooled labels; yields ``(batch, shares)``.

    An epoch is one pass over all labels, as for a single kind: ``ceil(N / batch_size)`` steps for
    N labels in all, so a mix gets as many optimizer steps as one kind with the same number of
    labels. Each step holds every kind in proportion to its count (at least one label), and
    ``shares[k]`` = K · (kind k's part of the batch) weighs its mean loss so that every label counts
    once, whatever its kind (K kinds; equal counts give shares of 1). A kind that runs out starts a
    new shuffled pass.
    """
    n = {k: len(next(iter(t.values()))) for k, t in train_t.items()}
    total = sum(n.values())
    size = {k: max(1, round(batch_size * m / total)) for k, m in n.items()}
    shares = {k: len(n) * b / sum(size.values()) for k, b in size.items()}
    steps = math.ceil(total / sum(size.values())) if len(n) > 1 else math.ceil(total / batch_size)
    perms = {k: torch.randperm(m, generator=gen) for k, m in n.items()}
    pos = dict.fromkeys(n, 0)
    for _ in range(steps):
        batch = {}
        for k in n:
            if pos[k] >= n[k]:
                perms[k], pos[k] = torch.randperm(n[k], generator=gen), 0
            batch[k] = _take(train_t[k], perms[k][pos[k]:pos[k] + size[k]])
            pos[k] += size[k]
        yield batch, shares


def _train_epoch(net, links, opt, train_t: dict, cfg: RewardTrainConfig, gen, epoch: int) -> dict[str, float]:
    """Step 3: Adam on every minibatch of one epoch; returns the mean total and per-kind losses."""
    net.train()
    sums, steps = dict.fromkeys(["loss", *cfg.kinds], 0.0), 0
    for batch, shares in _epoch_batches(train_t, cfg.batch_size, gen):
        loss, parts = mix_objective(net, batch, cfg.lambdas, links, cfg.weighting, cfg.compare_reduce, shares)
        V.check_finite_loss(loss, epoch, "reward-model loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        sums["loss"] += float(loss.detach())
        for k in cfg.kinds:
            sums[k] += parts[k]
    return {k: v / steps for k, v in sums.items()}


@torch.no_grad()
def _validation(net, links, val_t: dict, cfg: RewardTrainConfig) -> tuple[float, dict[str, float]]:
    """Step 4: the validation objective and per-kind losses; returns (the loss that selects the epoch, parts)."""
    net.eval()
    loss, parts = mix_objective(net, val_t, cfg.lambdas, links, cfg.weighting, cfg.compare_reduce)
    return (parts["comparison"] if cfg.select_on == "comparison" else float(loss)), {"loss": float(loss), **parts}


def train_reward_model(net: nn.Module, data, config: RewardTrainConfig | None = None, *, scorer=None,
                       links: FeedbackLinks | None = None, callback: Callable[[dict], object] | None = None,
                       **overrides) -> tuple[nn.Module, dict]:
    """Fit ``net`` (and the per-kind ``links``) to feedback with Adam; returns ``(net, history)`` (notebook 05).

    ``data`` is one feedback dataset or a list (or dict) with at most one per kind; ``config`` a
    :class:`RewardTrainConfig` (or just the λ's), with any of its fields overridden by keyword
    (``train_reward_model(net, data, (0, 1, 0), epochs=60)``); ``scorer`` maps language comments to
    scores. With ``config.link`` the per-kind links are learned jointly with θ: pass your own
    :class:`FeedbackLinks` as ``links`` to read them afterwards (else a fresh one is used). The
    steps: split each dataset once (:func:`_split_tensors`), then per epoch Adam over minibatches
    holding every kind (:func:`_train_epoch`), the validation loss (:func:`_validation`), early
    stopping after ``patience`` epochs and, at the end, the best epoch's weights. ``callback``
    (if given) gets ``{"epoch", "train_loss", "val_loss", ...}`` after every epoch; returning
    ``True`` stops training (the trainers' common contract). Deterministic for a given net initialisation and seed.

    ``history`` is a dict of per-epoch lists: ``train_loss``, ``val_loss`` (NaN without
    validation), ``train_<kind>``/``val_<kind>`` (unweighted), and with links the learned
    ``a_score``, ``b_score``, ``a_language``, ``b_language``, ``beta``, ``sigma_score``,
    ``sigma_language``; plus ``best_epoch``, ``epochs_run`` (ints) and ``config`` (a dict).
    """
    from dataclasses import asdict

    _check_net(net)
    cfg = _make_config(config, overrides)
    V.callable_("callback", callback, allow_none=True)
    datasets = _collect_datasets(data)
    missing = [k for k in cfg.kinds if k not in datasets]
    if missing:
        raise ValueError(f"lambdas give weight to {missing} but data has no such dataset (it has {sorted(datasets)})")
    if cfg.link:
        links = FeedbackLinks() if links is None else _check_links(links)
    elif links is not None:
        raise ValueError("links were given but config.link is False: set link=True to train them")
    train_t, val_t = _split_tensors(datasets, cfg, scorer)
    gen = torch.Generator().manual_seed(cfg.seed)
    params = list(net.parameters()) + ([p for p in links.parameters() if p.requires_grad] if links is not None else [])
    opt = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    hist = _new_history(cfg, links)
    best, best_state, since_best = math.inf, None, 0
    bar = progress_bar(range(cfg.epochs), desc="reward model", disable=not cfg.progress)
    if cfg.weighting == "uncertainty":
        _set_noise(links, net, val_t or train_t, cfg)
    for epoch in bar:
        train = _train_epoch(net, links, opt, train_t, cfg, gen, epoch)
        sel, val = _validation(net, links, val_t, cfg) if val_t else (math.nan, {})
        if cfg.weighting == "uncertainty":   # σ_k² := this epoch's held-out (else training) residual
            _set_noise(links, net, val_t or train_t, cfg)
        _record(hist, cfg, train, val, links)
        if val_t and sel < best:
            best, hist["best_epoch"], since_best = sel, epoch, 0
            if cfg.restore_best:
                best_state = (copy.deepcopy(net.state_dict()), copy.deepcopy(links.state_dict()) if links else None)
        else:
            since_best += 1
        bar.set_postfix(train=f"{train['loss']:.3f}", val=f"{val.get('loss', math.nan):.3f}")
        stop = callback is not None and bool(callback({"epoch": epoch, **{k: v[-1] for k, v in hist.items()
                                                                          if isinstance(v, list)}}))
        if stop or (cfg.patience is not None and val_t and since_best >= cfg.patience):
            break
    bar.close()
    if best_state is not None:
        net.load_state_dict(best_state[0])
        if links is not None:
            links.load_state_dict(best_state[1])
    net.eval()
    if not val_t:
        hist["best_epoch"] = len(hist["train_loss"]) - 1
    hist["epochs_run"], hist["config"] = len(hist["train_loss"]), asdict(cfg)
    return net, hist


@torch.no_grad()
def set_noise_to_residuals(net: nn.Module, links: FeedbackLinks, data: Mapping[str, tuple]) -> dict[str, float]:
    """σ_k² := each regression kind's mean squared linked residual on ``data``; returns the σ_k² (notebooks 05-06).

    ``data`` maps a kind ("score", "language") to ``(obs, actions, y)`` of labels the net was *not*
    trained on: the closed-form optimum of uncertainty weighting (:meth:`FeedbackLinks.set_noise`),
    used after every epoch by :func:`train_reward_model` and by the ensemble of notebook 06.
    """
    net.eval()
    mse = {k: float(linked_regression_loss(net, links, k, *d)) for k, d in data.items()}
    links.set_noise(mse)
    return {k: float(links.log_var[k].exp()) for k in mse}


def _set_noise(links: FeedbackLinks, net, tensors: dict, cfg: RewardTrainConfig) -> None:
    """Step 5 (weighting="uncertainty"): σ_k² of each regression kind := its held-out residual."""
    set_noise_to_residuals(net, links, {k: (tensors[k]["obs"], tensors[k]["actions"], tensors[k]["scores"])
                                        for k in cfg.kinds if k in REGRESSION_KINDS})


def _new_history(cfg: RewardTrainConfig, links) -> dict:
    hist: dict = {"train_loss": [], "val_loss": [], "best_epoch": -1}
    for k in cfg.kinds:
        hist[f"train_{k}"], hist[f"val_{k}"] = [], []
    if links is not None:
        hist.update({k: [] for k in links.summary()})
    return hist


def _record(hist: dict, cfg: RewardTrainConfig, train: dict, val: dict, links) -> None:
    hist["train_loss"].append(train["loss"])
    hist["val_loss"].append(val.get("loss", math.nan))
    for k in cfg.kinds:
        hist[f"train_{k}"].append(train[k])
        hist[f"val_{k}"].append(val.get(k, math.nan))
    if links is not None:
        for k, v in links.summary().items():
            hist[k].append(v)


# --------------------------------------------------------------------------- evaluation
def _check_segment_list(name: str, segments) -> list[Segment]:
    return V.sequence_of(name, segments, Segment)


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
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise RewardModelFileError(f"{str(path)!r} holds NaN or inf weights in {bad[:3]}; delete it and save a trained model again")
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
