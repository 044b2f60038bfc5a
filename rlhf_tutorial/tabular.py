r"""Tabular reinforcement learning: ε-greedy Q-learning and value iteration.

Notebook 01 (RL basics on Gymnasium) derives every function here and writes it inline first; the
notebook then checks numerically that its inline version and this one give the same numbers.
Everything works on Gymnasium environments with ``Discrete`` observation and action spaces
(CliffWalking-v1, FrozenLake-v1, Taxi-v4, ...). A Q table is a float array of shape
``(n_states, n_actions)``; a tabular policy is an int array of shape ``(n_states,)``.

The Q-learning target (Watkins 1989) for a transition :math:`(s_t, a_t, r_t, s_{t+1})` is

.. math::
    y_t = r_t + \gamma\,(1 - \mathrm{terminated}_t)\,\max_{a'} Q(s_{t+1}, a'),

so the future is worth 0 after a real end of the MDP (``terminated``) but is still bootstrapped
when only a time limit cut the episode (``truncated``): the state reached there is not terminal.
"""

from __future__ import annotations

from typing import Callable

import gymnasium as gym
import numpy as np

from . import _validate as validate
from .rl import check_probability
from .utils import progress_bar

__all__ = [
    "epsilon_greedy",
    "q_learning_update",
    "linear_epsilon",
    "q_learning",
    "value_iteration",
    "greedy_policy",
    "evaluate_tabular",
]


# --------------------------------------------------------------------------- validation helpers
def _check_int(name: str, value, low: int = 0, high: int | None = None) -> int:
    """An int in [low, high); raise TypeError for non-ints and ValueError when out of range."""
    return validate.integer(name, value, low, None if high is None else high - 1)


def _check_rng(rng) -> np.random.Generator:
    return validate.instance("rng", rng, np.random.Generator, "numpy.random.Generator (e.g. np.random.default_rng(0))")


def _check_q_table(Q, name: str = "Q") -> np.ndarray:
    """A 2-D floating-point NumPy array (n_states, n_actions) without NaN/inf."""
    if not isinstance(Q, np.ndarray):
        raise TypeError(
            f"{name} must be a NumPy array of shape (n_states, n_actions), got {type(Q).__name__}"
        )
    if Q.ndim != 2 or Q.shape[0] < 1 or Q.shape[1] < 1:
        raise ValueError(f"{name} must be a 2-D array of shape (n_states, n_actions), got shape {Q.shape}")
    if not np.issubdtype(Q.dtype, np.floating):
        raise TypeError(
            f"{name} must have a floating-point dtype (in-place updates would be rounded), got {Q.dtype}"
        )
    if not np.isfinite(Q).all():
        raise ValueError(f"{name} contains NaN or inf")
    return Q


def _check_discrete_env(env, where: str) -> tuple[int, int]:
    """Return (n_states, n_actions) of an env whose two spaces are ``Discrete``, else TypeError."""
    if not isinstance(env, gym.Env):
        raise TypeError(f"{where} needs a gymnasium.Env, got {type(env).__name__}")
    for attr in ("observation_space", "action_space"):
        space = getattr(env, attr)
        if not isinstance(space, gym.spaces.Discrete):
            raise TypeError(
                f"{where} needs a Discrete env.{attr} (a table has one row per state and one column "
                f"per action), got {type(space).__name__} {space}; use function approximation "
                "(notebooks 02-03) for continuous spaces"
            )
        if int(space.start) != 0:
            raise ValueError(f"{where} needs env.{attr} to start at 0, got start={space.start}")
    return int(env.observation_space.n), int(env.action_space.n)


# --------------------------------------------------------------------------- acting and learning
def epsilon_greedy(q_row, epsilon: float, rng: np.random.Generator) -> int:
    r"""Pick an action from one row ``Q(s, ·)`` of a Q table, ε-greedily (notebook 01).

    With probability ``epsilon`` a uniformly random action; otherwise a greedy action
    :math:`\arg\max_a Q(s,a)`, ties broken uniformly at random (with a fresh Q table of zeros,
    "always the first action" would be a systematic bias, not exploration). All randomness comes
    from ``rng``, so the same generator state gives the same action.
    """
    epsilon = check_probability("epsilon", epsilon)
    rng = _check_rng(rng)
    q = np.asarray(q_row, dtype=np.float64)
    if q.ndim != 1 or q.size == 0:
        raise ValueError(f"q_row must be a non-empty 1-D array (one row Q[s]), got shape {q.shape}")
    if not np.isfinite(q).all():
        raise ValueError("q_row contains NaN or inf")
    if rng.random() < epsilon:
        return int(rng.integers(q.size))
    best = np.flatnonzero(q == q.max())
    return int(best[rng.integers(best.size)])


