"""A new user's wrong calls, across the public API: every one must get a clear error.

Each case is a call that is wrong in one way (wrong type, wrong shape, NaN/inf, empty, out of
range, unknown option, wrong kind of env) and the error it must raise: ``TypeError`` for a wrong
type, ``ValueError`` for a wrong value (``RuntimeError`` for a loop that would otherwise never
end), with the argument's name in the message. No case trains beyond one step.

Run as a script (``python tests/test_bad_inputs.py``) to count the outcomes of all cases:
clear (the expected error, naming the argument), other (another error, or one that does not name
it), silent (no error at all) and hang (no answer within 60 s).
"""

from __future__ import annotations

import dataclasses
import functools
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlhf_tutorial import _validate as V
from rlhf_tutorial import (
    dpo,
    envs,
    feedback,
    grpo,
    imitation,
    lm_rlhf,
    plots,
    ppo,
    reinforce,
    reward_model,
    rl,
    rlhf,
    sac,
    tabular,
    text,
    text_reward,
    utils,
    widgets,
)

NAN, INF = float("nan"), float("inf")
CASES: list[tuple[str, type, str, object]] = []


def case(cid: str, exc: type, name: str, fn) -> None:
    """Register a wrong call ``fn()`` that must raise ``exc`` with ``name`` in its message."""
    CASES.append((cid, exc, name, fn))


# --------------------------------------------------------------------------- tiny fixtures (built once, lazily)
WORDS = "the a food was good bad great awful service slow fast pizza room clean dirty and very not it ."


@functools.lru_cache(None)
def tok():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for w in WORDS.split():
        vocab.setdefault(w, len(vocab))
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


@functools.lru_cache(None)
def gpt():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok()), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                     pad_token_id=0, eos_token_id=1, bos_token_id=1)
    return lm_rlhf.disable_dropout(GPT2LMHeadModel(cfg)).eval()


@functools.lru_cache(None)
def seg(length: int = 10) -> feedback.Segment:
    rng = np.random.default_rng(0)
    return feedback.Segment(rng.normal(size=(length, 4)).astype(np.float32) * 0.05,
                            rng.integers(0, 2, size=length), np.ones(length, np.float32))


@functools.lru_cache(None)
def net() -> reward_model.RewardNet:
    return reward_model.RewardNet(4, 2, hidden=(8,), seed=0)


@functools.lru_cache(None)
def grid() -> imitation.GridWorld:
    return imitation.GridWorld()


