"""Recorded runs (rlhf_tutorial.cache.reuse_run): a reused run is the run, bit for bit, or it is trained.

The test command records the solution notebooks' Gymnasium runs and the student notebooks reuse
them ($RLHF_TUTORIAL_RUNS); these tests check that a reused run returns the same network, history
and global random state as training it, that anything unfingerprintable is trained, and that a
damaged record is an error with its path.
"""

from __future__ import annotations

import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from rlhf_tutorial import cache, feedback, reward_model, rlhf, sac
from rlhf_tutorial.cache import CheckpointError
from rlhf_tutorial.envs import ENV_ID
from rlhf_tutorial.ppo import PPOConfig, train_ppo
from rlhf_tutorial.reinforce import ReinforceConfig, train_reinforce

PPO = PPOConfig(seed=3, total_timesteps=2048, eval_every=1024, eval_episodes=2)


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_TUTORIAL_CACHE", str(tmp_path))

    def use(mode):
        monkeypatch.setenv(cache.RUNS_ENV, mode)
    return use


def _seeded(train):
    """Run ``train`` from one global random state (so the states after two runs can be compared)."""
    torch.manual_seed(123)
    np.random.seed(123)
    random.seed(123)
    return train()


def _after():
    """The global random state a run leaves behind, read through one draw of each generator."""
    return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()


def _untimed(hist):
    return {k: v for k, v in hist.items() if "seconds" not in k}


def _same(a, b):
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb
        torch.testing.assert_close(va, vb, rtol=0, atol=0)


@pytest.mark.parametrize("trainer", ["ppo", "sac", "reinforce"])
def test_a_reused_run_is_the_recorded_run(runs, tmp_path, trainer):
    train = {"ppo": lambda: train_ppo(PPO, progress=False),
             "sac": lambda: sac.train_sac(sac.SACConfig(seed=1, total_timesteps=400, learning_starts=200,
                                                        eval_every=200, eval_episodes=2), progress=False),
             "reinforce": lambda: train_reinforce(ReinforceConfig(seed=2, total_episodes=24), progress=False)}[trainer]
    runs("off")
    model0, hist0 = _seeded(train)
    after0 = _after()
    assert not (tmp_path / "runs").exists()  # off: nothing written
    runs("record")
    model1, hist1 = _seeded(train)
    assert _after() == after0
    runs("reuse")
    model2, hist2 = _seeded(train)
    assert _after() == after0  # the random state after the run, as if it had been trained
    assert hist1 == hist2  # the recorded history, as it was
    assert _untimed(hist0) == _untimed(hist2)  # and the same learning as a run that was never recorded
    _same(model0, model2)
    assert model2.training == model0.training
    assert len(list((tmp_path / "runs").glob(f"{trainer}-*[!k]"))) == 1


def test_a_reused_preference_loop_is_the_recorded_loop(runs):
    cfg = rlhf.PreferenceLoopConfig(seed=0, total_timesteps=3_200, label_budget=20, segment_length=25,
                                    initial_steps=1_600, phase_steps=800, label_phases=2, reward_epochs=3,
                                    reward_hidden=(16,), eval_every=0, eval_episodes=2,
                                    ppo=replace(rlhf.PreferenceLoopConfig().ppo, update_epochs=1))
    runs("record")
    (agent1, ens1), hist1 = _seeded(lambda: rlhf.run_preference_loop(cfg, progress=False))
    after1 = _after()
    runs("reuse")
    (agent2, ens2), hist2 = _seeded(lambda: rlhf.run_preference_loop(cfg, progress=False))
    assert _after() == after1
    assert json.dumps(hist1, sort_keys=True) == json.dumps(hist2, sort_keys=True)  # NaN Spearmans included
    _same(agent1, agent2)
    for m1, m2 in zip(ens1.members, ens2.members, strict=True):
        _same(m1, m2)
        assert m1.training == m2.training
    np.testing.assert_array_equal(ens1.means, ens2.means)
    np.testing.assert_array_equal(ens1.stds, ens2.stds)
    assert ens1.reduce == ens2.reduce and ens1.links is None and ens2.links is None


def test_another_config_or_reward_is_another_run(runs, tmp_path):
    runs("reuse")
    _, h1 = train_ppo(PPO, progress=False)
    _, h2 = train_ppo(replace(PPO, seed=4), progress=False)
    assert h1["eval_return"] != h2["eval_return"] or h1["policy_loss"] != h2["policy_loss"]
    pool = feedback.collect_segments(feedback.controller_pool(0, (0, 1)), 20, episodes_per_policy=2, seed=0)
    net = reward_model.RewardNet.for_env(ENV_ID, seed=0, use_action=False)
    envs = rlhf.LearnedRewardEnvs(ENV_ID, net, reward_model.RewardNormalizer.fit(net, pool))
    train_ppo(PPO, envs=envs, progress=False)
    with torch.no_grad():  # a changed reward net: a new key, so a new run
        next(net.parameters()).add_(0.1)
    train_ppo(PPO, envs=envs, progress=False)
    assert len(list((tmp_path / "runs").glob("ppo-*[!k]"))) == 4


def test_what_cannot_be_fingerprinted_is_trained(runs, tmp_path):
    runs("reuse")
    net = reward_model.RewardNet.for_env(ENV_ID, seed=0, use_action=False)
    train_ppo(PPO, envs=lambda n: rlhf.LearnedRewardVectorWrapper(rlhf.make_vec_env(ENV_ID, n), net), progress=False)
    train_ppo(PPO, callback=lambda stats: None, progress=False)
    assert not list((tmp_path / "runs").glob("ppo-*[!k]"))
    assert cache.fingerprint(lambda: 1) is None


def test_a_damaged_record_is_an_error_with_its_path(runs, tmp_path):
    runs("record")
    train_ppo(PPO, progress=False)
    (folder,) = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    runs("reuse")
    with pytest.raises(CheckpointError, match="delete it to retrain"):
        train_ppo(PPO, progress=False)


def test_an_unknown_mode_is_an_error(runs):
    runs("sometimes")
    with pytest.raises(ValueError, match="RLHF_TUTORIAL_RUNS"):
        train_ppo(PPO, progress=False)
