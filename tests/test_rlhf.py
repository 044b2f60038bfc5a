"""The online RLHF loop of notebook 06: ensemble, query selection, reward wrapper, bad inputs, a smoke run."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from rlhf_tutorial.envs import ENV_ID
from rlhf_tutorial.feedback import ComparisonDataset, ComparisonLabeler, Segment
from rlhf_tutorial.reward_model import RewardNet
from rlhf_tutorial.rl import make_vec_env
from rlhf_tutorial.rlhf import (
    LearnedRewardVectorWrapper,
    PreferenceLoopConfig,
    PreferenceModel,
    RewardEnsemble,
    label_schedule,
    run_preference_loop,
    select_queries,
)


def linear_member(w0: float, w1: float) -> RewardNet:
    """A RewardNet whose r̂(s) = w0 * s[0] + w1 * s[1] exactly (hand-made ensemble member)."""
    net = RewardNet(2, use_action=False, hidden=(2,), seed=0)
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[w0, w1]]))
        lin.bias.zero_()
    net.net = lin
    return net


def const_segment(f0: float, f1: float, length: int = 5) -> Segment:
    obs = np.tile(np.array([f0, f1], dtype=np.float32), (length, 1))
    return Segment(obs, np.zeros(length, dtype=np.int64), np.zeros(length, dtype=np.float32))


def test_select_queries_picks_the_pairs_the_members_disagree_on():
    # The members agree on feature 1 (weight 1 each) and disagree on feature 0 (+1, -1, 0), so the
    # spread of σ(r̂_k(a) - r̂_k(b)) over members grows with |Δ feature 0| and is 0 when only feature 1 differs.
    ens = RewardEnsemble([linear_member(1, 1), linear_member(-1, 1), linear_member(0, 1)])
    deltas = [0.0, 2.0, 0.5, 3.0, 1.0]
    pairs = [(const_segment(d, 0.0), const_segment(0.0, 1.0 if d == 0 else 0.0)) for d in deltas]
    d = ens.disagreement([a for a, _ in pairs], [b for _, b in pairs])
    assert d[0] == pytest.approx(0.0, abs=1e-7)
    assert np.all(np.diff(d[[0, 2, 4, 1, 3]]) > 0)
    assert select_queries(ens, pairs, 2) == [3, 1]
    assert select_queries(ens, pairs, 10) == [3, 1, 4, 2, 0]  # at most all the candidates
    rnd = select_queries(ens, pairs, 3, method="random", seed=1)
    assert len(set(rnd)) == 3 and all(0 <= i < 5 for i in rnd)
    assert rnd == select_queries(ens, pairs, 3, method="random", seed=1)
    with pytest.raises(ValueError, match="method"):
        select_queries(ens, pairs, 2, method="entropy")
    with pytest.raises(ValueError, match="n must be"):
        select_queries(ens, pairs, 0)
    with pytest.raises(ValueError, match="empty"):
        select_queries(ens, [], 1)


def test_ensemble_means_and_normalizers():
    ens = RewardEnsemble([linear_member(1, 0), linear_member(3, 0)])
    obs = np.array([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(ens.predict(obs), [[1, 2, 3], [3, 6, 9]], rtol=1e-6)
    ens.fit_normalizers([Segment(obs, np.zeros(3, dtype=np.int64), np.zeros(3))])
    z = ens.predict(obs)
    np.testing.assert_allclose(z[0], z[1], rtol=1e-5)  # both members are the same reward up to scale
    np.testing.assert_allclose(z.mean(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(z.std(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(ens.mean(obs), z[0], rtol=1e-5)
    np.testing.assert_allclose(ens.std(obs), 0.0, atol=1e-5)


def _random_pairs_dataset(n: int, seed: int = 0) -> ComparisonDataset:
    rng = np.random.default_rng(seed)
    labeler = ComparisonLabeler(epsilon=0.1, seed=seed)
    segs = []
    for _ in range(2 * n):
        obs = rng.uniform(-1, 1, size=(10, 4)).astype(np.float32)
        segs.append(Segment(obs, rng.integers(0, 2, 10), (1 - obs[:, 2] ** 2).astype(np.float32)))
    a, b = segs[:n], segs[n:]
    return ComparisonDataset(a, b, [labeler.label(x, y) for x, y in zip(a, b)])


def test_bootstrap_fitting_makes_identical_members_differ():
    net = RewardNet(4, hidden=(16,), seed=0)
    ens = RewardEnsemble([copy.deepcopy(net) for _ in range(3)])
    data = _random_pairs_dataset(60)
    obs = torch.as_tensor(np.random.default_rng(1).uniform(-1, 1, (50, 4)), dtype=torch.float32)
    act = torch.zeros(50, dtype=torch.long)
    before = ens.predict(obs, act, normalized=False)
    np.testing.assert_allclose(before[0], before[1])
    hists = ens.fit(data, _random_pairs_dataset(20, seed=2), epochs=5, seed=0)
    assert len(hists) == 3 and all(h["epochs_run"] >= 1 for h in hists)
    after = ens.predict(obs, act, normalized=False)
    assert not np.allclose(after[0], after[1]) and not np.allclose(after[1], after[2])


def test_wrapper_gives_the_ensemble_reward_and_records_true_episodes():
    base = make_vec_env(ENV_ID, 2)
    ens = RewardEnsemble.for_env(base, size=2, hidden=(8,), seed=0)
    env = LearnedRewardVectorWrapper(base, ens, record_episodes=True)
    obs, _ = env.reset(seed=0)
    for t in range(201):
        acts = np.array([t % 2, 1 - t % 2])
        expected = ens.mean(np.asarray(obs, dtype=np.float32), torch.as_tensor(acts))
        obs, r, term, trunc, info = env.step(acts)
        if t < 200:
            np.testing.assert_allclose(r, expected, rtol=1e-5, atol=1e-6)
        else:  # the auto-reset step after the 200-step episodes
            np.testing.assert_array_equal(r, 0.0)
        assert "true_reward" in info
    eps = env.pop_episodes()
    assert len(eps) == 2 and all(len(e["actions"]) == 200 for e in eps)
    assert all(0 <= e["rewards"].min() and e["rewards"].max() <= 1 for e in eps)
    assert env.pop_episodes() == []
    env.close()


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="at least 1 member"):
        RewardEnsemble([])
    with pytest.raises(TypeError, match="RewardNet"):
        RewardEnsemble([nn.Linear(4, 1)])
    with pytest.raises(ValueError, match="obs_dim"):
        RewardEnsemble([RewardNet(4), RewardNet(3)])
    with pytest.raises(ValueError, match="ensemble_size"):
        PreferenceLoopConfig(ensemble_size=0).validate()
    with pytest.raises(ValueError, match="ensemble size"):
        RewardEnsemble.for_env(ENV_ID, size=0)
    with pytest.raises(ValueError, match="label_budget"):
        PreferenceLoopConfig(label_budget=0).validate()
    with pytest.raises(TypeError, match="label_budget"):
        PreferenceLoopConfig(label_budget=2.5).validate()
    with pytest.raises(ValueError, match="segment_length"):
        PreferenceLoopConfig(segment_length=500).validate()  # longer than the rollout
    with pytest.raises(ValueError, match="segment_length"):
        run_preference_loop(PreferenceLoopConfig(segment_length=300, initial_steps=8 * 300, phase_steps=8 * 300),
                            progress=False)  # longer than an episode (200 steps)
    with pytest.raises(ValueError, match="query_method"):
        PreferenceLoopConfig(query_method="clever").validate()
    with pytest.raises(ValueError, match="obs_dim=3"):
        run_preference_loop(PreferenceLoopConfig(), progress=False,
                            ensemble=RewardEnsemble([RewardNet(3, seed=0)]))
    with pytest.raises(TypeError, match="PreferenceLoopConfig"):
        run_preference_loop({"seed": 0}, progress=False)


def test_label_schedule_asks_more_early_and_sums_to_the_budget():
    for budget in (1, 7, 250, 500):
        s = label_schedule(PreferenceLoopConfig(label_budget=budget))
        assert sum(s) == budget and len(s) == 21
        assert all(x >= y for x, y in zip(s[1:], s[2:]))
    s = label_schedule(PreferenceLoopConfig(label_budget=500))
    assert s[0] == 125 and s[1] > s[-1]


def test_smoke_run_of_the_loop():
    cfg = PreferenceLoopConfig(seed=0, total_timesteps=6_400, label_budget=30, segment_length=25,
                               initial_steps=1_600, phase_steps=1_600, label_phases=2, reward_epochs=5,
                               reward_hidden=(16,), eval_every=3_200, eval_episodes=2,
                               ppo=replace(PreferenceLoopConfig().ppo, update_epochs=2))
    seen = []
    model, hist = run_preference_loop(cfg, callback=seen.append, progress=False)
    assert isinstance(model, PreferenceModel)
    agent, ens = model
    assert len(ens) == 3
    assert hist["labels_used"] == 30 and hist["labels_total"][-1] == 30
    assert hist["phase_labels"] == label_schedule(cfg)
    assert hist["global_step"][-1] >= 6_400
    assert len(hist["eval_return"]) == 2 and 0 <= hist["final_return"] <= 200
    assert len(hist["spearman"]) == 3 and all(-1 <= x <= 1 for x in hist["spearman"][1:])
    assert len(hist["episode_true_return"]) > 0
    assert seen and seen[-1]["labels"] == 30 and "approx_kl" in seen[-1]
    act = agent.act(np.zeros((1, 4), dtype=np.float32), deterministic=True)
    assert act.shape == (1,)


def test_wrapper_keeps_obs_terminated_truncated_and_info_of_the_env():
    base, ref = make_vec_env(ENV_ID, 3), make_vec_env(ENV_ID, 3)
    ens = RewardEnsemble.for_env(base, size=2, hidden=(8,), seed=1)
    env = LearnedRewardVectorWrapper(base, ens, uncertainty_penalty=0.5)
    o1, _ = env.reset(seed=3)
    o2, _ = ref.reset(seed=3)
    np.testing.assert_array_equal(o1, o2)
    rng = np.random.default_rng(0)
    for t in range(205):
        acts = rng.integers(0, 2, 3)
        z = ens.predict(np.asarray(o1, dtype=np.float32), torch.as_tensor(acts))
        o1, r1, te1, tr1, i1 = env.step(acts)
        o2, r2, te2, tr2, i2 = ref.step(acts)
        np.testing.assert_array_equal(o1, o2)
        np.testing.assert_array_equal(te1, te2)
        np.testing.assert_array_equal(tr1, tr2)
        np.testing.assert_allclose(i1["true_reward"], r2)  # the env's reward, kept in info
        for k in i2:
            np.testing.assert_array_equal(i1[k], i2[k])
        if t not in (200,):  # the auto-reset step gets 0
            np.testing.assert_allclose(r1, z.mean(0) - 0.5 * z.std(0), rtol=1e-5, atol=1e-6)
    env.close()
    ref.close()
    with pytest.raises(ValueError, match="uncertainty_penalty"):
        LearnedRewardVectorWrapper(make_vec_env(ENV_ID, 1), ens, uncertainty_penalty=-1)


def test_fit_with_scores_uses_the_mixed_loss():
    ens = RewardEnsemble([RewardNet(4, hidden=(16,), seed=s) for s in range(2)])
    data = _random_pairs_dataset(40)
    segs = [data.segments_a[i] for i in range(20)]
    y = [float(np.clip(s.true_mean, 0, 1)) for s in segs]
    h = ens.fit(data, None, epochs=3, patience=None, seed=0, scored=(segs, y))
    assert len(h) == 2 and all(x["epochs_run"] == 3 for x in h)
    with pytest.raises(ValueError, match="scored targets"):
        ens.fit(data, None, epochs=1, scored=(segs, [2.0] * len(segs)))
    with pytest.raises(ValueError, match="feedback_mix"):
        PreferenceLoopConfig(feedback_mix=(1.0, 0.0, 0.0)).validate()
    with pytest.raises(ValueError, match="scorer"):
        run_preference_loop(PreferenceLoopConfig(feedback_mix=(1, 1, 1)), progress=False)
    with pytest.raises(ValueError, match="restart_margin"):
        PreferenceLoopConfig(restart_margin=-1.0).validate()


def test_smoke_run_with_scores_initial_labels_and_restarts():
    small = dict(seed=1, total_timesteps=4_800, segment_length=25, initial_steps=1_600, phase_steps=1_600,
                 label_phases=2, reward_epochs=3, reward_hidden=(16,), eval_every=0, eval_episodes=2,
                 ppo=replace(PreferenceLoopConfig().ppo, update_epochs=1))
    rng = np.random.default_rng(0)
    segs = [Segment(rng.uniform(-.1, .1, (25, 4)).astype(np.float32), np.zeros(25, dtype=np.int64),
                    rng.uniform(0, 1, 25).astype(np.float32)) for _ in range(8)]
    given = ComparisonDataset(segs[:4], segs[4:], [1.0, 0.0, 1.0, 0.5])
    cfg = PreferenceLoopConfig(label_budget=24, feedback_mix=(1.0, 2.0, 0.0), restart_margin=0.0, **small)
    _, hist = run_preference_loop(cfg, progress=False, initial_labels=given)
    assert hist["labels_used"] == 24 and sum(hist["phase_labels"]) == 20  # 4 given + 20 asked
    assert isinstance(hist["restarts"], list) and len(hist["restarts"]) <= cfg.max_restarts
    with pytest.raises(ValueError, match="segment_length"):
        run_preference_loop(replace(cfg, segment_length=20), progress=False, initial_labels=given)
    with pytest.raises(TypeError, match="initial_labels"):
        run_preference_loop(cfg, progress=False, initial_labels=[1, 2])


def test_one_wrapper_for_a_net_with_its_normalizer_and_for_an_ensemble():
    from rlhf_tutorial import reward_model as rm
    net = RewardNet.for_env(ENV_ID, hidden=(8,), seed=3)
    norm = rm.RewardNormalizer(mean=0.3, std=2.0)
    ours = LearnedRewardVectorWrapper(make_vec_env(ENV_ID, 2), net, norm)
    o1, _ = ours.reset(seed=5)
    for t in range(202):
        acts = np.array([t % 2, 1])
        want = norm(net.predict(np.asarray(o1, dtype=np.float32), torch.as_tensor(acts)).astype(np.float64))
        o1, r1, *_ = ours.step(acts)
        if t == 200:   # the step after every copy's 200-step episode ended only resets: reward 0
            np.testing.assert_array_equal(r1, 0.0)
        else:
            np.testing.assert_allclose(r1, want, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="normalizer"):
        LearnedRewardVectorWrapper(make_vec_env(ENV_ID, 1), RewardEnsemble([net]), norm)
    with pytest.raises(TypeError, match="reward_model"):
        LearnedRewardVectorWrapper(make_vec_env(ENV_ID, 1), "r")


def test_wrapper_with_a_state_reward_takes_continuous_actions():
    net = RewardNet(3, n_actions=1, hidden=(8,), use_action=False, seed=0)
    env = LearnedRewardVectorWrapper(make_vec_env("Pendulum-v1", 2), net)
    obs, _ = env.reset(seed=0)
    for _ in range(3):
        want = net.predict(np.asarray(obs, dtype=np.float32))
        obs, r, _, _, info = env.step(np.zeros((2, 1), dtype=np.float32))
        np.testing.assert_allclose(r, want, rtol=1e-6)
        assert info["true_reward"].shape == (2,) and (info["true_reward"] <= 0).all()
    env.close()


def test_loop_callback_returning_true_stops_it():
    cfg = PreferenceLoopConfig(seed=0, total_timesteps=6_400, label_budget=10, segment_length=25,
                               initial_steps=1_600, phase_steps=1_600, label_phases=1, reward_epochs=2,
                               reward_hidden=(8,), eval_every=0, eval_episodes=1,
                               ppo=replace(PreferenceLoopConfig().ppo, update_epochs=1))
    _, hist = run_preference_loop(cfg, callback=lambda info: True, progress=False)
    assert len(hist["global_step"]) == 1


# --------------------------------------------------------------------------- the calibrated mix (notebook 06, issue 15)
def _scored_segments(n: int, seed: int = 5) -> list[Segment]:
    """Segments whose mean true reward 1 - s[2]² spans [0, 1] (s[2] nearly constant within a segment)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        obs = rng.uniform(-1, 1, size=(10, 4)).astype(np.float32)
        obs[:, 2] = rng.uniform(-1, 1) + 0.1 * obs[:, 2]
        out.append(Segment(obs, rng.integers(0, 2, 10), np.clip(1 - obs[:, 2] ** 2, 0, 1).astype(np.float32)))
    return out


