"""Notebook 10 (beyond PPO): the DPO loss."""

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

__all__ = ["dpo_loss_reference", "check_dpo_loss"]

def dpo_loss_reference(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta):
    """Notebook 10's exercise, solved: ``dpo.dpo_loss``."""
    from ..dpo import dpo_loss

    return dpo_loss(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta=beta)


@with_reference(dpo_loss_reference)
def check_dpo_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check a DPO loss ``fn(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps, beta)``.

    Notebook 10. Inputs are float32 tensors ``(B,)`` of summed response log-probabilities; the loss
    is :math:`-\mathbb{E}\log\sigma(\beta[(\log π_w - \log π^{ref}_w) - (\log π_l - \log π^{ref}_l)])`,
    as in ``dpo.dpo_loss``. Hidden cases: a batch, policy = reference (loss log 2), a larger β,
    a reference that differs from the policy, huge margins, and the gradient.
    """
    from ..dpo import dpo_loss

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


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        "DPO's implicit reward of a response y is",
        ("the reward model's score", 'β·log(π_φ(y|x) / π_ref(y|x))', 'the length of y', 'log π_φ(y|x)',),
        1,
        "DPO shows the KL-regularised optimum's reward is this log-ratio, up to a term that depends only on x."),
    Question(
        'At the start of DPO training, when the policy equals the reference, the loss is',
        ('log 2', '0', '1', 'β',),
        0,
        'Every implicit reward is 0, so −log σ(0) = log 2.'),
    Question(
        'What replaces the critic in GRPO and RLOO?',
        ('a bigger reward model', 'the KL penalty', 'nothing: they use raw rewards', 'the other samples for the same prompt: their mean reward is the baseline',),
        3,
        'Sample k completions per prompt; each is judged against its group.'),
    Question(
        'Overoptimization: as the KL from the reference grows,',
        ('proxy and gold rewards rise together forever', 'both fall', 'the proxy reward keeps rising while the gold reward peaks and then falls', 'the gold reward rises while the proxy falls',),
        2,
        "The policy exploits r̂'s errors; stop near the gold peak (early stopping on KL, or a larger β)."),
    Question(
        'Why do large RLHF systems split actors (generation) from learners (training)?',
        ('learners cannot run on GPUs', 'generation dominates the time and needs different hardware and batching than the gradient updates', 'to avoid the KL penalty', 'it is required by PPO',),
        1,
        "Generation servers produce rollouts while learners update; weights are synced between them (A3C's asynchronous actors in spirit)."),
]
