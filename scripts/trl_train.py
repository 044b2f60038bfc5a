#!/usr/bin/env python
"""The step to scale (notebook 10): the course's data and reward through TRL's trainers.

The same TRL-format preference rows ({"prompt", "chosen", "rejected"}, notebook 08) train a
policy with ``trl.DPOTrainer``; the same prompts and the same reward function
(``reward_fn(prompts, completions) -> scores``: the gold synthetic human of notebook 07, or the
learned reward model of notebook 08) train it with ``trl.GRPOTrainer`` or ``trl.RLOOTrainer``.
TRL runs on ``accelerate``, so the same file runs on one CPU, one GPU or many GPUs.

On GPUs, with a hub model (the default model is the hub model of notebook 07)::

    accelerate launch scripts/trl_train.py dpo  --model gpt2 --max-steps 500
    accelerate launch --num_processes 8 scripts/trl_train.py grpo --model gpt2 --reward rm

On a laptop CPU, with the course's tiny SFT model (trained and cached when missing)::

    python scripts/trl_train.py rloo --tiny --cpu --max-steps 20

or any local folder written by ``save_pretrained`` (``--model path/to/folder``). ``--data`` reads
a JSONL file of preference rows (default: notebook 08's cached preference data). The TRL
settings that matter on CPU (``bf16=False``, ``gradient_checkpointing=False``, ``use_cpu=True``)
are set by ``--cpu``. Results (metrics per step, TRL's names) are printed and written to
``<output-dir>/log_history.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

HUB_MODEL = "gpt2"  # the hub model of notebook 07 (openai-community/gpt2, 124 M parameters)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("algo", choices=["dpo", "grpo", "rloo"], help="which TRL trainer")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", default=HUB_MODEL, help="hub name or local folder (default: %(default)s)")
    src.add_argument("--tiny", action="store_true", help="the course's tiny SFT model (notebook 07), offline")
    p.add_argument("--data", default=None, help="JSONL of TRL preference rows (default: notebook 08's data)")
    p.add_argument("--reward", choices=["gold", "rm"], default="gold",
                   help="GRPO/RLOO reward: the gold synthetic human (notebook 07) or the learned reward model (notebook 08)")
    p.add_argument("--max-steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=16, help="per-device batch: pairs (DPO) or completions (GRPO/RLOO)")
    p.add_argument("--num-generations", type=int, default=4, help="GRPO/RLOO group size k")
    p.add_argument("--max-completion-length", type=int, default=24)
    p.add_argument("--learning-rate", type=float, default=None, help="default: 5e-5 (DPO), 3e-5 (GRPO/RLOO)")
    p.add_argument("--beta", type=float, default=None, help="KL / DPO temperature (default: 0.1 DPO, 0.05 GRPO/RLOO)")
    p.add_argument("--max-pairs", type=int, default=None, help="use only the first N rows of the data")
    p.add_argument("--output-dir", default="runs/trl", help="where TRL writes (checkpoints are not saved)")
    p.add_argument("--cpu", action="store_true", help="force CPU (use_cpu=True, float32)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def load_policy(args):
    """(model, tokenizer) from --tiny or --model, with a pad token distinct from EOS."""
    from rlhf_tutorial.text import load_model, load_or_train_sft

    if args.tiny:
        return load_or_train_sft(progress=False)
    return load_model(args.model)


def load_rows(args) -> list[dict]:
    """TRL preference rows from --data, or notebook 08's cached preference data."""
    if args.data:
        from rlhf_tutorial.text_reward import load_preference_dataset

        rows = load_preference_dataset(args.data)
    else:
        from rlhf_tutorial.text_reward import load_or_make_preferences

        rows = load_or_make_preferences(progress=False)["train"]
    rows = list(rows)[: args.max_pairs] if args.max_pairs else list(rows)
    if not rows:
        raise SystemExit("no preference rows to train on")
    return rows


def make_reward_fn(kind: str):
    """TRL reward function ``f(prompts, completions, **kwargs) -> list[float]``, the course's reward."""
    if kind == "gold":
        from rlhf_tutorial.text import gold_score

        def gold(prompts, completions, **kwargs):
            return gold_score(prompts, completions).tolist()

        gold.__name__ = "gold"
        return gold
    from rlhf_tutorial.text_reward import load_or_train_reward_model, reward_scores

    rm, rm_tok = load_or_train_reward_model(progress=False)

    def learned_rm(prompts, completions, **kwargs):
        return reward_scores(rm, rm_tok, prompts, completions).tolist()

    return learned_rm


def common_args(args) -> dict:
    """Trainer settings shared by the three TRL configs (CPU-safe when --cpu)."""
    kw = dict(output_dir=args.output_dir, max_steps=args.max_steps, per_device_train_batch_size=args.batch_size,
              logging_steps=1, save_strategy="no", report_to="none", seed=args.seed, disable_dropout=True,
              bf16=False, fp16=False, dataloader_num_workers=0)  # gradient checkpointing stays off (default)
    if args.cpu:
        kw["use_cpu"] = True
    else:
        import torch

        kw["bf16"] = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return kw


def build_trainer(args, model, tokenizer, rows):
    """The TRL trainer for ``args.algo`` on the course's data and reward."""
    from datasets import Dataset

    if args.algo == "dpo":
        from trl import DPOConfig, DPOTrainer

        cfg = DPOConfig(**common_args(args), learning_rate=args.learning_rate or 5e-5,
                        beta=0.1 if args.beta is None else args.beta, max_length=64 if args.tiny else 256)
        data = Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
        return DPOTrainer(model=model, args=cfg, train_dataset=data, processing_class=tokenizer)
    prompts = sorted({r["prompt"] for r in rows})
    data = Dataset.from_list([{"prompt": p} for p in prompts])
    kw = dict(**common_args(args), learning_rate=args.learning_rate or 3e-5,
              beta=0.05 if args.beta is None else args.beta, num_generations=args.num_generations,
              max_completion_length=args.max_completion_length, temperature=1.0, top_k=0, top_p=1.0)
    if args.algo == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOTrainer(model=model, reward_funcs=make_reward_fn(args.reward), args=GRPOConfig(**kw),
                           train_dataset=data, processing_class=tokenizer)
    from trl import RLOOConfig, RLOOTrainer

    return RLOOTrainer(model=model, reward_funcs=make_reward_fn(args.reward), args=RLOOConfig(**kw),
                       train_dataset=data, processing_class=tokenizer)


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.max_steps < 1 or args.batch_size < 1:
        raise SystemExit("--max-steps and --batch-size must be >= 1")
    if args.algo != "dpo" and args.batch_size % args.num_generations:
        raise SystemExit(f"--batch-size ({args.batch_size}) must be a multiple of --num-generations ({args.num_generations})")
    model, tokenizer = load_policy(args)
    model.train()
    rows = load_rows(args)
    trainer = build_trainer(args, model, tokenizer, rows)
    trainer.train()
    history = trainer.state.log_history
    if trainer.accelerator.is_main_process:
        Path(args.output_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_dir) / "log_history.json").write_text(json.dumps(history, indent=1))
        print(json.dumps(history[-1]))
    return history


if __name__ == "__main__":
    sys.exit(main() and 0)
