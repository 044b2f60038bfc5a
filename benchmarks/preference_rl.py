"""Online preference RL (notebook 06) vs true-reward PPO on the course task, in one run.

True return reached (greedy policy, 10 evaluation episodes, max 200) after the same env steps,
for a grid of label budgets x query methods x seeds, next to PPO on the true reward
(``TASK_PPO_CONFIG``, the upper bound) and a random policy (the lower bound); and true return
against wall time. Every run uses one torch thread; ``--workers`` runs that many at once.

    python benchmarks/preference_rl.py --seeds 0 1 2 --budgets 100 250 500 --workers 2
    python benchmarks/preference_rl.py --seeds 0 1 2 3 4 --budgets 500 --methods disagreement

Also tries a published implementation (``imitation``'s ``PreferenceComparisons``) with
``--imitation``; see benchmarks/README.md for why it is not in the table.

SAC on a learned reward (Pendulum-v1, notebook 06 §6): an ensemble of 3 nets r̂(s) learned from 500
comparisons of a swing-up controller's segments (0-100 % random torques), SAC in
``rlhf.LearnedRewardVectorWrapper``, against SAC on the true reward and random torques:

    python benchmarks/preference_rl.py --sac --seeds 0 1 2 --workers 2

``--results benchmarks/results/preference_rl.json`` merges every finished run into the small
results file notebook 06 reads (label-efficiency runs by (method, budget, seed), SAC runs by seed).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace

import numpy as np

# worker processes start fresh ("spawn"): a forked copy of a process whose torch already runs a pool
# of threads can deadlock
SPAWN = multiprocessing.get_context("spawn")


def true_ppo(seed: int, steps: int) -> dict:
    import torch

    from rlhf_tutorial.ppo import TASK_PPO_CONFIG, train_ppo
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
    _, h = run_preference_loop(cfg, progress=False)
    return {"kind": f"{method}, {budget}", "seed": seed, "budget": budget, "method": method,
            "final": h["final_return"], "seconds": h["seconds"], "restarts": len(h.get("restarts", [])),
            "eval_step": h["eval_step"], "eval_return": h["eval_return"], "eval_seconds": h["eval_seconds"]}


def sac_pendulum(seed: int, labels: int = 500, what: str = "both") -> dict:
    """SAC on r̂ (and on the true reward) on Pendulum-v1; the recipe of notebook 06 §6."""
    import torch

    from rlhf_tutorial import feedback as fb
    from rlhf_tutorial import rlhf, sac
    from rlhf_tutorial.envs import pendulum_swing_up_policy
    from rlhf_tutorial.reward_model import RewardNet
    from rlhf_tutorial.rl import evaluate_policy, make_vec_env
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out = {"kind": "sac", "seed": seed, "labels": labels}
    if what in ("both", "rhat"):
        policies = {f"swing-up, {p:.0%} random": pendulum_swing_up_policy(p, seed + k)
                    for k, p in enumerate((0, .2, .4, .6, .8, 1))}
        pool = rlhf.state_segments(policies, 50, episodes_per_policy=6, seed=seed)
        data = fb.make_comparison_dataset(pool, fb.ComparisonLabeler(epsilon=0.1, seed=seed), labels, seed=seed)
        train, val = data.split(0.2, seed=seed)
        ens = rlhf.RewardEnsemble([RewardNet(3, n_actions=1, use_action=False, obs_scale=[1, 1, 8], seed=seed + k)
                                   for k in range(3)])
        ens.fit(train, val, epochs=100, patience=10, seed=seed)
        ens.fit_normalizers(pool)
        _, h = sac.train_sac(sac.SACConfig(seed=seed), progress=False,
                             envs=lambda n: rlhf.LearnedRewardVectorWrapper(make_vec_env("Pendulum-v1", n), ens))
        out["sac_rhat"] = h["eval_return"][-1]
    if what in ("both", "true"):
        _, h = sac.train_sac(sac.SACConfig(seed=seed), progress=False)
        out["sac_true"] = h["eval_return"][-1]
    rng = np.random.default_rng(seed)
    out["random"] = float(evaluate_policy(lambda o: rng.uniform(-2, 2, (len(o), 1)).astype(np.float32),
                                          "Pendulum-v1", 10, seed=10_000).mean())
    out["seconds"] = time.perf_counter() - t0
    return out


def merge_results(path: str, runs: list, rand: dict) -> None:
    """Merge finished runs into the small results file of notebook 06 (one entry per configuration and seed)."""
    try:
        with open(path) as f:
            res = json.load(f)
    except FileNotFoundError:
        res = {"label_efficiency": [], "true_ppo": {}, "random_policy": {}, "sac_pendulum": []}
    eff = {(r["method"], r["budget"], r["seed"]): r for r in res["label_efficiency"]}
    sacs = {r["seed"]: r for r in res["sac_pendulum"]}
    for r in runs:
        if r["kind"] == "true-reward PPO":
            res["true_ppo"][str(r["seed"])] = round(r["final"], 1)
        elif r["kind"] == "sac":
            old = sacs.get(r["seed"], {})
            new = {**old, **{k: round(v, 1) for k, v in r.items() if k in ("sac_rhat", "sac_true", "random")},
                   "seed": r["seed"], "labels": r["labels"]}
            if "sac_rhat" in new and "sac_true" in new:
                new["normalized"] = round((new["sac_rhat"] - new["random"]) / (new["sac_true"] - new["random"]), 3)
            sacs[r["seed"]] = new
        else:
            eff[(r["method"], r["budget"], r["seed"])] = {"method": r["method"], "budget": r["budget"], "seed": r["seed"],
                                                          "final": round(r["final"], 1), "restarts": r["restarts"]}
    res["random_policy"].update({str(k): round(v, 1) for k, v in rand.items()})
    res["label_efficiency"] = sorted(eff.values(), key=lambda r: (r["method"], r["budget"], r["seed"]))
    res["sac_pendulum"] = sorted(sacs.values(), key=lambda r: r["seed"])
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
        f.write("\n")


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
    ap.add_argument("--sac", action="store_true", help="run SAC on a learned reward (Pendulum-v1) instead of the loop")
    ap.add_argument("--sac-part", default="both", choices=("both", "rhat", "true"), help="which SAC runs")
    ap.add_argument("--results", default=None, help="merge the finished runs into this results file (notebook 06)")
    args = ap.parse_args()
    if args.sac:
        return main_sac(args)
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}

    old = [r for path in args.merge for r in json.load(open(path))["runs"]]
    have = {(r["kind"], r["seed"]) for r in old}
    jobs = [(true_ppo, (s, args.steps)) for s in args.seeds if ("true-reward PPO", s) not in have and not args.no_ppo]
    jobs += [(loop, (s, b, m, args.steps, overrides)) for b in args.budgets for m in args.methods for s in args.seeds
             if f"{m}:{b}" not in args.skip and (f"{m}, {b}", s) not in have]
    t0 = time.perf_counter()
    runs = []
    with ProcessPoolExecutor(args.workers, mp_context=SPAWN) as pool:
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
    if args.results:
        merge_results(args.results, runs, rand)
    if args.imitation:
        try_imitation()


def main_sac(args) -> None:
    runs = []
    with ProcessPoolExecutor(args.workers, mp_context=SPAWN) as pool:
        futs = [pool.submit(sac_pendulum, s, 500, part) for s in args.seeds
                for part in (("rhat", "true") if args.sac_part == "both" else (args.sac_part,))]
        for fut in as_completed(futs):
            runs.append(fut.result())
            print(json.dumps(runs[-1]), flush=True)
    by_seed: dict = {}
    for r in runs:
        by_seed.setdefault(r["seed"], {}).update(r)
    print("\n| seed | SAC on r̂ | SAC on the true reward | random torques | normalised return |\n|---|---|---|---|---|")
    for s, r in sorted(by_seed.items()):
        if "sac_rhat" in r and "sac_true" in r:
            norm = (r["sac_rhat"] - r["random"]) / (r["sac_true"] - r["random"])
            print(f"| {s} | {r['sac_rhat']:.1f} | {r['sac_true']:.1f} | {r['random']:.1f} | {norm:.3f} |")
    if args.results:
        merge_results(args.results, runs, {})


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
