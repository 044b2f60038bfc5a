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
- **Loss.** :func:`bradley_terry_loss` ``= −log σ(r̂(chosen) − r̂(rejected))`` (the seed's
  L_compare), optionally mixed with L_score on ratings (:func:`score_loss`).
- **Normalization.** :func:`normalize_reward_model` stores the mean and std of the raw scores of
  SFT samples in ``model.config`` (``reward_mean``, ``reward_std``); :func:`reward_scores`
  returns ``(raw − mean) / std``, so SFT samples score mean 0, std 1 and PPO's KL coefficient
  keeps its meaning.
- **Cache.** :func:`load_or_train_reward_model` and :func:`load_or_make_preferences` build all of
  this once and cache it next to the SFT model (``$RLHF_TUTORIAL_CACHE``).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from . import text as T
from .utils import progress_bar

__all__ = [
    "RewardConfig", "build_reward_model", "encode", "last_token_index", "position_ids_from_mask",
    "reward_forward", "bradley_terry_loss", "score_loss", "make_preference_dataset", "check_preference_rows",
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


# ---------------------------------------------------------------------------------------------
# Model and scoring
# ---------------------------------------------------------------------------------------------
def build_reward_model(sft_model, tokenizer, seed: int = 0):
    """``GPT2ForSequenceClassification`` (num_labels=1) with the SFT model's transformer weights (notebook 08)."""
    from transformers import GPT2ForSequenceClassification

    T._check_tokenizer(tokenizer)
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
    prompts = T._check_texts("prompts", prompts, allow_empty_items=False)
    completions = T._check_texts("completions", completions)
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length, got {len(prompts)} and {len(completions)}")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    T._check_tokenizer(tokenizer)
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


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids 0, 1, 2, ... counted over real tokens only (padding gets 0), notebook 08."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def reward_forward(model, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Raw scores ``[batch]``: the head ``score`` applied to the hidden state of the last real token (notebook 08)."""
    if input_ids.shape != attention_mask.shape:
        raise ValueError(f"input_ids {tuple(input_ids.shape)} and attention_mask {tuple(attention_mask.shape)} differ in shape")
    hidden = model.transformer(input_ids=input_ids, attention_mask=attention_mask,
                               position_ids=position_ids_from_mask(attention_mask)).last_hidden_state
    idx = last_token_index(attention_mask)
    last = hidden[torch.arange(len(idx), device=hidden.device), idx]
    return model.score(last).squeeze(-1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    r"""L_compare = mean of −log σ(r̂(chosen) − r̂(rejected)) (notebook 08; the seed's §3.2.2 (2)).

    With ``labels`` y (1: first preferred, 0: second, 0.5: equal) it is the cross-entropy
    −y log σ(Δ) − (1−y) log σ(−Δ); TRL's ``RewardTrainer`` uses the first form.
    """
    if not isinstance(r_chosen, torch.Tensor) or not isinstance(r_rejected, torch.Tensor):
        raise TypeError("r_chosen and r_rejected must be torch tensors")
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen {tuple(r_chosen.shape)} and r_rejected {tuple(r_rejected.shape)} differ in shape")
    delta = r_chosen - r_rejected
    if labels is None:
        return -F.logsigmoid(delta).mean()
    return F.binary_cross_entropy_with_logits(delta, labels.to(delta.dtype))


def score_loss(r: torch.Tensor, ratings: torch.Tensor) -> torch.Tensor:
    """L_score for text = mean (σ(r̂) − y)², ratings y ∈ [0, 1] (notebook 08; notebook 05's L_score with σ to map r̂ to [0, 1])."""
    if r.shape != ratings.shape:
        raise ValueError(f"r {tuple(r.shape)} and ratings {tuple(ratings.shape)} differ in shape")
    return ((torch.sigmoid(r) - ratings.to(r.dtype)) ** 2).mean()


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
    n_pairs = T._check_count("n_pairs", n_pairs)
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
def train_reward_model(model, tokenizer, rows, epochs: int = 2, batch_size: int = 32, lr: float = 3e-4,
                       seed: int = 0, ratings=None, lambdas: tuple[float, float] = (1.0, 1.0),
                       progress: bool = True) -> list[float]:
    """Fit the reward model on preference rows with the Bradley–Terry loss; returns the loss per step (notebook 08).

    ``ratings`` (optional): a list of ``(prompt, completion, y)`` with y ∈ [0, 1]; then each step
    minimises ``λ1 · L_score + λ2 · L_compare`` on a batch of each (the seed's mixed loss).
    The model's GELU is swapped in place for the fused one (:func:`text.fuse_gelu`, same function).
    """
    rows = check_preference_rows(rows)
    epochs, batch_size = T._check_count("epochs", epochs), T._check_count("batch_size", batch_size)
    n_ctx = model.config.n_positions
    T.fuse_gelu(model)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    steps_per_epoch = (len(rows) + batch_size - 1) // batch_size
    total = epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / total)
    if ratings is not None:
        ratings = list(ratings)
        if not ratings:
            raise ValueError("ratings is empty; pass None to train on comparisons only")
    model.train()
    losses = []
    bar = progress_bar(total=total, desc="reward model", disable=not progress)
    for _ in range(epochs):
        perm = torch.randperm(len(rows), generator=g).tolist()
        for s in range(0, len(rows), batch_size):
            batch = [rows[i] for i in perm[s:s + batch_size]]
            prompts = [r["prompt"] for r in batch]
            enc = encode(tokenizer, prompts + prompts, [r["chosen"] for r in batch] + [r["rejected"] for r in batch],
                         max_length=n_ctx)
            r = reward_forward(model, enc["input_ids"], enc["attention_mask"])
            loss = lambdas[1] * bradley_terry_loss(r[: len(batch)], r[len(batch):])
            if ratings is not None:
                idx = torch.randint(len(ratings), (len(batch),), generator=g).tolist()
                e2 = encode(tokenizer, [ratings[i][0] for i in idx], [ratings[i][1] for i in idx], max_length=n_ctx)
                y = torch.tensor([float(ratings[i][2]) for i in idx])
                loss = loss + lambdas[0] * score_loss(reward_forward(model, e2["input_ids"], e2["attention_mask"]), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(1)
    bar.close()
    model.eval()
    return losses


@torch.no_grad()
def _raw_scores(model, tokenizer, prompts, completions, batch_size: int = 256) -> torch.Tensor:
    prompts = T._check_texts("prompts", prompts, allow_empty_items=False)
    completions = T._check_texts("completions", completions)
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
    root = T._cache_root(cache_dir) / f"preferences-{_rm_hash(config)}"
    paths = {s: root / f"{s}.jsonl" for s in ("train", "test")}
    if not all(p.is_file() for p in paths.values()):
        sft, tok = T.load_or_train_sft(config.text, cache_dir, progress)
        for split, n, seed in (("train", config.n_train_pairs, config.seed), ("test", config.n_test_pairs, config.seed + 1000)):
            labeler = T.GoldLabeler(epsilon=config.epsilon, beta=config.beta, seed=seed)
            rows = make_preference_dataset(sft, tok, n, split=split, labeler=labeler, seed=seed,
                                           max_new_tokens=config.max_new_tokens, temperature=config.temperature)
            save_jsonl(rows, paths[split])
    out = {s: load_preference_dataset(p).to_list() for s, p in paths.items()}
    out.update({f"{s}_path": p for s, p in paths.items()})
    return out


def reward_model_path(config: RewardConfig | None = None, cache_dir=None) -> Path:
    """The cache folder of the reward model for ``config`` (holds ``training_log.json``), notebook 08."""
    return T._cache_root(cache_dir) / f"rm-{_rm_hash(config or RewardConfig())}"


def load_or_train_reward_model(config: RewardConfig | None = None, cache_dir=None, progress: bool = True):
    """``(GPT2ForSequenceClassification, tokenizer)``: the normalized reward model, trained once and cached (notebook 08).

    Trains on :func:`load_or_make_preferences` ``["train"]`` with :func:`train_reward_model`, then
    normalizes on ``n_norm_samples`` fresh SFT samples of train prompts (mean 0, std 1). Use
    :func:`reward_scores` to score text.
    """
    from transformers import GPT2ForSequenceClassification

    config = config or RewardConfig()
    path = reward_model_path(config, cache_dir)
    if not path.is_dir():
        data = load_or_make_preferences(config, cache_dir, progress)
        sft, tok = T.load_or_train_sft(config.text, cache_dir, progress)
        rm = build_reward_model(sft, tok, seed=config.seed)
        losses = train_reward_model(rm, tok, data["train"], epochs=config.epochs, batch_size=config.batch_size,
                                    lr=config.lr, seed=config.seed, progress=progress)
        prompts = T.make_prompts(config.n_norm_samples, "train", seed=config.seed + 2000)
        samples = T.generate(sft, tok, prompts, max_new_tokens=config.max_new_tokens,
                             temperature=config.temperature, seed=config.seed + 2000)
        normalize_reward_model(rm, tok, prompts, samples)
        T.save_model(rm, tok, path, extra={"losses": losses})
    return T.load_model(path, model_class=GPT2ForSequenceClassification)
