r"""Critic-free RL for the language model: GRPO and RLOO with group baselines (notebook 10).

Both sample a *group* of k completions for every prompt and use the other completions of the
same prompt as the baseline, so no value network is needed:

- **GRPO** (Shao et al., 2024, DeepSeekMath): A_i = (r_i − mean_j r_j) / (std_j r_j + ε), the same
  advantage on every token of completion i; clipped PPO surrogate per token, and a KL penalty
  β·k3 in the **loss** with k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1 ≥ 0.
- **RLOO** (Ahmadian et al., 2024, "Back to basics: REINFORCE ..."): the KL goes into the
  **reward**, R_i = r_i − β·Σ_t (log π − log π_ref), and the baseline of completion i is the mean
  of the *other* k − 1 rewards: A_i = R_i − (Σ_{j≠i} R_j)/(k−1) = k/(k−1)·(R_i − mean_j R_j).

Completions of the same prompt are contiguous (prompt p's k completions are rows p·k … p·k+k−1),
as in TRL's ``GRPOTrainer`` / ``RLOOTrainer`` (``num_generations`` = k). Diagnostics keep TRL's
names: ``objective/scores``, ``objective/kl``, ``objective/rlhf_reward``, ``objective/entropy``,
``policy/clipfrac_avg``, ``val/ratio``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from . import _validate as V
from .lm_rlhf import LMRollout, frozen_reference, rollout, sequence_logprobs
from .text import fuse_gelu
from .utils import progress_bar

__all__ = ["grpo_advantages", "rloo_advantages", "group_policy_loss", "sample_groups", "GroupRLConfig",
           "train_group_rl", "ESTIMATORS", "best_of_n", "best_of_n_indices", "best_of_n_kl"]

ESTIMATORS = ("grpo", "rloo")


def _grouped(rewards: torch.Tensor, group_size: int | None) -> torch.Tensor:
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}")
    if not torch.isfinite(rewards).all():
        raise ValueError("rewards contain NaN or inf")
    if rewards.dim() == 2:
        if group_size is not None and group_size != rewards.shape[1]:
            raise ValueError(f"group_size={group_size} but rewards has shape {tuple(rewards.shape)} "
                             "(expected [n_prompts, group_size])")
        g = rewards
    elif rewards.dim() == 1:
        if group_size is None:
            raise ValueError("1-D rewards need group_size (completions of one prompt are contiguous)")
        if rewards.numel() % group_size:
            raise ValueError(f"{rewards.numel()} rewards cannot be split into groups of {group_size}")
        g = rewards.view(-1, group_size)
    else:
        raise ValueError(f"rewards must be 1-D [n_prompts*k] or 2-D [n_prompts, k], got shape {tuple(rewards.shape)}")
    if g.numel() == 0:
        raise ValueError("rewards is empty")
    if g.shape[1] < 2:
        raise ValueError(f"a group baseline needs at least 2 completions per prompt, got group_size={g.shape[1]}")
    return g


def grpo_advantages(rewards: torch.Tensor, group_size: int | None = None, scale_rewards: bool = True,
                    eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-normalised advantages (r − group mean) / (group std + eps) (notebook 10).

    ``rewards`` is [n_prompts, k] or flat [n_prompts·k] with ``group_size=k``; the result has the
    same shape. The std is the unbiased one (as TRL); ``scale_rewards=False`` keeps only the mean
    baseline (Dr. GRPO, Liu et al. 2025).
    """
    g = _grouped(rewards, group_size).float()
    adv = g - g.mean(1, keepdim=True)
    if scale_rewards:
        adv = adv / (g.std(1, keepdim=True) + eps)
    return adv.view(rewards.shape)


def rloo_advantages(rewards: torch.Tensor, group_size: int | None = None) -> torch.Tensor:
    """RLOO's leave-one-out advantages r_i − mean of the other k−1 rewards of its group (notebook 10)."""
    g = _grouped(rewards, group_size).float()
    k = g.shape[1]
    baseline = (g.sum(1, keepdim=True) - g) / (k - 1)
    return (g - baseline).view(rewards.shape)


