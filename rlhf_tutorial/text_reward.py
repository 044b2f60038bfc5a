r"""A reward model for text: Bradley–Terry on a GPT-2 backbone (notebook 08; used by notebooks 09-10).

- **Data.** :func:`make_preference_dataset` samples two completions per prompt from the SFT
  policy and lets the synthetic human (:class:`rlhf_tutorial.text.GoldLabeler`, ε = 10 % random
  answers) pick one. Rows are in TRL's format ``{"prompt", "chosen", "rejected"}``;
  :func:`save_jsonl` / :func:`load_preference_dataset` write and read them as JSON lines that
  ``datasets.load_dataset("json", ...)`` and TRL's ``RewardTrainer`` / ``DPOTrainer`` accept.
- **Model.** :func:`build_reward_model` makes a ``GPT2ForSequenceClassification`` with one
  output from the SFT model (same transformer weights, a new linear head ``score``).
  :func:`reward_forward` reads the score at the **last real token** of each sequence (the EOS
  that :func:`encode` appends), never at padding, for left- or right-padded batches: the index
  comes from the attention mask (:func:`last_token_index`) and position ids follow the mask.
- **Loss.** :func:`bradley_terry_loss` ``= −log σ((r̂(chosen) − r̂(rejected)) / T_BT)`` (the seed's
  L_compare), optionally mixed with L_score on ratings z ∈ [0, 1]: the fixed link
  (:func:`score_loss`, ``(σ(r̂) − z)²``) or a learned one (:func:`rating_link`, :func:`rating_nll`,
  :class:`RatingLink`: ``ẑ = σ(a·r̂ + b)``, a > 0, Gaussian likelihood with a learned noise).
  :func:`train_reward_model` takes a :class:`RewardTrainConfig` and returns ``(model, history)``.
- **Normalization.** :func:`normalize_reward_model` stores the mean and std of the raw scores of
  SFT samples in ``model.config`` (``reward_mean``, ``reward_std``); :func:`reward_scores`
  returns ``(raw − mean) / std``, so SFT samples score mean 0, std 1 and PPO's KL coefficient
  keeps its meaning.
- **Cache.** :func:`load_or_train_reward_model` and :func:`load_or_make_preferences` build all of
  this once and cache it next to the SFT model (``$RLHF_TUTORIAL_CACHE``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as V
from . import text as T
from .cache import build_lock, verify_checkpoint
from .text import position_ids_from_mask
from .utils import progress_bar

__all__ = [
    "RewardConfig", "RewardTrainConfig", "build_reward_model", "encode", "last_token_index", "position_ids_from_mask",
    "reward_forward", "bradley_terry_loss", "score_loss", "rating_link", "rating_nll", "RatingLink",
    "check_ratings", "make_preference_dataset", "check_preference_rows",
    "save_jsonl", "load_preference_dataset", "train_reward_model", "normalize_reward_model",
    "reward_scores", "pairwise_accuracy", "load_or_make_preferences", "load_or_train_reward_model",
    "reward_model_path",
]


@dataclass(frozen=True)
class RewardConfig:
    """Settings of the cached preference data and reward model (notebook 08); hashed into the cache name."""
    text: T.TextConfig = field(default_factory=T.TextConfig)
    n_train_pairs: int = 2_000
    n_test_pairs: int = 500
    n_norm_samples: int = 1_000
    max_new_tokens: int = 32
    temperature: float = 1.0
    epsilon: float = 0.1
    beta: float = 0.1
    epochs: int = 2
    batch_size: int = 32
    lr: float = 3e-4
    seed: int = 0
    version: int = 2  # 2: training runs with the fused GELU (text.fuse_gelu)

    def __post_init__(self):
        V.instance("text", self.text, T.TextConfig, "TextConfig")
        for name in ("n_train_pairs", "n_test_pairs", "n_norm_samples", "max_new_tokens", "epochs", "batch_size",
                     "version"):
            V.integer(name, getattr(self, name), low=1)
        V.integer("seed", self.seed, low=0)
        for name in ("temperature", "beta", "lr"):
            V.positive(name, getattr(self, name))
        V.probability("epsilon", self.epsilon)

    def train_config(self) -> "RewardTrainConfig":
        """The :class:`RewardTrainConfig` of the cached comparisons-only model (epochs, batch, lr, seed)."""
        return RewardTrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, seed=self.seed)


# ---------------------------------------------------------------------------------------------
# Model and scoring
# ---------------------------------------------------------------------------------------------
def build_reward_model(sft_model, tokenizer, seed: int = 0):
    """``GPT2ForSequenceClassification`` (num_labels=1) with the SFT model's transformer weights (notebook 08)."""
    from transformers import GPT2ForSequenceClassification

    V.tokenizer("tokenizer", tokenizer)
    if not hasattr(sft_model, "transformer"):
        raise TypeError(f"sft_model must be a GPT-2 style model with a .transformer, got {type(sft_model).__name__}")
    cfg = sft_model.config.__class__.from_dict(sft_model.config.to_dict())
    cfg.num_labels = 1
    cfg.pad_token_id = tokenizer.pad_token_id
    cfg.problem_type = "regression"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        rm = GPT2ForSequenceClassification(cfg)
        torch.nn.init.normal_(rm.score.weight, std=1.0 / (cfg.n_embd + 1) ** 0.5)
    rm.transformer.load_state_dict(sft_model.transformer.state_dict())
    rm.config.reward_mean, rm.config.reward_std = 0.0, 1.0
    rm.eval()
    return rm


