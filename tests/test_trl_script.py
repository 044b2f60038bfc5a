"""scripts/trl_train.py (notebook 10): TRL's DPO, GRPO and RLOO trainers on the course's data, a few CPU steps."""

import importlib.util
import json
import math
from pathlib import Path

import pytest

pytest.importorskip("trl", reason="trl is not installed: pip install trl (scripts/trl_train.py needs it)")

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("trl_train", ROOT / "scripts" / "trl_train.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random one-layer GPT-2 with the course's tokenizer kind, and TRL-format preference rows."""
    from rlhf_tutorial import text as T

    d = tmp_path_factory.mktemp("trl")
    tok = T.train_tokenizer(T.make_corpus(60, seed=0), vocab_size=300)
    T.save_model(T.build_model(tok, n_positions=64, n_embd=32, n_layer=1, n_head=2), tok, d / "tiny")
    with open(d / "prefs.jsonl", "w") as f:
        for p in T.make_prompts(8, seed=0):
            f.write(json.dumps({"prompt": p, "chosen": " good and tasty.", "rejected": " bad bad"}) + "\n")
    return d


@pytest.mark.parametrize("algo", ["dpo", "grpo", "rloo"])
def test_trl_trainers_run_on_cpu(tiny, algo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    history = _script().main([algo, "--model", str(tiny / "tiny"), "--data", str(tiny / "prefs.jsonl"), "--cpu",
                              "--max-steps", "2", "--batch-size", "4", "--num-generations", "2",
                              "--max-completion-length", "8", "--output-dir", str(tiny / f"run_{algo}")])
    steps = [h for h in history if "loss" in h]
    assert len(steps) == 2 and all(math.isfinite(h["loss"]) for h in steps)
    if algo == "dpo":
        assert steps[0]["rewards/accuracies"] is not None and "rewards/margins" in steps[0]
    else:
        assert "reward" in steps[0] and "kl" in steps[0]  # the gold reward, and the KL to the reference
    assert json.loads((tiny / f"run_{algo}" / "log_history.json").read_text()) == history


def test_bad_arguments_exit_with_a_message():
    mod = _script()
    with pytest.raises(SystemExit, match="multiple of --num-generations"):
        mod.main(["grpo", "--tiny", "--batch-size", "3", "--num-generations", "2"])
    with pytest.raises(SystemExit):
        mod.main(["ppo"])
