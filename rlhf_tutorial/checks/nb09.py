"""Notebook 09 (PPO for language models): GAE over tokens."""

from __future__ import annotations

import numpy as np
import torch

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

__all__ = ["token_gae_reference", "check_token_gae", "response_logprobs_reference", "shaped_rewards_reference",
           "check_shaped_rewards", "lm_ppo_loss_reference", "check_lm_ppo_loss"]

def token_gae_reference(rewards, values, response_mask, gamma, lam):
    """Notebook 09's exercise, solved: ``(advantages, returns)`` over tokens, both 0 on the padding.

    Like ``lm_rlhf.token_gae`` (returns = advantages + values on the real tokens).
    """
    from ..lm_rlhf import token_gae

    return token_gae(rewards, values, response_mask, gamma, lam)


@with_reference(token_gae_reference)
def check_token_gae(fn, verbose: bool = True) -> CheckResult:
    r"""Check GAE over the tokens of LM responses ``fn(rewards, values, response_mask, gamma, lam) -> advantages``.

    Notebook 09. Inputs are float32 tensors ``[B, R]``; ``response_mask`` is 1 on a prefix of each
    row (the response up to and including EOS) and 0 on the padding after it. Compared with
    ``lm_rlhf.token_gae``: :math:`\delta_t = r_t + \gamma V_{t+1} - V_t`,
    :math:`A_t = \delta_t + \gamma\lambda A_{t+1}`, with :math:`V` and :math:`A` zero after the
    last real token, and 0 on padding. Returning ``(advantages, returns)`` is accepted. Hidden
    cases: full-length responses, an early EOS with junk values on the padding, a one-token
    response, γ = λ = 1 with zero values (the reward-to-go), λ = 0 (one-step TD errors).
    """
    from ..lm_rlhf import token_gae

    chk = _Checker("check_token_gae", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(9)
    r4 = np.round(rng.normal(size=(2, 4)) * 0.1, 3)
    r4[:, -1] += [1.0, -0.5]
    v4 = np.round(rng.normal(size=(2, 4)), 3)
    early_mask = np.array([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=np.float64)
    early_r = np.array([[-0.1, 2.0, 0.0, 0.0, 0.0], [0.0, -0.1, 0.1, 0.0, 1.0]])
    early_v = np.array([[0.3, 0.5, 9.0, 9.0, 9.0], [0.1, 0.2, 0.3, 0.4, 0.5]])
    cases = [
        ("two full-length responses, γ = 1, λ = 0.95", r4, v4, np.ones((2, 4)), 1.0, 0.95,
         "go backwards over t: δ_t = r_t + γ·V_{t+1} − V_t and A_t = δ_t + γλ·A_{t+1}; after the last "
         "token V = 0 and A = 0."),
        ("an early EOS, junk values on the padding", early_r, early_v, early_mask, 1.0, 0.95,
         "the response ends at its last real token: use V = 0 (not the padding's value) after it, and "
         "return 0 advantages on the padding (multiply by the mask)."),
        ("a one-token response", np.array([[1.5, 0.0, 0.0]]), np.array([[0.5, 7.0, 7.0]]),
         np.array([[1.0, 0.0, 0.0]]), 1.0, 0.95, "a one-token response has A_0 = r_0 − V_0."),
        ("γ = λ = 1, values 0: the reward-to-go", r4, np.zeros((2, 4)), np.ones((2, 4)), 1.0, 1.0,
         "with γ = λ = 1 and V = 0, A_t is the sum of the rewards from t to the end."),
        ("λ = 0: one-step TD errors", r4, v4, np.ones((2, 4)), 1.0, 0.0,
         "with λ = 0, A_t = δ_t = r_t + γ·V_{t+1} − V_t."),
    ]
    for name, r, v, m, gamma, lam, hint in cases:
        rt, vt, mt = (torch.tensor(x, dtype=torch.float32) for x in (r, v, m))
        expected = token_gae(rt, vt, mt, gamma, lam)[0].numpy()
        unmasked = token_gae(rt, vt, torch.ones_like(mt), gamma, lam)[0] * mt
        forward = torch.zeros_like(rt)  # accumulating from the start instead of the end
        acc = torch.zeros(rt.shape[0])
        for t in range(rt.shape[1]):
            nv = vt[:, t + 1] * mt[:, t + 1] if t + 1 < rt.shape[1] else torch.zeros_like(acc)
            acc = (rt[:, t] + gamma * nv - vt[:, t] + gamma * lam * acc) * mt[:, t]
            forward[:, t] = acc
        mistakes = [
            (unmasked.numpy(), "after the last real token the value is 0: do not bootstrap from V on the padding."),
            (forward.numpy(), "GAE runs backwards in time (A_t needs A_{t+1}); loop over reversed(range(R))."),
        ]
        out = chk.call(name, rt.clone(), vt.clone(), mt.clone(), gamma, lam)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    return chk.finish()


def response_logprobs_reference(model, input_ids, attention_mask, n_prompt, temperature=1.0):
    """Notebook 09's in-flow exercise, solved: ``lm_rlhf.sequence_logprobs`` (per-token log-probs ``[B, R]``)."""
    from ..lm_rlhf import sequence_logprobs

    return sequence_logprobs(model, input_ids, attention_mask, n_prompt, temperature)


def shaped_rewards_reference(scores, logp, ref_logp, mask, beta):
    """Notebook 09's exercise, solved: ``(rewards, kl)`` of ``lm_rlhf.compute_rewards``, both ``[B, R]``."""
    from ..lm_rlhf import compute_rewards

    rewards, kl, _ = compute_rewards(scores, logp, ref_logp, mask, beta)
    return rewards, kl


@with_reference(shaped_rewards_reference)
def check_shaped_rewards(fn, verbose: bool = True) -> CheckResult:
    r"""Check the per-token RLHF reward ``fn(scores, logp, ref_logp, mask, beta) -> (rewards, kl)``.

    Notebook 09. ``scores`` ``[B]``; the others float32 ``[B, R]`` with a response mask that is 1 on a
    prefix of each row. Expected, like ``lm_rlhf.compute_rewards``: :math:`k_t = (\log\pi - \log\pi_{ref})\,m_t`,
    :math:`r_t = -\beta k_t` plus the score at the last real token, both 0 on padding; the function
    returns the pair ``(rewards, kl)``. Hidden cases: full rows, an early EOS with junk log-probs on
    the padding, β = 0, policy = reference, a one-token response.
    """
    from ..lm_rlhf import compute_rewards

    chk = _Checker("check_shaped_rewards", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(19)
    lp, ref = np.round(rng.normal(-2, 1, size=(3, 5)), 3), np.round(rng.normal(-2, 1, size=(3, 5)), 3)
    early = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=np.float64)
    cases = [
        ("full-length responses, β = 0.1", [1.0, -0.5, 2.0], lp, ref, np.ones((3, 5)), 0.1,
         "r_t = −β·(log π − log π_ref) on every real token, plus the score on the last one."),
        ("an early EOS, junk on the padding", [1.0, -0.5, 2.0], lp, ref, early, 0.1,
         "the score lands on the last *real* token (mask.sum(1) − 1), not on the last column; the KL and "
         "the reward are 0 on the padding (multiply by the mask)."),
        ("β = 0", [0.3, 0.7, -1.0], lp, ref, early, 0.0, "with β = 0 only the score remains, at the last real token."),
        ("policy = reference", [0.3, 0.7, -1.0], lp, lp, early, 0.5,
         "when the policy equals the reference the KL is exactly 0 and r_t is the score alone."),
    ]
    for name, sc, a, b, m, beta, hint in cases:
        st, at, bt, mt = (torch.tensor(x, dtype=torch.float32) for x in (sc, a, b, m))
        rew, kl, _ = compute_rewards(st, at, bt, mt, beta)
        last_col = (-beta * (at - bt) * mt)
        last_col[:, -1] += st
        unmasked, _, _ = compute_rewards(st, at, bt, torch.ones_like(mt), beta)
        mistakes = [(last_col.numpy(), "put the score at the last real token of each row, not in the last column."),
                    (unmasked.numpy(), "mask the KL: the padding tokens were never generated, they get no reward."),
                    ((rew + 2 * beta * kl).numpy(), "the KL penalty is minus β·k_t: r_t = −β·(log π − log π_ref).")]
        out = chk.call(name, st.clone(), at.clone(), bt.clone(), mt.clone(), beta)
        if out is _FAILED:
            continue
        if not (isinstance(out, tuple) and len(out) == 2):
            chk.add(name, f"expected the pair (rewards, kl), got a {type(out).__name__}. Hint: return rewards, kl.")
            continue
        msg = _compare(out[0], rew.numpy(), hint, mistakes)
        if msg is None:
            msg = _compare(out[1], kl.numpy(), "kl is the per-token (log π − log π_ref)·mask, before β.")
            msg = None if msg is None else "the rewards are right, the kl is not: " + msg
        chk.add(name, msg)
    return chk.finish()


def lm_ppo_loss_reference(new_logp, old_logp, adv, new_v, old_v, returns, mask, clip=0.2, clip_v=0.2, vf_coef=0.1):
    """Notebook 09's exercise, solved: the loss of ``lm_rlhf.lm_ppo_loss`` (without its stats)."""
    from ..lm_rlhf import lm_ppo_loss

    return lm_ppo_loss(new_logp, old_logp, adv, new_v, old_v, returns, mask, clip_coef=clip, clip_value=clip_v,
                       vf_coef=vf_coef)[0]


@with_reference(lm_ppo_loss_reference)
def check_lm_ppo_loss(fn, verbose: bool = True) -> CheckResult:
    r"""Check PPO's token-level loss ``fn(new_logp, old_logp, adv, new_v, old_v, returns, mask, clip, clip_v, vf_coef)``.

    Notebook 09. Inputs float32 ``[B, R]``; expected, like ``lm_rlhf.lm_ppo_loss``: the clipped policy
    loss :math:`\max(-A\rho, -A\,\mathrm{clip}(\rho, 1\pm\epsilon))` plus ``vf_coef`` times the clipped
    value loss :math:`\tfrac12\max((V-\hat R)^2, (V^{clip}-\hat R)^2)`, each averaged over the real
    tokens only (sum over the mask / number of real tokens). Hidden cases: full rows, padding with
    junk values, no clipping, a large move, and the gradient.
    """
    from ..lm_rlhf import lm_ppo_loss

    chk = _Checker("check_lm_ppo_loss", fn, verbose)
    if not chk.ok:
        return chk.finish()
    rng = np.random.default_rng(29)

    def batch(mask):
        shape = np.shape(mask)
        old = np.round(rng.normal(-2, 0.5, size=shape), 3)
        x = [old + np.round(rng.normal(0, 0.3, size=shape), 3), old, np.round(rng.normal(size=shape), 3),
             np.round(rng.normal(size=shape), 3), np.round(rng.normal(size=shape), 3),
             np.round(rng.normal(size=shape), 3), np.asarray(mask, dtype=np.float64)]
        x[0][x[6] == 0] = 9.0  # junk on the padding
        return [torch.tensor(a, dtype=torch.float32) for a in x]

    padded = [[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]]
    cases = [
        ("full rows, ε = 0.2", batch(np.ones((2, 4))), (0.2, 0.2, 0.1),
         "policy: mean of max(−Aρ, −A·clip(ρ, 1 − ε, 1 + ε)); value: ½·mean of max of the two squared errors."),
        ("padding with junk on it", batch(padded), (0.2, 0.2, 0.1),
         "average over the real tokens only: (x * mask).sum() / mask.sum(), not x.mean()."),
        ("large clip ranges (nothing clipped)", batch(padded), (10.0, 10.0, 0.5),
         "with huge clip ranges the loss is −mean(Aρ) + c_v·½·mean((V − R̂)²) over real tokens."),
        ("small clip ranges, vf_coef = 1", batch(padded), (0.05, 0.05, 1.0),
         "use the clip, clip_v and vf_coef arguments, not constants."),
    ]
    for name, args, (clip, clip_v, vf), hint in cases:
        expected = float(lm_ppo_loss(*args, clip_coef=clip, clip_value=clip_v, vf_coef=vf)[0])
        all_ones = float(lm_ppo_loss(*args[:6], torch.ones_like(args[6]), clip_coef=clip, clip_value=clip_v,
                                     vf_coef=vf)[0])
        mistakes = [(all_ones, "mask the padding: average over real tokens only.")]
        out = chk.call(name, *[a.clone() for a in args], clip, clip_v, vf)
        if out is not _FAILED:
            chk.add(name, _compare(_first(out), expected, hint, mistakes))
    args = batch(padded)
    _grad_case(chk, "gradient with respect to new_logp", lambda: [a.clone() for a in args],
               lambda *a: lm_ppo_loss(*a, clip_coef=0.2, clip_value=0.2, vf_coef=0.1)[0], 0,
               "compute the loss with torch operations; old_logp, the advantages and the returns are constants.",
               extra=(0.2, 0.2, 0.1))
    return chk.finish()


# --------------------------------------------------------------------------- the notebook's quiz
QUIZ = [
    Question(
        "In RLHF for language models, where do the reward model's score and the KL penalty land?",
        ('both on the first token', 'the score on every token, the KL at the end', 'both on the padding', 'the KL penalty −β·k_t on every response token, the score on the last real token',),
        3,
        'r_t = −β(log π − log π_ref) on every token, plus r̂ at EOS (or the length limit).'),
    Question(
        'What happens with β = 0?',
        ('training stops', 'the KL becomes negative', 'nothing keeps the policy near the reference: it drifts to text that exploits r̂', 'the reward model is retrained',),
        2,
        'The KL penalty is what keeps the policy where r̂ is trustworthy.'),
    Question(
        'Why must the log-probs for PPO use the sampling temperature?',
        ('they are faster to compute', 'otherwise they belong to another distribution: the ratio is not 1 at the first epoch and the KL is biased', 'the reward model needs them', 'temperature does not matter',),
        1,
        'Sampling at T means the policy is softmax(logits / T).'),
    Question(
        "A single token's KL estimate k_t = log π − log π_ref is negative. Is that a bug?",
        ('no: one sample can be negative, its expectation under π cannot', 'yes, KL is never negative', 'yes, the reference is wrong', 'no, because β > 0',),
        0,
        'KL is an expectation; k_t is a one-sample estimate of it.'),
    Question(
        'Why does a left-padded batch need position ids computed from the attention mask?',
        ('to make padding faster', 'the tokenizer cannot pad', 'to hide the EOS', "so each row's first real token gets position 0; otherwise padded rows get other log-probs",),
        3,
        'Without them the same text has different positions in rows of different padding.'),
]
