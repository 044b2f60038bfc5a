"""The labeling widget (notebook 04): driven like a person would (buttons, slider, text box), its
datasets, the JSON-lines answers file, restarts and crashes that lose nothing, corrupt lines."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("ipywidgets")

from rlhf_tutorial import feedback as fb  # noqa: E402
from rlhf_tutorial import widgets as wd  # noqa: E402
from rlhf_tutorial.feedback import ComparisonDataset, LanguageDataset, ScoreDataset, Segment  # noqa: E402
from rlhf_tutorial.widgets import AnswerFileError, LabelingWidget  # noqa: E402


@pytest.fixture(scope="module")
def segments():
    pool = {k: v for k, v in fb.controller_pool(0).items() if k in ("pd", "random")}
    return fb.collect_segments(pool, segment_length=20, episodes_per_policy=1, seed=0)  # 2 x 10 segments


@pytest.fixture()
def pairs(segments):
    return [(segments[i], segments[10 + i]) for i in range(4)]  # (pd, random) pairs


@pytest.fixture()
def path(tmp_path):
    return tmp_path / "my_labels.jsonl"


def lines(p):
    return p.read_text().splitlines()


def assert_same_segment(a: Segment, b: Segment):
    np.testing.assert_array_equal(a.obs, b.obs)
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.true_rewards, b.true_rewards)
    assert (a.env_id, a.source, a.start) == (b.env_id, b.source, b.start)


def walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from walk(child)


# --------------------------------------------------------------------------- driving the controls
def test_buttons_slider_and_text_fill_the_datasets_and_the_file(pairs, path):
    w = LabelingWidget(pairs, path)
    assert w.n_pairs == 4 and w.index == 0 and not w.done
    assert "pair 1 of 4" in w.counter.value and path.name in w.status.value
    assert w.comparisons is None and w.scores is None and w.comments is None and w.datasets() == {}
    assert len(lines(path)) == 1 and json.loads(lines(path)[0])["format"] == wd.ANSWER_FORMAT

    w.score_slider.value = 0.8  # the learner moves the slider ...
    w.score_button.click()  # ... and submits: a score for the left segment of pair 1
    w.target.value = "right"
    w.comment_text.value = "  the pole fell right away  "
    w.comment_button.click()
    assert w.comment_text.value == ""  # the box is cleared for the next comment
    assert len(lines(path)) == 3  # each answer is on disk as soon as it is given
    w.buttons["left"].click()  # pair 1: left better
    assert w.index == 1 and "pair 2 of 4" in w.counter.value and len(lines(path)) == 4
    w.buttons["right"].click()
    w.buttons["equal"].click()
    w.buttons["skip"].click()
    assert w.done and "all 4 pairs answered" in w.counter.value and len(lines(path)) == 7

    ds = w.datasets()
    assert set(ds) == {"comparison", "score", "language"}
    cmp, sc, lang = w.comparisons, w.scores, w.comments
    assert isinstance(cmp, ComparisonDataset) and isinstance(sc, ScoreDataset) and isinstance(lang, LanguageDataset)
    np.testing.assert_array_equal(cmp.labels, [1.0, 0.0, 0.5])  # the skip is no label
    for k in range(3):
        assert_same_segment(cmp.segments_a[k], pairs[k][0])
        assert_same_segment(cmp.segments_b[k], pairs[k][1])
    assert sc.scores.tolist() == [0.8] and lang.comments == ["the pole fell right away"]
    assert_same_segment(sc.segments[0], pairs[0][0])  # the toggle said left
    assert_same_segment(lang.segments[0], pairs[0][1])  # ... then right
    # ready for notebook 05: the same tensors as the synthetic humans' datasets
    t = cmp.tensors()
    assert t["obs_a"].shape == (3, 20, 4) and t["labels"].tolist() == [1.0, 0.0, 0.5]
    assert ds["comparison"].meta["answers_file"] == path.name

    kinds = [json.loads(line)["kind"] for line in lines(path)[1:]]
    assert kinds == ["score", "language", "comparison", "comparison", "comparison", "skip"]
    assert path.read_bytes().endswith(b"\n")


def test_programmatic_methods_match_the_buttons(pairs, path):
    w = LabelingWidget(pairs, path)
    rec = w.set_score(0.35, side="right")
    assert rec["kind"] == "score" and rec["score"] == 0.35 and rec["side"] == "right"
    assert w.score_slider.value == 0.35 and w.target.value == "right"
    rec = w.submit_comment("wobbly but stayed up", side="left")
    assert rec["comment"] == "wobbly but stayed up" and rec["side"] == "left"
    rec = w.click("right")
    assert rec["label"] == 0.0 and rec["answer"] == "right" and rec["pair"] == 0
    assert_same_segment(rec["segment_a"], pairs[0][0])
    assert w.click("skip")["kind"] == "skip"
    assert [r["kind"] for r in w.records] == ["score", "language", "comparison", "skip"]
    assert_same_segment(w.scores.segments[0], pairs[0][1])


def test_every_control_has_its_css_class_and_a_stable_description(pairs, path):
    w = LabelingWidget(pairs, path)
    tree = list(walk(w.ui))
    for css in wd.CSS_CLASSES.values():
        found = [x for x in tree if css in x._dom_classes]
        assert len(found) == 1, f"{css} should mark exactly one control, found {len(found)}"
    assert w.ui._dom_classes == ("rlhf-labeling-widget",)
    for c in wd.CHOICES:
        assert w.buttons[c].description == wd.DESCRIPTIONS[c]
        assert wd.CSS_CLASSES[c] in w.buttons[c]._dom_classes
    assert [w.buttons[c].description for c in wd.CHOICES] == ["left better", "right better", "equal", "skip"]
    assert w.score_button.description == "submit score" and w.comment_button.description == "submit comment"
    assert w.score_slider.description == "score" and (w.score_slider.min, w.score_slider.max) == (0.0, 1.0)
    assert w.comment_text.description == "comment" and list(w.target.options) == ["left", "right"]
    assert "application/vnd.jupyter.widget-view+json" in w._repr_mimebundle_()


def test_the_pair_is_shown_as_animation_and_filmstrip(pairs, path):
    w = LabelingWidget(pairs, path, every=2)
    for side in ("left", "right"):
        gif, png = w.animations[side].value, w.filmstrips[side].value
        assert gif[:4] == b"GIF8" and png[:4] == b"\x89PNG"
    before = w.animations["left"].value
    w.click("left")
    assert w.animations["left"].value != before  # the next pair is on screen
    assert "left" in w.titles["left"].value and "20 steps" in w.titles["left"].value
    assert pairs[0][0].source not in w.titles["left"].value  # the policy's name is not given away


# --------------------------------------------------------------------------- nothing is lost
def test_a_new_widget_on_the_same_file_reloads_everything_and_resumes(pairs, path):
    w = LabelingWidget(pairs, path)
    w.click("left")
    w.set_score(0.9)
    w.click("skip")
    w.submit_comment("good balance", side="right")
    size = path.stat().st_size

    w2 = LabelingWidget(pairs, path)  # a kernel restart: same pairs, same file
    assert path.stat().st_size == size  # reloading writes nothing
    assert w2.index == 2 and "pair 3 of 4" in w2.counter.value and "reloaded 4 answers" in w2.status.value
    assert [r["kind"] for r in w2.records] == ["comparison", "score", "skip", "language"]
    for old, new in zip(w.records, w2.records):
        assert old.keys() == new.keys()
    np.testing.assert_array_equal(w2.comparisons.labels, [1.0])
    np.testing.assert_array_equal(w2.comparisons.segments_a[0].obs, pairs[0][0].obs)  # float32 exact
    assert w2.scores.scores.tolist() == [0.9] and w2.comments.comments == ["good balance"]
    assert_same_segment(w2.comments.segments[0], pairs[2][1])

    w2.click("right")  # pairs 3 and 4, then a third start sees all of them
    w2.click("equal")
    w3 = LabelingWidget(pairs, path)
    assert w3.done and w3.comparisons.labels.tolist() == [1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="all 4 pairs are answered"):
        w3.click("left")
    assert all(b.disabled for b in w3.buttons.values())

    # the file is self-contained: the datasets come back without the widget or the segments
    ds = wd.answers_to_datasets(wd.load_answers(path))
    assert ds["comparison"].labels.tolist() == [1.0, 0.0, 0.5] and len(ds["score"]) == 1
    saved = ds["comparison"].save(path.with_name("cmp.json"))  # and they save like any dataset
    assert fb.load_dataset(saved).labels.tolist() == [1.0, 0.0, 0.5]


def test_other_pairs_keep_old_labels_and_a_crash_loses_nothing(pairs, path, tmp_path):
    LabelingWidget(pairs[:2], path).click("left")
    w = LabelingWidget(pairs[2:], path)  # new pairs, same file: the old label stays in the datasets
    assert w.index == 0 and len(w.comparisons) == 1
    w.click("right")
    assert w.comparisons.labels.tolist() == [1.0, 0.0]

    # a process that dies without any clean-up right after two answers
    crash = tmp_path / "crash.jsonl"
    np.save(tmp_path / "obs.npy", np.stack([p[k].obs for p in pairs for k in (0, 1)]))
    code = textwrap.dedent(f"""
        import os, numpy as np
        from rlhf_tutorial.feedback import Segment
        from rlhf_tutorial.widgets import LabelingWidget
        obs = np.load({str(tmp_path / 'obs.npy')!r})
        segs = [Segment(o, np.zeros(len(o), int), np.zeros(len(o))) for o in obs]
        w = LabelingWidget(list(zip(segs[0::2], segs[1::2])), {str(crash)!r})
        w.click("left"); w.set_score(0.25)
        os._exit(1)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 1, out.stderr
    records = wd.load_answers(crash)
    assert [r["kind"] for r in records] == ["comparison", "score"] and records[1]["score"] == 0.25