def encode(tokenizer, prompts: Sequence[str], completions: Sequence[str], max_length: int = 64,
           padding_side: str = "right") -> dict:
    """Token ids of ``prompt + completion + EOS`` for each pair, padded with the pad token (notebook 08).

    Returns ``input_ids`` and ``attention_mask`` (1 on real tokens). A sequence longer than
    ``max_length`` raises ``ValueError`` (nothing is silently cut).
    """
    prompts = V.text_list("prompts", prompts, allow_empty_items=False)
    completions = V.text_list("completions", completions)
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length, got {len(prompts)} and {len(completions)}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    V.tokenizer("tokenizer", tokenizer)
    ids = tokenizer([p + c for p, c in zip(prompts, completions)], add_special_tokens=False)["input_ids"]
    rows = []
    for i, r in enumerate(ids):
        r = r + [tokenizer.eos_token_id]
        if len(r) > max_length:
            raise ValueError(f"pair {i} has {len(r)} tokens with EOS, more than max_length={max_length} "
                             "(the model's context); shorten the prompt or the completion")
        rows.append(r)
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids, mask = [], []
    for r in rows:
        fill = [pad] * (width - len(r))
        input_ids.append(r + fill if padding_side == "right" else fill + r)
        mask.append([1] * len(r) + [0] * len(fill) if padding_side == "right" else [0] * len(fill) + [1] * len(r))
    return {"input_ids": torch.tensor(input_ids), "attention_mask": torch.tensor(mask)}


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of the last real token (the last 1 of the mask) in each row, for left or right padding (notebook 08)."""
    if not isinstance(attention_mask, torch.Tensor) or attention_mask.dim() != 2:
        raise TypeError("attention_mask must be a 2-D tensor [batch, seq_len]")
    m = attention_mask.long()
    if (m.sum(-1) == 0).any():
        raise ValueError("a row of attention_mask has no real token")
    positions = torch.arange(m.shape[1], device=m.device)
    return (positions * m).argmax(-1)


def reward_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Raw scores ``[batch]``: the head ``score`` applied to the hidden state of the last real token (notebook 08)."""
    if input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ in shape")
    hidden = model.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from_mask(attention_mask)).last_hidden_state
    idx = last_token_index(attention_mask)
    last = hidden[torch.arange(len(idx), device=hidden.device), idx]
    return model.score(last).squeeze(-1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, labels: torch.Tensor | None = None,
                       temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
    r"""L_compare = mean of −log σ((r̂(chosen) − r̂(rejected)) / τ) (notebook 08; the seed's §3.2.2 (2)).

    With ``labels`` y (1: first preferred, 0: second, 0.5: equal) it is the cross-entropy
    −y log σ(Δ/τ) − (1−y) log σ(−Δ/τ); TRL's ``RewardTrainer`` uses the first form with τ = 1.
    The Bradley–Terry temperature τ > 0 sets the reward's unit: a comparisons-only model keeps
    τ = 1 (its scale is not identified otherwise); in a mix it says how sharp the comparisons are
    on the reward's scale.
    """
    if not isinstance(r_chosen, torch.Tensor) or not isinstance(r_rejected, torch.Tensor):
        raise TypeError("r_chosen and r_rejected must be torch tensors")
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} differ in shape")
    V.check_finite("r_chosen", r_chosen)
    V.check_finite("r_rejected", r_rejected)
    delta = (r_chosen - r_rejected) / _positive_param("temperature", temperature)
    if labels is None:
        return -F.logsigmoid(delta).mean()
    labels = labels.to(delta.dtype)
    if labels.shape != delta.shape:
        raise ValueError(f"labels {tuple(labels.shape)} must have the shape of r_chosen {tuple(delta.shape)}")
    if not bool(((labels >= 0) & (labels <= 1)).all()):
        raise ValueError("labels must be in [0, 1] (1: first preferred, 0: second, 0.5: equal)")
    return F.binary_cross_entropy_with_logits(delta, labels)