def q_learning_update(Q: np.ndarray, s: int, a: int, r: float, s_next: int, terminated: bool,
                      alpha: float, gamma: float) -> float:
    r"""One Q-learning step on the table ``Q`` (updated in place); returns the TD error δ (notebook 01).

    .. math::
        \delta = r + \gamma\,(1-\mathrm{terminated})\max_{a'} Q(s', a') - Q(s, a), \qquad
        Q(s,a) \leftarrow Q(s,a) + \alpha\,\delta

    Pass ``terminated`` from ``env.step``, *not* ``terminated or truncated``: a time limit does
    not make ``s_next`` worthless, so a truncated transition still bootstraps from ``Q[s_next]``.
    """
    Q = _check_q_table(Q)
    n_states, n_actions = Q.shape
    s = _check_int("s", s, 0, n_states)
    s_next = _check_int("s_next", s_next, 0, n_states)
    a = _check_int("a", a, 0, n_actions)
    alpha = validate.probability("alpha", alpha)  # 0: the TD error without an update
    gamma = check_probability("gamma", gamma)
    if isinstance(r, bool) or not isinstance(r, (int, float, np.integer, np.floating)):
        raise TypeError(f"r must be a number (the reward), got {type(r).__name__} ({r!r})")
    if not np.isfinite(r):
        raise ValueError(f"r must be finite, got {r}")
    if not isinstance(terminated, (bool, np.bool_)):
        raise TypeError(f"terminated must be a bool (from env.step), got {type(terminated).__name__}")
    future = 0.0 if terminated else gamma * float(Q[s_next].max())
    td_error = float(r) + future - float(Q[s, a])
    Q[s, a] += alpha * td_error
    return td_error


def linear_epsilon(episode: int, n_episodes: int, start: float = 1.0, end: float = 0.05,
                   decay_fraction: float = 0.5) -> float:
    """ε for ``episode``: linear from ``start`` to ``end`` over the first ``decay_fraction`` of
    ``n_episodes`` episodes, then constant at ``end`` (notebook 01's exploration schedule)."""
    n_episodes = _check_int("n_episodes", n_episodes, 1)
    episode = _check_int("episode", episode, 0)
    start = check_probability("epsilon_start", start)
    end = check_probability("epsilon_end", end)
    decay_fraction = check_probability("decay_fraction", decay_fraction)
    decay_episodes = decay_fraction * n_episodes
    if decay_episodes <= 0 or episode >= decay_episodes:
        return end
    return start + (end - start) * episode / decay_episodes


