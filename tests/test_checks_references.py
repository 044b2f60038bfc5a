"""Every checker carries the reference that `checks.use` falls back to while a student's stub is unwritten."""

import pytest

from rlhf_tutorial import checks

CHECKERS = [n for n in checks.__all__ if n.startswith("check_")]


@pytest.mark.parametrize("name", CHECKERS)
def test_every_checker_has_a_reference(name):
    assert callable(getattr(getattr(checks, name), "reference", None)), f"{name} has no reference: checks.use cannot fall back"
