"""rlhf_tutorial.text_reward (notebook 08): last-token scoring, padding, Bradley–Terry, preference data, normalization."""

import json

import pytest
import torch

from rlhf_tutorial import text as T
from rlhf_tutorial import text_reward as R

TINY = T.TextConfig(corpus_docs=400, vocab_size=400, n_positions=128, n_embd=32, n_layer=1, n_head=2,
                    pretrain_steps=3, pretrain_batch=4, sft_pairs=40, sft_steps=3, sft_batch=4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def sft(cache):
    torch.set_num_threads(1)
    return T.load_or_train_sft(TINY, cache_dir=cache, progress=False)


@pytest.fixture()
def rm(sft):
    model, tok = sft
    return R.build_reward_model(model, tok, seed=0), tok


def test_reward_model_starts_from_the_sft_weights(sft, rm):
    model, _ = sft
    r, _ = rm
    assert r.config.num_labels == 1 and r.score.out_features == 1
    for (n1, p1), (n2, p2) in zip(model.transformer.named_parameters(), r.transformer.named_parameters()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_last_token_index_left_and_right_padding():
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    assert R.last_token_index(right).tolist() == [2, 4, 0]
    assert R.last_token_index(left).tolist() == [4, 4, 4]
    assert R.position_ids_from_mask(left).tolist()[0] == [0, 0, 0, 1, 2]
    with pytest.raises(ValueError, match="no real token"):
        R.last_token_index(torch.tensor([[0, 0]]))


def test_score_is_read_at_the_eos_for_left_and_right_padded_batches(rm):
    model, tok = rm
    prompts = ["The pizza was", "Honestly, the hotel was", "The book was"]
    comps = [" great.", " awful. The staff was rude. Never again.", ""]
    right = R.encode(tok, prompts, comps, padding_side="right")
    left = R.encode(tok, prompts, comps, padding_side="left")
    idx = R.last_token_index(right["attention_mask"])
    assert (right["input_ids"][torch.arange(3), idx] == tok.eos_token_id).all()
    assert (left["input_ids"][:, -1] == tok.eos_token_id).all()
    with torch.no_grad():
        r_right = R.reward_forward(model, **right)
        r_left = R.reward_forward(model, **left)
        singles = torch.cat([R.reward_forward(model, **R.encode(tok, [p], [c])) for p, c in zip(prompts, comps)])
        hf = model(**right).logits.squeeze(-1)  # transformers pools at the last non-pad token (pad != eos)
    torch.testing.assert_close(r_right, singles, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r_left, singles, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(hf, singles, rtol=1e-5, atol=1e-5)


def test_eos_missing_or_padded_variants_are_scored_at_their_last_real_token(rm):
    model, tok = rm
    ids = tok("The pizza was great.", add_special_tokens=False)["input_ids"]
    no_eos = torch.tensor([ids])
    with_eos = torch.tensor([ids + [tok.eos_token_id]])
    padded = torch.tensor([ids + [tok.eos_token_id] + [tok.pad_token_id] * 4])
    mask_padded = torch.tensor([[1] * (len(ids) + 1) + [0] * 4])
    with torch.no_grad():
        h = model.transformer(with_eos).last_hidden_state
        r_eos = R.reward_forward(model, with_eos, torch.ones_like(with_eos))
        r_pad = R.reward_forward(model, padded, mask_padded)
        r_no = R.reward_forward(model, no_eos, torch.ones_like(no_eos))
        h_no = model.transformer(no_eos).last_hidden_state
    torch.testing.assert_close(r_eos, model.score(h[:, -1]).squeeze(-1))
    torch.testing.assert_close(r_pad, r_eos, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(r_no, model.score(h_no[:, -1]).squeeze(-1))
    assert not torch.allclose(r_no, r_eos)


def test_bradley_terry_loss_by_hand():
    rc, rr = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.0, 1.0])
    expected = (torch.log1p(torch.exp(torch.tensor(-2.0))) + torch.log(torch.tensor(2.0))
                + torch.log1p(torch.exp(torch.tensor(2.0)))) / 3
    torch.testing.assert_close(R.bradley_terry_loss(rc, rr), expected)
    torch.testing.assert_close(R.bradley_terry_loss(rc, rr, torch.ones(3)), expected)
    torch.testing.assert_close(R.bradley_terry_loss(rc, rr, torch.zeros(3)), R.bradley_terry_loss(rr, rc))
    assert torch.isfinite(R.bradley_terry_loss(torch.tensor([-500.0]), torch.tensor([500.0])))
    with pytest.raises(ValueError, match="shape"):
        R.bradley_terry_loss(torch.zeros(2), torch.zeros(3))
    torch.testing.assert_close(R.score_loss(torch.zeros(2), torch.tensor([0.5, 1.0])), torch.tensor(0.125))


def test_preference_rows_round_trip_through_datasets(tmp_path):
    rows = [{"prompt": "The pizza was", "chosen": " great.", "rejected": " awful."},
            {"prompt": "The book was", "chosen": " lovely. I loved it.", "rejected": " good good good"}]
    path = R.save_jsonl(rows, tmp_path / "prefs.jsonl")
    ds = R.load_preference_dataset(path)
    assert ds.column_names == ["prompt", "chosen", "rejected"] and ds.to_list() == rows
    import datasets

    assert datasets.load_dataset("json", data_files=str(path), split="train").to_list() == rows
    with pytest.raises(ValueError, match="'chosen'"):
        R.check_preference_rows([{"prompt": "The pizza was", "rejected": " awful."}])
    with pytest.raises(ValueError, match="no preference rows"):
        R.check_preference_rows([])
    (tmp_path / "bad.jsonl").write_text(json.dumps(rows[0]) + "\n{oops\n")
    with pytest.raises(ValueError, match="line 2"):
        R.load_preference_dataset(tmp_path / "bad.jsonl")
    with pytest.raises(ValueError, match="does not exist"):
        R.load_preference_dataset(tmp_path / "missing.jsonl")


def test_make_preference_dataset_labels_with_the_gold_human(sft):
    model, tok = sft
    labeler = T.GoldLabeler(epsilon=0.0, beta=1e-3, seed=0)
    rows = R.make_preference_dataset(model, tok, 12, labeler=labeler, seed=0, max_new_tokens=8)
    assert len(rows) == 12 and set(rows[0]) == {"prompt", "chosen", "rejected"}
    g_c = T.gold_score([r["prompt"] for r in rows], [r["chosen"] for r in rows])
    g_r = T.gold_score([r["prompt"] for r in rows], [r["rejected"] for r in rows])
    assert (g_c >= g_r).all()


def test_training_lowers_the_loss_and_normalization_gives_mean0_std1(rm):
    model, tok = rm
    rows = [{"prompt": p, "chosen": " great. I loved it.", "rejected": " awful. Avoid it."}
            for p in T.make_prompts(32, seed=0)]
    before = R.bradley_terry_loss(*R.reward_scores(model, tok, [r["prompt"] for r in rows] * 2,
                                                   [r["chosen"] for r in rows] + [r["rejected"] for r in rows],
                                                   normalize=False).view(2, -1))
    _, history = R.train_reward_model(model, tok, rows, config=R.RewardTrainConfig(epochs=3, batch_size=16, lr=3e-3),
                                      progress=False)
    losses = history["loss"]
    assert len(losses) == 6 and history["step"] == list(range(6))
    assert losses[-1] < float(before) and losses[-1] < 0.3
    prompts = T.make_prompts(20, seed=1)
    comps = [" great.", " awful.", " good. The cheese was nice.", " poor."] * 5
    mean, std = R.normalize_reward_model(model, tok, prompts, comps)
    s = R.reward_scores(model, tok, prompts, comps)
    assert abs(float(s.mean())) < 1e-4 and abs(float(s.std()) - 1) < 1e-4
    torch.testing.assert_close(R.reward_scores(model, tok, prompts, comps, normalize=False), s * std + mean)
    acc = R.pairwise_accuracy(model, tok, prompts[:4], [" great."] * 4, [" awful."] * 4)
    assert acc == 1.0


def test_trained_model_uses_the_fused_gelu_and_reloads_with_the_same_scores(rm, tmp_path):
    model, tok = rm
    rows = [{"prompt": p, "chosen": " great.", "rejected": " awful."} for p in T.make_prompts(8, seed=0)]
    R.train_reward_model(model, tok, rows, config=R.RewardTrainConfig(epochs=1, batch_size=8), progress=False)
    assert not any(type(m).__name__ == "NewGELUActivation" for m in model.modules())
    prompts, comps = T.make_prompts(6, seed=3), [" great.", " poor. Avoid it."] * 3
    T.save_model(model, tok, tmp_path / "rm")
    from transformers import GPT2ForSequenceClassification
    loaded, ltok = T.load_model(tmp_path / "rm", model_class=GPT2ForSequenceClassification)
    assert any(type(m).__name__ == "NewGELUActivation" for m in loaded.modules())  # config unchanged: gelu_new
    torch.testing.assert_close(R.reward_scores(loaded, ltok, prompts, comps), R.reward_scores(model, tok, prompts, comps),
                               atol=1e-5, rtol=1e-5)


def test_bad_inputs(rm):
    model, tok = rm
    with pytest.raises(ValueError, match="context|max_length"):
        R.encode(tok, ["The pizza was " * 40], [" great."])
    with pytest.raises(ValueError, match="empty"):
        R.reward_scores(model, tok, [], [])
    with pytest.raises(ValueError, match="same length"):
        R.encode(tok, ["The pizza was"], [" a.", " b."])
    with pytest.raises(ValueError, match="padding_side"):
        R.encode(tok, ["The pizza was"], [" a."], padding_side="middle")


def test_check_last_token_index(capsys):
    from rlhf_tutorial import checks

    assert checks.check_last_token_index(R.last_token_index, verbose=False)
    assert not checks.check_last_token_index(lambda m: m.sum(-1) - 1)
    assert "only for right padding" in capsys.readouterr().out


def test_bradley_terry_temperature_divides_the_difference():
    rc, rr = torch.tensor([2.0, 0.0, -1.0]), torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(R.bradley_terry_loss(rc, rr, temperature=2.0), R.bradley_terry_loss(rc / 2, rr / 2))
    torch.testing.assert_close(R.bradley_terry_loss(rc, rr, torch.ones(3), temperature=torch.tensor(0.5)),
                               R.bradley_terry_loss(2 * rc, 2 * rr))
    for bad in (0.0, -1.0, float("nan"), torch.tensor(-0.1)):
        with pytest.raises(ValueError, match="temperature"):
            R.bradley_terry_loss(rc, rr, temperature=bad)
    with pytest.raises(ValueError, match="labels"):
        R.bradley_terry_loss(rc, rr, torch.tensor([1.0, -1.0, 0.0]))


def test_rating_link_and_its_likelihood_by_hand():
    r, y = torch.tensor([-1.0, 0.0, 2.0]), torch.tensor([0.2, 0.5, 0.9])
    torch.testing.assert_close(R.rating_link(r, 2.0, -0.5), torch.sigmoid(2.0 * r - 0.5))
    s = 0.2
    expected = ((y - torch.sigmoid(2.0 * r - 0.5)) ** 2).mean() / (2 * s * s) + torch.log(torch.tensor(s))
    torch.testing.assert_close(R.rating_nll(r, y, 2.0, -0.5, s), expected)
    # a = 1, b = 0, s fixed: the fixed link's squared error, rescaled
    torch.testing.assert_close(R.rating_nll(r, y, 1.0, 0.0, s), R.score_loss(r, y) / (2 * s * s) + torch.log(torch.tensor(s)))
    link = R.RatingLink(scale=2.0, offset=-0.5, noise=s)
    torch.testing.assert_close(link.scale, torch.tensor(2.0))
    torch.testing.assert_close(link.noise, torch.tensor(s))
    torch.testing.assert_close(link.loss(r, y), expected)
    link.loss(r, y).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in link.parameters())
    for bad in (0.0, -2.0, float("inf")):
        with pytest.raises(ValueError, match="scale"):
            R.rating_link(r, bad)
        with pytest.raises(ValueError, match="scale"):
            R.RatingLink(scale=bad)
    with pytest.raises(ValueError, match="noise"):
        R.rating_nll(r, y, noise=0.0)
    with pytest.raises(ValueError, match="shape"):
        R.rating_nll(r, y[:2])


def test_check_ratings_rejects_bad_ratings():
    assert R.check_ratings([("The pizza was", " great.", 1)]) == [("The pizza was", " great.", 1.0)]
    with pytest.raises(ValueError, match=r"y must be"):
        R.check_ratings([("The pizza was", " great.", 2.0)])
    with pytest.raises(ValueError, match=r"y must be|finite|nan"):
        R.check_ratings([("The pizza was", " great.", float("nan"))])
    with pytest.raises(TypeError, match="tuple"):
        R.check_ratings([("The pizza was", 0.5)])
    with pytest.raises(TypeError, match="str"):
        R.check_ratings([("The pizza was", 3, 0.5)])
    with pytest.raises(ValueError, match="empty"):
        R.check_ratings([])


def test_batch_plan_gives_a_mix_the_steps_of_comparisons_only():
    assert R._batch_plan(2000, 0, 32) == (63, 32, 0)
    assert R._batch_plan(1000, 1000, 32) == (63, 16, 16)
    steps, per_pair, per_rating = R._batch_plan(100, 1900, 32)
    assert steps <= 63 and per_pair * steps >= 100 and per_rating * steps >= 1900 and per_pair + per_rating <= 33
    assert R._batch_plan(1, 1, 1) == (1, 1, 1)
    g = torch.Generator().manual_seed(0)
    batches = R._epoch_batches(10, 7, 4, g)
    assert sorted(i for p, _ in batches for i in p) == list(range(10))
    assert sorted(i for _, q in batches for i in q) == list(range(7))


def test_mixed_training_learns_the_link_and_records_a_history(rm):
    model, tok = rm
    prompts = T.make_prompts(16, seed=0)
    rows = [{"prompt": p, "chosen": " great. I loved it.", "rejected": " awful. Avoid it."} for p in prompts]
    ratings = [(p, c, y) for p in prompts for c, y in ((" great. I loved it.", 0.9), (" awful. Avoid it.", 0.1))]
    seen = []
    cfg = R.RewardTrainConfig(epochs=2, batch_size=12, lr=3e-3)
    _, history = R.train_reward_model(model, tok, rows, ratings=ratings, config=cfg, callback=seen.append, progress=False)
    steps = 2 * R._batch_plan(16, 32, 12)[0]
    for key in ("step", "loss", "lr", "compare_loss", "score_loss", "rating_scale", "rating_offset", "rating_noise"):
        assert len(history[key]) == steps, key
    assert len(seen) == steps and seen[-1]["step"] == steps - 1
    assert set(model.config.rating_link) == {"scale", "offset", "noise"} and model.config.rating_link["scale"] > 0
    assert history["rating_noise"][-1] != pytest.approx(cfg.link_noise)   # the link moved
    # a callback that returns True stops training
    _, short = R.train_reward_model(model, tok, rows, ratings=ratings, config=cfg, callback=lambda st: st["step"] >= 1,
                                    progress=False)
    assert len(short["loss"]) == 2


def test_reward_train_config_rejects_bad_values():
    for kwargs, err in [({"lr": -1e-3}, ValueError), ({"lr": float("nan")}, ValueError), ({"epochs": 0}, ValueError),
                        ({"batch_size": 2.5}, TypeError), ({"max_grad_norm": -1.0}, ValueError),
                        ({"lambdas": (1.0, -1.0)}, ValueError), ({"lambdas": (float("nan"), 1.0)}, ValueError),
                        ({"lambdas": 1.0}, TypeError), ({"rating_link": "affine"}, ValueError),
                        ({"fused_gelu": 1}, TypeError), ({"link_noise": 0.0}, ValueError)]:
        with pytest.raises(err, match=next(iter(kwargs)).split("_")[0]):
            R.RewardTrainConfig(**kwargs)


def test_fused_gelu_is_a_switch(sft):
    model, tok = sft
    rows = [{"prompt": p, "chosen": " great.", "rejected": " awful."} for p in T.make_prompts(4, seed=0)]
    rm_plain = R.build_reward_model(model, tok, seed=0)
    R.train_reward_model(rm_plain, tok, rows, config=R.RewardTrainConfig(epochs=1, fused_gelu=False), progress=False)
    assert any(type(m).__name__ == "NewGELUActivation" for m in rm_plain.modules())
    with pytest.raises(TypeError, match="config"):
        R.train_reward_model(rm_plain, tok, rows, config={"epochs": 1})
    with pytest.raises(ValueError, match="rating"):
        R.train_reward_model(rm_plain, tok, rows, ratings=[("The pizza was", " great.", 1.5)], progress=False)
