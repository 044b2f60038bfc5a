r"""A tiny language model and its synthetic human (notebook 07; used by notebooks 08-10).

Everything the language-model half of the course needs, small enough to train on a laptop CPU:

- **The task.** :func:`make_corpus` writes short synthetic product reviews from a small grammar
  with controllable attributes (subject, sentiment, length, detail, off-topic digressions,
  rambling). A *prompt* is the opening of a review (``"The pizza was"``, see :func:`make_prompts`,
  with disjoint train/test splits); a *completion* is the rest of it.
- **The tokenizer.** :func:`train_tokenizer` trains a byte-level BPE with the ``tokenizers``
  library and wraps it as a :class:`transformers.PreTrainedTokenizerFast` with an EOS token
  ``<|endoftext|>`` and a *dedicated* pad token ``<|pad|>`` (padding with EOS would teach the
  model to never stop, and would hide where a sequence really ends).
- **The model.** :func:`build_model` builds a transformers ``GPT2LMHeadModel`` of about 0.9 M
  parameters with a context of 64 tokens; :func:`pretrain` trains it on packed blocks of the
  corpus, :func:`sft_loss` / :func:`finetune` do supervised fine-tuning on prompt → response
  demonstrations with the loss masked on the prompt (InstructGPT stage 1).
  :func:`load_or_train_base` and :func:`load_or_train_sft` train them once and cache them
  (safetensors) under ``$RLHF_TUTORIAL_CACHE`` (default ``~/.cache/rlhf_tutorial``) in a folder
  named by a hash of the configuration, so notebooks 08-10 run on their own, in any order.
- **The switch to a real model.** :func:`load_model` loads any causal LM with ``from_pretrained``
  (a hub name such as ``"gpt2"`` on Colab, or a local folder) and gives it a pad token.
- **Sampling.** :func:`generate` samples completions (temperature, top-k, fixed seed).
- **The synthetic human.** :func:`gold_score` is the documented "true" taste that stands for a
  human; :class:`GoldLabeler` answers comparisons (Bradley–Terry on the gold score with ε random
  answers) and gives ratings.

The gold score (what a human reader of these reviews wants), for a prompt about subject *s*
and a completion with words w_1..w_n (lower-cased letters only)::

    gold = sentiment + topic + ending + length + repetition

- ``sentiment`` ∈ [-1, 1]: (positive − negative words, a word after "not"/"never" flips) clipped
  to [-2, 2] and halved. It **saturates**: a third glowing adjective adds nothing.
- ``topic`` ∈ [-1, 0.5]: +0.25 per mention of *s* or one of its aspects (at most 2 count),
  −0.5 per mention of another subject or its aspects (at most 2 count).
- ``ending``: +0.5 when the completion ends with a finished sentence (".", "!" or "?"), −1 when it
  stops mid-sentence (what a completion that ran out of tokens before EOS looks like).
- ``length``: 0 for 4-24 words, −0.1 per word outside that range.
- ``repetition``: −0.5 per repeated word bigram and −0.5 per word repeated back to back
  ("great great").

The SFT model's samples differ mostly in sentiment, so a reward model learnt from comparisons of
them learns mostly "positive words are good". The gold score also punishes what such a reward
model has never seen: repetition, rambling past the end and stopping mid-sentence. That is the
gap PPO exploits in notebooks 09-10 (overoptimization).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import _validate as V
from .cache import build_lock, verify_checkpoint, write_manifest
from .utils import progress_bar

__all__ = [
    "SUBJECTS", "POSITIVE_WORDS", "NEGATIVE_WORDS", "EOS_TOKEN", "PAD_TOKEN", "TextConfig",
    "make_review", "make_corpus", "make_prompts", "make_sft_pairs", "train_tokenizer",
    "build_model", "fuse_gelu", "position_ids_from_mask", "pack_corpus", "pretrain", "sft_batch", "sft_loss", "finetune",
    "default_cache_dir", "cache_root", "config_hash", "load_or_train_tokenizer", "load_or_train_base",
    "load_or_train_sft", "load_model", "save_model", "generate", "gold_score", "gold_details",
    "GoldLabeler", "subject_of", "training_log", "single_thread",
]

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"

# ---------------------------------------------------------------------------------------------
# The grammar
# ---------------------------------------------------------------------------------------------
SUBJECTS: dict[str, tuple[str, ...]] = {
    "pizza": ("crust", "cheese", "sauce", "dough"),
    "coffee": ("aroma", "foam", "taste", "cup"),
    "hotel": ("room", "staff", "bed", "breakfast"),
    "phone": ("screen", "battery", "camera", "speaker"),
    "movie": ("plot", "cast", "music", "ending"),
    "book": ("story", "style", "cover", "hero"),
    "park": ("lake", "path", "grass", "playground"),
    "bike": ("brake", "chain", "saddle", "frame"),
    "laptop": ("keyboard", "fan", "trackpad", "charger"),
    "concert": ("band", "singer", "crowd", "sound"),
}
"""The subjects of the reviews and their aspects (what an on-topic review talks about)."""

POSITIVE_WORDS = ("great", "good", "excellent", "lovely", "amazing", "wonderful", "superb",
                  "perfect", "fantastic", "nice", "recommend", "love", "loved", "enjoyed", "best")
NEGATIVE_WORDS = ("bad", "awful", "terrible", "poor", "boring", "horrible", "disappointing",
                  "weak", "broken", "worst", "hate", "hated", "waste", "avoid", "rude")
_POS_ADJ = ("great", "good", "excellent", "lovely", "amazing", "wonderful", "superb", "perfect",
            "fantastic", "nice")
_NEG_ADJ = ("bad", "awful", "terrible", "poor", "boring", "horrible", "disappointing", "weak")
_NEUTRAL_ADJ = ("okay", "fine", "average", "plain", "small", "large", "new", "old")
_INTENS = ("very", "really", "quite", "so")
_OPENERS = ("The {s} was", "I think the {s} was", "Honestly, the {s} was", "We tried the {s} and it was",
            "My review of the {s}: it was", "Last week the {s} was")
_POS_CLOSE = ("I would recommend it.", "I loved it.", "I will come back.", "Highly recommended.",
              "I enjoyed it a lot.", "Best one so far.")
_NEG_CLOSE = ("I would not recommend it.", "Avoid it.", "What a waste.", "Never again.",
              "I hated it.", "Not worth it.")
_NEUTRAL_CLOSE = ("It was okay.", "Nothing special.", "It is fine for the price.")
_NEGATORS = ("not", "never", "no")

_WORD_RE = re.compile(r"[a-z]+")


def _rng(seed) -> np.random.Generator:
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return np.random.default_rng(int(seed))


def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
    return options[int(rng.integers(len(options)))]


def _adj(rng, polarity: int) -> str:
    words = _POS_ADJ if polarity > 0 else _NEG_ADJ if polarity < 0 else _NEUTRAL_ADJ
    w = _pick(rng, words)
    if polarity != 0 and rng.random() < 0.25:
        w = _pick(rng, _INTENS) + " " + w
    return w


def make_review(rng: np.random.Generator, subject: str | None = None, sentiment: int | None = None,
                n_details: int | None = None, off_topic: bool | None = None,
                ramble: bool = False, opener: str | None = None) -> tuple[str, str]:
    """One synthetic review as ``(prompt, completion)`` (notebook 07).

    ``sentiment`` is +1 (positive), -1 (negative) or 0 (mixed/neutral); ``n_details`` the number
    of sentences about aspects; ``off_topic`` adds a sentence about another subject; ``ramble``
    repeats phrases and leaves out the closing (what the pretraining corpus sometimes contains).
    Unset attributes are drawn at random.
    """
    if subject is None:
        subject = _pick(rng, tuple(SUBJECTS))
    if subject not in SUBJECTS:
        raise ValueError(f"subject must be one of {tuple(SUBJECTS)}, got {subject!r}")
    if sentiment is None:
        sentiment = int(rng.choice([1, -1, 0], p=[0.45, 0.4, 0.15]))
    if n_details is None:
        n_details = int(rng.integers(0, 3))
    if off_topic is None:
        off_topic = bool(rng.random() < 0.12)
    opener = opener if opener is not None else _pick(rng, _OPENERS)
    prompt = opener.format(s=subject)
    aspects = SUBJECTS[subject]
    parts = [_adj(rng, sentiment if sentiment != 0 else int(rng.choice([1, -1]))) + "."]
    for _ in range(n_details):
        a = _pick(rng, aspects)
        pol = sentiment if (sentiment != 0 and rng.random() < 0.85) else int(rng.choice([1, -1, 0]))
        if rng.random() < 0.5:
            b = _pick(rng, [x for x in aspects if x != a])
            pol2 = pol if rng.random() < 0.8 else -pol
            conj = "and" if pol2 == pol else "but"
            parts.append(f"The {a} was {_adj(rng, pol)} {conj} the {b} was {_adj(rng, pol2)}.")
        else:
            parts.append(f"The {a} was {_adj(rng, pol)}.")
    if off_topic:
        other = _pick(rng, [s for s in SUBJECTS if s != subject])
        parts.insert(int(rng.integers(1, len(parts) + 1)),
                     f"The {_pick(rng, SUBJECTS[other])} of my {other} was {_adj(rng, int(rng.choice([1, -1])))}.")
    if ramble:
        extra = " ".join(_adj(rng, sentiment or 1) for _ in range(int(rng.integers(3, 7))))
        parts.append(f"The {_pick(rng, aspects)} was {extra} and the {_pick(rng, aspects)} was")
    else:
        parts.append(_pick(rng, _POS_CLOSE if sentiment > 0 else _NEG_CLOSE if sentiment < 0
                           else _NEUTRAL_CLOSE))
    return prompt, " " + " ".join(parts)


def make_corpus(n_docs: int = 20_000, seed: int = 0, ramble_prob: float = 0.1) -> list[str]:
    """``n_docs`` synthetic reviews (prompt + completion as one text) for pretraining (notebook 07).

    A fraction ``ramble_prob`` of them ramble (repeated adjectives, no ending), so the pretrained
    model has seen bad text too; supervised fine-tuning then shows it the good format.
    """
    n_docs = V.integer("n_docs", n_docs, low=1)
    if not 0.0 <= float(ramble_prob) <= 1.0:
        raise ValueError(f"ramble_prob must be in [0, 1], got {ramble_prob!r}")
    rng = _rng(seed)
    out = []
    for _ in range(n_docs):
        p, c = make_review(rng, n_details=int(rng.integers(0, 4)), ramble=bool(rng.random() < ramble_prob))
        out.append(p + c)
    return out


def _prompt_pool(split: str) -> list[str]:
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    pool = []
    for i, s in enumerate(SUBJECTS):
        for j, o in enumerate(_OPENERS):
            is_test = (i + j) % 5 == 0  # 12 of 60 prompts are held out, every subject and opener appear in both
            if is_test == (split == "test"):
                pool.append(o.format(s=s))
    return pool


def make_prompts(n: int, split: str = "train", seed: int = 0) -> list[str]:
    """``n`` review openings such as ``"The pizza was"`` (notebook 07).

    The 60 possible openings (10 subjects × 6 openers) are split once into 48 train and 12 test
    prompts (disjoint); ``n`` prompts are drawn from the split with replacement, reproducibly.
    """
    n = V.integer("n", n, low=1)
    pool = _prompt_pool(split)
    rng = _rng(seed)
    return [pool[i] for i in rng.integers(len(pool), size=n)]


def make_sft_pairs(n: int, seed: int = 0, split: str = "train") -> list[tuple[str, str]]:
    """``n`` demonstrations ``(prompt, response)`` for supervised fine-tuning (notebook 07).

    Demonstrations are well-formed reviews of every sentiment (a demonstrator who writes what
    they think, good or bad): they teach the format and when to stop, not what to prefer.
    Prompts come from the given split of :func:`make_prompts`.
    """
    n = V.integer("n", n, low=1)
    rng = _rng(seed)
    prompts = make_prompts(n, split=split, seed=seed + 1)
    pairs = []
    for p in prompts:
        subject = subject_of(p)
        opener = p.replace(subject, "{s}")
        while True:  # demonstrations are short: at most 22 words
            pair = make_review(rng, subject=subject, opener=opener)
            if len(_WORD_RE.findall(pair[1].lower())) <= 22:
                break
        pairs.append(pair)
    return pairs


def subject_of(prompt: str) -> str:
    """The subject a prompt is about (the first subject word in it); ValueError if there is none (notebook 07)."""
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
    for w in _WORD_RE.findall(prompt.lower()):
        if w in SUBJECTS:
            return w
    raise ValueError(f"prompt {prompt!r} names no subject; expected one of {tuple(SUBJECTS)}")


# ---------------------------------------------------------------------------------------------
# The gold human
# ---------------------------------------------------------------------------------------------
_ASPECT_OWNER = {a: s for s, aspects in SUBJECTS.items() for a in aspects}
_POS = frozenset(POSITIVE_WORDS)
_NEG = frozenset(NEGATIVE_WORDS)


def gold_details(prompt: str, completion: str) -> dict[str, float]:
    """The parts of :func:`gold_score` for one completion, as a dict (notebook 07).

    Keys: ``sentiment``, ``topic``, ``ending``, ``length``, ``repetition`` and their sum ``gold``.
    See the module docstring for the rules.
    """
    subject = subject_of(prompt)
    if not isinstance(completion, str):
        raise TypeError(f"completion must be a str, got {type(completion).__name__}")
    words = _WORD_RE.findall(completion.lower())
    polarity = 0
    own = other = 0
    for i, w in enumerate(words):
        negated = i > 0 and words[i - 1] in _NEGATORS
        if w in _POS:
            polarity += -1 if negated else 1
        elif w in _NEG:
            polarity += 1 if negated else -1
        if w == subject or _ASPECT_OWNER.get(w) == subject:
            own += 1
        elif w in SUBJECTS or w in _ASPECT_OWNER:
            other += 1
    sentiment = max(-2, min(2, polarity)) / 2.0
    topic = 0.25 * min(own, 2) - 0.5 * min(other, 2)
    stripped = completion.strip()
    ending = 0.5 if stripped.endswith((".", "!", "?")) else -1.0
    n = len(words)
    length = -0.1 * (max(0, 4 - n) + max(0, n - 24))
    bigrams = list(zip(words, words[1:]))
    repeated_bigrams = len(bigrams) - len(set(bigrams))
    doubled = sum(a == b for a, b in bigrams)
    repetition = -0.5 * (repeated_bigrams + doubled)
    parts = dict(sentiment=sentiment, topic=topic, ending=ending, length=length, repetition=repetition)
    parts["gold"] = sum(parts.values())
    return parts


def gold_score(prompts: Sequence[str], completions: Sequence[str]) -> torch.Tensor:
    """The synthetic human's true score of each completion, a float tensor of shape ``[n]`` (notebook 07).

    ``gold = sentiment + topic + ending + length + repetition``, see the module docstring and
    :func:`gold_details`. Roughly in [-4, 2]; a good review scores about 1.5-2.
    """
    prompts = V.text_list("prompts", prompts)
    completions = V.text_list("completions", completions)
    if len(prompts) != len(completions):
        raise ValueError(f"prompts and completions must have the same length, got {len(prompts)} and {len(completions)}")
    return torch.tensor([gold_details(p, c)["gold"] for p, c in zip(prompts, completions)], dtype=torch.float32)


class GoldLabeler:
    """The synthetic human answering comparisons and ratings from :func:`gold_score` (notebook 08).

    ``compare(prompts, a, b)`` returns labels y (1.0: ``a`` preferred, 0.0: ``b`` preferred):
    with probability ``epsilon`` a random answer, otherwise a draw from Bradley–Terry
    ``P(a ≻ b) = σ((gold(a) − gold(b)) / beta)``. ``rate(prompts, completions)`` gives scores
    in [0, 1] (gold squashed by a sigmoid, plus Gaussian noise ``rating_noise``, clipped), the
    "score" feedback of notebooks 04-05.
    """

    def __init__(self, epsilon: float = 0.1, beta: float = 0.1, rating_noise: float = 0.05, seed: int = 0):
        if not 0.0 <= float(epsilon) <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon!r}")
        if not float(beta) > 0:
            raise ValueError(f"beta must be > 0, got {beta!r}")
        if not float(rating_noise) >= 0:
            raise ValueError(f"rating_noise must be >= 0, got {rating_noise!r}")
        self.epsilon, self.beta, self.rating_noise = float(epsilon), float(beta), float(rating_noise)
        self.rng = _rng(seed)

    def preference_probability(self, prompts, a, b) -> torch.Tensor:
        """P(a ≻ b) under the noisy human, including the ε random answers."""
        ga, gb = gold_score(prompts, a), gold_score(prompts, b)
        if len(ga) != len(gb):
            raise ValueError(f"a and b must have the same length, got {len(ga)} and {len(gb)}")
        return self.epsilon * 0.5 + (1 - self.epsilon) * torch.sigmoid((ga - gb) / self.beta)

    def compare(self, prompts, a, b) -> torch.Tensor:
        """Labels y ∈ {0., 1.} (1.0 means ``a`` is preferred), float tensor ``[n]``."""
        p = self.preference_probability(prompts, a, b).numpy()
        return torch.tensor((self.rng.random(len(p)) < p).astype(np.float32))

    def rate(self, prompts, completions) -> torch.Tensor:
        """Noisy ratings in [0, 1]: ``clip(σ(gold) + noise, 0, 1)``, float tensor ``[n]``."""
        g = gold_score(prompts, completions)
        noise = torch.tensor(self.rng.normal(0.0, self.rating_noise, len(g)), dtype=torch.float32)
        return (torch.sigmoid(g) + noise).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        return f"GoldLabeler(epsilon={self.epsilon}, beta={self.beta}, rating_noise={self.rating_noise})"


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int = 512):
    """A byte-level BPE trained on ``texts``, as a ``PreTrainedTokenizerFast`` (notebook 07).

    Special tokens: ``<|endoftext|>`` (EOS, id 0) and ``<|pad|>`` (pad, id 1) — a dedicated pad
    token, never EOS. ``padding_side`` is "right"; set it to "left" for batched generation.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = V.text_list("texts", texts)
    vocab_size = V.integer("vocab_size", vocab_size, low=260)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS_TOKEN, PAD_TOKEN],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS_TOKEN, pad_token=PAD_TOKEN,
                                   bos_token=EOS_TOKEN, unk_token=None)
    fast.padding_side = "right"
    return fast


