"""Mixed feedback that pays off: each kind alone, the naive λ-mix and the calibrated mix, 5 seeds.

Notebook 05's experiment at full size (issue 14). Realistic raters (``feedback.realistic_raters``:
five people per kind, each with their own offset, scale use and drift, coin flips and ties on
comparisons, comments worded in six ways) label the notebook's pool of cart-pole segments. We
train reward nets per setting and report their held-out pairwise accuracy against the TRUE
reward (1,000 pairs of other episodes whose true returns differ by more than 0.5), the mean of
three training runs on the same labels (one run is an anecdote: see ``fit``):

- **equal labels**: 500 labels of one kind, or 500 split into thirds for a mix;
- **equal human time**: the seconds 500 comparisons cost (``feedback.LABEL_SECONDS``), spent on
  one kind, or a third of them on each kind for a mix;
- methods: each kind alone (with the whole budget, and with only the mix's share of it: is
  adding the other kinds better than not asking for them?); the naive mix (λ = 1, 1, 1, no
  links: the seed's recipe); the calibrated mix (a learned link per kind and Bradley-Terry temperature, and λ_k = 1/(2σ_k²) with
  σ_k² each kind's held-out squared residual, the closed-form optimum of Kendall et al. 2018's
  uncertainty weighting); and (on ``--sweep-seeds``) the linked mix with fixed λ = (m, 1, m) for
  m = 1 ... 100, and with m chosen on the held-out *validation* comparisons (never on the test
  pairs; the sweep's test accuracies are kept for notebook 05's picture).

Nothing here is tuned on the test pairs: the raters' noise is fixed in ``feedback`` from published
measurements or stated assumptions, and every training choice is the notebook's.

    python benchmarks/mixed_feedback.py --seeds 0 1 2 3 4 --sweep-seeds 0 1 2 3 4   # ~30 min, one thread
    python benchmarks/mixed_feedback.py --seeds 0 --sweep-seeds                      # one seed, no λ grid
    python benchmarks/mixed_feedback.py --per-rater --seeds 0 1 2 3 4                # ratings z-scored per rater

Writes ``benchmarks/results/mixed_feedback.json`` (read by notebook 05) and prints the table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from rlhf_tutorial import feedback as fb
from rlhf_tutorial import reward_model as rm

P_RANDOM = (0, .2, .4, .5, .6, .7, .8, .9, 1)
SEGMENT_LENGTH, N_LABELS, MIN_GAP = 50, 500, 0.5
TRAIN = dict(epochs=60, batch_size=32, lr=3e-3, val_fraction=0.2, progress=False)
# the λ sweep: the regression kinds' weight m against the comparisons' 1, λ = (m, 1, m), with links
# (uncertainty weighting lands at m ≈ 1/(2σ²) ≈ 20-40 for these raters)
LAMBDA_GRID = tuple((m, 1, m) for m in (1, 3, 10, 30, 100))
RESTARTS = 3   # training runs per method and data seed (different initialisation and minibatch order)
RESULTS = Path(__file__).parent / "results" / "mixed_feedback.json"
METHODS = ("score", "comparison", "language", "naive mix", "calibrated mix")
SHARES = tuple(f"{k}, the mix's share alone" for k in ("score", "comparison", "language"))


def make_pool(seed: int):
    """The notebook's pool: training segments, held-out test pairs."""
    train = fb.collect_segments(fb.controller_pool(seed, P_RANDOM), SEGMENT_LENGTH, episodes_per_policy=14, seed=seed)
    test = fb.collect_segments(fb.controller_pool(seed + 100, P_RANDOM), SEGMENT_LENGTH, episodes_per_policy=8,
                               seed=seed + 100)
    return train, rm.make_eval_pairs(test, 1000, seed=seed, min_gap=MIN_GAP)


def label_everything(train, seed: int, n: int = N_LABELS) -> dict:
    """n labels of each kind from realistic panels (a smaller budget takes the first labels)."""
    order = np.random.default_rng(seed).permutation(len(train))
    segs = [train[i] for i in order[:n]]
    return {"score": fb.make_score_dataset(segs, fb.realistic_raters("score", seed=seed)),
            "comparison": fb.make_comparison_dataset(train, fb.realistic_raters("comparison", seed=seed), n, seed=seed),
            # comments on other segments than the ratings (the mix uses both)
            "language": fb.make_language_dataset([train[i] for i in order[-n:]],
                                                 fb.realistic_raters("language", seed=seed))}


def first(ds, n: int):
    """The first n labels of a dataset (``FeedbackDataset.head``)."""
    return ds.head(n)


