"""The shared kit of the exercise checkers: the result objects, safe calls of learner code, comparisons."""

from __future__ import annotations

import functools
import inspect
import math
import signal
import threading
import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

RTOL = 1e-5
ATOL = 1e-5
TIME_LIMIT = 10.0
"""Seconds one call of a learner's function may take inside a checker (set it higher for slow machines)."""


class LearnerTimeout(Exception):
    """A learner's function ran past the checkers' time limit (an endless loop?). Used by every notebook's checks."""


def call_with_time_limit(fn, args=(), kwargs=None, seconds: float | None = None):
    """Call ``fn(*args, **kwargs)``; raise :class:`LearnerTimeout` after ``seconds`` (default ``TIME_LIMIT``).

    Used by every checker of notebooks 00-10, so a learner's endless loop cannot hang a cell. On the main
    thread of a POSIX system (a Jupyter kernel, pytest) a timer signal interrupts the call; elsewhere the
    call runs in a daemon thread that is abandoned (it cannot be killed) when it runs too long.
    """
    kwargs = kwargs or {}
    seconds = TIME_LIMIT if seconds is None else float(seconds)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a positive finite number, got {seconds!r}")
    message = f"your function timed out after {seconds:g} s"
    if hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread():
        def on_alarm(signum, frame):
            raise LearnerTimeout(message)

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            return fn(*args, **kwargs)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
    box: dict = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed back to the caller's thread
            box["error"] = exc

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise LearnerTimeout(message)
    if "error" in box:
        raise box["error"]
    return box.get("value")


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
        self.timed_out = False
        self.ok = callable(fn)
        if not self.ok:
            self.result.cases.append(CaseResult(
                "calling your function", False,
                f"expected a function, got a {type(fn).__name__}. Pass the function itself: "
                f"{name}(my_fn), not {name}(my_fn(...))."))

    def call(self, case: str, *args, **kwargs):
        """Call the learner's function with a time limit; on an exception or a timeout record a failed
        case and return ``_FAILED``. After one timeout the remaining cases are not run."""
        if self.timed_out:
            self.add(case, "not run: your function timed out on an earlier case.")
            return _FAILED
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                return call_with_time_limit(self.fn, args, kwargs, TIME_LIMIT)
        except LearnerTimeout as exc:
            self.timed_out = True
            self.add(case, f"{exc}. Hint: look for a loop that never ends (a `while` whose condition never "
                           "changes, an index that is never incremented).")
            return _FAILED
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


# --------------------------------------------------------------------------- fallback for unwritten stubs
BANNER = "using the reference solution: your function {name}() is not written yet"


def with_reference(reference: Callable):
    """Decorator: attach ``reference`` (a correct function with the learner's signature) to a checker.

    Used by the checkers of notebooks 00-10 so :func:`use` can fall back to it while an exercise is a stub.
    """
    def attach(checker):
        checker.reference = reference
        return checker
    return attach


def is_stub(fn) -> bool:
    """True when ``fn`` only raises ``NotImplementedError`` (the ``# YOUR CODE HERE`` stub of a student notebook).

    Used by :func:`use` in the student versions of notebooks 00-10. It looks at the code object, not the
    source, so it works in a Jupyter kernel, a script or ``exec``: a stub's body names nothing but
    ``NotImplementedError`` (a docstring is fine).
    """
    code = getattr(fn, "__code__", None)
    return code is not None and tuple(code.co_names) == ("NotImplementedError",)


def _bound_to(stub, reference: Callable) -> Callable:
    """``reference`` called with the arguments bound to ``stub``'s signature (its names, its defaults)."""
    try:
        sig = inspect.signature(stub)
    except (TypeError, ValueError):
        sig = None

    @functools.wraps(stub)
    def fallback(*args, **kwargs):
        if sig is None:
            return reference(*args, **kwargs)
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        return reference(*bound.args, **bound.kwargs)

    fallback.__wrapped_reference__ = reference
    return fallback


def use(fn, checker: Callable | None = None, *, reference: Callable | None = None, verbose: bool = True,
        **options):
    """The function a (student) notebook goes on with: yours when written, else the reference, with a banner.

    Used in the student versions of notebooks 00-10 (``scripts/make_exercises.py`` turns a solution
    notebook's ``assert checks.check_gae(my_gae)`` into ``my_gae = checks.use(my_gae, checks.check_gae)``
    right after the function's definition). If ``fn`` is still the ``raise NotImplementedError`` stub,
    a banner says so and the checker's reference (or ``reference=``) is returned, called with ``fn``'s
    signature, so the rest of the notebook runs and teaches. If ``fn`` is written, the checker runs on
    its hidden cases (``options`` such as ``backend="torch"`` go to the checker) and ``fn`` itself is
    returned, passed or not: the report says what to fix.
    """
    if not callable(fn):
        raise TypeError(f"fn must be a function, got a {type(fn).__name__}: pass the function itself, not its result")
    if checker is not None and not callable(checker):
        raise TypeError(f"checker must be a check_* function or None, got a {type(checker).__name__}")
    if reference is None and checker is not None:
        reference = getattr(checker, "reference", None)
    if reference is not None and not callable(reference):
        raise TypeError(f"reference must be a function, got a {type(reference).__name__}")
    name = getattr(fn, "__name__", "your function")
    if is_stub(fn):
        if reference is None:
            raise ValueError(f"{name}() is not written yet and there is no reference to fall back to: pass "
                             "a checker that has one, or reference=")
        if verbose:
            later = f" {checker.__name__} will check it on its hidden cases." if checker is not None else ""
            print(f"ℹ️  {BANNER.format(name=name)}. Write it where it says # YOUR CODE HERE and run this "
                  f"cell again;{later or ' the cell below it compares it with the package.'}")
        try:
            accepted = inspect.signature(reference).parameters
        except (TypeError, ValueError):
            accepted = {}
        given = {k: v for k, v in options.items() if k in accepted}
        return _bound_to(fn, functools.partial(reference, **given) if given else reference)
    if checker is not None:
        result = checker(fn, verbose=verbose, **options)
        if verbose and not result:
            print(f"   (the notebook goes on with your {name}() as it is: fix it and run this cell again)")
    return fn
