"""Notebook 01 (RL basics): the Q-learning update."""

from __future__ import annotations

import inspect
import math

import numpy as np
import torch

from ..tabular import epsilon_greedy, q_learning_update
from ._kit import (
    _FAILED,
    ATOL,
    RTOL,
    CheckResult,
    _Checker,
    _compare,
    _to_numpy,
    with_reference,
)
from ._quiz import Question

__all__ = ["q_learning_update_reference", "check_q_learning_update", "sarsa_reference"]



def q_learning_update_reference(Q, s, a, r, s_next, terminated, alpha, gamma, truncated=False):
    """Notebook 01's exercise, solved: ``tabular.q_learning_update`` in place; returns the TD error."""
    return q_learning_update(Q, s, a, r, s_next, bool(terminated), alpha, gamma)


@with_reference(q_learning_update_reference)
def check_q_learning_update(fn, verbose: bool = True) -> CheckResult:
    r"""Check a one-step Q-learning update ``fn(Q, s, a, r, s_next, terminated, alpha, gamma)``.

    Notebook 01 (tabular Q-learning; exercise 2, "truncation as death"). The function should move
    ``Q[s, a]`` towards :math:`r + \gamma(1-\mathrm{terminated})\max_{a'}Q(s', a')` by a step
    ``alpha``, in place (like ``tabular.q_learning_update``) or by returning the new table. If it
    also returns the TD error δ (a number), that is checked too. If your function has a
    ``truncated`` parameter, it is passed as well, and a truncated step must still bootstrap.
    Hidden cases: an ordinary step, a termination, a truncation, a self-loop, γ = 0.
    """
    chk = _Checker("check_q_learning_update", fn, verbose)
    if not chk.ok:
        return chk.finish()
    try:
        has_trunc = "truncated" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        has_trunc = False
    rng = np.random.default_rng(11)
    Q0 = np.round(rng.normal(size=(5, 3)), 3)
    Q0[4] = [2.0, 5.0, -1.0]  # the next state of most cases: max is 5.0
    cases = [
        ("an ordinary step", dict(s=0, a=1, r=1.0, s_next=4, terminated=False, truncated=False, alpha=0.5, gamma=0.9),
         "the target is r + γ·max_a' Q[s_next, a'] (the max over the next state's row)."),
        ("a termination (terminated=True)", dict(s=1, a=0, r=-1.0, s_next=4, terminated=True, truncated=False,
                                                  alpha=0.5, gamma=0.9),
         "after a real end of the MDP the future is worth 0: target = r, no bootstrap."),
        ("a time-limit truncation (terminated=False, truncated=True)",
         dict(s=2, a=2, r=0.5, s_next=4, terminated=False, truncated=True, alpha=0.3, gamma=0.99),
         "a time limit does not make s_next worthless: still bootstrap from max Q[s_next] "
         "(only `terminated` stops the bootstrap, never `truncated`)."),
        ("a self-loop (s_next == s)", dict(s=3, a=1, r=0.2, s_next=3, terminated=False, truncated=False,
                                            alpha=1.0, gamma=0.5),
         "compute the whole target from the *old* table before writing Q[s, a]."),
        ("γ = 0", dict(s=0, a=2, r=2.0, s_next=4, terminated=False, truncated=False, alpha=0.1, gamma=0.0),
         "with γ = 0 the target is just r; Q[s, a] moves by α·(r − Q[s, a])."),
    ]
    for name, kw, hint in cases:
        Q_ref = Q0.copy()
        td_ref = q_learning_update(Q_ref, kw["s"], kw["a"], kw["r"], kw["s_next"], bool(kw["terminated"]),
                                   kw["alpha"], kw["gamma"])
        wrong_q = Q0.copy()  # the classic bug: "terminated or truncated" stops the bootstrap
        q_learning_update(wrong_q, kw["s"], kw["a"], kw["r"], kw["s_next"], True, kw["alpha"], kw["gamma"])
        greedy = Q0.copy()  # forgot the step size: Q[s, a] = target
        greedy[kw["s"], kw["a"]] += td_ref
        sarsa = Q0.copy()  # used Q[s_next, a] instead of the max
        fut = 0.0 if kw["terminated"] else kw["gamma"] * Q0[kw["s_next"], kw["a"]]
        sarsa[kw["s"], kw["a"]] += kw["alpha"] * (kw["r"] + fut - Q0[kw["s"], kw["a"]])
        mistakes = [
            (wrong_q, "this is the update without bootstrap: pass/use `terminated` only; a truncated "
                      "transition still bootstraps from max Q[s_next]."),
            (greedy, "scale the TD error by the step size α: Q[s,a] += α·δ."),
            (sarsa, "Q-learning uses the max over a' of Q[s_next, a'], not Q[s_next, a] (that is SARSA-like)."),
        ]
        Q = Q0.copy()
        args = (Q, kw["s"], kw["a"], kw["r"], kw["s_next"], kw["terminated"], kw["alpha"], kw["gamma"])
        out = chk.call(name, *args, **({"truncated": kw["truncated"]} if has_trunc else {}))
        if out is _FAILED:
            continue
        table = Q
        if isinstance(out, (np.ndarray, torch.Tensor)) and tuple(out.shape) == Q0.shape:
            table = out  # returned the new table instead of updating in place
        msg = _compare(table, Q_ref, hint, mistakes)
        if msg is not None:
            if np.allclose(_to_numpy(table), Q0):
                msg = ("the table did not change: update Q[s, a] in place (Q[s, a] += α·δ) or return "
                       "the new table.")
            chk.add(name, msg)
            continue
        if isinstance(out, (int, float, np.floating, np.integer)) and not isinstance(out, bool) \
                and not math.isclose(float(out), td_ref, rel_tol=RTOL, abs_tol=ATOL):
            chk.add(name, f"the table is right, but the returned TD error is {float(out):.4g}, expected "
                          f"{td_ref:.4g} (δ = target − Q[s, a] *before* the update).")
            continue
        chk.add(name, None)
    return chk.finish()


