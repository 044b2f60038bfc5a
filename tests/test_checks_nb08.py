"""Notebook 08's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

import numpy as np  # noqa: F401
import pytest
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401

from rlhf_tutorial import checks
from rlhf_tutorial.text_reward import last_token_index

CORRECT = [(checks.check_last_token_index, last_token_index),
           (checks.check_last_token_index, lambda m: (torch.arange(m.shape[1]) * m).argmax(-1))]
WRONG = [(checks.check_last_token_index, lambda m: m.sum(-1) - 1, "counting the ones"),
         (checks.check_last_token_index, lambda m: m.sum(-1), "subtract 1")]


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    result = checker(fn)
    out = capsys.readouterr().out
    assert result and result.passed and not result.failures, str(result)
    assert "✅" in out


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    result = checker(fn)
    out = capsys.readouterr().out
    assert not result and result.failures
    assert "❌" in out and "Hint" in out and "Traceback" not in out
    assert hint in out, out


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    counts = {}
    for checker, _, _ in WRONG:
        counts[checker.__name__] = counts.get(checker.__name__, 0) + 1
    mine = {n for n in checks.nb08.__all__ if n.startswith("check_")}
    assert set(counts) == mine and min(counts.values()) >= 2, counts
