"""Notebook 00 (welcome & setup): the version-tuple exercise."""

from __future__ import annotations

import numpy as np

from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _short,
    with_reference,
)
from ._quiz import Question

__all__ = ["version_tuple_reference", "check_version_tuple"]

def _version_tuple3(version: str) -> tuple:
    """Reference for :func:`check_version_tuple`: the first three numbers of the public version."""
    import re

    nums = [int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3]]
    return tuple(nums + [0] * (3 - len(nums)))


def version_tuple_reference(version: str) -> tuple:
    """Notebook 00's exercise, solved: the first three numbers of the public version, as ints."""
    return _version_tuple3(version)


@with_reference(version_tuple_reference)
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


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'In which order does InstructGPT train a model from human feedback?',
        ('reward model → SFT → DPO', 'supervised fine-tuning (SFT) → reward model → PPO with a KL penalty', 'PPO → reward model → SFT', 'pretraining → PPO → SFT',),
        1,
        'Demonstrations first (SFT), then comparisons train a reward model, then PPO optimises it with a KL penalty to the SFT model.'),
    Question(
        'Why does stage 3 penalise the KL divergence to the SFT model?',
        ('it keeps the policy near text the reward model has seen, where its scores can be trusted', 'it makes PPO converge faster', "it raises the reward model's accuracy", "PPO's clipping needs it",),
        0,
        'The reward model is only right near its training data; far from it a policy can find text it overrates (reward hacking).'),
    Question(
        'Which three kinds of human feedback does the course learn rewards from?',
        ('demonstrations, values and gradients', 'rewards, returns and advantages', 'clicks, likes and shares', 'scores, comparisons and language comments',),
        3,
        "The seed's L_score, L_compare and L_language, mixed with weights λ1, λ2, λ3."),
    Question(
        'Why does a model trained to imitate text not reliably follow instructions?',
        ('its tokenizer cannot read questions', 'it has too few parameters', 'it predicts a likely continuation, and the likely continuation is not always the helpful answer', 'it was trained with reinforcement learning',),
        2,
        'Imitation learns what text usually comes next; RLHF optimises what people prefer.'),
]
