r"""PPO for language models: rollouts, per-token KL, reward shaping, GAE over tokens (notebook 09).

RLHF proper (InstructGPT's third step). The policy :math:`\pi_\phi` is a causal LM (the SFT model
of notebook 07), the reward :math:`\hat r_\theta` is a learned reward model (notebook 08) or any
``reward_fn(prompts, completions) -> tensor [n]``, and a frozen copy of the SFT model is the
reference :math:`\pi_{ref}`. One PPO iteration (seed §3.3.3's loop):

1. **roll out**: left-pad a batch of prompts, sample a response of at most ``response_length``
   tokens with temperature T, cut it after the first EOS (:func:`rollout`);
2. **score**: :math:`\hat r_\theta` of each (prompt, completion); a fixed penalty when no EOS came;
3. **shape**: per token :math:`r_t = -\beta(\log\pi_\phi - \log\pi_{ref})`, plus the score at the
   *last real token* (:func:`per_token_kl`, :func:`compute_rewards`);
4. **advantages**: GAE over tokens, γ = 1, λ = 0.95, whitened over the batch (:func:`token_gae`);
5. **update**: several epochs × minibatches of the clipped policy and value losses
   (:func:`lm_ppo_loss`), dropout off, gradient-norm clipping (:func:`train_lm_ppo`).

The details follow Huang et al., *The N Implementation Details of RLHF with PPO* (2023) and the
*N+ details* TL;DR follow-up: logits divided by T both when sampling and when recomputing
log-probs (:func:`sequence_logprobs`), position ids that skip the left padding, log-probs
recomputed by one forward pass after generation (so the ratio is exactly 1 on the first
minibatch), the score read at the last real token (EOS), never at a pad, pad ≠ EOS. Diagnostics
use TRL's names (``objective/kl``, ``objective/entropy``, ``objective/rlhf_reward``,
``objective/scores``, ``policy/clipfrac_avg``, ``val/ratio``, ...).

The critic is by default a zero-initialised linear value head on the policy's last hidden state
(one forward pass gives log-probs and values); pass ``critic=`` a sequence-classification model
(e.g. a copy of the reward model, as the TL;DR study and TRL do) for a separate value network.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from . import _validate as V
from .text import (  # both re-exported here (kept once, in text)
    fuse_gelu,
    position_ids_from_mask,
)
from .utils import progress_bar, resolve_threads

__all__ = [
    "LMPPOConfig", "LMRollout", "ValueHead", "AdaptiveKLController", "disable_dropout", "fuse_gelu", "left_pad",
    "position_ids_from_mask", "rollout", "sequence_logprobs", "score_rollout", "per_token_kl",
    "compute_rewards", "token_gae", "masked_mean", "masked_whiten", "lm_ppo_loss", "train_lm_ppo", "config_dict",
    "frozen_reference",
]


# --------------------------------------------------------------------------- configuration
@dataclass
class LMPPOConfig:
    """Every knob of :func:`train_lm_ppo` with its default and TRL's name where it differs (notebook 09).

    The defaults fit notebook 09's tiny GPT-2 on a 2-core CPU; the notebook's GPU switch scales
    ``batch_size`` and ``num_iterations`` up.
    """

    seed: int = 0  # seeds prompt sampling, generation and minibatch order
    num_iterations: int = 40  # PPO iterations (rollout + update); TRL: total_episodes / batch_size
    batch_size: int = 64  # prompts per rollout (TRL: batch_size)
    response_length: int = 24  # maximum new tokens (TRL: response_length)
    temperature: float = 1.0  # sampling temperature; logits / T when sampling AND when scoring
    score_temperature: float | None = None  # None = temperature (correct); another value reproduces the
    #   temperature-mismatch bug of notebook 09: old log-probs from the sampler, policy and reference scored at this T
    missing_eos_penalty: float | None = 1.0  # subtracted from the score of a response without EOS
    kl_coef: float = 0.05  # β of the per-token KL penalty (initial β when adaptive_kl)
    adaptive_kl: bool = False  # Ziegler et al.'s proportional controller on β (default: fixed β)
    target_kl: float = 6.0  # adaptive controller: the KL (nats per sequence) to aim for
    kl_horizon: int = 10_000  # adaptive controller: horizon in samples
    gamma: float = 1.0  # discount over tokens (TRL: gamma)
    lam: float = 0.95  # GAE λ (TRL: lam)
    whiten_advantages: bool = True  # advantages to mean 0 / std 1 over the batch's real tokens
    num_ppo_epochs: int = 4  # passes over each rollout (TRL: num_ppo_epochs)
    num_minibatches: int = 4  # minibatches per epoch (TRL: num_mini_batches)
    clip_coef: float = 0.2  # ε of the clipped ratio (TRL: cliprange)
    clip_value: float = 0.2  # ε of the value clipping (TRL: cliprange_value)
    vf_coef: float = 0.1  # weight of the value loss (TRL: vf_coef)
    learning_rate: float = 3e-5  # Adam step size for the policy (and the critic)
    adam_eps: float = 1e-5  # Adam ε
    max_grad_norm: float = 1.0  # global gradient-norm clip
    torch_threads: int | None = None  # None: leave torch's thread count alone
    fused_gelu: bool = True  # swap GPT-2's Python gelu_new for torch's fused tanh-GELU (text.fuse_gelu): the same
    #   function to ~1e-6, faster; TRL users get the same kernel with activation_function="gelu_pytorch_tanh"

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field (notebook 09)."""
        if not isinstance(self.fused_gelu, bool):
            raise TypeError(f"fused_gelu must be True or False, got {self.fused_gelu!r}")
        for name in ("num_iterations", "batch_size", "response_length", "num_ppo_epochs", "num_minibatches",
                     "kl_horizon"):
            V.integer(name, getattr(self, name), low=1)
        V.integer("seed", self.seed, low=0)
        if self.torch_threads is not None:
            V.integer("torch_threads", self.torch_threads, low=1)
        for name in ("adaptive_kl", "whiten_advantages"):
            V.boolean(name, getattr(self, name))
        if self.batch_size < self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must not exceed batch_size ({self.batch_size})")
        V.positive("temperature", self.temperature)
        if self.score_temperature is not None:
            V.positive("score_temperature", self.score_temperature)
        V.number("kl_coef", self.kl_coef, 0)
        for name in ("gamma", "lam"):
            V.probability(name, getattr(self, name))
        for name in ("clip_coef", "clip_value", "learning_rate", "adam_eps", "max_grad_norm", "target_kl"):
            V.positive(name, getattr(self, name))
        V.number("vf_coef", self.vf_coef, 0)
        if self.missing_eos_penalty is not None:
            V.number("missing_eos_penalty", self.missing_eos_penalty, 0)