def fuse_gelu(model: nn.Module) -> nn.Module:
    """Replace GPT-2's Python ``gelu_new`` activation by PyTorch's fused tanh-GELU, in place (notebooks 08–10).

    The same function up to float rounding, in one fused kernel instead of a chain of Python-level
    ops (faster forward and backward on a CPU; ``benchmarks/README.md`` measures it). The trainers
    apply it to the models they train or query when their config's ``fused_gelu`` is True (the
    default; ``text_reward.RewardTrainConfig``, and the configs of ``lm_rlhf``, ``dpo``, ``grpo``).
    TRL users get the same kernel with ``activation_function="gelu_pytorch_tanh"``. Weights and
    config are unchanged, so a saved model loads back with ``gelu_new``.
    """
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__ == "NewGELUActivation":
                setattr(module, child_name, nn.GELU(approximate="tanh"))
    return model


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids 0, 1, 2, ... counted over real tokens only; padding gets 0 (notebooks 08-09).

    Without them a left-padded sequence is read at shifted positions, and the same text gets a
    different reward or log-prob depending on how much padding its batch needed.
    """
    if not isinstance(attention_mask, torch.Tensor):
        raise TypeError(f"attention_mask must be a torch tensor [batch, seq_len], got {type(attention_mask).__name__}")
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be 2-D [batch, seq_len], got shape {tuple(attention_mask.shape)}")
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


# ---------------------------------------------------------------------------------------------
# Model, pretraining, SFT
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TextConfig:
    """Every setting that determines the course's tokenizer, base and SFT models (notebook 07).

    Its hash (:func:`config_hash`) names the cache folders, so changing a setting retrains.
    """
    corpus_docs: int = 20_000
    vocab_size: int = 512
    n_positions: int = 64
    n_embd: int = 128
    n_layer: int = 4
    n_head: int = 4
    pretrain_steps: int = 400
    pretrain_batch: int = 32
    pretrain_lr: float = 3e-3
    sft_pairs: int = 4_000
    sft_steps: int = 200
    sft_batch: int = 32
    sft_lr: float = 1e-3
    seed: int = 0
    version: int = 1

    def __post_init__(self):
        for name in ("corpus_docs", "vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "pretrain_steps",
                     "pretrain_batch", "sft_pairs", "sft_steps", "sft_batch", "version"):
            V.integer(name, getattr(self, name), low=1)
        V.integer("seed", self.seed, low=0)
        V.positive("pretrain_lr", self.pretrain_lr)
        V.positive("sft_lr", self.sft_lr)
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be a multiple of n_head ({self.n_head})")


def config_hash(config) -> str:
    """A short, stable hash of a dataclass or dict (names the cache folder; notebook 07)."""
    d = asdict(config) if hasattr(config, "__dataclass_fields__") else dict(config)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]


def build_model(tokenizer, n_positions: int = 64, n_embd: int = 128, n_layer: int = 4, n_head: int = 4,
                seed: int = 0):
    """A fresh ``GPT2LMHeadModel`` sized for ``tokenizer`` (about 0.9 M parameters by default, notebook 07)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    V.tokenizer("tokenizer", tokenizer)
    cfg = GPT2Config(vocab_size=len(tokenizer), n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                     n_head=n_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                     pad_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = GPT2LMHeadModel(cfg)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def pack_corpus(texts: Sequence[str], tokenizer, block_size: int = 64) -> torch.Tensor:
    """Tokenize ``texts``, join them with EOS and cut the stream into blocks ``[n_blocks, block_size]`` (notebook 07)."""
    texts = V.text_list("texts", texts)
    V.tokenizer("tokenizer", tokenizer)
    block_size = V.integer("block_size", block_size, low=2)
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    stream = [t for doc in ids for t in doc + [tokenizer.eos_token_id]]
    n = len(stream) // block_size
    if n == 0:
        raise ValueError(f"texts give {len(stream)} tokens, fewer than one block of {block_size}")
    return torch.tensor(stream[: n * block_size]).view(n, block_size)


def _train_loop(model, batches, steps: int, lr: float, progress: bool, desc: str) -> list[float]:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    losses = []
    for step in progress_bar(range(steps), desc=desc, disable=not progress):
        loss = batches(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return losses


def pretrain(model, blocks: torch.Tensor, steps: int = 400, batch_size: int = 32, lr: float = 3e-3,
             seed: int = 0, progress: bool = True) -> list[float]:
    """Next-token prediction on packed blocks (``labels = input_ids``); returns the loss per step (notebook 07)."""
    if not isinstance(blocks, torch.Tensor) or blocks.dim() != 2:
        raise TypeError("blocks must be a 2-D LongTensor [n_blocks, block_size] (see pack_corpus)")
    steps, batch_size = V.integer("steps", steps, low=1), V.integer("batch_size", batch_size, low=1)
    g = torch.Generator().manual_seed(seed)

    def batch_loss(step):
        idx = torch.randint(len(blocks), (batch_size,), generator=g)
        x = blocks[idx]
        logits = model(input_ids=x).logits[:, :-1]
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), x[:, 1:].reshape(-1))

    return _train_loop(model, batch_loss, steps, lr, progress, "pretrain")