def sarsa_reference(env, n_episodes, alpha, gamma, epsilon, seed):
    """Notebook 01's exercise 1, solved: on-policy SARSA with ε-greedy actions; returns ``(Q, returns)``.

    The target uses the action the agent will take next, :math:`r + \\gamma(1-\\text{term})Q(s', a')`.
    """
    rng = np.random.default_rng(seed)
    Q = np.zeros((env.observation_space.n, env.action_space.n))
    returns = np.zeros(n_episodes)
    for episode in range(n_episodes):
        s, _ = env.reset(seed=seed) if episode == 0 else env.reset()
        a = epsilon_greedy(Q[s], epsilon, rng)
        done = False
        while not done:
            s_next, r, terminated, truncated, _ = env.step(a)
            a_next = epsilon_greedy(Q[s_next], epsilon, rng)
            target = r + (0.0 if terminated else gamma * Q[s_next, a_next])
            Q[s, a] += alpha * (target - Q[s, a])
            returns[episode] += r
            s, a, done = s_next, a_next, terminated or truncated
    return Q, returns


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'A Q-learning step ends because of a time limit (truncated=True, terminated=False). The target is',
        ('r', '0', "r + γ·Q(s', a) with the same action", "r + γ·max_a' Q(s', a')",),
        3,
        "A time limit is not a real end: s' still has a future, so bootstrap. Only `terminated` removes γ·max Q(s')."),
    Question(
        'Why is Q-learning called off-policy?',
        ('it stores transitions in a replay buffer', 'it has no policy at all', "its target uses max over a', whatever action the ε-greedy policy takes next", 'it is trained offline',),
        2,
        "It learns the greedy policy's values while behaving ε-greedily; SARSA uses the action actually taken (on-policy)."),
    Question(
        'With discount γ = 0 an agent',
        ('maximises the sum of all future rewards', 'maximises only the immediate reward r_t', 'never learns anything', 'maximises the episode length',),
        1,
        'G_t = r_t + γ r_{t+1} + ... reduces to r_t when γ = 0.'),
    Question(
        'What does value iteration need that Q-learning does not?',
        ('the model: transition probabilities and rewards of every (s, a)', 'a neural network', 'an ε-greedy policy', 'a replay buffer',),
        0,
        'Value iteration applies the Bellman optimality operator with the known model; Q-learning uses sampled transitions.'),
]