def _check_temperature(t) -> None:
    if not isinstance(t, (int, float)) or isinstance(t, bool) or not math.isfinite(t) or t <= 0:
        raise ValueError(f"temperature must be a positive number, got {t!r} (use a small T such as 0.1 "
                         "for near-greedy sampling; T = 0 is not a distribution)")


def _check_beta(beta) -> None:
    if isinstance(beta, torch.Tensor):
        beta = float(beta)
    if not isinstance(beta, (int, float)) or isinstance(beta, bool) or not math.isfinite(beta) or beta < 0:
        raise ValueError(f"kl_coef (β) must be a number >= 0, got {beta!r}: a negative β would reward "
                         "moving away from the reference")


# --------------------------------------------------------------------------- small helpers
def disable_dropout(model: nn.Module) -> nn.Module:
    """Set every dropout probability to 0, in place, and return the model (notebook 09).

    With dropout on, two forward passes of the same policy give different log-probs, so the PPO
    ratio is not 1 even before the first update and the KL to an identical reference is not 0.
    """
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    cfg = getattr(model, "config", None)
    for name in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "summary_first_dropout", "dropout",
                 "attention_dropout", "hidden_dropout_prob", "attention_probs_dropout_prob"):
        if cfg is not None and isinstance(getattr(cfg, name, None), float):
            setattr(cfg, name, 0.0)
    return model


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (all of them, or along ``dim``) (notebook 09)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1.0)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Whiten ``x`` to mean 0 and std 1 over the entries where ``mask`` is 1 (notebook 09).

    Padding does not enter the statistics; padded entries of the result are set to 0.
    """
    mask = mask.to(x.dtype)
    mean = masked_mean(x, mask)
    n = mask.sum()
    var = (((x - mean) ** 2) * mask).sum() / (n - 1).clamp(min=1.0)  # unbiased, like TRL
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask


def _check_prompts(prompts, name: str = "prompts") -> list[str]:
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)):
        raise TypeError(f"{name} must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError(f"{name} is empty: give at least one prompt")
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(p).__name__}")
    return list(prompts)


def left_pad(tokenizer, prompts: list[str], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokenize prompts and pad them on the LEFT: ``(input_ids, attention_mask)``, both ``[B, P]`` (notebook 09).

    Left padding puts every prompt's last token in the same column, so the first generated token
    of every row follows immediately. An empty prompt (no tokens) raises ``ValueError``.
    """
    prompts = _check_prompts(prompts)
    V.tokenizer("tokenizer", tokenizer)
    rows = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    for i, r in enumerate(rows):
        if len(r) == 0:
            raise ValueError(f"prompts[{i}] = {prompts[i]!r} has no tokens: every prompt needs at least one")
    P = max(len(r) for r in rows)
    ids = torch.full((len(rows), P), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(rows), P), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, P - len(r):] = torch.tensor(r, dtype=torch.long)
        mask[i, P - len(r):] = 1
    return ids.to(device), mask.to(device)