def sft_batch(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int = 64) -> dict:
    """Right-padded SFT batch: ``input_ids``, ``attention_mask`` and ``labels`` (notebook 07).

    Each row is prompt + response + EOS. ``labels`` is -100 on the prompt and on padding, so the
    loss only counts the response and its EOS (the model learns to answer and to stop, not to
    write prompts).
    """
    prompts, responses = V.text_list("prompts", prompts), V.text_list("responses", responses)
    if len(prompts) != len(responses):
        raise ValueError(f"prompts and responses must have the same length, got {len(prompts)} and {len(responses)}")
    V.tokenizer("tokenizer", tokenizer)
    p_ids = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(responses, add_special_tokens=False)["input_ids"]
    rows, labels = [], []
    for i, (p, r) in enumerate(zip(p_ids, r_ids)):
        ids = p + r + [tokenizer.eos_token_id]
        if len(ids) > max_length:
            raise ValueError(f"example {i} has {len(ids)} tokens, more than max_length={max_length}")
        rows.append(ids)
        labels.append([-100] * len(p) + r + [tokenizer.eos_token_id])
    width = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id
    input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
    attention_mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels_t = torch.tensor([lab + [-100] * (width - len(lab)) for lab in labels])
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels_t}


def sft_loss(model, batch: dict) -> torch.Tensor:
    """Mean cross-entropy of the response tokens (labels != -100), written out (notebook 07).

    Equal to ``model(**batch).loss``: logits at position t predict token t+1.
    """
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logits, labels = logits[:, :-1], batch["labels"][:, 1:]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


