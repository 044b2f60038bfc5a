"""Seeding, torch threads, device choice and small timers.

Explained in notebook 00 (welcome & setup); used by every later notebook.
"""

from __future__ import annotations

import os
import platform
import random
import time
from contextlib import contextmanager

import numpy as np
import torch

from . import _validate as V

__all__ = ["seed_everything", "set_torch_threads", "resolve_threads", "get_device", "describe_setup", "timer", "progress_bar"]


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python's ``random``, NumPy and torch; return a NumPy ``Generator`` for local use.

    Notebook 00. Gymnasium environments are seeded separately with ``env.reset(seed=...)``.
    """
    seed = V.integer("seed", seed, low=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


THREADS_ENV = "RLHF_TORCH_THREADS"


def resolve_threads(n: int) -> int:
    """The thread count to use: ``n``, unless the environment variable ``RLHF_TORCH_THREADS`` is set.

    Notebooks fix their thread count (``set_torch_threads(1)``) and the trainers take theirs from
    their configs, so a result does not depend on the machine's core count. The variable overrides
    all of them at once, to check that the notebooks' asserts also hold with another thread count
    (``scripts/check_threads.sh``; README, "CPU threads").
    """
    env = os.environ.get(THREADS_ENV)
    if env is None or env == "":
        return n
    try:
        forced = int(env)
    except ValueError:
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads >= 1, got {env!r}") from None
    return V.integer(THREADS_ENV, forced, low=1)


def set_torch_threads(n: int | None = None) -> int:
    """Set the number of CPU threads torch uses and return it.

    Notebook 00. The default ``n=None`` picks ``min(2, os.cpu_count())``. The small networks of
    Parts 1-3 run fastest with 1-2 threads: more threads only add synchronisation overhead.
    ``RLHF_TORCH_THREADS`` overrides ``n`` (:func:`resolve_threads`).
    """
    if n is None:
        n = min(2, os.cpu_count() or 1)
    V.integer("n", n, low=1)  # the number of torch threads
    n = resolve_threads(n)
    torch.set_num_threads(n)
    return n


def get_device(prefer: str = "auto") -> torch.device:
    """Return the torch device to use: ``"auto"`` picks CUDA when available, else CPU.

    Notebook 00. ``prefer`` may be ``"auto"``, ``"cpu"`` or ``"cuda"``; asking for CUDA on a
    machine without it raises ``ValueError`` instead of failing later inside a model.
    """
    V.one_of("prefer", prefer, ("auto", "cpu", "cuda"))
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise ValueError("prefer='cuda' but torch.cuda.is_available() is False; use 'auto' or 'cpu'")
    return torch.device(prefer)


def describe_setup() -> dict:
    """Versions, device and thread count, as a dict (notebook 00's install check)."""
    import gymnasium
    import matplotlib

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gymnasium": gymnasium.__version__,
        "numpy": np.__version__,
        "matplotlib": matplotlib.__version__,
        "device": str(get_device()),
        "cuda_available": torch.cuda.is_available(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:  # pragma: no cover - transformers is a dependency, but Part 1 runs without it
        info["transformers"] = None
    return info


@contextmanager
def timer():
    """Context manager that measures wall time: ``with timer() as t: ...; t()`` gives seconds (notebook 00)."""
    start = time.perf_counter()
    end = None

    def elapsed() -> float:
        return (end if end is not None else time.perf_counter()) - start

    try:
        yield elapsed
    finally:
        end = time.perf_counter()


def progress_bar(*args, disable: bool = False, **kwargs):
    """A ``tqdm.auto`` progress bar (a widget in Jupyter, text elsewhere) that honours ``TQDM_DISABLE``.

    ``scripts/run_notebooks.py`` sets ``TQDM_DISABLE=1`` so committed notebooks carry no
    progress-bar timings; the notebook flavour of tqdm does not read that variable itself.
    """
    from tqdm.auto import tqdm

    env_off = os.environ.get("TQDM_DISABLE", "").strip().lower() in ("1", "true", "yes")
    return tqdm(*args, disable=disable or env_off, **kwargs)
