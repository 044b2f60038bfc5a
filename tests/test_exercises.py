"""The student notebooks: generated, in sync, and their checked exercises work both ways.

For every notebook in notebooks/ (new ones are picked up automatically):

- exercises/ holds its student version, exactly as ``scripts/make_exercises.py`` writes it now;
- it has at least one exercise checked by code: a cell with ``# BEGIN SOLUTION`` markers that calls
  a checker of ``rlhf_tutorial.checks``;
- every checker in ``rlhf_tutorial.checks`` is called by some notebook;
- in each such cell, every checker **passes** on the solution and on its reference and **fails** on a
  stub; the student version of the cell shows the fallback banner (``checks.use``), never a traceback;
- every stub of every student notebook is routed through ``checks.use`` (so the notebook runs
  unanswered: ``tests/test_student_notebooks.py`` executes them).

A check cell is run on its own, not after the whole notebook: first the notebook's imports,
constant settings (``GAMMA = 0.99``) and function definitions, then the cell's own imports,
definitions and check calls. So a check cell must not need data computed earlier in the notebook;
the solution code between the markers may call functions defined in earlier cells.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import io
import re
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from rlhf_tutorial import checks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_exercises  # noqa: E402

NOTEBOOKS = sorted((ROOT / "notebooks").glob(make_exercises.PATTERN))
CHECK_CALL = re.compile(r"\b(check_\w+)\s*\(")
CHECKERS = sorted(name for name, obj in vars(checks).items()
                  if name.startswith("check_") and callable(obj)
                  and getattr(obj, "__module__", "").startswith(checks.__name__ + "."))


def _check_cells(nb) -> list[int]:
    return [k for k, c in enumerate(nb.cells)
            if c.cell_type == "code" and make_exercises.has_solution(c)
            and any(n in CHECKERS for n in CHECK_CALL.findall(c.source))]


CASES = [(p, k) for p in NOTEBOOKS for k in _check_cells(nbformat.read(p, as_version=4))]


def test_exercises_are_in_sync():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_exercises.py"), "--check"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_student_notebooks_have_no_solutions_and_no_outputs():
    for path, text in make_exercises.expected_files().items():
        if path.suffix != ".ipynb":  # README.md's table of student notebooks
            continue
        nb = nbformat.reads(text, as_version=4)
        for cell in nb.cells:
            assert "BEGIN SOLUTION" not in cell.source and "END SOLUTION" not in cell.source, path.name
            if cell.cell_type == "code":
                assert not cell.outputs and cell.execution_count is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_has_an_exercise_checked_by_code(path):
    nb = nbformat.read(path, as_version=4)
    assert _check_cells(nb), (
        f"{path.name}: no exercise checked by code. Add a cell that marks the solution with "
        "'# BEGIN SOLUTION' / '# END SOLUTION' and calls a checker of rlhf_tutorial.checks, "
        "e.g. `assert checks.check_gae(my_gae)`.")


def test_every_checker_is_used_by_a_notebook():
    used = set()
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                used |= set(CHECK_CALL.findall(cell.source))
    # kept for graders' scripts after notebook 03's SAC exercise became the SAC-discrete soft value
    kept = {"check_soft_q_target"}
    missing = sorted(set(CHECKERS) - used - kept)
    assert not missing, (f"checkers not called by any notebook: {missing}; give each one an exercise cell with "
                         "'# BEGIN SOLUTION' markers (or a lesson cell that checks its inline version)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_stub_of_the_student_notebook_falls_back(path):
    """Each ``raise NotImplementedError`` stub is followed in its cell by ``fn = checks.use(fn, ...)``, so the
    student notebook runs top to bottom unanswered (tests/test_student_notebooks.py runs them)."""
    student = make_exercises.student_version(nbformat.read(path, as_version=4), path.name)
    missing = []
    for k, cell in enumerate(student.cells):
        if cell.cell_type != "code" or "NotImplementedError" not in cell.source:
            continue
        tree = ast.parse(_strip_magics(cell.source))
        stubs = [n.name for n in tree.body if isinstance(n, ast.FunctionDef) and make_exercises._is_stub_def(n)]
        routed = {n.targets[0].id for n in tree.body if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
                  and isinstance(n.value, ast.Call) and ast.unparse(n.value.func).endswith("use")}
        missing += [f"cell {k}: {name}()" for name in stubs if name not in routed]
        if any(isinstance(n, ast.Raise) for n in tree.body):
            missing.append(f"cell {k}: a top-level raise (put the solution markers inside a function body)")
    assert not missing, (f"{path.name}: stubs without a fallback {missing}: add `assert checks.check_x(fn)` or "
                         "`fn = checks.use(fn, reference=...)` after the definition in the solution notebook")


# --------------------------------------------------------------------------- running a check cell
def _is_literal(node) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False


def _context(nb, upto: int) -> list[ast.stmt]:
    """Imports, literal constants and function/class definitions of the cells before ``upto``."""
    keep: list[ast.stmt] = []
    for cell in nb.cells[:upto]:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(_strip_magics(cell.source))
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
                keep.append(node)
            elif isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) for t in node.targets) \
                    and _is_literal(node.value):
                keep.append(node)
    return keep


def _strip_magics(src: str) -> str:
    return "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in src.split("\n"))


def _check_statements(src: str) -> list[ast.stmt]:
    """The cell's imports, definitions, literal constants and the statements that call a checker."""
    keep = []
    for node in ast.parse(_strip_magics(src)).body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)):
            keep.append(node)
        elif isinstance(node, ast.Assign) and _is_literal(node.value):
            keep.append(node)
        elif any(n in CHECKERS for n in CHECK_CALL.findall(ast.unparse(node))) or "checks.use(" in ast.unparse(node):
            keep.append(node)
    return keep