def finetune(model, tokenizer, pairs: Sequence[tuple[str, str]], steps: int = 200, batch_size: int = 32,
             lr: float = 1e-3, seed: int = 0, progress: bool = True) -> list[float]:
    """Supervised fine-tuning on ``(prompt, response)`` pairs with the loss masked on the prompt (notebook 07)."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError("pairs is empty; expected (prompt, response) demonstrations")
    steps, batch_size = V.integer("steps", steps, low=1), V.integer("batch_size", batch_size, low=1)
    g = torch.Generator().manual_seed(seed)
    max_len = model.config.n_positions

    def batch_loss(step):
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        b = sft_batch(tokenizer, [pairs[i][0] for i in idx], [pairs[i][1] for i in idx], max_length=max_len)
        return sft_loss(model, b)

    return _train_loop(model, batch_loss, steps, lr, progress, "SFT")


# ---------------------------------------------------------------------------------------------
# Save / load / cache
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def single_thread():
    """Run the block with one torch thread, then restore the count (notebook 07).

    The cached models are trained and sampled inside it, so a checkpoint is the same whichever
    notebook trains it first and however many threads that notebook uses.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def default_cache_dir() -> Path:
    """``$RLHF_TUTORIAL_CACHE`` if set, else ``~/.cache/rlhf_tutorial`` (outside git; notebook 07)."""
    env = os.environ.get("RLHF_TUTORIAL_CACHE", "").strip()
    return Path(env).expanduser() if env else Path.home() / ".cache" / "rlhf_tutorial"


