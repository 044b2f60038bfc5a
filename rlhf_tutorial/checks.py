r"""Exercise checkers: run a learner's function on hidden cases and compare with the package.

Each ``check_*`` function takes *your* function, calls it on several small hidden cases (a
termination, a truncation, a batch, a clipped ratio, a tie, ...), compares every answer with the
tested package version, and prints one friendly line per case that failed, with a hint about what
the case tests (shape? sign? masking? ties? truncation vs termination?). It never shows a bare
traceback: if your function raises, the exception's type and message are reported in one line.

It returns a :class:`CheckResult`, truthy when every case passed, so a notebook cell, a test or CI
can ``assert check_gae(my_gae)``. Functions that return NumPy arrays, torch tensors or plain
numbers are all accepted where that is natural (losses must return a torch tensor for the
gradient case to pass).

The checkers, the notebook each belongs to, and the signature of the function you pass:

- notebook 01: :func:`check_q_learning_update` ``fn(Q, s, a, r, s_next, terminated, alpha, gamma)``
- notebook 02: :func:`check_discounted_returns` ``fn(rewards, gamma) -> (T,)``
- notebook 02: :func:`check_reinforce_loss` ``fn(logprobs, returns, baseline) -> scalar``
- notebook 03: :func:`check_gae`
  ``fn(rewards, values, next_values, terminated, truncated, gamma, lam) -> advantages``
- notebook 03: :func:`check_ppo_clip_loss` ``fn(new_logp, old_logp, advantages, clip_coef) -> scalar``
- notebook 03: :func:`check_value_loss` ``fn(new_values, old_values, returns, clip_coef) -> scalar``
- notebook 03: :func:`check_soft_q_target`
  ``fn(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha) -> (B,)``
- notebook 05: :func:`check_bradley_terry_loss` ``fn(r1, r2, y) -> scalar``
- notebook 10: :func:`check_dpo_loss` ``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta) -> scalar``
- notebook 00: :func:`check_version_tuple` ``fn(version) -> (major, minor, patch)``
- notebook 04: :func:`check_answer_probabilities`
  ``fn(delta, beta, epsilon, tie_margin) -> (p_left, p_equal, p_right)``
- notebook 09: :func:`check_token_gae` ``fn(rewards, values, response_mask, gamma, lam) -> (B, R)``
- notebook 06: :func:`check_disagreement` ``fn(returns_a, returns_b) -> (N,)``

Example (notebook 03)::

    from rlhf_tutorial.checks import check_gae
    assert check_gae(my_gae)   # prints ✅ or, per failed case, what differed and a hint
"""

from __future__ import annotations

import inspect
import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .ppo import ppo_policy_loss, ppo_value_loss
from .reinforce import reinforce_loss
from .rl import compute_gae, discounted_returns
from .sac import soft_q_target
from .tabular import q_learning_update

__all__ = [
    "CaseResult",
    "CheckResult",
    "check_discounted_returns",
    "check_gae",
    "check_reinforce_loss",
    "check_ppo_clip_loss",
    "check_value_loss",
    "check_q_learning_update",
    "check_soft_q_target",
    "check_bradley_terry_loss",
    "check_version_tuple",
    "check_answer_probabilities",
    "check_dpo_loss",
]

RTOL = 1e-5
ATOL = 1e-5


# --------------------------------------------------------------------------- the result object
@dataclass
class CaseResult:
    """One hidden case: its name, whether it passed, and the message shown when it did not.

    Used by every checker (notebooks 01, 02, 03 and 05).
    """

    name: str
    passed: bool
    message: str = ""