class NeverEnds(gym.Env):
    """An env with no time limit whose episodes never end (a cap must stop the loop)."""

    observation_space = gym.spaces.Box(-1, 1, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        return np.zeros(4, np.float32), 1.0, False, False, {}


if "NeverEnds-v0" not in gym.registry:
    gym.register("NeverEnds-v0", entry_point=NeverEnds, max_episode_steps=None, disable_env_checker=True)


def never_vec(n=1):
    return gym.vector.SyncVectorEnv([NeverEnds for _ in range(n)])


def t(*x):
    return torch.tensor(x, dtype=torch.float32)


def act_zero(obs):
    return np.zeros(len(obs), dtype=np.int64)


# --------------------------------------------------------------------------- configs: every numeric field
# (config class, fields whose negative value is allowed, extra (field, bad value, error) cases)
CONFIGS = [
    (ppo.PPOConfig, {"stop_at_return"}, [("gamma", 1.5, ValueError), ("gae_lambda", -0.1, ValueError),
                                         ("clip_coef", 0.0, ValueError), ("max_grad_norm", 0.0, ValueError),
                                         ("learning_rate", 0.0, ValueError), ("algo", "trpo", ValueError),
                                         ("num_minibatches", 10_000, ValueError), ("env_id", 3, TypeError),
                                         ("target_kl", 0.0, ValueError)]),
    (sac.SACConfig, {"log_std_min", "log_std_max", "target_entropy", "target_return"},
     [("gamma", 1.5, ValueError), ("tau", 0.0, ValueError), ("alpha", 0.0, ValueError),
      ("log_std_min", 3.0, ValueError), ("batch_size", 10**9, ValueError),
      ("hidden", (), ValueError), ("hidden", (8, 0), ValueError)]),
    (reinforce.ReinforceConfig, {"target_return"}, [("gamma", 1.5, ValueError), ("baseline", "median", ValueError),
                                                    ("learning_rate", 0.0, ValueError)]),
    (rlhf.PreferenceLoopConfig, set(), [("epsilon", 1.5, ValueError), ("query_method", "clever", ValueError),
                                       ("val_fraction", 1.0, ValueError), ("compare_reduce", "max", ValueError),
                                       ("ppo", {}, TypeError), ("label_budget", 0, ValueError)]),
    (lm_rlhf.LMPPOConfig, set(), [("gamma", 1.5, ValueError), ("lam", -0.5, ValueError), ("clip_coef", 0.0, ValueError),
                                  ("max_grad_norm", 0.0, ValueError), ("temperature", 0.0, ValueError),
                                  ("kl_coef", -0.1, ValueError), ("num_minibatches", 10_000, ValueError)]),
    (dpo.DPOConfig, set(), [("beta", 0.0, ValueError), ("label_smoothing", 0.5, ValueError),
                            ("max_grad_norm", 0.0, ValueError)]),
    (grpo.GroupRLConfig, set(), [("num_generations", 1, ValueError), ("estimator", "ppo", ValueError),
                                 ("loss_type", "sum", ValueError), ("epsilon", 0.0, ValueError),
                                 ("max_grad_norm", 0.0, ValueError), ("temperature", 0.0, ValueError)]),
    (text.TextConfig, set(), [("n_embd", 30, ValueError)]),
    (text_reward.RewardConfig, set(), [("epsilon", 1.5, ValueError), ("text", {}, TypeError)]),
    (text_reward.RewardTrainConfig, set(), [("rating_link", "cubic", ValueError), ("lambdas", (1.0,), TypeError)]),
    (reward_model.RewardTrainConfig, set(), [("weighting", "magic", ValueError), ("select_on", "nothing", ValueError),
                                             ("compare_reduce", "max", ValueError), ("val_fraction", 1.5, ValueError)]),
]


def _config_cases():
    for cls, neg_ok, extra in CONFIGS:
        base = cls()
        cname = cls.__module__.split(".")[-1] + "." + cls.__name__
        for f in dataclasses.fields(cls):
            v = getattr(base, f.name)
            kind = "bool" if isinstance(v, bool) else "int" if isinstance(v, int) else "float" if isinstance(v, float) \
                else "opt" if v is None and f.name not in ("torch_threads", "patience") else "optint" if v is None \
                else None
            if kind is None:
                continue
            mk = functools.partial(lambda c, n, x: c(**{n: x}), cls, f.name)
            if kind == "bool":
                case(f"{cname}.{f.name}=str", TypeError, f.name, functools.partial(mk, "yes"))
                continue
            case(f"{cname}.{f.name}=str", TypeError, f.name, functools.partial(mk, "1"))
            if kind in ("int", "optint"):
                case(f"{cname}.{f.name}=1.5", TypeError, f.name, functools.partial(mk, 1.5))
                case(f"{cname}.{f.name}=-1", ValueError, f.name, functools.partial(mk, -1))
            else:
                case(f"{cname}.{f.name}=nan", ValueError, f.name, functools.partial(mk, NAN))
                case(f"{cname}.{f.name}=inf", ValueError, f.name, functools.partial(mk, INF))
                if f.name not in neg_ok:
                    case(f"{cname}.{f.name}=-1", ValueError, f.name, functools.partial(mk, -1.0))
        for name, bad, exc in extra:
            case(f"{cname}.{name}={bad!r}", exc, name, functools.partial(lambda c, n, x: c(**{n: x}), cls, name, bad))


_config_cases()


# --------------------------------------------------------------------------- _validate itself
case("V.integer(bool)", TypeError, "n", lambda: V.integer("n", True))
case("V.number(str)", TypeError, "x", lambda: V.number("x", "1"))
case("V.number(nan)", ValueError, "x", lambda: V.number("x", NAN))
case("V.positive(0)", ValueError, "lr", lambda: V.positive("lr", 0))
case("V.probability(1.5)", ValueError, "gamma", lambda: V.probability("gamma", 1.5))
case("V.one_of", ValueError, "kind", lambda: V.one_of("kind", "x", ("a", "b")))
case("V.finite_tensor(inf)", ValueError, "x", lambda: V.finite_tensor("x", [1.0, INF]))
case("V.finite_tensor(str)", TypeError, "x", lambda: V.finite_tensor("x", "abc"))
case("V.check_finite_loss", ValueError, "step 7", lambda: V.check_finite_loss(torch.tensor(NAN), 7, "loss"))
case("V.callable_", TypeError, "fn", lambda: V.callable_("fn", 3))
case("V.path(int)", TypeError, "path", lambda: V.path("path", 3))
case("V.sequence_of(str)", TypeError, "segments", lambda: V.sequence_of("segments", "ab", feedback.Segment))
case("V.sequence_of([])", ValueError, "segments", lambda: V.sequence_of("segments", [], feedback.Segment))
case("V.sequence_of([int])", TypeError, "segments[1]", lambda: V.sequence_of("segments", [seg(), 3], feedback.Segment))
case("V.text_list(blank)", ValueError, "prompts[1]", lambda: V.text_list("prompts", ["a", " "], allow_empty_items=False))
case("V.tokenizer(None)", TypeError, "tokenizer", lambda: V.tokenizer("tokenizer", None))
case("V.segment_pair(length)", ValueError, "same length", lambda: V.segment_pair(seg(10), seg(12), feedback.Segment))
case("V.segment_pair(int)", TypeError, "segment_b", lambda: V.segment_pair(seg(), 3, feedback.Segment))

# --------------------------------------------------------------------------- utils
case("seed_everything(str)", TypeError, "seed", lambda: utils.seed_everything("0"))
case("seed_everything(-1)", ValueError, "seed", lambda: utils.seed_everything(-1))
case("set_torch_threads(0)", ValueError, "n", lambda: utils.set_torch_threads(0))
case("set_torch_threads(1.5)", TypeError, "n", lambda: utils.set_torch_threads(1.5))
case("get_device(gpu)", ValueError, "prefer", lambda: utils.get_device("gpu"))

# --------------------------------------------------------------------------- rl
case("check_probability(nan)", ValueError, "gamma", lambda: rl.check_probability("gamma", NAN))
case("check_probability(str)", TypeError, "gamma", lambda: rl.check_probability("gamma", "0.9"))
case("discounted_returns(gamma=1.5)", ValueError, "gamma", lambda: rl.discounted_returns([1.0], 1.5))
case("discounted_returns(nan)", ValueError, "rewards", lambda: rl.discounted_returns([1.0, NAN], 0.9))
case("discounted_returns(2-D)", ValueError, "rewards", lambda: rl.discounted_returns([[1.0]], 0.9))
_gae = dict(rewards=[1.0, 1.0], values=[0.0, 0.0], next_values=[0.0, 0.0], terminated=[0, 0], truncated=[0, 0],
            gamma=0.9, lam=0.9)
case("compute_gae([])", ValueError, "rewards", lambda: rl.compute_gae([], [], [], [], [], 0.9, 0.9))
case("compute_gae(gamma=1.5)", ValueError, "gamma", lambda: rl.compute_gae(**{**_gae, "gamma": 1.5}))
case("compute_gae(lam=-1)", ValueError, "lam", lambda: rl.compute_gae(**{**_gae, "lam": -1.0}))
case("compute_gae(values shape)", ValueError, "values", lambda: rl.compute_gae(**{**_gae, "values": [0.0]}))
case("compute_gae(nan)", ValueError, "next_values", lambda: rl.compute_gae(**{**_gae, "next_values": [0.0, NAN]}))
case("compute_gae(terminated=2)", ValueError, "terminated", lambda: rl.compute_gae(**{**_gae, "terminated": [2, 0]}))
case("compute_gae(str)", TypeError, "rewards", lambda: rl.compute_gae(**{**_gae, "rewards": "ab"}))
case("explained_variance(shape)", ValueError, "y_pred", lambda: rl.explained_variance([1.0, 2.0], [1.0]))
case("mlp(in_dim=0)", ValueError, "in_dim", lambda: rl.mlp(0, 2))
case("mlp(hidden=0)", ValueError, "hidden", lambda: rl.mlp(2, 2, hidden=(0,)))
case("mlp(out_dim=str)", TypeError, "out_dim", lambda: rl.mlp(2, "2"))
case("make_env(unknown)", ValueError, "env_id", lambda: rl.make_env("CartPole-v9"))
case("make_env(int)", TypeError, "env_id", lambda: rl.make_env(3))
case("make_vec_env(num_envs=0)", ValueError, "num_envs", lambda: rl.make_vec_env("CartPole-v1", 0))
case("require_discrete(Box)", TypeError, "Discrete", lambda: rl.require_discrete(gym.spaces.Box(-1, 1, (1,)), "x"))
case("require_vector_obs(Discrete)", TypeError, "observation",
     lambda: rl.require_vector_obs(gym.spaces.Discrete(3), "x"))
case("RolloutCollector(Discrete obs)", TypeError, "observation",
     lambda: rl.RolloutCollector(gym.make_vec("FrozenLake-v1", num_envs=1, vectorization_mode="sync")))
case("evaluate_policy(n_episodes=0)", ValueError, "n_episodes", lambda: rl.evaluate_policy(act_zero, "CartPole-v1", 0))
case("evaluate_policy(act=3)", TypeError, "act", lambda: rl.evaluate_policy(3, "CartPole-v1", 1))
case("evaluate_policy(no time limit)", RuntimeError, "max_steps",
     lambda: rl.evaluate_policy(act_zero, "NeverEnds-v0", 1, max_steps=50))

# --------------------------------------------------------------------------- tabular
_Q = np.zeros((4, 2))
case("epsilon_greedy(epsilon=2)", ValueError, "epsilon", lambda: tabular.epsilon_greedy([0.0, 1.0], 2.0, np.random.default_rng()))
case("epsilon_greedy(rng=3)", TypeError, "rng", lambda: tabular.epsilon_greedy([0.0, 1.0], 0.1, 3))
case("epsilon_greedy(nan row)", ValueError, "q_row", lambda: tabular.epsilon_greedy([0.0, NAN], 0.1, np.random.default_rng()))
case("q_learning_update(alpha=-0.1)", ValueError, "alpha", lambda: tabular.q_learning_update(_Q.copy(), 0, 0, 1.0, 1, False, -0.1, 0.9))
case("q_learning(alpha=0)", ValueError, "alpha", lambda: tabular.q_learning(gym.make("FrozenLake-v1"), 1, alpha=0.0))
case("q_learning_update(gamma=2)", ValueError, "gamma", lambda: tabular.q_learning_update(_Q.copy(), 0, 0, 1.0, 1, False, 0.5, 2.0))
case("q_learning_update(s=9)", ValueError, "s", lambda: tabular.q_learning_update(_Q.copy(), 9, 0, 1.0, 1, False, 0.5, 0.9))
case("q_learning_update(r=nan)", ValueError, "r", lambda: tabular.q_learning_update(_Q.copy(), 0, 0, NAN, 1, False, 0.5, 0.9))
case("linear_epsilon(n_episodes=0)", ValueError, "n_episodes", lambda: tabular.linear_epsilon(0, 0))
case("q_learning(CartPole)", TypeError, "Discrete", lambda: tabular.q_learning(gym.make("CartPole-v1"), 1))
case("q_learning(n_episodes=0)", ValueError, "n_episodes", lambda: tabular.q_learning(gym.make("FrozenLake-v1"), 0))
case("value_iteration(gamma=2)", ValueError, "gamma", lambda: tabular.value_iteration(gym.make("FrozenLake-v1"), gamma=2.0))
case("greedy_policy(1-D)", ValueError, "Q", lambda: tabular.greedy_policy(np.zeros(3)))
case("evaluate_tabular(n_episodes=0)", ValueError, "n_episodes",
     lambda: tabular.evaluate_tabular(gym.make("FrozenLake-v1"), np.zeros(16, int), n_episodes=0))

# --------------------------------------------------------------------------- reinforce
_lp = torch.zeros(3, requires_grad=True)
case("reinforce_loss(list)", TypeError, "logprobs", lambda: reinforce.reinforce_loss([0.0], [1.0]))
case("reinforce_loss(empty)", ValueError, "logprobs", lambda: reinforce.reinforce_loss(torch.zeros(0), []))
case("reinforce_loss(shape)", ValueError, "returns", lambda: reinforce.reinforce_loss(_lp, [1.0, 2.0]))
case("reinforce_loss(nan)", ValueError, "returns", lambda: reinforce.reinforce_loss(_lp, [1.0, NAN, 2.0]))
case("reinforce_loss(baseline nan)", ValueError, "baseline", lambda: reinforce.reinforce_loss(_lp, [1.0, 1.0, 2.0], NAN))
case("collect_episodes(0)", ValueError, "episodes_per_env",
     lambda: reinforce.collect_episodes(rl.CategoricalPolicy(4, 2), rl.make_vec_env("CartPole-v1", 1), 0))
case("collect_episodes(no time limit)", RuntimeError, "max_steps",
     lambda: reinforce.collect_episodes(rl.CategoricalPolicy(4, 2), never_vec(), 1, max_steps=50))
case("collect_episodes(Box actions)", TypeError, "Discrete",
     lambda: reinforce.collect_episodes(rl.CategoricalPolicy(3, 2), rl.make_vec_env("Pendulum-v1", 1), 1))
case("episode_batch([])", ValueError, "episodes", lambda: reinforce.episode_batch([], 0.9))
case("train_reinforce(dict)", TypeError, "config", lambda: reinforce.train_reinforce({"env_id": "CartPole-v1"}))
case("train_reinforce(Pendulum)", TypeError, "Discrete",
     lambda: reinforce.train_reinforce(reinforce.ReinforceConfig(env_id="Pendulum-v1"), progress=False))

# --------------------------------------------------------------------------- ppo
z3 = torch.zeros(3)
case("ppo_policy_loss(shape)", ValueError, "old_logp", lambda: ppo.ppo_policy_loss(z3, torch.zeros(2), z3, 0.2))
case("ppo_policy_loss(nan)", ValueError, "advantages", lambda: ppo.ppo_policy_loss(z3, z3, t(0, NAN, 0), 0.2))
case("ppo_policy_loss(clip=-0.2)", ValueError, "clip_coef", lambda: ppo.ppo_policy_loss(z3, z3, z3, -0.2))
case("ppo_policy_loss(clip=nan)", ValueError, "clip_coef", lambda: ppo.ppo_policy_loss(z3, z3, z3, NAN))
case("ppo_value_loss(inf)", ValueError, "returns", lambda: ppo.ppo_value_loss(z3, z3, t(0, INF, 0)))
case("ppo_value_loss(clip=-1)", ValueError, "clip_coef", lambda: ppo.ppo_value_loss(z3, z3, z3, -1.0))
case("a2c_loss(nan)", ValueError, "logp", lambda: ppo.a2c_loss(t(NAN, 0, 0), z3, z3, z3, z3))
case("a2c_loss(vf_coef=-1)", ValueError, "vf_coef", lambda: ppo.a2c_loss(z3, z3, z3, z3, z3, vf_coef=-1.0))
case("a2c_loss(ent_coef=nan)", ValueError, "ent_coef", lambda: ppo.a2c_loss(z3, z3, z3, z3, z3, ent_coef=NAN))
case("train_ppo(FrozenLake: Discrete obs)", TypeError, "observation",
     lambda: ppo.train_ppo(ppo.PPOConfig(env_id="FrozenLake-v1", total_timesteps=64, eval_every=0), progress=False))
case("train_ppo(Pendulum: Box actions)", TypeError, "Discrete",
     lambda: ppo.train_ppo(ppo.PPOConfig(env_id="Pendulum-v1", total_timesteps=64, eval_every=0), progress=False))

# --------------------------------------------------------------------------- sac
case("ReplayBuffer(capacity=0)", ValueError, "capacity", lambda: sac.ReplayBuffer(3, 1, capacity=0))
case("ReplayBuffer.sample(empty)", ValueError, "empty", lambda: sac.ReplayBuffer(3, 1, 10).sample(2))
case("ReplayBuffer.sample(0)", ValueError, "batch_size", lambda: sac.ReplayBuffer(3, 1, 10).sample(0))
case("polyak_update(tau=2)", ValueError, "tau", lambda: sac.polyak_update(torch.nn.Linear(1, 1), torch.nn.Linear(1, 1), 2.0))
case("soft_q_target(gamma=2)", ValueError, "gamma", lambda: sac.soft_q_target(z3, z3, z3, z3, z3, 2.0, 0.2))
case("soft_q_target(alpha=nan)", ValueError, "alpha", lambda: sac.soft_q_target(z3, z3, z3, z3, z3, 0.9, NAN))
case("soft_q_target(nan reward)", ValueError, "rewards", lambda: sac.soft_q_target(t(NAN, 0, 0), z3, z3, z3, z3, 0.9, 0.2))
case("sac_critic_loss(shape)", ValueError, "q2", lambda: sac.sac_critic_loss(z3, torch.zeros(2), z3, z3, z3, z3, z3, 0.9, 0.2))
case("sac_actor_loss(alpha=-1)", ValueError, "alpha", lambda: sac.sac_actor_loss(z3, z3, z3, -1.0))
case("sac_actor_loss(list)", TypeError, "logp", lambda: sac.sac_actor_loss([0.0], z3, z3, 0.2))
case("sac_alpha_loss(target nan)", ValueError, "target_entropy",
     lambda: sac.sac_alpha_loss(torch.zeros((), requires_grad=True), z3, NAN))
case("sac_alpha_loss(log_alpha list)", ValueError, "log_alpha", lambda: sac.sac_alpha_loss([0.0, 1.0], z3, -1.0))
case("train_sac(CartPole: Discrete actions)", TypeError, "Box",
     lambda: sac.train_sac(sac.SACConfig(env_id="CartPole-v1", total_timesteps=10, learning_starts=5,
                                         batch_size=4, buffer_size=10, eval_every=0), progress=False))

# --------------------------------------------------------------------------- envs
case("true_reward(nan)", ValueError, "obs", lambda: envs.true_reward(np.array([0.0, 0.0, NAN, 0.0])))
case("upright_score(str)", TypeError, "theta", lambda: envs.upright_score("a"))
case("FixedHorizonCartPole(horizon=0)", ValueError, "horizon", lambda: envs.FixedHorizonCartPoleEnv(horizon=0))
case("FixedHorizonCartPoleVectorEnv(num_envs=0)", ValueError, "num_envs", lambda: envs.FixedHorizonCartPoleVectorEnv(0))
case("noisy_policy(p=2)", ValueError, "p_random", lambda: envs.noisy_policy(act_zero, 2.0))
case("pendulum_swing_up_policy(p=-1)", ValueError, "p_random", lambda: envs.pendulum_swing_up_policy(-1.0))

# --------------------------------------------------------------------------- feedback
case("Segment(nan obs)", ValueError, "obs", lambda: feedback.Segment(np.full((3, 4), NAN), np.zeros(3, int), np.ones(3)))
case("Segment(empty)", ValueError, "obs", lambda: feedback.Segment(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0)))
case("Segment(env_id=3)", TypeError, "env_id", lambda: feedback.Segment(np.zeros((3, 4)), np.zeros(3, int), np.ones(3), env_id=3))
case("rollout_episodes(0)", ValueError, "n_episodes", lambda: feedback.rollout_episodes(act_zero, 0))
case("rollout_episodes(act=3)", TypeError, "act", lambda: feedback.rollout_episodes(3, 1))
case("rollout_episodes(no time limit)", RuntimeError, "max_steps",
     lambda: feedback.rollout_episodes(act_zero, 1, env_id="NeverEnds-v0", max_steps=50))
