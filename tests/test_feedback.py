"""Segments, the three synthetic humans' noise models, dataset containers, save/load and bad inputs."""

import json
import math

import numpy as np
import pytest

from rlhf_tutorial import feedback as fb
from rlhf_tutorial.envs import ENV_ID, HORIZON, X_LIMIT
from rlhf_tutorial.feedback import (
    ComparisonDataset,
    ComparisonLabeler,
    DatasetFileError,
    LanguageDataset,
    LanguageLabeler,
    ScoreDataset,
    ScoreLabeler,
    Segment,
    describe_segment,
    load_dataset,
    make_dataset,
)


@pytest.fixture(scope="module")
def segments():
    """Segments of length 25 from the training-free controller pool (good, noisy, random)."""
    return fb.collect_segments(fb.controller_pool(0), segment_length=25, episodes_per_policy=4, seed=0)


def const_segment(reward: float, length: int = 10, env_id: str = ENV_ID, theta=0.0, x=0.0) -> Segment:
    obs = np.zeros((length, 4), np.float32)
    obs[:, 0], obs[:, 2] = x, theta
    return Segment(obs, np.zeros(length, int), np.full(length, reward), env_id=env_id)


def hand_segment(theta, x) -> Segment:
    theta, x = np.asarray(theta, float), np.asarray(x, float)
    obs = np.zeros((len(theta), 4), np.float32)
    obs[:, 0], obs[:, 2] = x, theta
    return Segment(obs, np.zeros(len(theta), int), np.zeros(len(theta)))


def binomial_tol(p, n, k=4.5):
    return k * math.sqrt(p * (1 - p) / n) + 1e-9


