"""Data safety: cached checkpoints that cannot be silently wrong, and a labels file that loses nothing.

- a cached checkpoint carries a SHA-256 manifest written last; a changed, truncated, incomplete or
  non-finite checkpoint raises ``CheckpointError`` naming the folder and "delete it to retrain";
- a saved reward model with a damaged file or NaN weights raises ``RewardModelFileError``;
- two widgets opening the same new answers file at once write ONE header (40 races), a repeated
  header is tolerated, a torn last line is repaired by ``widgets.repair_answers`` without losing
  anything, and a missing answers file is reported.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import time

import numpy as np
import pytest
import torch

from rlhf_tutorial import cache, plots, reward_model, text
from rlhf_tutorial.cache import CheckpointError

WORDS = "the a food was good bad great awful service slow fast pizza room clean dirty and very not it ."


# --------------------------------------------------------------------------- a tiny cached checkpoint
@pytest.fixture(scope="module")
def tiny():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for w in WORDS.split():
        vocab.setdefault(w, len(vocab))
    t = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tok), n_positions=16, n_embd=16, n_layer=1, n_head=2,
                                       pad_token_id=0, eos_token_id=1, bos_token_id=1))
    return model, tok


@pytest.fixture()
def ckpt(tiny, tmp_path):
    model, tok = tiny
    return text.save_model(model, tok, tmp_path / "sft-abc", extra={"losses": [1.0]})


def weights(folder):
    return next(folder.glob("*.safetensors"))


def test_manifest_is_written_and_a_good_checkpoint_verifies(ckpt):
    manifest = json.loads((ckpt / cache.MANIFEST).read_text())
    assert weights(ckpt).name in manifest["files"] and "config.json" in manifest["files"]
    assert cache.verify_checkpoint(ckpt) == ckpt
    model, _ = text.load_model(cache.verify_checkpoint(ckpt))
    assert sum(p.numel() for p in model.parameters()) > 0


def test_changed_bytes_are_caught_with_path_and_hint(ckpt):
    w = weights(ckpt)
    data = bytearray(w.read_bytes())
    data[-10] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="delete it to retrain") as e:
        cache.verify_checkpoint(ckpt)
    assert str(ckpt) in str(e.value) and "SHA-256" in str(e.value)


@pytest.mark.parametrize("manifest", [True, False], ids=["with-manifest", "legacy-no-manifest"])
def test_truncated_checkpoint_is_caught(ckpt, manifest):
    w = weights(ckpt)
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    if not manifest:
        (ckpt / cache.MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="delete it to retrain") as e:
        cache.verify_checkpoint(ckpt)
    assert str(ckpt) in str(e.value)


def test_missing_file_and_unreadable_manifest(ckpt):
    (ckpt / "config.json").unlink()
    with pytest.raises(CheckpointError, match="missing config.json"):
        cache.verify_checkpoint(ckpt)
    (ckpt / cache.MANIFEST).write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable manifest.json"):
        cache.verify_checkpoint(ckpt)
    with pytest.raises(CheckpointError, match="does not exist"):
        cache.verify_checkpoint(ckpt.parent / "nothing-here")


def test_nan_weights_are_caught_even_with_a_matching_manifest(tiny, tmp_path):
    model, tok = tiny
    bad = type(model)(model.config)
    bad.load_state_dict(model.state_dict())
    with torch.no_grad():
        bad.transformer.h[0].mlp.c_fc.weight[0, 0] = float("nan")
    folder = text.save_model(bad, tok, tmp_path / "base-nan")  # the manifest matches: the NaN was saved
    with pytest.raises(CheckpointError, match="NaN or inf") as e:
        cache.verify_checkpoint(folder)
    assert "delete it to retrain" in str(e.value) and str(folder) in str(e.value)


def test_legacy_cache_without_manifest_is_adopted(ckpt):
    (ckpt / cache.MANIFEST).unlink()
    cache.verify_checkpoint(ckpt)
    assert (ckpt / cache.MANIFEST).is_file()
    cache.verify_checkpoint(ckpt)


def test_load_or_train_sft_refuses_a_corrupt_cache(ckpt, tmp_path):
    """The loader of the course's SFT model checks the cached folder before loading it (no retrain, no silent load)."""
    cfg = text.TextConfig()
    folder = tmp_path / "cache" / f"sft-{text.config_hash(cfg)}"
    folder.parent.mkdir()
    shutil.copytree(ckpt, folder)
    w = weights(folder)
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="delete it to retrain"):
        text.load_or_train_sft(cfg, cache_dir=tmp_path / "cache", progress=False)


def _build_under_lock(args):
    folder, log, hold = args
    with cache.build_lock(folder):
        with open(log, "a") as f:
            f.write("enter\n")
        if not folder.is_dir():  # the re-check inside the lock: only the first process builds
            time.sleep(hold)
            folder.mkdir()
            with open(log, "a") as f:
                f.write("built\n")
        with open(log, "a") as f:
            f.write("leave\n")