def _held_out(segs, ys, kinds, kind):
    """The labels of ``kind`` that the calibrated fit holds out: every 5th, by position within the kind."""
    mine = [(s, y) for s, y, k in zip(segs, ys, kinds) if k == kind]
    held = mine[4::5]
    obs = torch.as_tensor(np.stack([s.obs for s, _ in held]))
    act = torch.as_tensor(np.stack([s.actions for s, _ in held]))
    return obs, act, torch.tensor([y for _, y in held], dtype=torch.float32)


def test_calibrated_fit_learns_a_positive_link_per_kind_to_the_raters_scale():
    from rlhf_tutorial.reward_model import spearman
    a, b = _scored_segments(150, seed=0), _scored_segments(150, seed=1)
    labeler = ComparisonLabeler(epsilon=0.1, seed=0)
    data = ComparisonDataset(a, b, [labeler.label(x, y) for x, y in zip(a, b)])
    segs = _scored_segments(120)
    true = np.array([s.true_mean for s in segs])
    kinds = ["score", "language"] * 60
    ys = [0.3 * q + 0.5 if k == "score" else 0.6 * q + 0.1 for q, k in zip(true, kinds)]  # two raters' scales
    ens = RewardEnsemble([RewardNet(4, hidden=(16,), use_action=False, seed=s) for s in range(2)])
    hists = ens.fit(data, None, epochs=100, lr=1e-2, patience=None, seed=0, scored=(segs, ys, kinds),
                    mix_weighting="calibrated")
    assert len(ens.links) == 2 and all(h["epochs_run"] == 100 for h in hists)
    r = ens.segment_returns(segs)  # raw r̂(τ), (members, segments)
    for k, links in enumerate(ens.links):
        a_s, a_l, b_s = (links.summary()[x] for x in ("a_score", "a_language", "b_score"))
        assert a_s > 0 and a_l > 0
        assert a_l / a_s == pytest.approx(2.0, rel=0.15)  # the comments' scale is twice the ratings'
        pred = a_s * r[k] + b_s  # a·r̂ + b on the ratings' scale
        sc = np.array(kinds) == "score"
        assert spearman(pred[sc], np.array(ys)[sc]) > 0.9 and spearman(pred, true) > 0.9
        assert np.mean((pred[sc] - np.array(ys)[sc]) ** 2) < 0.2 * np.var(np.array(ys)[sc])
        assert hists[k]["links"]["a_score"] == pytest.approx(a_s)


