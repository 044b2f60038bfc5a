"""Seconds per PPO iteration on a language model: rlhf_tutorial.lm_rlhf vs TRL 1.12's PPOTrainer.

Both trainers get the same tiny GPT-2 policy (the course's shape: 4 layers, 128 wide, vocab 512),
the same reward model and value model (a GPT2ForSequenceClassification of that shape), the same
64 prompts per iteration × at most 24 new tokens, 4 PPO epochs × 4 minibatches, temperature 1,
stop at EOS, and one torch thread. TRL's PPOTrainer was removed in TRL 1.13, so it runs from a
separate virtual environment (see benchmarks/README.md) as a subprocess of this script:

    python -m venv --system-site-packages /tmp/trl112
    /tmp/trl112/bin/pip install trl==1.12.0 torch==<the installed torch version>
    python benchmarks/lm_rlhf.py --trl-python /tmp/trl112/bin/python

Rows: ours with its default critic (a value head on the policy's trunk: one forward pass per
minibatch), ours with a separate value network (what TRL does: policy and critic forward passes),
and TRL. The first ``--warmup`` iterations are not timed. Other trainers (DPO, GRPO/RLOO) can be
added to ``ROWS`` below: a row is a function ``(workdir, args) -> list of seconds per iteration``
(or per step), run in this process or, for a foreign library, through ``_run_worker``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TQDM_DISABLE", "1")  # no weight-loading progress bars in the table output

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


# --------------------------------------------------------------------------- shared setup
def make_assets(workdir: Path, args) -> None:
    """Tokenizer, policy, reward model and prompts saved to ``workdir`` (both sides load the same files)."""
    import torch
    from transformers import GPT2ForSequenceClassification

    from rlhf_tutorial import text

    tok = text.load_or_train_tokenizer()
    policy = text.build_model(tok, n_positions=64, n_embd=args.n_embd, n_layer=args.n_layer, n_head=4, seed=0)
    cfg = copy.deepcopy(policy.config)
    cfg.num_labels = 1
    torch.manual_seed(1)
    rm = GPT2ForSequenceClassification(cfg)
    policy.save_pretrained(workdir / "policy")
    rm.save_pretrained(workdir / "reward")
    tok.save_pretrained(workdir / "policy")
    n = args.batch * (args.iterations + args.warmup)
    prompts = text.make_prompts(n, split="train", seed=0)
    (workdir / "prompts.json").write_text(json.dumps(prompts))


def _load(workdir: Path):
    from transformers import AutoTokenizer, GPT2ForSequenceClassification, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(str(workdir / "policy"))
    policy = GPT2LMHeadModel.from_pretrained(str(workdir / "policy"))
    rm = GPT2ForSequenceClassification.from_pretrained(str(workdir / "reward"))
    prompts = json.loads((workdir / "prompts.json").read_text())
    return tok, policy, rm, prompts


# --------------------------------------------------------------------------- ours
def _ours(workdir: Path, args, separate_critic: bool) -> list[float]:
    import torch

    from rlhf_tutorial.lm_rlhf import LMPPOConfig, train_lm_ppo

    torch.set_num_threads(args.threads)
    tok, policy, rm, prompts = _load(workdir)
    cfg = LMPPOConfig(num_iterations=args.iterations + args.warmup, batch_size=args.batch,
                      response_length=args.response_length, num_ppo_epochs=args.epochs,
                      num_minibatches=args.minibatches, seed=0)
    critic = copy.deepcopy(rm) if separate_critic else None
    stamps = [time.perf_counter()]
    train_lm_ppo(policy, tok, rm, prompts, cfg, critic=critic, progress=False,
                 callback=lambda st: stamps.append(time.perf_counter()))
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])][args.warmup:]


def ours_shared(workdir, args):
    return _ours(workdir, args, separate_critic=False)


def ours_separate(workdir, args):
    return _ours(workdir, args, separate_critic=True)


# --------------------------------------------------------------------------- TRL 1.12 (subprocess)
def trl_ppo_worker(workdir: Path, args) -> list[float]:
    """Runs inside the trl==1.12.0 environment."""
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    torch.set_num_threads(args.threads)
    tok, policy, rm, prompts = _load(workdir)
    tok.padding_side = "left"
    value = copy.deepcopy(rm)
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    ds = Dataset.from_dict({"input_ids": ids})
    n_iter = args.iterations + args.warmup
    cfg = PPOConfig(
        # per_device = the whole batch and no accumulation: each of the num_mini_batches minibatches is one
        # micro-batch with its own optimizer step, as in ours (with gradient_accumulation_steps > 1 accelerate
        # would step only once per that many minibatches)
        output_dir=str(workdir / "trl_out"), per_device_train_batch_size=args.batch,
        gradient_accumulation_steps=1, num_mini_batches=args.minibatches,
        num_ppo_epochs=args.epochs, total_episodes=args.batch * n_iter, response_length=args.response_length,
        local_rollout_forward_batch_size=args.batch, stop_token="eos", temperature=1.0, missing_eos_penalty=1.0,
        kl_coef=0.05, learning_rate=3e-5, bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True,
        report_to=[], num_sample_generations=0, save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0,
        dataloader_num_workers=0,
    )
    stamps = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())

    trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=None, reward_model=rm,
                         train_dataset=ds, value_model=value, eval_dataset=ds.select(range(args.batch)),
                         callbacks=[Clock()])
    trainer.train()
    print(json.dumps({"trl": trl.__version__}), file=sys.stderr)
    return [b - a for a, b in zip(stamps[:-1], stamps[1:])][args.warmup:]


WORKERS = {"trl_ppo": trl_ppo_worker}


def _run_worker(name: str, python: str, workdir: Path, args) -> list[float]:
    cmd = [python, str(Path(__file__).resolve()), "--worker", name, "--workdir", str(workdir)] + _common_argv(args)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"worker {name} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def trl_ppo(workdir, args):
    return _run_worker("trl_ppo", args.trl_python, workdir, args)


# name -> (function, what it is). Add rows for other trainers here (e.g. DPO pairs/s, GRPO steps).
ROWS = {
    "ours (value head on the policy)": ours_shared,
    "ours (separate value network, as TRL)": ours_separate,
    "TRL 1.12 PPOTrainer": trl_ppo,
}


def _common_argv(args) -> list[str]:
    return ["--iterations", str(args.iterations), "--warmup", str(args.warmup), "--batch", str(args.batch),
            "--response-length", str(args.response_length), "--epochs", str(args.epochs),
            "--minibatches", str(args.minibatches), "--threads", str(args.threads), "--n-embd", str(args.n_embd),
            "--n-layer", str(args.n_layer)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=3, help="timed PPO iterations per trainer and round")
    p.add_argument("--warmup", type=int, default=1, help="untimed first iterations")
    p.add_argument("--batch", type=int, default=64, help="prompts per iteration")
    p.add_argument("--response-length", type=int, default=24, help="maximum new tokens")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--minibatches", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds over the rows")
    p.add_argument("--threads", type=int, default=1, help="torch threads for every trainer")
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--trl-python", default="/tmp/trl112/bin/python",
                   help="python of a venv with trl==1.12.0 (the last TRL with PPOTrainer)")
    p.add_argument("--rows", nargs="*", default=None, help="run only the rows whose name contains one of these")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--workdir", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:  # inside a foreign environment: print the timings as JSON
        print(json.dumps(WORKERS[args.worker](Path(args.workdir), args)))
        return

    import platform

    import torch
    import transformers

    with tempfile.TemporaryDirectory() as d:
        workdir = Path(d)
        make_assets(workdir, args)
        results: dict = {}
        rows = {k: v for k, v in ROWS.items() if not args.rows or any(r.lower() in k.lower() for r in args.rows)}
        for rep in range(args.repeats):  # interleaved rounds: a busy spell of a shared machine hits every row
            for name, fn in rows.items():
                if results.get(name, []) is None:
                    continue
                try:
                    secs = fn(workdir, args)
                    results.setdefault(name, []).extend(secs)
                    print(f"round {rep + 1}: {name}: " + ", ".join(f"{x:.2f}" for x in secs) + " s", flush=True)
                except Exception as exc:  # report and go on: one missing environment must not hide the rest
                    print(f"{name}: FAILED ({type(exc).__name__}: {str(exc).strip().splitlines()[-1][:200]})")
                    results[name] = None
        results = {k: v for k, v in results.items() if v}
    print(f"\n{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, transformers "
          f"{transformers.__version__}, {args.threads} thread(s); {args.batch} prompts × ≤{args.response_length} "
          f"tokens, {args.epochs} epochs × {args.minibatches} minibatches, {args.repeats} rounds × "
          f"{args.iterations} timed iterations after {args.warmup} warm-up\n")
    trl = next((v for k, v in results.items() if k.startswith("TRL")), None)
    trl_med = sorted(trl)[len(trl) // 2] if trl else None
    print("| trainer | s / iteration (median) | min | max | ratio to TRL |")
    print("|---|---|---|---|---|")
    for name, secs in results.items():
        med = sorted(secs)[len(secs) // 2]
        ratio = f"{med / trl_med:.2f}" if trl_med else "–"
        print(f"| {name} | {med:.2f} | {min(secs):.2f} | {max(secs):.2f} | {ratio} |")


if __name__ == "__main__":
    main()
