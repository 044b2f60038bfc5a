"""Ratings and comments in notebook 06's online loop at equal human time: naive vs calibrated mix (issue 15).

Three arms of ``rlhf.run_preference_loop`` with notebook 06's loop settings (``PreferenceLoopConfig``
defaults: 100k env steps, ε = 10 %, segments of 50 steps, active queries), all given the human time
that notebook 06's comparisons-only run costs (500 comparisons × 4 s = 2,000 s, ``feedback.LABEL_SECONDS``):

- ``comparisons``: 500 comparisons (notebook 06's run);
- ``naive``: a third of the time on each kind (111 ratings at 6 s, 166 comparisons at 4 s, 33 comments
  at 20 s), the seed's mixed loss (λ = 1, MSE on the rater's scale; ``mix_weighting="naive"``);
- ``calibrated``: the same labels, notebook 05's calibrated mix (``mix_weighting="calibrated"``: a link
  per kind, a Bradley-Terry temperature, λ_k = 1/(2σ_k²) with σ_k² the held-out residual).

The loop's labelers are its own (``ComparisonLabeler(ε)``, ``ScoreLabeler``, ``LanguageLabeler``;
the loop takes no ``feedback.realistic_raters``); comments are read by ``language.ReadingScorer``,
notebook 05's scorer. The loop splits each phase's labels as ``floor(share · n)`` ratings and comments
(the rest comparisons), so the shares passed as ``feedback_mix`` are the ones whose *realized* counts
come closest to 111 / 166 / 33 (:func:`mix_plan`). One run at a time, one torch thread:

    python benchmarks/loop_mix.py --seeds 0 1 2 --results benchmarks/results/loop_mix.json
    python benchmarks/loop_mix.py --seeds 0 --arms calibrated --steps 30000 --set label_phases=6   # a quick check

The share of true-reward PPO uses ``benchmarks/results/preference_rl.json``'s ``true_ppo`` (same seeds,
same steps); every finished run is merged into ``--results`` at once, keyed by (arm, seed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

import numpy as np

ARMS = ("comparisons", "naive", "calibrated")
KINDS = ("score", "comparison", "language")
COMPARISONS_ONLY = 500  # notebook 06's label budget: the human time every arm gets
HERE = Path(__file__).resolve().parent


def realized_counts(schedule: list[int], mix) -> dict[str, int]:
    """Ratings, comparisons and comments the loop asks for with ``feedback_mix=mix`` (its per-phase floor rule)."""
    share = np.asarray(mix, dtype=float) / float(np.sum(mix))
    n = np.asarray(schedule)
    n_score, n_text = np.floor(share[0] * n).astype(int), np.floor(share[2] * n).astype(int)
    return {"score": int(n_score.sum()), "comparison": int((n - n_score - n_text).sum()), "language": int(n_text.sum())}


def human_seconds(counts: dict[str, int]) -> float:
    from rlhf_tutorial.feedback import label_cost
    return float(sum(label_cost(k, counts[k]) for k in KINDS))


def mix_plan(seconds: float, base) -> dict:
    """Budget and ``feedback_mix`` whose realized counts come closest to a third of ``seconds`` per kind.

    Target per kind: ``feedback.labels_for_seconds(kind, seconds / 3)``. Searched: budgets near the
    target total and shares on a 0.001 grid; the realized human time must not exceed ``seconds``;
    the plan minimizes Σ_k |count_k − target_k| · LABEL_SECONDS[k] (seconds off target).
    """
    from dataclasses import replace

    from rlhf_tutorial.feedback import LABEL_SECONDS, labels_for_seconds
    from rlhf_tutorial.rlhf import label_schedule
    target = {k: labels_for_seconds(k, seconds / 3) for k in KINDS}
    best = None
    total = sum(target.values())
    for budget in range(total - 5, total + 30):
        schedule = label_schedule(replace(base, label_budget=budget))
        for s in np.arange(0.9, 1.6, 0.01) * target["score"] / total:
            for t in np.arange(0.9, 1.6, 0.01) * target["language"] / total:
                mix = (round(float(s), 4), round(float(1 - s - t), 4), round(float(t), 4))
                counts = realized_counts(schedule, mix)
                if human_seconds(counts) > seconds:
                    continue
                off = sum(abs(counts[k] - target[k]) * LABEL_SECONDS[k] for k in KINDS)
                if best is None or off < best[0]:
                    best = (off, budget, mix, counts)
    _, budget, mix, counts = best
    return {"label_budget": budget, "feedback_mix": list(mix), "counts": counts, "target": target,
            "human_seconds": human_seconds(counts)}


def run_arm(arm: str, seed: int, steps: int, overrides: dict, plan: dict, scorer) -> dict:
    """One loop run of ``arm`` on ``seed``; returns its final true return, label counts and (calibrated) links."""
    import torch

    from rlhf_tutorial.rlhf import PreferenceLoopConfig, run_preference_loop
    torch.set_num_threads(1)
    if arm == "comparisons":
        kw = {"label_budget": overrides.pop("label_budget", COMPARISONS_ONLY)}
    else:
        kw = {"label_budget": plan["label_budget"], "feedback_mix": tuple(plan["feedback_mix"]), "mix_weighting": arm}
    cfg = PreferenceLoopConfig(seed=seed, total_timesteps=steps, **kw, **overrides)
    from rlhf_tutorial.rlhf import label_schedule
    counts = realized_counts(label_schedule(cfg), cfg.feedback_mix)
    (_, ens), h = run_preference_loop(cfg, progress=False, scorer=scorer if arm != "comparisons" else None)
    asked = {"comparison": len(h["query_label"]), "scored": h["labels_used"] - len(h["query_label"])}
    out = {"asked_as_planned": asked == {"comparison": counts["comparison"],
                                         "scored": counts["score"] + counts["language"]}, **asked}
    out.update({"arm": arm, "seed": seed, "steps": steps, "final": round(h["final_return"], 1), "counts": counts,
           "human_seconds": human_seconds(counts), "label_budget": cfg.label_budget,
           "feedback_mix": list(cfg.feedback_mix), "restarts": len(h["restarts"]), "seconds": round(h["seconds"], 1),
           "eval_step": h["eval_step"], "eval_return": [round(x, 1) for x in h["eval_return"]],
                "spearman": [None if math.isnan(x) else round(x, 3) for x in h["spearman"]]})
    if ens.links is not None:
        out["links"] = [{k: round(v, 4) for k, v in lk.summary().items()} for lk in ens.links]
    return out


def merge(path: Path, runs: list[dict], meta: dict) -> dict:
    """Merge finished runs into ``path`` (one entry per arm and seed) and recompute the shares."""
    try:
        res = json.loads(path.read_text())
    except FileNotFoundError:
        res = {"runs": []}
    commands = [c for c in res.get("commands", []) if c != meta["command"]] + [meta["command"]]
    res.update({k: v for k, v in meta.items() if k != "command"}, commands=commands)
    by = {(r["arm"], r["seed"]): r for r in res["runs"]}
    by.update({(r["arm"], r["seed"]): r for r in runs})
    ppo = res.get("true_ppo", {})
    for r in by.values():
        if str(r["seed"]) in ppo:
            r["share_of_true_ppo"] = round(r["final"] / ppo[str(r["seed"])], 3)
    res["runs"] = sorted(by.values(), key=lambda r: (ARMS.index(r["arm"]), r["seed"]))
    path.write_text(json.dumps(res, indent=1) + "\n")
    return res


def table(res: dict) -> str:
    """The per-seed markdown table of a results dict."""
    seeds = sorted({r["seed"] for r in res["runs"]})
    ppo = res.get("true_ppo", {})
    rows = ["| arm | labels (ratings / comparisons / comments) | human s | " +
            " | ".join(f"seed {s}" for s in seeds) + " | mean | share of true-reward PPO |",
            "|---|---|---|" + "---|" * len(seeds) + "---|---|"]
    for arm in ARMS:
        rs = {r["seed"]: r for r in res["runs"] if r["arm"] == arm}
        if not rs:
            continue
        c = next(iter(rs.values()))["counts"]
        vals = [rs[s]["final"] if s in rs else math.nan for s in seeds]
        shares = [rs[s]["final"] / ppo[str(s)] for s in seeds if s in rs and str(s) in ppo]
        rows.append(f"| {arm} | {c['score']} / {c['comparison']} / {c['language']} | "
                    f"{next(iter(rs.values()))['human_seconds']:.0f} | " +
                    " | ".join("" if math.isnan(v) else f"{v:.1f}" for v in vals) +
                    f" | {np.nanmean(vals):.1f} | {100 * np.mean(shares):.1f} % |" if shares else " | |")
    rows.append("| true-reward PPO | | | " + " | ".join(f"{ppo.get(str(s), math.nan):.1f}" for s in seeds) + " | | |")
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--set", nargs="*", default=[], help="PreferenceLoopConfig overrides, key=json")
    ap.add_argument("--results", default=None, help="merge every finished run into this JSON file")
    args = ap.parse_args()
    os.environ.setdefault("RLHF_TORCH_THREADS", "1")
    from rlhf_tutorial.feedback import LABEL_SECONDS, label_cost
    from rlhf_tutorial.language import ReadingScorer
    from rlhf_tutorial.rlhf import PreferenceLoopConfig
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    seconds = label_cost("comparison", COMPARISONS_ONLY)
    plan = mix_plan(seconds, PreferenceLoopConfig(total_timesteps=args.steps, **overrides))
    print(f"# {platform.machine()}, {os.cpu_count()} cores; budget {seconds:.0f} human s; mix plan {plan}", flush=True)
    scorer = ReadingScorer() if set(args.arms) - {"comparisons"} else None
    recorded = json.loads((HERE / "results" / "preference_rl.json").read_text())
    meta = {"about": "benchmarks/loop_mix.py: notebook 06's loop at equal human time; comparisons only vs the naive "
                     "and the calibrated mix of ratings, comparisons and comments (issue 15)",
            "command": "python " + " ".join(["benchmarks/loop_mix.py"] + sys.argv[1:]),
            "label_seconds": LABEL_SECONDS, "human_seconds": seconds, "mix_plan": plan,
            "labelers": "the loop's own: ComparisonLabeler(epsilon=0.1), ScoreLabeler(), LanguageLabeler(); "
                        "comments read by language.ReadingScorer()",
            "true_ppo": recorded["true_ppo"], "random_policy": recorded["random_policy"]}
    runs = []
    for seed in args.seeds:
        for arm in args.arms:
            r = run_arm(arm, seed, args.steps, dict(overrides), plan, scorer)
            runs.append(r)
            print(json.dumps({k: v for k, v in r.items() if k not in ("eval_step", "eval_return")}), flush=True)
            if args.results:
                merge(Path(args.results), [r], meta)
    if args.results:
        print("\n" + table(json.loads(Path(args.results).read_text())))
    else:
        print("\n" + table({"runs": runs, **meta}))


if __name__ == "__main__":
    main()
