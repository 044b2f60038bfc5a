"""Online preference RL (notebook 06) vs true-reward PPO on the course task, in one run.

True return reached (greedy policy, 10 evaluation episodes, max 200) after the same env steps,
for a grid of label budgets x query methods x seeds, next to PPO on the true reward
(``TASK_PPO_CONFIG``, the upper bound) and a random policy (the lower bound); and true return
against wall time. Every run uses one torch thread; ``--workers`` runs that many at once.

    python benchmarks/preference_rl.py --seeds 0 1 2 --budgets 100 250 500 --workers 2
    python benchmarks/preference_rl.py --seeds 0 1 2 3 4 --budgets 500 --methods disagreement

Also tries a published implementation (``imitation``'s ``PreferenceComparisons``) with
``--imitation``; see benchmarks/README.md for why it is not in the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace

import numpy as np


def true_ppo(seed: int, steps: int) -> dict:
    import torch

    from rlhf_tutorial.envs import TASK_PPO_CONFIG
    from rlhf_tutorial.ppo import train_ppo
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    _, h = train_ppo(replace(TASK_PPO_CONFIG, seed=seed, total_timesteps=steps), progress=False)
    return {"kind": "true-reward PPO", "seed": seed, "final": h["eval_return"][-1], "seconds": time.perf_counter() - t0,
            "eval_step": h["eval_step"], "eval_return": h["eval_return"], "eval_seconds": h["eval_train_seconds"]}


def random_policy_return(seed: int) -> float:
    from rlhf_tutorial.envs import ENV_ID, random_policy
    from rlhf_tutorial.rl import evaluate_policy
    return float(evaluate_policy(random_policy(seed), ENV_ID, 10, seed=10_000 + seed).mean())


def loop(seed: int, budget: int, method: str, steps: int, overrides: dict) -> dict:
    import torch

    from rlhf_tutorial.rlhf import PreferenceLoopConfig, run_preference_loop
    torch.set_num_threads(1)
    cfg = PreferenceLoopConfig(seed=seed, label_budget=budget, query_method=method, total_timesteps=steps, **overrides)
    _, _, h = run_preference_loop(cfg, progress=False)
    return {"kind": f"{method}, {budget}", "seed": seed, "budget": budget, "method": method,
            "final": h["final_return"], "seconds": h["seconds"], "restarts": len(h.get("restarts", [])),
            "eval_step": h["eval_step"], "eval_return": h["eval_return"], "eval_seconds": h["eval_seconds"]}


def _call(job):
    fn, args = job
    return fn(*args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budgets", type=int, nargs="+", default=[100, 250, 500])
    ap.add_argument("--methods", nargs="+", default=["disagreement", "random"])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--workers", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    ap.add_argument("--set", nargs="*", default=[], help="PreferenceLoopConfig overrides, key=json (e.g. restart_margin=null)")
    ap.add_argument("--json", default=None, help="also write every run to this JSON file")
    ap.add_argument("--imitation", action="store_true", help="try imitation's PreferenceComparisons too")
    ap.add_argument("--skip", nargs="*", default=[], help="runs to leave out, as method:budget (e.g. disagreement:500)")
    ap.add_argument("--no-ppo", action="store_true", help="leave out true-reward PPO (e.g. when merging)")
    ap.add_argument("--merge", nargs="*", default=[], help="also report the runs of these --json files")
    args = ap.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}

    old = [r for path in args.merge for r in json.load(open(path))["runs"]]
    have = {(r["kind"], r["seed"]) for r in old}
    jobs = [(true_ppo, (s, args.steps)) for s in args.seeds if ("true-reward PPO", s) not in have and not args.no_ppo]
    jobs += [(loop, (s, b, m, args.steps, overrides)) for b in args.budgets for m in args.methods for s in args.seeds
             if f"{m}:{b}" not in args.skip and (f"{m}, {b}", s) not in have]
    t0 = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(args.workers) as pool:
        for fut in as_completed([pool.submit(_call, j) for j in jobs]):
            runs.append(fut.result())
            r = runs[-1]
            print(f"done: {r['kind']}, seed {r['seed']}: {r['final']:.1f} ({r['seconds']:.0f} s)", flush=True)
            if args.json:  # one line per finished run, so a long grid can be read while it runs
                with open(args.json + "l", "a") as f:
                    f.write(json.dumps(r) + "\n")
    wall = time.perf_counter() - t0
    runs += [r for r in old if r["seed"] in args.seeds]
    rand = {s: random_policy_return(s) for s in args.seeds}
    ppo = {r["seed"]: r["final"] for r in runs if r["kind"] == "true-reward PPO"}
    if args.no_ppo and not ppo:
        ppo = {s: float("nan") for s in args.seeds}

    print(f"# {platform.machine()}, {os.cpu_count()} cores, {args.workers} runs at a time, {wall / 60:.1f} min in all")
    print(f"\nTrue return after {args.steps:,} env steps (greedy policy, 10 episodes, max 200); "
          f"share = ours / true-reward PPO of the same seed.\n")
    seeds = " / ".join(str(s) for s in args.seeds)
    print(f"| run | seeds {seeds} | mean | share of true-reward PPO | min share | s per run |")
    print("|---|---|---|---|---|---|")
    kinds = ["true-reward PPO"] + [f"{m}, {b}" for b in args.budgets for m in args.methods]
    for kind in kinds:
        rs = sorted((r for r in runs if r["kind"] == kind), key=lambda r: r["seed"])
        if not rs:
            continue
        vals = [r["final"] for r in rs]
        share = [r["final"] / ppo[r["seed"]] for r in rs]
        extra = "" if kind == "true-reward PPO" else f" ({sum(r['restarts'] for r in rs)} restarts)"
        print(f"| {kind}{extra} | {' / '.join(f'{v:.1f}' for v in vals)} | {np.mean(vals):.1f} | "
              f"{100 * np.mean(share):.1f} % | {100 * min(share):.1f} % | {np.mean([r['seconds'] for r in rs]):.0f} |")
    print(f"| random policy | {' / '.join(f'{rand[s]:.1f}' for s in args.seeds)} | {np.mean(list(rand.values())):.1f} | | | |")

    print("\nTrue return against wall time (mean over seeds, at each evaluation; loop times include labelling "
          "and reward fitting):\n")
    print("| run | " + " | ".join(f"{k // 1000}k steps" for k in range(20_000, args.steps + 1, 20_000)) + " |")
    print("|---|" + "---|" * len(range(20_000, args.steps + 1, 20_000)))
    for kind in kinds:
        rs = [r for r in runs if r["kind"] == kind]
        if not rs:
            continue
        cells = []
        for k in range(20_000, args.steps + 1, 20_000):
            rets, secs = [], []
            for r in rs:
                i = int(np.searchsorted(r["eval_step"], k))
                if i < len(r["eval_step"]):
                    rets.append(r["eval_return"][i])
                    secs.append(r["eval_seconds"][i])
            cells.append(f"{np.mean(rets):.0f} @ {np.mean(secs):.0f} s" if rets else "")
        print(f"| {kind} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"runs": runs, "random": rand, "args": vars(args), "wall": wall}, f)
    if args.imitation:
        try_imitation()


def try_imitation() -> None:
    try:
        import imitation  # noqa: F401
        from imitation.algorithms import preference_comparisons  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - report why, in one line
        print(f"\nimitation: not usable here ({type(exc).__name__}: {exc}); see benchmarks/README.md")
        return
    print("\nimitation imports; see benchmarks/README.md for the comparison.")


if __name__ == "__main__":
    main()