# --------------------------------------------------------------------------- rollouts
@dataclass
class LMRollout:
    """A batch of sampled responses (notebook 09).

    ``query_ids``/``query_mask`` ``[B, P]`` (left-padded prompts), ``response_ids`` ``[B, R]``
    (pad after the first EOS), ``response_mask`` ``[B, R]`` (1 up to and including the EOS),
    ``logprobs`` ``[B, R]`` (of the sampled tokens under logits / T, 0 on padding), ``has_eos``
    ``[B]``, and the text: ``prompts``, ``completions`` (decoded up to, not including, EOS).
    """

    prompts: list
    completions: list
    query_ids: torch.Tensor
    query_mask: torch.Tensor
    response_ids: torch.Tensor
    response_mask: torch.Tensor
    logprobs: torch.Tensor
    has_eos: torch.Tensor
    temperature: float = 1.0

    @property
    def input_ids(self) -> torch.Tensor:
        return torch.cat([self.query_ids, self.response_ids], 1)

    @property
    def attention_mask(self) -> torch.Tensor:
        return torch.cat([self.query_mask, self.response_mask], 1)

    @property
    def last_index(self) -> torch.Tensor:
        """Index (within the response) of each row's last real token: the EOS, or the last token."""
        return self.response_mask.sum(1) - 1

    def select(self, idx) -> "LMRollout":
        """The rows ``idx`` (a list or tensor of indices) as a new rollout."""
        idx = torch.as_tensor(idx, dtype=torch.long)
        pick = lambda xs: [xs[i] for i in idx.tolist()]  # noqa: E731
        return LMRollout(pick(self.prompts), pick(self.completions), self.query_ids[idx], self.query_mask[idx],
                         self.response_ids[idx], self.response_mask[idx], self.logprobs[idx], self.has_eos[idx],
                         self.temperature)


@torch.no_grad()
def rollout(policy: nn.Module, tokenizer, prompts: list[str], max_new_tokens: int = 24, temperature: float = 1.0,
            generator: torch.Generator | None = None, seed: int | None = None) -> LMRollout:
    r"""Sample one response per prompt from ``policy`` (a transformers causal LM); see :class:`LMRollout`.

    Notebook 09. The loop is written out (no ``model.generate``) so that every choice is visible:
    left-padded prompts with position ids that skip the padding, a KV cache, pure sampling from
    :math:`\mathrm{softmax}(\text{logits}/T)` (no top-k/top-p: they would change the distribution
    whose log-probs PPO uses), a fixed maximum of ``max_new_tokens``, and everything after the
    first EOS replaced by pad and masked out. Pass ``seed`` (or a ``generator``) for reproducible
    samples. The model is not switched to train or eval mode here; :func:`train_lm_ppo` keeps it in
    eval mode (dropout off).
    """
    _check_temperature(temperature)
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    prompts = _check_prompts(prompts)
    device = next(policy.parameters()).device
    q_ids, q_mask = left_pad(tokenizer, prompts, device)
    _check_context(policy, int(q_mask.sum(1).max()), max_new_tokens)
    if generator is None:
        generator = torch.Generator(device=device)
        generator.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, (1,))))
    B = q_ids.shape[0]
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    resp = torch.full((B, max_new_tokens), pad, dtype=torch.long, device=device)
    logps = torch.zeros((B, max_new_tokens), device=device)
    done = torch.zeros(B, dtype=torch.bool, device=device)
    mask = q_mask.clone()
    out = policy(input_ids=q_ids, attention_mask=mask, position_ids=position_ids_from_mask(mask), use_cache=True)
    cache_kw = _cache_kwarg(policy)
    past, last_pos = _get_cache(out), position_ids_from_mask(mask)[:, -1]
    for t in range(max_new_tokens):
        logits = out.logits[:, -1, :].float() / temperature
        logp_all = torch.log_softmax(logits, -1)
        tok = torch.multinomial(logp_all.exp(), 1, generator=generator).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        resp[:, t] = tok
        logps[:, t] = torch.where(done, torch.zeros_like(logps[:, t]), logp_all.gather(1, tok[:, None]).squeeze(1))
        done = done | (tok == eos)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], 1)
        last_pos = last_pos + 1
        out = policy(input_ids=tok[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                     use_cache=True, **{cache_kw: past})
        past = _get_cache(out)
    is_eos = resp == eos
    has_eos = is_eos.any(1)
    # response mask: 1 up to and including the first EOS (cumsum of EOS hits before this position == 0)
    before = torch.cumsum(is_eos.long(), 1) - is_eos.long()
    r_mask = (before == 0).long()
    resp = torch.where(r_mask.bool(), resp, torch.full_like(resp, pad))
    logps = logps * r_mask
    completions = []
    for i in range(B):
        toks = resp[i, : int(r_mask[i].sum())].tolist()
        if toks and toks[-1] == eos:
            toks = toks[:-1]
        completions.append(tokenizer.decode(toks, skip_special_tokens=True))
    return LMRollout(prompts, completions, q_ids, q_mask, resp, r_mask, logps, has_eos, float(temperature))


def _check_context(model: nn.Module, prompt_len: int, max_new_tokens: int) -> None:
    """The longest prompt plus ``max_new_tokens`` must fit the model's context (positions beyond it do not exist)."""
    cfg = getattr(model, "config", None)
    n_ctx = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", None)
    if isinstance(n_ctx, int) and prompt_len + max_new_tokens > n_ctx:
        raise ValueError(f"the longest prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) must be <= the "
                         f"model's context length ({n_ctx} positions); shorten the prompts or lower max_new_tokens")


def _cache_kwarg(model: nn.Module) -> str:
    """transformers >= 5.2x names the KV-cache argument ``cache``; older versions ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _get_cache(out):
    c = getattr(out, "cache", None)
    return c if c is not None else out.past_key_values


def _accepts(model: nn.Module, arg: str) -> bool:
    import inspect

    try:
        return arg in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def _forward(model: nn.Module, input_ids, attention_mask, output_hidden_states: bool = False, **kw):
    return model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
                 output_hidden_states=output_hidden_states, use_cache=False, **kw)


def sequence_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_prompt_tokens: int,
                      temperature: float = 1.0, return_entropy: bool = False, return_hidden: bool = False):
    r"""Per-token log-probs :math:`\log\pi(y_t \mid x, y_{<t})` of the response tokens, under logits / T.

    Notebook 09. ``input_ids``/``attention_mask`` ``[B, P + R]`` are a left-padded prompt block of
    ``n_prompt_tokens`` = P columns followed by the response (e.g. ``ro.input_ids``,
    ``ro.attention_mask``, ``ro.query_ids.shape[1]``). Returns ``[B, R]`` (padding positions hold
    meaningless values: mask them with the response mask). With ``return_entropy`` also the
    per-token entropy ``[B, R]``; with ``return_hidden`` the last hidden state at the positions
    that predict each response token ``[B, R, H]`` (for a value head). The temperature must be
    the one used for sampling, or the log-probs belong to another distribution.
    """
    _check_temperature(temperature)
    if input_ids.shape != attention_mask.shape or input_ids.dim() != 2:
        raise ValueError(f"input_ids and attention_mask must both be [B, T], got {tuple(input_ids.shape)} and "
                         f"{tuple(attention_mask.shape)}")
    P = int(n_prompt_tokens)
    if not 1 <= P < input_ids.shape[1]:
        raise ValueError(f"n_prompt_tokens must be in [1, {input_ids.shape[1] - 1}] (there must be prompt and "
                         f"response columns), got {n_prompt_tokens}")
    R = input_ids.shape[1] - P
    kw = {"logits_to_keep": R + 1} if _accepts(model, "logits_to_keep") else {}  # skip the prompt's LM head
    out = _forward(model, input_ids, attention_mask, output_hidden_states=return_hidden, **kw)
    logits = out.logits[:, -(R + 1):-1, :].float() / temperature  # position t predicts token t+1
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, input_ids[:, P:, None]).squeeze(-1)
    extra = []
    if return_entropy:
        extra.append(-(logp_all.exp() * logp_all).sum(-1))
    if return_hidden:
        extra.append(out.hidden_states[-1][:, -(R + 1):-1, :])
    return (logp, *extra) if extra else logp


# --------------------------------------------------------------------------- value head / critic
class ValueHead(nn.Module):
    """A linear value head :math:`V_\\psi(s_t)` on the policy's last hidden state, zero-initialised (notebook 09).

    Zero weights make every first value 0, so the first advantages are the plain returns and no
    random critic noise enters the first updates.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden.float()).squeeze(-1)