case("cut_segments(length=0)", ValueError, "segment_length",
     lambda: feedback.cut_segments({"obs": np.zeros((5, 4)), "actions": np.zeros(5, int), "rewards": np.ones(5)}, 0))
case("ScoreLabeler(noise=-1)", ValueError, "noise_std", lambda: feedback.ScoreLabeler(noise_std=-1.0))
case("ComparisonLabeler(epsilon=2)", ValueError, "epsilon", lambda: feedback.ComparisonLabeler(epsilon=2.0))
case("ComparisonLabeler(beta=nan)", ValueError, "beta", lambda: feedback.ComparisonLabeler(beta=NAN))
case("label_cost(kind)", ValueError, "kind", lambda: feedback.label_cost("shout", 3))
case("label_cost(n=-1)", ValueError, "n_labels", lambda: feedback.label_cost("score", -1))
case("labels_for_seconds(nan)", ValueError, "seconds", lambda: feedback.labels_for_seconds("score", NAN))
case("realistic_raters(kind)", ValueError, "kind", lambda: feedback.realistic_raters("shout"))
case("ScoreDataset(length)", ValueError, "scores", lambda: feedback.ScoreDataset([seg()], [0.5, 0.5]))
case("ScoreDataset(score=2)", ValueError, "scores", lambda: feedback.ScoreDataset([seg()], [2.0]))
case("ComparisonDataset(label=-1)", ValueError, "labels", lambda: feedback.ComparisonDataset([seg()], [seg()], [-1.0]))
case("ComparisonDataset(label=0.3)", ValueError, "labels", lambda: feedback.ComparisonDataset([seg()], [seg()], [0.3]))
case("LanguageDataset(comment=3)", TypeError, "comments", lambda: feedback.LanguageDataset([seg()], [3]))
case("make_dataset(kind)", ValueError, "kind", lambda: feedback.make_dataset("shout", [seg()]))
case("load_dataset(missing)", ValueError, "missing.json", lambda: feedback.load_dataset("/nonexistent/missing.json"))

