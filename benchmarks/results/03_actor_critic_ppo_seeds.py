"""Seeds 0-4 of notebook 03's comparisons, written to ``03_actor_critic_ppo.json`` next to this file.

Notebook 03 trains one seed live (seed 0) and reads this file for the others, so every sentence it
says about A2C vs PPO and about the truncation bug rests on five seeds. For each seed, exactly the
runs of notebook 03 §4 (100k env steps each, one torch thread):

- PPO with the default ``PPOConfig`` (rl-zoo's CartPole settings);
- A2C on the same budget (``algo="a2c"``, lr 7e-4, λ = 1, γ = 0.99, entropy 0.01);
- PPO with ``bootstrap_truncated=False`` (the time limit treated as a fall).

Recorded per seed: the first env step at which the greedy evaluation (10 episodes) reached 475,
the mean of all greedy evaluations (the area under the evaluation curve), the final greedy
evaluation, and for the two PPO critics the mean |V(s_t) - 50| along one greedy 500-step episode
of the correctly trained agent (env seed 7), 50 = 1/(1-γ) being the true value of a balanced state.

    python benchmarks/results/03_actor_critic_ppo_seeds.py            # seeds 0-4, ~5 min on a quiet core
    python benchmarks/results/03_actor_critic_ppo_seeds.py --seeds 0 1
    python benchmarks/results/03_actor_critic_ppo_seeds.py --seeds 3 --out /tmp/s3.json   # in parallel, merge later
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time

import gymnasium as gym
import numpy as np
import torch

from rlhf_tutorial import ppo

TOTAL_STEPS = 100_000
OUT = pathlib.Path(__file__).with_name("03_actor_critic_ppo.json")


def first_at(hist, level=475.0):
    """First evaluation step whose greedy mean reached ``level`` (None if never)."""
    return next((int(s) for s, r in zip(hist["eval_step"], hist["eval_return"]) if r >= level), None)


def critic_error(agent, bug_agent, env_seed=7):
    """Mean |V(s) - 50| of both critics along one greedy episode of ``agent`` (as in notebook 03)."""
    env = gym.make("CartPole-v1")
    o, _ = env.reset(seed=env_seed)
    states, done = [o], False
    while not done:
        o, _, terminated, truncated, _ = env.step(int(agent.act(o[None], deterministic=True)[0]))
        done = terminated or truncated
        states.append(o)
    env.close()
    states = torch.as_tensor(np.array(states[:-1]))
    with torch.no_grad():
        v_ok, v_bug = agent.value(states).numpy(), bug_agent.value(states).numpy()
    return float(np.abs(v_ok - 50).mean()), float(np.abs(v_bug - 50).mean()), len(states)


def run_seed(seed: int) -> dict:
    t0 = time.perf_counter()
    agent, hist = ppo.train_ppo(ppo.PPOConfig(seed=seed, total_timesteps=TOTAL_STEPS), progress=False)
    _, a2c = ppo.train_ppo(ppo.PPOConfig(algo="a2c", seed=seed, total_timesteps=TOTAL_STEPS, learning_rate=7e-4,
                                         gae_lambda=1.0, gamma=0.99, ent_coef=0.01), progress=False)
    bug_agent, bug = ppo.train_ppo(ppo.PPOConfig(seed=seed, total_timesteps=TOTAL_STEPS, bootstrap_truncated=False),
                                   progress=False)
    err_ok, err_bug, n_states = critic_error(agent, bug_agent)
    out = {"seed": seed}
    for name, h in (("ppo", hist), ("a2c", a2c), ("ppo_bug", bug)):
        out[name] = {"first_475": first_at(h), "mean_eval": float(np.mean(h["eval_return"])),
                     "final_eval": float(h["eval_return"][-1])}
    out["critic_error"] = {"bootstrap": err_ok, "bug": err_bug, "episode_length": n_states}
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", type=pathlib.Path, default=OUT, help="results file (seeds already in it are kept)")
    args = parser.parse_args()
    out_path = args.out
    results = json.loads(out_path.read_text())["seeds"] if out_path.exists() else {}
    for seed in args.seeds:
        r = run_seed(seed)
        results[str(seed)] = r
        print(json.dumps(r), flush=True)
        out_path.write_text(json.dumps({"total_timesteps": TOTAL_STEPS, "torch_threads": 1,
                                   "script": "benchmarks/results/03_actor_critic_ppo_seeds.py",
                                   "seeds": dict(sorted(results.items()))}, indent=1) + "\n")


if __name__ == "__main__":
    main()