def test_calibrated_fit_sets_sigma2_to_the_held_out_residual_and_warm_starts_its_links():
    from rlhf_tutorial.reward_model import linked_regression_loss
    data, val = _random_pairs_dataset(60), _random_pairs_dataset(20, seed=2)
    segs = _scored_segments(33)
    kinds = ["score"] * 23 + ["language"] * 10
    ys = [float(np.clip(s.true_mean + 0.1 * np.sin(i), 0, 1)) for i, s in enumerate(segs)]
    ens = RewardEnsemble([RewardNet(4, hidden=(16,), use_action=False, seed=s) for s in range(2)])
    for val_set in (None, val):  # without early stopping, and with it (the best epoch's σ² is kept)
        hists = ens.fit(data, val_set, epochs=8, patience=2, seed=1, scored=(segs, ys, kinds),
                        mix_weighting="calibrated")
        for net, links, h in zip(ens.members, ens.links, hists):
            for kind in ("score", "language"):
                with torch.no_grad():
                    mse = float(linked_regression_loss(net, links, kind, *_held_out(segs, ys, kinds, kind)))
                assert float(links.log_var[kind].exp()) == pytest.approx(mse, rel=1e-5)
                if val_set is None:  # set after the last epoch, and recorded
                    assert h["sigma2"][-1][kind] == pytest.approx(mse, rel=1e-5)
    first = ens.links
    before = [x.summary()["a_score"] for x in first]
    ens.fit(data, None, epochs=1, patience=None, seed=2, scored=(segs, ys, kinds), mix_weighting="calibrated")
    assert ens.links is first  # the same links, trained on from where they were
    assert [x.summary()["a_score"] for x in first] != pytest.approx([1.0, 1.0])
    assert [x.summary()["a_score"] for x in first] != before
    # no kinds given: every scored segment is a rating (one link); no scored segments: comparisons with β only
    ens2 = RewardEnsemble([RewardNet(4, hidden=(8,), seed=0)])
    h = ens2.fit(data, None, epochs=2, patience=None, scored=(segs, ys), mix_weighting="calibrated")
    assert set(h[0]["sigma2"][-1]) == {"score"}
    assert RewardEnsemble([RewardNet(4, hidden=(8,), seed=0)]).fit(data, epochs=1, mix_weighting="calibrated")[0][
        "sigma2"] == [{}]


