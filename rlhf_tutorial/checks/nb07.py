"""Notebook 07 (a tiny language model): the masked SFT loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._kit import (
    _FAILED,
    CheckResult,
    _Checker,
    _compare,
    _first,
    _grad_case,
    with_reference,
)
from ._quiz import Question

__all__ = ["sft_loss_reference", "check_sft_loss"]

def sft_loss_reference(logits, labels):
    """Notebook 07's exercise, solved: shift by one, mean cross-entropy over the labels that are not −100."""
    lg, lb = logits[:, :-1], labels[:, 1:]
    return F.cross_entropy(lg.reshape(-1, lg.size(-1)), lb.reshape(-1), ignore_index=-100)


@with_reference(sft_loss_reference)
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


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        'Why must the padding token differ from EOS?',
        ('to save vocabulary', 'the tokenizer requires it', 'to make sampling faster', 'if pad = EOS, masking the padding also hides the real EOS, so the model never learns to stop',),
        3,
        'The loss mask and the attention mask are built from the pad id; a shared id hides the end of every answer.'),
    Question(
        'In SFT, why is the loss masked on the prompt tokens?',
        ('the prompt is too long', 'to make the loss smaller', 'the prompt is given at use time: the model should learn to write the response, not the prompt', 'the prompt has no tokens',),
        2,
        'Labels are −100 on the prompt and on the padding, so only response tokens count.'),
    Question(
        'What happens to sampling as the temperature goes to 0?',
        ('it becomes uniform over the vocabulary', 'it approaches greedy decoding (always the most likely token)', 'it stops producing EOS', 'nothing changes',),
        1,
        'logits / T sharpen the softmax as T → 0.'),
    Question(
        'The logits at position t of a causal LM predict',
        ('token t + 1', 'token t', 'token t − 1', 'the whole sequence',),
        0,
        'So the loss pairs logits[:, :-1] with labels[:, 1:].'),
]