# --------------------------------------------------------------------------- reward_model
_obs, _act = torch.zeros(2, 5, 4), torch.zeros(2, 5, dtype=torch.long)
case("RewardNet(obs_dim=0)", ValueError, "obs_dim", lambda: reward_model.RewardNet(0))
case("RewardNet(hidden=str)", ValueError, "hidden", lambda: reward_model.RewardNet(4, hidden="64"))
case("RewardNet(use_action=1)", TypeError, "use_action", lambda: reward_model.RewardNet(4, use_action=1))
case("segment_return(reduce)", ValueError, "reduce", lambda: reward_model.segment_return(net(), _obs, _act, "max"))
case("segment_return(nan obs)", ValueError, "obs", lambda: reward_model.segment_return(net(), torch.full((2, 5, 4), NAN), _act))
case("segment_return(net=3)", TypeError, "net", lambda: reward_model.segment_return(3, _obs, _act))
case("score_loss(score=2)", ValueError, "scores", lambda: reward_model.score_loss(net(), _obs, _act, [2.0, 0.5]))
case("score_loss(nan)", ValueError, "scores", lambda: reward_model.score_loss(net(), _obs, _act, [NAN, 0.5]))
case("compare_loss(label=-1)", ValueError, "labels", lambda: reward_model.compare_loss(net(), _obs, _act, _obs, _act, [-1.0, 1.0]))
case("compare_loss(nan)", ValueError, "labels", lambda: reward_model.compare_loss(net(), _obs, _act, _obs, _act, [NAN, 1.0]))
case("language_loss(shape)", ValueError, "language_scores", lambda: reward_model.language_loss(net(), _obs, _act, [0.5]))
case("check_lambdas(nan)", ValueError, "lambda", lambda: reward_model.check_lambdas((1.0, NAN, 1.0)))
case("check_lambdas(-1)", ValueError, "lambda", lambda: reward_model.check_lambdas((1.0, -1.0, 1.0)))
case("check_lambdas(str)", TypeError, "lambda", lambda: reward_model.check_lambdas("abc"))
case("FeedbackLinks(init_scale=0)", ValueError, "init_scale", lambda: reward_model.FeedbackLinks(init_scale=0.0))
case("predict_returns(reduce)", ValueError, "reduce", lambda: reward_model.predict_returns(net(), [seg()], "max"))
case("predict_returns([])", ValueError, "segments", lambda: reward_model.predict_returns(net(), []))
case("spearman(shape)", ValueError, "x", lambda: reward_model.spearman([1, 2, 3], [1, 2]))
case("make_eval_pairs(0)", ValueError, "n_pairs", lambda: reward_model.make_eval_pairs([seg(), seg()], 0))
case("RewardNormalizer(std=0)", ValueError, "std", lambda: reward_model.RewardNormalizer(std=0.0))
case("RewardNormalizer(mean=nan)", ValueError, "mean", lambda: reward_model.RewardNormalizer(mean=NAN))
case("train_reward_model(data=3)", TypeError, "data", lambda: reward_model.train_reward_model(net(), 3))
case("save_reward_model(suffix)", ValueError, "path", lambda: reward_model.save_reward_model("/tmp/x.pt", net()))
case("save_reward_model(net=3)", TypeError, "net", lambda: reward_model.save_reward_model("/tmp/x.safetensors", 3))
case("load_reward_model(missing)", ValueError, "missing.safetensors",
     lambda: reward_model.load_reward_model("/nonexistent/missing.safetensors"))
