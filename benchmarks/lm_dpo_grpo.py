"""Our DPO / GRPO / RLOO (rlhf_tutorial.dpo, rlhf_tutorial.grpo) vs TRL's trainers, in one run.

Same model (the course's tiny GPT-2 shape: 4 layers, 128 wide, 512-token BPE vocabulary, context
64; fixed random weights so no training is needed first), same data, same batch, one torch thread:

- **DPO**: ``train_dpo`` vs ``trl.DPOTrainer`` on the same TRL-format pairs, batch 16 pairs,
  β = 0.1, max length 64. Reported: pairs per second of training (the reference log-probs
  included for both; TRL's tokenization in ``__init__`` excluded, as our tokenization is).
- **GRPO / RLOO**: ``train_group_rl`` vs ``trl.GRPOTrainer`` / ``trl.RLOOTrainer``: 16 prompts ×
  4 generations = 64 completions of 24 new tokens per step, β = 0.05 (a reference model in both),
  one gradient step per generation batch. Reported: median seconds per step after the first.

    pip install trl                         # (accelerate comes with it)
    python benchmarks/lm_dpo_grpo.py --pairs 512 --steps 6

Ratios are ours / TRL: < 1 means ours takes less time per step; > 1 for pairs/s means ours is faster.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from rlhf_tutorial import text as T  # noqa: E402
from rlhf_tutorial.dpo import DPOConfig, train_dpo  # noqa: E402
from rlhf_tutorial.grpo import GroupRLConfig, train_group_rl  # noqa: E402

_MODEL_DIR = None


def make_model(seed: int = 0, kernel: str = "user"):
    """The course's model shape with fixed random weights, loaded from a folder (TRL re-loads its
    reference model from the policy's ``name_or_path``).

    ``kernel="same"`` loads a copy whose ``config.json`` says ``activation_function="gelu_pytorch_tanh"``:
    the one line a TRL user changes to get the fused tanh-GELU our trainers use (``fused_gelu=True``),
    so policy and reference both run it. ``"user"``: GPT-2's default ``gelu_new``, as TRL runs it out of the box.
    """
    global _MODEL_DIR
    import json
    import shutil

    if _MODEL_DIR is None:
        import tempfile

        tok = T.load_or_train_tokenizer()
        cfg = T.TextConfig()
        model = T.build_model(tok, cfg.n_positions, cfg.n_embd, cfg.n_layer, cfg.n_head, seed=seed)
        _MODEL_DIR = T.save_model(model, tok, os.path.join(tempfile.mkdtemp(), "tiny"))
        fused = str(_MODEL_DIR) + "-fused"
        shutil.copytree(_MODEL_DIR, fused)
        conf = json.loads(open(os.path.join(fused, "config.json")).read())
        conf["activation_function"] = "gelu_pytorch_tanh"
        open(os.path.join(fused, "config.json"), "w").write(json.dumps(conf))
    return T.load_model(_MODEL_DIR if kernel == "user" else str(_MODEL_DIR) + "-fused")


def make_pairs(n: int, seed: int = 0) -> list[dict]:
    pairs = T.make_sft_pairs(2 * n, seed=seed)
    return [{"prompt": pairs[i][0], "chosen": pairs[i][1], "rejected": pairs[n + i][1]} for i in range(n)]


def length_reward(prompts, completions, **kwargs):
    """A cheap reward so the timings measure the trainers, not the reward."""
    return [float(len(c)) / 50 for c in completions]


def _step_timer():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times = [time.perf_counter()]

        def on_step_end(self, args, state, control, **kwargs):
            self.times.append(time.perf_counter())

    return StepTimer()


def _common(out: str, steps: int, bs: int) -> dict:
    return dict(output_dir=out, max_steps=steps, per_device_train_batch_size=bs, logging_steps=1, save_strategy="no",
                report_to="none", use_cpu=True, bf16=False, seed=0, disable_dropout=True, dataloader_num_workers=0)


def bench_dpo(rows, batch: int, out: str, kernel: str = "user") -> tuple[float, float]:
    from datasets import Dataset
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    model, tok = make_model()
    _, hist = train_dpo(model, tok, rows, DPOConfig(beta=0.1, per_device_train_batch_size=batch, max_length=64),
                        progress=False)
    ours = hist["pairs_per_second"][0]
    model, tok = make_model(kernel=kernel)
    cfg = TRLDPOConfig(**_common(out, len(rows) // batch, batch), beta=0.1, max_length=64, learning_rate=5e-5)
    tr = DPOTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows), processing_class=tok)
    t0 = time.perf_counter()
    tr.train()
    theirs = (len(rows) // batch) * batch / (time.perf_counter() - t0)
    return ours, theirs


def bench_group(estimator: str, prompts, steps: int, out: str, kernel: str = "user") -> tuple[float, float]:
    from datasets import Dataset

    model, tok = make_model()
    cfg = GroupRLConfig(estimator=estimator, num_generations=4, prompts_per_step=16, max_steps=steps,
                        max_completion_length=24, beta=0.05, learning_rate=3e-5)
    _, h = train_group_rl(model, tok, prompts, lambda p, c: torch.tensor(length_reward(p, c)), cfg, progress=False)
    ours = statistics.median(b - a for a, b in zip(h["time"][:-1], h["time"][1:]))
    model, tok = make_model(kernel=kernel)
    kw = dict(**_common(out, steps, 64), num_generations=4, max_completion_length=24, beta=0.05, learning_rate=3e-5,
              temperature=1.0, top_k=0, top_p=1.0)
    if estimator == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        tr = GRPOTrainer(model=model, reward_funcs=length_reward, args=GRPOConfig(**kw),
                         train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), processing_class=tok)
    else:
        from trl import RLOOConfig, RLOOTrainer

        tr = RLOOTrainer(model=model, reward_funcs=length_reward, args=RLOOConfig(**kw),
                         train_dataset=Dataset.from_list([{"prompt": p} for p in prompts]), processing_class=tok)
    timer = _step_timer()
    tr.add_callback(timer)
    tr.train()
    t = timer.times
    theirs = statistics.median(b - a for a, b in zip(t[1:-1], t[2:]))
    return ours, theirs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=512, help="DPO pairs (one epoch)")
    ap.add_argument("--batch", type=int, default=16, help="DPO pairs per step")
    ap.add_argument("--steps", type=int, default=6, help="GRPO/RLOO steps (the first is not timed)")
    ap.add_argument("--only", choices=["dpo", "grpo", "rloo"], nargs="*", default=["dpo", "grpo", "rloo"])
    ap.add_argument("--out", default="/tmp/lm_dpo_grpo_bench")
    ap.add_argument("--kernels", nargs="+", choices=["user", "same"], default=["user", "same"],
                    help="TRL as a user runs it (gelu_new) and/or with our fused tanh-GELU (gelu_pytorch_tanh)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (each: ours vs TRL, every kernel)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    import transformers
    import trl

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}, 1 torch thread")
    rows = make_pairs(args.pairs)
    prompts = T.make_prompts(64, seed=0)
    print("load average before:", os.getloadavg() if hasattr(os, "getloadavg") else "n/a", flush=True)
    table = []
    for rnd in range(args.rounds):  # interleaved: a busy spell of a shared machine hits every row
        for kernel in args.kernels:
            what = "TRL as a user runs it (gelu_new)" if kernel == "user" else "TRL with our kernel (gelu_pytorch_tanh)"
            if "dpo" in args.only:
                ours, theirs = bench_dpo(rows, args.batch, args.out, kernel)
                table.append((rnd, f"DPO pairs/s (higher is better), vs {what}", ours, theirs, ours / theirs))
            for est in ("grpo", "rloo"):
                if est in args.only:
                    ours, theirs = bench_group(est, prompts, args.steps, args.out, kernel)
                    table.append((rnd, f"{est.upper()} s/step, 64 x 24 tokens (lower is better), vs {what}",
                                  ours, theirs, ours / theirs))
            print(table[-1], flush=True)
    print("load average after:", os.getloadavg() if hasattr(os, "getloadavg") else "n/a")
    print("\n| round | measure | ours | TRL | ours / TRL |\n|---|---|---|---|---|")
    for rnd, name, a, b, r in table:
        print(f"| {rnd} | {name} | {a:.3g} | {b:.3g} | {r:.2f} |")


if __name__ == "__main__":
    main()
