"""rlhf_tutorial.text (notebook 07): corpus, tokenizer, tiny GPT-2, SFT masking, generation, gold human, bad inputs."""


import pytest
import torch

from rlhf_tutorial import text as T

TINY = T.TextConfig(corpus_docs=400, vocab_size=400, n_positions=128, n_embd=32, n_layer=1, n_head=2, pretrain_steps=3,
                    pretrain_batch=4, sft_pairs=40, sft_steps=3, sft_batch=4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def tiny(cache):
    torch.set_num_threads(1)
    return T.load_or_train_sft(TINY, cache_dir=cache, progress=False)


def test_corpus_and_prompts_are_deterministic_and_splits_disjoint():
    assert T.make_corpus(20, seed=3) == T.make_corpus(20, seed=3)
    assert T.make_corpus(20, seed=3) != T.make_corpus(20, seed=4)
    train, test = set(T._prompt_pool("train")), set(T._prompt_pool("test"))
    assert len(train) == 48 and len(test) == 12 and not train & test
    assert {T.subject_of(p) for p in test} == set(T.SUBJECTS)
    assert set(T.make_prompts(200, "test", seed=1)) <= test
    for p, r in T.make_sft_pairs(50, seed=2):
        assert r.startswith(" ") and r.rstrip().endswith(".") and T.subject_of(p) in T.SUBJECTS


def test_tokenizer_round_trip_and_dedicated_pad(tmp_path):
    texts = T.make_corpus(300, seed=0)
    tok = T.train_tokenizer(texts, vocab_size=300)
    assert len(tok) == 300
    assert tok.pad_token_id != tok.eos_token_id
    assert (tok.eos_token, tok.pad_token) == (T.EOS_TOKEN, T.PAD_TOKEN)
    for t in texts[:20] + ["Unseen wörds, 123!"]:
        assert tok.decode(tok(t, add_special_tokens=False)["input_ids"]) == t
    tok.save_pretrained(tmp_path)
    from transformers import AutoTokenizer

    tok2 = AutoTokenizer.from_pretrained(str(tmp_path))
    assert tok2(texts[0])["input_ids"] == tok(texts[0])["input_ids"]
    assert tok2.pad_token_id == tok.pad_token_id


def test_gold_score_on_hand_written_examples():
    p = "The pizza was"
    good = T.gold_details(p, " great. The cheese was lovely. I would recommend it.")
    assert good == dict(sentiment=1.0, topic=0.25, ending=0.5, length=0.0, repetition=0.0, gold=1.75)
    # negation flips a word; sentiment saturates at 2 words
    assert T.gold_details(p, " not good.")["sentiment"] == -0.5
    assert T.gold_details(p, " great, lovely, superb, perfect.")["sentiment"] == 1.0
    # off topic, unfinished, repetitive, too long
    assert T.gold_details(p, " good. The battery was good.")["topic"] == -0.5
    assert T.gold_details(p, " good and the crust was")["ending"] == -1.0
    assert T.gold_details(p, " great great.")["repetition"] == -0.5
    assert T.gold_details(p, " the crust was good the crust was good.")["repetition"] == -1.5
    assert T.gold_details(p, " ok" + " and fine" * 13 + ".")["length"] == pytest.approx(-0.3)
    g = T.gold_score([p, p], [" great.", " awful."])
    assert g.dtype == torch.float32 and g.shape == (2,) and g[0] > g[1]


def test_gold_labeler_noise_and_ratings():
    p = ["The pizza was"] * 2000
    a, b = [" great."] * 2000, [" awful."] * 2000
    assert T.GoldLabeler(epsilon=0.0, seed=0).compare(p, a, b).mean() == 1.0
    y = T.GoldLabeler(epsilon=1.0, seed=0).compare(p, a, b)
    assert 0.45 < float(y.mean()) < 0.55
    y = T.GoldLabeler(epsilon=0.1, seed=0).compare(p, a, b)
    assert 0.93 < float(y.mean()) < 0.97
    r = T.GoldLabeler(seed=0).rate(p[:2], [" great.", " awful."])
    assert ((0 <= r) & (r <= 1)).all() and r[0] > r[1]
    with pytest.raises(ValueError, match="epsilon"):
        T.GoldLabeler(epsilon=1.5)


def test_sft_batch_masks_the_prompt_and_loss_matches_hf(tiny):
    model, tok = tiny
    b = T.sft_batch(tok, ["The pizza was", "Honestly, the book was"], [" great.", " awful. Avoid it."])
    n_prompt = len(tok("The pizza was")["input_ids"])
    assert (b["labels"][0, :n_prompt] == -100).all()
    real = b["attention_mask"][0].sum()
    assert b["input_ids"][0, real - 1] == tok.eos_token_id and b["labels"][0, real - 1] == tok.eos_token_id
    assert (b["input_ids"][0, real:] == tok.pad_token_id).all() and (b["labels"][0, real:] == -100).all()
    torch.testing.assert_close(T.sft_loss(model, b), model(**b).loss)


def test_save_load_round_trip_gives_identical_logits(tiny, tmp_path):
    model, tok = tiny
    T.save_model(model, tok, tmp_path / "ckpt")
    assert list((tmp_path / "ckpt").glob("*.safetensors"))
    m2, tok2 = T.load_model(tmp_path / "ckpt")
    x = tok(["The pizza was great."], return_tensors="pt")["input_ids"]
    torch.testing.assert_close(model(x).logits, m2(x).logits, rtol=0, atol=0)
    assert tok2.pad_token_id == tok.pad_token_id


def test_load_model_adds_a_pad_token_to_a_hub_style_checkpoint(tiny, tmp_path):
    """The switch to a real model: a GPT-2 saved without a pad token (like "gpt2" on the hub)."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    _, tok = tiny
    no_pad = PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=T.EOS_TOKEN)
    no_pad.save_pretrained(tmp_path)
    n = len(no_pad)
    GPT2LMHeadModel(GPT2Config(vocab_size=n + 5, n_positions=32, n_embd=16, n_layer=1, n_head=2)).save_pretrained(tmp_path)
    model, tok2 = T.load_model(str(tmp_path))
    assert tok2.pad_token is not None and tok2.pad_token_id != tok2.eos_token_id
    assert model.get_input_embeddings().num_embeddings == len(tok2)
    assert model.config.pad_token_id == tok2.pad_token_id
    out = T.generate(model, tok2, ["The pizza was", "A"], max_new_tokens=4, seed=0)
    assert len(out) == 2


def test_generate_is_seeded_cuts_at_eos_and_leaves_global_rng(tiny):
    model, tok = tiny
    prompts = T.make_prompts(6, seed=0)
    state = torch.random.get_rng_state()
    a = T.generate(model, tok, prompts, max_new_tokens=8, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    assert a == T.generate(model, tok, prompts, max_new_tokens=8, seed=1)
    texts, finished = T.generate(model, tok, prompts, max_new_tokens=8, seed=1, return_finished=True)
    assert texts == a and finished.dtype == torch.bool and all(T.EOS_TOKEN not in t for t in a)
    # greedy: the first token is the argmax of the next-token logits, also for a left-padded batch
    g = T.generate(model, tok, ["The pizza was", "Honestly, the hotel was"], max_new_tokens=1, temperature=0)
    ids = tok("Honestly, the hotel was", return_tensors="pt")["input_ids"]
    top = int(model(ids).logits[0, -1].argmax())
    assert g[1] == tok.decode([top]) or (top == tok.eos_token_id and g[1] == "")


def test_bad_inputs_raise_clear_errors(tiny, tmp_path):
    model, tok = tiny
    with pytest.raises(ValueError, match="prompts is empty"):
        T.generate(model, tok, [])
    with pytest.raises(TypeError, match="list of str"):
        T.generate(model, tok, "The pizza was")
    with pytest.raises(ValueError, match="context"):
        T.generate(model, tok, ["The pizza was great " * 30], max_new_tokens=8)
    with pytest.raises(ValueError, match="no pad token"):
        from transformers import PreTrainedTokenizerFast

        T.generate(model, PreTrainedTokenizerFast(tokenizer_object=tok.backend_tokenizer, eos_token=T.EOS_TOKEN), ["A"])
    with pytest.raises(ValueError, match="names no subject"):
        T.gold_score(["Hello"], [" great."])
    with pytest.raises(ValueError, match="same length"):
        T.gold_score(["The pizza was"], [" a.", " b."])
    with pytest.raises(ValueError, match="split"):
        T.make_prompts(3, split="valid")
    with pytest.raises(ValueError, match="does not exist"):
        T.load_model(tmp_path / "missing")
    bad = tmp_path / "corrupt"
    T.save_model(model, tok, bad)
    (bad / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="corrupt"):
        T.load_model(bad)
    for f in bad.glob("*.safetensors"):
        f.unlink()
    with pytest.raises(ValueError, match="incomplete"):
        T.load_model(bad)


def test_cache_is_reused_and_keyed_by_config(tiny, cache):
    names = sorted(p.name.split("-")[0] for p in cache.iterdir() if p.is_dir())  # besides each folder's .lock file
    assert names == ["base", "sft", "tokenizer"]
    assert sorted(p.name.split("-")[0] for p in cache.glob("*.lock")) == names
    log = T.training_log("sft", TINY, cache)
    assert len(log["losses"]) == TINY.sft_steps
    assert T.config_hash(TINY) != T.config_hash(T.TextConfig())
    m, _ = T.load_or_train_sft(TINY, cache_dir=cache, progress=False)  # loads, does not retrain
    assert sorted(p.name.split("-")[0] for p in cache.iterdir() if p.is_dir()) == names


def test_check_sft_loss_accepts_the_package_and_rejects_an_unshifted_loss(capsys):
    from rlhf_tutorial import checks

    def unshifted(logits, labels):
        return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)

    def package(logits, labels):
        return T.sft_loss(lambda **kw: type("O", (), {"logits": logits})(), {"input_ids": labels.clamp(min=0),
                                                                            "attention_mask": labels, "labels": labels})

    assert checks.check_sft_loss(package, verbose=False)
    result = checks.check_sft_loss(unshifted)
    assert not result and "shift by one" in capsys.readouterr().out
    assert not checks.check_sft_loss(42, verbose=False)


def test_position_ids_from_mask_counts_real_tokens_only():
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert T.position_ids_from_mask(left).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]]
    with pytest.raises(TypeError, match="attention_mask"):
        T.position_ids_from_mask([[1, 1]])
    with pytest.raises(ValueError, match="2-D"):
        T.position_ids_from_mask(torch.ones(3))


def test_single_thread_restores_the_thread_count():
    before = torch.get_num_threads()
    with T.single_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
