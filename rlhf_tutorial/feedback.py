"""Human feedback on the shared task: segments, three synthetic humans, and datasets (notebook 04).

The seed (§2.2, §3.2.1) names three kinds of feedback on a stretch of behaviour τ:

- **score**: a rating y ∈ [0, 1] of one segment, D_score = {(τ_i, y_i)};
- **comparison**: which of two segments is better, y ∈ {0, 1} (1: τ1 is better); we add
  y = 0.5 for "about equal", D_compare = {(τ_1i, τ_2i, y_i)};
- **language**: a free-text comment on a segment, D_language = {(τ_i, feedback_i)}.

Real people are slow, so notebook 04 builds *synthetic* humans that judge a :class:`Segment` by
the task's hidden true reward (:func:`rlhf_tutorial.envs.true_reward`) and then make the kinds of
mistakes people make, each controlled by a documented parameter:

==================== ====================================================================
:class:`ScoreLabeler`   y = round_to_scale(mean true reward + bias + N(0, noise_std²))
:class:`ComparisonLabeler` with prob. ε a coin flip; else "equal" (0.5) when the true returns
                        differ by at most ``tie_margin``; else Bradley-Terry:
                        P(τ1 ≻ τ2) = σ(β (R(τ1) - R(τ2)))
:class:`LanguageLabeler` a verdict on the perceived quality (true mean + N(0, quality_noise²)),
                        plus what happened to the pole and the cart, from many paraphrase
                        templates; details dropped or left/right mixed up at set rates
==================== ====================================================================

Here R(τ) is the *sum* of true rewards over the segment (its return) and the quality of a
segment is the *mean* true reward, which is in [0, 1] like the seed's score. A segment carries its
true rewards so that the humans and the evaluation can use them; the reward model of notebook 05
must only read ``obs`` and ``actions``.

Datasets (:class:`ScoreDataset`, :class:`ComparisonDataset`, :class:`LanguageDataset`) are plain
containers with ``len``, indexing, :meth:`~FeedbackDataset.split` and
:meth:`~FeedbackDataset.save` / :func:`load_dataset`: labels and metadata go to a JSON file, the
arrays to a safetensors file beside it (never pickle), checked by a SHA-256 on load.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Mapping, Sequence

import numpy as np
import torch

from . import _validate as V
from . import envs
from .rl import ActorCritic, make_vec_env

__all__ = [
    "FEEDBACK_KINDS",
    "Segment",
    "rollout_episodes",
    "cut_segments",
    "collect_segments",
    "controller_pool",
    "policy_from_agent",
    "ppo_checkpoints",
    "ScoreLabeler",
    "ComparisonLabeler",
    "LanguageLabeler",
    "describe_segment",
    "LABEL_SECONDS",
    "LABEL_SECONDS_SOURCES",
    "HUMAN_AGREEMENT",
    "label_cost",
    "labels_for_seconds",
    "ScoreRater",
    "ComparisonRater",
    "LanguageRater",
    "COMMENT_FAMILIES",
    "RaterPanel",
    "REALISTIC_RATER_SPREAD",
    "realistic_raters",
    "rater_agreement",
    "FeedbackDataset",
    "ScoreDataset",
    "ComparisonDataset",
    "LanguageDataset",
    "make_score_dataset",
    "make_comparison_dataset",
    "make_language_dataset",
    "make_dataset",
    "load_dataset",
    "DatasetFileError",
]

FEEDBACK_KINDS = ("score", "comparison", "language")
COMPARISON_LABELS = (0.0, 0.5, 1.0)
FORMAT_VERSION = 1


# --------------------------------------------------------------------------- small validators
def _check_number(name: str, value, low: float | None = None, high: float | None = None,
                  allow_inf: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} ({value!r})")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if (low is not None and v < low) or (high is not None and v > high):
        lo = "-inf" if low is None else low
        hi = "inf" if high is None else high
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")
    return v


def _check_seed(seed) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise TypeError(f"seed must be None or an int >= 0, got {seed!r}")
    return None if seed is None else int(seed)


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


# --------------------------------------------------------------------------- segments
@dataclass
class Segment:
    """A stretch of ``length`` consecutive steps of one episode: the τ that humans give feedback on.

    Notebook 04. ``obs[t]`` is s_t (shape ``(L, obs_dim)``), ``actions[t]`` is a_t and
    ``true_rewards[t]`` the true reward the env returned for taking a_t in s_t (hidden from the
    reward model; used by the synthetic humans and for evaluation). ``source`` names the policy
    that produced it and ``start`` the episode step of ``obs[0]``. For the task of
    :mod:`rlhf_tutorial.envs` the cart position is ``obs[:, 0]`` (:attr:`x`) and the pole angle
    ``obs[:, 2]`` (:attr:`theta`), which is what :class:`LanguageLabeler` looks at.
    """

    obs: np.ndarray
    actions: np.ndarray
    true_rewards: np.ndarray
    env_id: str = envs.ENV_ID
    source: str = ""
    start: int = 0

    def __post_init__(self):
        if not isinstance(self.env_id, str) or not self.env_id:
            raise TypeError(f"env_id must be a non-empty string, got {self.env_id!r}")
        if not isinstance(self.source, str):
            raise TypeError(f"source must be a string, got {type(self.source).__name__}")
        obs = np.asarray(self.obs, dtype=np.float32)
        if obs.ndim == 1:
            obs = obs[:, None]
        if obs.ndim != 2 or obs.shape[0] < 1:
            raise ValueError(f"obs must have shape (length >= 1, obs_dim), got shape {obs.shape}")
        if not np.isfinite(obs).all():
            raise ValueError("obs contains NaN or inf")
        acts = np.asarray(self.actions)
        if acts.shape != (obs.shape[0],):
            raise ValueError(f"actions must have shape ({obs.shape[0]},) to match obs, got {acts.shape}")
        if acts.dtype.kind not in "iub" and not np.array_equal(acts, np.round(acts)):
            raise ValueError("actions must be integers (discrete actions)")
        rew = np.asarray(self.true_rewards, dtype=np.float32)
        if rew.shape != (obs.shape[0],):
            raise ValueError(f"true_rewards must have shape ({obs.shape[0]},) to match obs, got {rew.shape}")
        if not np.isfinite(rew).all():
            raise ValueError("true_rewards contains NaN or inf")
        self.obs, self.actions, self.true_rewards = obs, acts.astype(np.int64), rew
        self.start = int(self.start)

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def length(self) -> int:
        """Number of steps L."""
        return len(self)

    @property
    def true_return(self) -> float:
        """R(τ) = Σ_t r_t, what the comparison labeler compares."""
        return float(self.true_rewards.sum(dtype=np.float64))

    @property
    def true_mean(self) -> float:
        """Mean true reward, the segment's quality in [0, 1] (what the score labeler rates)."""
        return float(self.true_rewards.mean(dtype=np.float64))

    @property
    def x(self) -> np.ndarray:
        """Cart positions (``obs[:, 0]``)."""
        return self.obs[:, 0]

    @property
    def theta(self) -> np.ndarray:
        """Pole angles in radians, 0 upright (``obs[:, 2]``)."""
        return self.obs[:, 2]


def _check_segment(name: str, seg) -> Segment:
    if not isinstance(seg, Segment):
        raise TypeError(f"{name} must be a Segment, got {type(seg).__name__}")
    return seg


# --------------------------------------------------------------------------- collecting segments
Policy = Callable[[np.ndarray], np.ndarray]