def standardize_per_rater(ds: fb.ScoreDataset) -> fb.ScoreDataset:
    """Each rater's ratings as z-scores mapped back to the pooled mean and std (``--per-rater``).

    Raters rate random segments, so the differences between their mean ratings are mostly their
    offsets and scale use, not the segments: a standard correction for rater effects.
    """
    ids = np.asarray(ds.meta["rater_ids"][:len(ds)])
    v = np.asarray(ds.scores, dtype=float)
    out, mu, sd = v.copy(), v.mean(), v.std()
    for j in np.unique(ids):
        m = ids == j
        if m.sum() >= 2 and v[m].std() > 1e-6:
            out[m] = (v[m] - v[m].mean()) / v[m].std() * sd + mu
    return fb.ScoreDataset(ds.segments, list(np.clip(out, 0, 1)), ds.meta)


def run_per_rater(labels: dict, pairs, scorer, seed: int) -> dict:
    """Ratings alone and the calibrated mix with ratings standardized per rater, both budgets."""
    res = {}
    for setting in ("labels", "time"):
        alone, mix = budgets(setting)
        res[setting] = {
            "score, per-rater standardized": fit(standardize_per_rater(first(labels["score"], alone["score"])),
                                                 pairs, scorer, seed, lambdas=(1, 0, 0)),
            "calibrated mix, ratings per-rater standardized": fit(
                [standardize_per_rater(first(labels["score"], mix["score"])),
                 first(labels["comparison"], mix["comparison"]), first(labels["language"], mix["language"])],
                pairs, scorer, seed, lambdas=(1, 1, 1), link=True, weighting="uncertainty")}
    return res


def budgets(setting: str) -> tuple[dict, dict]:
    """(labels of each kind alone, labels of each kind in a mix) for "labels" or "time"."""
    if setting == "labels":
        third = N_LABELS // 3
        return dict.fromkeys(fb.FEEDBACK_KINDS, N_LABELS), {"score": third, "language": third,
                                                           "comparison": N_LABELS - 2 * third}
    seconds = fb.label_cost("comparison", N_LABELS)
    alone = {k: fb.labels_for_seconds(k, seconds) for k in fb.FEEDBACK_KINDS}
    return alone, {k: fb.labels_for_seconds(k, seconds / 3) for k in fb.FEEDBACK_KINDS}


def fit_once(data, pairs, scorer, seed: int, **cfg) -> tuple[float, dict]:
    """One training run (net initialisation, validation split and minibatch order from ``seed``)."""
    net = rm.RewardNet.for_env("FixedHorizonCartPole-v0", seed=seed)
    links = rm.FeedbackLinks() if cfg.get("link") else None
    _, hist = rm.train_reward_model(net, data, rm.RewardTrainConfig(seed=seed, **TRAIN, **cfg), scorer=scorer,
                                    links=links)
    acc = rm.pairwise_accuracy(net, *pairs, min_gap=MIN_GAP)
    return acc, {"best_epoch": hist["best_epoch"], **(links.summary() if links else {}),
                 "val_comparison": (hist["val_comparison"][hist["best_epoch"]] if "val_comparison" in hist else np.nan)}


def fit(data, pairs, scorer, seed: int, **cfg) -> tuple[float, dict]:
    """The mean test accuracy of RESTARTS training runs on the same labels; run r uses seed + 1000·r.

    One run is an anecdote: on the same labels, two initialisations differ by up to 0.04 (more
    than most differences between methods), so each method's accuracy on a data seed is the mean
    of its runs; ``accuracy_runs`` keeps them all (run 0 is notebook 05's live run), the links and
    the validation loss are run 0's and the runs' mean.
    """
    runs = [fit_once(data, pairs, scorer, seed + 1000 * r, **cfg) for r in range(RESTARTS)]
    accs = [a for a, _ in runs]
    return float(np.mean(accs)), {**runs[0][1], "accuracy_runs": accs,
                                  "val_comparison": float(np.mean([i["val_comparison"] for _, i in runs]))}