@dataclass
class CheckResult:
    """What a ``check_*`` function returns: truthy when every case passed.

    ``name`` is the checker, ``cases`` the :class:`CaseResult` of every hidden case; ``failures``
    lists the failed ones. ``str(result)`` is the report the checker printed. Returned by the
    exercise checkers of notebooks 01, 02, 03 and 05.
    """

    name: str
    cases: list[CaseResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return bool(self.cases) and all(c.passed for c in self.cases)

    @property
    def failures(self) -> list[CaseResult]:
        return [c for c in self.cases if not c.passed]

    def __bool__(self) -> bool:
        return self.passed

    def report(self) -> str:
        n = len(self.cases)
        if self.passed:
            return f"✅ {self.name}: all {n} hidden cases passed."
        lines = [f"❌ {self.name}: {len(self.failures)} of {n} hidden cases failed."]
        lines += [f"  ✗ {c.name}: {c.message}" for c in self.failures]
        return "\n".join(lines)

    __str__ = report

    def __repr__(self) -> str:
        return f"CheckResult(name={self.name!r}, passed={self.passed}, failed={len(self.failures)}/{len(self.cases)})"


# --------------------------------------------------------------------------- helpers
def _short(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if len(msg) > 160:
        msg = msg[:157] + "..."
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _to_numpy(x) -> np.ndarray:
    """A float64 array from a tensor, an array, a number or a (nested) list; raises TypeError."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    if x is None:
        raise TypeError("it returned None (did you forget `return`?)")
    if isinstance(x, (bool, np.bool_)):
        raise TypeError(f"it returned a bool ({x}), expected numbers")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"it returned a {type(x).__name__}, which is not an array of numbers") from exc
    return arr


def _fmt(a) -> str:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return f"{float(a):.6g}"
    return np.array2string(a, precision=4, suppress_small=True, max_line_width=10_000)


def _compare(got, expected: np.ndarray, hint: str, mistakes=()) -> str | None:
    """``None`` when ``got`` equals ``expected``; otherwise a one-line explanation with a hint.

    ``mistakes`` is a sequence of ``(wrong_answer, hint)``: when ``got`` matches a known wrong
    answer, that mistake's hint is given instead of the case's general one.
    """
    try:
        g = _to_numpy(got)
    except TypeError as exc:
        return f"{exc}. Hint: {hint}"
    expected = np.asarray(expected, dtype=np.float64)
    if expected.ndim == 0:
        if g.size != 1:
            return (f"wrong shape: expected a single number (a scalar loss, averaged over the batch), "
                    f"got shape {g.shape}. Hint: reduce with .mean().")
        g = g.reshape(())
    elif g.shape != expected.shape:
        return (f"wrong shape: expected {expected.shape}, got {g.shape}. Hint: keep one value per "
                "input element (time first: (T,) or (T, N)); check for accidental broadcasting, "
                "a missing/extra dimension or a reduction.")
    if not np.isfinite(g).all() and np.isfinite(expected).all():
        return f"your answer contains NaN or inf where a finite value is expected. Hint: {hint}"
    if np.allclose(g, expected, rtol=RTOL, atol=ATOL):
        return None
    for wrong, wrong_hint in mistakes:
        w = np.asarray(wrong, dtype=np.float64)
        if w.shape == expected.shape and not np.allclose(w, expected, rtol=RTOL, atol=ATOL) \
                and np.allclose(g, w, rtol=RTOL, atol=ATOL):
            return f"{_difference(g, expected)}. Hint: {wrong_hint}"
    if np.any(expected != 0) and np.allclose(g, -expected, rtol=RTOL, atol=ATOL):
        return (f"{_difference(g, expected)}: the sign is flipped. Hint: a loss is "
                f"minimised, so it is minus the objective you want to increase. {hint}")
    return f"{_difference(g, expected)}. Hint: {hint}"


def _difference(g: np.ndarray, expected: np.ndarray) -> str:
    """One line: the whole (small, 1-D) arrays, or the first differing element of a bigger one."""
    if expected.ndim == 0 or (expected.ndim == 1 and expected.size <= 8):
        return f"expected {_fmt(expected)}, got {_fmt(g)}"
    bad = np.argwhere(~np.isclose(g, expected, rtol=RTOL, atol=ATOL))
    idx = tuple(int(i) for i in bad[0])
    where = idx[0] if len(idx) == 1 else idx
    return (f"{len(bad)} of {expected.size} values differ; the first at index {where}: "
            f"expected {_fmt(expected[idx])}, got {_fmt(g[idx])}")


class _Checker:
    """Collects the cases of one check, calls the learner's function safely, prints the report."""

    def __init__(self, name: str, fn, verbose: bool):
        self.result = CheckResult(name)
        self.fn = fn
        self.verbose = verbose
        self.ok = callable(fn)
        if not self.ok:
            self.result.cases.append(CaseResult(
                "calling your function", False,
                f"expected a function, got a {type(fn).__name__}. Pass the function itself: "
                f"{name}(my_fn), not {name}(my_fn(...))."))

    def call(self, case: str, *args, **kwargs):
        """Call the learner's function; on an exception record a failed case and return ``_FAILED``."""
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return self.fn(*args, **kwargs)
        except Exception as exc:  # the learner's code: report it in one line, never a traceback
            self.add(case, f"your function raised {_short(exc)}")
            return _FAILED

    def add(self, case: str, message: str | None) -> None:
        self.result.cases.append(CaseResult(case, message is None, message or ""))

    def finish(self) -> CheckResult:
        if self.verbose:
            print(self.result.report())
        return self.result


_FAILED = object()


def _first(out):
    """Functions may return ``(value, extra)`` like the package (``(adv, returns)``, ``(loss, stats)``)."""
    if isinstance(out, tuple) and len(out) >= 1:
        return out[0]
    return out


def _convert(backend: str, *arrays):
    if backend not in ("numpy", "torch"):
        raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")
    if backend == "torch":
        return tuple(torch.as_tensor(np.array(a), dtype=torch.float32) for a in arrays)
    return tuple(np.array(a, dtype=np.float64) for a in arrays)


def _grad_case(chk: _Checker, case: str, make_inputs: Callable[[], tuple], reference: Callable,
               grad_index: int, hint: str, extra: tuple = ()) -> None:
    """Compare d(loss)/d(input ``grad_index``) of the learner's loss with the package's."""
    ref_inputs = make_inputs()
    ref_inputs[grad_index].requires_grad_(True)
    reference(*ref_inputs).backward()
    expected = ref_inputs[grad_index].grad.numpy()
    inputs = make_inputs()
    inputs[grad_index].requires_grad_(True)
    out = chk.call(case, *inputs, *extra)
    if out is _FAILED:
        return
    out = _first(out)
    if not isinstance(out, torch.Tensor) or out.grad_fn is None:
        chk.add(case, f"your loss is a {type(out).__name__} without a gradient. Hint: return a torch tensor "
                      "connected to the inputs (no .item(), .detach(), .numpy() or NumPy math), or "
                      "loss.backward() cannot train anything.")
        return
    if out.numel() != 1:
        chk.add(case, f"your loss has shape {tuple(out.shape)}, expected a single number. Hint: "
                      "average over the batch with .mean().")
        return
    try:
        out.reshape(()).backward()
    except Exception as exc:
        chk.add(case, f"loss.backward() failed on your loss: {_short(exc)}. Hint: return one scalar "
                      "tensor computed with torch operations from the inputs.")
        return
    grad = inputs[grad_index].grad
    if grad is None:
        chk.add(case, "no gradient reached the input that should be trained. Hint: " + hint)
        return
    msg = _compare(grad, expected, hint)
    chk.add(case, None if msg is None else "its gradient differs: " + msg)


# --------------------------------------------------------------------------- notebook 01
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


# --------------------------------------------------------------------------- notebook 02
def check_discounted_returns(fn, verbose: bool = True, backend: str = "numpy") -> CheckResult:
    r"""Check a reward-to-go function ``fn(rewards, gamma) -> G`` of shape ``(T,)``.

    Notebook 02 (REINFORCE; exercise 1, "reward-to-go without a loop"). Compared with
    ``rl.discounted_returns``: :math:`G_t = \sum_{k\ge0}\gamma^k r_{t+k}` for every t. ``rewards``
    is a 1-D NumPy array (``backend="torch"``: a float32 tensor). Hidden cases: one step, γ = 1,
    γ = 0, a long episode with γ = 0.99, negative rewards.
    """
    chk = _Checker("check_discounted_returns", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(2)
    cases = [
        ("a one-step episode", np.array([3.0]), 0.9, "with one step, G_0 = r_0."),
        ("γ = 1 (undiscounted)", np.array([1.0, 2.0, 3.0, 4.0]), 1.0,
         "with γ = 1, G_t is the plain sum of the rewards from t to the end: [10, 9, 7, 4]."),
        ("γ = 0", np.array([1.0, -2.0, 3.0]), 0.0, "with γ = 0, G_t = r_t."),
        ("a 50-step episode, γ = 0.99", np.round(rng.normal(size=50), 3), 0.99,
         "G_t looks forward: G_t = r_t + γ·G_{t+1}, computed from the last step backwards."),
        ("negative rewards, γ = 0.5", np.array([-1.0, 0.0, -4.0, 2.0, -1.0]), 0.5,
         "G_t = Σ_k γ^k r_{t+k}: each reward is discounted by its distance from t, not from 0."),
    ]
    for name, r, gamma, hint in cases:
        expected = discounted_returns(r, gamma)
        T = len(r)
        from_start = np.array([sum(gamma ** k * r[k] for k in range(t, T)) for t in range(T)])
        backward = np.array([sum(gamma ** (t - k) * r[k] for k in range(t + 1)) for t in range(T)])
        mistakes = [
            (from_start, "discount each reward by its distance from t (γ^(k−t)), not from the episode start (γ^k)."),
            (backward, "the reward-to-go looks *forward* (rewards at t, t+1, ...), not back to the start."),
            (expected[::-1], "the result is reversed: G_t must be at index t (reverse back after a backward pass)."),
            (np.full(T, expected[0]), "every step gets its own G_t; G_0 is only the first entry."),
        ]
        (arg,) = _convert(backend, r)
        out = chk.call(name, arg, gamma)
        if out is not _FAILED:
            chk.add(name, _compare(out, expected, hint, mistakes))
    return chk.finish()


def check_reinforce_loss(fn, verbose: bool = True, normalize: bool = False) -> CheckResult:
    r"""Check a REINFORCE loss ``fn(logprobs, returns, baseline) -> scalar tensor``.

    Notebook 02. The loss is :math:`-\frac1B\sum_i \log\pi_\phi(a_i|s_i)\,(G_i - b_i)`, compared
    with ``reinforce.reinforce_loss(..., normalize=normalize)`` (default: no advantage
    normalisation; pass ``normalize=True`` if your function standardises Â over the batch).
    ``logprobs`` and ``returns`` are float32 tensors of shape ``(B,)``; ``baseline`` is ``None``,
    a number, or a ``(B,)`` tensor. Hidden cases: no baseline, a constant baseline, a per-sample
    baseline, negative returns, and the gradient with respect to ``logprobs``.
    """
    chk = _Checker("check_reinforce_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(3)
    logp = np.log(rng.uniform(0.1, 0.9, size=6))
    ret = np.round(rng.normal(2.0, 3.0, size=6), 3)
    cases = [
        ("no baseline (baseline=None)", ret, None, "without a baseline Â_t = G_t; accept baseline=None."),
        ("a constant baseline (a number)", ret, 1.5, "Â_t = G_t − b with a number b (broadcast it)."),
        ("a per-sample baseline b(s_t)", ret, np.round(rng.normal(size=6), 3), "Â_t = G_t − b(s_t), elementwise."),
        ("all returns negative", -np.abs(ret) - 1.0, None,
         "the loss is −mean(log π · Â): minimising it raises log π where Â > 0 and lowers it where Â < 0."),
    ]

    def tensors(r, b):
        lp = torch.tensor(logp, dtype=torch.float32)
        rt = torch.tensor(r, dtype=torch.float32)
        bt = b if b is None or isinstance(b, float) else torch.tensor(b, dtype=torch.float32)
        return lp, rt, bt

    for name, r, b, hint in cases:
        lp, rt, bt = tensors(r, b)
        expected = float(reinforce_loss(lp, rt, bt, normalize=normalize))
        adv = rt - (0.0 if bt is None else torch.as_tensor(bt))
        mistakes = [
            (float((lp * adv).mean()), "return *minus* mean(log π · Â): the optimiser minimises the loss."),
            (float(-(lp * adv).sum()), "average over the batch (.mean()), do not sum."),
            (float(-(lp * rt).mean()), "subtract the baseline: Â_t = G_t − b(s_t)."),
            (float(reinforce_loss(lp, rt, bt, normalize=not normalize)),
             "advantage normalisation: pass normalize=True to the checker if your loss standardises Â "
             "(or drop the standardisation)."),
        ]
        out = chk.call(name, *tensors(r, b))
        if out is not _FAILED:
            chk.add(name, _compare(out, expected, hint, mistakes))
    b = np.round(rng.normal(size=6), 3)
    _grad_case(chk, "gradient with respect to logprobs",
               lambda: tensors(ret, b),
               lambda lp, rt, bt: reinforce_loss(lp, rt, bt, normalize=normalize),
               0, "only log π carries the gradient; returns and baseline are constants (dL/dlog π_i = −Â_i/B).")
    return chk.finish()


# --------------------------------------------------------------------------- notebook 03
def _gae_np(r, v, nv, term, trunc, gamma, lam, bootstrap_term=False, bootstrap_trunc=True,
            stop_at_trunc=True, next_from_values=False):
    """A reference GAE with switches that reproduce the typical mistakes (for hints)."""
    r, v, nv, term, trunc = (np.asarray(x, dtype=np.float64) for x in (r, v, nv, term, trunc))
    if next_from_values:
        nv = np.concatenate([v[1:], nv[-1:]], axis=0)
    not_term = np.ones_like(term) if bootstrap_term else 1.0 - term
    boot = not_term * (1.0 if bootstrap_trunc else 1.0 - trunc)
    delta = r + gamma * boot * nv - v
    cont = (1.0 - term) * ((1.0 - trunc) if stop_at_trunc else 1.0)
    adv = np.zeros_like(r)
    last = np.zeros_like(r[0])
    for t in range(len(r) - 1, -1, -1):
        last = delta[t] + gamma * lam * cont[t] * last
        adv[t] = last
    return adv


def check_gae(fn, verbose: bool = True, backend: str = "numpy") -> CheckResult:
    r"""Check generalized advantage estimation ``fn(rewards, values, next_values, terminated, truncated, gamma, lam)``.

    Notebook 03 (exercise 1, "write GAE yourself"). Compared with the advantages of
    ``rl.compute_gae``; your function may return the advantages or ``(advantages, returns)``.
    Inputs are float arrays of shape ``(T,)`` or ``(T, N)`` (time first), ``terminated`` and
    ``truncated`` hold 0.0/1.0; ``backend="torch"`` passes float32 tensors instead of NumPy arrays.
    ``next_values[t]`` is V(s_{t+1}) of the *real* next state (at an episode end, the final
    observation, not the reset one). Hidden cases: a single episode, a termination, a truncation
    (bootstrap!), a (T, N) batch, λ = 0 and λ = 1.
    """
    chk = _Checker("check_gae", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(4)

    def rollout(shape, term_at=(), trunc_at=()):
        r = np.round(rng.normal(1.0, 0.5, size=shape), 3)
        v = np.round(rng.normal(2.0, 1.0, size=shape), 3)
        term, trunc = np.zeros(shape), np.zeros(shape)
        for idx in term_at:
            term[idx] = 1.0
        for idx in trunc_at:
            trunc[idx] = 1.0
        nv = np.concatenate([v[1:], np.round(rng.normal(2.0, 1.0, size=(1,) + shape[1:]), 3)], axis=0)
        ends = (term + trunc) > 0  # at an episode end V(s_{t+1}) is the final observation's value
        nv[ends] = np.round(rng.normal(5.0, 1.0, size=int(ends.sum())), 3)
        return r, v, nv, term, trunc

    cases = [
        ("a single episode, no ends (T,)", rollout((6,)), 0.99, 0.95,
         "δ_t = r_t + γ V(s_{t+1}) − V(s_t) and A_t = δ_t + γλ A_{t+1}, computed backwards from the last step."),
        ("a termination at t=2", rollout((6,), term_at=[2]), 0.9, 0.8,
         "at a termination the future is worth 0: no γ·V(s_{t+1}) in δ_t, and A_t does not add A_{t+1}."),
        ("a truncation at t=3 (bootstrap)", rollout((6,), trunc_at=[3]), 0.9, 0.8,
         "at a truncation δ_t still bootstraps with γ·next_values[t] (the time limit is not death), "
         "but A_t does not add A_{t+1}, which belongs to the next episode."),
        ("a (T, N) batch with both kinds of ends", rollout((7, 3), term_at=[(1, 0), (4, 2)],
                                                           trunc_at=[(3, 1), (5, 0)]), 0.95, 0.9,
         "handle (T, N) arrays: loop over time only, every env (column) at once; the masks are per (t, env)."),
        ("λ = 0 (one-step TD error)", rollout((5, 2), term_at=[(2, 1)], trunc_at=[(3, 0)]), 0.9, 0.0,
         "with λ = 0, A_t = δ_t, the one-step TD error."),
        ("λ = 1 (Monte-Carlo return minus V)", rollout((5, 2), term_at=[(1, 0)], trunc_at=[(2, 1)]), 0.9, 1.0,
         "with λ = 1, A_t = Σ_k γ^k δ_{t+k} = (discounted return, bootstrapped at the end) − V(s_t)."),
    ]
    for name, (r, v, nv, term, trunc), gamma, lam, hint in cases:
        expected = compute_gae(r, v, nv, term, trunc, gamma, lam)[0].numpy().astype(np.float64)
        mistakes = [
            (_gae_np(r, v, nv, term, trunc, gamma, lam, bootstrap_term=True),
             "this bootstraps through the termination: multiply γ·next_values[t] by (1 − terminated[t])."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam, bootstrap_trunc=False),
             "this treats the truncation as a termination: at a time limit δ_t must still add "
             "γ·next_values[t]; only `terminated` removes it."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam, stop_at_trunc=False),
             "the recursion crosses the truncation into the next episode: A_t may add A_{t+1} only if "
             "step t neither terminated nor was truncated (mask with (1−term)(1−trunc))."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam, next_from_values=True),
             "use next_values[t] for V(s_{t+1}): at an episode end values[t+1] is the reset state of "
             "the next episode, not the final observation."),
            (_gae_np(r, v, nv, term, trunc, gamma, lam) + v,
             "you returned the value targets (A + V); return the advantages A (or the pair (A, A + V))."),
        ]
        args = _convert(backend, r, v, nv, term, trunc)
        out = chk.call(name, *args, gamma, lam)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


def check_ppo_clip_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check PPO's clipped surrogate loss ``fn(new_logp, old_logp, advantages, clip_coef)``.

    Notebook 03. Compared with ``ppo.ppo_policy_loss``: with ρ = exp(new_logp − old_logp),
    :math:`L = -\mathbb{E}[\min(\rho A,\ \mathrm{clip}(\rho, 1-\epsilon, 1+\epsilon) A)]`. Inputs are
    float32 tensors of shape ``(B,)``; your function may return the loss or ``(loss, stats)``.
    Hidden cases: positive and negative advantages with the ratio inside the clip range, above
    1 + ε and below 1 − ε, a mixed batch, and the gradient with respect to ``new_logp`` (zero
    where the clipped term is the minimum).
    """
    chk = _Checker("check_ppo_clip_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    eps = 0.2
    cases = [
        ("A > 0, ratio inside [1−ε, 1+ε]", [1.05, 0.9, 1.1], [1.0, 2.0, 0.5],
         "inside the clip range the loss is −mean(ρ·A)."),
        ("A > 0, ratio above 1+ε (clipped)", [1.5, 2.0, 1.3], [1.0, 0.5, 2.0],
         "with A > 0 the gain stops at ρ = 1+ε: min(ρA, clip(ρ)A) picks the clipped term."),
        ("A > 0, ratio below 1−ε (not clipped)", [0.5, 0.6, 0.7], [1.0, 2.0, 0.5],
         "with A > 0 and ρ < 1−ε the min picks the *unclipped* ρA (the pessimistic bound): "
         "clipping only removes incentives, it never rewards going further."),
        ("A < 0, ratio below 1−ε (clipped)", [0.5, 0.6, 0.7], [-1.0, -2.0, -0.5],
         "with A < 0 the gain stops at ρ = 1−ε: the min picks clip(ρ)·A."),
        ("A < 0, ratio above 1+ε (not clipped)", [1.5, 2.0, 1.3], [-1.0, -0.5, -2.0],
         "with A < 0 and ρ > 1+ε the min picks the unclipped ρA: a bad action made more likely is "
         "fully penalised."),
        ("a mixed batch, ε = 0.1", [0.8, 1.05, 1.3, 0.95, 1.2, 0.7], [1.0, -1.0, 2.0, -0.5, -1.5, -1.0],
         "ρ = exp(new_logp − old_logp); clip with the given clip_coef, not a fixed 0.2."),
    ]

    def tensors(ratios, adv):
        old = torch.log(torch.linspace(0.2, 0.6, len(ratios)))
        new = old + torch.log(torch.tensor(ratios, dtype=torch.float32))
        return new, old, torch.tensor(adv, dtype=torch.float32)

    for name, ratios, adv, hint in cases:
        clip = 0.1 if "ε = 0.1" in name else eps
        new, old, a = tensors(ratios, adv)
        expected = float(ppo_policy_loss(new, old, a, clip)[0])
        rho = (new - old).exp()
        unc, clipped = rho * a, torch.clamp(rho, 1 - clip, 1 + clip) * a
        mistakes = [
            (float(-torch.max(unc, clipped).mean()),
             "use min(ρA, clip(ρ)A), not max: PPO takes the pessimistic (lower) bound of the objective."),
            (float(torch.min(unc, clipped).mean()),
             "return *minus* the clipped objective: the optimiser minimises the loss."),
            (float(-clipped.mean()),
             "take min(ρA, clip(ρ)A): using only the clipped term drops the pessimistic bound."),
            (float(-unc.mean()), "clip the ratio to [1 − clip_coef, 1 + clip_coef]."),
            (float(-torch.min((new - old) * a, torch.clamp(new - old, -clip, clip) * a).mean()),
             "ρ is the probability ratio exp(new_logp − old_logp), not the log difference."),
        ]
        out = chk.call(name, *tensors(ratios, adv), clip)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    ratios, adv = [0.5, 1.05, 1.5, 0.6, 1.4, 0.95], [1.0, 1.0, 1.0, -1.0, -1.0, -1.0]
    _grad_case(chk, "gradient with respect to new_logp",
               lambda: tensors(ratios, adv), lambda n, o, a: ppo_policy_loss(n, o, a, eps)[0], 0,
               "where the clipped term is the minimum the gradient is 0 (use torch.min / torch.clamp "
               "on tensors, keep old_logp and the advantages constant).", extra=(eps,))
    return chk.finish()


def check_value_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check PPO's value loss ``fn(new_values, old_values, returns, clip_coef)`` (``clip_coef=None``: unclipped).

    Notebook 03 (exercise 4, value clipping). Compared with ``ppo.ppo_value_loss``:
    unclipped :math:`\tfrac12\mathbb{E}[(V - \hat R)^2]`; clipped
    :math:`\tfrac12\mathbb{E}[\max((V-\hat R)^2, (V_{old} + \mathrm{clip}(V - V_{old}, -\epsilon, \epsilon) - \hat R)^2)]`.
    Inputs are float32 tensors ``(B,)``. Hidden cases: unclipped, clipped with small moves
    (nothing clipped), clipped with large moves both ways, and the gradient.
    """
    chk = _Checker("check_value_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    old = [1.0, 2.0, -1.0, 0.5, 3.0]
    ret = [1.5, 1.0, 0.0, 2.5, 2.0]
    cases = [
        ("unclipped (clip_coef=None)", [1.2, 1.8, -0.6, 1.5, 2.4], None,
         "without clipping the loss is ½·mean((V − R̂)²); accept clip_coef=None."),
        ("clipped, every move smaller than ε", [1.1, 1.9, -0.9, 0.6, 2.95], 0.2,
         "when |V − V_old| ≤ ε nothing is clipped and the loss equals the unclipped one."),
        ("clipped, large moves towards and past the target", [2.0, 0.2, 0.8, 2.0, 1.0], 0.2,
         "clip the *move* around the old value, V_old + clip(V − V_old, −ε, ε), then take the max "
         "of the two squared errors (the pessimistic one), and ½·mean."),
        ("clipped, ε = 0.5, mixed", [1.2, 3.0, -2.0, 0.7, 3.2], 0.5,
         "use the given clip_coef; clip around old_values, not around the returns."),
    ]

    def tensors(new):
        return (torch.tensor(new, dtype=torch.float32), torch.tensor(old, dtype=torch.float32),
                torch.tensor(ret, dtype=torch.float32))

    for name, new, clip, hint in cases:
        n, o, r = tensors(new)
        expected = float(ppo_value_loss(n, o, r, clip))
        unc = (n - r) ** 2
        c = 0.0 if clip is None else clip
        vc = o + torch.clamp(n - o, -c, c)
        mistakes = [
            (2 * expected, "the package's value loss has the factor ½: 0.5 · mean(squared error)."),
            (float(0.5 * torch.min(unc, (vc - r) ** 2).mean()),
             "take the max of the clipped and unclipped squared errors, not the min."),
            (float(0.5 * ((vc - r) ** 2).mean()),
             "use max(unclipped error, clipped error), not the clipped error alone."),
            (float(0.5 * ((r + torch.clamp(n - r, -c, c) - r) ** 2).mean()) if clip is not None else math.nan,
             "clip the new value around old_values (V_old ± ε), not around the returns."),
            (float(0.5 * unc.mean()) if clip is not None else math.nan,
             "with a clip_coef, also compute the clipped error and take the max."),
        ]
        out = chk.call(name, *tensors(new), clip)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, [m for m in mistakes if np.isfinite(m[0])]))
    _grad_case(chk, "gradient with respect to new_values (clipped)",
               lambda: tensors([2.0, 0.2, 0.8, 2.0, 1.0]), lambda n, o, r: ppo_value_loss(n, o, r, 0.2), 0,
               "the gradient flows through V (new_values); old_values and the returns are constants.",
               extra=(0.2,))
    return chk.finish()


def check_soft_q_target(fn, verbose: bool = True) -> CheckResult:
    r"""Check SAC's soft Bellman target ``fn(rewards, terminated, next_q1, next_q2, next_logp, gamma, alpha)``.

    Notebook 03 (SAC). Compared with ``sac.soft_q_target``:
    :math:`y = r + \gamma(1-\mathrm{term})\,[\min(Q'_1, Q'_2) - \alpha\log\pi(a'|s')]`. Inputs are
    float32 tensors ``(B,)`` (``terminated`` holds 0.0/1.0). Hidden cases: no episode ends, a
    termination, a truncated step (``terminated = 0``: it still bootstraps), α = 0, a large α.
    """
    chk = _Checker("check_soft_q_target", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(5)

    def batch(term):
        B = len(term)
        return (np.round(rng.normal(size=B), 3), np.array(term, dtype=np.float64),
                np.round(rng.normal(3, 1, size=B), 3), np.round(rng.normal(3, 1, size=B), 3),
                np.round(rng.normal(-1, 0.5, size=B), 3))

    cases = [
        ("no episode ends", batch([0, 0, 0, 0]), 0.99, 0.2,
         "y = r + γ·(min(Q'_1, Q'_2) − α·log π(a'|s'))."),
        ("a termination", batch([0, 1, 0, 1]), 0.99, 0.2,
         "after a termination the future is worth 0: y = r (no Q' and no entropy term)."),
        ("a truncated step (terminated=0)", batch([0, 0, 0]), 0.9, 0.1,
         "a time-limit truncation is not in `terminated`: those steps still bootstrap."),
        ("α = 0 (no entropy bonus)", batch([0, 1, 0]), 0.9, 0.0,
         "with α = 0 the target is the clipped double-Q target r + γ(1 − term)·min(Q'_1, Q'_2)."),
        ("a large α = 1.5", batch([1, 0, 0, 0, 1]), 0.95, 1.5,
         "the entropy bonus is −α·log π (log π < 0, so it *adds* value), inside γ(1 − term)."),
    ]
    for name, (r, term, q1, q2, lp), gamma, alpha, hint in cases:
        T = [torch.tensor(x, dtype=torch.float32) for x in (r, term, q1, q2, lp)]
        expected = soft_q_target(*T, gamma, alpha).numpy().astype(np.float64)
        nt = 1.0 - term
        mistakes = [
            (r + gamma * nt * (np.maximum(q1, q2) - alpha * lp),
             "take the min of the two target critics (clipped double Q), not the max."),
            (r + gamma * nt * ((q1 + q2) / 2 - alpha * lp), "take the min of the two target critics, not their mean."),
            (r + gamma * nt * (np.minimum(q1, q2) + alpha * lp),
             "the entropy term is −α·log π(a'|s') (minus): high entropy means a *larger* soft value."),
            (r + gamma * (np.minimum(q1, q2) - alpha * lp),
             "multiply the future by (1 − terminated): no bootstrap after a real end."),
            (r - alpha * lp + gamma * nt * np.minimum(q1, q2),
             "the −α·log π term belongs to the next state's soft value, inside γ(1 − term)[...]."),
        ]
        out = chk.call(name, *[t.clone() for t in T], gamma, alpha)
        if out is not _FAILED:
            chk.add(name, _compare(out, expected, hint, mistakes))
    return chk.finish()


# --------------------------------------------------------------------------- notebook 05
def check_bradley_terry_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check a Bradley–Terry loss on segment values ``fn(r1, r2, y) -> scalar tensor``.

    Notebook 05 (exercise 1, "write your own Bradley–Terry loss"). ``r1``, ``r2`` are the values
    r̂(τ1), r̂(τ2) of the two segments of each pair, float32 tensors ``(B,)``; ``y`` is 1 when τ1
    was preferred, 0 when τ2 was, 0.5 for "equal". The loss is
    :math:`\mathbb{E}[-y\log\sigma(\Delta) - (1-y)\log\sigma(-\Delta)]`, Δ = r1 − r2, the mean over
    the batch, as in ``reward_model.compare_loss`` (which computes r1, r2 from a net first).
    Hidden cases: clear preferences both ways, ties (y = 0.5), a case that reveals a flipped sign,
    huge differences (|Δ| = 200, where log(sigmoid(...)) gives inf), and the gradient.
    """
    chk = _Checker("check_bradley_terry_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    cases = [
        ("clear preferences (y ∈ {0, 1})", [1.0, 0.2, -0.5, 2.0], [0.0, 0.7, 0.5, 1.0], [1.0, 0.0, 1.0, 0.0],
         "−y·log σ(Δ) − (1 − y)·log σ(−Δ) with Δ = r1 − r2, averaged over the batch."),
        ("ties (y = 0.5)", [0.3, 1.0, -1.0], [0.3, 0.0, 1.0], [0.5, 0.5, 0.5],
         "a tie is the soft label y = 0.5: both terms count half (do not round y, do not skip ties); "
         "with Δ = 0 the loss is log 2."),
        ("sign convention: y = 1 and r1 > r2 must give a small loss", [3.0, 2.5], [0.0, -1.0], [1.0, 1.0],
         "y = 1 means τ1 is preferred: P(τ1 ≻ τ2) = σ(r1 − r2), so the loss is small when r1 > r2."),
        ("huge differences (|Δ| = 200)", [200.0, 0.0, 100.0], [0.0, 200.0, -100.0], [0.0, 1.0, 1.0],
         "use the stable form: −log σ(x) = softplus(−x) (F.logsigmoid, or "
         "F.binary_cross_entropy_with_logits(r1 − r2, y)); log(sigmoid(x)) overflows to −inf."),
    ]

    def tensors(a, b, y):
        return tuple(torch.tensor(x, dtype=torch.float32) for x in (a, b, y))

    for name, a, b, y, hint in cases:
        r1, r2, yt = tensors(a, b, y)
        expected = float(F.binary_cross_entropy_with_logits(r1 - r2, yt))
        d = (r1 - r2).double()
        yd = yt.double()
        mistakes = [
            (float(F.binary_cross_entropy_with_logits(r2 - r1, yt)),
             "the sign is flipped: P(τ1 ≻ τ2) = σ(r1 − r2), and y = 1 means τ1 was preferred."),
            (float(F.binary_cross_entropy_with_logits(r1 - r2, yt, reduction="sum")),
             "average over the pairs (.mean()), do not sum."),
            (float(-(yd * F.logsigmoid(d)).mean()),
             "include the (1 − y)·log σ(−Δ) term: it is what learns from y = 0 and from ties."),
            (float(F.binary_cross_entropy_with_logits(r1 - r2, torch.round(yt + 0.01))),
             "do not round ties to 0 or 1: y = 0.5 is a soft target."),
        ]
        out = chk.call(name, *tensors(a, b, y))
        if out is _FAILED:
            continue
        msg = _compare(_first(out), expected, hint, mistakes)
        if msg is not None and "huge" in name and "NaN or inf" in msg:
            msg = ("your loss is not finite for |Δ| = 200. Hint: log(sigmoid(x)) underflows: sigmoid(−200) "
                   "is 0 in float32 and log(0) = −inf. Use F.logsigmoid(x) (= −softplus(−x)) or "
                   "F.binary_cross_entropy_with_logits(r1 − r2, y).")
        chk.add(name, msg)
    _grad_case(chk, "gradient with respect to r1",
               lambda: tensors([1.0, 0.2, 50.0, -0.3], [0.0, 0.7, 0.0, -0.3], [1.0, 0.0, 0.0, 0.5]),
               lambda r1, r2, y: F.binary_cross_entropy_with_logits(r1 - r2, y), 0,
               "dL/dr1 = (σ(Δ) − y)/B; use a stable form so large Δ does not give NaN gradients.")
    return chk.finish()


# --------------------------------------------------------------------------- notebooks 00 and 04 (teaching kit)
def _version_tuple3(version: str) -> tuple:
    """Reference for :func:`check_version_tuple`: the first three numbers of the public version."""
    import re

    nums = [int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3]]
    return tuple(nums + [0] * (3 - len(nums)))


def check_version_tuple(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(version: str) -> (major, minor, patch)``, a version string as a tuple of three ints.

    Notebook 00 (exercise 1). ``"2.13.0+cpu"`` → ``(2, 13, 0)``, ``"1.0"`` → ``(1, 0, 0)``. Tuples
    of ints compare like versions (``(2, 13, 0) > (2, 2, 0)``) where strings do not
    (``"2.13" < "2.2"``). Hidden cases: a local tag (``+cu121``, whose digits are not part of the
    version), a missing patch number, a single number, a pre-release, and the comparison of two
    versions.
    """
    chk = _Checker("check_version_tuple", fn, verbose)
    if not chk.ok:
        return chk.finish()
    cases = [
        ("a local tag (+cpu)", "2.13.0+cpu", "keep major, minor and patch as ints: (2, 13, 0)."),
        ("a local tag with digits (+cu121)", "2.5.1+cu121", "drop the local tag after '+' first: its digits "
                                                            "(121) are not part of the version."),
        ("no patch number", "1.0", "pad with zeros to three numbers: '1.0' → (1, 0, 0)."),
        ("a single number", "3", "pad with zeros to three numbers: '3' → (3, 0, 0)."),
        ("a pre-release", "0.19.1rc2", "keep only the first three numbers: '0.19.1rc2' → (0, 19, 1)."),
    ]
    for name, version, hint in cases:
        expected = _version_tuple3(version)
        out = chk.call(name, version)
        if out is _FAILED:
            continue
        if not isinstance(out, tuple):
            chk.add(name, f"expected a tuple, got a {type(out).__name__} ({out!r}). Hint: return tuple(...), "
                          "lists and strings do not compare like versions.")
        elif not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in out):
            chk.add(name, f"expected a tuple of ints, got {out!r}. Hint: convert each part with int(...): "
                          "'13' < '2' as strings.")
        elif tuple(int(v) for v in out) != expected:
            chk.add(name, f"for {version!r} expected {expected}, got {out}. Hint: {hint}")
        else:
            chk.add(name, None)
    a = chk.call("comparing 2.13.0 with 2.2.1", "2.13.0")
    b = chk.call("comparing 2.13.0 with 2.2.1", "2.2.1") if a is not _FAILED else _FAILED
    if a is not _FAILED and b is not _FAILED:
        try:
            ok = bool(a > b)
        except Exception as exc:
            chk.add("comparing 2.13.0 with 2.2.1", f"comparing your results failed: {_short(exc)}. Hint: "
                                                   "return a tuple of ints.")
        else:
            chk.add("comparing 2.13.0 with 2.2.1", None if ok else
                    f"your results say 2.13.0 ≤ 2.2.1 ({a!r} vs {b!r}). Hint: compare numbers, not strings.")
    return chk.finish()


def _answer_probabilities(delta: float, beta: float, epsilon: float, tie_margin: float) -> np.ndarray:
    """Reference for :func:`check_answer_probabilities` (the model of ``feedback.ComparisonLabeler``)."""
    if abs(delta) <= tie_margin:
        p_first, attentive_tie = 0.5, 1.0
    else:
        attentive_tie = 0.0
        if math.isinf(beta):
            p_first = 1.0 if delta > 0 else 0.0
        else:
            z = beta * delta
            p_first = 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))
    attentive = 1.0 - epsilon
    p_equal = attentive * attentive_tie
    p_left = epsilon / 2 + attentive * (1 - attentive_tie) * p_first
    p_right = epsilon / 2 + attentive * (1 - attentive_tie) * (1 - p_first)
    return np.array([p_left, p_equal, p_right])