def _critic_values(critic: nn.Module, input_ids, attention_mask, P: int) -> torch.Tensor:
    """Per-token values from a separate sequence-classification critic (its score head on every token)."""
    hidden = critic.base_model(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from_mask(attention_mask), use_cache=False).last_hidden_state
    return _score_head(critic)(hidden[:, P - 1:-1, :]).squeeze(-1).float()


def _score_head(model: nn.Module) -> nn.Module:
    for name in ("score", "classifier", "v_head"):
        head = getattr(model, name, None)
        if isinstance(head, nn.Module):
            return head
    raise TypeError(f"{type(model).__name__} has no `score`/`classifier` head: pass a transformers "
                    "*ForSequenceClassification model (num_labels=1), or a reward_fn(prompts, completions)")


# --------------------------------------------------------------------------- reward
@torch.no_grad()
def score_rollout(reward, ro: LMRollout) -> torch.Tensor:
    r"""The score :math:`\hat r_\theta(x, y)` of every (prompt, completion) of a rollout, shape ``[B]`` (notebook 09).

    ``reward`` is either an ``nn.Module`` reward model (a transformers ``*ForSequenceClassification``
    with ``num_labels=1`` sharing the policy's tokenizer): its score head is read at each row's last
    real token (the EOS, or the last token when there is none), never at a pad, and normalized with
    ``config.reward_mean``/``config.reward_std`` when the model stores them (notebook 08); or any callable
    ``reward_fn(prompts, completions)`` returning one finite number per completion. A wrong shape,
    NaN or inf raises ``ValueError``.
    """
    B = len(ro.prompts)
    if isinstance(reward, nn.Module):
        ids, mask = ro.input_ids, ro.attention_mask
        hidden = reward.base_model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask),
                                   use_cache=False).last_hidden_state
        P = ro.query_ids.shape[1]
        last = (P + ro.last_index).to(hidden.device)
        h_last = hidden[torch.arange(B, device=hidden.device), last]
        scores = _score_head(reward)(h_last).reshape(-1).float()
        cfg = getattr(reward, "config", None)  # normalization stored by text_reward.normalize_reward_model
        scores = (scores - float(getattr(cfg, "reward_mean", 0.0))) / float(getattr(cfg, "reward_std", 1.0))
    elif callable(reward):
        scores = reward(list(ro.prompts), list(ro.completions))
    else:
        raise TypeError(f"reward must be an nn.Module reward model or a reward_fn(prompts, completions), got "
                        f"{type(reward).__name__}")
    return _check_scores(scores, B)