case("LearnedRewardWrapper(Pendulum)", ValueError, "Discrete",
     lambda: reward_model.LearnedRewardWrapper(gym.make("Pendulum-v1"), reward_model.RewardNet(3, 2)))
case("LearnedRewardWrapper(obs_dim)", ValueError, "obs_dim",
     lambda: reward_model.LearnedRewardWrapper(gym.make("Acrobot-v1"), net()))

# --------------------------------------------------------------------------- rlhf
case("RewardEnsemble([])", ValueError, "ensemble", lambda: rlhf.RewardEnsemble([]))
case("RewardEnsemble(3)", TypeError, "members", lambda: rlhf.RewardEnsemble(3))
case("RewardEnsemble(reduce)", ValueError, "reduce", lambda: rlhf.RewardEnsemble([net()], reduce="max"))
case("label_schedule(dict)", TypeError, "config", lambda: rlhf.label_schedule({"label_budget": 5}))
case("run_preference_loop(dict)", TypeError, "config", lambda: rlhf.run_preference_loop({"seed": 0}))
case("random_pairs(-1)", ValueError, "n", lambda: rlhf.random_pairs([seg(), seg()], -1, np.random.default_rng(0)))
case("random_pairs(rng=0)", TypeError, "rng", lambda: rlhf.random_pairs([seg(), seg()], 1, 0))

# --------------------------------------------------------------------------- imitation
case("behaviour_cloning(shape)", ValueError, "actions", lambda: imitation.behaviour_cloning(np.zeros((5, 4)), np.zeros(4, int)))
case("behaviour_cloning(nan)", ValueError, "obs", lambda: imitation.behaviour_cloning(np.full((5, 4), NAN), np.zeros(5, int)))
case("behaviour_cloning(epochs=0)", ValueError, "epochs", lambda: imitation.behaviour_cloning(np.zeros((5, 4)), np.zeros(5, int), epochs=0))
case("behaviour_cloning(lr=-1)", ValueError, "lr", lambda: imitation.behaviour_cloning(np.zeros((5, 4)), np.zeros(5, int), lr=-1.0))
case("dagger_round_sizes(0)", ValueError, "n_rounds", lambda: imitation.dagger_round_sizes(10, 0))
case("dagger_round_sizes(str)", TypeError, "n_labels", lambda: imitation.dagger_round_sizes("10", 2))
case("collect_demonstrations(0)", ValueError, "n_episodes", lambda: imitation.collect_demonstrations(act_zero, n_episodes=0))
case("GridWorld(slip=2)", ValueError, "slip", lambda: imitation.GridWorld(slip=2.0))
case("GridWorld(layout=str)", TypeError, "layout", lambda: imitation.GridWorld(layout="abc"))
case("GridWorld(horizon=0)", ValueError, "horizon", lambda: imitation.GridWorld(horizon=0))
case("hard_value_iteration(gamma=1)", ValueError, "gamma", lambda: imitation.hard_value_iteration(grid(), np.zeros(grid().n_states), gamma=1.0))
case("hard_value_iteration(reward shape)", ValueError, "reward", lambda: imitation.hard_value_iteration(grid(), np.zeros(3)))
case("soft_value_iteration(nan reward)", ValueError, "reward",
     lambda: imitation.soft_value_iteration(grid(), np.full(grid().n_states, NAN)))
case("expert_policy(env=3)", TypeError, "env", lambda: imitation.expert_policy(3))
case("generate_demonstrations(0)", ValueError, "n_trajectories",
     lambda: imitation.generate_demonstrations(grid(), imitation.expert_policy(grid()), n_trajectories=0))