def score_loss(r: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """L_score for text = mean (σ(r̂) − y)², ratings y ∈ [0, 1] (notebook 08; notebook 05's L_score with σ to map r̂ to [0, 1]).

    The *fixed* link: it pins r̂ to the rater's scale. :func:`rating_nll` learns the link instead.
    """
    V.instance("r", r, torch.Tensor, "torch tensor")
    ratings = _check_rating_tensor(ratings)
    if r.shape != ratings.shape:
        raise ValueError(f"r {tuple(r.shape)} and ratings {tuple(ratings.shape)} differ in shape")
    V.check_finite("r", r)
    return ((torch.sigmoid(r) - ratings.to(r.dtype)) ** 2).mean()


def _check_rating_tensor(ratings) -> torch.Tensor:
    """Ratings y as a finite float tensor with every value in [0, 1] (the rater's scale)."""
    y = V.finite_tensor("ratings", ratings, dtype=None)
    if y.numel() and not bool(((y >= 0) & (y <= 1)).all()):
        raise ValueError(f"ratings must be in [0, 1] (the rater's scale), got values from {float(y.min())} to {float(y.max())}")
    return y


def _positive_param(name: str, value):
    """A float or a tensor of values > 0 and finite (a link scale, a temperature, a noise level)."""
    if isinstance(value, torch.Tensor):
        if not bool(torch.isfinite(value).all()) or not bool((value > 0).all()):
            raise ValueError(f"{name} must be finite and > 0, got {value.detach().flatten()[:4].tolist()}")
        return value
    return V.positive(name, value)


def rating_link(r: torch.Tensor, scale: float | torch.Tensor = 1.0, offset: float | torch.Tensor = 0.0) -> torch.Tensor:
    r"""The rater's scale from the reward's: ŷ = σ(a · r̂ + b) with a > 0 (notebook 08).

    Ratings y ∈ [0, 1] are on the rater's scale, not the reward's: only their order and a
    monotone relation to r̂ are identified. ``scale`` a > 0 keeps the order; a = 1, b = 0 is the
    fixed link of :func:`score_loss`.
    """
    if not isinstance(r, torch.Tensor):
        raise TypeError(f"r must be a torch tensor, got {type(r).__name__}")
    a = _positive_param("scale", scale)
    if not isinstance(offset, torch.Tensor):
        offset = V.number("offset", offset)
    return torch.sigmoid(a * r + offset)


def rating_nll(r: torch.Tensor, ratings: torch.Tensor, scale: float | torch.Tensor = 1.0,
               offset: float | torch.Tensor = 0.0, noise: float | torch.Tensor = 0.1) -> torch.Tensor:
    r"""L_score as a likelihood: mean of (y − σ(a r̂ + b))² / (2 s²) + log s (notebook 08).

    The negative log-likelihood (up to ½ log 2π) of ratings y ~ N(σ(a · r̂ + b), s²): a rater
    whose scale is linked to the reward by a, b and who rates with noise s. With a, b, s learned
    with θ, the ratings weigh as much as their noise says (1 / 2s², the homoscedastic weighting of
    Kendall et al. 2018) and no longer pin r̂ to the rater's scale. With a = 1, b = 0 and s fixed it
    is :func:`score_loss` / (2 s²) + log s.
    """
    y_hat = rating_link(r, scale, offset)
    ratings = _check_rating_tensor(ratings)
    if y_hat.shape != ratings.shape:
        raise ValueError(f"r {tuple(r.shape)} and ratings {tuple(ratings.shape)} differ in shape")
    s = _positive_param("noise", noise)
    log_s = torch.log(s) if isinstance(s, torch.Tensor) else math.log(s)
    return ((ratings.to(y_hat.dtype) - y_hat) ** 2).mean() / (2 * s ** 2) + log_s


class RatingLink(nn.Module):
    """The learned link of one kind of rating: a = softplus(ρ) > 0, offset b, noise s = exp(log s) (notebook 08).

    ``link(r)`` is :func:`rating_link` and ``link.loss(r, y)`` is :func:`rating_nll` with the
    current parameters; :func:`train_reward_model` learns them with the reward model.
    """

    def __init__(self, scale: float = 1.0, offset: float = 0.0, noise: float = 0.1):
        super().__init__()
        scale, noise, offset = V.positive("scale", scale), V.positive("noise", noise), V.number("offset", offset)
        self.rho = nn.Parameter(torch.tensor(scale + math.log(-math.expm1(-scale))))  # softplus⁻¹(scale)
        self.offset = nn.Parameter(torch.tensor(offset))
        self.log_noise = nn.Parameter(torch.tensor(math.log(noise)))

    @property
    def scale(self) -> torch.Tensor:
        return F.softplus(self.rho)

    @property
    def noise(self) -> torch.Tensor:
        return self.log_noise.exp()

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        return rating_link(r, self.scale, self.offset)

    def loss(self, r: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
        return rating_nll(r, ratings, self.scale, self.offset, self.noise)

    def extra_repr(self) -> str:
        return f"scale={self.scale.item():.3f}, offset={self.offset.item():.3f}, noise={self.noise.item():.3f}"


def check_ratings(ratings) -> list[tuple[str, str, float]]:
    """Validate ratings: a non-empty list of ``(prompt, completion, y)`` with str texts and y ∈ [0, 1] (notebook 08)."""
    if isinstance(ratings, (str, bytes)) or not hasattr(ratings, "__iter__"):
        raise TypeError(f"ratings must be a list of (prompt, completion, y) tuples, got {type(ratings).__name__}")
    out = []
    for i, item in enumerate(ratings):
        if not isinstance(item, (tuple, list)) or len(item) != 3:
            raise TypeError(f"ratings[{i}] must be a (prompt, completion, y) tuple, got {item!r}"[:200])
        p, c, y = item
        if not isinstance(p, str) or not isinstance(c, str):
            raise TypeError(f"ratings[{i}]: prompt and completion must be str, got {type(p).__name__}, {type(c).__name__}")
        out.append((p, c, V.number(f"ratings[{i}] y", y, 0.0, 1.0)))
    if not out:
        raise ValueError("ratings is empty; pass None to train on comparisons only")
    return out


# ---------------------------------------------------------------------------------------------
# Preference data
# ---------------------------------------------------------------------------------------------
def make_preference_dataset(model, tokenizer, n_pairs: int, split: str = "train", labeler=None, seed: int = 0,
                            max_new_tokens: int = 32, temperature: float = 1.0) -> list[dict]:
    """Preference rows ``{"prompt", "chosen", "rejected"}`` (TRL's format) from the SFT policy (notebook 08).

    For each of ``n_pairs`` prompts of ``split``, two completions are sampled and the ``labeler``
    (default ``GoldLabeler(epsilon=0.1, seed=seed)``) picks one; its pick is ``chosen`` (so with
    ε = 10 % some rows are "wrong" on purpose: label noise).
    """
    n_pairs = V.integer("n_pairs", n_pairs, low=1)
    labeler = labeler or T.GoldLabeler(epsilon=0.1, seed=seed)
    prompts = T.make_prompts(n_pairs, split=split, seed=seed)
    a = T.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    b = T.generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed + 1)
    y = labeler.compare(prompts, a, b)
    return [{"prompt": p, "chosen": x if yi > 0.5 else z, "rejected": z if yi > 0.5 else x}
            for p, x, z, yi in zip(prompts, a, b, y.tolist())]


def check_preference_rows(rows) -> list[dict]:
    """Validate rows: a non-empty list of dicts with str ``prompt``, ``chosen``, ``rejected`` (notebook 08)."""
    if isinstance(rows, (str, bytes)) or not hasattr(rows, "__iter__"):
        raise TypeError(f"rows must be a list of dicts, got {type(rows).__name__}")
    rows = [dict(r) if not isinstance(r, dict) else r for r in rows]
    if not rows:
        raise ValueError("no preference rows; expected at least one {'prompt', 'chosen', 'rejected'} row")
    for i, r in enumerate(rows):
        for key in ("prompt", "chosen", "rejected"):
            if key not in r:
                raise ValueError(f"preference row {i} has no {key!r} field; expected keys 'prompt', 'chosen', 'rejected' "
                                 f"(got {sorted(r)})")
            if not isinstance(r[key], str):
                raise TypeError(f"preference row {i}: {key!r} must be a str, got {type(r[key]).__name__}")
    return rows


def save_jsonl(rows, path) -> Path:
    """Write rows as JSON lines, atomically (temp file + rename), notebook 08."""
    rows = check_preference_rows(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps({k: r[k] for k in ("prompt", "chosen", "rejected")}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def load_preference_dataset(path):
    """A ``datasets.Dataset`` from a JSONL file of preference rows, validated (notebook 08)."""
    import datasets

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"preference file {path.name!r} does not exist")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path.name} line {n} is not valid JSON: {e}") from e
    check_preference_rows(rows)
    return datasets.Dataset.from_list(rows)


# ---------------------------------------------------------------------------------------------
# Training and evaluation
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardTrainConfig:
    """Settings of :func:`train_reward_model` (notebook 08), validated on construction.

    ``batch_size`` counts *labels* per optimizer step: with ratings, every step takes pairs and
    ratings in proportion so that both pass once per epoch, and a mix with as many labels as a
    comparisons-only run takes the same number of steps.
    """
    epochs: int = 2                       # passes over the labels
    batch_size: int = 32                  # labels (pairs + ratings) per optimizer step
    lr: float = 3e-4                      # AdamW learning rate of the reward model, linear decay to 0
    seed: int = 0                         # shuffling
    max_grad_norm: float = 1.0            # gradient clipping of the reward model
    lambdas: tuple[float, float] = (1.0, 1.0)  # (λ1, λ2): weights of L_score and L_compare
    rating_link: str = "learned"          # "learned": rating_nll with a RatingLink; "fixed": score_loss
    link_lr: float = 1e-2                 # learning rate of the link's a, b, s (three scalars move faster)
    link_noise: float = 0.1               # initial rating noise s of the learned link
    fused_gelu: bool = True               # swap GPT-2's gelu_new for the fused tanh-GELU (text.fuse_gelu)

    def __post_init__(self):
        V.integer("epochs", self.epochs, low=1)
        V.integer("batch_size", self.batch_size, low=1)
        V.positive("lr", self.lr)
        V.seed("seed", self.seed)
        V.positive("max_grad_norm", self.max_grad_norm)
        if not isinstance(self.lambdas, (tuple, list)) or len(self.lambdas) != 2:
            raise TypeError(f"lambdas must be a pair (λ1, λ2), got {self.lambdas!r}")
        for i, lam in enumerate(self.lambdas):
            V.number(f"lambdas[{i}]", lam, low=0.0)
        V.one_of("rating_link", self.rating_link, ("learned", "fixed"))
        V.positive("link_lr", self.link_lr)
        V.positive("link_noise", self.link_noise)
        V.boolean("fused_gelu", self.fused_gelu)


def _batch_plan(n_pairs: int, n_ratings: int, batch_size: int) -> tuple[int, int, int]:
    """(steps per epoch, pairs per step, ratings per step): both kinds pass once per epoch."""
    steps = max(1, math.ceil((n_pairs + n_ratings) / batch_size))
    per_pair = math.ceil(n_pairs / steps) if n_pairs else 0
    per_rating = math.ceil(n_ratings / steps) if n_ratings else 0
    steps = max(math.ceil(n_pairs / per_pair) if per_pair else 0, math.ceil(n_ratings / per_rating) if per_rating else 0)
    return steps, per_pair, per_rating


def _epoch_batches(n_pairs: int, n_ratings: int, batch_size: int, generator: torch.Generator):
    """One epoch: a list of (pair indices, rating indices) per step, from one permutation of each."""
    steps, per_pair, per_rating = _batch_plan(n_pairs, n_ratings, batch_size)
    pairs = torch.randperm(n_pairs, generator=generator).tolist() if n_pairs else []
    rates = torch.randperm(n_ratings, generator=generator).tolist() if n_ratings else []
    return [(pairs[k * per_pair:(k + 1) * per_pair], rates[k * per_rating:(k + 1) * per_rating]) for k in range(steps)]


def _compare_step(model, tokenizer, rows, idx) -> tuple[torch.Tensor, dict]:
    """L_compare on the pairs ``idx``: chosen and rejected sides in one forward pass."""
    batch = [rows[i] for i in idx]
    prompts = [r["prompt"] for r in batch]
    enc = encode(tokenizer, prompts + prompts, [r["chosen"] for r in batch] + [r["rejected"] for r in batch],
                 max_length=model.config.n_positions)
    r = reward_forward(model, enc["input_ids"], enc["attention_mask"])
    loss = bradley_terry_loss(r[: len(batch)], r[len(batch):])
    return loss, {"compare_loss": loss.item(), "compare_accuracy": float((r[: len(batch)] > r[len(batch):]).float().mean())}


def _rating_step(model, tokenizer, ratings, idx, link: RatingLink | None) -> tuple[torch.Tensor, dict]:
    """L_score on the ratings ``idx``: the learned link's likelihood, or the fixed link's squared error."""
    enc = encode(tokenizer, [ratings[i][0] for i in idx], [ratings[i][1] for i in idx], max_length=model.config.n_positions)
    r = reward_forward(model, enc["input_ids"], enc["attention_mask"])
    y = torch.tensor([ratings[i][2] for i in idx], dtype=r.dtype)
    loss = link.loss(r, y) if link is not None else score_loss(r, y)
    stats = {"score_loss": loss.item()}
    if link is not None:
        stats.update(rating_scale=link.scale.item(), rating_offset=link.offset.item(), rating_noise=link.noise.item())
    return loss, stats


def _make_optimizer(model, link: RatingLink | None, config: RewardTrainConfig, total_steps: int):
    """AdamW (no weight decay) on the model, and on the link's three scalars at ``link_lr``; linear decay to 0."""
    if link is None:
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
    else:
        opt = torch.optim.AdamW([{"params": list(model.parameters())},
                                 {"params": list(link.parameters()), "lr": config.link_lr}], lr=config.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total_steps)
    return opt, sched


def train_reward_model(model, tokenizer, rows, ratings=None, config: RewardTrainConfig | None = None,
                       callback: Callable[[dict], bool | None] | None = None, progress: bool = True):
    r"""Fit the reward model on preference rows (and ratings); returns ``(model, history)`` (notebook 08).

    Each step minimises λ2 · L_compare (:func:`bradley_terry_loss`) on a batch of pairs and, when
    ``ratings`` (a list of ``(prompt, completion, y)``, y ∈ [0, 1]) are given, + λ1 · L_score on a
    batch of ratings: the seed's mixed loss. With ``config.rating_link == "learned"`` L_score is
    :func:`rating_nll` through a :class:`RatingLink` learned jointly (its final a, b, s are stored
    in ``model.config.rating_link``); with ``"fixed"`` it is :func:`score_loss`. ``history`` is a dict of
    lists, one entry per step (``step``, ``loss``, ``lr``, ``compare_loss``, ``compare_accuracy``,
    and with ratings ``score_loss`` and the link's ``rating_scale``, ``rating_offset``,
    ``rating_noise``). ``callback(stats)`` gets each step's stats; returning True stops training.
    """
    config = config if config is not None else RewardTrainConfig()
    if not isinstance(config, RewardTrainConfig):
        raise TypeError(f"config must be a RewardTrainConfig, got {type(config).__name__}")
    V.callable_("callback", callback, allow_none=True)
    rows = check_preference_rows(rows)
    ratings = check_ratings(ratings) if ratings is not None else []
    if config.fused_gelu:
        T.fuse_gelu(model)
    link = RatingLink(noise=config.link_noise) if ratings and config.rating_link == "learned" else None
    steps_per_epoch = _batch_plan(len(rows), len(ratings), config.batch_size)[0]
    opt, sched = _make_optimizer(model, link, config, config.epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(config.seed)
    history: dict[str, list] = {}
    model.train()
    bar = progress_bar(total=config.epochs * steps_per_epoch, desc="reward model", disable=not progress)
    stop = False
    for _ in range(config.epochs):
        for pair_idx, rate_idx in _epoch_batches(len(rows), len(ratings), config.batch_size, g):
            step = len(history.get("loss", ()))
            stats = {"step": step, **_train_step(model, tokenizer, rows, ratings, pair_idx, rate_idx, link, opt, sched,
                                                 config, step)}
            for k, v in stats.items():
                history.setdefault(k, []).append(v)
            bar.update(1)
            if callback is not None and callback(stats):
                stop = True
                break
        if stop:
            break
    bar.close()
    model.eval()
    if link is not None:  # the learned link, kept with the model (JSON in its config)
        model.config.rating_link = {"scale": link.scale.item(), "offset": link.offset.item(), "noise": link.noise.item()}
    return model, history


def _train_step(model, tokenizer, rows, ratings, pair_idx, rate_idx, link, opt, sched, config, step: int) -> dict:
    """One update on a batch of pairs and a batch of ratings (either may be empty); returns its stats."""
    loss, stats = 0.0, {"lr": sched.get_last_lr()[0]}
    if pair_idx:
        l_cmp, s_cmp = _compare_step(model, tokenizer, rows, pair_idx)
        loss, stats = config.lambdas[1] * l_cmp, {**stats, **s_cmp}
    if rate_idx:
        l_score, s_score = _rating_step(model, tokenizer, ratings, rate_idx, link)
        loss, stats = loss + config.lambdas[0] * l_score, {**stats, **s_score}
    V.check_finite_loss(loss, step, "reward-model loss")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    opt.step()
    sched.step()
    stats["loss"] = loss.item()
    return stats


@torch.no_grad()
def _raw_scores(model, tokenizer, prompts, completions, batch_size: int = 256) -> torch.Tensor:
    prompts = V.text_list("prompts", prompts, allow_empty_items=False)
    completions = V.text_list("completions", completions)
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length, got {len(prompts)} and {len(completions)}")
    was_training = model.training
    model.eval()
    out = []
    for s in range(0, len(prompts), batch_size):
        enc = encode(tokenizer, prompts[s:s + batch_size], completions[s:s + batch_size], max_length=model.config.n_positions)
        out.append(reward_forward(model, enc["input_ids"].to(model.device), enc["attention_mask"].to(model.device)).float().cpu())
    model.train(was_training)
    return torch.cat(out)


def reward_scores(model, tokenizer, prompts: Sequence[str], completions: Sequence[str], normalize: bool = True,
                  batch_size: int = 256) -> torch.Tensor:
    """Reward of each ``prompt + completion + EOS``, a float tensor ``[n]`` (notebook 08).

    Normalized with the stored SFT statistics, ``(raw − reward_mean) / reward_std``, unless
    ``normalize=False``. No gradient (use :func:`reward_forward` to train).
    """
    raw = _raw_scores(model, tokenizer, prompts, completions, batch_size)
    if not normalize:
        return raw
    mean = float(getattr(model.config, "reward_mean", 0.0))
    std = float(getattr(model.config, "reward_std", 1.0))
    return (raw - mean) / std


def normalize_reward_model(model, tokenizer, prompts, completions) -> tuple[float, float]:
    """Store mean and std of the raw scores of (SFT) samples in ``model.config``; returns them (notebook 08)."""
    raw = _raw_scores(model, tokenizer, prompts, completions)
    if len(raw) < 2:
        raise ValueError("need at least 2 samples to normalize")
    mean, std = float(raw.mean()), float(raw.std())
    if not std > 0:
        raise ValueError("the reward model gives every sample the same score; cannot normalize")
    model.config.reward_mean, model.config.reward_std = mean, std
    return mean, std


def pairwise_accuracy(model, tokenizer, prompts, a, b, gold: bool = True) -> float:
    """Fraction of pairs the reward model orders like the noiseless gold score (ties in gold skipped), notebook 08.

    With ``gold=False``, ``a`` is taken as the chosen side (accuracy against the noisy labels).
    """
    ra, rb = reward_scores(model, tokenizer, prompts, a), reward_scores(model, tokenizer, prompts, b)
    if gold:
        ga, gb = T.gold_score(prompts, a), T.gold_score(prompts, b)
        keep = (ga - gb).abs() > 1e-6
        if not keep.any():
            raise ValueError("every pair is a tie under the gold score")
        return float(((ra > rb) == (ga > gb))[keep].float().mean())
    return float((ra > rb).float().mean())


# ---------------------------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------------------------
def _rm_hash(config: RewardConfig) -> str:
    d = asdict(config)
    return T.config_hash(d)


def load_or_make_preferences(config: RewardConfig | None = None, cache_dir=None, progress: bool = True) -> dict:
    """``{"train": rows, "test": rows, "train_path": Path, "test_path": Path}`` (notebook 08).

    Pairs sampled from the cached SFT policy and labelled by ``GoldLabeler(epsilon, beta)``:
    ``n_train_pairs`` on train prompts, ``n_test_pairs`` on the disjoint test prompts. Cached as
    JSONL (TRL format) under the cache folder; load them with ``datasets.load_dataset("json", ...)``.
    """
    config = config or RewardConfig()
    root = T.cache_root(cache_dir) / f"preferences-{_rm_hash(config)}"
    paths = {s: root / f"{s}.jsonl" for s in ("train", "test")}
    with build_lock(root):
        if not all(p.is_file() for p in paths.values()):
            sft, tok = T.load_or_train_sft(config.text, cache_dir, progress)
            with T.single_thread():
                _make_and_save_preferences(sft, tok, config, paths)
    out = {s: load_preference_dataset(p).to_list() for s, p in paths.items()}
    out.update({f"{s}_path": p for s, p in paths.items()})
    return out


def _make_and_save_preferences(sft, tok, config: RewardConfig, paths: dict) -> None:
    for split, n, seed in (("train", config.n_train_pairs, config.seed), ("test", config.n_test_pairs, config.seed + 1000)):
        labeler = T.GoldLabeler(epsilon=config.epsilon, beta=config.beta, seed=seed)
        rows = make_preference_dataset(sft, tok, n, split=split, labeler=labeler, seed=seed,
                                       max_new_tokens=config.max_new_tokens, temperature=config.temperature)
        save_jsonl(rows, paths[split])


def reward_model_path(config: RewardConfig | None = None, cache_dir=None) -> Path:
    """The cache folder of the reward model for ``config`` (holds ``training_log.json``), notebook 08."""
    return T.cache_root(cache_dir) / f"rm-{_rm_hash(config or RewardConfig())}"


def load_or_train_reward_model(config: RewardConfig | None = None, cache_dir=None, progress: bool = True):
    """``(GPT2ForSequenceClassification, tokenizer)``: the normalized reward model, trained once and cached (notebook 08).

    Trains on :func:`load_or_make_preferences` ``["train"]`` with :func:`train_reward_model`, then
    normalizes on ``n_norm_samples`` fresh SFT samples of train prompts (mean 0, std 1). Use
    :func:`reward_scores` to score text.
    """
    from transformers import GPT2ForSequenceClassification

    config = config or RewardConfig()
    path = reward_model_path(config, cache_dir)
    with build_lock(path):  # another process training the same model: wait for it, then load
        if not path.is_dir():
            data = load_or_make_preferences(config, cache_dir, progress)
            sft, tok = T.load_or_train_sft(config.text, cache_dir, progress)
            rm = build_reward_model(sft, tok, seed=config.seed)
            with T.single_thread():  # the same checkpoint whatever thread count the caller uses
                _, history = train_reward_model(rm, tok, data["train"], config=config.train_config(), progress=progress)
                prompts = T.make_prompts(config.n_norm_samples, "train", seed=config.seed + 2000)
                samples = T.generate(sft, tok, prompts, max_new_tokens=config.max_new_tokens,
                                     temperature=config.temperature, seed=config.seed + 2000)
                normalize_reward_model(rm, tok, prompts, samples)
            T.save_model(rm, tok, path, extra={"losses": history["loss"]})
    return T.load_model(verify_checkpoint(path), model_class=GPT2ForSequenceClassification)
