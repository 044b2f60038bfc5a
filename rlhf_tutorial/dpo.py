r"""Direct Preference Optimization (Rafailov et al., 2023) for the tiny language model (notebook 10).

DPO skips the reward model and the RL loop: with a frozen reference policy π_ref and a
temperature β, the policy π_φ is trained directly on preference pairs (x, y_w ≻ y_l) with

.. math::

    L_{DPO} = -\log \sigma\Big(\beta \big[\log\tfrac{π_φ(y_w|x)}{π_{ref}(y_w|x)}
                                       - \log\tfrac{π_φ(y_l|x)}{π_{ref}(y_l|x)}\big]\Big),

where log π(y|x) is the **sum** of the log-probabilities of the response tokens (prompt and
padding masked out). β·log(π_φ/π_ref) is the *implicit reward*; the fraction of pairs whose
chosen response gets the larger implicit reward is the implicit reward accuracy.

The data are TRL's preference format, rows ``{"prompt", "chosen", "rejected"}`` (notebook 08),
and the metric names are TRL's (``rewards/chosen``, ``rewards/rejected``, ``rewards/accuracies``,
``rewards/margins``, ``logps/chosen``, ``logps/rejected``), so :class:`trl.DPOTrainer` in
``scripts/trl_train.py`` reads the same rows and logs the same numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as V
from .lm_rlhf import frozen_reference, sequence_logprobs
from .text import fuse_gelu
from .utils import progress_bar

__all__ = [
    "DPOConfig",
    "dpo_loss",
    "dpo_metrics",
    "tokenize_preferences",
    "response_logprobs",
    "train_dpo",
]


def _check_same_shape(**tensors):
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{k} must be a torch.Tensor, got {type(v).__name__}")
    shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    for k, v in tensors.items():
        if v.dim() != 1:
            raise ValueError(f"{k} must be 1-D (one summed log-probability per pair), got shape {tuple(v.shape)}")
        V.check_finite(k, v)
    if len(set(shapes.values())) != 1:
        raise ValueError(f"mismatched batch sizes: {shapes}; expected one value per pair in each")
    first = next(iter(tensors.values()))
    if first.numel() == 0:
        raise ValueError("empty batch: expected at least one preference pair")


def _check_beta(beta: float):
    return V.positive("beta", beta)  # the DPO temperature, e.g. 0.1


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor,
             beta: float = 0.1, label_smoothing: float = 0.0) -> torch.Tensor:
    r"""The DPO loss, averaged over pairs (notebook 10).

    Each argument is a 1-D tensor of summed response log-probabilities, one per pair.
    ``label_smoothing`` ε > 0 gives the conservative DPO of TRL
    (``-(1-ε) log σ(βh) - ε log σ(-βh)``), for labels that are wrong with probability ε.
    """
    _check_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                      ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _check_beta(beta)
    V.number("label_smoothing", label_smoothing)
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing!r}")
    h = (policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps)
    losses = -(1 - label_smoothing) * F.logsigmoid(beta * h) - label_smoothing * F.logsigmoid(-beta * h)
    return losses.mean()


@torch.no_grad()
def dpo_metrics(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps,
                beta: float = 0.1) -> dict[str, float]:
    """Implicit rewards β·log(π/π_ref) and their accuracy, with TRL's metric names (notebook 10)."""
    _check_same_shape(policy_chosen_logps=policy_chosen_logps, policy_rejected_logps=policy_rejected_logps,
                      ref_chosen_logps=ref_chosen_logps, ref_rejected_logps=ref_rejected_logps)
    _check_beta(beta)
    chosen = beta * (policy_chosen_logps - ref_chosen_logps)
    rejected = beta * (policy_rejected_logps - ref_rejected_logps)
    return {
        "rewards/chosen": chosen.mean().item(),
        "rewards/rejected": rejected.mean().item(),
        "rewards/accuracies": (chosen > rejected).float().mean().item(),
        "rewards/margins": (chosen - rejected).mean().item(),
        "logps/chosen": policy_chosen_logps.mean().item(),
        "logps/rejected": policy_rejected_logps.mean().item(),
    }


