"""rlhf_tutorial: the thin, tested package behind the RLHF notebook course.

Each module is a page or two and every public function names the notebook that explains it:

- :mod:`rlhf_tutorial.utils`    seeding, torch threads, device choice, timers (notebook 00)
- :mod:`rlhf_tutorial.tabular`  tabular Q-learning and value iteration (notebook 01)
- :mod:`rlhf_tutorial.rl`       returns, GAE, policies, vector-env rollouts, evaluation (notebooks 02-03)
- :mod:`rlhf_tutorial.reinforce` REINFORCE with a baseline (notebook 02)
- :mod:`rlhf_tutorial.ppo`      A2C and PPO losses and the PPO trainer (notebook 03)
- :mod:`rlhf_tutorial.sac`      Soft Actor-Critic for continuous actions (notebook 03)
- :mod:`rlhf_tutorial.plots`    learning curves, episode frames and animations
- :mod:`rlhf_tutorial.envs`     the fixed-horizon CartPole task with a graded true reward (notebooks 04-06)
- :mod:`rlhf_tutorial.feedback` trajectory segments, synthetic humans, feedback datasets (notebook 04)
- :mod:`rlhf_tutorial.widgets`  the labeling widget; answers saved as JSON lines (notebook 04)
- :mod:`rlhf_tutorial.imitation` behaviour cloning, MaxEnt IRL and apprenticeship learning (notebook 04)
- :mod:`rlhf_tutorial.reward_model` r̂_θ(s,a), L_score / L_compare / L_language and their mix (notebook 05)
- :mod:`rlhf_tutorial.language` a sentence encoder that maps comments to scores (notebook 05)
- :mod:`rlhf_tutorial.rlhf`     the reward ensemble, query selection and the online preference loop (notebook 06)
- :mod:`rlhf_tutorial.text`     synthetic reviews, BPE tokenizer, tiny GPT-2, SFT, sampling, the gold human (notebook 07)
- :mod:`rlhf_tutorial.text_reward` preference data, the GPT-2 reward model, Bradley-Terry, normalization (notebook 08)
- :mod:`rlhf_tutorial.lm_rlhf`  PPO for language models: rollouts, per-token KL, reward shaping, GAE over tokens (notebook 09)
- :mod:`rlhf_tutorial.dpo`      Direct Preference Optimization: masked response log-probs, the DPO loss, training (notebook 10)
- :mod:`rlhf_tutorial.grpo`     critic-free RL: GRPO and RLOO group advantages, the clipped group loss, training (notebook 10)
- :mod:`rlhf_tutorial.checks`   exercise checkers: run your function on hidden cases with friendly hints
"""

__version__ = "0.1.0"

from . import envs  # noqa: E402,F401  registers FixedHorizonCartPole-v0 with Gymnasium