def rollout_episodes(act: Policy, n_episodes: int, env_id: str = envs.ENV_ID, seed: int = 0,
                     env_kwargs: dict | None = None, max_steps: int = 100_000) -> list[dict]:
    """Run ``n_episodes`` episodes of ``act`` in parallel; return one dict of arrays per episode.

    Notebook 04. Each dict has ``obs`` (T, obs_dim), ``actions`` (T,) and ``rewards`` (T,), where
    ``obs[t]`` is the observation the action ``actions[t]`` was chosen in. ``act`` maps a batch of
    observations to a batch of actions (as in ``rl.evaluate_policy``). ``max_steps`` caps the
    episode length: an env with no time limit raises ``RuntimeError`` instead of hanging.
    """
    n_episodes = _check_positive_int("n_episodes", n_episodes)
    max_steps = _check_positive_int("max_steps", max_steps)
    if not callable(act):
        raise TypeError(f"act must be callable (obs batch -> action batch), got {type(act).__name__}")
    venv = make_vec_env(env_id, n_episodes, **(env_kwargs or {}))
    obs, _ = venv.reset(seed=seed)
    done = np.zeros(n_episodes, dtype=bool)
    buf_obs, buf_act, buf_rew, buf_alive = [], [], [], []
    while not done.all():
        if len(buf_obs) >= max_steps:
            venv.close()
            raise RuntimeError(f"rollout_episodes: episodes of {env_id} did not end within max_steps={max_steps}; "
                               "wrap the env in a TimeLimit (gymnasium.wrappers.TimeLimit) or raise max_steps")
        a = np.asarray(act(obs))
        next_obs, reward, term, trunc, _ = venv.step(a)
        buf_obs.append(np.asarray(obs, dtype=np.float32))
        buf_act.append(a.astype(np.int64))
        buf_rew.append(np.asarray(reward, dtype=np.float32))
        buf_alive.append(~done)
        done = done | np.asarray(term) | np.asarray(trunc)
        obs = next_obs
    venv.close()
    obs_arr, act_arr, rew_arr, alive = (np.stack(b) for b in (buf_obs, buf_act, buf_rew, buf_alive))
    episodes = []
    for i in range(n_episodes):
        T = int(alive[:, i].sum())
        episodes.append({"obs": obs_arr[:T, i], "actions": act_arr[:T, i], "rewards": rew_arr[:T, i]})
    return episodes


def cut_segments(episode: dict, segment_length: int, env_id: str = envs.ENV_ID, source: str = "") -> list[Segment]:
    """Cut one episode (a dict from :func:`rollout_episodes`) into consecutive, non-overlapping segments.

    Notebook 04. A leftover shorter than ``segment_length`` at the end is dropped.
    """
    L = _check_positive_int("segment_length", segment_length)
    T = len(episode["actions"])
    return [
        Segment(episode["obs"][s:s + L], episode["actions"][s:s + L], episode["rewards"][s:s + L],
                env_id=env_id, source=source, start=s)
        for s in range(0, T - L + 1, L)
    ]


def collect_segments(policies: Mapping[str, Policy], segment_length: int = 50, episodes_per_policy: int = 4,
                     env_id: str = envs.ENV_ID, seed: int = 0, env_kwargs: dict | None = None) -> list[Segment]:
    """Roll out every policy of ``policies`` and cut the episodes into segments of ``segment_length``.

    Notebook 04. ``policies`` maps a name (kept as :attr:`Segment.source`) to ``act(obs) ->
    actions``; use policies of varied quality (:func:`controller_pool`, :func:`ppo_checkpoints`)
    so that the feedback covers bad, middling and good behaviour. With the task's 200-step
    episodes and L = 50, each episode gives 4 segments (its start, where poles fall, and later).
    """
    if not isinstance(policies, Mapping) or len(policies) == 0:
        raise ValueError(f"policies must be a non-empty mapping name -> act function, got {policies!r}")
    if _check_seed(seed) is None:
        raise TypeError("seed must be an int >= 0, got None")
    segments: list[Segment] = []
    for k, (name, act) in enumerate(policies.items()):
        episodes = rollout_episodes(act, episodes_per_policy, env_id, seed + 1009 * k, env_kwargs)
        for ep in episodes:
            segments += cut_segments(ep, segment_length, env_id, source=str(name))
    if not segments:
        raise ValueError(f"no segment of length {segment_length} fits in the episodes of {env_id}")
    return segments


def controller_pool(seed: int = 0, p_random: Sequence[float] = (0.0, 0.5, 0.65, 0.8, 1.0)) -> dict[str, Policy]:
    """Hand-written policies from good to random: the PD controller with a share of random actions.

    Notebook 04; also the fast, training-free pool the tests use. Names are ``"pd"`` (no noise),
    ``"random"`` (all noise) and ``"pd+30%random"`` style names in between.
    """
    pool = {}
    for i, p in enumerate(p_random):
        _check_number("p_random", p, 0.0, 1.0)
        name = "pd" if p == 0 else "random" if p == 1 else f"pd+{round(100 * p)}%random"
        pool[name] = envs.noisy_policy(envs.pd_policy(), float(p), seed=seed + i)
    return pool


def policy_from_agent(agent: ActorCritic, deterministic: bool = False, seed: int | None = None) -> Policy:
    """Turn an :class:`~rlhf_tutorial.rl.ActorCritic` into ``act(obs) -> actions`` (notebook 04).

    Sampling uses its own seeded ``torch.Generator``, so collecting segments does not disturb (or
    depend on) the global torch RNG.
    """
    if not isinstance(agent, ActorCritic):
        raise TypeError(f"agent must be an ActorCritic, got {type(agent).__name__}")
    gen = torch.Generator().manual_seed(_check_seed(seed) or 0)

    @torch.no_grad()
    def act(obs):
        logits = agent.actor(torch.as_tensor(np.asarray(obs), dtype=torch.float32))
        if deterministic:
            return logits.argmax(-1).numpy()
        return torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(-1).numpy()

    return act


def ppo_checkpoints(config=None, at_steps: Sequence[int] = (0, 8_000, 16_000, 100_000),
                    progress: bool = False) -> dict[str, Policy]:
    """Train PPO on the true reward once and keep (stochastic) policies from several stages.

    Notebook 04: the "Part 1 policies at different training stages" of the feedback pool. Returns
    ``{"ppo@0k": act, "ppo@8k": act, ...}``; a snapshot is taken at the first update at or after
    each step (0 is the untrained, near-random policy). ``config`` defaults to
    :data:`rlhf_tutorial.ppo.TASK_PPO_CONFIG` with ``total_timesteps = max(at_steps)``.
    """
    from dataclasses import replace

    from .ppo import TASK_PPO_CONFIG, train_ppo
    from .rl import require_discrete

    steps = sorted(int(s) for s in at_steps)
    if not steps or steps[0] < 0:
        raise ValueError(f"at_steps must be a non-empty list of steps >= 0, got {at_steps!r}")
    cfg = config or replace(TASK_PPO_CONFIG, total_timesteps=max(steps[-1], 1), eval_every=0)
    probe = make_vec_env(cfg.env_id, 1, **cfg.env_kwargs)
    n_actions = require_discrete(probe.single_action_space, "ppo_checkpoints")
    obs_dim = int(np.prod(probe.single_observation_space.shape))
    probe.close()
    torch.manual_seed(cfg.seed)
    agent = ActorCritic(obs_dim, n_actions, cfg.hidden)
    snaps: dict[int, ActorCritic] = {}
    pending = list(steps)

    def take(step: int) -> None:
        while pending and pending[0] <= step:
            snaps[pending.pop(0)] = copy.deepcopy(agent)

    take(0)
    if pending:
        train_ppo(cfg, callback=lambda st: take(st["global_step"]), progress=progress, agent=agent)
    take(10**18)  # whatever is left (training stopped early or at_steps beyond the run)
    return {f"ppo@{s // 1000}k" if s % 1000 == 0 else f"ppo@{s}": policy_from_agent(a, seed=s)
            for s, a in sorted(snaps.items())}