def _check_scores(scores, n: int) -> torch.Tensor:
    if not isinstance(scores, torch.Tensor):
        try:
            scores = torch.as_tensor(np.asarray(scores, dtype=np.float32))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"the reward function must return numbers (a tensor of shape [{n}]), got "
                            f"{type(scores).__name__}") from exc
    scores = scores.detach().float().cpu()
    if scores.dim() == 2 and scores.shape[1] == 1:
        scores = scores[:, 0]
    if tuple(scores.shape) != (n,):
        raise ValueError(f"the reward must give one score per completion: expected shape ({n},), got "
                         f"{tuple(scores.shape)}")
    if not torch.isfinite(scores).all():
        bad = (~torch.isfinite(scores)).nonzero().flatten()[:5].tolist()
        raise ValueError(f"the reward returned NaN or inf (rows {bad}): fix the reward function")
    return scores


def per_token_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    r"""Per-token KL estimate :math:`k_t = \log\pi_\phi(y_t|\cdot) - \log\pi_{ref}(y_t|\cdot)`, 0 on padding (notebook 09).

    Its sum over a response is an unbiased sample of :math:`\mathrm{KL}(\pi_\phi\,\|\,\pi_{ref})` for
    that prompt when :math:`y` was sampled from :math:`\pi_\phi` with the same temperature; a
    single token's value can be negative, the expectation cannot.
    """
    if logprobs.shape != ref_logprobs.shape or logprobs.shape != response_mask.shape:
        raise ValueError(f"logprobs, ref_logprobs and response_mask must have the same shape [B, R], got "
                         f"{tuple(logprobs.shape)}, {tuple(ref_logprobs.shape)}, {tuple(response_mask.shape)}")
    V.check_finite("logprobs", logprobs)
    V.check_finite("ref_logprobs", ref_logprobs)
    return (logprobs - ref_logprobs) * response_mask.to(logprobs.dtype)


def compute_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                    response_mask: torch.Tensor, kl_coef: float):
    r"""Per-token rewards: :math:`r_t = -\beta k_t`, plus the score at the last real token (notebook 09).

    .. math:: r_t = -\beta\,(\log\pi_\phi(y_t) - \log\pi_{ref}(y_t)) + \mathbb{1}[t = T_{last}]\,\hat r_\theta(x, y)

    ``scores`` ``[B]``; the others ``[B, R]`` with a response mask that is 1 on a prefix of each
    row (up to and including the EOS). Returns ``(rewards, kl, non_score_reward)``, each ``[B, R]``
    and 0 on padding.
    """
    _check_beta(kl_coef)
    kl = per_token_kl(logprobs, ref_logprobs, response_mask)
    B = logprobs.shape[0]
    if scores.dim() != 1 or scores.shape[0] != B:
        raise ValueError(f"scores must have shape ({B},) (one per response), got {tuple(scores.shape)}")
    V.check_finite("scores", scores)
    lengths = response_mask.long().sum(1)
    if (lengths == 0).any():
        raise ValueError("every response needs at least one real token (a row of response_mask is all 0)")
    non_score = -float(kl_coef) * kl
    rewards = non_score.clone()
    rewards[torch.arange(B, device=rewards.device), lengths - 1] += scores.to(rewards)
    return rewards, kl, non_score


def token_gae(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float = 1.0,
              lam: float = 0.95):
    r"""GAE over the tokens of each response: ``(advantages, returns)``, both ``[B, R]``, 0 on padding (notebook 09).

    .. math:: \delta_t = r_t + \gamma V(s_{t+1}) - V(s_t),\qquad A_t = \delta_t + \gamma\lambda A_{t+1}

    where :math:`V(s_{t+1}) = 0` and :math:`A_{t+1} = 0` after the last real token (the episode
    ends at EOS or at the length limit; the score already sits in the last reward).
    Returns are :math:`A_t + V(s_t)`, the value targets.
    """
    if rewards.shape != values.shape or rewards.shape != response_mask.shape or rewards.dim() != 2:
        raise ValueError(f"rewards, values and response_mask must all be [B, R], got {tuple(rewards.shape)}, "
                         f"{tuple(values.shape)}, {tuple(response_mask.shape)}")
    V.probability("gamma", gamma)
    V.probability("lam", lam)
    V.check_finite("rewards", rewards)
    V.check_finite("values", values)
    m = response_mask.to(rewards.dtype)
    v = values * m
    R = rewards.shape[1]
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(R)):
        next_v = v[:, t + 1] if t + 1 < R else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - v[:, t]
        last = (delta + gamma * lam * last) * m[:, t]
        adv[:, t] = last
    return adv, (adv + v) * m


