"""Notebook 08, section 7 on equal terms: ratings + comparisons vs comparisons only, per seed.

Every variant trains the same ``GPT2ForSequenceClassification`` (from the cached SFT model of
notebook 07, head seeded by the seed) with the same **number of labels (2,000), epochs (2) and
optimizer steps (126)**, batch of 32 labels per step, AdamW 3e-4 decaying linearly to 0:

- ``compare``: 2,000 comparisons (the cached preference pairs of notebook 08). On seed 0 this is
  the cached reward model of notebook 08: it is evaluated, not retrained, after checking that the
  trainer reproduces the first steps of its training log exactly.
- ``naive``: 1,000 of those pairs (a seeded subset) + 1,000 ratings, each step 16 pairs + 16
  ratings, λ1 = λ2 = 1, the fixed link (σ(r̂) − z)² (the mix as notebook 08 had it before).
- ``linked``: the same labels and steps, with the learned link ẑ = σ(a·r̂ + b), a > 0, and the
  ratings' Gaussian likelihood with a learned noise σ_z (``rating_nll``, ``RatingLink``).

Ratings: 1,000 SFT samples of train prompts (seed + 7) rated by ``GoldLabeler(seed=seed + 7).rate``
(z = clip(σ(gold) + N(0, 0.05²), 0, 1)), as in notebook 08. Accuracy: against the noiseless gold order
on the 500 held-out test pairs (clear pairs |Δgold| > 0.5, and all non-tied pairs). One torch thread.

    python benchmarks/text_mix.py --seeds 0 1 2          # writes benchmarks/results/08_text_mix.json

Results are merged into the JSON file after every run, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from rlhf_tutorial import text as T
from rlhf_tutorial import text_reward as R

MIN_GAP = 0.5
N_MIX = 1000
OUT = Path(__file__).resolve().parent / "results" / "08_text_mix.json"
VARIANTS = {
    "compare": None,
    "naive": dict(rating_link="fixed"),
    "linked": dict(rating_link="learned"),
}
CHECK_STEPS = 3


def accuracy(model, tok, rows) -> dict:
    prompts = [r["prompt"] for r in rows]
    chosen, rejected = [r["chosen"] for r in rows], [r["rejected"] for r in rows]
    rc = R.reward_scores(model, tok, prompts, chosen, normalize=False)
    rr = R.reward_scores(model, tok, prompts, rejected, normalize=False)
    gap = T.gold_score(prompts, chosen) - T.gold_score(prompts, rejected)
    agree = (rc > rr) == (gap > 0)
    return {"clear": float(agree[gap.abs() > MIN_GAP].float().mean()), "all": float(agree[gap != 0].float().mean())}


def mix_data(sft, tok, train_rows, seed: int):
    """The mix's labels for ``seed``: a seeded half of the pairs and 1,000 fresh ratings."""
    keep = np.sort(np.random.default_rng(seed).choice(len(train_rows), N_MIX, replace=False))
    rows = [train_rows[i] for i in keep]
    prompts = T.make_prompts(N_MIX, "train", seed=seed + 7)
    comps = T.generate(sft, tok, prompts, seed=seed + 7)
    z = T.GoldLabeler(seed=seed + 7).rate(prompts, comps)
    return rows, list(zip(prompts, comps, z.tolist()))


def run(variant: str, seed: int, sft, tok, prefs, cfg: R.RewardConfig, cache: dict) -> dict:
    model = R.build_reward_model(sft, tok, seed=seed)
    base = cfg.train_config()
    train_cfg = R.RewardTrainConfig(epochs=base.epochs, batch_size=base.batch_size, lr=base.lr, seed=seed,
                                    **(VARIANTS[variant] or {}))
    if VARIANTS[variant] is None:
        rows, ratings = prefs["train"], None
    else:
        if seed not in cache:
            cache[seed] = mix_data(sft, tok, prefs["train"], seed)
        rows, ratings = cache[seed]
    start, cpu = time.perf_counter(), time.process_time()
    cached = variant == "compare" and seed == cfg.seed
    stop = (lambda st: st["step"] + 1 >= CHECK_STEPS) if cached else None
    _, hist = R.train_reward_model(model, tok, rows, ratings=ratings, config=train_cfg, callback=stop, progress=False)
    extra = {}
    if cached:  # the cached model of notebook 08: same first losses, then evaluate it instead of retraining
        log = json.loads((R.reward_model_path(cfg) / "training_log.json").read_text())["losses"]
        extra["same_first_losses_as_cached_model"] = log[:CHECK_STEPS] == hist["loss"]
        model, _ = R.load_or_train_reward_model(cfg, progress=False)
        hist = {"loss": log}
    out = {"variant": variant, "seed": seed, "steps": len(hist["loss"]), "pairs": len(rows),
           "ratings": len(ratings or []), "labels": len(rows) + len(ratings or []), "epochs": train_cfg.epochs,
           "wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(time.process_time() - cpu, 1),
           **accuracy(model, tok, prefs["test"])}
    if getattr(model.config, "rating_link", None):
        out["link"] = model.config.rating_link
    return {**out, **extra}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["linked", "naive", "compare"], choices=list(VARIANTS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    cfg = R.RewardConfig()
    sft, tok = T.load_or_train_sft(cfg.text, progress=False)
    R.load_or_train_reward_model(cfg, progress=False)  # the cached comparisons-only model (seed 0)
    prefs = R.load_or_make_preferences(cfg, progress=False)
    results = json.loads(args.out.read_text())["runs"] if args.out.is_file() else []
    cache: dict = {}
    for seed in args.seeds:
        for variant in args.variants:
            res = run(variant, seed, sft, tok, prefs, cfg, cache)
            print(json.dumps(res), flush=True)
            results = [r for r in results if (r["variant"], r["seed"]) != (variant, seed)] + [res]
            results.sort(key=lambda r: (r["seed"], list(VARIANTS).index(r["variant"])))
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps({"script": "benchmarks/text_mix.py", "threads": args.threads,
                                            "torch": torch.__version__, "runs": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