case("feature_expectations(states out of range)", ValueError, "states",
     lambda: imitation.feature_expectations(grid(), [[10_000]]))
case("maxent_irl(lr=0)", ValueError, "lr", lambda: imitation.maxent_irl(grid(), [[0, 1]], lr=0.0))
case("maxent_irl(n_iters=0)", ValueError, "n_iters", lambda: imitation.maxent_irl(grid(), [[0, 1]], n_iters=0))
case("projection_apprenticeship(gamma=2)", ValueError, "gamma", lambda: imitation.projection_apprenticeship(grid(), [[0, 1]], gamma=2.0))

# --------------------------------------------------------------------------- text
case("cache_root(int)", TypeError, "cache_dir", lambda: text.cache_root(3))
case("make_corpus(0)", ValueError, "n_docs", lambda: text.make_corpus(0))
case("make_prompts(split)", ValueError, "split", lambda: text.make_prompts(3, split="dev"))
case("make_prompts(str)", TypeError, "n", lambda: text.make_prompts("3"))
case("make_sft_pairs(-1)", ValueError, "n", lambda: text.make_sft_pairs(-1))
case("gold_score(length)", ValueError, "completions", lambda: text.gold_score(["a"], ["b", "c"]))
case("gold_score(str)", TypeError, "prompts", lambda: text.gold_score("a", ["b"]))
case("GoldLabeler(epsilon=2)", ValueError, "epsilon", lambda: text.GoldLabeler(epsilon=2.0))
case("GoldLabeler(beta=0)", ValueError, "beta", lambda: text.GoldLabeler(beta=0.0))
case("train_tokenizer(vocab=0)", ValueError, "vocab_size", lambda: text.train_tokenizer(["a b"], vocab_size=0))
case("build_model(tokenizer=3)", TypeError, "tokenizer", lambda: text.build_model(3))
case("pack_corpus(block=0)", ValueError, "block_size", lambda: text.pack_corpus(["the food"], tok(), block_size=0))
case("generate(max_new_tokens=0)", ValueError, "max_new_tokens", lambda: text.generate(gpt(), tok(), ["the"], max_new_tokens=0))
case("generate(temperature=-1)", ValueError, "temperature", lambda: text.generate(gpt(), tok(), ["the"], temperature=-1.0))
case("sft_batch(length)", ValueError, "responses", lambda: text.sft_batch(tok(), ["a"], ["b", "c"]))
case("load_model(missing)", ValueError, "missing", lambda: text.load_model("/nonexistent/missing"))
case("load_model(int)", TypeError, "name_or_path", lambda: text.load_model(3))
case("position_ids_from_mask(list)", TypeError, "attention_mask", lambda: text.position_ids_from_mask([[1, 1]]))

# --------------------------------------------------------------------------- text_reward
case("bradley_terry_loss(nan)", ValueError, "r_chosen", lambda: text_reward.bradley_terry_loss(t(NAN, 0), t(0, 0)))
case("bradley_terry_loss(label=-1)", ValueError, "labels", lambda: text_reward.bradley_terry_loss(t(1, 0), t(0, 0), t(-1, 1)))
case("bradley_terry_loss(label=2)", ValueError, "labels", lambda: text_reward.bradley_terry_loss(t(1, 0), t(0, 0), t(2, 1)))
case("bradley_terry_loss(temperature=0)", ValueError, "temperature",
     lambda: text_reward.bradley_terry_loss(t(1, 0), t(0, 0), temperature=0.0))
case("bradley_terry_loss(list)", TypeError, "r_chosen", lambda: text_reward.bradley_terry_loss([1.0], t(0)))
case("bradley_terry_loss(shape)", ValueError, "r_rejected", lambda: text_reward.bradley_terry_loss(t(1, 0), t(0)))
case("score_loss(rating=2)", ValueError, "ratings", lambda: text_reward.score_loss(t(0, 0), t(2.0, 0.5)))
case("score_loss(rating=-1)", ValueError, "ratings", lambda: text_reward.score_loss(t(0, 0), t(-1.0, 0.5)))
case("score_loss(nan r)", ValueError, "r", lambda: text_reward.score_loss(t(NAN, 0), t(0.5, 0.5)))
case("rating_nll(rating=2)", ValueError, "ratings", lambda: text_reward.rating_nll(t(0, 0), t(2.0, 0.5)))
case("rating_nll(noise=0)", ValueError, "noise", lambda: text_reward.rating_nll(t(0, 0), t(0.5, 0.5), noise=0.0))
case("rating_link(scale=-1)", ValueError, "scale", lambda: text_reward.rating_link(t(0, 0), scale=-1.0))
case("RatingLink(noise=0)", ValueError, "noise", lambda: text_reward.RatingLink(noise=0.0))
case("check_ratings(y=2)", ValueError, "ratings[0]", lambda: text_reward.check_ratings([("a", "b", 2.0)]))
case("check_ratings(y=nan)", ValueError, "ratings[0]", lambda: text_reward.check_ratings([("a", "b", NAN)]))
case("check_ratings(str)", TypeError, "ratings", lambda: text_reward.check_ratings("abc"))
case("check_ratings([])", ValueError, "ratings", lambda: text_reward.check_ratings([]))
case("check_preference_rows(missing key)", ValueError, "rejected",
     lambda: text_reward.check_preference_rows([{"prompt": "a", "chosen": "b"}]))
case("check_preference_rows([])", ValueError, "rows", lambda: text_reward.check_preference_rows([]))
case("encode(padding_side)", ValueError, "padding_side", lambda: text_reward.encode(tok(), ["the"], ["food"], padding_side="up"))
case("encode(too long)", ValueError, "max_length", lambda: text_reward.encode(tok(), ["the " * 30], ["food"], max_length=8))
case("last_token_index(1-D)", TypeError, "attention_mask", lambda: text_reward.last_token_index(torch.ones(3)))
case("load_preference_dataset(missing)", ValueError, "missing.jsonl",
     lambda: text_reward.load_preference_dataset("/nonexistent/missing.jsonl"))
case("train_reward_model(config=dict)", TypeError, "config",
     lambda: text_reward.train_reward_model(gpt(), tok(), [{"prompt": "a", "chosen": "b", "rejected": "c"}], config={}))

