"""What every notebook's checker tests assert (tests/test_checks_nbNN.py share these)."""


def assert_checker_passes(checker, fn, capsys):
    """A correct function passes every hidden case and the learner sees the ✅ line."""
    result = checker(fn)
    out = capsys.readouterr().out
    assert result and result.passed and not result.failures, str(result)
    assert "✅" in out


def assert_checker_fails_with_hint(checker, fn, hint, capsys):
    """A typical mistake fails with a hint that names it, never with a traceback."""
    result = checker(fn)
    out = capsys.readouterr().out
    assert not result and result.failures
    assert "❌" in out and "Hint" in out and "Traceback" not in out
    assert hint in out, out


def assert_two_wrong_versions_each(wrong, module):
    """Every checker of the notebook's module is tested on at least two typical mistakes."""
    counts = {}
    for checker, _, _ in wrong:
        counts[checker.__name__] = counts.get(checker.__name__, 0) + 1
    mine = {n for n in module.__all__ if n.startswith("check_")}
    assert set(counts) == mine and min(counts.values()) >= 2, counts