def group_policy_loss(new_logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor,
                      mask: torch.Tensor, clip_eps: float = 0.2, beta: float = 0.0,
                      ref_logps: torch.Tensor | None = None, loss_type: str = "grpo") -> tuple[torch.Tensor, dict]:
    r"""Clipped surrogate with one advantage per sequence, plus GRPO's k3 KL term (notebook 10).

    ``new_logps``, ``old_logps``, ``ref_logps`` and ``mask`` are per token [B, T]; ``advantages``
    is [B]. Per token: −min(ρ A, clip(ρ, 1−ε, 1+ε) A) + β·k3, with ρ = exp(new − old).
    ``loss_type="grpo"`` averages over each sequence's tokens, then over sequences (the paper);
    ``"dapo"`` averages over all tokens of the batch (long answers weigh more; TRL's default).
    Returns the loss and the diagnostics ``policy/clipfrac_avg``, ``val/ratio``, ``kl_k3``.
    """
    if new_logps.shape != old_logps.shape or new_logps.shape != mask.shape:
        raise ValueError(f"new_logps {tuple(new_logps.shape)}, old_logps {tuple(old_logps.shape)} and mask "
                         f"{tuple(mask.shape)} must have the same [B, T] shape")
    if advantages.shape != new_logps.shape[:1]:
        raise ValueError(f"advantages must be [B]={tuple(new_logps.shape[:1])} (one per sequence), got {tuple(advantages.shape)}")
    for name, x in (("new_logps", new_logps), ("old_logps", old_logps), ("advantages", advantages),
                    ("ref_logps", ref_logps)):
        V.check_finite(name, x)
    V.number("clip_eps", clip_eps)
    V.number("beta", beta)
    if not clip_eps > 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    if beta > 0 and ref_logps is None:
        raise ValueError("beta > 0 needs ref_logps (the frozen reference's per-token log-probs)")
    if loss_type not in ("grpo", "dapo"):
        raise ValueError(f"loss_type must be 'grpo' or 'dapo', got {loss_type!r}")
    mask = mask.to(new_logps.dtype)
    ratio = torch.exp(new_logps - old_logps)
    adv = advantages[:, None]
    per_token = -torch.min(ratio * adv, ratio.clamp(1 - clip_eps, 1 + clip_eps) * adv)
    kl = torch.zeros_like(per_token)
    if ref_logps is not None:
        d = ref_logps - new_logps
        kl = torch.exp(d) - d - 1
    if beta > 0:
        per_token = per_token + beta * kl
    if loss_type == "grpo":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    else:
        loss = (per_token * mask).sum() / mask.sum().clamp(min=1)
    n = mask.sum().clamp(min=1)
    with torch.no_grad():
        stats = {
            "policy/clipfrac_avg": (((ratio - 1).abs() > clip_eps).float() * mask).sum().item() / n.item(),
            "val/ratio": ((ratio * mask).sum() / n).item(),
            "kl_k3": ((kl * mask).sum() / n).item(),
        }
    return loss, stats


def sample_groups(model: nn.Module, tokenizer, prompts: list[str], group_size: int, max_new_tokens: int = 24,
                  temperature: float = 1.0, generator: torch.Generator | None = None,
                  seed: int | None = None) -> LMRollout:
    """Sample ``group_size`` completions per prompt with notebook 09's :func:`~rlhf_tutorial.lm_rlhf.rollout` (notebook 10).

    Prompt p's completions are the contiguous rows p·k … p·k+k−1 of the returned
    :class:`~rlhf_tutorial.lm_rlhf.LMRollout` (left-padded prompts, responses cut after EOS).
    """
    if isinstance(prompts, str) or not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError("prompts must be a non-empty list of strings")
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    return rollout(model, tokenizer, [p for p in prompts for _ in range(group_size)], max_new_tokens, temperature,
                   generator=generator, seed=seed)