def test_two_processes_building_one_checkpoint_take_turns(tmp_path):
    """build_lock: a second process that needs the same missing checkpoint waits, then finds it built."""
    ctx = mp.get_context("fork")
    folder, log = tmp_path / "sft-abc", tmp_path / "log.txt"
    procs = [ctx.Process(target=_build_under_lock, args=((folder, log, 0.5),)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    assert log.read_text().split() == ["enter", "built", "leave", "enter", "leave"]  # built once, never interleaved
    assert (tmp_path / "sft-abc.lock").is_file()


# --------------------------------------------------------------------------- saved reward models (Gymnasium)
def test_reward_model_file_truncated_or_nan(tmp_path):
    net = reward_model.RewardNet(4, 2, hidden=(8,), seed=0)
    p = reward_model.save_reward_model(tmp_path / "rm.safetensors", net)
    assert reward_model.load_reward_model(p)[0].obs_dim == 4
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(reward_model.RewardModelFileError, match="corrupt or truncated") as e:
        reward_model.load_reward_model(p)
    assert str(p) in str(e.value)
    with torch.no_grad():
        net.net[0].weight[0, 0] = float("inf")
    reward_model.save_reward_model(p, net)
    with pytest.raises(reward_model.RewardModelFileError, match="NaN or inf"):
        reward_model.load_reward_model(p)


# --------------------------------------------------------------------------- the answers file
wd = pytest.importorskip("rlhf_tutorial.widgets")
pytest.importorskip("ipywidgets")


@pytest.fixture(scope="module")
def pairs():
    from rlhf_tutorial import feedback as fb

    pool = {k: v for k, v in fb.controller_pool(0).items() if k in ("pd", "random")}
    segs = fb.collect_segments(pool, segment_length=20, episodes_per_policy=1, seed=0)
    return [(segs[i], segs[10 + i]) for i in range(3)]


def _tiny_render(segment):
    return [np.zeros((16, 16, 3), np.uint8)]


def _open_widget(args):
    path, barrier, pairs = args
    barrier.wait()
    wd.LabelingWidget(pairs, path, render=_tiny_render)  # only the file handling matters here


def test_two_widgets_opening_a_new_file_write_one_header(pairs, tmp_path):
    ctx = mp.get_context("fork")
    headers = []
    for trial in range(40):
        path = tmp_path / f"race{trial}.jsonl"
        barrier = ctx.Barrier(2)
        procs = [ctx.Process(target=_open_widget, args=((path, barrier, pairs),)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
        headers.append(sum(1 for r in lines if r.get("format") == wd.ANSWER_FORMAT))
        assert wd.load_answers(path) == []
    assert headers == [1] * 40


def test_a_repeated_header_is_tolerated(pairs, tmp_path):
    path = tmp_path / "labels.jsonl"
    w = wd.LabelingWidget(pairs, path)
    header = path.read_text().splitlines()[0]
    w.click("left")
    with open(path, "a") as f:  # what two racing writers of an older version left behind
        f.write(header + "\n")
    w.click("right")
    assert [r["answer"] for r in wd.load_answers(path)] == ["left", "right"]
    assert wd.LabelingWidget(pairs, path).index == 2


def test_torn_last_line_is_repaired_by_one_call_and_nothing_is_lost(pairs, tmp_path):
    path = tmp_path / "labels.jsonl"
    w = wd.LabelingWidget(pairs, path)
    w.click("left")
    w.click("equal")
    whole = path.read_text()
    torn = whole.splitlines()[-1][: 40]
    path.write_text(whole + torn)  # the kernel died in the middle of a third answer
    with pytest.raises(wd.AnswerFileError, match="repair_answers") as e:
        wd.load_answers(path)
    assert "line 4" in str(e.value)
    report = wd.repair_answers(path)
    assert report["kept"] == 2 and report["moved"] == 1
    side = report["side_file"]
    assert side.name == "labels.jsonl.torn" and torn in side.read_text()
    assert [r["answer"] for r in wd.load_answers(path)] == ["left", "equal"]
    w2 = wd.LabelingWidget(pairs, path)  # resumes at the third pair
    assert w2.index == 2
    w2.click("right")
    assert [r["answer"] for r in wd.load_answers(path)] == ["left", "equal", "right"]
    assert wd.repair_answers(path) == {"kept": 3, "moved": 0, "side_file": None}


def test_missing_answers_file_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no answers file"):
        wd.load_answers(tmp_path / "nope.jsonl")
    assert wd.load_answers(tmp_path / "nope.jsonl", missing_ok=True) == []


# --------------------------------------------------------------------------- frames
def test_float_frames_in_unit_range_render():
    frame = np.zeros((8, 8, 3))
    frame[:, :4] = 1.0  # half white
    (u8,) = plots.to_uint8_frames([frame])
    assert u8.dtype == np.uint8 and u8.max() == 255 and u8[:, 4:].max() == 0
    png = wd.filmstrip_image([frame, frame], n=2)
    from io import BytesIO

    from PIL import Image

    img = np.asarray(Image.open(BytesIO(png)))
    assert img.max() == 255  # not all black
