"""Notebook 00's exercise checker: check_version_tuple passes on correct functions and hints at mistakes."""

import re

from rlhf_tutorial import checks


def version_tuple3(version):
    nums = [int(x) for x in re.findall(r"\d+", version.split("+")[0])[:3]]
    return tuple(nums + [0] * (3 - len(nums)))


def test_passes_on_a_correct_function(capsys):
    assert checks.check_version_tuple(version_tuple3)
    assert "✅" in capsys.readouterr().out


def test_version_tuple_hints():
    two = checks.check_version_tuple(lambda v: tuple(int(x) for x in re.findall(r"\d+", v)[:2]), verbose=False)
    assert not two and any("pad with zeros" in c.message for c in two.failures)
    strings = checks.check_version_tuple(lambda v: tuple(v.split("+")[0].split(".")), verbose=False)
    assert not strings and "tuple of ints" in strings.failures[0].message
    as_list = checks.check_version_tuple(lambda v: list(version_tuple3(v)), verbose=False)
    assert not as_list and "expected a tuple" in as_list.failures[0].message