def best_of_n_kl(n: int) -> float:
    r"""KL(π_BoN ‖ π) = log n − (n − 1)/n of best-of-n sampling from π, in nats (notebook 10).

    With u = F(r̂(y)) the reward quantile of a sample, the best of n has density n·u^{n−1}
    (the maximum of n uniforms), so :math:`\mathrm{KL} = \mathbb E[\log n + (n-1)\log u] = \log n - (n-1)/n`.
    Exact when no single response carries noticeable probability (no ties in r̂); otherwise an upper
    bound (Beirami et al., 2024). It does not depend on the reward or the policy.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (samples per prompt), got {n!r}")
    return math.log(n) - (n - 1) / n


def best_of_n_indices(scores: torch.Tensor, n: int) -> torch.Tensor:
    """Column of the highest score among the first ``n`` of each row of ``scores`` [n_prompts, k] (notebook 10).

    Ties go to the first column; ``n`` ≤ k lets one set of k samples give best-of-1, 2, …, k.
    """
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2:
        raise ValueError(f"scores must be a 2-D tensor [n_prompts, k], got {getattr(scores, 'shape', type(scores))}")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= scores.shape[1]:
        raise ValueError(f"n must be an int in [1, {scores.shape[1]}] (the samples per prompt), got {n!r}")
    if not torch.isfinite(scores).all():
        raise ValueError("scores contain NaN or inf")
    return scores[:, :n].argmax(1)


@torch.no_grad()
def best_of_n(policy: nn.Module, tokenizer, prompts: list[str], reward_fn: Callable, n: int,
              max_new_tokens: int = 24, temperature: float = 1.0, generator: torch.Generator | None = None,
              seed: int | None = None) -> tuple[list[str], torch.Tensor, LMRollout]:
    """Best-of-n: sample ``n`` completions per prompt from ``policy`` and keep the one ``reward_fn`` scores highest (notebook 10).

    No training: the baseline every RLHF method must beat, at a KL of :func:`best_of_n_kl` (n)
    to ``policy``, for n times the sampling cost. Returns ``(completions, scores, rollout)``: the
    kept completion per prompt, the scores ``[n_prompts, n]`` of all samples (so
    :func:`best_of_n_indices` gives best-of-m for any m ≤ n from the same samples), and the
    :class:`~rlhf_tutorial.lm_rlhf.LMRollout` of all ``n·len(prompts)`` samples (prompt p's are
    rows p·n … p·n+n−1).
    """
    V.callable_("reward_fn", reward_fn)
    ro = sample_groups(policy, tokenizer, prompts, n, max_new_tokens, temperature, generator=generator, seed=seed)
    scores = _score(reward_fn, ro.prompts, ro.completions).view(len(prompts), n)
    rows = torch.arange(len(prompts)) * n + best_of_n_indices(scores, n)
    return [ro.completions[i] for i in rows.tolist()], scores, ro


@dataclass
class GroupRLConfig:
    """Every knob of :func:`train_group_rl`, named after ``trl.GRPOConfig`` / ``trl.RLOOConfig`` (notebook 10)."""

    estimator: str = "rloo"  # "rloo" (KL in the reward, leave-one-out baseline) or "grpo" (group z-score, KL in the loss)
    num_generations: int = 4  # k completions per prompt (the group)
    prompts_per_step: int = 16  # prompts per iteration: batch = prompts_per_step * k
    max_steps: int = 40  # iterations (each: sample, score, num_iterations epochs of updates)
    max_seconds: float | None = None  # stop early after this wall time (equal-time comparisons)
    max_completion_length: int = 24  # new tokens per completion
    temperature: float = 1.0  # sampling temperature (log-probs use the same one)
    learning_rate: float = 3e-5  # Adam step size
    beta: float = 0.05  # KL coefficient (to π_ref)
    num_iterations: int = 1  # epochs over each batch (μ in the GRPO paper); 1 = fully on-policy
    num_minibatches: int = 1  # minibatches per epoch
    epsilon: float = 0.2  # ratio clipping
    scale_rewards: bool = True  # GRPO: divide by the group std
    loss_type: str = "grpo"  # "grpo" (per-sequence mean) or "dapo" (per-token mean)
    missing_eos_penalty: float | None = None  # subtract this from the score of completions with no EOS
    max_grad_norm: float = 1.0  # gradient clipping
    seed: int = 0  # prompt order and sampling
    fused_gelu: bool = True  # torch's fused tanh-GELU instead of GPT-2's gelu_new (text.fuse_gelu; same function,
    #   faster); in TRL: activation_function="gelu_pytorch_tanh" in the model config

    def __post_init__(self):
        if not isinstance(self.fused_gelu, bool):
            raise TypeError(f"fused_gelu must be True or False, got {self.fused_gelu!r}")
        if self.estimator not in ESTIMATORS:
            raise ValueError(f"estimator must be one of {ESTIMATORS}, got {self.estimator!r}")
        V.integer("num_generations", self.num_generations)
        if self.num_generations < 2:
            raise ValueError(f"num_generations must be >= 2 for a group baseline, got {self.num_generations}")
        V.number("beta", self.beta, 0)
        for k in ("num_generations", "prompts_per_step", "max_steps", "max_completion_length", "num_iterations",
                  "num_minibatches"):
            V.integer(k, getattr(self, k), low=1)
        for k in ("temperature", "learning_rate", "epsilon", "max_grad_norm"):
            V.positive(k, getattr(self, k))
        V.one_of("loss_type", self.loss_type, ("grpo", "dapo"))
        V.boolean("scale_rewards", self.scale_rewards)
        V.integer("seed", self.seed, low=0)
        if self.max_seconds is not None:
            V.positive("max_seconds", self.max_seconds)
        if self.missing_eos_penalty is not None:
            V.number("missing_eos_penalty", self.missing_eos_penalty, 0)
        if (self.prompts_per_step * self.num_generations) % self.num_minibatches:
            raise ValueError("prompts_per_step * num_generations must be divisible by num_minibatches")


def _score(reward_fn, prompts, completions) -> torch.Tensor:
    s = reward_fn(prompts, completions)
    s = torch.as_tensor(s, dtype=torch.float32).detach().cpu()
    if s.shape != (len(completions),):
        raise ValueError(f"reward_fn must return one score per completion, shape ({len(completions)},), got {tuple(s.shape)}")
    if not torch.isfinite(s).all():
        raise ValueError("reward_fn returned NaN or inf")
    return s


def _group_score_step(policy, ref, reward_fn, ro: LMRollout, config: GroupRLConfig, device) -> dict:
    """Score the groups, old and reference log-probs, the KL per sequence and the advantages."""
    ids, att, P, mask = ro.input_ids, ro.attention_mask, ro.query_ids.shape[1], ro.response_mask.float()
    T, k = config.temperature, config.num_generations
    scores = _score(reward_fn, ro.prompts, ro.completions).to(device)
    if config.missing_eos_penalty is not None:
        scores = scores - config.missing_eos_penalty * (~ro.has_eos).float()
    with torch.no_grad():
        old = sequence_logprobs(policy, ids, att, P, T) * mask
        refl = sequence_logprobs(ref, ids, att, P, T) * mask
    kl_seq = ((old - refl) * mask).sum(1)
    rlhf_reward = scores - config.beta * kl_seq
    if config.estimator == "rloo":  # KL in the reward, leave-one-out baseline
        adv, beta_loss = rloo_advantages(rlhf_reward, k), 0.0
    else:  # GRPO: group z-score of the scores, KL (k3) in the loss
        adv, beta_loss = grpo_advantages(scores, k, scale_rewards=config.scale_rewards), config.beta
    return dict(ids=ids, att=att, P=P, mask=mask, scores=scores, old=old, refl=refl, kl_seq=kl_seq,
                rlhf_reward=rlhf_reward, adv=adv, beta_loss=beta_loss)


def _group_update_step(policy, opt, b: dict, config: GroupRLConfig, gen, step: int, device) -> dict[str, list[float]]:
    """``num_iterations`` epochs × ``num_minibatches`` clipped updates; the per-minibatch stats."""
    B = len(b["ids"])
    mb = B // config.num_minibatches
    stats_acc: dict[str, list[float]] = {}
    for _ in range(config.num_iterations):
        perm = torch.randperm(B, generator=gen).to(device)
        for i in range(0, B, mb):
            idx = perm[i: i + mb]
            new = sequence_logprobs(policy, b["ids"][idx], b["att"][idx], b["P"], config.temperature) * b["mask"][idx]
            loss, st = group_policy_loss(new, b["old"][idx], b["adv"][idx], b["mask"][idx], config.epsilon,
                                         b["beta_loss"], b["refl"][idx] if b["beta_loss"] > 0 else None,
                                         config.loss_type)
            V.check_finite_loss(loss, step, f"{config.estimator.upper()} loss")
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            opt.step()
            st["loss/policy_avg"] = loss.item()
            for key, v in st.items():
                stats_acc.setdefault(key, []).append(v)
    return stats_acc


def _group_stats(b: dict, ro: LMRollout, stats_acc: dict, eval_fn, step: int, seconds: float) -> dict:
    row = {
        "objective/scores": b["scores"].mean().item(),
        "objective/kl": b["kl_seq"].mean().item(),
        "objective/rlhf_reward": b["rlhf_reward"].mean().item(),
        "objective/entropy": (-(b["old"] * b["mask"]).sum(1)).mean().item(),
        "val/eos_frac": ro.has_eos.float().mean().item(),
        "val/ratio_first": stats_acc["val/ratio"][0],
        **{key: sum(v) / len(v) for key, v in stats_acc.items()},
    }
    if eval_fn is not None:
        row["objective/gold"] = _score(eval_fn, ro.prompts, ro.completions).mean().item()
    row["time"] = seconds
    row["step"] = step
    return row


def train_group_rl(policy: nn.Module, tokenizer, prompts: list[str], reward_fn: Callable, config: GroupRLConfig | None = None,
                   ref_model: nn.Module | None = None, eval_fn: Callable | None = None,
                   progress: bool = True, callback: Callable[[dict], bool | None] | None = None,
                   ) -> tuple[nn.Module, dict[str, list[float]]]:
    """Train ``policy`` in place with GRPO or RLOO on ``reward_fn(prompts, completions) -> [n]``; return ``(policy, history)`` (notebook 10).

    Each iteration: sample n = ``num_generations`` completions for each of ``prompts_per_step``
    prompts (:func:`sample_groups`), score them and compute the group advantages
    (:func:`_group_score_step`), then the clipped updates (:func:`_group_update_step`). The
    reference is ``ref_model`` or a frozen copy of ``policy``
    (:func:`~rlhf_tutorial.lm_rlhf.frozen_reference`). ``eval_fn`` (same signature, e.g. the gold
    human) is only *logged* on every batch as ``objective/gold``, never optimized. ``history`` is a
    dict of lists, one entry per iteration, with TRL's metric names plus ``time`` (seconds since
    start) and ``step``. ``callback(stats)`` (the trainers' contract, docs/DESIGN.md) runs after
    each iteration with that iteration's row plus ``rollout``; returning ``True`` stops training.
    """
    config = GroupRLConfig() if config is None else config
    if not isinstance(config, GroupRLConfig):
        raise TypeError(f"config must be a GroupRLConfig, got {type(config).__name__}")
    if isinstance(prompts, str) or len(prompts) < config.prompts_per_step:
        raise ValueError(f"need a list of at least prompts_per_step={config.prompts_per_step} prompts")
    V.callable_("reward_fn", reward_fn)
    V.callable_("callback", callback, allow_none=True)
    ref = frozen_reference(policy, ref_model, config.fused_gelu, name="ref_model")
    if config.fused_gelu:
        fuse_gelu(policy)  # the same function, faster (text.fuse_gelu)
    policy.eval()  # no dropout: ratios must be exactly 1 before the first update
    opt = torch.optim.Adam(policy.parameters(), lr=config.learning_rate)
    device = next(policy.parameters()).device
    gen = torch.Generator().manual_seed(config.seed)  # prompt order and minibatches (CPU)
    sgen = torch.Generator(device=device).manual_seed(config.seed)  # sampling, on the policy's device
    order, pos = torch.randperm(len(prompts), generator=gen).tolist(), 0
    hist: dict[str, list[float]] = {}
    t0 = time.perf_counter()
    for step in progress_bar(range(config.max_steps), desc=config.estimator.upper(), disable=not progress):
        if config.max_seconds is not None and time.perf_counter() - t0 > config.max_seconds:
            break
        if pos + config.prompts_per_step > len(order):
            order, pos = torch.randperm(len(prompts), generator=gen).tolist(), 0
        batch_prompts = [prompts[i] for i in order[pos: pos + config.prompts_per_step]]
        pos += config.prompts_per_step
        ro = sample_groups(policy, tokenizer, batch_prompts, config.num_generations, config.max_completion_length,
                           config.temperature, generator=sgen)
        b = _group_score_step(policy, ref, reward_fn, ro, config, device)
        stats_acc = _group_update_step(policy, opt, b, config, gen, step, device)
        row = _group_stats(b, ro, stats_acc, eval_fn, step, time.perf_counter() - t0)
        for key, v in row.items():
            hist.setdefault(key, []).append(v)
        if callback is not None and callback({**row, "rollout": ro}):
            break
    return policy, hist
