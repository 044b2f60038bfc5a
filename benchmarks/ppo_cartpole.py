"""Our PPO (rlhf_tutorial.ppo) vs Stable-Baselines3 PPO on CartPole-v1, in one run.

Both use rl-zoo's tuned CartPole hyperparameters (8 envs, n_steps 32, batch 256, λ 0.8, γ 0.98,
20 epochs, lr 1e-3 and clip 0.2 both linearly annealed, 64x64 tanh actor and critic, no entropy
bonus) and one torch thread. Every 4,096 env steps both are evaluated on the same 10 seeded
episodes with the deterministic (greedy) policy; evaluation time is excluded from the wall time.
Printed: env steps and training wall time to the first evaluation mean >= 475, per seed, and the
ratios ours / SB3 (lower is better).

    pip install -e ".[bench]"
    python benchmarks/ppo_cartpole.py --seeds 0 1 2 3 4
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from rlhf_tutorial.ppo import PPOConfig, train_ppo
from rlhf_tutorial.rl import evaluate_policy

TARGET, EVAL_EVERY, EVAL_EPISODES = 475.0, 4096, 10


def run_ours(seed: int, max_steps: int):
    cfg = PPOConfig(seed=seed, total_timesteps=max_steps, eval_every=EVAL_EVERY, eval_episodes=EVAL_EPISODES,
                    stop_at_return=TARGET, torch_threads=1)
    _, h = train_ppo(cfg, progress=False)
    for step, ret, secs in zip(h["eval_step"], h["eval_return"], h["eval_train_seconds"]):
        if ret >= TARGET:
            return step, secs
    return None, h["train_seconds"][-1]


def run_sb3(seed: int, max_steps: int):
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)

    def linear(v):
        return lambda progress_remaining: progress_remaining * v

    class EvalStop(BaseCallback):
        def __init__(self):
            super().__init__()
            self.next_eval, self.eval_seconds, self.hit = EVAL_EVERY, 0.0, None

        def _on_step(self) -> bool:
            if self.num_timesteps < self.next_eval:
                return True
            self.next_eval += EVAL_EVERY
            t0 = time.perf_counter()
            mean = evaluate_policy(lambda o: self.model.predict(o, deterministic=True)[0], "CartPole-v1",
                                   EVAL_EPISODES, seed=10_000 + seed).mean()
            self.eval_seconds += time.perf_counter() - t0
            if mean >= TARGET:
                self.hit = self.num_timesteps
                return False
            return True

    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    model = PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20,
                ent_coef=0.0, learning_rate=linear(1e-3), clip_range=linear(0.2), seed=seed, device="cpu", verbose=0)
    cb = EvalStop()
    model.learn(total_timesteps=max_steps, callback=cb)
    secs = time.perf_counter() - start - cb.eval_seconds
    return cb.hit, secs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-steps", type=int, default=200_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# PPO on CartPole-v1 to eval mean >= {TARGET:g}  ({time.strftime('%Y-%m-%d')}, {platform.machine()}, "
          f"{os.cpu_count()} cores, torch {torch.__version__}, 1 thread)")
    print("| seed | ours steps | SB3 steps | ours s | SB3 s | time ratio | steps ratio |")
    print("|---|---|---|---|---|---|---|")
    rows = []
    for seed in args.seeds:
        o_steps, o_secs = run_ours(seed, args.max_steps)
        s_steps, s_secs = run_sb3(seed, args.max_steps)
        rows.append((o_steps, s_steps, o_secs, s_secs))
        fmt = lambda v: "not reached" if v is None else str(v)  # noqa: E731
        tr = o_secs / s_secs if (o_steps and s_steps) else float("nan")
        sr = o_steps / s_steps if (o_steps and s_steps) else float("nan")
        print(f"| {seed} | {fmt(o_steps)} | {fmt(s_steps)} | {o_secs:.1f} | {s_secs:.1f} | {tr:.2f} | {sr:.2f} |", flush=True)
    ok = [r for r in rows if r[0] and r[1]]
    if ok:
        o = np.array(ok, dtype=float)
        # two different medians: of each column (ratios of the median steps and times), and of the
        # per-seed ratios (the headline: what a typical seed sees)
        print(f"| **median of each column** | {np.median(o[:, 0]):.0f} | {np.median(o[:, 1]):.0f} | "
              f"{np.median(o[:, 2]):.1f} | {np.median(o[:, 3]):.1f} | {np.median(o[:, 2]) / np.median(o[:, 3]):.2f} | "
              f"{np.median(o[:, 0]) / np.median(o[:, 1]):.2f} |")
        per_step = (o[:, 2] / o[:, 0]) / (o[:, 3] / o[:, 1])
        print(f"| **median of the per-seed ratios** | | | | | {np.median(o[:, 2] / o[:, 3]):.2f} | "
              f"{np.median(o[:, 0] / o[:, 1]):.2f} |")
        print(f"training time per env step, ours / SB3: median {np.median(per_step):.2f} "
              f"(per seed {', '.join(f'{r:.2f}' for r in per_step)})")
    print(f"reached by ours in {sum(r[0] is not None for r in rows)}/{len(rows)} seeds, "
          f"by SB3 in {sum(r[1] is not None for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()