# --------------------------------------------------------------------------- lm_rlhf
B2 = torch.zeros(2, 3)
M2 = torch.ones(2, 3)
case("rollout(max_new_tokens=0)", ValueError, "max_new_tokens", lambda: lm_rlhf.rollout(gpt(), tok(), ["the"], max_new_tokens=0))
case("rollout(temperature=nan)", ValueError, "temperature", lambda: lm_rlhf.rollout(gpt(), tok(), ["the"], temperature=NAN))
case("rollout(prompts=str)", TypeError, "prompts", lambda: lm_rlhf.rollout(gpt(), tok(), "the food"))
case("rollout(past the context)", ValueError, "max_new_tokens", lambda: lm_rlhf.rollout(gpt(), tok(), ["the food"], max_new_tokens=100))
case("per_token_kl(shape)", ValueError, "ref_logprobs", lambda: lm_rlhf.per_token_kl(B2, torch.zeros(2, 2), M2))
case("per_token_kl(nan)", ValueError, "logprobs", lambda: lm_rlhf.per_token_kl(torch.full((2, 3), NAN), B2, M2))
case("compute_rewards(kl_coef=-1)", ValueError, "kl_coef", lambda: lm_rlhf.compute_rewards(t(0, 0), B2, B2, M2, -1.0))
case("compute_rewards(nan score)", ValueError, "scores", lambda: lm_rlhf.compute_rewards(t(NAN, 0), B2, B2, M2, 0.1))
case("compute_rewards(empty row)", ValueError, "response_mask",
     lambda: lm_rlhf.compute_rewards(t(0, 0), B2, B2, torch.tensor([[1.0, 0, 0], [0, 0, 0]]), 0.1))
case("token_gae(gamma=1.5)", ValueError, "gamma", lambda: lm_rlhf.token_gae(B2, B2, M2, gamma=1.5))
case("token_gae(lam=-1)", ValueError, "lam", lambda: lm_rlhf.token_gae(B2, B2, M2, lam=-1.0))
case("token_gae(nan)", ValueError, "rewards", lambda: lm_rlhf.token_gae(torch.full((2, 3), NAN), B2, M2))
case("token_gae(shape)", ValueError, "values", lambda: lm_rlhf.token_gae(B2, torch.zeros(2, 2), M2))
case("lm_ppo_loss(clip=-0.2)", ValueError, "clip_coef", lambda: lm_rlhf.lm_ppo_loss(B2, B2, B2, B2, B2, B2, M2, clip_coef=-0.2))
case("lm_ppo_loss(clip_value=0)", ValueError, "clip_value", lambda: lm_rlhf.lm_ppo_loss(B2, B2, B2, B2, B2, B2, M2, clip_value=0.0))
case("lm_ppo_loss(nan adv)", ValueError, "advantages",
     lambda: lm_rlhf.lm_ppo_loss(B2, B2, torch.full((2, 3), NAN), B2, B2, B2, M2))
case("lm_ppo_loss(shape)", ValueError, "shape", lambda: lm_rlhf.lm_ppo_loss(B2, B2, B2, B2, B2, torch.zeros(2, 2), M2))
case("AdaptiveKLController(target=0)", ValueError, "target", lambda: lm_rlhf.AdaptiveKLController(0.1, 0.0, 100))
case("AdaptiveKLController(horizon=0)", ValueError, "horizon", lambda: lm_rlhf.AdaptiveKLController(0.1, 6.0, 0))
case("AdaptiveKLController.update(nan)", ValueError, "current_kl", lambda: lm_rlhf.AdaptiveKLController(0.1, 6.0, 100).update(NAN, 8))
case("AdaptiveKLController.update(str)", TypeError, "current_kl", lambda: lm_rlhf.AdaptiveKLController(0.1, 6.0, 100).update("1", 8))
case("AdaptiveKLController.update(n=0)", ValueError, "n_steps", lambda: lm_rlhf.AdaptiveKLController(0.1, 6.0, 100).update(1.0, 0))
case("frozen_reference(ref is policy)", ValueError, "ref_policy", lambda: lm_rlhf.frozen_reference(gpt(), gpt()))
case("train_lm_ppo(config=dict)", TypeError, "config",
     lambda: lm_rlhf.train_lm_ppo(gpt(), tok(), lambda p, c: torch.zeros(len(p)), ["the"], config={}))

# --------------------------------------------------------------------------- dpo
d3 = torch.zeros(3)
case("dpo_loss(nan)", ValueError, "policy_chosen_logps", lambda: dpo.dpo_loss(t(NAN, 0, 0), d3, d3, d3))
case("dpo_loss(inf ref)", ValueError, "ref_rejected_logps", lambda: dpo.dpo_loss(d3, d3, d3, t(0, -INF, 0)))
case("dpo_loss(beta=-0.1)", ValueError, "beta", lambda: dpo.dpo_loss(d3, d3, d3, d3, beta=-0.1))
case("dpo_loss(label_smoothing=0.5)", ValueError, "label_smoothing", lambda: dpo.dpo_loss(d3, d3, d3, d3, label_smoothing=0.5))
case("dpo_loss(label_smoothing=nan)", ValueError, "label_smoothing", lambda: dpo.dpo_loss(d3, d3, d3, d3, label_smoothing=NAN))
case("dpo_loss(list)", TypeError, "ref_chosen_logps", lambda: dpo.dpo_loss(d3, d3, [0.0] * 3, d3))
case("dpo_loss(empty)", ValueError, "empty", lambda: dpo.dpo_loss(*(torch.zeros(0),) * 4))
case("dpo_loss(2-D)", ValueError, "policy_rejected_logps", lambda: dpo.dpo_loss(d3, torch.zeros(3, 1), d3, d3))
case("dpo_metrics(beta=0)", ValueError, "beta", lambda: dpo.dpo_metrics(d3, d3, d3, d3, beta=0.0))
case("tokenize_preferences(rows=str)", TypeError, "rows", lambda: dpo.tokenize_preferences(tok(), "abc"))
case("tokenize_preferences([])", ValueError, "rows", lambda: dpo.tokenize_preferences(tok(), []))
case("train_dpo(config=dict)", TypeError, "config",
     lambda: dpo.train_dpo(gpt(), tok(), [{"prompt": "the", "chosen": "food", "rejected": "room"}], config={}))