def _check_rows(rows) -> list[dict]:
    if isinstance(rows, (dict, str, bytes)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows must be a list of dicts with keys 'prompt', 'chosen', 'rejected', got {type(rows).__name__}")
    rows = list(rows)
    if not rows:
        raise ValueError("rows is empty: expected at least one preference pair")
    for i, r in enumerate(rows):
        if not isinstance(r, dict) or not {"prompt", "chosen", "rejected"} <= set(r):
            raise ValueError(f"row {i} must be a dict with keys 'prompt', 'chosen', 'rejected' (TRL format), got {r!r}")
        for k in ("prompt", "chosen", "rejected"):
            if not isinstance(r[k], str):
                raise TypeError(f"row {i}[{k!r}] must be a string, got {type(r[k]).__name__}")
        if not r["prompt"].strip():
            raise ValueError(f"row {i} has an empty prompt")
    return rows


def tokenize_preferences(tokenizer, rows, max_length: int = 64) -> dict[str, torch.Tensor]:
    """Tokenize TRL-format rows into right-padded ``prompt + response + EOS`` tensors (notebook 10).

    Returns ``chosen_input_ids``, ``chosen_attention_mask``, ``chosen_response_mask`` and the
    same three for ``rejected``: the response mask is 1 on response tokens (and the EOS that
    ends them), 0 on the prompt and the padding. Sequences longer than ``max_length`` lose
    response tokens from the end (the prompt is kept whole). Needs a pad token distinct from EOS.
    """
    rows = _check_rows(rows)
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError("the tokenizer needs a pad token different from EOS (never pad with EOS)")
    if max_length < 2:
        raise ValueError(f"max_length must be >= 2, got {max_length}")
    out = {}
    for side in ("chosen", "rejected"):
        ids, resp = [], []
        for r in rows:
            p = tokenizer(r["prompt"], add_special_tokens=False)["input_ids"]
            c = tokenizer(r[side], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
            if len(p) >= max_length:
                raise ValueError(f"prompt of {len(p)} tokens does not fit max_length={max_length}: {r['prompt']!r}")
            c = c[: max_length - len(p)]
            ids.append(p + c)
            resp.append([0] * len(p) + [1] * len(c))
        n = max(len(x) for x in ids)
        pad = tokenizer.pad_token_id
        out[f"{side}_input_ids"] = torch.tensor([x + [pad] * (n - len(x)) for x in ids])
        out[f"{side}_attention_mask"] = torch.tensor([[1] * len(x) + [0] * (n - len(x)) for x in ids])
        out[f"{side}_response_mask"] = torch.tensor([x + [0] * (n - len(x)) for x in resp])
    return out


def response_logprobs(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      response_mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Summed log π(response | prompt) per row, from one forward pass (notebook 10).

    ``response_mask`` marks the tokens whose log-probability counts (token t is predicted by the
    logits at t-1), so each row may have its own prompt length, right- or left-padded (position
    ids follow the attention mask). The logits are divided by ``temperature``. Built on
    :func:`rlhf_tutorial.lm_rlhf.sequence_logprobs` (notebook 09) with the whole sequence as "response".
    """
    if input_ids.shape != attention_mask.shape or input_ids.shape != response_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)}, attention_mask {tuple(attention_mask.shape)} and "
                         f"response_mask {tuple(response_mask.shape)} must have the same shape")
    logp = sequence_logprobs(model, input_ids, attention_mask, 1, temperature)
    return (logp * response_mask[:, 1:].to(logp.dtype)).sum(-1)


def _pair_logprobs(model, batch, idx=None):
    """Chosen and rejected log-probs in one forward pass (the two halves concatenated, as TRL does)."""
    sel = (lambda t: t) if idx is None else (lambda t: t[idx])
    c_ids, r_ids = sel(batch["chosen_input_ids"]), sel(batch["rejected_input_ids"])
    n = max(c_ids.shape[1], r_ids.shape[1])

    def padr(t, v):
        return F.pad(t, (0, n - t.shape[1]), value=v)

    pad = int(batch.get("pad_token_id", 0))
    ids = torch.cat([padr(c_ids, pad), padr(r_ids, pad)])
    att = torch.cat([padr(sel(batch["chosen_attention_mask"]), 0), padr(sel(batch["rejected_attention_mask"]), 0)])
    resp = torch.cat([padr(sel(batch["chosen_response_mask"]), 0), padr(sel(batch["rejected_response_mask"]), 0)])
    lp = response_logprobs(model, ids, att, resp)
    return lp[: len(c_ids)], lp[len(c_ids):]


@dataclass
class DPOConfig:
    """Every knob of :func:`train_dpo`, named as in ``trl.DPOConfig`` (notebook 10)."""

    beta: float = 0.1  # β, the KL coefficient of the objective DPO solves: larger keeps π_φ closer to π_ref
    learning_rate: float = 5e-5  # AdamW step size (TRL default 1e-6 is for billion-parameter models)
    per_device_train_batch_size: int = 16  # pairs per gradient step
    num_train_epochs: int = 1  # passes over the pairs
    max_length: int = 64  # prompt + response tokens
    label_smoothing: float = 0.0  # conservative DPO ε
    max_grad_norm: float = 1.0  # gradient clipping
    seed: int = 0  # shuffling order
    fused_gelu: bool = True  # torch's fused tanh-GELU instead of GPT-2's gelu_new (text.fuse_gelu; same function,
    #   faster); in TRL: activation_function="gelu_pytorch_tanh" in the model config

    def __post_init__(self):
        if not isinstance(self.fused_gelu, bool):
            raise TypeError(f"fused_gelu must be True or False, got {self.fused_gelu!r}")
        _check_beta(self.beta)
        for k in ("per_device_train_batch_size", "num_train_epochs", "max_length"):
            V.integer(k, getattr(self, k), low=1)
        V.positive("learning_rate", self.learning_rate)
        V.positive("max_grad_norm", self.max_grad_norm)
        V.number("label_smoothing", self.label_smoothing, 0, 0.5, high_open=True)
        V.integer("seed", self.seed, low=0)


def train_dpo(policy: nn.Module, tokenizer, rows, config: DPOConfig | None = None, ref_model: nn.Module | None = None,
              progress: bool = True, callback: Callable[[dict], bool | None] | None = None,
              ) -> tuple[nn.Module, dict[str, list[float]]]:
    """Train ``policy`` in place with DPO on TRL-format preference rows; return ``(policy, history)`` (notebook 10).

    The reference is ``ref_model`` or a frozen copy of ``policy`` taken before training
    (:func:`~rlhf_tutorial.lm_rlhf.frozen_reference`); its log-probabilities are computed once up
    front (TRL's ``precompute_ref_log_probs``). Dropout is switched off. ``history`` is a dict of
    lists: ``loss`` and the :func:`dpo_metrics` per step, plus ``pairs_per_second`` (one value).
    ``callback(stats)`` (the trainers' contract, docs/DESIGN.md) runs after each step with ``step``,
    ``loss`` and the step's metrics; returning ``True`` stops training.
    """
    config = DPOConfig() if config is None else config
    if not isinstance(config, DPOConfig):
        raise TypeError(f"config must be a DPOConfig, got {type(config).__name__}")
    V.callable_("callback", callback, allow_none=True)
    device = next(policy.parameters()).device
    batch = {k: v.to(device) for k, v in tokenize_preferences(tokenizer, rows, max_length=config.max_length).items()}
    batch["pad_token_id"] = tokenizer.pad_token_id
    n = len(batch["chosen_input_ids"])
    ref = frozen_reference(policy, ref_model, config.fused_gelu, name="ref_model")
    if config.fused_gelu:
        fuse_gelu(policy)  # the same function, faster (text.fuse_gelu)
    bs = config.per_device_train_batch_size
    t0 = time.perf_counter()  # throughput includes the reference pass
    with torch.no_grad():
        ref_c, ref_r = [], []
        for i in range(0, n, bs):
            c, r = _pair_logprobs(ref, batch, torch.arange(i, min(i + bs, n), device=device))
            ref_c.append(c)
            ref_r.append(r)
        ref_c, ref_r = torch.cat(ref_c), torch.cat(ref_r)
    policy.eval()  # no dropout: the log-ratios must be exact
    opt = torch.optim.AdamW(policy.parameters(), lr=config.learning_rate)
    gen = torch.Generator().manual_seed(config.seed)
    hist: dict[str, list[float]] = {"loss": []}
    steps = config.num_train_epochs * math.ceil(n / bs)
    bar = progress_bar(total=steps, desc="DPO", disable=not progress)
    stop = False
    for _ in range(config.num_train_epochs):
        if stop:
            break
        perm = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, bs):
            idx = perm[i: i + bs]
            pc, pr = _pair_logprobs(policy, batch, idx)
            loss = dpo_loss(pc, pr, ref_c[idx], ref_r[idx], config.beta, config.label_smoothing)
            V.check_finite_loss(loss, len(hist["loss"]), "DPO loss")
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
            hist["loss"].append(loss.item())
            stats = {"loss": hist["loss"][-1], **dpo_metrics(pc.detach(), pr.detach(), ref_c[idx], ref_r[idx], config.beta)}
            for k, v in stats.items():
                if k != "loss":
                    hist.setdefault(k, []).append(v)
            bar.update(1)
            if callback is not None and callback({"step": len(hist["loss"]) - 1, **stats}):
                stop = True
                break
    bar.close()
    hist["pairs_per_second"] = [len(hist["loss"]) * bs / (time.perf_counter() - t0) if stop else
                                n * config.num_train_epochs / (time.perf_counter() - t0)]
    return policy, hist