def run_setting(labels: dict, pairs, scorer, seed: int, setting: str, sweep: bool, reuse: dict) -> dict:
    alone, mix = budgets(setting)
    out = {}
    def one_kind(kind: str, n: int):
        if (kind, n) not in reuse:   # the same labels may have been trained on already
            lam = tuple(float(k == kind) for k in fb.FEEDBACK_KINDS)
            reuse[kind, n] = fit(first(labels[kind], n), pairs, scorer, seed, lambdas=lam)
        return reuse[kind, n]

    for kind in fb.FEEDBACK_KINDS:
        out[kind] = one_kind(kind, alone[kind])
    for kind in fb.FEEDBACK_KINDS:   # the mix's own labels of one kind, without the other two kinds
        out[f"{kind}, the mix's share alone"] = one_kind(kind, mix[kind])
    data = [first(labels[k], mix[k]) for k in fb.FEEDBACK_KINDS]
    out["naive mix"] = fit(data, pairs, scorer, seed, lambdas=(1, 1, 1))
    out["calibrated mix"] = fit(data, pairs, scorer, seed, lambdas=(1, 1, 1), link=True, weighting="uncertainty")
    if sweep:
        # λ chosen on the validation comparisons (lowest validation L_compare), never on the test pairs
        grid = {lam: fit(data, pairs, scorer, seed, lambdas=lam, link=True) for lam in LAMBDA_GRID}
        out["linked mix, λ = 1"] = grid[1, 1, 1]
        best = min(grid, key=lambda lam: grid[lam][1]["val_comparison"])
        out["linked mix, λ from validation"] = (grid[best][0], {**grid[best][1], "lambdas": list(best)})
        out["λ grid (test accuracy, for the picture only)"] = {str(k): v[0] for k, v in grid.items()}
    return {"budgets": {"alone": alone, "mix": mix}, **out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--sweep-seeds", type=int, nargs="*", default=[0],
                    help="seeds on which to also run the small λ grid (equal labels only)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--scorer", default="reading", choices=("reading", "embedding"),
                    help="language scorer: the rule-assisted ReadingScorer (default) or the plain embedding head")
    ap.add_argument("--merge", type=Path, nargs="+", help="only merge these result files into --out")
    ap.add_argument("--per-rater", action="store_true",
                    help="only the per-rater standardization test (writes mixed_feedback_per_rater.json)")
    args = ap.parse_args()
    if args.merge:
        print_table(merge(args.merge, args.out))
        return
    torch.set_num_threads(1)
    from rlhf_tutorial import language

    scorer = language.ReadingScorer() if args.scorer == "reading" else language.LanguageScorer()
    if args.per_rater:
        out = args.out if args.out != RESULTS else RESULTS.with_name("mixed_feedback_per_rater.json")
        res = {"command": "python benchmarks/mixed_feedback.py --per-rater --seeds " + " ".join(map(str, args.seeds)),
               "seeds": {}}
        for seed in args.seeds:
            train, pairs = make_pool(seed)
            res["seeds"][str(seed)] = run_per_rater(label_everything(train, seed), pairs, scorer, seed)
            print(seed, {s: {m: round(v[0], 3) for m, v in r.items()} for s, r in res["seeds"][str(seed)].items()},
                  flush=True)
            out.write_text(json.dumps(res, indent=1, default=float))
        return
    results = {"command": " ".join(["python benchmarks/mixed_feedback.py --seeds", *map(str, args.seeds),
                                   "--sweep-seeds", *map(str, args.sweep_seeds)]),
               "label_seconds": fb.LABEL_SECONDS, "n_labels": N_LABELS, "min_gap": MIN_GAP, "seeds": {}}
    for seed in args.seeds:
        t0 = time.time()
        train, pairs = make_pool(seed)
        labels = label_everything(train, seed)
        reuse: dict = {}
        results["seeds"][str(seed)] = {s: run_setting(labels, pairs, scorer, seed, s,
                                                      s == "labels" and seed in args.sweep_seeds, reuse)
                                       for s in ("labels", "time")}
        row = results["seeds"][str(seed)]
        print(f"seed {seed} ({time.time() - t0:.0f} s): " + " | ".join(
            f"{s}: " + ", ".join(f"{m} {row[s][m][0]:.3f}" for m in METHODS) for s in ("labels", "time")), flush=True)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1, default=float))
    print_table(results)


def merge(paths: list[Path], out: Path) -> dict:
    """Merge result files of runs over disjoint seeds (run them in parallel) into ``out``."""
    docs = [json.loads(Path(p).read_text()) for p in paths]
    merged = {**docs[0], "seeds": {s: v for d in docs for s, v in d["seeds"].items()}}
    merged["command"] = " && ".join(d["command"] for d in docs) + " (in parallel, merged)"
    out.write_text(json.dumps(merged, indent=1, default=float))
    return merged


def print_table(results: dict) -> None:
    for setting in ("labels", "time"):
        print(f"\nheld-out pairwise accuracy, equal {setting}")
        rows = {m: [results["seeds"][s][setting][m][0] for s in results["seeds"]] for m in METHODS + SHARES
                if all(m in results["seeds"][s][setting] for s in results["seeds"])}
        for m, v in rows.items():
            print(f"{m:>16}: " + " ".join(f"{x:.3f}" for x in v) + f" | mean {np.mean(v):.3f}")


if __name__ == "__main__":
    main()