# --------------------------------------------------------------------------- synthetic humans
class ScoreLabeler:
    """A synthetic human who rates one segment on a fixed scale in [0, 1] (notebook 04).

    The rating of segment τ is ``round_to_scale(q(τ) + bias + ε)`` with q(τ) the mean true reward,
    ``ε ~ N(0, noise_std²)`` fresh for every query, ``bias`` this rater's constant optimism (> 0)
    or strictness (< 0), and rounding to ``levels`` evenly spaced values (11: 0, 0.1, ..., 1, a 0-10
    rating divided by 10; ``None``: no rounding), clipped to [0, 1].
    """

    def __init__(self, noise_std: float = 0.05, bias: float = 0.0, levels: int | None = 11,
                 seed: int | None = None):
        self.noise_std = _check_number("noise_std", noise_std, 0.0)
        self.bias = _check_number("bias", bias, -1.0, 1.0)
        if levels is not None and (isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 2):
            raise ValueError(f"levels must be None or an int >= 2, got {levels!r}")
        self.levels = None if levels is None else int(levels)
        self.rng = np.random.default_rng(_check_seed(seed))

    def quality(self, segment: Segment) -> float:
        """The noiseless quality q(τ): the segment's mean true reward."""
        return _check_segment("segment", segment).true_mean

    def round_to_scale(self, value: float) -> float:
        """Clip to [0, 1] and round to the nearest of ``levels`` points of the scale."""
        v = min(max(float(value), 0.0), 1.0)
        if self.levels is None:
            return v
        k = self.levels - 1
        return round(v * k) / k

    def label(self, segment: Segment) -> float:
        """One noisy rating y ∈ [0, 1] of ``segment``."""
        q = self.quality(segment)
        return self.round_to_scale(q + self.bias + self.noise_std * self.rng.standard_normal())

    def label_many(self, segments: Sequence[Segment]) -> np.ndarray:
        """Ratings of several segments (one query each)."""
        return np.array([self.label(s) for s in segments], dtype=np.float64)

    def __repr__(self) -> str:
        return f"ScoreLabeler(noise_std={self.noise_std}, bias={self.bias}, levels={self.levels})"


class ComparisonLabeler:
    r"""A synthetic human who says which of two segments is better (notebook 04).

    Each query is answered in three stages:

    1. with probability ``epsilon`` (default 10 %) the human is not paying attention and answers
       with a fair coin, 0 or 1;
    2. otherwise, if the true returns differ by at most ``tie_margin`` (in return units, i.e.
       summed reward), the answer is 0.5, "equal";
    3. otherwise the human prefers τ1 with the Bradley-Terry probability
       :math:`P(\tau_1 \succ \tau_2) = \sigma(\beta\,(R(\tau_1) - R(\tau_2)))`; the rationality
       ``beta`` = ``inf`` always picks the better segment, 0 answers at random.

    The label is 1.0 when τ1 is preferred, 0.0 when τ2 is (the seed's y), 0.5 for equal.
    """

    def __init__(self, beta: float = 1.0, epsilon: float = 0.1, tie_margin: float = 0.5,
                 seed: int | None = None):
        self.beta = _check_number("beta", beta, 0.0, allow_inf=True)
        self.epsilon = _check_number("epsilon", epsilon, 0.0, 1.0)
        self.tie_margin = _check_number("tie_margin", tie_margin, 0.0)
        self.rng = np.random.default_rng(_check_seed(seed))

    def preference_probability(self, segment_a: Segment, segment_b: Segment) -> float:
        """Bradley-Terry P(τ1 ≻ τ2) = σ(β ΔR) of an attentive human, ignoring ties."""
        V.segment_pair(segment_a, segment_b, Segment)
        diff = segment_a.true_return - segment_b.true_return
        if math.isinf(self.beta):
            return 1.0 if diff > 0 else 0.0 if diff < 0 else 0.5
        z = self.beta * diff
        return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))

    def is_tie(self, segment_a: Segment, segment_b: Segment) -> bool:
        """True when an attentive human would say "equal": ``|R(τ1) - R(τ2)| <= tie_margin``."""
        V.segment_pair(segment_a, segment_b, Segment)
        return abs(segment_a.true_return - segment_b.true_return) <= self.tie_margin

    def label_with_info(self, segment_a: Segment, segment_b: Segment) -> dict:
        """One query; returns ``{"label", "random", "tie", "p_first"}`` to show how it was made."""
        p = self.preference_probability(segment_a, segment_b)
        if self.rng.random() < self.epsilon:
            return {"label": float(self.rng.integers(0, 2)), "random": True, "tie": False, "p_first": p}
        if self.is_tie(segment_a, segment_b):
            return {"label": 0.5, "random": False, "tie": True, "p_first": p}
        return {"label": float(self.rng.random() < p), "random": False, "tie": False, "p_first": p}

    def label(self, segment_a: Segment, segment_b: Segment) -> float:
        """One query: 1.0 (τ1 better), 0.0 (τ2 better) or 0.5 (equal)."""
        return self.label_with_info(segment_a, segment_b)["label"]

    def __repr__(self) -> str:
        return f"ComparisonLabeler(beta={self.beta}, epsilon={self.epsilon}, tie_margin={self.tie_margin})"


# Angles and positions that the language labeler's words refer to.
FALLEN_ANGLE = math.pi / 2  # below horizontal: the pole has fallen
WOBBLE_ANGLE = 0.1  # ~6°: more than this while up counts as wobbling
CENTRED_X = 0.5  # |x| below this the whole time: stayed in the middle
DRIFT_X = 0.8  # moved this far overall: drifted
WALL_X = envs.X_LIMIT - 0.01  # reached the bumpers


