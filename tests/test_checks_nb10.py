"""Notebook 10's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

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
from rlhf_tutorial.dpo import dpo_loss

CORRECT = [(checks.check_dpo_loss, dpo_loss),
           (checks.check_dpo_loss, lambda a, b, c, d, beta: -F.logsigmoid(beta * ((a - c) - (b - d))).mean())]
WRONG = [(checks.check_dpo_loss, lambda a, b, c, d, beta: -F.logsigmoid(beta * (a - b)).mean(), "subtract the reference"),
         (checks.check_dpo_loss, lambda a, b, c, d, beta: -F.logsigmoid((a - c) - (b - d)).mean(), "beta"),
         (checks.check_dpo_loss, lambda a, b, c, d, beta: -F.logsigmoid(beta * ((a - c) - (b - d))).sum(), "sum")]


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb10)