def _run(nb, k: int, source: str, monkeypatch) -> tuple[dict, str]:
    """Run cell ``k`` (given as ``source``) in a fresh namespace; return {checker: [results]} and stdout."""
    results: dict[str, list] = {}

    def record(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            res = fn(*args, **kwargs)
            results.setdefault(name, []).append(res)
            return res
        return wrapper

    for name in CHECKERS:
        monkeypatch.setattr(checks, name, record(name, getattr(checks, name)))
    ns: dict = {"__name__": "__exercise__"}
    for node in _context(nb, k):
        try:
            exec(compile(ast.Module([node], []), "<notebook context>", "exec"), ns)
        except Exception:  # an import that needs the GPU, a def with a runtime default, ...
            pass
    module = ast.Module(_check_statements(source), [])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(module, "<check cell>", "exec"), ns)
    return results, out.getvalue()


@pytest.mark.parametrize("path, k", CASES, ids=[f"{p.stem}-cell{k}" for p, k in CASES])
def test_checkers_pass_on_solution_and_fail_on_stub(path, k, monkeypatch):
    nb = nbformat.read(path, as_version=4)
    cell = nb.cells[k]
    called = set(CHECK_CALL.findall(cell.source)) & set(CHECKERS)

    results, out = _run(nb, k, cell.source, monkeypatch)
    assert set(results) == called, f"{path.name} cell {k}: checkers called {sorted(results)}, expected {sorted(called)}"
    for name, res in results.items():
        assert all(res), f"{path.name} cell {k}: {name} fails on the solution:\n" + "\n".join(map(str, res))

    student = make_exercises.student_version(nb, path.name)
    stub_cell = next(c for c in student.cells if c.get("id") == cell.get("id"))
    assert "raise NotImplementedError" in stub_cell.source
    try:
        results, out = _run(nb, k, stub_cell.source, monkeypatch)
    except Exception as exc:  # the student would see a traceback instead of the checker's report
        pytest.fail(f"{path.name} cell {k}: the student version raises {type(exc).__name__}: {exc}. Put the "
                    "solution markers inside the function body so the stub still defines the function.")
    # the student version does not run the checker on the stub: it shows the banner and goes on
    # with the reference, which passes the checker; the checker itself fails on the stub
    assert "checks.use(" in stub_cell.source, stub_cell.source
    assert checks.BANNER.split("{")[0] in out, out
    assert "❌" not in out and "Traceback" not in out, out
    for name in called:
        checker = getattr(checks, name)
        assert not checker(_stub, verbose=False), f"{name} passes on a stub"
        assert checker(checker.reference, verbose=False), f"{name} fails on its own reference"


def _stub(*args, **kwargs):
    raise NotImplementedError


# --------------------------------------------------------------------------- the course as one book
def test_every_notebook_links_to_its_neighbours():
    """The issue's quality bar: each notebook links to the previous and the next one that exist."""
    for i, path in enumerate(NOTEBOOKS):
        nb = nbformat.read(path, as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        targets = set(re.findall(r"\]\(([^)\s]+\.ipynb)\)", text))
        for j in (i - 1, i + 1):
            if 0 <= j < len(NOTEBOOKS):
                assert NOTEBOOKS[j].name in targets, f"{path.name} does not link to {NOTEBOOKS[j].name}"
