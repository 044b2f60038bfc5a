r"""Learning from demonstrations, in brief: behaviour cloning and inverse RL (notebook 04).

The seed (§2.2.2, §2.3.2) names inverse reinforcement learning and apprenticeship learning next
to preference learning. Both learn from an expert who *shows* the behaviour instead of rating it:

- **Behaviour cloning** (:func:`behaviour_cloning`) treats the expert's pairs (s_t, a_t) as a
  classification data set and fits π_φ(a|s) by cross-entropy, :math:`\min_\phi -\mathbb{E}
  \log \pi_\phi(a_t \mid s_t)`. Fast and simple; but it never learns what to do in states the
  expert never visited (compounding errors), and it learns *what* the expert does, not *why*.
- **DAgger** (:func:`dagger`; Ross, Gordon & Bagnell 2011) is apprenticeship learning as the seed
  (§2.2.2) describes it, an expert who *corrects* the agent: the learner drives, the expert says
  what it should have done in the states the learner visited (:func:`visited_states`), and the
  learner is refit on all corrections so far. Its labels land where the learner's mistakes take it.
- **Inverse RL** recovers the *why*: a reward r_w(s) = w·φ(s) (φ: features of a state) under
  which the expert's behaviour is optimal. :func:`maxent_irl` is maximum-entropy IRL (Ziebart et
  al. 2008): the expert is modelled as soft-optimal, :math:`\pi_w(a|s) = \exp(Q^{soft}_w(s,a) -
  V^{soft}_w(s))`, and gradient ascent on the demonstrations' likelihood is feature matching,

  .. math::
      \nabla_w \mathcal{L} = \mu_E - \mu_{\pi_w}, \qquad
      \mu_\pi = \mathbb{E}_\pi\Big[\sum_{t<H} \gamma^t \phi(s_t)\Big],

  the expert's discounted feature counts minus the model's. :func:`projection_apprenticeship` is
  Abbeel & Ng's (2004) apprenticeship learning by the projection method, which searches for a w
  whose optimal policy's μ comes close to μ_E.

IRL needs a model of the dynamics, so it runs here on :class:`GridWorld`, a 5×5 tabular MDP
whose cells are plain, mud, water or goal (the features). It is a Gymnasium env with the
toy-text transition table ``P``, so :func:`rlhf_tutorial.tabular.value_iteration` and
:func:`~rlhf_tutorial.tabular.evaluate_tabular` run on it too. :func:`compare_to_expert` checks
the result: is the optimal policy under the recovered reward optimal under the true one, on the
states the expert visits, and does it earn the expert's true return?
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import gymnasium as gym
import numpy as np
import torch

from . import _validate as validate
from .rl import CategoricalPolicy, check_probability

__all__ = [
    "collect_demonstrations",
    "behaviour_cloning",
    "action_accuracy",
    "visited_states",
    "dagger_round_sizes",
    "dagger",
    "GridWorld",
    "DEFAULT_LAYOUT",
    "CELL_TYPES",
    "TRUE_CELL_REWARDS",
    "hard_value_iteration",
    "soft_value_iteration",
    "expert_policy",
    "generate_demonstrations",
    "feature_expectations",
    "expected_feature_counts",
    "IRLResult",
    "maxent_irl",
    "projection_apprenticeship",
    "compare_to_expert",
]


# --------------------------------------------------------------------------- validation helpers
def _check_gamma(gamma) -> float:
    g = check_probability("gamma", gamma)
    if g >= 1.0:
        raise ValueError(f"gamma must be < 1 here (the gridworld never terminates), got {gamma}")
    return g


# --------------------------------------------------------------------------- behaviour cloning
def collect_demonstrations(act: Callable[[np.ndarray], np.ndarray], env_id: str = "CartPole-v1",
                           n_episodes: int = 5, seed: int = 0, env_kwargs: dict | None = None) -> dict:
    """Run an expert for ``n_episodes`` and return its pairs (s_t, a_t) (notebook 04).

    ``act`` maps a batch of observations to actions (``envs.pd_policy()``, or
    ``lambda o: agent.act(o, deterministic=True)`` for a trained PPO agent). Returns ``{"obs":
    (N, obs_dim) float32, "actions": (N,) int64, "episode_returns": (n_episodes,)}`` with the
    episodes concatenated.
    """
    from .feedback import rollout_episodes

    n_episodes = validate.integer("n_episodes", n_episodes, 1)
    seed = validate.integer("seed", seed, 0)
    eps = rollout_episodes(act, n_episodes, env_id=env_id, seed=seed, env_kwargs=env_kwargs)
    return {"obs": np.concatenate([e["obs"] for e in eps]).astype(np.float32),
            "actions": np.concatenate([e["actions"] for e in eps]).astype(np.int64),
            "episode_returns": np.array([float(e["rewards"].sum()) for e in eps])}


def _check_bc_data(obs, actions, n_actions):
    o = np.asarray(obs, dtype=np.float32)
    if o.ndim != 2 or o.shape[0] < 1:
        raise ValueError(f"obs must have shape (N, obs_dim) with N >= 1, got shape {o.shape}")
    if not np.isfinite(o).all():
        raise ValueError("obs contains NaN or inf")
    a = np.asarray(actions)
    if a.shape != (o.shape[0],):
        raise ValueError(f"actions must have shape ({o.shape[0]},) to match obs, got {a.shape}")
    if a.dtype.kind not in "iu":
        if a.dtype.kind != "f" or not np.array_equal(a, np.round(a)):
            raise TypeError(f"actions must be integer action indices, got dtype {a.dtype}")
    a = a.astype(np.int64)
    if a.min() < 0:
        raise ValueError(f"actions must be >= 0, got {a.min()}")
    if n_actions is None:
        n_actions = max(2, int(a.max()) + 1)
    n_actions = validate.integer("n_actions", n_actions, 2)
    if a.max() >= n_actions:
        raise ValueError(f"actions must be < n_actions={n_actions}, got {a.max()}")
    return o, a, n_actions


def behaviour_cloning(obs, actions, n_actions: int | None = None, hidden: Sequence[int] = (64, 64),
                      epochs: int = 10, batch_size: int = 256, lr: float = 1e-2, seed: int = 0,
                      return_history: bool = False):
    r"""Fit π_φ(a|s) to the expert's (s_t, a_t) by cross-entropy; return a ``CategoricalPolicy`` (notebook 04).

    Minimises :math:`-\frac1N\sum_i \log \pi_\phi(a_i \mid s_i)` with Adam for ``epochs`` passes
    over shuffled minibatches. ``n_actions`` defaults to the largest action + 1. Everything random
    (the initial weights, the shuffling) comes from ``seed``; the global torch RNG is left as it
    was. The defaults (10 epochs of batches of 256, Adam at 1e-2) clone the PD controller on
    CartPole-v1 from 5 demonstrations (2,500 pairs) in about a second (measured returns in
    benchmarks/README.md). With ``return_history=True`` returns ``(policy, history)`` where ``history`` has one
    ``{"epoch", "loss", "accuracy"}`` dict per epoch (on the training data).
    """
    o, a, n_actions = _check_bc_data(obs, actions, n_actions)
    epochs = validate.integer("epochs", epochs, 1)
    batch_size = validate.integer("batch_size", batch_size, 1)
    lr = validate.positive("lr", lr)
    seed = validate.integer("seed", seed, 0)
    if isinstance(hidden, (int, str)) or not all(isinstance(h, (int, np.integer)) and h > 0 for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive layer widths, got {hidden!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        policy = CategoricalPolicy(o.shape[1], n_actions, tuple(int(h) for h in hidden))
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(policy.parameters(), lr=lr)
    X, Y = torch.as_tensor(o), torch.as_tensor(a)
    history = []
    for epoch in range(epochs):
        perm = torch.randperm(len(X), generator=gen)
        total, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            idx = perm[start:start + batch_size]
            logits = policy(X[idx])
            loss = torch.nn.functional.cross_entropy(logits, Y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(-1) == Y[idx]).sum())
        history.append({"epoch": epoch + 1, "loss": total / len(X), "accuracy": correct / len(X)})
    policy.eval()
    return (policy, history) if return_history else policy


@torch.no_grad()
def action_accuracy(policy: CategoricalPolicy, obs, actions) -> float:
    """Share of states where the policy's greedy action equals the expert's (notebook 04)."""
    if not isinstance(policy, torch.nn.Module):
        raise TypeError(f"policy must be a torch module mapping obs to logits, got {type(policy).__name__}")
    o, a, _ = _check_bc_data(obs, actions, None)
    return float((policy(torch.as_tensor(o)).argmax(-1).numpy() == a).mean())


# --------------------------------------------------------------------------- DAgger: the expert corrects
def visited_states(act: Callable[[np.ndarray], np.ndarray], n_states: int, env_id: str = "CartPole-v1",
                   n_episodes: int = 4, seed: int = 0, env_kwargs: dict | None = None) -> np.ndarray:
    """``n_states`` states drawn (without replacement) from the states ``act`` visits (notebook 04).

    Runs ``n_episodes`` episodes of ``act`` at a time (reset with ``seed``, ``seed + 1``, ...)
    until they have visited at least ``n_states`` states, then draws ``n_states`` of them
    uniformly with ``seed``: a sample of the policy's own state distribution, shape
    ``(n_states, obs_dim)`` float32. With the expert as ``act`` these are behaviour cloning's
    states; with the learner, the states DAgger asks the expert about.
    """
    from .feedback import rollout_episodes

    if not callable(act):
        raise TypeError(f"act must be callable (obs batch -> action batch), got {type(act).__name__}")
    n_states = validate.integer("n_states", n_states, 1)
    n_episodes = validate.integer("n_episodes", n_episodes, 1)
    seed = validate.integer("seed", seed, 0)
    chunks, total, k = [], 0, 0
    while total < n_states:
        eps = rollout_episodes(act, n_episodes, env_id=env_id, seed=seed + k, env_kwargs=env_kwargs)
        chunks += [e["obs"] for e in eps]
        total += sum(len(e["obs"]) for e in eps)
        k += 1
    obs = np.concatenate(chunks).astype(np.float32)
    return obs[np.random.default_rng(seed).choice(len(obs), size=n_states, replace=False)]


def dagger_round_sizes(n_labels: int, n_rounds: int) -> list[int]:
    """How DAgger splits ``n_labels`` expert labels over ``n_rounds`` rounds (notebook 04).

    Equal shares; the remainder goes to round 0 (the expert's own states).
    """
    n_labels, n_rounds = validate.integer("n_labels", n_labels, 1), validate.integer("n_rounds", n_rounds, 1)
    if n_labels < n_rounds:
        raise ValueError(f"n_labels must be >= n_rounds (one label per round at least), got {n_labels} < {n_rounds}")
    share = n_labels // n_rounds
    return [n_labels - share * (n_rounds - 1)] + [share] * (n_rounds - 1)


def _greedy_act(policy: CategoricalPolicy) -> Callable[[np.ndarray], np.ndarray]:
    return lambda obs: policy.act(obs, deterministic=True)


def dagger(expert: Callable[[np.ndarray], np.ndarray], n_labels: int, n_rounds: int = 4,
           env_id: str = "CartPole-v1", n_episodes: int = 4, seed: int = 0, epochs: int = 200,
           env_kwargs: dict | None = None, **bc_kwargs):
    r"""DAgger (Ross, Gordon & Bagnell 2011): the expert labels the states the learner visits (notebook 04).

    ``expert`` maps a batch of observations to the expert's actions; ``n_labels`` expert labels in
    all, split over ``n_rounds`` rounds by :func:`dagger_round_sizes`:

    1. round 0: the expert drives; it labels ``n_0`` of the states it visits (behaviour cloning's data);
    2. fit π_1 on the labels by :func:`behaviour_cloning` (from scratch, ``epochs``, ``seed``);
    3. round k >= 1: the learner π_k drives (greedy); the expert labels ``n_k`` states it visited
       (:func:`visited_states` with seed ``seed + 1009 k``), added to all earlier labels;
    4. refit π_{k+1} on the aggregate, from scratch, and repeat from 3.

    Extra keyword arguments go to :func:`behaviour_cloning`. Returns ``(policy, history)``: the
    last policy and one ``{"round", "labels", "states_from", "train_accuracy"}`` dict per round
    (``labels``: expert labels used so far).
    """
    if not callable(expert):
        raise TypeError(f"expert must be callable (obs batch -> action batch), got {type(expert).__name__}")
    sizes = dagger_round_sizes(n_labels, n_rounds)
    seed = validate.integer("seed", seed, 0)
    X = visited_states(expert, sizes[0], env_id, n_episodes, seed, env_kwargs)              # 1.
    Y = np.asarray(expert(X), dtype=np.int64)
    policy = behaviour_cloning(X, Y, epochs=epochs, seed=seed, **bc_kwargs)                   # 2.
    history = [{"round": 0, "labels": len(X), "states_from": "expert",
                "train_accuracy": action_accuracy(policy, X, Y)}]
    for k, n in enumerate(sizes[1:], start=1):
        X_new = visited_states(_greedy_act(policy), n, env_id, n_episodes, seed + 1009 * k, env_kwargs)  # 3.
        X = np.concatenate([X, X_new])
        Y = np.concatenate([Y, np.asarray(expert(X_new), dtype=np.int64)])
        policy = behaviour_cloning(X, Y, epochs=epochs, seed=seed, **bc_kwargs)               # 4.
        history.append({"round": k, "labels": len(X), "states_from": "learner",
                        "train_accuracy": action_accuracy(policy, X, Y)})
    return policy, history


# --------------------------------------------------------------------------- a small gridworld
CELL_TYPES = {".": "plain", "m": "mud", "~": "water", "G": "goal"}
"""Layout characters and the feature (cell type) each stands for."""
TRUE_CELL_REWARDS = {"plain": 0.0, "mud": -0.3, "water": -1.0, "goal": 1.0}
"""The expert's true reward for being in a cell of each type (hidden from IRL)."""
DEFAULT_LAYOUT = (
    "..~..",
    ".m~.m",
    "...m.",
    "m~~..",
    "...mG",
)
"""A 5×5 map: the expert walks to the goal (bottom right), around water, mostly around mud."""


class GridWorld(gym.Env):
    r"""A small tabular MDP for inverse RL (notebook 04).

    States are the cells of ``layout`` (row-major, ``s = row * width + col``); actions 0-4 are
    up, down, left, right, stay. A move into the edge stays put; with probability ``slip`` the
    action is replaced by a uniformly random one. The reward of *being in* a cell is
    :math:`r(s) = w^\top \phi(s)` with φ(s) the one-hot of the cell's type (:data:`CELL_TYPES`)
    and ``w`` = ``cell_rewards`` (default :data:`TRUE_CELL_REWARDS`): the reward r_t of a step is
    r(s_t). Episodes start in a uniformly random non-water cell and are truncated after
    ``horizon`` steps (never terminated).

    Dense arrays for planning: ``T[s, a, s']`` (transition probabilities), ``features`` (S, k),
    ``true_weights`` (k,), ``reward`` (S,), ``start_distribution`` (S,). ``P`` is the same model in
    Gymnasium's toy-text format, for :func:`rlhf_tutorial.tabular.value_iteration`.
    """

    metadata = {"render_modes": ["ansi"]}
    ACTIONS = ("up", "down", "left", "right", "stay")
    MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1), (0, 0))

    def __init__(self, layout: Sequence[str] = DEFAULT_LAYOUT, cell_rewards: dict | None = None,
                 slip: float = 0.0, horizon: int = 20, render_mode: str | None = None):
        if isinstance(layout, str) or not isinstance(layout, Sequence) or len(layout) == 0:
            raise TypeError(f"layout must be a list of equal-length strings, got {type(layout).__name__}")
        rows = [str(r) for r in layout]
        if len({len(r) for r in rows}) != 1 or len(rows[0]) == 0:
            raise ValueError(f"layout rows must all have the same, non-zero length, got {[len(r) for r in rows]}")
        bad = {c for r in rows for c in r} - set(CELL_TYPES)
        if bad:
            raise ValueError(f"layout has unknown cells {sorted(bad)}; use {dict(CELL_TYPES)}")
        self.layout, self.height, self.width = tuple(rows), len(rows), len(rows[0])
        self.feature_names = tuple(CELL_TYPES.values())
        rewards = dict(TRUE_CELL_REWARDS if cell_rewards is None else cell_rewards)
        if set(rewards) != set(self.feature_names):
            raise ValueError(f"cell_rewards must give a reward for each of {self.feature_names}, got {sorted(rewards)}")
        self.true_weights = np.array([float(rewards[n]) for n in self.feature_names])
        if not np.isfinite(self.true_weights).all():
            raise ValueError("cell_rewards must be finite")
        self.slip = check_probability("slip", slip)
        self.horizon = validate.integer("horizon", horizon, 1)
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode

        S, A, k = self.height * self.width, len(self.ACTIONS), len(self.feature_names)
        self.n_states, self.n_actions = S, A
        cells = "".join(rows)
        self.features = np.zeros((S, k))
        self.features[np.arange(S), [self.feature_names.index(CELL_TYPES[c]) for c in cells]] = 1.0
        self.reward = self.features @ self.true_weights
        self.T = np.zeros((S, A, S))
        for s in range(S):
            r, c = divmod(s, self.width)
            for a in range(A):
                for b in range(A):
                    p = (1.0 - self.slip) * (a == b) + self.slip / A
                    if p == 0:
                        continue
                    dr, dc = self.MOVES[b]
                    nr, nc = min(max(r + dr, 0), self.height - 1), min(max(c + dc, 0), self.width - 1)
                    self.T[s, a, nr * self.width + nc] += p
        start = np.array([c != "~" for c in cells], dtype=float)
        self.start_distribution = start / start.sum()
        self.P = {s: {a: [(float(self.T[s, a, s2]), int(s2), float(self.reward[s]), False)
                          for s2 in np.flatnonzero(self.T[s, a])] for a in range(A)} for s in range(S)}
        self.observation_space = gym.spaces.Discrete(S)
        self.action_space = gym.spaces.Discrete(A)
        self.s, self.t = 0, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.s = int(self.np_random.choice(self.n_states, p=self.start_distribution))
        self.t = 0
        return self.s, {}

    def step(self, action):
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.n_actions - 1}], got {action!r}")
        reward = float(self.reward[self.s])
        self.s = int(self.np_random.choice(self.n_states, p=self.T[self.s, int(action)]))
        self.t += 1
        return self.s, reward, False, self.t >= self.horizon, {}

    def render(self):
        """The map as text, with the agent as ``A``."""
        cells = [list(r) for r in self.layout]
        r, c = divmod(self.s, self.width)
        cells[r][c] = "A"
        return "\n".join("".join(row) for row in cells)

    def reward_from(self, weights) -> np.ndarray:
        """r_w(s) = w·φ(s) for every state, shape (S,)."""
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (self.features.shape[1],):
            raise ValueError(f"weights must have shape ({self.features.shape[1]},) (one per feature "
                             f"{self.feature_names}), got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("weights contain NaN or inf")
        return self.features @ w

    def show_policy(self, policy) -> str:
        """The greedy policy as arrows on the map (``*`` for stay), for printing in the notebook."""
        p = _check_policy(self, policy)
        arrows = "^v<>*"
        return "\n".join("".join(arrows[p[r * self.width + c]] if self.layout[r][c] != "G" else "G"
                                 for c in range(self.width)) for r in range(self.height))


def _check_env(env) -> GridWorld:
    if not isinstance(env, GridWorld):
        raise TypeError(f"env must be a GridWorld, got {type(env).__name__}")
    return env


def _check_reward(env: GridWorld, reward) -> np.ndarray:
    r = np.asarray(reward, dtype=np.float64)
    if r.shape != (env.n_states,):
        raise ValueError(f"reward must have shape (n_states,) = ({env.n_states},), got {r.shape}")
    if not np.isfinite(r).all():
        raise ValueError("reward contains NaN or inf")
    return r


def _check_policy(env: GridWorld, policy) -> np.ndarray:
    p = np.asarray(policy)
    if p.shape != (env.n_states,) or p.dtype.kind not in "iu":
        raise ValueError(f"policy must be an int array of shape ({env.n_states},) (one action per state), "
                         f"got shape {p.shape}, dtype {p.dtype}")
    if p.min() < 0 or p.max() >= env.n_actions:
        raise ValueError(f"policy actions must be in [0, {env.n_actions - 1}]")
    return p.astype(np.int64)


# --------------------------------------------------------------------------- planning
def hard_value_iteration(env: GridWorld, reward, gamma: float = 0.9, tol: float = 1e-10,
                         max_iter: int = 10_000) -> tuple[np.ndarray, np.ndarray]:
    r"""``(V*, Q*)`` for the state reward ``reward`` (S,): :math:`Q(s,a) = r(s) + \gamma \sum_{s'} T(s,a,s') V(s')`.

    Notebook 04; the same backup as :func:`rlhf_tutorial.tabular.value_iteration` on dense arrays,
    so any reward vector can be planned for (tabular's reads the env's own reward from ``P``).
    """
    env, r, gamma = _check_env(env), _check_reward(env, reward), _check_gamma(gamma)
    V = np.zeros(env.n_states)
    for _ in range(validate.integer("max_iter", max_iter, 1)):
        Q = r[:, None] + gamma * env.T @ V
        V_new = Q.max(1)
        if np.abs(V_new - V).max() < tol:
            return V_new, r[:, None] + gamma * env.T @ V_new
        V = V_new
    raise RuntimeError(f"hard_value_iteration did not converge in {max_iter} sweeps")


def soft_value_iteration(env: GridWorld, reward, gamma: float = 0.9, tol: float = 1e-10,
                         max_iter: int = 10_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Soft (max-ent) values and policy: ``(V, Q, π)`` with π of shape (S, A) (notebook 04).

    .. math::
        Q(s,a) = r(s) + \gamma \sum_{s'} T(s,a,s') V(s'), \qquad V(s) = \log \sum_a e^{Q(s,a)},
        \qquad \pi(a|s) = e^{Q(s,a) - V(s)}

    The max of hard value iteration becomes a log-sum-exp: the policy prefers better actions
    exponentially, but never picks one with certainty (Ziebart's model of a noisy expert).
    """
    env, r, gamma = _check_env(env), _check_reward(env, reward), _check_gamma(gamma)
    V = np.zeros(env.n_states)
    for _ in range(validate.integer("max_iter", max_iter, 1)):
        Q = r[:, None] + gamma * env.T @ V
        m = Q.max(1)
        V_new = m + np.log(np.exp(Q - m[:, None]).sum(1))
        if np.abs(V_new - V).max() < tol:
            V = V_new
            Q = r[:, None] + gamma * env.T @ V
            return V, Q, np.exp(Q - V[:, None])
        V = V_new
    raise RuntimeError(f"soft_value_iteration did not converge in {max_iter} sweeps")


def expert_policy(env: GridWorld, gamma: float = 0.9, reward=None) -> np.ndarray:
    """The optimal (greedy) policy for the true reward, or for ``reward`` (S,) if given (notebook 04).

    An int array of shape (S,); ties go to the lowest action index.
    """
    env = _check_env(env)
    _, Q = hard_value_iteration(env, env.reward if reward is None else reward, gamma)
    return _greedy(Q)


def _greedy(Q: np.ndarray) -> np.ndarray:
    # ties within 1e-9 go to the lowest index, so round-off does not pick an arbitrary action
    return (Q >= Q.max(1, keepdims=True) - 1e-9).argmax(1)


def generate_demonstrations(env: GridWorld, policy, n_trajectories: int = 50, horizon: int | None = None,
                            seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Roll out a tabular policy; return ``(states, actions)``, both int arrays (n_trajectories, H).

    Notebook 04: the expert's demonstrations for IRL. ``policy`` is deterministic, one action per
    state (S,), or stochastic, probabilities (S, A) such as the soft-optimal π of
    :func:`soft_value_iteration` (a Boltzmann expert). Starts follow ``env.start_distribution``;
    ``horizon`` defaults to ``env.horizon``.
    """
    env = _check_env(env)
    probs = _policy_probabilities(env, policy)
    n = validate.integer("n_trajectories", n_trajectories, 1)
    H = env.horizon if horizon is None else validate.integer("horizon", horizon, 1)
    rng = np.random.default_rng(validate.integer("seed", seed, 0))
    deterministic = np.asarray(policy).ndim == 1
    states, actions = np.zeros((n, H), np.int64), np.zeros((n, H), np.int64)
    for i in range(n):
        s = rng.choice(env.n_states, p=env.start_distribution)
        for t in range(H):
            a = int(probs[s].argmax()) if deterministic else int(rng.choice(env.n_actions, p=probs[s]))
            states[i, t], actions[i, t] = s, a
            s = rng.choice(env.n_states, p=env.T[s, a])
    return states, actions


def _policy_probabilities(env: GridWorld, policy) -> np.ndarray:
    pi = np.asarray(policy)
    if pi.ndim == 1:
        return np.eye(env.n_actions)[_check_policy(env, pi)]
    if pi.shape != (env.n_states, env.n_actions) or not np.isfinite(pi).all() or (pi < 0).any() \
            or not np.allclose(pi.sum(1), 1.0, atol=1e-6):
        raise ValueError(f"policy must be actions (S,) or probabilities (S, A) = ({env.n_states}, {env.n_actions}) "
                         "with rows summing to 1")
    return pi


def _check_states(env: GridWorld, states) -> np.ndarray:
    st = np.asarray(states)
    if st.ndim != 2 or st.shape[0] < 1 or st.shape[1] < 1:
        raise ValueError(f"states must have shape (n_trajectories, horizon), got shape {st.shape}")
    if st.dtype.kind not in "iu":
        raise TypeError(f"states must be integer state indices, got dtype {st.dtype}")
    if st.min() < 0 or st.max() >= env.n_states:
        raise ValueError(f"states must be in [0, {env.n_states - 1}], got range [{st.min()}, {st.max()}]")
    return st.astype(np.int64)


def feature_expectations(env: GridWorld, states, gamma: float = 0.9) -> np.ndarray:
    r"""The demonstrations' discounted feature counts :math:`\mu_E = \frac1n \sum_i \sum_t \gamma^t \phi(s^i_t)` (notebook 04)."""
    env, gamma = _check_env(env), _check_gamma(gamma)
    st = _check_states(env, states)
    disc = gamma ** np.arange(st.shape[1])
    return (env.features[st] * disc[None, :, None]).sum(1).mean(0)


def expected_feature_counts(env: GridWorld, policy, start_distribution=None, horizon: int | None = None,
                            gamma: float = 0.9) -> np.ndarray:
    r""":math:`\mu_\pi = \sum_{t<H} \gamma^t D_t^\top \phi` computed exactly from the dynamics (notebook 04).

    ``policy`` is stochastic (S, A) or deterministic (S,); D_0 is ``start_distribution``
    (default the env's) and :math:`D_{t+1}(s') = \sum_{s,a} D_t(s)\,\pi(a|s)\,T(s,a,s')`.
    """
    env, gamma = _check_env(env), _check_gamma(gamma)
    pi = _policy_probabilities(env, policy)
    D = env.start_distribution if start_distribution is None else np.asarray(start_distribution, float)
    if D.shape != (env.n_states,) or (D < 0).any() or not np.isclose(D.sum(), 1.0):
        raise ValueError(f"start_distribution must be a probability vector of shape ({env.n_states},)")
    H = env.horizon if horizon is None else validate.integer("horizon", horizon, 1)
    M = np.einsum("sa,sap->sp", pi, env.T)  # state-to-state transitions under π
    mu = np.zeros(env.features.shape[1])
    for t in range(H):
        mu += gamma ** t * D @ env.features
        D = D @ M
    return mu


# --------------------------------------------------------------------------- inverse RL
@dataclass
class IRLResult:
    """What :func:`maxent_irl` / :func:`projection_apprenticeship` return (notebook 04).

    ``weights`` w (one per feature, in ``env.feature_names`` order), ``reward`` r_w(s) = w·φ(s)
    per state, ``policy`` the optimal policy under r_w (int array (S,)), and ``feature_gap``
    ‖μ_E − μ‖ per iteration.
    """

    weights: np.ndarray
    reward: np.ndarray
    policy: np.ndarray
    feature_gap: list = field(default_factory=list)


def maxent_irl(env: GridWorld, states, gamma: float = 0.9, lr: float = 0.1, n_iters: int = 200,
               l2: float = 0.0) -> IRLResult:
    r"""Maximum-entropy IRL (Ziebart et al. 2008) from the expert's visited ``states`` (notebook 04).

    ``states`` (n_trajectories, H) are demonstrations (:func:`generate_demonstrations`). Starting
    from w = 0, each of ``n_iters`` steps solves the soft-optimal policy π_w
    (:func:`soft_value_iteration`), computes its discounted feature counts μ_{π_w} from the
    demonstrations' own start states over the same horizon H, and climbs the log-likelihood:

    .. math::  w \leftarrow w + \mathrm{lr}\,\big(\mu_E - \mu_{\pi_w} - \mathrm{l2}\cdot w\big)

    The reward is only defined up to what the demonstrations can tell apart (a constant added to
    every cell changes no policy), so judge it by its policy (:func:`compare_to_expert`).
    """
    env, gamma = _check_env(env), _check_gamma(gamma)
    st = _check_states(env, states)
    lr, n_iters = validate.positive("lr", lr), validate.integer("n_iters", n_iters, 1)
    if isinstance(l2, bool) or not isinstance(l2, (int, float)) or not (np.isfinite(l2) and l2 >= 0):
        raise ValueError(f"l2 must be a number >= 0, got {l2!r}")
    mu_e = feature_expectations(env, st, gamma)
    d0 = np.bincount(st[:, 0], minlength=env.n_states) / len(st)
    w = np.zeros(env.features.shape[1])
    gaps = []
    for _ in range(n_iters):
        _, _, pi = soft_value_iteration(env, env.features @ w, gamma)
        grad = mu_e - expected_feature_counts(env, pi, d0, st.shape[1], gamma)
        gaps.append(float(np.linalg.norm(grad)))
        w = w + lr * (grad - l2 * w)
    r = env.features @ w
    return IRLResult(w, r, expert_policy(env, gamma, r), gaps)


def projection_apprenticeship(env: GridWorld, states, gamma: float = 0.9, n_iters: int = 30,
                              tol: float = 1e-3) -> IRLResult:
    r"""Apprenticeship learning by the projection method (Abbeel & Ng 2004) (notebook 04).

    Start from the policy that always stays; then repeat: w = μ_E − μ̄ (μ̄ the projection of μ_E
    onto the line through the last μ̄ and the new policy's μ), π = optimal policy for r_w,
    μ = μ_π, until ‖μ_E − μ̄‖ < ``tol``. Returns the w and policy of the iterate whose own μ came
    closest to μ_E (Abbeel & Ng mix the policies; on a small deterministic grid one usually suffices).
    """
    env, gamma = _check_env(env), _check_gamma(gamma)
    st = _check_states(env, states)
    n_iters, tol = validate.integer("n_iters", n_iters, 1), validate.positive("tol", tol)
    mu_e = feature_expectations(env, st, gamma)
    d0 = np.bincount(st[:, 0], minlength=env.n_states) / len(st)
    H = st.shape[1]
    stay = np.full(env.n_states, env.ACTIONS.index("stay"))
    mu_bar = expected_feature_counts(env, stay, d0, H, gamma)
    best = (np.inf, np.zeros_like(mu_e), stay)
    gaps = []
    for _ in range(n_iters):
        w = mu_e - mu_bar
        gaps.append(float(np.linalg.norm(w)))
        if gaps[-1] < tol:
            break
        pi = expert_policy(env, gamma, env.features @ w)
        mu = expected_feature_counts(env, pi, d0, H, gamma)
        own_gap = float(np.linalg.norm(mu_e - mu))
        if own_gap < best[0]:
            best = (own_gap, w, pi)
        d = mu - mu_bar
        if float(d @ d) < 1e-15:
            break
        mu_bar = mu_bar + float(d @ (mu_e - mu_bar)) / float(d @ d) * d
    _, w, pi = best
    return IRLResult(w, env.features @ w, pi, gaps)


def compare_to_expert(env: GridWorld, reward, expert, states=None, gamma: float = 0.9) -> dict:
    """Does the optimal policy under a recovered ``reward`` (S,) do what the expert does? (notebook 04)

    ``expert`` is the expert's policy (int array (S,)); ``states`` the demonstrations (default:
    every non-water start cell counts as visited). Returns

    - ``optimal_action_rate``: on the visited states, the share where the greedy action under
      ``reward`` is optimal under the *true* reward (ties count as agreement);
    - ``same_action_rate``: the share where it is the expert's very action;
    - ``true_return`` / ``expert_true_return``: expected discounted true return from the start
      distribution of both policies, and ``return_ratio`` = their ratio (1: as good as the expert);
    - ``policy``: the greedy policy under ``reward``.
    """
    env, gamma = _check_env(env), _check_gamma(gamma)
    r = _check_reward(env, reward)
    pe = _check_policy(env, expert)
    if states is None:
        visited = np.flatnonzero(env.start_distribution > 0)
    else:
        visited = np.unique(_check_states(env, states))
    pi = expert_policy(env, gamma, r)
    _, Q_true = hard_value_iteration(env, env.reward, gamma)
    tol = 1e-6 * max(1.0, float(np.abs(Q_true).max()))
    optimal = Q_true[visited, pi[visited]] >= Q_true[visited].max(1) - tol

    def value(p):  # exact discounted value V^p = (I - γ M_p)^{-1} r, averaged over the starts
        M = env.T[np.arange(env.n_states), p]
        return float(env.start_distribution @ np.linalg.solve(np.eye(env.n_states) - gamma * M, env.reward))

    ret, ret_e = value(pi), value(pe)
    return {"optimal_action_rate": float(optimal.mean()), "same_action_rate": float((pi[visited] == pe[visited]).mean()),
            "true_return": ret, "expert_true_return": ret_e,
            "return_ratio": ret / ret_e if ret_e != 0 else float("nan"), "policy": pi}