# --------------------------------------------------------------------------- loss
def lm_ppo_loss(new_logp, old_logp, advantages, new_values, old_values, returns, response_mask,
                clip_coef: float = 0.2, clip_value: float = 0.2, vf_coef: float = 0.1):
    r"""PPO's clipped policy loss plus the clipped value loss, averaged over real tokens (notebook 09).

    .. math::
        L = \underbrace{\overline{\max(-A_t\rho_t,\ -A_t\,\mathrm{clip}(\rho_t, 1\pm\epsilon))}}_{\text{policy}}
          + c_v\,\underbrace{\tfrac12\overline{\max((V - \hat R)^2, (V^{clip} - \hat R)^2)}}_{\text{value}}

    with :math:`\rho_t = \exp(\log\pi_\phi - \log\pi_{old})` and the mean over the response
    mask. Returns ``(loss, stats)``; stats use TRL's names.
    """
    shapes = {k: tuple(v.shape) for k, v in dict(new_logp=new_logp, old_logp=old_logp, advantages=advantages,
                                                 new_values=new_values, old_values=old_values, returns=returns,
                                                 response_mask=response_mask).items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"all inputs must have the same shape [B, R], got {shapes}")
    for name, x in (("new_logp", new_logp), ("old_logp", old_logp), ("advantages", advantages),
                    ("new_values", new_values), ("returns", returns)):
        V.check_finite(name, x)
    V.positive("clip_coef", clip_coef)
    V.positive("clip_value", clip_value)
    V.number("vf_coef", vf_coef, 0)
    log_ratio = new_logp - old_logp
    ratio = torch.exp(log_ratio)
    pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef))
    pg_loss = masked_mean(pg, response_mask)
    v_clip = old_values + torch.clamp(new_values - old_values, -clip_value, clip_value)
    vf = 0.5 * torch.max((new_values - returns) ** 2, (v_clip - returns) ** 2)
    vf_loss = masked_mean(vf, response_mask)
    loss = pg_loss + vf_coef * vf_loss
    with torch.no_grad():
        m = response_mask.bool()
        stats = {
            "loss/policy_avg": float(pg_loss), "loss/value_avg": float(vf_loss),
            "policy/approxkl_avg": float(masked_mean(0.5 * log_ratio ** 2, response_mask)),
            "policy/clipfrac_avg": float(masked_mean(((ratio - 1).abs() > clip_coef).float(), response_mask)),
            "val/clipfrac_avg": float(masked_mean(((new_values - old_values).abs() > clip_value).float(), response_mask)),
            "val/ratio": float(masked_mean(ratio, response_mask)),
            "val/ratio_max_dev": float((ratio[m] - 1).abs().max()) if m.any() else 0.0,
        }
    return loss, stats


