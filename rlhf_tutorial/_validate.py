"""One small validation layer for the whole package (CONTRIBUTING.md, "Bad input").

One rule everywhere: a value of the wrong *type* raises ``TypeError``, a value of the right type
but the wrong *value* (out of range, NaN, inf, unknown option, wrong shape) raises ``ValueError``.
Every message names the argument, what was given and what was expected, e.g.
``ValueError: learning_rate must be > 0, got -0.001``.

Each check returns the value in a normalised form (``int``, ``float``, ``Path``, tensor), so a call
site reads ``n = integer("n", n, low=1)``. Config dataclasses call these in ``__post_init__``.
``bool`` is never accepted as a number (``True`` is an ``int`` in Python, but never what was meant).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "integer", "number", "positive", "probability", "one_of", "boolean", "seed", "callable_",
    "path", "text", "instance", "sequence_of", "text_list", "tokenizer", "segment_pair", "finite_tensor",
    "check_finite", "same_shape", "check_finite_loss", "NonFiniteError",
]

_INT_TYPES = (int, np.integer)
_NUM_TYPES = (int, float, np.integer, np.floating)


class NonFiniteError(ValueError):
    """A loss or other training quantity became NaN or inf (raised by :func:`check_finite_loss`)."""


def _tname(v) -> str:
    return type(v).__name__


def _interval(low, high, low_open: bool, high_open: bool) -> str:
    if low is not None and high is None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None and low is None:
        return f"{'<' if high_open else '<='} {high}"
    return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"


def integer(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """An ``int`` (not ``bool``) with ``low <= value <= high`` (either bound optional)."""
    if isinstance(value, bool) or not isinstance(value, _INT_TYPES):
        raise TypeError(f"{name} must be an int, got {_tname(value)} ({value!r})")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        raise ValueError(f"{name} must be {_interval(low, high, False, False)}, got {value!r}")
    return v


def number(name: str, value, low: float | None = None, high: float | None = None, *,
           low_open: bool = False, high_open: bool = False, finite: bool = True) -> float:
    """A real number (not ``bool``) in the interval given; NaN always and inf (unless ``finite=False``) rejected.

    ``low_open``/``high_open`` make the bound strict: ``number("lr", lr, 0, low_open=True)`` is ``lr > 0``.
    """
    if isinstance(value, bool) or not isinstance(value, _NUM_TYPES):
        if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.dtype == torch.bool:
            value = value.item()
        else:
            where = "" if low is None and high is None else " " + _interval(low, high, low_open, high_open)
            raise TypeError(f"{name} must be a number{where}, got {_tname(value)} ({value!r})")
    v = float(value)
    if math.isnan(v) or (finite and math.isinf(v)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    too_low = low is not None and (v <= low if low_open else v < low)
    too_high = high is not None and (v >= high if high_open else v > high)
    if too_low or too_high:
        raise ValueError(f"{name} must be {_interval(low, high, low_open, high_open)}, got {value!r}")
    return v


def positive(name: str, value) -> float:
    """A finite number ``> 0`` (learning rates, grad-norm clips, temperatures, clip coefficients)."""
    return number(name, value, 0, low_open=True)


def probability(name: str, value, *, low_open: bool = False, high_open: bool = False) -> float:
    """A number in ``[0, 1]`` (γ, GAE λ, fractions); ``low_open``/``high_open`` exclude 0 or 1."""
    return number(name, value, 0, 1, low_open=low_open, high_open=high_open)


def one_of(name: str, value, options):
    """``value`` must be one of ``options`` (compared with ``==``; unhashable values are rejected)."""
    try:
        ok = value in tuple(options)
    except TypeError:
        ok = False
    if not ok or isinstance(value, bool) != any(isinstance(o, bool) and o == value for o in options):
        raise ValueError(f"{name} must be one of {tuple(options)}, got {value!r}")
    return value


def boolean(name: str, value) -> bool:
    """A ``bool`` (or NumPy bool)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_tname(value)} ({value!r})")
    return bool(value)


def seed(name: str, value) -> int | None:
    """A random seed: ``None`` or an ``int >= 0``."""
    return None if value is None else integer(name, value, low=0)


def callable_(name: str, value, allow_none: bool = False):
    """A callable (or ``None`` when ``allow_none``)."""
    if value is None and allow_none:
        return None
    if not callable(value):
        raise TypeError(f"{name} must be callable{' or None' if allow_none else ''}, got {_tname(value)} ({value!r})")
    return value


def path(name: str, value, must_exist: bool = False) -> Path:
    """A ``str`` or ``os.PathLike`` path, returned as ``Path``; ``must_exist`` raises ``FileNotFoundError``."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or path, got {_tname(value)} ({value!r})")
    if isinstance(value, str) and not value.strip():
        raise ValueError(f"{name} must be a non-empty path, got {value!r}")
    p = Path(value)
    if must_exist and not p.exists():
        raise FileNotFoundError(f"{name}: no file or folder at {str(p)!r}")
    return p


def text(name: str, value, allow_empty: bool = False) -> str:
    """A ``str``; empty or blank strings are rejected unless ``allow_empty``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {_tname(value)} ({value!r})")
    if not allow_empty and not value.strip():
        raise ValueError(f"{name} must be a non-empty str, got {value!r}")
    return value


def instance(name: str, value, types, what: str | None = None):
    """``isinstance(value, types)`` or ``TypeError`` naming ``what`` (default: the type names)."""
    if not isinstance(value, types):
        if what is None:
            ts = types if isinstance(types, tuple) else (types,)
            what = " or ".join(t.__name__ for t in ts)
        raise TypeError(f"{name} must be a {what}, got {_tname(value)}")
    return value