# --------------------------------------------------------------------------- grpo
case("grpo_advantages(list)", TypeError, "rewards", lambda: grpo.grpo_advantages([1.0, 2.0], 2))
case("grpo_advantages(nan)", ValueError, "rewards", lambda: grpo.grpo_advantages(t(1, NAN), 2))
case("grpo_advantages(group 1)", ValueError, "group_size", lambda: grpo.grpo_advantages(t(1, 2), 1))
case("grpo_advantages(uneven)", ValueError, "group", lambda: grpo.grpo_advantages(t(1, 2, 3), 2))
case("rloo_advantages(empty)", ValueError, "rewards", lambda: grpo.rloo_advantages(torch.zeros(0, 2)))
case("group_policy_loss(nan)", ValueError, "old_logps", lambda: grpo.group_policy_loss(B2, torch.full((2, 3), NAN), t(0, 0), M2))
case("group_policy_loss(clip=0)", ValueError, "clip_eps", lambda: grpo.group_policy_loss(B2, B2, t(0, 0), M2, clip_eps=0.0))
case("group_policy_loss(beta=nan)", ValueError, "beta", lambda: grpo.group_policy_loss(B2, B2, t(0, 0), M2, beta=NAN))
case("group_policy_loss(loss_type)", ValueError, "loss_type", lambda: grpo.group_policy_loss(B2, B2, t(0, 0), M2, loss_type="x"))
case("group_policy_loss(adv shape)", ValueError, "advantages", lambda: grpo.group_policy_loss(B2, B2, t(0, 0, 0), M2))
case("sample_groups(group_size=0)", ValueError, "group_size", lambda: grpo.sample_groups(gpt(), tok(), ["the"], 0))
case("best_of_n_kl(0)", ValueError, "n", lambda: grpo.best_of_n_kl(0))
case("best_of_n_indices(uneven)", ValueError, "n", lambda: grpo.best_of_n_indices(t(1, 2, 3), 2))
case("best_of_n(reward_fn=3)", TypeError, "reward_fn", lambda: grpo.best_of_n(gpt(), tok(), ["the"], 3, 2))

# --------------------------------------------------------------------------- plots
case("smooth(window=0)", ValueError, "window", lambda: plots.smooth([1.0, 2.0], 0))
case("smooth(2-D)", ValueError, "values", lambda: plots.smooth([[1.0]], 2))
case("plot_learning_curve(shape)", ValueError, "y", lambda: plots.plot_learning_curve([1, 2], [1]))
case("record_episode(every=0)", ValueError, "every", lambda: plots.record_episode(act_zero, "CartPole-v1", every=0))
case("filmstrip([])", ValueError, "frames", lambda: plots.filmstrip([]))
case("filmstrip(n=0)", ValueError, "n", lambda: plots.filmstrip([np.zeros((4, 4, 3), np.uint8)], n=0))
case("filmstrip(nan)", ValueError, "frames", lambda: plots.filmstrip([np.full((4, 4, 3), NAN)]))
case("filmstrip(float > 1)", ValueError, "frames", lambda: plots.filmstrip([np.full((4, 4, 3), 2.0)]))
case("to_uint8_frames(shape)", ValueError, "frames",
     lambda: plots.to_uint8_frames([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))]))
case("to_uint8_frames(str)", TypeError, "frames", lambda: plots.to_uint8_frames("abc"))
case("save_gif(fps=0)", ValueError, "fps", lambda: plots.save_gif([np.zeros((4, 4, 3), np.uint8)], "/tmp/x.gif", fps=0))

# --------------------------------------------------------------------------- widgets
case("render_cartpole_frame(size)", ValueError, "size", lambda: widgets.render_cartpole_frame(0.0, 0.0, size=(4, 4)))
case("render_cartpole_frames(every=0)", ValueError, "every", lambda: widgets.render_cartpole_frames(seg(), every=0))
case("render_cartpole_frames(str)", TypeError, "segment", lambda: widgets.render_cartpole_frames("abc"))
case("filmstrip_image([])", ValueError, "frames", lambda: widgets.filmstrip_image([]))
case("filmstrip_image(n=0)", ValueError, "n", lambda: widgets.filmstrip_image([np.zeros((4, 4, 3), np.uint8)], n=0))
case("animation_gif(frame_ms=1)", ValueError, "frame_ms", lambda: widgets.animation_gif([np.zeros((4, 4, 3), np.uint8)], 1))
case("make_pairs(1 segment)", ValueError, "segments", lambda: widgets.make_pairs([seg()]))
case("load_answers(missing)", FileNotFoundError, "missing.jsonl", lambda: widgets.load_answers("/nonexistent/missing.jsonl"))
case("load_answers(int)", TypeError, "path", lambda: widgets.load_answers(3))
case("repair_answers(missing)", FileNotFoundError, "path", lambda: widgets.repair_answers("/nonexistent/missing.jsonl"))
case("answers_to_datasets(str)", TypeError, "records", lambda: widgets.answers_to_datasets("abc"))
case("LabelingWidget(path=3)", TypeError, "answers_path", lambda: widgets.LabelingWidget([seg(), seg()], 3))
case("LabelingWidget(.txt)", ValueError, "answers_path", lambda: widgets.LabelingWidget([seg(), seg()], "/tmp/x.txt"))


# --------------------------------------------------------------------------- the test
IDS = [c[0] for c in CASES]
assert len(IDS) == len(set(IDS)), [i for i in IDS if IDS.count(i) > 1]


@pytest.mark.parametrize("cid,exc,name,fn", CASES, ids=IDS)
def test_bad_input_gets_a_clear_error(cid, exc, name, fn):
    with pytest.raises(exc) as info:
        fn()
    assert name.lower() in str(info.value).lower(), f"{cid}: message does not name {name!r}: {info.value}"


def test_there_are_enough_cases():
    assert len(CASES) >= 300


# --------------------------------------------------------------------------- the census (run as a script)
def census(timeout: int = 60) -> dict:
    """Outcome counts of all cases: clear / other / silent / hang, and the ids of the non-clear ones.

    The heavy optional imports and the tiny models are loaded first, so that the per-case alarm
    measures the call, not an import on a busy machine.
    """
    import signal

    import matplotlib.pyplot  # noqa: F401
    import PIL.Image  # noqa: F401
    import transformers  # noqa: F401

    gpt(), tok(), seg(), net(), grid()

    class Hang(Exception):
        pass

    def alarm(*_):
        raise Hang

    signal.signal(signal.SIGALRM, alarm)
    out: dict = {"clear": [], "other": [], "silent": [], "hang": []}
    torch.set_num_threads(1)
    for cid, exc, name, fn in CASES:
        signal.alarm(timeout)
        try:
            fn()
            kind, why = "silent", "returned"
        except Hang:
            kind, why = "hang", f"> {timeout} s"
        except Exception as e:  # noqa: BLE001 - counting every outcome
            ok = isinstance(e, exc) and name.lower() in str(e).lower()
            kind, why = ("clear", "") if ok else ("other", f"{type(e).__name__}: {str(e)[:160]}")
        finally:
            signal.alarm(0)
        out[kind].append((cid, why))
    return out


if __name__ == "__main__":  # pragma: no cover
    res = census()
    for kind in ("other", "silent", "hang"):
        for cid, why in res[kind]:
            print(f"{kind:6s} {cid}: {why}")
    print({k: len(v) for k, v in res.items()}, "of", len(CASES), "cases")
    sys.exit(0 if not (res["silent"] or res["hang"] or res["other"]) else 1)