def q_learning(env: gym.Env, n_episodes: int, alpha: float = 0.5, gamma: float = 1.0,
               epsilon_start: float = 0.1, epsilon_end: float | None = None,
               decay_fraction: float = 0.5, seed: int = 0, progress: bool = True,
               Q: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tabular ε-greedy Q-learning for ``n_episodes`` episodes; returns ``(Q, returns)`` (notebook 01).

    - ε follows :func:`linear_epsilon` from ``epsilon_start`` to ``epsilon_end`` (default: constant
      ``epsilon_start``) over the first ``decay_fraction`` of the episodes;
    - actions come from :func:`epsilon_greedy` with ``rng = np.random.default_rng(seed)``; the env is
      reset with ``seed`` once, then continues its own random stream, so a run is reproducible;
    - every transition goes through :func:`q_learning_update` (``terminated`` ends the bootstrap,
      ``truncated`` only ends the episode).

    ``returns[i]`` is the undiscounted return of training episode ``i`` (exploration included).
    The env must end its episodes by itself: give it a time limit (``gym.make(...,
    max_episode_steps=...)``) if it has none. ``Q`` may be given to continue training (it is
    updated in place); by default a table of zeros is created.
    """
    n_states, n_actions = _check_discrete_env(env, "q_learning")
    n_episodes = _check_int("n_episodes", n_episodes, 1)
    seed = _check_int("seed", seed, 0)
    alpha = validate.probability("alpha", alpha, low_open=True)
    gamma = check_probability("gamma", gamma)
    epsilon_start = check_probability("epsilon_start", epsilon_start)
    epsilon_end = epsilon_start if epsilon_end is None else check_probability("epsilon_end", epsilon_end)
    decay_fraction = check_probability("decay_fraction", decay_fraction)
    if Q is None:
        Q = np.zeros((n_states, n_actions))
    else:
        Q = _check_q_table(Q)
        if Q.shape != (n_states, n_actions):
            raise ValueError(f"Q must have shape (n_states, n_actions) = {(n_states, n_actions)}, got {Q.shape}")

    rng = np.random.default_rng(seed)
    returns = np.zeros(n_episodes)
    bar = progress_bar(range(n_episodes), desc="Q-learning", disable=not progress)
    for episode in bar:
        epsilon = linear_epsilon(episode, n_episodes, epsilon_start, epsilon_end, decay_fraction)
        s, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        done = False
        while not done:
            a = epsilon_greedy(Q[s], epsilon, rng)
            s_next, r, terminated, truncated, _ = env.step(a)
            q_learning_update(Q, s, a, r, s_next, terminated, alpha, gamma)
            returns[episode] += r
            s = s_next
            done = terminated or truncated
    return Q, returns


# --------------------------------------------------------------------------- planning with a model
def value_iteration(env: gym.Env, gamma: float = 1.0, tol: float = 1e-10,
                    max_iter: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    r"""Optimal values from the env's transition model ``env.unwrapped.P``; returns ``(V*, Q*)``.

    Notebook 01 uses it as the reference that Q-learning should reach. The model is Gymnasium's
    toy-text format ``P[s][a] = [(prob, s_next, reward, terminated), ...]``, and the Bellman
    optimality backup is iterated until the largest change is below ``tol``:

    .. math::
        Q(s,a) \leftarrow \sum_{s'} p(s' \mid s,a)\,\big[r + \gamma\,(1-\mathrm{terminated})\,
        \max_{a'} Q(s',a')\big], \qquad V(s) = \max_a Q(s,a).

    ``gamma = 1`` is allowed for tasks where every good policy ends (CliffWalking, FrozenLake); the
    model knows no time limit, so V* is the value without truncation. Raises ``RuntimeError`` when
    ``max_iter`` sweeps do not converge.
    """
    n_states, n_actions = _check_discrete_env(env, "value_iteration")
    gamma = check_probability("gamma", gamma)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol > 0:
        raise ValueError(f"tol must be a positive number, got {tol!r}")
    max_iter = _check_int("max_iter", max_iter, 1)
    P = getattr(env.unwrapped, "P", None)
    if not isinstance(P, dict):
        raise TypeError(
            f"value_iteration needs the transition model env.unwrapped.P (a dict, as in Gymnasium's "
            f"toy-text envs), got {type(P).__name__}"
        )
    # Dense arrays: expected reward R[s, a] and continuation probabilities T[s, a, s'].
    R = np.zeros((n_states, n_actions))
    T = np.zeros((n_states, n_actions, n_states))
    for s in range(n_states):
        for a in range(n_actions):
            for prob, s_next, reward, terminated in P[s][a]:
                R[s, a] += prob * reward
                if not terminated:
                    T[s, a, int(s_next)] += prob
    V = np.zeros(n_states)
    for _ in range(max_iter):
        Q = R + gamma * T @ V
        V_new = Q.max(axis=1)
        delta = np.abs(V_new - V).max()
        V = V_new
        if delta < tol:
            return V, R + gamma * T @ V
    raise RuntimeError(f"value_iteration did not converge in max_iter={max_iter} sweeps (last change {delta:.3g})")


# --------------------------------------------------------------------------- policies
def greedy_policy(Q: np.ndarray) -> np.ndarray:
    """The greedy policy π(s) = argmax_a Q(s, a) as an int array of shape ``(n_states,)`` (notebook 01).

    Ties go to the lowest action index, so the result is deterministic.
    """
    Q = _check_q_table(Q)
    return Q.argmax(axis=1)


def evaluate_tabular(env: gym.Env, policy, n_episodes: int = 100, seed: int = 10_000,
                     max_steps: int = 1_000) -> np.ndarray:
    """Undiscounted returns of ``n_episodes`` episodes of a tabular policy (notebook 01).

    ``policy`` is an int array of shape ``(n_states,)`` (e.g. :func:`greedy_policy`) or a callable
    ``state -> action``. The env is reset with ``seed`` once, then continues its random stream, so
    the same policy gives the same returns. ``max_steps`` caps each episode (a greedy policy can
    walk into a wall forever in an env without a time limit, like CliffWalking-v1).
    """
    n_states, n_actions = _check_discrete_env(env, "evaluate_tabular")
    n_episodes = _check_int("n_episodes", n_episodes, 1)
    seed = _check_int("seed", seed, 0)
    max_steps = _check_int("max_steps", max_steps, 1)
    act: Callable[[int], int]
    if callable(policy):
        act = policy
    else:
        table = np.asarray(policy)
        if table.shape != (n_states,):
            raise ValueError(f"policy must be an int array of shape (n_states,) = ({n_states},), got shape {table.shape}")
        if not np.issubdtype(table.dtype, np.integer):
            raise TypeError(f"policy must hold integer actions, got dtype {table.dtype}")
        if table.min() < 0 or table.max() >= n_actions:
            raise ValueError(f"policy actions must be in [0, {n_actions - 1}], got range [{table.min()}, {table.max()}]")

        def act(s: int) -> int:
            return int(table[s])

    returns = np.zeros(n_episodes)
    for episode in range(n_episodes):
        s, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        for _ in range(max_steps):
            s, r, terminated, truncated, _ = env.step(act(s))
            returns[episode] += r
            if terminated or truncated:
                break
    return returns
