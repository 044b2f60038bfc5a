"""imitation's PreferenceComparisons on the course task, same env steps and label budget as ours.

Run in a separate virtual environment: imitation 1.0.1 pins gymnasium ~=0.29 and
stable-baselines3 ~=2.2.1, which the course does not use. What we did (benchmarks/README.md)::

    python -m venv --system-site-packages /tmp/imitenv
    /tmp/imitenv/bin/pip install --no-deps imitation==1.0.1 "seals~=0.2.1"
    PYTHONPATH=. /tmp/imitenv/bin/python benchmarks/imitation_preference.py --seeds 0 1 2
    PYTHONPATH=. /tmp/imitenv/bin/python benchmarks/imitation_preference.py --seeds 0 1 2 --epsilon 0.1 --tie-margin 0.5

(imitation imports and runs with the gymnasium 1.4 and stable-baselines3 2.9.2 of the course
environment; --no-deps keeps it from replacing them, and torch.) Settings: SB3 PPO with the
task's PPO settings (TASK_PPO_CONFIG: 8 envs x 64 steps, 4 minibatches, 10 epochs, γ 0.99,
λ 0.95, entropy 0.01, lr 3e-4), a reward net of the state only with two hidden layers of 64,
fragments of 50 steps, 500 comparisons from imitation's SyntheticGatherer (Bradley-Terry on
the true return, temperature 1; it has no ε-random answers, so its labels are *less* noisy
than ours; ``--epsilon 0.1 --tie-margin 0.5`` makes it answer like ours), an ensemble-free random fragmenter, and imitation's defaults otherwise
(hyperbolic query schedule, 10 % of the comparisons before training). Printed: the true return
of the greedy policy, evaluated exactly like ours.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def course_labeler_gatherer(pc, rng, epsilon: float, tie_margin: float, seed: int):
    """imitation's SyntheticGatherer answering with the course's own ``feedback.ComparisonLabeler``.

    Each of imitation's fragment pairs becomes a pair of :class:`feedback.Segment` and is labelled
    exactly as in notebooks 04–06: a coin flip with probability ``epsilon``, 0.5 ("equal") when the
    true returns differ by at most ``tie_margin``, otherwise a Bradley-Terry sample (β = 1).
    """
    from rlhf_tutorial.feedback import ComparisonLabeler, Segment

    labeler = ComparisonLabeler(epsilon=epsilon, tie_margin=tie_margin, seed=seed)

    def segment(frag):
        return Segment(obs=frag.obs[:-1], actions=frag.acts, true_rewards=frag.rews)

    class CourseLabelerGatherer(pc.SyntheticGatherer):
        def __call__(self, fragment_pairs):
            return np.array([labeler.label(segment(a), segment(b)) for a, b in fragment_pairs], dtype=np.float32)

    return CourseLabelerGatherer(rng=rng)


def run(seed: int, steps: int, comparisons: int, iterations: int, epsilon: float = 0.0,
        tie_margin: float | None = None) -> tuple[float, float]:
    from imitation.algorithms import preference_comparisons as pc
    from imitation.rewards.reward_nets import BasicRewardNet
    from imitation.util.networks import RunningNorm
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from rlhf_tutorial.envs import ENV_ID, FixedHorizonCartPoleEnv
    from rlhf_tutorial.ppo import TASK_PPO_CONFIG
    from rlhf_tutorial.rl import evaluate_policy

    torch.set_num_threads(1)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    venv = make_vec_env(lambda: FixedHorizonCartPoleEnv(), n_envs=TASK_PPO_CONFIG.num_envs, seed=seed)
    net = BasicRewardNet(venv.observation_space, venv.action_space, use_action=False, use_next_state=False,
                         use_done=False, normalize_input_layer=RunningNorm, hid_sizes=(64, 64))
    fragmenter = pc.RandomFragmenter(warning_threshold=0, rng=rng)
    if epsilon == 0.0 and tie_margin is None:
        gatherer = pc.SyntheticGatherer(rng=rng)   # imitation's own: Bradley-Terry, no coin flips, no ties
    else:
        gatherer = course_labeler_gatherer(pc, rng, epsilon, 0.5 if tie_margin is None else tie_margin, seed)
    model = pc.PreferenceModel(net)
    trainer = pc.BasicRewardTrainer(preference_model=model, loss=pc.CrossEntropyRewardLoss(), epochs=3, rng=rng)
    c = TASK_PPO_CONFIG
    agent = PPO("MlpPolicy", venv, n_steps=c.num_steps, batch_size=c.num_envs * c.num_steps // c.num_minibatches,
                n_epochs=c.update_epochs, gamma=c.gamma, gae_lambda=c.gae_lambda, ent_coef=c.ent_coef,
                learning_rate=c.learning_rate, clip_range=c.clip_coef, max_grad_norm=c.max_grad_norm,
                policy_kwargs={"net_arch": [64, 64], "activation_fn": torch.nn.Tanh}, seed=seed, verbose=0)
    gen = pc.AgentTrainer(algorithm=agent, reward_fn=net, venv=venv, exploration_frac=0.05, rng=rng)
    loop = pc.PreferenceComparisons(gen, net, num_iterations=iterations, fragmenter=fragmenter,
                                    preference_gatherer=gatherer, reward_trainer=trainer, fragment_length=50,
                                    transition_oversampling=1, initial_comparison_frac=0.1,
                                    allow_variable_horizon=False, initial_epoch_multiplier=4)
    loop.train(total_timesteps=steps, total_comparisons=comparisons)
    secs = time.perf_counter() - t0
    ret = float(evaluate_policy(lambda o: agent.predict(o, deterministic=True)[0], ENV_ID, 10,
                                seed=10_000 + seed).mean())
    return ret, secs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--comparisons", type=int, default=500)
    ap.add_argument("--iterations", type=int, default=20)
    ap.add_argument("--epsilon", type=float, default=0.0,
                    help="answer this share of queries with a coin flip, like the course's labeler (0.1 there)")
    ap.add_argument("--tie-margin", type=float, default=None,
                    help="answer 0.5 when true returns differ by at most this (the course's labeler: 0.5); "
                         "with neither option, imitation's own SyntheticGatherer is used")
    args = ap.parse_args()
    for s in args.seeds:
        ret, secs = run(s, args.steps, args.comparisons, args.iterations, args.epsilon, args.tie_margin)
        print(f"imitation PreferenceComparisons, seed {s}, epsilon {args.epsilon}, tie margin {args.tie_margin}: "
              f"true return {ret:.1f} ({secs:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