# --------------------------------------------------------------------------- adaptive KL
class AdaptiveKLController:
    r"""Ziegler et al. (2019)'s proportional controller for β (notebook 09).

    After each rollout with mean sequence KL :math:`\mathrm{KL}`:
    :math:`e = \mathrm{clip}(\mathrm{KL}/\mathrm{KL}_{target} - 1, -0.2, 0.2)`,
    :math:`\beta \leftarrow \beta\,(1 + e\, n / H)` with n samples in the batch and horizon H.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int):
        _check_beta(init_kl_coef)
        V.positive("target", target)
        V.integer("horizon", horizon, low=1)
        self.value, self.target, self.horizon = float(init_kl_coef), float(target), int(horizon)

    def update(self, current_kl: float, n_steps: int) -> float:
        current_kl = V.number("current_kl", current_kl)
        V.integer("n_steps", n_steps, low=1)
        err = float(np.clip(current_kl / self.target - 1.0, -0.2, 0.2))
        self.value *= 1.0 + err * n_steps / self.horizon
        return self.value


# --------------------------------------------------------------------------- training loop
def frozen_reference(policy: nn.Module, ref: nn.Module | None = None, fused_gelu: bool = True,
                     name: str = "ref_policy") -> nn.Module:
    """The frozen reference π_ref: ``ref`` or a copy of ``policy``, dropout off, eval mode, no gradients (notebooks 09–10).

    Shared by the PPO, DPO and GRPO/RLOO trainers. ``ref is policy`` raises ``ValueError`` (the
    reference must not move with the policy). ``fused_gelu`` applies :func:`fuse_gelu`.
    """
    if ref is policy:
        raise ValueError(f"{name} is the policy itself: the reference must be a frozen copy "
                         f"(leave {name}=None to copy the policy before training)")
    ref = copy.deepcopy(policy) if ref is None else ref
    disable_dropout(ref).eval().requires_grad_(False)
    return fuse_gelu(ref) if fused_gelu else ref


def _policy_forward(policy, value_head, critic, input_ids, attention_mask, P, temperature, entropy=False):
    """Log-probs, entropy (or None) and values of the response tokens in one (shared trunk) or two forward passes."""
    if critic is None:
        logp, *ent, hidden = sequence_logprobs(policy, input_ids, attention_mask, P, temperature,
                                               return_entropy=entropy, return_hidden=True)
        return logp, (ent[0] if ent else None), value_head(hidden)
    out = sequence_logprobs(policy, input_ids, attention_mask, P, temperature, return_entropy=entropy)
    logp, ent = out if entropy else (out, None)
    return logp, ent, _critic_values(critic, input_ids, attention_mask, P)


def _check_train_args(policy, tokenizer, reward, prompts, config) -> tuple[LMPPOConfig, list[str]]:
    cfg = LMPPOConfig() if config is None else config
    if not isinstance(cfg, LMPPOConfig):
        raise TypeError(f"config must be an LMPPOConfig, got {type(cfg).__name__}")
    cfg.validate()
    prompts = _check_prompts(prompts)
    V.tokenizer("tokenizer", tokenizer)
    if not (isinstance(reward, nn.Module) or callable(reward)):
        raise TypeError(f"reward must be an nn.Module or a callable reward_fn(prompts, completions), got "
                        f"{type(reward).__name__}")
    return cfg, prompts


def _setup_models(policy, reward, ref_policy, critic, cfg: LMPPOConfig):
    """Dropout off and eval mode everywhere, the frozen reference, the critic; returns ``(ref_policy, value_model)``."""
    ref_policy = frozen_reference(policy, ref_policy, cfg.fused_gelu)
    disable_dropout(policy).eval()
    if cfg.fused_gelu:
        fuse_gelu(policy)
    if isinstance(reward, nn.Module):
        disable_dropout(reward).eval().requires_grad_(False)
        if cfg.fused_gelu:
            fuse_gelu(reward)
    if critic is None:
        hidden = policy.config.hidden_size if hasattr(policy, "config") else policy.get_input_embeddings().embedding_dim
        return ref_policy, ValueHead(hidden).to(next(policy.parameters()).device)
    _score_head(critic)
    disable_dropout(critic).eval().requires_grad_(True)  # a separate critic is trained, even if passed frozen
    return ref_policy, (fuse_gelu(critic) if cfg.fused_gelu else critic)


def _sample_step(policy, tokenizer, prompts, cfg: LMPPOConfig, rng, gen) -> LMRollout:
    """1) roll out a batch of ``batch_size`` prompts drawn from ``prompts`` with the current policy."""
    idx = rng.choice(len(prompts), size=cfg.batch_size, replace=len(prompts) < cfg.batch_size)
    return rollout(policy, tokenizer, [prompts[i] for i in idx], cfg.response_length, cfg.temperature, gen)


@torch.no_grad()
def _score_step(policy, value_model, critic, ref_policy, reward, ro: LMRollout, cfg: LMPPOConfig) -> dict:
    """2) old log-probs and values (one forward pass after sampling), reference log-probs, scores."""
    ids, am, P = ro.input_ids, ro.attention_mask, ro.query_ids.shape[1]
    t_score = cfg.temperature if cfg.score_temperature is None else cfg.score_temperature
    old_logp, ent, old_values = _policy_forward(policy, value_model if critic is None else None, critic,
                                                ids, am, P, t_score, entropy=True)
    if t_score != cfg.temperature:  # the bug, on purpose: old log-probs as the sampler saw them
        old_logp = ro.logprobs.to(old_logp)
    raw_scores = score_rollout(reward, ro).to(old_logp.device)
    scores = raw_scores.clone()
    if cfg.missing_eos_penalty is not None:
        scores[~ro.has_eos] -= cfg.missing_eos_penalty
    return dict(ids=ids, am=am, P=P, m=ro.response_mask.float(), t_score=t_score, old_logp=old_logp, ent=ent,
                old_values=old_values, ref_logp=sequence_logprobs(ref_policy, ids, am, P, t_score),
                raw_scores=raw_scores, scores=scores)


@torch.no_grad()
def _advantage_step(b: dict, beta: float, cfg: LMPPOConfig) -> None:
    """3) KL-shaped per-token rewards, 4) GAE over tokens and whitening; added to the batch ``b``."""
    m = b["m"]
    b["rewards"], b["kl"], b["non_score"] = compute_rewards(b["scores"], b["old_logp"] * m, b["ref_logp"] * m, m, beta)
    b["adv"], b["returns"] = token_gae(b["rewards"], b["old_values"] * m, m, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        b["adv"] = masked_whiten(b["adv"], m)


def _update_step(policy, value_model, critic, optimizer, params, b: dict, cfg: LMPPOConfig, gen) -> tuple[dict, dict]:
    """5) ``num_ppo_epochs`` × ``num_minibatches`` clipped updates; returns (mean stats, first minibatch's stats)."""
    B = b["ids"].shape[0]
    mb = B // cfg.num_minibatches
    sums: dict = {}
    n_mb, first = 0, None
    for _ in range(cfg.num_ppo_epochs):
        perm = torch.randperm(B, generator=gen, device=b["ids"].device)
        for s in range(0, mb * cfg.num_minibatches, mb):
            j = perm[s:s + mb]
            logp, _, values = _policy_forward(policy, value_model if critic is None else None, critic,
                                              b["ids"][j], b["am"][j], b["P"], b["t_score"])
            loss, st = lm_ppo_loss(logp, b["old_logp"][j], b["adv"][j], values, b["old_values"][j], b["returns"][j],
                                   b["m"][j], cfg.clip_coef, cfg.clip_value, cfg.vf_coef)
            V.check_finite_loss(loss, n_mb, "LM PPO loss (policy + value)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            first = first or st
            for k, v in st.items():
                sums[k] = sums.get(k, 0.0) + v
            n_mb += 1
    return {k: v / n_mb for k, v in sums.items() if k != "val/ratio_max_dev"}, first


def _iteration_stats(it: int, b: dict, ro: LMRollout, upd: dict, first: dict, beta: float, seconds: float) -> dict:
    m, seq_kl = b["m"], b["kl"].sum(1)
    return {**upd,
            "iteration": it,
            "objective/kl": float(seq_kl.mean()),
            "objective/entropy": float((b["ent"] * m).sum(1).mean()),
            "objective/non_score_reward": float(b["non_score"].sum(1).mean()),
            "objective/rlhf_reward": float((b["scores"] - beta * seq_kl).mean()),
            "objective/scores": float(b["scores"].mean()),
            "objective/scores_raw": float(b["raw_scores"].mean()),
            "val/ratio_first": first["val/ratio"],
            "val/ratio_first_max_dev": first["val/ratio_max_dev"],
            "val/eos_frac": float(ro.has_eos.float().mean()),
            "val/mean_length": float(m.sum(1).mean()),
            "kl_coef": float(beta),
            "time/iteration": seconds}


def train_lm_ppo(policy: nn.Module, tokenizer, reward, prompts: list[str], config: LMPPOConfig | None = None,
                 ref_policy: nn.Module | None = None, critic: nn.Module | None = None,
                 callback: Callable[[dict], bool | None] | None = None,
                 progress: bool = True) -> tuple[nn.Module, dict[str, list]]:
    r"""Train ``policy`` with PPO on ``reward`` over ``prompts``; return ``(policy, history)`` (notebook 09).

    Each iteration is four named steps, the seed's §3.3.3 loop: :func:`_sample_step` (roll out
    ``config.batch_size`` prompts), :func:`_score_step` (old log-probs and values, reference
    log-probs, scores), :func:`_advantage_step` (KL-shaped rewards, GAE, whitening) and
    :func:`_update_step` (epochs × minibatches of clipped updates).

    ``policy``: a transformers causal LM, trained in place (dropout disabled, kept in eval mode).
    ``reward``: an ``nn.Module`` reward model or ``reward_fn(prompts, completions) -> [n]``
    (:func:`score_rollout`). ``ref_policy``: the frozen reference (:func:`frozen_reference`; by
    default a copy of ``policy`` taken before training). ``critic``: ``None`` for a zero-initialised
    :class:`ValueHead` on the policy's trunk, or a sequence-classification model (e.g.
    ``copy.deepcopy(reward_model)``) trained as a separate value network. ``config.fused_gelu``
    (default ``True``) swaps GPT-2's ``gelu_new`` for the fused tanh-GELU in every model
    (:func:`fuse_gelu`: the same function, faster).

    ``history`` is a dict of lists, one entry per iteration, with TRL's metric names:
    ``objective/kl`` (mean over sequences of the summed per-token KL), ``objective/entropy``,
    ``objective/non_score_reward``, ``objective/rlhf_reward`` (score − β·KL),
    ``objective/scores`` (after the missing-EOS penalty), ``objective/scores_raw``,
    ``policy/approxkl_avg``, ``policy/clipfrac_avg``, ``loss/policy_avg``, ``loss/value_avg``,
    ``val/clipfrac_avg``, ``val/ratio``, ``val/ratio_first`` and ``val/ratio_first_max_dev`` (the
    ratio on the first minibatch of the iteration: 1 up to float error), ``val/eos_frac``,
    ``val/mean_length``, ``kl_coef``, ``time/iteration``, ``iteration``.
    ``callback(stats)`` (the trainers' contract, docs/DESIGN.md) runs after each iteration with that
    iteration's stats plus ``rollout`` (the :class:`LMRollout`); returning ``True`` stops training.
    """
    cfg, prompts = _check_train_args(policy, tokenizer, reward, prompts, config)
    V.callable_("callback", callback, allow_none=True)
    if cfg.torch_threads:
        torch.set_num_threads(resolve_threads(cfg.torch_threads))
    ref_policy, value_model = _setup_models(policy, reward, ref_policy, critic, cfg)
    device = next(policy.parameters()).device
    params = list(policy.parameters()) + [p for p in value_model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.learning_rate, eps=cfg.adam_eps)
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, cfg.kl_horizon) if cfg.adaptive_kl else None
    beta = cfg.kl_coef
    rng = np.random.default_rng(cfg.seed)
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    history: dict[str, list] = {}
    bar = progress_bar(range(cfg.num_iterations), desc="PPO", disable=not progress)
    for it in bar:
        t0 = time.perf_counter()
        ro = _sample_step(policy, tokenizer, prompts, cfg, rng, gen)
        b = _score_step(policy, value_model, critic, ref_policy, reward, ro, cfg)
        _advantage_step(b, beta, cfg)
        upd, first = _update_step(policy, value_model, critic, optimizer, params, b, cfg, gen)
        stats = _iteration_stats(it, b, ro, upd, first, beta, time.perf_counter() - t0)
        for k, v in stats.items():
            history.setdefault(k, []).append(v)
        if kl_ctl is not None:
            beta = kl_ctl.update(stats["objective/kl"], ro.input_ids.shape[0])
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(score=f"{stats['objective/scores']:.2f}", kl=f"{stats['objective/kl']:.2f}")
        if callback is not None and callback({**stats, "rollout": ro}):
            break
    return policy, history


def config_dict(cfg: LMPPOConfig) -> dict:
    """The config as a plain dict (for logging next to the history) (notebook 09)."""
    return asdict(cfg)

