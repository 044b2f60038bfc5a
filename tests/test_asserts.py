"""The notebooks' asserts can fail: a cheap static check for asserts that are true by construction.

Every notebook ends with assertions on its results (docs/DESIGN.md, "Results are real and asserted"). An assert that cannot
fail proves nothing, so this test reads every code cell of ``notebooks/`` with :mod:`ast` and flags
the obvious kinds:

- a constant test (``assert True``, ``assert 1``, ``assert "ok"``) or a non-empty tuple
  (``assert (x, "message")`` is always true);
- a test made of constants only (``assert 2 > 1``): it does not look at any result;
- a comparison of an expression with itself (``assert x == x``, ``assert f(a) <= f(a)``);
- a length or a count compared with a bound it always meets (``len(x) >= 0``, ``x.count(y) > -1``);
- an ``or`` with a true constant (``assert ok or True``);
- a comparison of a name with the very expression it was assigned from earlier in the same cell,
  with no reassignment in between (``v = d["k"]`` ... ``assert v == d["k"]``; a call is
  not a copy: ``a = run(0)`` ... ``assert a == run(0)`` checks determinism);
- an equality with a library's ``__version__`` (``assert gym.__version__ == info["gymnasium"]``:
  the report was copied from that attribute).

It is a heuristic, not a proof: it catches the patterns above and nothing subtler.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ALWAYS_TRUE_BOUNDS = {ast.GtE: 0, ast.Gt: -1}   # len(x) >= 0, len(x) > -1


def _code(source: str) -> str:
    """A cell's source with IPython magics and shell escapes commented out, so ast can parse it."""
    return "\n".join(re.sub(r"^(\s*)([%!])", r"\1# \2", line) for line in source.splitlines())


def _has_no_names(node: ast.AST) -> bool:
    return not any(isinstance(n, (ast.Name, ast.Attribute, ast.Call, ast.Subscript)) for n in ast.walk(node))


def _is_len_or_count(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call):
        return False
    f = node.func
    return (isinstance(f, ast.Name) and f.id == "len") or (isinstance(f, ast.Attribute) and f.attr == "count")


def _number(node: ast.AST) -> float | None:
    """The value of a numeric literal such as ``0`` or ``-1``, else None."""
    try:
        value = ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _compare_problem(test: ast.Compare) -> str | None:
    operands = [test.left, *test.comparators]
    for op, left, right in zip(test.ops, operands, operands[1:]):
        if ast.dump(left) == ast.dump(right) and isinstance(op, (ast.Eq, ast.LtE, ast.GtE, ast.Is)):
            return "compares an expression with itself"
        bound = ALWAYS_TRUE_BOUNDS.get(type(op))
        if bound is not None and _is_len_or_count(left) and _number(right) is not None and _number(right) <= bound:
            return "a length or count is always >= 0"
        if isinstance(op, ast.Eq) and any(isinstance(x, ast.Attribute) and x.attr == "__version__"
                                          for x in (left, right)):
            return "compares __version__ with a report copied from it"
    return None


def _is_lookup(node: ast.AST) -> bool:
    """A plain read (``d["k"]``, ``obj.field``, ``name``) with no call: reading it twice gives the same value."""
    return isinstance(node, (ast.Subscript, ast.Attribute, ast.Name)) and not any(
        isinstance(n, ast.Call) for n in ast.walk(node))


def _copied_from(test: ast.Compare, assigned: dict[str, str]) -> bool:
    """``assert v == EXPR`` where the cell set ``v = EXPR`` before (and did not reassign ``v``)."""
    if len(test.ops) != 1 or not isinstance(test.ops[0], ast.Eq):
        return False
    a, b = test.left, test.comparators[0]
    for name, expr in ((a, b), (b, a)):
        if isinstance(name, ast.Name) and assigned.get(name.id) == ast.dump(expr):
            return True
    return False


def tautologies(source: str) -> list[tuple[int, str]]:
    """``(line, reason)`` for every assert in ``source`` that is true by construction."""
    tree = ast.parse(_code(source))
    assigned: dict[str, str] = {}   # name -> dump of the expression it was last assigned from
    found = []
    for node in _in_order(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                for name in (n for n in ast.walk(target) if isinstance(n, ast.Name)):
                    assigned.pop(name.id, None)
                if isinstance(target, ast.Name) and _is_lookup(node.value):
                    assigned[target.id] = ast.dump(node.value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and isinstance(node.target, ast.Name):
            assigned.pop(node.target.id, None)
        elif isinstance(node, ast.Assert):
            reason = _assert_problem(node.test, assigned)
            if reason:
                found.append((node.lineno, reason))
    return found


def _in_order(tree: ast.AST):
    """Statements in source order (ast.walk is breadth-first, which would reorder assignments)."""
    nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Assert))]
    return sorted(nodes, key=lambda n: (n.lineno, n.col_offset))


def _assert_problem(test: ast.AST, assigned: dict[str, str]) -> str | None:
    if isinstance(test, ast.Constant):
        return "asserts a constant"
    if isinstance(test, ast.Tuple) and test.elts:
        return "asserts a non-empty tuple (always true)"
    if _has_no_names(test):
        return "asserts on constants only"
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.Or) and any(
            isinstance(v, ast.Constant) and v.value for v in test.values):
        return "an `or` with a true constant"
    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        for value in test.values:
            reason = _assert_problem(value, assigned)
            if reason:
                return reason
    if isinstance(test, ast.Compare):
        if _copied_from(test, assigned):
            return "compares a name with the expression it was just copied from"
        return _compare_problem(test)
    return None


# --------------------------------------------------------------------------- the detector itself
@pytest.mark.parametrize("src", [
    "assert True",
    "assert 1",
    "assert (x > 0, 'x must be positive')",
    "assert 2 > 1",
    "assert x == x",
    "assert f(a) <= f(a)",
    "assert len(items) >= 0",
    "assert xs.count(3) > -1",
    "assert ok or True",
    "v = info['gymnasium']\nassert v == info['gymnasium']",
    "assert gym.__version__ == info['gymnasium'] and torch.__version__ == info['torch']",
    "assert y > 0 and z == z",
])
def test_detector_flags_tautologies(src):
    assert tautologies(src), src


@pytest.mark.parametrize("src", [
    "assert x > 0",
    "assert len(items) >= 1",
    "assert a == b",
    "assert f(a) < f(b)",
    "v = info['gymnasium']\nv = other()\nassert v == info['gymnasium']",
    "assert version_tuple(info[name]) >= version_tuple(minimum)",
    "assert np.mean(h) > np.mean(g) + 50",
    "%pip install -q foo\nassert checks.check_gae(gae)",
    "a = run(seed=0)\nassert a == run(seed=0)",   # a determinism check is a real check
])
def test_detector_passes_real_asserts(src):
    assert not tautologies(src), src


# --------------------------------------------------------------------------- the notebooks
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_asserts_can_fail(path):
    nb = nbformat.read(path, as_version=4)
    problems = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        try:
            found = tautologies(cell.source)
        except SyntaxError as exc:  # a cell that does not parse is reported, not skipped
            problems.append(f"cell {i}: does not parse ({exc.msg})")
            continue
        lines = cell.source.splitlines()
        problems += [f"cell {i}, line {n}: {why}: {lines[n - 1].strip()}" for n, why in found]
    assert not problems, f"{path.name} has asserts that cannot fail:\n" + "\n".join(problems)