def test_only_ties_keep_their_records_but_make_no_comparison_dataset(pairs, path):
    w = LabelingWidget(pairs, path)
    w.click("equal")
    assert w.comparisons is None and "comparison" not in w.datasets()
    assert len(w.records) == 1 and "1 comparisons" in w.counter.value
    w.click("left")
    assert w.comparisons.labels.tolist() == [0.5, 1.0]


def test_a_line_cut_without_newline_gets_its_own_line(pairs, path):
    w = LabelingWidget(pairs, path)
    w.click("left")
    path.write_bytes(path.read_bytes().rstrip(b"\n"))  # a whole line whose newline never made it
    w2 = LabelingWidget(pairs, path)
    w2.click("right")
    assert len(lines(path)) == 3
    assert [r["answer"] for r in wd.load_answers(path)] == ["left", "right"]


# --------------------------------------------------------------------------- corrupt files
def _corrupt(path, lineno, new_line):
    ls = lines(path)
    ls[lineno - 1] = new_line
    path.write_text("\n".join(ls) + "\n")


@pytest.mark.parametrize("damage", ["half", "not_json_object", "bad_label", "tampered", "bad_score", "unknown_kind"])
def test_a_corrupt_line_is_reported_with_file_and_line_number(pairs, path, damage):
    w = LabelingWidget(pairs, path)
    w.click("left")
    w.set_score(0.5)
    w.click("right")
    ls = lines(path)
    rec = json.loads(ls[2])  # line 3: the score
    if damage == "half":
        bad = ls[2][: len(ls[2]) // 2]
    elif damage == "not_json_object":
        bad = "[1, 2, 3]"
    elif damage == "bad_label":
        bad = ls[1].replace('"label":1.0', '"label":0.7')
    elif damage == "tampered":
        rec["segment"]["obs"][0][0] += 1.0
        bad = json.dumps(rec)
    elif damage == "bad_score":
        rec["score"] = 1.5
        bad = json.dumps(rec)
    else:
        rec["kind"] = "rating"
        bad = json.dumps(rec)
    lineno = 2 if damage == "bad_label" else 3
    _corrupt(path, lineno, bad)
    before = path.read_bytes()
    with pytest.raises(AnswerFileError, match=rf"my_labels\.jsonl.*line {lineno}\b") as e:
        LabelingWidget(pairs, path)
    assert isinstance(e.value, ValueError) and "other lines are intact" in str(e.value)
    assert path.read_bytes() == before  # nothing was overwritten or dropped
    with pytest.raises(AnswerFileError, match=f"line {lineno}"):
        wd.load_answers(path)


def test_a_file_that_is_not_an_answers_file_is_refused(pairs, path):
    path.write_text('{"hello": "world"}\n')
    with pytest.raises(AnswerFileError, match="line 1.*not an answers file"):
        LabelingWidget(pairs, path)
    path.write_text(json.dumps({"format": wd.ANSWER_FORMAT, "version": 99}) + "\n")
    with pytest.raises(AnswerFileError, match="version 99"):
        LabelingWidget(pairs, path)
    path.write_text("\n\n")  # an empty (blank) file is just a fresh start
    w = LabelingWidget(pairs, path)
    w.click("left")
    assert len(wd.load_answers(path)) == 1


# --------------------------------------------------------------------------- bad input, shown or raised
def test_bad_answers_raise_in_code_and_show_in_the_status_line(pairs, path):
    w = LabelingWidget(pairs, path)
    with pytest.raises(ValueError, match="choice must be one of"):
        w.click("up")
    with pytest.raises(ValueError, match=r"score must be in \[0, 1\]"):
        w.set_score(1.5)
    with pytest.raises(TypeError, match="score must be a number"):
        w.set_score("high")
    with pytest.raises(ValueError, match="comment is empty"):
        w.submit_comment("   ")
    with pytest.raises(TypeError, match="text must be a string"):
        w.submit_comment(3)
    with pytest.raises(ValueError, match="side must be"):
        w.set_score(0.5, side="middle")
    w.comment_text.value = ""
    w.comment_button.click()  # a person clicking with an empty box: told, nothing recorded
    assert w.status.value.startswith("not saved") and "empty" in w.status.value
    assert w.records == [] and len(lines(path)) == 1


def test_bad_constructor_arguments(segments, pairs, path, tmp_path):
    with pytest.raises(ValueError, match="empty"):
        LabelingWidget([], path)
    with pytest.raises(TypeError, match="segments_or_pairs"):
        LabelingWidget("pairs", path)
    with pytest.raises(TypeError, match=r"segments_or_pairs\[1\]"):
        LabelingWidget([pairs[0], (pairs[1][0],)], path)
    short = Segment(segments[0].obs[:5], segments[0].actions[:5], segments[0].true_rewards[:5])
    with pytest.raises(ValueError, match="same length"):
        LabelingWidget([(segments[0], short)], path)
    with pytest.raises(ValueError, match=r"\.jsonl"):
        LabelingWidget(pairs, tmp_path / "labels.json")
    with pytest.raises(ValueError, match="does not exist"):
        LabelingWidget(pairs, tmp_path / "nowhere" / "labels.jsonl")
    with pytest.raises(TypeError, match="answers_path"):
        LabelingWidget(pairs, 42)
    with pytest.raises(ValueError, match="every"):
        LabelingWidget(pairs, path, every=0)
    with pytest.raises(TypeError, match="frame_ms"):  # wrong type -> TypeError (rlhf_tutorial._validate)
        LabelingWidget(pairs, path, frame_ms=2.5)
    with pytest.raises(ValueError, match="frame_ms"):
        LabelingWidget(pairs, path, frame_ms=5)
    with pytest.raises(ValueError, match="score_step"):
        LabelingWidget(pairs, path, score_step=0)
    with pytest.raises(TypeError, match=r"records\[0\]"):
        wd.answers_to_datasets([{"kind": "score", "score": 0.5, "segment": {"obs": []}}])
    one_d = Segment(np.zeros((20, 2)), np.zeros(20, int), np.zeros(20))
    with pytest.raises(ValueError, match="obs_dim 4"):
        LabelingWidget([(one_d, one_d)], path)
    assert not path.exists()  # nothing was created by a refused widget


def test_segments_comparison_datasets_and_a_custom_renderer(segments, path, tmp_path):
    w = LabelingWidget(segments, path)  # a flat list: random pairs of distinct segments
    assert w.n_pairs == len(segments) and all(a is not b for a, b in w.pairs)
    synthetic = fb.make_dataset("comparison", segments, n_pairs=3, seed=1)
    w2 = LabelingWidget(synthetic, tmp_path / "b.jsonl")  # re-label the synthetic human's pairs
    assert w2.n_pairs == 3 and w2.pairs[0][0] is synthetic.segments_a[0]
    other = Segment(np.zeros((8, 2)), np.zeros(8, int), np.zeros(8), env_id="Pendulum-v1")
    frames = [np.zeros((10, 12, 3), np.uint8)] * 4
    w3 = LabelingWidget([(other, other)], tmp_path / "c.jsonl", render=lambda s: frames)
    assert w3.animations["left"].value[:4] == b"GIF8"
    with pytest.raises(ValueError, match="at least 2 segments"):
        wd.make_pairs(segments[:1])
    assert wd.make_pairs(segments, 5, seed=3) == wd.make_pairs(segments, 5, seed=3)


# --------------------------------------------------------------------------- rendering
def test_cartpole_sketch_draws_the_pole_where_it_is():
    up = wd.render_cartpole_frame(0.0, 0.0, size=(200, 110))
    down = wd.render_cartpole_frame(0.0, np.pi, size=(200, 110))
    assert up.shape == (110, 200, 3) and up.dtype == np.uint8

    def pole_rows(img):
        return np.flatnonzero((np.abs(img.astype(int) - (202, 152, 101)).sum(-1) < 30).any(1))

    assert pole_rows(up).max() < 55 < pole_rows(down).min() + 5  # above the cart vs below it
    left = wd.render_cartpole_frame(-2.0, 0.0)
    cart_cols = np.flatnonzero((left.sum(-1) < 150).any(0))
    assert cart_cols.mean() < 100
    seg = Segment(np.zeros((9, 4)), np.zeros(9, int), np.zeros(9))
    assert len(wd.render_cartpole_frames(seg, every=4)) == 3
    with pytest.raises(ValueError, match="finite"):
        wd.render_cartpole_frame(float("nan"), 0.0)
    with pytest.raises(ValueError, match="size"):
        wd.render_cartpole_frame(0.0, 0.0, size=(5, 5))
    with pytest.raises(ValueError, match="frames"):
        wd.animation_gif([])
    with pytest.raises(ValueError, match="frame 1"):
        wd.filmstrip_image([np.zeros((4, 4, 3)), np.zeros((5, 4, 3))])