def save_model(model, tokenizer, path, extra: dict | None = None) -> Path:
    """Save model (safetensors) and tokenizer to ``path`` atomically (a temp folder, then renamed; notebook 07).

    The SHA-256 manifest (:func:`rlhf_tutorial.cache.write_manifest`) is written last, so a folder
    cut short by a crash is detected on load (:func:`rlhf_tutorial.cache.verify_checkpoint`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp"))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if extra is not None:
            (tmp / "training_log.json").write_text(json.dumps(extra))
        write_manifest(tmp)
        if path.exists():  # someone else finished first; keep theirs
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_model(name_or_path, model_class=None, pad_token: str = PAD_TOKEN, **kwargs):
    """The switch to a real model: ``(model, tokenizer)`` from a hub name or local folder (notebook 07).

    ``from_pretrained`` for the tokenizer and ``model_class`` (default ``AutoModelForCausalLM``;
    pass ``GPT2ForSequenceClassification`` etc. for other heads). If the tokenizer has no pad token,
    or pads with EOS, a dedicated ``pad_token`` is added and the embeddings are resized. Weights are
    loaded from safetensors only (``use_safetensors=True``), never with remote code.
    Example on a Colab GPU: ``load_model("gpt2")``; offline: a folder written by ``save_pretrained``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not isinstance(name_or_path, (str, Path)):
        raise TypeError(f"name_or_path must be a str or Path, got {type(name_or_path).__name__}")
    model_class = model_class or AutoModelForCausalLM
    p = Path(str(name_or_path)).expanduser()
    looks_local = isinstance(name_or_path, Path) or p.exists() or str(name_or_path).startswith((".", "/", "~"))
    if looks_local:
        if not p.is_dir():
            raise ValueError(f"checkpoint folder {str(name_or_path)!r} does not exist")
        if not (p / "config.json").is_file() or not list(p.glob("*.safetensors")):
            raise ValueError(f"checkpoint folder {p.name!r} is incomplete: expected config.json and *.safetensors "
                             "(written by save_pretrained); delete it to retrain")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(name_or_path))
        model = model_class.from_pretrained(str(name_or_path), use_safetensors=True, **kwargs)
    except (OSError, json.JSONDecodeError, RuntimeError, ValueError) as e:
        raise ValueError(f"could not load a model from {str(name_or_path)!r}: {type(e).__name__}: {e}. "
                         "If it is a local checkpoint it may be corrupt: delete the folder to retrain") from e
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        tokenizer.add_special_tokens({"pad_token": pad_token})
        model.resize_token_embeddings(len(tokenizer))
    model.config.pad_token_id = tokenizer.pad_token_id
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.eval()
    return model, tokenizer


