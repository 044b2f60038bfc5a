"""DPO (notebook 10): the loss against hand-computed values, masked response log-probs, training, errors."""

import math

import pytest
import torch
import torch.nn.functional as F

from rlhf_tutorial import checks
from rlhf_tutorial.dpo import (
    DPOConfig,
    dpo_loss,
    dpo_metrics,
    response_logprobs,
    tokenize_preferences,
    train_dpo,
)


def tiny_lm(seed: int = 0):
    """A word-level tokenizer (pad != eos) and a 1-layer random GPT-2, built offline in milliseconds."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    words = "<pad> <eos> <unk> the food was good bad great awful service slow fast and very".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    t = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
    torch.manual_seed(seed)
    m = GPT2LMHeadModel(GPT2Config(vocab_size=len(words), n_positions=64, n_embd=16, n_layer=1, n_head=2,
                                   bos_token_id=1, eos_token_id=1, pad_token_id=0))
    return m.eval(), t


ROWS = [{"prompt": "the food was", "chosen": " good", "rejected": " bad"},
        {"prompt": "the service", "chosen": " was fast and good", "rejected": " was slow"}]


def test_dpo_loss_by_hand():
    # margin h = (-1 - -1.5) - (-2 - -1.5) = 1; with beta = 0.5: -log σ(0.5) = log(1 + e^-0.5)
    t = lambda *x: torch.tensor(x)  # noqa: E731
    loss = dpo_loss(t(-1.0, -3.0), t(-2.0, -3.0), t(-1.5, -3.0), t(-1.5, -3.0), beta=0.5)
    expected = (math.log1p(math.exp(-0.5)) + math.log(2)) / 2  # second pair: policy = reference
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    m = dpo_metrics(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5)
    assert m["rewards/chosen"] == pytest.approx(0.25) and m["rewards/rejected"] == pytest.approx(-0.25)
    assert m["rewards/accuracies"] == 1.0 and m["rewards/margins"] == pytest.approx(0.5)
    # conservative DPO
    ls = dpo_loss(t(-1.0), t(-2.0), t(-1.5), t(-1.5), beta=0.5, label_smoothing=0.1)
    assert ls.item() == pytest.approx(0.9 * math.log1p(math.exp(-0.5)) + 0.1 * math.log1p(math.exp(0.5)), abs=1e-6)
    # stable for huge margins
    assert torch.isfinite(dpo_loss(t(-1000.0), t(0.0), t(0.0), t(0.0), beta=1.0))


def test_tokenize_masks_the_response_and_appends_eos():
    _, tok = tiny_lm()
    b = tokenize_preferences(tok, ROWS)
    assert b["chosen_input_ids"].tolist()[0] == [3, 4, 5, 6, 1, 0, 0]
    assert b["chosen_response_mask"].tolist()[0] == [0, 0, 0, 1, 1, 0, 0]
    assert b["rejected_attention_mask"].tolist()[1] == [1, 1, 1, 1, 1]
    assert b["rejected_response_mask"].tolist()[1] == [0, 0, 1, 1, 1]


def test_response_logprobs_by_hand_and_padding_invariant():
    model, tok = tiny_lm()
    ids = torch.tensor([[3, 4, 5, 6, 1]])
    att = torch.ones_like(ids)
    resp = torch.tensor([[0, 0, 0, 1, 1]])
    with torch.no_grad():
        logits = model(ids).logits[0]
        expected = F.log_softmax(logits[2], -1)[6] + F.log_softmax(logits[3], -1)[1]
        got = response_logprobs(model, ids, att, resp)
        torch.testing.assert_close(got, expected[None])
        # left- and right-padded copies give the same answer (position ids follow the mask)
        left = response_logprobs(model, torch.tensor([[0, 0, 3, 4, 5, 6, 1]]), torch.tensor([[0, 0, 1, 1, 1, 1, 1]]),
                                 torch.tensor([[0, 0, 0, 0, 0, 1, 1]]))
        right = response_logprobs(model, torch.tensor([[3, 4, 5, 6, 1, 0, 0]]), torch.tensor([[1, 1, 1, 1, 1, 0, 0]]),
                                  torch.tensor([[0, 0, 0, 1, 1, 0, 0]]))
        torch.testing.assert_close(left, got, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(right, got, atol=1e-5, rtol=1e-5)
        # temperature divides the logits
        hot = response_logprobs(model, ids, att, resp, temperature=2.0)
        exp2 = F.log_softmax(logits[2] / 2, -1)[6] + F.log_softmax(logits[3] / 2, -1)[1]
        torch.testing.assert_close(hot, exp2[None])


def test_train_dpo_learns_the_preferences_and_starts_at_log2():
    model, tok = tiny_lm()
    trained, hist = train_dpo(model, tok, ROWS * 8, DPOConfig(learning_rate=1e-2, num_train_epochs=4,
                                                              per_device_train_batch_size=8), progress=False)
    assert trained is model and all(isinstance(v, list) for v in hist.values())  # (model, dict of lists)
    assert hist["loss"][0] == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at step 0
    assert hist["loss"][-1] < 0.6 and hist["rewards/accuracies"][-1] == 1.0
    assert hist["pairs_per_second"][0] > 0


def test_bad_inputs_raise_clear_errors():
    t = torch.tensor
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(t([1.0]), t([1.0]), t([1.0]), t([1.0]), beta=-0.1)
    with pytest.raises(ValueError, match="mismatched batch sizes"):
        dpo_loss(t([1.0, 2.0]), t([1.0]), t([1.0]), t([1.0]))
    with pytest.raises(ValueError, match="empty"):
        dpo_loss(t([]), t([]), t([]), t([]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        dpo_loss([1.0], t([1.0]), t([1.0]), t([1.0]))
    _, tok = tiny_lm()
    with pytest.raises(ValueError, match="'prompt', 'chosen', 'rejected'"):
        tokenize_preferences(tok, [{"prompt": "the", "chosen": "good"}])
    with pytest.raises(ValueError, match="empty prompt"):
        tokenize_preferences(tok, [{"prompt": " ", "chosen": "good", "rejected": "bad"}])
    with pytest.raises(ValueError, match="empty"):
        tokenize_preferences(tok, [])
    with pytest.raises(ValueError, match="beta"):
        DPOConfig(beta=0)
    model, tok = tiny_lm()
    with pytest.raises(ValueError, match="frozen copy"):
        train_dpo(model, tok, ROWS, ref_model=model, progress=False)
    with pytest.raises(ValueError, match="same shape"):
        model, _ = tiny_lm()
        response_logprobs(model, t([[1, 2]]), t([[1, 1]]), t([[1]]))


def test_check_dpo_loss():
    assert checks.check_dpo_loss(dpo_loss, verbose=False)
    assert checks.check_dpo_loss(lambda a, b, c, d, beta: -F.logsigmoid(beta * ((a - c) - (b - d))).mean(), verbose=False)
    no_ref = checks.check_dpo_loss(lambda a, b, c, d, beta: -F.logsigmoid(beta * (a - b)).mean(), verbose=False)
    assert not no_ref and "subtract the reference" in no_ref.failures[0].message
    naive = checks.check_dpo_loss(lambda a, b, c, d, beta: -torch.log(torch.sigmoid(beta * ((a - c) - (b - d)))).mean(),
                                  verbose=False)
    assert not naive and [c.name for c in naive.failures] == ["huge margins"]
    assert not checks.check_dpo_loss(lambda a, b, c, d, beta: 1 / 0, verbose=False)
    assert "Notebook 10" in checks.check_dpo_loss.__doc__


def test_train_dpo_callback_stops_and_fused_gelu_is_a_switch():
    model, tok = tiny_lm()
    seen = []
    _, hist = train_dpo(model, tok, ROWS * 4, DPOConfig(per_device_train_batch_size=4, fused_gelu=False),
                        progress=False, callback=lambda st: seen.append(st["loss"]) or st["step"] == 1)
    assert len(hist["loss"]) == 2 and seen == hist["loss"]
    assert any(type(m).__name__ == "NewGELUActivation" for m in model.modules())  # switch off: GPT-2's own GELU
    with pytest.raises(TypeError, match="fused_gelu"):
        DPOConfig(fused_gelu=1)