def describe_segment(segment: Segment) -> dict:
    """What happened in a segment of the task, as the language labeler sees it (notebook 04).

    Returns ``{"pole": ..., "fell_at": ..., "cart": ..., "side": ...}`` with ``pole`` one of
    ``"steady"`` (up, |θ| < 6° all along), ``"wobbly"`` (up, but leaning more), ``"fell_early"``,
    ``"fell_mid"``, ``"fell_late"`` (fell in the first, middle or last third; ``fell_at`` is the
    step), ``"down"`` (down the whole time), ``"recovered"`` (down, then up again); and ``cart``
    one of ``"wall"``, ``"drifted"``, ``"centred"``, ``"wandered"`` with ``side`` "left"/"right"
    (or ``None``).
    """
    seg = _check_segment("segment", segment)
    if seg.obs.shape[1] != 4:
        raise ValueError(f"describe_segment needs the cart-pole observation [x, x_dot, theta, theta_dot], "
                         f"got obs_dim {seg.obs.shape[1]}")
    theta, x = np.abs(seg.theta.astype(np.float64)), seg.x.astype(np.float64)
    L = len(seg)
    down = theta > FALLEN_ANGLE
    fell_at = None
    if not down.any():
        pole = "steady" if theta.max() < WOBBLE_ANGLE else "wobbly"
    elif down[0]:
        pole = "recovered" if not down[-max(1, L // 5):].any() else "down"
    else:
        fell_at = int(np.argmax(down))
        pole = "fell_early" if fell_at < L / 3 else "fell_mid" if fell_at < 2 * L / 3 else "fell_late"
    side = None
    if np.abs(x).max() >= WALL_X:
        cart = "wall"
        side = "left" if x[np.argmax(np.abs(x))] < 0 else "right"
    elif abs(x[-1] - x[0]) >= DRIFT_X:
        cart = "drifted"
        side = "left" if x[-1] < x[0] else "right"
    elif np.abs(x).max() < CENTRED_X:
        cart = "centred"
    else:
        cart = "wandered"
        side = "left" if x[np.argmax(np.abs(x))] < 0 else "right"
    return {"pole": pole, "fell_at": fell_at, "cart": cart, "side": side}


_VERDICTS = (  # (lowest perceived quality, paraphrases)
    (0.9, ("Excellent", "Great job", "Really well done", "Near perfect", "Superb")),
    (0.7, ("Good", "Pretty good", "Nicely done", "Solid work", "Not bad at all")),
    (0.4, ("Mediocre", "So-so", "Could be better", "Only okay", "Middling")),
    (0.15, ("Poor", "Not good", "Pretty bad", "Disappointing", "Weak")),
    (-1.0, ("Terrible", "Awful", "Very bad", "A total failure", "Hopeless")),
)
_POLE = {
    "steady": ("kept the pole up almost the whole time", "the pole stayed perfectly upright",
               "balanced the pole steadily", "the pole barely moved from vertical",
               "held the pole straight up throughout"),
    "wobbly": ("the pole wobbled but stayed up", "kept the pole up, though it leaned quite a bit",
               "balanced the pole a bit shakily", "the pole swayed but never fell",
               "the pole stayed up with some wobbling"),
    "fell_early": ("fell over right away", "the pole dropped almost immediately",
                   "lost the pole at the very start", "the pole toppled straight away",
                   "could not keep the pole up for even a moment"),
    "fell_mid": ("the pole fell over halfway through", "kept the pole up for a while, then it fell",
                 "lost the pole in the middle", "the pole toppled midway",
                 "balanced for a bit before the pole fell"),
    "fell_late": ("the pole fell near the end", "held the pole up until it fell late on",
                  "lost the pole just before the end", "the pole only toppled at the end",
                  "balanced most of the time but dropped the pole at the end"),
    "down": ("the pole was hanging down the whole time", "the pole never got back up",
             "the pole stayed down throughout", "nothing but a dangling pole",
             "the pole just hung there"),
    "recovered": ("swung the pole back up", "got the pole upright again after it was down",
                  "recovered the fallen pole", "brought the pole back up",
                  "lifted the pole back to vertical"),
}
_CART = {
    "wall": ("and the cart crashed into the {side} end of the track", "then the cart slammed into the {side} wall",
             "and the cart ran off to the {side} end", "and the cart hit the {side} bumper",
             "and the cart ended up stuck at the {side} edge"),
    "drifted": ("then the cart drifted off to the {side}", "while the cart slid to the {side}",
                "and the cart wandered off to the {side}", "and the cart crept to the {side}",
                "while the cart drifted {side}"),
    "centred": ("and the cart stayed in the middle", "with the cart nicely centred",
                "and the cart kept near the centre", "without the cart leaving the middle",
                "and the cart stayed put in the centre"),
    "wandered": ("and the cart strayed a little to the {side}", "with the cart a bit off to the {side}",
                 "and the cart moved around on the {side} side", "while the cart sat off-centre to the {side}",
                 "and the cart wandered {side} of centre"),
}


class LanguageLabeler:
    """A synthetic human who writes a free-text comment on a segment (notebook 04).

    The comment is ``"<verdict>: <what the pole did> <what the cart did>."``, each part chosen at
    random among several paraphrases:

    - the *verdict* (excellent, good, mediocre, poor, terrible) comes from the perceived quality
      ``q(τ) + N(0, quality_noise²)`` with q(τ) the mean true reward, cut at 0.9, 0.7, 0.4, 0.15;
    - the *pole* and *cart* parts describe what actually happened (:func:`describe_segment`);
      the cart part is included with probability ``detail_prob``, and "left"/"right" are swapped
      with probability ``mixup_prob`` (a slip of the tongue).

    Notebook 05 maps these comments to a score (the seed's language-model step) before the MSE.
    """

    def __init__(self, quality_noise: float = 0.05, detail_prob: float = 0.8, mixup_prob: float = 0.05,
                 seed: int | None = None):
        self.quality_noise = _check_number("quality_noise", quality_noise, 0.0)
        self.detail_prob = _check_number("detail_prob", detail_prob, 0.0, 1.0)
        self.mixup_prob = _check_number("mixup_prob", mixup_prob, 0.0, 1.0)
        self.rng = np.random.default_rng(_check_seed(seed))

    def _pick(self, options: Sequence[str]) -> str:
        return options[int(self.rng.integers(len(options)))]

    def label_with_info(self, segment: Segment) -> dict:
        """One comment and how it was made: ``{"text", "verdict", "perceived_quality", **events}``."""
        events = describe_segment(segment)
        perceived = segment.true_mean + self.quality_noise * self.rng.standard_normal()
        level = next(i for i, (lo, _) in enumerate(_VERDICTS) if perceived >= lo)
        verdict = self._pick(_VERDICTS[level][1])
        text = f"{verdict}: {self._pick(_POLE[events['pole']])}"
        if self.rng.random() < self.detail_prob:
            side = events["side"]
            if side is not None and self.rng.random() < self.mixup_prob:
                side = "right" if side == "left" else "left"
            text += " " + self._pick(_CART[events["cart"]]).format(side=side)
        return {"text": text + ".", "verdict": ("excellent", "good", "mediocre", "poor", "terrible")[level],
                "perceived_quality": float(perceived), **events}

    def label(self, segment: Segment) -> str:
        """One free-text comment on ``segment``."""
        return self.label_with_info(segment)["text"]

    def __repr__(self) -> str:
        return (f"LanguageLabeler(quality_noise={self.quality_noise}, detail_prob={self.detail_prob}, "
                f"mixup_prob={self.mixup_prob})")


# --------------------------------------------------------------------------- raters that err the way people do
# The defaults below come from published measurements where they exist and are *assumed* (stated as
# such) where they do not; they were fixed before any reward model was trained on them and are never
# tuned to favour one kind of feedback (notebook 04 explains them, notebook 05 uses them).
LABEL_SECONDS: dict[str, float] = {"score": 6.0, "comparison": 4.0, "language": 20.0}
"""Human seconds per label of each kind (notebooks 04-05): what "equal human time" is measured in."""

LABEL_SECONDS_SOURCES: dict[str, str] = {
    "comparison": ("Christiano et al. 2017 (Deep RL from human preferences): the Hopper backflip was "
                   "trained from 900 queries 'in under an hour' of human time, i.e. about 4 s per pair of "
                   "1-2 s clips"),
    "score": ("assumed: watching one clip like a comparison, plus choosing a number on a 0-10 scale; "
              "we assume 6 s (no published timing of this task)"),
    "language": ("assumed: watching the clip and typing a sentence of ~10 words at ~40 words per minute "
                 "(~15 s) plus reading it over; we assume 20 s"),
}
"""Where each number of :data:`LABEL_SECONDS` comes from: a reference, or an estimate stated as assumed."""

HUMAN_AGREEMENT = {"instructgpt_training_labelers": 0.726, "instructgpt_heldout_labelers": 0.773,
                   "stiennon_researchers_vs_labelers": 0.77}
"""Published agreement of two people on which of two outputs is better (notebook 04): Ouyang et al.
2022 (InstructGPT) report 72.6 ± 1.5 % among training labelers and 77.3 ± 1.3 % for held-out
labelers; Stiennon et al. 2020 (summarization) about 77 % between labelers and researchers."""


def label_cost(kind: str, n_labels: int) -> float:
    """Human seconds that ``n_labels`` labels of ``kind`` cost, with :data:`LABEL_SECONDS` (notebooks 04-05)."""
    kind = _check_kind(kind)
    return LABEL_SECONDS[kind] * V.integer("n_labels", n_labels, low=0)


def labels_for_seconds(kind: str, seconds: float) -> int:
    """How many labels of ``kind`` fit in ``seconds`` of human time (rounded down; notebooks 04-05)."""
    kind = _check_kind(kind)
    return int(V.number("seconds", seconds, 0.0) // LABEL_SECONDS[kind])


class ScoreRater(ScoreLabeler):
    """One person who rates segments: an offset, a scale use and a drift of their own (notebook 04).

    Rating number t (t = 0, 1, ... in the order asked) of a segment with quality q is

        y = round_to_scale(0.5 + scale · (q − 0.5) + offset + drift · t / 100 + N(0, noise_std²)).

    ``offset`` is leniency (> 0) or severity (< 0), ``scale`` < 1 is the central tendency of a
    rater who avoids the ends of the scale (> 1: extreme responding), and ``drift`` is the change
    of the offset per 100 ratings (raters grow stricter or milder over a session). These are the
    "rater effects" of the psychometrics literature (Saal, Downey & Lahey 1980, *Rating the
    ratings*; Myford & Wolfe 2003/2004, many-facet Rasch measurement of severity, central tendency
    and drift; Wolfe, Moulder & Myford 2001 on drift over time). ``name`` labels the rater.
    """

    def __init__(self, offset: float = 0.0, scale: float = 1.0, drift: float = 0.0, noise_std: float = 0.1,
                 levels: int | None = 11, seed: int | None = None, name: str = ""):
        super().__init__(noise_std=noise_std, bias=offset, levels=levels, seed=seed)
        self.offset = self.bias
        self.scale = V.positive("scale", scale)
        self.drift = V.number("drift", drift, -1.0, 1.0)
        self.name = V.text("name", name, allow_empty=True)
        self.n_labelled = 0

    def label(self, segment: Segment) -> float:
        """One rating y ∈ [0, 1]; each call moves the rater one step along their drift."""
        q = self.quality(segment)
        shift = self.offset + self.drift * self.n_labelled / 100.0
        self.n_labelled += 1
        return self.round_to_scale(0.5 + self.scale * (q - 0.5) + shift + self.noise_std * self.rng.standard_normal())

    def __repr__(self) -> str:
        return (f"ScoreRater({self.name!r}, offset={self.offset:+.3f}, scale={self.scale:.3f}, "
                f"drift={self.drift:+.3f}/100, noise_std={self.noise_std})")


class ComparisonRater(ComparisonLabeler):
    """One person who compares segments: their own attention lapses, rationality and tie habit (notebook 04).

    A :class:`ComparisonLabeler` with a ``name``; the defaults of :func:`realistic_raters` make
    two such raters agree on about as many random pairs as the labelers of InstructGPT did
    (:data:`HUMAN_AGREEMENT`; notebook 04 measures it on our pool).
    """

    def __init__(self, beta: float = 1.0, epsilon: float = 0.1, tie_margin: float = 0.5,
                 seed: int | None = None, name: str = ""):
        super().__init__(beta=beta, epsilon=epsilon, tie_margin=tie_margin, seed=seed)
        self.name = V.text("name", name, allow_empty=True)

    def __repr__(self) -> str:
        return (f"ComparisonRater({self.name!r}, beta={self.beta:.3f}, epsilon={self.epsilon:.3f}, "
                f"tie_margin={self.tie_margin:.3f})")


_NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
COMMENT_FAMILIES = ("plain", "negation", "degree", "comparative", "numeric", "mixed")
"""The ways a :class:`LanguageRater` words its verdict (notebooks 04-05)."""

_NEG_VERDICTS = (  # (lowest perceived quality, verdicts phrased with a negation)
    (0.8, ("Couldn't have been better", "Nothing wrong with it", "Not a single mistake")),
    (0.6, ("Not bad at all", "Not half bad", "Can't complain")),
    (0.4, ("Not great, not terrible", "Not really good", "Nothing special")),
    (0.2, ("Not good", "Not good enough", "I didn't like it")),
    (-1.0, ("Not even close", "Nothing worked", "Not good at all")),
)
_DEGREE_VERDICTS = (
    (0.9, ("Extremely good", "Really, really good", "Absolutely great")),
    (0.7, ("Fairly good", "Quite good", "Reasonably good")),
    (0.5, ("Slightly above average", "A little better than okay", "Somewhat okay")),
    (0.3, ("Somewhat bad", "A bit poor", "Slightly bad")),
    (0.12, ("Quite bad", "Really poor", "Very weak")),
    (-1.0, ("Extremely bad", "Utterly awful", "Absolutely terrible")),
)
_COMPARATIVE_VERDICTS = (
    (0.85, ("Far better than a typical run", "Much better than average", "Way better than most I've seen")),
    (0.6, ("Better than average", "A bit better than a typical run", "Slightly better than most")),
    (0.4, ("About average", "Roughly like a typical run", "On par with most of them")),
    (0.2, ("Worse than average", "A bit worse than a typical run", "Below most of the others")),
    (-1.0, ("Much worse than average", "Far worse than a typical run", "Worse than nearly all of them")),
)
_MIXED = {  # what happened -> (verdict that mixes praise and blame, its rough meaning)
    "fell_late": ("Great balance for most of it, but it lost the pole near the end",
                  "Started really well, then dropped the pole at the end", "Good for a long time, bad finish"),
    "fell_mid": ("Good start, but the pole fell halfway", "Fine at first, then it fell apart",
                 "Promising beginning, poor second half"),
    "fell_early": ("Bad start, and it never got better", "Decent cart control, but the pole fell at once",
                   "The cart was fine, the pole was not"),
    "recovered": ("Bad start, but it got the pole back up", "Poor at first, better later",
                  "It fell, but recovered nicely"),
    "wobbly": ("The pole stayed up, but it was shaky", "Balanced, though far from smooth",
               "Kept it up, but wobbled a lot"),
    "steady": ("Rock steady, though the cart moved a bit", "Great balance, minor drift",
               "Excellent, with a small wobble"),
    "down": ("The cart moved nicely, but the pole never came up", "Some effort, no result",
             "Lively, but the pole just hung there"),
}


def _verdict(table, q: float, pick) -> str:
    return pick(next(v for lo, v in table if q >= lo))


class LanguageRater(LanguageLabeler):
    """One person who writes comments: leniency, noise, and their own way of wording a verdict (notebook 04).

    The perceived quality is ``q + offset + N(0, quality_noise²)``. The verdict is worded in one of
    :data:`COMMENT_FAMILIES`, drawn with probabilities ``style`` (a dict family -> weight): the
    plain verdicts of :class:`LanguageLabeler`; **negated** ones ("Not bad at all"); **degree**
    words ("Slightly bad"); **comparative** ones relative to a stated reference ("Better than
    average": the reference is the rater's idea of a typical run, not the previous clip, so the
    comment carries a level); **numeric** ratings in digits or words ("7/10", "seven out of ten",
    "3 out of 5"); and **mixed** verdicts that praise one part and blame another ("Good start, but
    the pole fell halfway"). A description of the pole and cart follows as in
    :class:`LanguageLabeler`, except for mixed verdicts, which are their own description.
    """

    def __init__(self, offset: float = 0.0, quality_noise: float = 0.08, style: Mapping[str, float] | None = None,
                 detail_prob: float = 0.6, mixup_prob: float = 0.05, seed: int | None = None, name: str = ""):
        super().__init__(quality_noise=quality_noise, detail_prob=detail_prob, mixup_prob=mixup_prob, seed=seed)
        self.offset = V.number("offset", offset, -1.0, 1.0)
        style = dict.fromkeys(COMMENT_FAMILIES, 1.0) if style is None else dict(V.instance("style", style, Mapping))
        unknown = set(style) - set(COMMENT_FAMILIES)
        if unknown:
            raise ValueError(f"style has unknown families {sorted(unknown)}, expected some of {COMMENT_FAMILIES}")
        w = np.array([V.number(f"style[{k!r}]", style.get(k, 0.0), 0.0) for k in COMMENT_FAMILIES])
        if w.sum() <= 0:
            raise ValueError(f"style must give a positive weight to at least one family, got {style}")
        self.style = dict(zip(COMMENT_FAMILIES, (w / w.sum()).tolist()))
        self.name = V.text("name", name, allow_empty=True)

    def _numeric(self, q: float) -> str:
        out_of = (10, 10, 5)[int(self.rng.integers(3))]
        k = int(round(min(max(q, 0.0), 1.0) * out_of))
        form = int(self.rng.integers(3))
        if form == 0:
            return f"{k}/{out_of}"
        if form == 1:
            return f"{_NUMBER_WORDS[k].capitalize()} out of {_NUMBER_WORDS[out_of]}"
        return f"I'd give it {k} out of {out_of}"

    def label_with_info(self, segment: Segment) -> dict:
        """One comment and how it was made: ``{"text", "family", "perceived_quality", **events}``."""
        events = describe_segment(segment)
        q = segment.true_mean + self.offset + self.quality_noise * self.rng.standard_normal()
        family = COMMENT_FAMILIES[int(self.rng.choice(len(COMMENT_FAMILIES), p=list(self.style.values())))]
        if family == "mixed":
            return {"text": self._pick(_MIXED[events["pole"]]) + ".", "family": family,
                    "perceived_quality": float(q), **events}
        if family == "numeric":
            verdict = self._numeric(q)
        elif family == "plain":
            verdict = self._pick(next(v for lo, v in _VERDICTS if q >= lo))
        else:
            table = {"negation": _NEG_VERDICTS, "degree": _DEGREE_VERDICTS, "comparative": _COMPARATIVE_VERDICTS}
            verdict = _verdict(table[family], q, self._pick)
        text = verdict
        if self.rng.random() < self.detail_prob:
            text += ": " + self._pick(_POLE[events["pole"]])
        return {"text": text + ".", "family": family, "perceived_quality": float(q), **events}

    def __repr__(self) -> str:
        return f"LanguageRater({self.name!r}, offset={self.offset:+.3f}, quality_noise={self.quality_noise})"


class RaterPanel:
    """Several raters of one kind sharing the labelling work (notebooks 04-06).

    Each query goes to one rater of ``raters``, drawn at random (``seed``); :attr:`rater_ids`
    records who answered each query, in order. ``label(segment)`` (scores, comments) or
    ``label(segment_a, segment_b)`` (comparisons) asks one query; :func:`make_dataset` and the
    ``make_*_dataset`` builders accept a panel wherever they accept a single labeler.
    """

    def __init__(self, raters: Sequence, seed: int | None = None):
        if isinstance(raters, (str, bytes)) or not isinstance(raters, Sequence):
            raise TypeError(f"raters must be a list of raters, got {type(raters).__name__}")
        if len(raters) == 0:
            raise ValueError("a RaterPanel needs at least one rater, got an empty list")
        kinds = [next((k for k, c in _LABELER_CLASSES.items() if isinstance(r, c)), None) for r in raters]
        if None in kinds or len(set(kinds)) != 1:
            raise TypeError(f"raters must all be labelers of one kind (ScoreLabeler, ComparisonLabeler or "
                            f"LanguageLabeler), got {[type(r).__name__ for r in raters]}")
        self.raters, self.kind = list(raters), kinds[0]
        self.rng = np.random.default_rng(V.seed("seed", seed))
        self.rater_ids: list[int] = []

    def _next(self):
        i = int(self.rng.integers(len(self.raters)))
        self.rater_ids.append(i)
        return self.raters[i]

    def label(self, *segments: Segment):
        """One query answered by a randomly drawn rater (one segment, or two for comparisons)."""
        need = 2 if self.kind == "comparison" else 1
        if len(segments) != need:
            raise TypeError(f"a {self.kind} panel labels {need} segment(s) per query, got {len(segments)}")
        return self._next().label(*segments)

    def label_with_info(self, *segments: Segment) -> dict:
        """One query and how it was made, with ``"rater"``: the index of the rater who answered."""
        rater = self._next()
        return {**rater.label_with_info(*segments), "rater": self.rater_ids[-1]}

    def label_many(self, segments: Sequence[Segment]) -> np.ndarray:
        """Scores of several segments (score panels only)."""
        if self.kind != "score":
            raise TypeError(f"label_many is for score panels, this panel labels {self.kind}")
        return np.array([self.label(s) for s in _check_segments("segments", segments)], dtype=np.float64)

    def counts(self) -> dict[int, int]:
        """How many queries each rater answered so far."""
        return {i: self.rater_ids.count(i) for i in range(len(self.raters))}

    def __len__(self) -> int:
        return len(self.raters)

    def __repr__(self) -> str:
        return f"RaterPanel({self.kind}, {len(self.raters)} raters, {len(self.rater_ids)} queries answered)"


_LABELER_CLASSES = {"score": ScoreLabeler, "comparison": ComparisonLabeler, "language": LanguageLabeler}

REALISTIC_RATER_SPREAD = {
    "score": {"offset_std": 0.1, "log_scale_std": 0.25, "drift_std": 0.03, "noise_std": 0.1},
    "comparison": {"epsilon": 0.2, "beta": 0.5, "tie_margin": 1.0},
    "language": {"offset_std": 0.08, "quality_noise": 0.1},
}
"""How raters of :func:`realistic_raters` differ (notebook 04). Scores: offset ~ N(0, 0.1²) and
log scale ~ N(0, 0.25²) on the 0-1 scale, drift ~ N(0, 0.03²) per 100 ratings, noise std 0.1
(assumed magnitudes: rater severity and scale use differ by a sizeable share of the scale in the
studies of :class:`ScoreRater`; not measured on this task). Comparisons: each rater flips a coin
on ``epsilon`` = 20 % of the queries, answers Bradley-Terry with β = 0.5 otherwise and calls pairs
within 1 point of return "equal"; ε was chosen (before any reward model was trained) so that two
raters agree on random pairs of notebook 05's pool about as often as :data:`HUMAN_AGREEMENT`
reports for people, the middle of 72.6-77.3 % (notebook 04 measures it). Language: offset
~ N(0, 0.08²), perceived-quality noise 0.1, every wording family equally likely (assumed)."""


def realistic_raters(kind: str, n_raters: int = 5, seed: int = 0) -> RaterPanel:
    """A panel of ``n_raters`` raters of ``kind`` who differ as :data:`REALISTIC_RATER_SPREAD` says (notebooks 04-06).

    Each rater's own parameters are drawn with ``seed``; each rater's answers use their own seed
    derived from it, so the same ``seed`` gives the same panel and the same answers.
    """
    kind = _check_kind(kind)
    n = V.integer("n_raters", n_raters, low=1)
    rng = np.random.default_rng(V.integer("seed", seed, low=0))
    spread = REALISTIC_RATER_SPREAD[kind]
    raters = []
    for i in range(n):
        s = int(rng.integers(2**31))
        if kind == "score":
            raters.append(ScoreRater(offset=float(np.clip(rng.normal(0, spread["offset_std"]), -0.5, 0.5)),
                                     scale=float(np.exp(rng.normal(0, spread["log_scale_std"]))),
                                     drift=float(rng.normal(0, spread["drift_std"])),
                                     noise_std=spread["noise_std"], seed=s, name=f"rater {i}"))
        elif kind == "comparison":
            raters.append(ComparisonRater(beta=spread["beta"], epsilon=spread["epsilon"],
                                          tie_margin=spread["tie_margin"], seed=s, name=f"rater {i}"))
        else:
            raters.append(LanguageRater(offset=float(np.clip(rng.normal(0, spread["offset_std"]), -0.5, 0.5)),
                                        quality_noise=spread["quality_noise"], seed=s, name=f"rater {i}"))
    return RaterPanel(raters, seed=int(rng.integers(2**31)))


def rater_agreement(panel_a, panel_b, segments_a: Sequence[Segment], segments_b: Sequence[Segment]) -> float:
    """Share of pairs on which two comparison raters (or panels) give the same answer (notebook 04).

    "Equal" counts as an answer of its own, as in the agreement rates of :data:`HUMAN_AGREEMENT`.
    """
    a, b = _check_segments("segments_a", segments_a), _check_segments("segments_b", segments_b)
    if len(a) != len(b) or not a:
        raise ValueError(f"segments_a and segments_b must be non-empty and of the same length, got {len(a)} and {len(b)}")
    same = [panel_a.label(x, y) == panel_b.label(x, y) for x, y in zip(a, b)]
    return float(np.mean(same))


# --------------------------------------------------------------------------- datasets
class DatasetFileError(ValueError, FileNotFoundError):
    """A saved dataset is missing or unreadable (a ``ValueError`` and, when missing, a ``FileNotFoundError``) (notebook 04)."""


def _check_segments(name: str, segments) -> list[Segment]:
    if isinstance(segments, Segment) or not isinstance(segments, Sequence):
        raise TypeError(f"{name} must be a list of Segment, got {type(segments).__name__}")
    for i, s in enumerate(segments):
        _check_segment(f"{name}[{i}]", s)
    return list(segments)


def _labels_array(name: str, labels, n: int) -> np.ndarray:
    try:
        y = np.asarray(labels, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be a list of numbers, got {type(labels).__name__}") from e
    if y.shape != (n,):
        raise ValueError(f"{name} must have one label per item, expected shape ({n},), got {y.shape}")
    if not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{name} contains NaN or inf (first at index {bad}: {y[bad]})")
    return y


def _segments_to_arrays(segments: list[Segment]) -> tuple[dict, list[dict]]:
    arrays = {
        "obs": np.concatenate([s.obs for s in segments]).astype(np.float32),
        "actions": np.concatenate([s.actions for s in segments]).astype(np.int64),
        "true_rewards": np.concatenate([s.true_rewards for s in segments]).astype(np.float32),
        "lengths": np.array([len(s) for s in segments], dtype=np.int64),
    }
    meta = [{"env_id": s.env_id, "source": s.source, "start": s.start} for s in segments]
    return arrays, meta


def _segments_from_arrays(arrays: dict, meta: list[dict]) -> list[Segment]:
    lengths = arrays["lengths"]
    if len(lengths) != len(meta) or int(lengths.sum()) != len(arrays["obs"]):
        raise ValueError("segment arrays do not match the segment list")
    ends = np.cumsum(lengths)
    out = []
    for m, end, L in zip(meta, ends, lengths):
        sl = slice(int(end - L), int(end))
        out.append(Segment(arrays["obs"][sl], arrays["actions"][sl], arrays["true_rewards"][sl],
                           env_id=m["env_id"], source=m["source"], start=m["start"]))
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class FeedbackDataset:
    """Common behaviour of the three feedback datasets (notebook 04).

    ``len(ds)``, ``ds[i]`` (a tuple), iteration, :meth:`split` and :meth:`save`; load any of them
    with :func:`load_dataset` or ``ScoreDataset.load(path)`` etc. Subclasses define ``kind``.
    """

    kind: ClassVar[str] = ""

    def __init__(self, meta: dict | None = None):
        if meta is not None and not isinstance(meta, dict):
            raise TypeError(f"meta must be a dict (e.g. the labeler's settings) or None, got {type(meta).__name__}")
        self.meta = dict(meta or {})

    # subclasses implement these three
    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _item(self, i: int):  # pragma: no cover - abstract
        raise NotImplementedError

    def _subset(self, idx: np.ndarray) -> FeedbackDataset:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, i):
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index must be an int, got {type(i).__name__}")
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for a dataset of {n} items")
        return self._item(int(i) % n)

    def __iter__(self):
        return (self._item(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} items)"

    def split(self, val_fraction: float = 0.2, seed: int = 0):
        """Shuffle and split into ``(train, validation)`` datasets of the same kind.

        ``val_fraction`` ∈ (0, 1); both parts get at least one item (so at least 2 are needed).
        """
        f = _check_number("val_fraction", val_fraction, 0.0, 1.0)
        if not 0.0 < f < 1.0:
            raise ValueError(f"val_fraction must be strictly between 0 and 1, got {val_fraction!r}")
        n = len(self)
        if n < 2:
            raise ValueError(f"need at least 2 items to split, got {n}")
        n_val = min(max(1, round(f * n)), n - 1)
        perm = np.random.default_rng(_check_seed(seed)).permutation(n)
        return self._subset(np.sort(perm[n_val:])), self._subset(np.sort(perm[:n_val]))

    def head(self, n: int) -> FeedbackDataset:
        """The first ``n`` labels, in the order they were asked, as a dataset of the same kind (notebook 05).

        A smaller label budget is the first labels of a larger one: ``n`` is an int in [1, len(self)].
        ``meta`` is kept as it is (per-label lists in it, such as ``rater_ids``, still cover all labels).
        """
        n = V.integer("n", n, low=1)
        if n > len(self):
            raise ValueError(f"n must be at most the dataset's {len(self)} labels, got {n}")
        return self._subset(np.arange(n))

    # ---- save / load
    def _payload(self) -> tuple[dict, list[Segment]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, path) -> Path:
        """Write the dataset as ``path`` (JSON: kind, labels, metadata) plus ``path`` with suffix
        ``.safetensors`` (the segments' arrays). Both are written atomically; returns the JSON path.
        """
        from safetensors.numpy import save_file

        path = Path(path)
        if path.suffix != ".json":
            raise ValueError(f"path must end in .json, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        payload, segments = self._payload()
        arrays, seg_meta = _segments_to_arrays(segments)
        tensor_path = path.with_suffix(".safetensors")
        tmp = tensor_path.with_name(tensor_path.name + ".tmp")
        save_file(arrays, str(tmp))
        os.replace(tmp, tensor_path)
        doc = {"format": "rlhf_tutorial.feedback", "version": FORMAT_VERSION, "kind": self.kind,
               "n": len(self), "arrays_file": tensor_path.name, "arrays_sha256": _sha256(tensor_path),
               "meta": self.meta, "segments": seg_meta, **payload}
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path) -> FeedbackDataset:
        """Load a dataset written by :meth:`save`; it must be of this class's kind."""
        ds = load_dataset(path)
        if cls is not FeedbackDataset and not isinstance(ds, cls):
            raise ValueError(f"{str(path)!r} holds a {ds.kind!r} dataset, expected {cls.kind!r}")
        return ds


class ScoreDataset(FeedbackDataset):
    """D_score = {(τ_i, y_i)}: segments with ratings y ∈ [0, 1] (notebooks 04-05; L_score)."""

    kind = "score"

    def __init__(self, segments: Sequence[Segment], scores, meta: dict | None = None):
        super().__init__(meta)
        self.segments = _check_segments("segments", segments)
        if not self.segments:
            raise ValueError("a ScoreDataset needs at least one segment, got an empty list")
        self.scores = _labels_array("scores", scores, len(self.segments))
        out = (self.scores < 0) | (self.scores > 1)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise ValueError(f"scores must be on the scale [0, 1], got {self.scores[i]} at index {i}")

    def __len__(self) -> int:
        return len(self.segments)

    def _item(self, i):
        return self.segments[i], float(self.scores[i])

    def _subset(self, idx):
        return ScoreDataset([self.segments[i] for i in idx], self.scores[idx], self.meta)

    def _payload(self):
        return {"scores": self.scores.tolist()}, self.segments

    def tensors(self) -> dict:
        """``obs`` (N, L, d), ``actions`` (N, L) and ``scores`` (N,) as torch tensors (equal lengths only)."""
        return {**_stack("segments", self.segments), "scores": torch.as_tensor(self.scores, dtype=torch.float32)}


class ComparisonDataset(FeedbackDataset):
    """D_compare = {(τ_1i, τ_2i, y_i)}: pairs with y ∈ {0, 0.5, 1} (notebooks 04-05; L_compare).

    y = 1 means τ1 (``segments_a[i]``) is better, 0 that τ2 is, 0.5 "equal". The two segments of
    a pair must have the same length and env; a dataset of ties only carries no preference and is
    refused.
    """

    kind = "comparison"

    def __init__(self, segments_a: Sequence[Segment], segments_b: Sequence[Segment], labels,
                 meta: dict | None = None):
        super().__init__(meta)
        self.segments_a = _check_segments("segments_a", segments_a)
        self.segments_b = _check_segments("segments_b", segments_b)
        if len(self.segments_a) != len(self.segments_b):
            raise ValueError(f"segments_a and segments_b must have the same length, got "
                             f"{len(self.segments_a)} and {len(self.segments_b)}")
        if not self.segments_a:
            raise ValueError("a ComparisonDataset needs at least one pair, got an empty list")
        for a, b in zip(self.segments_a, self.segments_b):
            V.segment_pair(a, b, Segment)
        self.labels = _labels_array("labels", labels, len(self.segments_a))
        bad = ~np.isin(self.labels, COMPARISON_LABELS)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"labels must be 0 (second better), 0.5 (equal) or 1 (first better), "
                             f"got {self.labels[i]} at index {i}")
        if (self.labels == 0.5).all():
            raise ValueError(f"all {len(self.labels)} labels are ties (0.5): the dataset carries no preference")

    def __len__(self) -> int:
        return len(self.labels)

    def _item(self, i):
        return self.segments_a[i], self.segments_b[i], float(self.labels[i])

    def _subset(self, idx):
        return ComparisonDataset([self.segments_a[i] for i in idx], [self.segments_b[i] for i in idx],
                                 self.labels[idx], self.meta)

    def _payload(self):
        return {"labels": self.labels.tolist()}, self.segments_a + self.segments_b

    @property
    def tie_rate(self) -> float:
        """Share of pairs labelled "equal"."""
        return float((self.labels == 0.5).mean())

    def tensors(self) -> dict:
        """``obs_a``, ``actions_a``, ``obs_b``, ``actions_b`` (N, L, ...) and ``labels`` (N,) as tensors."""
        a, b = _stack("segments_a", self.segments_a), _stack("segments_b", self.segments_b)
        return {"obs_a": a["obs"], "actions_a": a["actions"], "obs_b": b["obs"], "actions_b": b["actions"],
                "labels": torch.as_tensor(self.labels, dtype=torch.float32)}


class LanguageDataset(FeedbackDataset):
    """D_language = {(τ_i, feedback_i)}: segments with free-text comments (notebooks 04-05; L_language)."""

    kind = "language"

    def __init__(self, segments: Sequence[Segment], comments: Sequence[str], meta: dict | None = None):
        super().__init__(meta)
        self.segments = _check_segments("segments", segments)
        if not self.segments:
            raise ValueError("a LanguageDataset needs at least one segment, got an empty list")
        if isinstance(comments, str) or not isinstance(comments, Sequence):
            raise TypeError(f"comments must be a list of strings, got {type(comments).__name__}")
        if len(comments) != len(self.segments):
            raise ValueError(f"comments must have one entry per segment, expected {len(self.segments)}, "
                             f"got {len(comments)}")
        for i, c in enumerate(comments):
            if not isinstance(c, str):
                raise TypeError(f"comments[{i}] must be a string, got {type(c).__name__} ({c!r})")
            if not c.strip():
                raise ValueError(f"comments[{i}] is empty: every comment needs some text")
        self.comments = list(comments)

    def __len__(self) -> int:
        return len(self.segments)

    def _item(self, i):
        return self.segments[i], self.comments[i]

    def _subset(self, idx):
        return LanguageDataset([self.segments[i] for i in idx], [self.comments[i] for i in idx], self.meta)

    def _payload(self):
        return {"comments": self.comments}, self.segments

    def tensors(self) -> dict:
        """``obs`` (N, L, d) and ``actions`` (N, L) as tensors (the comments stay in ``.comments``)."""
        return _stack("segments", self.segments)


def _stack(name: str, segments: list[Segment]) -> dict:
    lengths = {len(s) for s in segments}
    if len(lengths) != 1:
        raise ValueError(f"{name} must all have the same length to stack, got lengths {sorted(lengths)}")
    return {"obs": torch.as_tensor(np.stack([s.obs for s in segments])),
            "actions": torch.as_tensor(np.stack([s.actions for s in segments]))}


_CLASSES: dict[str, type[FeedbackDataset]] = {"score": ScoreDataset, "comparison": ComparisonDataset,
                                              "language": LanguageDataset}


def _check_kind(kind) -> str:
    if kind not in FEEDBACK_KINDS:
        raise ValueError(f"unknown feedback kind {kind!r}, expected one of {FEEDBACK_KINDS}")
    return kind


def load_dataset(path) -> FeedbackDataset:
    """Load a dataset written by :meth:`FeedbackDataset.save`, of whatever kind it is (notebook 04).

    Raises :class:`DatasetFileError` (a ``ValueError``) when the JSON or its ``.safetensors`` file
    is missing, unreadable, altered (checksum) or inconsistent, and ``ValueError`` for an unknown
    kind.
    """
    from safetensors.numpy import load_file

    path = Path(path)
    if not path.is_file():
        raise DatasetFileError(f"no saved dataset at {str(path)!r} (expected a .json file written by .save())")
    try:
        doc = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetFileError(f"{str(path)!r} is not valid JSON, the file is corrupt: {e}") from e
    if not isinstance(doc, dict) or doc.get("format") != "rlhf_tutorial.feedback":
        raise DatasetFileError(f"{str(path)!r} is not a feedback dataset (no 'format': 'rlhf_tutorial.feedback')")
    kind = _check_kind(doc.get("kind"))
    tensor_path = path.with_name(str(doc.get("arrays_file", "")))
    if not tensor_path.is_file() or tensor_path == path:
        raise DatasetFileError(f"the arrays of {str(path)!r} are missing: expected {str(tensor_path)!r}")
    if _sha256(tensor_path) != doc.get("arrays_sha256"):
        raise DatasetFileError(f"{str(tensor_path)!r} does not match the checksum in {str(path)!r}: it is corrupt "
                               "or from another save")
    try:
        arrays = load_file(str(tensor_path))
        segments = _segments_from_arrays(arrays, doc["segments"])
        meta = doc.get("meta", {})
        if kind == "score":
            ds = ScoreDataset(segments, doc["scores"], meta)
        elif kind == "comparison":
            n = len(segments) // 2
            ds = ComparisonDataset(segments[:n], segments[n:], doc["labels"], meta)
        else:
            ds = LanguageDataset(segments, doc["comments"], meta)
    except (KeyError, TypeError, ValueError) as e:
        raise DatasetFileError(f"{str(path)!r} is corrupt: {type(e).__name__}: {e}") from e
    if len(ds) != doc.get("n"):
        raise DatasetFileError(f"{str(path)!r} is corrupt: it says n={doc.get('n')} but holds {len(ds)} items")
    return ds


# --------------------------------------------------------------------------- building datasets
def _labeler_meta(labeler, start: int = 0) -> dict:
    meta = {"labeler": type(labeler).__name__,
            **{k: v for k, v in vars(labeler).items() if isinstance(v, (int, float, str, type(None)))}}
    if isinstance(labeler, RaterPanel):  # who answered each query of this dataset, and who they are
        meta["rater_ids"] = labeler.rater_ids[start:]
        meta["raters"] = [repr(r) for r in labeler.raters]
    return meta


def _check_labeler(labeler, kind: str) -> None:
    cls = _LABELER_CLASSES[kind]
    if isinstance(labeler, RaterPanel):
        if labeler.kind != kind:
            raise TypeError(f"labeler must label {kind} feedback, got a RaterPanel of {labeler.kind} raters")
    elif not isinstance(labeler, cls):
        raise TypeError(f"labeler must be a {cls.__name__} or a RaterPanel of them, got {type(labeler).__name__}")


def make_score_dataset(segments: Sequence[Segment], labeler: ScoreLabeler) -> ScoreDataset:
    """Ask ``labeler`` to rate every segment once (notebook 04)."""
    _check_labeler(labeler, "score")
    segments = _check_segments("segments", segments)
    start = len(getattr(labeler, "rater_ids", ()))
    return ScoreDataset(segments, labeler.label_many(segments), _labeler_meta(labeler, start))


def make_comparison_dataset(segments: Sequence[Segment], labeler: ComparisonLabeler, n_pairs: int,
                            seed: int = 0) -> ComparisonDataset:
    """Ask ``labeler`` about ``n_pairs`` random pairs of distinct segments (notebook 04).

    Pairs are drawn uniformly without looking at the true reward (which the learner does not
    have); notebook 06 chooses its queries more cleverly.
    """
    _check_labeler(labeler, "comparison")
    segments = _check_segments("segments", segments)
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments to make pairs, got {len(segments)}")
    n_pairs = _check_positive_int("n_pairs", n_pairs)
    rng = np.random.default_rng(_check_seed(seed))
    i = rng.integers(0, len(segments), n_pairs)
    j = (i + rng.integers(1, len(segments), n_pairs)) % len(segments)  # j != i
    a, b = [segments[k] for k in i], [segments[k] for k in j]
    start = len(getattr(labeler, "rater_ids", ()))
    labels = [labeler.label(x, y) for x, y in zip(a, b)]
    return ComparisonDataset(a, b, labels, _labeler_meta(labeler, start))


def make_language_dataset(segments: Sequence[Segment], labeler: LanguageLabeler) -> LanguageDataset:
    """Ask ``labeler`` for a comment on every segment (notebook 04)."""
    _check_labeler(labeler, "language")
    segments = _check_segments("segments", segments)
    start = len(getattr(labeler, "rater_ids", ()))
    return LanguageDataset(segments, [labeler.label(s) for s in segments], _labeler_meta(labeler, start))


def make_dataset(kind: str, segments: Sequence[Segment], labeler=None, seed: int = 0, **kwargs) -> FeedbackDataset:
    """Build a dataset of ``kind`` ("score", "comparison" or "language") from segments (notebook 04).

    ``labeler`` defaults to that kind's labeler with default noise, seeded with ``seed``;
    ``kwargs`` go to the builder (``n_pairs`` for comparisons).
    """
    kind = _check_kind(kind)
    unknown = set(kwargs) - ({"n_pairs"} if kind == "comparison" else set())
    if unknown:
        raise TypeError(f"make_dataset({kind!r}) got unexpected keyword arguments {sorted(unknown)}")
    if kind == "score":
        return make_score_dataset(segments, labeler or ScoreLabeler(seed=seed))
    if kind == "comparison":
        return make_comparison_dataset(segments, labeler or ComparisonLabeler(seed=seed),
                                       kwargs.pop("n_pairs", len(segments)), seed=seed)
    return make_language_dataset(segments, labeler or LanguageLabeler(seed=seed))