def check_answer_probabilities(fn, verbose: bool = True) -> CheckResult:
    r"""Check ``fn(delta, beta, epsilon, tie_margin) -> (p_left, p_equal, p_right)``.

    Notebook 04 (exercise 5). The probabilities of the three answers of
    ``feedback.ComparisonLabeler`` for a pair whose true returns differ by ``delta`` =
    R(τ1) − R(τ2): with probability ε a coin flip (left or right, never "equal"); otherwise
    "equal" when :math:`|\Delta| \le` ``tie_margin``, else left with the Bradley–Terry
    probability :math:`\sigma(\beta\Delta)`. So :math:`p_\text{left} = \varepsilon/2 +
    (1-\varepsilon)[|\Delta| > m]\,\sigma(\beta\Delta)`. Hidden cases: a clear pair, a tie, τ2
    better, a perfectly rational human (β = ∞), a huge difference (overflow), ε = 1.
    """
    chk = _Checker("check_answer_probabilities", fn, verbose)
    if not chk.ok:
        return chk.finish()
    cases = [
        ("a clear pair, τ1 better", (3.0, 1.0, 0.1, 0.5),
         "p_left = ε/2 + (1 − ε)·σ(βΔ): the inattentive ε share splits evenly between left and right."),
        ("a near tie (|Δ| ≤ tie_margin)", (0.3, 1.0, 0.1, 0.5),
         "an attentive human says 'equal' when |Δ| ≤ tie_margin; only the ε coin flips say left or right."),
        ("τ2 better (Δ < 0)", (-2.0, 0.7, 0.2, 0.5),
         "P(left) = σ(βΔ) is small when Δ < 0; Δ = R(τ1) − R(τ2)."),
        ("a perfectly rational human (β = inf)", (1.0, math.inf, 0.1, 0.5),
         "with β = ∞ the attentive human always picks the better segment: σ(∞·Δ) is 1 for Δ > 0."),
        ("a huge difference (βΔ = −1000)", (-100.0, 10.0, 0.05, 0.5),
         "σ(x) for very negative x: use exp(x) / (1 + exp(x)) (or scipy.special.expit) so exp does not overflow."),
        ("ε = 1 (never paying attention)", (5.0, 1.0, 1.0, 0.5),
         "with ε = 1 every answer is a coin flip: (0.5, 0, 0.5), whatever Δ."),
    ]
    for name, args, hint in cases:
        expected = _answer_probabilities(*args)
        delta, beta, epsilon, m = args
        no_eps = _answer_probabilities(delta, beta, 0.0, m)
        no_tie = _answer_probabilities(delta, beta, epsilon, -1.0)
        mistakes = [
            (no_eps, "include the inattentive human: with probability ε the answer is a fair coin (ε/2 each side)."),
            (no_tie, "an attentive human answers 'equal' (p_equal = 1 − ε) when |Δ| ≤ tie_margin."),
            (expected[::-1], "left means τ1 is better: p_left grows with Δ = R(τ1) − R(τ2)."),
        ]
        out = chk.call(name, *args)
        if out is _FAILED:
            continue
        try:
            got = _to_numpy(list(out) if isinstance(out, tuple) else out)
        except TypeError as exc:
            chk.add(name, f"{exc}. Hint: return three numbers (p_left, p_equal, p_right).")
            continue
        if got.shape == (3,) and np.isfinite(got).all() and not math.isclose(float(got.sum()), 1.0, abs_tol=1e-6):
            chk.add(name, f"your probabilities {_fmt(got)} sum to {got.sum():.4g}, not 1. Hint: {hint}")
            continue
        chk.add(name, _compare(got, expected, hint, mistakes))
    return chk.finish()


