"""Notebook 05's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

import numpy as np  # noqa: F401
import pytest
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401

from rlhf_tutorial import checks


def bt_softplus(r1, r2, y):
    d = r1 - r2
    return (y * F.softplus(-d) + (1 - y) * F.softplus(d)).mean()


def _bt_naive(r1, r2, y):
    p = torch.sigmoid(r1 - r2)
    return -(y * torch.log(p) + (1 - y) * torch.log(1 - p)).mean()


CORRECT = [
    (checks.check_bradley_terry_loss, lambda r1, r2, y: F.binary_cross_entropy_with_logits(r1 - r2, y)),
    (checks.check_bradley_terry_loss, bt_softplus),
]
WRONG = [
    (checks.check_bradley_terry_loss, lambda r1, r2, y: F.binary_cross_entropy_with_logits(r2 - r1, y),
     "sign is flipped"),
    (checks.check_bradley_terry_loss, _bt_naive, "logsigmoid"),
    (checks.check_bradley_terry_loss,
     lambda r1, r2, y: F.binary_cross_entropy_with_logits(r1 - r2, torch.round(y + 0.01)), "ties"),
]


def test_quiet_mode_reports_the_failed_case(capsys):
    bad = checks.check_bradley_terry_loss(_bt_naive, verbose=False)
    assert not bad and "huge" in bad.failures[0].name
    assert capsys.readouterr().out == ""


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
    mine = {n for n in checks.nb05.__all__ if n.startswith("check_")}
    assert set(counts) == mine and min(counts.values()) >= 2, counts