def cache_root(cache_dir=None) -> Path:
    """The folder of the course's cached models: ``cache_dir``, or :func:`default_cache_dir` when ``None`` (notebook 07)."""
    return V.path("cache_dir", cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def load_or_train_tokenizer(config: TextConfig | None = None, cache_dir=None):
    """The course tokenizer (trained on :func:`make_corpus` and cached), notebook 07."""
    from transformers import AutoTokenizer

    config = config or TextConfig()
    path = cache_root(cache_dir) / f"tokenizer-{config_hash({'docs': config.corpus_docs, 'vocab': config.vocab_size, 'seed': config.seed, 'v': config.version})}"
    with build_lock(path):
        if not (path / "tokenizer.json").is_file():
            tok = train_tokenizer(make_corpus(config.corpus_docs, seed=config.seed), vocab_size=config.vocab_size)
            tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=path.name + ".tmp"))
            tok.save_pretrained(tmp)
            write_manifest(tmp)
            if not path.exists():
                os.replace(tmp, path)
            shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(str(verify_checkpoint(path, check_weights=False)))
    V.tokenizer("tokenizer", tok)
    return tok


def load_or_train_base(config: TextConfig | None = None, cache_dir=None, progress: bool = True):
    """``(model, tokenizer)``: the pretrained (not fine-tuned) tiny GPT-2, trained once and cached (notebook 07)."""
    config = config or TextConfig()
    path = cache_root(cache_dir) / f"base-{config_hash(config)}"
    with build_lock(path):  # another process training the same model: wait for it, then load
        if not path.is_dir():
            tok = load_or_train_tokenizer(config, cache_dir)
            model = build_model(tok, config.n_positions, config.n_embd, config.n_layer, config.n_head, seed=config.seed)
            blocks = pack_corpus(make_corpus(config.corpus_docs, seed=config.seed), tok, config.n_positions)
            with single_thread():
                losses = pretrain(model, blocks, config.pretrain_steps, config.pretrain_batch, config.pretrain_lr,
                                  seed=config.seed, progress=progress)
            save_model(model, tok, path, extra={"losses": losses})
    return load_model(verify_checkpoint(path))


