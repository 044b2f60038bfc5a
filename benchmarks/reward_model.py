"""Our text reward-model training (rlhf_tutorial.text_reward) vs TRL's RewardTrainer, in one run.

Both train the same GPT2ForSequenceClassification (one output, initialised from the course's cached
SFT model with the same seed) on the same 2,000 TRL-format preference pairs of notebook 08, with the
same Bradley–Terry loss, batch (32 pairs), epochs (2), AdamW learning rate (linear decay to 0, no
warm-up, no weight decay, gradient clipping at 1.0) and one torch thread. TRL runs on CPU with
``bf16=False`` and ``gradient_checkpointing=False`` (its defaults are meant for GPUs). Printed: the
training wall time and pairs/s of each, the held-out pairwise accuracy of each against the noiseless
gold human (500 test pairs of other prompts; clear pairs |Δgold| > 0.5, and all non-tied pairs), and
the throughput ratios ours / TRL (higher is better for us). Throughput is computed from the
process's CPU time (``time.process_time``, all threads) as well as from wall time: on a machine
shared with other jobs the wall time of two back-to-back runs is dominated by the others' load,
while the CPU time each trainer needs stays put.

    pip install -e ".[bench]"        # adds trl (and accelerate)
    python benchmarks/reward_model.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings

import numpy as np
import torch

from rlhf_tutorial import text as T
from rlhf_tutorial import text_reward as R

MIN_GAP = 0.5


def accuracy(model, tok, rows) -> tuple[float, float]:
    prompts = [r["prompt"] for r in rows]
    chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    rc = R.reward_scores(model, tok, prompts, chosen, normalize=False)
    rr = R.reward_scores(model, tok, prompts, rejected, normalize=False)
    gap = T.gold_score(prompts, chosen) - T.gold_score(prompts, rejected)
    agree = (rc > rr) == (gap > 0)
    return float(agree[gap.abs() > MIN_GAP].float().mean()), float(agree[gap != 0].float().mean())


def run_ours(sft, tok, rows, cfg: R.RewardConfig, seed: int):
    model = R.build_reward_model(sft, tok, seed=seed)
    start, cpu = time.perf_counter(), time.process_time()
    train_cfg = cfg.train_config()
    R.train_reward_model(model, tok, rows, config=R.RewardTrainConfig(epochs=train_cfg.epochs, batch_size=train_cfg.batch_size,
                                                                      lr=train_cfg.lr, seed=seed), progress=False)
    return model, time.perf_counter() - start, time.process_time() - cpu


def run_trl(sft, tok, rows, cfg: R.RewardConfig, seed: int):
    import datasets
    from transformers.utils import logging as hf_logging
    from trl import RewardConfig, RewardTrainer

    hf_logging.set_verbosity_error()
    model = R.build_reward_model(sft, tok, seed=seed)
    model.train()
    ds = datasets.Dataset.from_list([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in rows])
    with tempfile.TemporaryDirectory() as out:
        args = RewardConfig(
            output_dir=out, per_device_train_batch_size=cfg.batch_size, num_train_epochs=cfg.epochs,
            learning_rate=cfg.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0, max_grad_norm=1.0,
            bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, report_to="none", save_strategy="no",
            logging_strategy="no", disable_tqdm=True, seed=seed, data_seed=seed, max_length=model.config.n_positions,
            dataloader_num_workers=0, center_rewards_coefficient=None,
        )
        prep = time.process_time()
        trainer = RewardTrainer(model=model, args=args, train_dataset=ds, processing_class=tok)  # tokenizes the rows
        start, cpu = time.perf_counter(), time.process_time()
        prep = cpu - prep
        trainer.train()
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    model.eval()
    return model, seconds, cpu_seconds, prep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    import transformers
    import trl

    cfg = R.RewardConfig()
    sft, tok = T.load_or_train_sft(cfg.text)
    prefs = R.load_or_make_preferences(cfg)
    train, test = prefs["train"], prefs["test"]
    n = len(train) * cfg.epochs
    print(f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, trl {trl.__version__}, {args.threads} thread(s); {len(train)} pairs x "
          f"{cfg.epochs} epochs, batch {cfg.batch_size}, lr {cfg.lr}")
    print("| seed | ours wall s | TRL wall s | ours CPU s | TRL CPU s (+ data prep) | ours pairs/CPU-s | TRL pairs/CPU-s | "
          "throughput ratio (CPU) | ratio incl. TRL's data prep | ratio (wall) | ours acc (clear / all) | "
          "TRL acc (clear / all) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for seed in args.seeds:
        m_ours, w_ours, c_ours = run_ours(sft, tok, train, cfg, seed)
        m_trl, w_trl, c_trl, p_trl = run_trl(sft, tok, train, cfg, seed)
        a_ours, a_trl = accuracy(m_ours, tok, test), accuracy(m_trl, tok, test)
        rows.append((w_ours, w_trl, c_ours, c_trl, p_trl, a_ours, a_trl))
        print(f"| {seed} | {w_ours:.1f} | {w_trl:.1f} | {c_ours:.1f} | {c_trl:.1f} (+{p_trl:.1f}) | {n / c_ours:.1f} | "
              f"{n / c_trl:.1f} | {c_trl / c_ours:.2f} | {(c_trl + p_trl) / c_ours:.2f} | {w_trl / w_ours:.2f} | "
              f"{a_ours[0]:.3f} / {a_ours[1]:.3f} | {a_trl[0]:.3f} / {a_trl[1]:.3f} |", flush=True)
    med = [float(np.median([r[i] for r in rows])) for i in range(5)]
    acc = [float(np.median([r[i][j] for r in rows])) for i in (5, 6) for j in (0, 1)]
    print(f"| **median** | {med[0]:.1f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.1f} (+{med[4]:.1f}) | {n / med[2]:.1f} | "
          f"{n / med[3]:.1f} | {med[3] / med[2]:.2f} | {(med[3] + med[4]) / med[2]:.2f} | {med[1] / med[0]:.2f} | "
          f"{acc[0]:.3f} / {acc[1]:.3f} | {acc[2]:.3f} / {acc[3]:.3f} |")


if __name__ == "__main__":
    main()