# --------------------------------------------------------------------------- notebook 10
def check_dpo_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check a DPO loss ``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)``.

    Notebook 10. Inputs are float32 tensors ``(B,)`` of summed response log-probabilities; the loss
    is :math:`-\mathbb{E}\log\sigma(\beta[(\log π_w - \log π^{ref}_w) - (\log π_l - \log π^{ref}_l)])`,
    as in ``dpo.dpo_loss``. Hidden cases: a batch, policy = reference (loss log 2), a larger β,
    a reference that differs from the policy, huge margins, and the gradient.
    """
    from .dpo import dpo_loss

    chk = _Checker("check_dpo_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    cases = [
        ("a batch, β = 0.1", [-5.0, -8.0, -3.0], [-6.0, -7.0, -9.0], [-5.5, -7.5, -4.0], [-5.5, -7.5, -8.0], 0.1,
         "−log σ(β·[(π_w − ref_w) − (π_l − ref_l)]) averaged over the pairs."),
        ("policy = reference: the loss is log 2", [-4.0, -2.0], [-3.0, -6.0], [-4.0, -2.0], [-3.0, -6.0], 0.1,
         "the implicit rewards are log-ratios to the reference: at the start of training they are all 0."),
        ("β = 1", [-2.0, -3.0], [-4.0, -1.0], [-3.0, -3.0], [-3.0, -2.0], 1.0,
         "multiply the margin by β (the beta argument, not a constant)."),
        ("the reference differs from the policy", [-5.0, -5.0], [-5.0, -5.0], [-9.0, -1.0], [-1.0, -9.0], 0.5,
         "subtract the reference log-probs: equal policy log-probs can still give a margin."),
        ("huge margins", [0.0, -900.0], [-900.0, 0.0], [-450.0, -450.0], [-450.0, -450.0], 1.0,
         "use F.logsigmoid (stable) instead of torch.log(torch.sigmoid(...)), which gives inf."),
    ]

    def tensors(*xs):
        return tuple(torch.tensor(x, dtype=torch.float32) for x in xs)

    for name, pw, pl, rw, rl, beta, hint in cases:
        args = tensors(pw, pl, rw, rl)
        expected = float(dpo_loss(*args, beta=beta))
        a, b, c, d = (x.double() for x in args)
        mistakes = [
            (float(-F.logsigmoid(beta * (a - b)).mean()), "subtract the reference: the margin is "
             "(log π_w − log π_ref,w) − (log π_l − log π_ref,l)."),
            (float(-F.logsigmoid(-beta * ((a - c) - (b - d))).mean()),
             "the sign is flipped: the chosen (w) response should get the larger implicit reward."),
            (float(-F.logsigmoid((a - c) - (b - d)).mean()), "multiply the margin by beta."),
            (float(-F.logsigmoid(beta * ((a - c) - (b - d))).sum()), "average over the pairs, do not sum."),
        ]
        out = chk.call(name, *tensors(pw, pl, rw, rl), beta)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    _grad_case(chk, "gradient with respect to policy_chosen_logps",
               lambda: tensors([-5.0, -8.0, -3.0], [-6.0, -7.0, -9.0], [-5.5, -7.5, -4.0], [-5.5, -7.5, -8.0]),
               lambda a, b, c, d: dpo_loss(a, b, c, d, beta=0.1), 0,
               "dL/d log π_w = −β·σ(−β·margin)/B: compute the loss with torch ops from the inputs.", extra=(0.1,))
    return chk.finish()


# --------------------------------------------------------------------------- notebook 09
def check_token_gae(fn, verbose: bool = True) -> CheckResult:
    r"""Check GAE over the tokens of LM responses ``fn(rewards, values, response_mask, gamma, lam) -> advantages``.

    Notebook 09. Inputs are float32 tensors ``[B, R]``; ``response_mask`` is 1 on a prefix of each
    row (the response up to and including EOS) and 0 on the padding after it. Compared with
    ``lm_rlhf.token_gae``: :math:`\delta_t = r_t + \gamma V_{t+1} - V_t`,
    :math:`A_t = \delta_t + \gamma\lambda A_{t+1}`, with :math:`V` and :math:`A` zero after the
    last real token, and 0 on padding. Returning ``(advantages, returns)`` is accepted. Hidden
    cases: full-length responses, an early EOS with junk values on the padding, a one-token
    response, γ = λ = 1 with zero values (the reward-to-go), λ = 0 (one-step TD errors).
    """
    from .lm_rlhf import token_gae

    chk = _Checker("check_token_gae", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(9)
    r4 = np.round(rng.normal(size=(2, 4)) * 0.1, 3)
    r4[:, -1] += [1.0, -0.5]
    v4 = np.round(rng.normal(size=(2, 4)), 3)
    early_mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float64)
    early_r = np.array([[-0.1, 2.0, 0.0, 0.0, 0.0], [0.0, -0.1, 0.1, 0.0, 1.0]])
    early_v = np.array([[0.3, 0.5, 9.0, 9.0, 9.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    cases = [
        ("two full-length responses, γ = 1, λ = 0.95", r4, v4, np.ones((2, 4)), 1.0, 0.95,
         "go backwards over t: δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}; after the last "
         "token V = 0 and A = 0."),
        ("an early EOS, junk values on the padding", early_r, early_v, early_mask, 1.0, 0.95,
         "the response ends at its last real token: use V = 0 (not the padding's value) after it, and "
         "return 0 advantages on the padding (multiply by the mask)."),
        ("a one-token response", np.array([[1.5, 0.0, 0.0]]), np.array([[0.5, 7.0, 7.0]]),
         np.array([[1.0, 0.0, 0.0]]), 1.0, 0.95, "a one-token response has A_0 = r_0 − V_0."),
        ("γ = λ = 1, values 0: the reward-to-go", r4, np.zeros((2, 4)), np.ones((2, 4)), 1.0, 1.0,
         "with γ = λ = 1 and V = 0, A_t is the sum of the rewards from t to the end."),
        ("λ = 0: one-step TD errors", r4, v4, np.ones((2, 4)), 1.0, 0.0,
         "with λ = 0, A_t = δ_t = r_t + γ·V_{t+1} − V_t."),
    ]
    for name, r, v, m, gamma, lam, hint in cases:
        rt, vt, mt = (torch.tensor(x, dtype=torch.float32) for x in (r, v, m))
        expected = token_gae(rt, vt, mt, gamma, lam)[0].numpy()
        unmasked = token_gae(rt, vt, torch.ones_like(mt), gamma, lam)[0] * mt
        forward = torch.zeros_like(rt)  # accumulating from the start instead of the end
        acc = torch.zeros(rt.shape[0])
        for t in range(rt.shape[1]):
            nv = vt[:, t + 1] * mt[:, t + 1] if t + 1 < rt.shape[1] else torch.zeros_like(acc)
            acc = (rt[:, t] + gamma * nv - vt[:, t] + gamma * lam * acc) * mt[:, t]
            forward[:, t] = acc
        mistakes = [
            (unmasked.numpy(), "after the last real token the value is 0: do not bootstrap from V on the padding."),
            (forward.numpy(), "GAE runs backwards in time (A_t needs A_{t+1}); loop over reversed(range(R))."),
        ]
        out = chk.call(name, rt.clone(), vt.clone(), mt.clone(), gamma, lam)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


__all__ += ["check_token_gae"]


# --------------------------------------------------------------------------- notebook 06
def check_disagreement(fn, verbose: bool = True) -> CheckResult:
    r"""Check an ensemble-disagreement function ``fn(returns_a, returns_b) -> (N,)``.

    Notebook 06 (exercise, "choose queries by disagreement"). ``returns_a`` and ``returns_b`` are
    float64 arrays ``(K, N)``: member k's value r̂_k(τ) of the first and of the second segment of
    each of N candidate pairs. The disagreement of a pair is the standard deviation over the K
    members (population std, ddof = 0) of the predicted preference
    :math:`P_k(\tau_1 \succ \tau_2) = \sigma(\hat r_k(\tau_1) - \hat r_k(\tau_2))`, as in
    ``rlhf.RewardEnsemble.disagreement``. Hidden cases: members that agree, one member, pairs
    where the members disagree by a little and by a lot, huge differences (where ``exp``
    overflows) and swapped pairs (the disagreement is symmetric).
    """
    chk = _Checker("check_disagreement", fn, verbose)
    if not chk.ok:
        return chk.finish()

    def sig(x):
        return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, dtype=np.float64)))

    rng = np.random.default_rng(6)
    ra, rb = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    cases = [
        ("three members, five pairs", ra, rb, "the std over members (axis 0) of σ(r̂_k(τ1) − r̂_k(τ2))."),
        ("members that agree", np.tile([[1.0, -2.0, 0.5]], (4, 1)), np.tile([[0.0, 0.0, 0.5]], (4, 1)),
         "when every member predicts the same preference, the disagreement is 0."),
        ("one member", np.array([[2.0, -1.0]]), np.array([[0.0, 0.0]]),
         "one member cannot disagree with itself: 0 for every pair (use ddof=0, not ddof=1)."),
        ("members that agree on the difference, not the offset", np.array([[1.0], [11.0]]), np.array([[0.0], [10.0]]),
         "a Bradley–Terry reward is defined up to a constant: compare the members' *preferences* "
         "σ(Δ_k), not their values r̂_k(τ)."),
        ("huge differences (|Δ| = 800)", np.array([[800.0, -800.0], [-800.0, 800.0]]), np.zeros((2, 2)),
         "σ(800) = 1 and σ(−800) = 0, so the disagreement is 0.5; compute σ stably "
         "(e.g. 0.5·(1 + tanh(Δ/2)), or torch.sigmoid) so exp does not overflow to inf/NaN."),
        ("swapped pairs", rb, ra, "the disagreement of (τ2, τ1) equals that of (τ1, τ2)."),
    ]
    for name, a, b, hint in cases:
        p = sig(a - b)
        expected = p.std(0)
        mistakes = [
            (p.std(0, ddof=1) if p.shape[0] > 1 else np.full(p.shape[1], np.nan),
             "use the population std (ddof = 0, NumPy's default; torch.std needs correction=0)."),
            ((a - b).std(0), "take the std of the preference probabilities σ(Δ_k), not of the differences Δ_k."),
            (a.std(0) + b.std(0), "the disagreement is about the *pair*: σ(r̂_k(τ1) − r̂_k(τ2)) per member, then the std."),
            (p.var(0), "the standard deviation, not the variance (take the square root)."),
            (p.std(1) if p.shape[1] == p.shape[0] else np.full(p.shape[1], np.nan),
             "members are along axis 0, pairs along axis 1: reduce over axis 0."),
        ]
        out = chk.call(name, np.array(a, dtype=np.float64), np.array(b, dtype=np.float64))
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


__all__ += ["check_disagreement"]


# --------------------------------------------------------------------------- notebooks 07 and 08
def check_sft_loss(fn, verbose: bool = True) -> CheckResult:
    """Check a masked SFT loss ``fn(logits, labels) -> scalar tensor`` (notebook 07, exercise 1).

    ``logits`` (B, L, V) float32, ``labels`` (B, L) int64 with −100 on positions that do not count
    (prompt, padding). Expected: shift by one (logits at t predict label t + 1) and average the
    cross-entropy over the counted positions only, like ``rlhf_tutorial.text.sft_loss`` and
    transformers' causal-LM loss. Hidden cases: a prompt mask, padding, rows with different
    numbers of counted tokens, and the gradient.
    """
    chk = _Checker("check_sft_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    g = torch.Generator().manual_seed(7)

    def ref(logits, labels):
        lg, lb = logits[:, :-1], labels[:, 1:]
        return F.cross_entropy(lg.reshape(-1, lg.size(-1)), lb.reshape(-1), ignore_index=-100)

    def make(labels):
        labels = torch.tensor(labels)
        return torch.randn(labels.shape[0], labels.shape[1], 6, generator=g), labels

    cases = [
        ("no mask", [[1, 2, 3, 4, 5]], "shift by one: logits[:, :-1] predict labels[:, 1:]; then the mean cross-entropy."),
        ("prompt masked with -100", [[-100, -100, 3, 4, 0]],
         "positions with label −100 do not count: average over the others only (ignore_index=-100)."),
        ("right padding, rows of different lengths", [[-100, 2, 3, -100, -100], [-100, -100, 1, 2, 3]],
         "average over all counted tokens of the batch (sum of losses / number of counted tokens), "
         "not the mean of per-row means."),
    ]
    for name, labels, hint in cases:
        logits, lab = make(labels)
        expected = float(ref(logits, lab))
        lg, lb = logits[:, :-1], lab[:, 1:]
        mistakes = [
            (float(F.cross_entropy(logits.reshape(-1, 6), lab.reshape(-1), ignore_index=-100)),
             "shift by one: the logits at position t predict the token at t + 1 (logits[:, :-1], labels[:, 1:])."),
            (float((F.cross_entropy(lg.reshape(-1, 6), lb.clamp(min=0).reshape(-1), reduction="none")
                    .view(lb.shape) * (lb != -100)).sum() / lb.numel()),
             "divide by the number of counted tokens (labels != −100), not by all positions."),
            (float(F.cross_entropy(lg.reshape(-1, 6), lb.clamp(min=0).reshape(-1))),
             "drop the −100 positions instead of replacing them by a real token id."),
        ]
        out = chk.call(name, logits.clone(), lab.clone())
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    logits, lab = make([[-100, -100, 3, 4, 0], [-100, 1, 2, -100, -100]])
    _grad_case(chk, "gradient", lambda: (logits.clone(), lab.clone()), ref, 0,
               "return a torch loss connected to the logits (no .item() or NumPy).")
    return chk.finish()


def check_last_token_index(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(attention_mask) -> (B,)`` the index of the last real token of each row (notebook 08, exercise 1).

    ``attention_mask`` (B, L) int64 with 1 on real tokens. Hidden cases: right padding, left padding,
    a mixed batch, a row without padding and a one-token row. Expected: like
    ``rlhf_tutorial.text_reward.last_token_index``.
    """
    from .text_reward import last_token_index

    chk = _Checker("check_last_token_index", fn, verbose)
    if not chk.ok:
        return chk.finish()
    cases = [
        ("right padding", [[1, 1, 1, 0, 0], [1, 1, 1, 1, 0]],
         "with right padding the last real token is at (number of ones) − 1."),
        ("left padding", [[0, 0, 1, 1, 1], [0, 1, 1, 1, 1]],
         "with left padding the last real token is the last position, L − 1: counting the ones is not enough."),
        ("no padding and a one-token row", [[1, 1, 1, 1], [1, 0, 0, 0]],
         "a full row ends at L − 1; a one-token row at 0."),
        ("mixed left and right", [[0, 1, 1, 0], [1, 1, 0, 0], [0, 0, 0, 1]],
         "take the largest position whose mask is 1, e.g. (positions * mask).argmax(-1)."),
    ]
    for name, m, hint in cases:
        mask = torch.tensor(m)
        expected = last_token_index(mask).numpy()
        mistakes = [(mask.sum(-1).numpy() - 1, "counting the ones gives the right index only for right padding."),
                     (mask.sum(-1).numpy(), "indices start at 0: subtract 1.")]
        out = chk.call(name, mask.clone())
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


__all__ += ["check_sft_loss", "check_last_token_index"]
