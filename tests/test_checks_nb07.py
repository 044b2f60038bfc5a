"""Notebook 07's exercise checkers: pass on correct functions, fail with the right hint on typical mistakes."""

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
from rlhf_tutorial.text import sft_loss


def _unshifted(logits, labels):
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1), ignore_index=-100)


def _per_position(logits, labels):
    lg, lb = logits[:, :-1], labels[:, 1:]
    ce = F.cross_entropy(lg.reshape(-1, lg.size(-1)), lb.clamp(min=0).reshape(-1), reduction="none")
    return (ce.view(lb.shape) * (lb != -100)).sum() / lb.numel()


CORRECT = [(checks.check_sft_loss, checks.sft_loss_reference)]
WRONG = [(checks.check_sft_loss, _unshifted, "shift by one"),
         (checks.check_sft_loss, _per_position, "number of counted tokens")]


def test_reference_is_the_package_loss():
    import inspect

    assert "Notebook 07" in checks.check_sft_loss.__doc__ or "notebook 07" in checks.check_sft_loss.__doc__
    assert callable(sft_loss) and inspect.signature(sft_loss)


@pytest.mark.parametrize("checker, fn", CORRECT)
def test_checker_passes_on_correct_function(checker, fn, capsys):
    assert_checker_passes(checker, fn, capsys)


@pytest.mark.parametrize("checker, fn, hint", WRONG)
def test_checker_fails_on_typical_mistake_with_hint(checker, fn, hint, capsys):
    assert_checker_fails_with_hint(checker, fn, hint, capsys)


def test_every_checker_of_the_notebook_has_two_wrong_versions():
    assert_two_wrong_versions_each(WRONG, checks.nb07)