def load_or_train_sft(config: TextConfig | None = None, cache_dir=None, progress: bool = True):
    """``(model, tokenizer)``: the SFT policy (base model + supervised fine-tuning), cached (notebook 07).

    Trains the tokenizer, base model and SFT model when they are missing from the cache folder
    (``cache_dir`` or ``$RLHF_TUTORIAL_CACHE`` or ``~/.cache/rlhf_tutorial``); each is stored in a
    folder named by the hash of ``config``. The training losses are in ``training_log.json``.
    """
    config = config or TextConfig()
    path = cache_root(cache_dir) / f"sft-{config_hash(config)}"
    with build_lock(path):
        if not path.is_dir():
            model, tok = load_or_train_base(config, cache_dir, progress)
            pairs = make_sft_pairs(config.sft_pairs, seed=config.seed + 100)
            with single_thread():
                losses = finetune(model, tok, pairs, config.sft_steps, config.sft_batch, config.sft_lr,
                                  seed=config.seed, progress=progress)
            save_model(model, tok, path, extra={"losses": losses})
    return load_model(verify_checkpoint(path))


def training_log(kind: str = "sft", config: TextConfig | None = None, cache_dir=None) -> dict:
    """The saved training log (``{"losses": [...]}``) of the cached ``"base"`` or ``"sft"`` model (notebook 07)."""
    if kind not in ("base", "sft"):
        raise ValueError(f"kind must be 'base' or 'sft', got {kind!r}")
    path = cache_root(cache_dir) / f"{kind}-{config_hash(config or TextConfig())}" / "training_log.json"
    if not path.is_file():
        raise ValueError(f"no training log for the {kind} model; train it first with load_or_train_{kind}()")
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------
@torch.no_grad()
def generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, temperature: float = 1.0,
             top_k: int = 0, seed: int | None = None, batch_size: int = 256, return_finished: bool = False):
    """Sample one completion per prompt; returns the texts after the prompt, cut at EOS (notebook 07).

    ``temperature=0`` is greedy decoding; ``top_k=0`` samples from the whole vocabulary. Prompts
    are left-padded with the pad token (position ids follow the attention mask). With ``seed``
    the samples are reproducible and the global torch RNG is left untouched. With
    ``return_finished=True`` returns ``(texts, finished)`` where ``finished[i]`` tells whether
    completion i ended with EOS.
    """
    prompts = V.text_list("prompts", prompts, allow_empty_items=False)
    V.tokenizer("tokenizer", tokenizer)
    max_new_tokens = V.integer("max_new_tokens", max_new_tokens, low=1)
    if not float(temperature) >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    top_k = V.integer("top_k", top_k, low=0)
    n_ctx = getattr(model.config, "n_positions", None) or getattr(model.config, "max_position_embeddings", 1024)
    enc_all = tokenizer(prompts, add_special_tokens=False)["input_ids"]
    for i, ids in enumerate(enc_all):
        if len(ids) + max_new_tokens > n_ctx:
            raise ValueError(f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} that exceeds "
                             f"the model's context of {n_ctx} tokens")
    was_training = model.training
    model.eval()
    texts, finished = [], []
    old_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(int(seed))
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start:start + batch_size]
                enc = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)
                kwargs = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens,
                              pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                              top_k=top_k if top_k > 0 else None, top_p=None)
                if temperature > 0:
                    kwargs["temperature"] = float(temperature)
                out = model.generate(input_ids=enc["input_ids"].to(model.device),
                                     attention_mask=enc["attention_mask"].to(model.device), **kwargs)
                new = out[:, enc["input_ids"].shape[1]:].cpu()
                for row in new.tolist():
                    if tokenizer.eos_token_id in row:
                        row = row[: row.index(tokenizer.eos_token_id)]
                        finished.append(True)
                    else:
                        finished.append(False)
                    texts.append(tokenizer.decode([t for t in row if t != tokenizer.pad_token_id]))
    finally:
        tokenizer.padding_side = old_side
        model.train(was_training)
    if return_finished:
        return texts, torch.tensor(finished)
    return texts