# --------------------------------------------------------------------------- segments
def test_collect_segments_cover_the_quality_range(segments):
    assert len(segments) == 5 * 4 * (HORIZON // 25)
    assert {s.source for s in segments} == {"pd", "pd+50%random", "pd+65%random", "pd+80%random", "random"}
    assert {s.start for s in segments} == set(range(0, HORIZON, 25))
    s = segments[0]
    assert s.obs.shape == (25, 4) and s.actions.shape == (25,) and s.env_id == ENV_ID
    assert s.true_return == pytest.approx(s.true_rewards.sum(), rel=1e-6) and 0 <= s.true_mean <= 1
    means = np.array([s.true_mean for s in segments])
    assert (means < 0.1).sum() > 10 and ((means > 0.3) & (means < 0.9)).sum() > 10 and (means > 0.95).sum() > 10


def test_segment_validation():
    with pytest.raises(ValueError, match="obs contains NaN or inf"):
        Segment(np.full((3, 4), np.nan), np.zeros(3, int), np.zeros(3))
    with pytest.raises(ValueError, match="true_rewards contains NaN or inf"):
        Segment(np.zeros((3, 4)), np.zeros(3, int), [0, np.inf, 0])
    with pytest.raises(ValueError, match=r"actions must have shape \(3,\)"):
        Segment(np.zeros((3, 4)), np.zeros(2, int), np.zeros(3))
    with pytest.raises(ValueError, match="length >= 1"):
        Segment(np.zeros((0, 4)), np.zeros(0, int), np.zeros(0))
    with pytest.raises(TypeError, match="env_id must be a non-empty string"):
        Segment(np.zeros((3, 4)), np.zeros(3, int), np.zeros(3), env_id=3)
    with pytest.raises(ValueError, match="policies must be a non-empty mapping"):
        fb.collect_segments({}, 10)
    with pytest.raises(ValueError, match="segment_length must be a positive int"):
        fb.collect_segments(fb.controller_pool(0), 0)


def test_segments_from_an_env_with_early_termination():
    from rlhf_tutorial.envs import random_policy

    segs = fb.collect_segments({"random": random_policy(0)}, 5, episodes_per_policy=3, env_id="CartPole-v1")
    assert segs and all(len(s) == 5 and s.env_id == "CartPole-v1" for s in segs)
    assert all(s.true_return == 5.0 for s in segs)


def test_ppo_checkpoints_give_named_policies():
    from dataclasses import replace

    from rlhf_tutorial.ppo import TASK_PPO_CONFIG

    cfg = replace(TASK_PPO_CONFIG, total_timesteps=600, eval_every=0)
    pool = fb.ppo_checkpoints(cfg, at_steps=(0, 512))
    assert list(pool) == ["ppo@0k", "ppo@512"]
    segs = fb.collect_segments(pool, 50, episodes_per_policy=1)
    assert len(segs) == 2 * HORIZON // 50


# --------------------------------------------------------------------------- score labeler
def test_score_noiseless_is_mean_true_reward(segments):
    lab = ScoreLabeler(noise_std=0.0, levels=None, seed=0)
    np.testing.assert_allclose(lab.label_many(segments), [s.true_mean for s in segments], atol=1e-6)


def test_score_rounding_and_bias_and_noise():
    seg = const_segment(0.5)
    lab = ScoreLabeler(noise_std=0.0, bias=0.03, levels=11, seed=0)
    assert lab.label(seg) == pytest.approx(0.5)  # 0.53 rounds to the 0.5 mark of a 0-10 scale
    lab = ScoreLabeler(noise_std=0.0, bias=0.07, levels=11, seed=0)
    assert lab.label(seg) == pytest.approx(0.6)
    ys = ScoreLabeler(noise_std=0.2, levels=11, seed=1).label_many([const_segment(0.95)] * 500)
    assert set(np.round(ys * 10, 6)) <= set(range(11))  # always on the scale, clipped at 1
    assert ys.max() == 1.0
    ys = ScoreLabeler(noise_std=0.05, bias=-0.1, levels=None, seed=2).label_many([seg] * 2000)
    assert ys.mean() == pytest.approx(0.4, abs=4.5 * 0.05 / math.sqrt(2000))  # the rater's bias
    assert ys.std() == pytest.approx(0.05, rel=0.1)  # the Gaussian noise


# --------------------------------------------------------------------------- comparison labeler
def test_random_answer_rate_is_epsilon(segments):
    lab = ComparisonLabeler(beta=math.inf, epsilon=0.1, tie_margin=0.0, seed=0)
    good, bad = const_segment(1.0), const_segment(0.0)
    n = 3000
    infos = [lab.label_with_info(good, bad) for _ in range(n)]
    random_rate = np.mean([i["random"] for i in infos])
    assert random_rate == pytest.approx(0.1, abs=binomial_tol(0.1, n))
    wrong = np.mean([i["label"] == 0.0 for i in infos])  # a coin flip is wrong half the time
    assert wrong == pytest.approx(0.05, abs=binomial_tol(0.05, n))


@pytest.mark.parametrize("diff", [-3.0, -1.0, -0.3, 0.3, 1.0, 3.0])
def test_bradley_terry_probability_matches_return_difference(diff):
    beta, n = 0.8, 2000
    lab = ComparisonLabeler(beta=beta, epsilon=0.0, tie_margin=0.0, seed=int(10 * diff) + 50)
    a, b = const_segment(0.5 + diff / 10), const_segment(0.5)  # 10 steps: return difference = diff
    p = 1 / (1 + math.exp(-beta * diff))
    assert lab.preference_probability(a, b) == pytest.approx(p, rel=1e-5)
    freq = np.mean([lab.label(a, b) for _ in range(n)])
    assert freq == pytest.approx(p, abs=binomial_tol(p, n))


def test_ties_and_label_order():
    lab = ComparisonLabeler(beta=math.inf, epsilon=0.0, tie_margin=0.5, seed=0)
    a, b = const_segment(0.50), const_segment(0.52)  # returns 5.0 and 5.2
    assert lab.is_tie(a, b) and lab.label(a, b) == 0.5
    c = const_segment(0.7)
    assert lab.label(c, a) == 1.0 and lab.label(a, c) == 0.0
    assert ComparisonLabeler(beta=0.0, epsilon=0.0, tie_margin=0.0).preference_probability(c, a) == 0.5


def test_tie_rate_of_random_pairs_is_low(segments):
    ds = fb.make_comparison_dataset(segments, ComparisonLabeler(seed=0), n_pairs=400, seed=0)
    assert 0.0 < ds.tie_rate < 0.35  # the graded reward keeps most random pairs distinguishable


def test_pairs_must_match():
    lab = ComparisonLabeler(seed=0)
    with pytest.raises(ValueError, match="same length, got 10 and 12"):
        lab.label(const_segment(1.0, 10), const_segment(1.0, 12))
    with pytest.raises(ValueError, match="same env"):
        lab.label(const_segment(1.0), const_segment(1.0, env_id="CartPole-v1"))
    with pytest.raises(TypeError, match="segment_a must be a Segment"):
        lab.label("a", const_segment(1.0))
    with pytest.raises(ValueError, match=r"epsilon must be in \[0.0, 1.0\], got 1.5"):
        ComparisonLabeler(epsilon=1.5)
    with pytest.raises(ValueError, match="beta must be in"):
        ComparisonLabeler(beta=-1)
    with pytest.raises(TypeError, match="seed must be None or an int"):
        ComparisonLabeler(seed=-3)


# --------------------------------------------------------------------------- language labeler
def test_describe_segment_events():
    L = 30
    up = np.zeros(L)
    assert describe_segment(hand_segment(up, np.zeros(L)))["pole"] == "steady"
    assert describe_segment(hand_segment(up + 0.2, np.zeros(L)))["pole"] == "wobbly"
    falls = np.where(np.arange(L) < 3, 0.0, 2.5)
    ev = describe_segment(hand_segment(falls, np.linspace(0, -1.5, L)))
    assert ev == {"pole": "fell_early", "fell_at": 3, "cart": "drifted", "side": "left"}
    assert describe_segment(hand_segment(np.where(np.arange(L) < 15, 0.0, 2.5), np.zeros(L)))["pole"] == "fell_mid"
    assert describe_segment(hand_segment(np.where(np.arange(L) < 25, 0.0, 2.5), np.zeros(L)))["pole"] == "fell_late"
    assert describe_segment(hand_segment(up + 3.0, np.zeros(L)))["pole"] == "down"
    ev = describe_segment(hand_segment(up, np.linspace(1.0, X_LIMIT, L)))
    assert ev["cart"] == "wall" and ev["side"] == "right"
    assert describe_segment(hand_segment(up, np.full(L, -0.7)))["cart"] == "wandered"


def test_comments_mention_what_happened():
    L = 30
    lab = LanguageLabeler(quality_noise=0.0, detail_prob=1.0, mixup_prob=0.0, seed=0)
    steady = Segment(np.zeros((L, 4)), np.zeros(L, int), np.ones(L))
    fallen = hand_segment(np.where(np.arange(L) < 2, 0.0, 2.5), np.linspace(0, -X_LIMIT, L))
    for _ in range(20):
        text = lab.label(steady)
        assert any(p in text for p in fb._POLE["steady"]) and any(p in text for p in fb._CART["centred"])
        assert any(text.startswith(v) for v in fb._VERDICTS[0][1])  # excellent
        info = lab.label_with_info(fallen)
        assert info["verdict"] == "terrible" and info["pole"] == "fell_early"
        assert any(p in info["text"] for p in fb._POLE["fell_early"]) and "left" in info["text"]
    texts = {lab.label(steady) for _ in range(50)}
    assert len(texts) >= 10  # many paraphrases
    swapped = LanguageLabeler(quality_noise=0.0, detail_prob=1.0, mixup_prob=1.0, seed=0).label(fallen)
    assert "right" in swapped and "left" not in swapped
    terse = LanguageLabeler(detail_prob=0.0, seed=0).label(fallen)
    assert "cart" not in terse


def test_language_verdict_noise(segments):
    lab = LanguageLabeler(quality_noise=0.1, seed=0)
    seg = const_segment(0.8)
    verdicts = [lab.label_with_info(seg)["verdict"] for _ in range(2000)]
    # perceived quality ~ N(0.8, 0.1²): "good" when in [0.7, 0.9), i.e. with probability 0.683
    assert np.mean([v == "good" for v in verdicts]) == pytest.approx(0.6827, abs=binomial_tol(0.68, 2000))
    with pytest.raises(ValueError, match="quality_noise must be in"):
        LanguageLabeler(quality_noise=-0.1)


# --------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("kind", fb.FEEDBACK_KINDS)
def test_dataset_head_is_the_first_labels(kind, segments):
    ds = make_dataset(kind, segments, seed=0, **({"n_pairs": 60} if kind == "comparison" else {}))
    head = ds.head(7)
    assert type(head) is type(ds) and len(head) == 7 and head.meta == ds.meta
    for x, y in zip(head, ds):   # the first 7 items, in order
        for u, v in zip(x, y):
            assert u is v if isinstance(u, Segment) else u == v
    with pytest.raises(ValueError, match="at most the dataset's"):
        ds.head(len(ds) + 1)
    with pytest.raises(ValueError):
        ds.head(0)
    with pytest.raises(TypeError):
        ds.head(2.5)


@pytest.mark.parametrize("kind", fb.FEEDBACK_KINDS)
def test_dataset_roundtrip_and_split(kind, segments, tmp_path):
    ds = make_dataset(kind, segments, seed=0, **({"n_pairs": 60} if kind == "comparison" else {}))
    n = len(ds)
    item = ds[0]
    assert isinstance(item[0], Segment) and len(ds[-1]) == len(item)
    with pytest.raises(IndexError, match="out of range"):
        ds[n]
    train, val = ds.split(0.25, seed=0)
    assert len(train) + len(val) == n and len(val) == round(0.25 * n)
    assert type(train) is type(ds)
    path = ds.save(tmp_path / f"{kind}.json")
    assert path.with_suffix(".safetensors").is_file()
    back = load_dataset(path)
    assert type(back) is type(ds) and len(back) == n and back.meta == ds.meta
    for x, y in zip(ds, back):
        for u, v in zip(x, y):
            if isinstance(u, Segment):
                np.testing.assert_array_equal(u.obs, v.obs)
                np.testing.assert_array_equal(u.actions, v.actions)
                np.testing.assert_array_equal(u.true_rewards, v.true_rewards)
                assert (u.env_id, u.source, u.start) == (v.env_id, v.source, v.start)
            else:
                assert u == v
    assert type(ds).load(path).kind == kind
    t = ds.tensors()
    assert t[next(iter(t))].shape[:2] == (n, 25)


def test_dataset_contents(segments):
    ds = fb.make_score_dataset(segments[:5], ScoreLabeler(seed=0))
    assert ds.meta["labeler"] == "ScoreLabeler" and ds.meta["noise_std"] == 0.05
    seg, y = ds[2]
    assert seg is segments[2] and 0 <= y <= 1


def test_dataset_bad_inputs(segments):
    s = segments[:3]
    with pytest.raises(ValueError, match=r"scores must be on the scale \[0, 1\], got 1.5 at index 1"):
        ScoreDataset(s, [0.2, 1.5, 0.3])
    with pytest.raises(ValueError, match="scores contains NaN or inf"):
        ScoreDataset(s, [0.2, float("nan"), 0.3])
    with pytest.raises(ValueError, match=r"expected shape \(3,\), got \(2,\)"):
        ScoreDataset(s, [0.2, 0.3])
    with pytest.raises(ValueError, match="needs at least one segment"):
        ScoreDataset([], [])
    with pytest.raises(TypeError, match=r"segments\[1\] must be a Segment"):
        ScoreDataset([s[0], "x"], [0.1, 0.2])
    with pytest.raises(ValueError, match=r"labels must be 0 .*, 0.5 .* or 1 .*got 0.3 at index 0"):
        ComparisonDataset(s, s[::-1], [0.3, 1, 0])
    with pytest.raises(ValueError, match="labels contains NaN or inf"):
        ComparisonDataset(s, s[::-1], [0, np.inf, 0])
    with pytest.raises(ValueError, match="all 3 labels are ties"):
        ComparisonDataset(s, s[::-1], [0.5, 0.5, 0.5])
    with pytest.raises(ValueError, match="needs at least one pair"):
        ComparisonDataset([], [], [])
    with pytest.raises(ValueError, match="same length, got 10 and 12"):
        ComparisonDataset([const_segment(1, 10)], [const_segment(1, 12)], [1])
    with pytest.raises(ValueError, match="same env"):
        ComparisonDataset([const_segment(1)], [const_segment(1, env_id="CartPole-v1")], [1])
    with pytest.raises(ValueError, match=r"comments\[1\] is empty"):
        LanguageDataset(s, ["fine", "   ", "ok"])
    with pytest.raises(TypeError, match=r"comments\[0\] must be a string"):
        LanguageDataset(s, [None, "a", "b"])
    with pytest.raises(ValueError, match="unknown feedback kind 'rating'"):
        make_dataset("rating", s)
    with pytest.raises(TypeError, match="unexpected keyword"):
        make_dataset("score", s, n_pairs=3)
    with pytest.raises(ValueError, match="val_fraction must be strictly between 0 and 1"):
        ScoreDataset(s, [0.1, 0.2, 0.3]).split(0.0)
    with pytest.raises(ValueError, match="at least 2 items"):
        ScoreDataset(s[:1], [0.1]).split(0.5)
    with pytest.raises(TypeError, match="labeler must be a ScoreLabeler"):
        fb.make_score_dataset(s, ComparisonLabeler())


def test_load_missing_or_corrupt(segments, tmp_path):
    with pytest.raises(DatasetFileError, match="no saved dataset"):
        load_dataset(tmp_path / "nothing.json")
    with pytest.raises(FileNotFoundError):  # also a FileNotFoundError, for code that expects one
        load_dataset(tmp_path / "nothing.json")
    path = ScoreDataset(segments[:4], [0.1, 0.2, 0.3, 0.4]).save(tmp_path / "s.json")
    arrays = path.with_suffix(".safetensors")
    good_json, good_arrays = path.read_text(), arrays.read_bytes()

    path.write_text(good_json[:-20])
    with pytest.raises(ValueError, match="not valid JSON"):
        load_dataset(path)
    path.write_text(json.dumps({**json.loads(good_json), "kind": "rating"}))
    with pytest.raises(ValueError, match="unknown feedback kind 'rating'"):
        load_dataset(path)
    path.write_text(json.dumps({**json.loads(good_json), "scores": [0.1, 2.0, 0.3, 0.4]}))
    with pytest.raises(ValueError, match="corrupt.*scale"):
        load_dataset(path)
    path.write_text(json.dumps({**json.loads(good_json), "segments": json.loads(good_json)["segments"][:3]}))
    with pytest.raises(ValueError, match="corrupt"):
        load_dataset(path)
    path.write_text('["a list"]')
    with pytest.raises(ValueError, match="not a feedback dataset"):
        load_dataset(path)
    path.write_text(good_json)
    arrays.write_bytes(good_arrays[:-8] + b"\0" * 8)
    with pytest.raises(ValueError, match="checksum"):
        load_dataset(path)
    arrays.unlink()
    with pytest.raises(ValueError, match="arrays of .* are missing"):
        load_dataset(path)
    arrays.write_bytes(good_arrays)
    assert len(load_dataset(path)) == 4
    with pytest.raises(ValueError, match="holds a 'score' dataset, expected 'comparison'"):
        ComparisonDataset.load(path)
    with pytest.raises(ValueError, match="must end in .json"):
        ScoreDataset(segments[:1], [0.5]).save(tmp_path / "s.pkl")


# --------------------------------------------------------------------------- raters that err like people (issue 14)
def test_score_rater_offset_scale_and_drift():
    seg = const_segment(0.8)
    r = fb.ScoreRater(offset=0.1, scale=0.5, drift=0.0, noise_std=0.0, levels=None, seed=0)
    assert r.label(seg) == pytest.approx(0.5 + 0.5 * 0.3 + 0.1)
    drifting = fb.ScoreRater(drift=0.1, noise_std=0.0, levels=None, seed=0)
    ys = [drifting.label(const_segment(0.5)) for _ in range(201)]
    assert ys[0] == pytest.approx(0.5) and ys[200] == pytest.approx(0.7)   # +0.1 per 100 ratings
    with pytest.raises(ValueError, match="scale"):
        fb.ScoreRater(scale=0.0)
    with pytest.raises(ValueError, match="scale"):
        fb.ScoreRater(scale=-1.0)
    with pytest.raises(TypeError, match="name"):
        fb.ScoreRater(name=3)


def test_panels_record_who_answered_and_build_datasets(segments):
    panel = fb.realistic_raters("score", n_raters=3, seed=0)
    ds = fb.make_score_dataset(segments[:20], panel)
    assert len(ds.meta["rater_ids"]) == 20 and set(ds.meta["rater_ids"]) <= {0, 1, 2}
    assert sum(panel.counts().values()) == 20
    again = fb.make_score_dataset(segments[:20], fb.realistic_raters("score", n_raters=3, seed=0))
    np.testing.assert_array_equal(ds.scores, again.scores)          # same seed, same answers
    cmp = fb.make_comparison_dataset(segments, fb.realistic_raters("comparison", seed=1), 30, seed=0)
    assert len(cmp.meta["rater_ids"]) == 30
    lang = fb.make_language_dataset(segments[:10], fb.realistic_raters("language", seed=2))
    assert all(isinstance(c, str) and c for c in lang.comments)
    with pytest.raises(TypeError, match="score"):
        fb.make_score_dataset(segments[:3], fb.realistic_raters("language", seed=0))


def test_panel_bad_inputs():
    with pytest.raises(ValueError, match="at least one rater"):
        fb.RaterPanel([])
    with pytest.raises(TypeError, match="one kind"):
        fb.RaterPanel([fb.ScoreRater(), fb.ComparisonRater()])
    with pytest.raises(TypeError, match="raters"):
        fb.RaterPanel("abc")
    with pytest.raises(TypeError, match="2 segment"):
        fb.RaterPanel([fb.ComparisonRater()]).label(const_segment(0.5))
    with pytest.raises(ValueError, match="n_raters"):
        fb.realistic_raters("score", n_raters=0)
    with pytest.raises(ValueError, match="kind"):
        fb.realistic_raters("stars")


def test_language_rater_families_and_style():
    seg = const_segment(0.9, length=30)
    for fam in fb.COMMENT_FAMILIES:
        r = fb.LanguageRater(style={fam: 1.0}, seed=0)
        info = r.label_with_info(seg)
        assert info["family"] == fam and info["text"].endswith(".")
    numeric = fb.LanguageRater(style={"numeric": 1}, quality_noise=0.0, seed=0).label(const_segment(0.8, 30))
    assert any(t in numeric for t in ("8/10", "Eight out of ten", "8 out of 10", "4/5", "4 out of 5", "Four out of five"))
    with pytest.raises(ValueError, match="unknown families"):
        fb.LanguageRater(style={"sarcasm": 1.0})
    with pytest.raises(ValueError, match="positive weight"):
        fb.LanguageRater(style={"plain": 0.0})


def test_comparison_panels_agree_like_people(segments):
    rng = np.random.default_rng(0)
    i = rng.integers(0, len(segments), 400)
    j = (i + rng.integers(1, len(segments), 400)) % len(segments)
    a, b = [segments[k] for k in i], [segments[k] for k in j]
    agree = fb.rater_agreement(fb.realistic_raters("comparison", seed=0), fb.realistic_raters("comparison", seed=1), a, b)
    assert 0.6 < agree < 0.9   # people agree on 72.6-77.3 % (InstructGPT); not perfect, far from chance
    with pytest.raises(ValueError, match="same length"):
        fb.rater_agreement(fb.ComparisonRater(), fb.ComparisonRater(), a, b[:-1])


def test_label_costs():
    assert fb.label_cost("comparison", 10) == 10 * fb.LABEL_SECONDS["comparison"]
    assert fb.labels_for_seconds("language", fb.LABEL_SECONDS["language"] * 3 + 1) == 3
    assert set(fb.LABEL_SECONDS_SOURCES) == set(fb.FEEDBACK_KINDS)
    with pytest.raises(ValueError, match="n_labels"):
        fb.label_cost("score", -1)
    with pytest.raises(ValueError, match="seconds"):
        fb.labels_for_seconds("score", float("nan"))
