"""Notebook 05's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

import numpy as np  # noqa: F401
import pytest
import torch  # noqa: F401
import torch.nn.functional as F  # noqa: F401
from checker_asserts import (
    assert_checker_fails_with_hint,
    assert_checker_passes,
    assert_two_wrong_versions_each,
)

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
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb05)