def test_calibrated_mix_bad_options_raise_and_the_naive_default_is_unchanged():
    data = _random_pairs_dataset(40)
    segs = _scored_segments(20)
    ys = [float(np.clip(s.true_mean, 0, 1)) for s in segs]
    ens = RewardEnsemble([RewardNet(4, hidden=(8,), seed=0)])
    with pytest.raises(ValueError, match="mix_weighting"):
        ens.fit(data, epochs=1, mix_weighting="clever")
    with pytest.raises(ValueError, match="score_weight"):
        ens.fit(data, epochs=1, scored=(segs, ys), score_weight=0.5, mix_weighting="calibrated")
    with pytest.raises(ValueError, match=r"scored kinds\[1\]"):
        ens.fit(data, epochs=1, scored=(segs, ys, ["score", "rating"] + ["score"] * 18), mix_weighting="calibrated")
    with pytest.raises(ValueError, match="one per segment"):
        ens.fit(data, epochs=1, scored=(segs, ys, ["score"]), mix_weighting="calibrated")
    with pytest.raises(TypeError, match="scored kinds"):
        ens.fit(data, epochs=1, scored=(segs, ys, "score"), mix_weighting="calibrated")
    with pytest.raises(TypeError, match="scored must be"):
        ens.fit(data, epochs=1, scored=(segs,))
    with pytest.raises(ValueError, match="mix_weighting"):
        PreferenceLoopConfig(mix_weighting="calibrate")
    assert PreferenceLoopConfig().mix_weighting == "naive"
    # the naive mix (the default) ignores the kinds and makes no links: the same nets, bit for bit
    nets = []
    for kw in ({}, {"mix_weighting": "naive"}, {"scored_kinds": ["language"] * 20}):
        e = RewardEnsemble([RewardNet(4, hidden=(8,), seed=s) for s in range(2)])
        scored = (segs, ys, kw.pop("scored_kinds")) if "scored_kinds" in kw else (segs, ys)
        e.fit(data, _random_pairs_dataset(10, seed=3), epochs=3, seed=4, scored=scored, **kw)
        assert e.links is None
        nets.append(e)
    for e in nets[1:]:
        for m0, m1 in zip(nets[0].members, e.members):
            for p0, p1 in zip(m0.parameters(), m1.parameters()):
                torch.testing.assert_close(p0, p1, rtol=0, atol=0)


def test_smoke_run_of_the_loop_with_the_calibrated_mix():
    small = dict(seed=2, total_timesteps=4_800, segment_length=25, initial_steps=1_600, phase_steps=1_600,
                 label_phases=2, reward_epochs=3, reward_hidden=(16,), eval_every=0, eval_episodes=2,
                 ppo=replace(PreferenceLoopConfig().ppo, update_epochs=1))
    cfg = PreferenceLoopConfig(label_budget=40, feedback_mix=(1.0, 2.0, 1.0), mix_weighting="calibrated", **small)
    (_, ens), hist = run_preference_loop(cfg, progress=False, scorer=lambda texts: [0.8 if "good" in t else 0.3
                                                                                       for t in texts])
    assert hist["labels_used"] == 40 and hist["config"]["mix_weighting"] == "calibrated"
    assert len(ens.links) == 3
    for links in ens.links:
        s = links.summary()
        assert s["a_score"] > 0 and s["a_language"] > 0 and np.isfinite(list(s.values())).all()
