"""Notebooks 09 and 10 over seeds: the per-seed numbers behind their seed bands (``benchmarks/results/``).

    python benchmarks/lm_seeds.py nb10 --seeds 0 1 2      # -> benchmarks/results/10_beyond_ppo.json
    python benchmarks/lm_seeds.py critic --seeds 0 1 2    # -> benchmarks/results/09_ppo_for_language_models_critic.json

``nb10`` executes notebook 10's own code cells, everything above the markdown cell that carries
the marker ``<!-- lm_seeds: stop -->`` (the section that reads this file back), with ``SEED = s``
(and ``set_torch_threads(--threads)``), one fresh kernel per seed, and records the table of
methods (SFT, DPO, PPO, RLOO, GRPO, best-of-16, the overoptimized run), best-of-n for every n, and
the smoothed overoptimization curve. So the file holds exactly what the notebook computes; the
notebook runs one seed live and asserts that it lies within the recorded band.

``critic`` compares notebook 09's PPO (its configuration, prompts and evaluation) with the
default critic, a value head on the policy's trunk, and with a separate value network initialised
from the reward model (TRL's choice), at equal iterations: gold win rate against SFT, KL to the
reference on the held-out prompts, and wall time (distorted by a shared CPU: read the ratio).

Both use the checkpoints cached by notebooks 07-08 (trained first if missing) and one torch thread
unless ``--threads`` says otherwise; results do not depend on the machine's load, times do.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NB10 = ROOT / "notebooks" / "10_beyond_ppo.ipynb"
STOP = "<!-- lm_seeds: stop -->"

_DUMP = '''
import json as _json
_t = pd.DataFrame(results).set_index("method")
_curve = curve.reset_index(drop=True)
_out = dict(
    table={m: {k: (None if v != v else float(v)) for k, v in row.items()} for m, row in _t.iterrows()},
    best_of_n={m: {k: float(v) for k, v in row.items()} for m, row in bon.iterrows()},
    curve={k: [float(x) for x in _curve[k]] for k in ("proxy", "gold", "kl")},
    peak={k: float(curve.loc[peak, k]) for k in ("proxy", "gold", "kl")},
    end={k: float(curve.loc[end, k]) for k in ("proxy", "gold", "kl")},
    dpo_test_acc=float(dpo_test_acc), rm_test_acc=float(rm_test_acc),
    sft_train_gold=float(sft_train_gold), sft_train_proxy=float(sft_train_proxy),
)
open(OUT_PATH, "w").write(_json.dumps(_out))
'''


def _nb10_seed(seed: int, threads: int) -> dict:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NB10, as_version=4)
    cells = []
    for c in nb.cells:
        if c.cell_type == "markdown" and STOP in c.source:
            break
        if c.cell_type != "code":
            continue
        s = c.source
        if "SEED = 0" in s:
            s = s.replace("SEED = 0", f"SEED = {int(seed)}", 1)
        s = s.replace("set_torch_threads(1)", f"set_torch_threads({int(threads)})")
        cells.append(nbformat.v4.new_code_cell(s))
    else:
        raise SystemExit(f"{NB10.name} has no markdown cell with {STOP!r}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.json"
        cells.append(nbformat.v4.new_code_cell(f"OUT_PATH = {str(out)!r}\n" + _DUMP))
        run = nbformat.v4.new_notebook(cells=cells, metadata=nb.metadata)
        t0 = time.perf_counter()
        NotebookClient(run, timeout=3600, kernel_name="python3",
                       resources={"metadata": {"path": str(NB10.parent)}}).execute()
        rec = json.loads(out.read_text())
    rec["seconds"] = time.perf_counter() - t0
    return rec


def _critic_seed(seed: int, threads: int) -> dict:
    """Notebook 09's run (its cells 2, 4, 14 and 17) with each critic."""
    import torch

    from rlhf_tutorial import lm_rlhf as L
    from rlhf_tutorial import text as T
    from rlhf_tutorial import text_reward as TR

    torch.set_num_threads(threads)
    sft, tok = T.load_or_train_sft(progress=False)
    rm, _ = TR.load_or_train_reward_model(progress=False)
    for m in (sft, rm):
        L.disable_dropout(m).eval().requires_grad_(False)
    cfg = L.LMPPOConfig(seed=seed, num_iterations=16, batch_size=64, response_length=32, temperature=1.0,
                        kl_coef=0.1, missing_eos_penalty=1.0, learning_rate=3e-5, num_ppo_epochs=4,
                        num_minibatches=4, clip_coef=0.2, vf_coef=0.1, max_grad_norm=1.0)
    train_prompts = T.make_prompts(2_000, "train", seed=seed)
    test_prompts = T.make_prompts(400, "test", seed=seed + 1)

    @torch.no_grad()
    def judge(model, s):
        ro = L.rollout(model, tok, test_prompts, max_new_tokens=cfg.response_length, temperature=1.0, seed=s)
        return ro, T.gold_score(ro.prompts, ro.completions), L.score_rollout(rm, ro)

    ro_sft, gold_sft, rm_sft = judge(sft, seed + 200)
    pen = cfg.missing_eos_penalty
    objective_sft = float((rm_sft - pen * (~ro_sft.has_eos.cpu()).float()).mean())  # J(π_ref): its KL is 0
    out = {}
    for name in ("shared", "separate"):
        policy = copy.deepcopy(sft).requires_grad_(True)
        critic = copy.deepcopy(rm) if name == "separate" else None
        t0 = time.perf_counter()
        _, hist = L.train_lm_ppo(policy, tok, rm, train_prompts, cfg, ref_policy=sft, critic=critic, progress=False)
        seconds = time.perf_counter() - t0
        ro, gold, score = judge(policy, seed + 100)
        with torch.no_grad():
            P = ro.query_ids.shape[1]
            lp = L.sequence_logprobs(policy, ro.input_ids, ro.attention_mask, P)
            lr = L.sequence_logprobs(sft, ro.input_ids, ro.attention_mask, P)
        kl = float(L.per_token_kl(lp, lr, ro.response_mask).sum(1).mean())
        win = float(((gold > gold_sft).float() + 0.5 * (gold == gold_sft).float()).mean())
        out[name] = dict(win_rate=win, kl=kl, gold=float(gold.mean()), gold_sft=float(gold_sft.mean()),
                         rm=float(score.mean()), rm_sft=float(rm_sft.mean()), seconds=seconds,
                         objective=float((score - pen * (~ro.has_eos.cpu()).float()).mean()) - cfg.kl_coef * kl,
                         objective_sft=objective_sft, eos_frac=float(ro.has_eos.float().mean()),
                         value_loss_last=float(hist["loss/value_avg"][-1]),
                         scores_last=float(hist["objective/scores"][-1]))
        print(seed, name, {k: round(v, 3) for k, v in out[name].items()}, flush=True)
    return out


def _versions() -> dict:
    import torch
    import transformers

    return dict(torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("nb10", "critic"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="results file (default: benchmarks/results/<notebook>.json)")
    args = ap.parse_args()
    name = "10_beyond_ppo.json" if args.what == "nb10" else "09_ppo_for_language_models_critic.json"
    path = args.out or RESULTS / name
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault("seeds", {})
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    for s in args.seeds:
        rec = _nb10_seed(s, args.threads) if args.what == "nb10" else _critic_seed(s, args.threads)
        rec["threads"] = args.threads
        data["seeds"][f"{s}" if args.threads == 1 else f"{s}@{args.threads}threads"] = rec
        data.update(command="python benchmarks/lm_seeds.py " + " ".join(sys.argv[1:]),
                    date=datetime.date.today().isoformat(), versions=_versions(),
                    load_average_at_start=load)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        print(f"seed {s} written to {path.relative_to(ROOT)}", flush=True)


if __name__ == "__main__":
    main()
