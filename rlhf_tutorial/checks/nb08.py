"""Notebook 08 (reward model for text): the last real token."""

from __future__ import annotations

import torch

from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _compare,
    _first,
    with_reference,
)
from ._quiz import Question

__all__ = ["last_token_index_reference", "check_last_token_index"]

def last_token_index_reference(attention_mask):
    """Notebook 08's exercise, solved: ``text_reward.last_token_index``."""
    from ..text_reward import last_token_index

    return last_token_index(attention_mask)


@with_reference(last_token_index_reference)
def check_last_token_index(fn, verbose: bool = True) -> CheckResult:
    """Check ``fn(attention_mask) -> (B,)`` the index of the last real token of each row (notebook 08, exercise 1).

    ``attention_mask`` (B, L) int64 with 1 on real tokens. Hidden cases: right padding, left padding,
    a mixed batch, a row without padding and a one-token row. Expected: like
    ``rlhf_tutorial.text_reward.last_token_index``.
    """
    from ..text_reward import last_token_index

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


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'Where does a GPT-style reward model read its scalar score?',
        ('at the first token', 'at the last real token of each sequence', 'averaged over all positions including padding', 'at the last column, whatever the padding',),
        1,
        'Only the last real token has attended to the whole prompt and response.'),
    Question(
        'With left padding, the index of the last real token of a row of length L is',
        ('L − 1', 'the number of ones minus 1', '0', 'L',),
        0,
        'Counting the ones gives the right index only for right padding.'),
    Question(
        'Normalising the reward so SFT samples score mean 0 and std 1',
        ('changes which completions are preferred', 'is needed for the Bradley–Terry loss', 'removes the length bias', 'keeps the ranking and puts the score on a known scale, so the KL coefficient β means the same across runs',),
        3,
        'Bradley–Terry fixes r̂ only up to a constant; a known scale makes β and the PPO settings transferable.'),
    Question(
        'A reward model rewards longer answers. How would you detect it before running PPO?',
        ('look at the training loss', 'train PPO and see', 'correlate its scores with length on pairs where the gold judgement does not depend on length', 'it cannot be detected',),
        2,
        'A length probe on held-out data shows the bias without an RL run.'),
]