def sequence_of(name: str, value, item_type, what: str | None = None, allow_empty: bool = False) -> list:
    """A list (any sequence but a ``str``) of ``item_type`` items, returned as a ``list``.

    A single item, a ``str`` or a non-sequence is a ``TypeError``, as is an item of another type
    (the message gives its index); an empty sequence is a ``ValueError`` unless ``allow_empty``.
    ``what`` names the item type in messages (default: its ``__name__``).
    """
    what = what or item_type.__name__
    if isinstance(value, (str, bytes)) or isinstance(value, item_type) or not isinstance(value, Sequence):
        raise TypeError(f"{name} must be a list of {what}, got {_tname(value)}")
    if not allow_empty and len(value) == 0:
        raise ValueError(f"{name} is empty; expected at least one {what}")
    for i, v in enumerate(value):
        if not isinstance(v, item_type):
            raise TypeError(f"{name}[{i}] must be a {what}, got {_tname(v)}")
    return list(value)


def text_list(name: str, value, allow_empty_items: bool = True) -> list[str]:
    """A non-empty list of ``str`` (prompts, completions); blank items rejected unless ``allow_empty_items``."""
    texts = sequence_of(name, value, str)
    if not allow_empty_items:
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"{name}[{i}] is empty; expected a non-blank str, got {t!r}")
    return texts


def tokenizer(name: str, value):
    """A ``transformers`` tokenizer with a pad token and an EOS token, the two distinct.

    A missing pad token would leave batches unpaddable; pad == EOS would make the EOS a policy
    emits look like padding (its log-prob masked, a reward model's score read elsewhere).
    """
    if value is None or not hasattr(value, "pad_token_id"):
        raise TypeError(f"{name} must be a transformers tokenizer, got {_tname(value)}")
    if value.pad_token_id is None:
        raise ValueError(f"{name} has no pad token; add one with tokenizer.add_special_tokens({{'pad_token': '<|pad|>'}}) "
                         "and resize the model's embeddings (load_model does both)")
    if value.eos_token_id is None:
        raise ValueError(f"{name} has no EOS token; expected one to mark the end of a completion")
    if value.pad_token_id == value.eos_token_id:
        raise ValueError("pad token == eos token: the EOS the policy emits would be mistaken for padding "
                         "(its log-prob masked, the score read elsewhere); use a dedicated pad token")
    return value


def segment_pair(a, b, segment_type) -> None:
    """Two segments that can be compared: both ``segment_type``, the same length, the same ``env_id``.

    The type is passed in (``feedback.Segment``) so that this layer imports nothing of the package.
    """
    instance("segment_a", a, segment_type)
    instance("segment_b", b, segment_type)
    if len(a) != len(b):
        raise ValueError(f"the two segments of a pair must have the same length, got {len(a)} and {len(b)}")
    if a.env_id != b.env_id:
        raise ValueError(f"the two segments of a pair must come from the same env, got {a.env_id!r} and {b.env_id!r}")


def finite_tensor(name: str, x, dtype: torch.dtype | None = torch.float32, ndim: int | None = None,
                  allow_empty: bool = True) -> torch.Tensor:
    """Convert ``x`` (tensor, array, list) to a tensor and check it: numbers only, no NaN/inf.

    ``dtype=None`` keeps a tensor's dtype; ``ndim`` checks the number of dimensions.
    """
    if x is None or isinstance(x, (str, bytes, dict)):
        raise TypeError(f"{name} must be an array or tensor of numbers, got {_tname(x)}")
    try:
        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(f"{name} must be an array or tensor of numbers, got {_tname(x)}") from e
    if t.dtype == torch.bool and dtype is None:
        raise TypeError(f"{name} must be an array or tensor of numbers, got a bool tensor")
    if ndim is not None and t.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {tuple(t.shape)}")
    if not allow_empty and t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    check_finite(name, t)
    return t


def check_finite(name: str, x: torch.Tensor) -> torch.Tensor:
    """Cheap check of a tensor already built: one ``torch.isfinite(x).all()``; ``ValueError`` if not."""
    if isinstance(x, torch.Tensor) and x.is_floating_point() and not bool(torch.isfinite(x).all()):
        n_bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains NaN or inf ({n_bad} of {x.numel()} values); expected finite numbers")
    return x


def same_shape(**tensors) -> tuple:
    """All keyword tensors have the same shape; ``ValueError`` listing every shape if not."""
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if len(set(shapes.values())) > 1:
        given = ", ".join(f"{k}{s}" for k, s in shapes.items())
        raise ValueError(f"{', '.join(shapes)} must have the same shape, got {given}")
    return next(iter(shapes.values())) if shapes else ()


def check_finite_loss(loss, step: int, what: str = "loss"):
    """Stop training when a loss becomes NaN/inf: ``NonFiniteError`` naming the step and the quantity.

    Called once per update by every trainer; ``loss`` is a tensor or a float. A NaN here means the
    weights are about to become NaN: lower the learning rate or check the inputs.
    """
    v = float(loss.detach()) if isinstance(loss, torch.Tensor) and loss.numel() == 1 else loss
    if isinstance(v, torch.Tensor):
        ok = bool(torch.isfinite(v).all())
    else:
        ok = math.isfinite(float(v))
    if not ok:
        raise NonFiniteError(f"{what} became non-finite ({v!r}) at step {step}; "
                             "lower the learning rate or check the inputs for NaN/inf")
    return loss
