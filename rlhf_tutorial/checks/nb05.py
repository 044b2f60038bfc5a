"""Notebook 05 (reward learning): the Bradley–Terry loss."""

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

__all__ = ["bradley_terry_loss_reference", "check_bradley_terry_loss"]

def bradley_terry_loss_reference(r1, r2, y):
    """Notebook 05's exercise, solved: the mean Bradley–Terry cross-entropy, in the stable form."""
    return F.binary_cross_entropy_with_logits(r1 - r2, torch.as_tensor(y, dtype=r1.dtype))


@with_reference(bradley_terry_loss_reference)
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


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        "The seed's r̂_θ(τ) is the mean of r̂_θ(s_t, a_t) over τ. For segments of equal length L, using the sum instead",
        ('changes which segment is preferred', 'makes the loss non-differentiable', 'has no effect at all', 'multiplies Δ by L: it acts like a temperature of the Bradley–Terry model',),
        3,
        'σ(Δ_sum) = σ(L·Δ_mean): same ranking, a different sharpness (and effective learning rate).'),
    Question(
        'A reward model trained only on comparisons is determined at best up to',
        ('nothing: it is unique', 'a sign', 'an additive constant', 'a permutation of states',),
        2,
        'σ(r̂(τ1) − r̂(τ2)) is unchanged when a constant is added to r̂; that is why it is normalised before RL.'),
    Question(
        'How do we know a reward model is good without training a policy on it?',
        ('its training loss is low', 'held-out pairwise accuracy and rank correlation (Spearman) against the true return', 'its outputs are in [0, 1]', 'it agrees with the labels it was trained on',),
        1,
        'The true reward is hidden from training but available to evaluate on held-out segments.'),
    Question(
        'Why can the naive λ-mix of L_score, L_compare and L_language be worse than the best single kind?',
        ('each kind links to r̂ differently (scale, offset, temperature), so the terms pull r̂ towards inconsistent targets', 'more labels always hurt', 'the language model is too small', 'Adam cannot optimise a sum of losses',),
        0,
        'Give each kind its own link (scale and offset) and a principled λ, and the mix pays off.'),
    Question(
        'Which form of −log σ(Δ) is numerically safe for Δ = −200 in float32?',
        ('−torch.log(torch.sigmoid(Δ))', '1 − torch.sigmoid(Δ)', 'torch.exp(−Δ)', 'F.softplus(−Δ)',),
        3,
        'sigmoid(−200) underflows to 0 and log(0) = −inf; softplus(−Δ) = log(1 + e^{−Δ}) is computed stably.'),
]
