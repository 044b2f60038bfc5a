"""Generate the student notebooks in exercises/ from the solution notebooks in notebooks/.

    python scripts/make_exercises.py            # (re)write exercises/NN_*.ipynb
    python scripts/make_exercises.py --check    # exit 1 when exercises/ is out of date (CI)

A solution notebook marks the code a student should write with two comment lines::

    def bt_loss(r1, r2, y):
        # BEGIN SOLUTION
        d = r1 - r2
        return (y * F.softplus(-d) + (1 - y) * F.softplus(d)).mean()
        # END SOLUTION

    assert checks.check_bradley_terry_loss(bt_loss)

and the student notebook gets, in the same place::

    def bt_loss(r1, r2, y):
        # YOUR CODE HERE
        raise NotImplementedError


    bt_loss = checks.use(bt_loss, checks.check_bradley_terry_loss)

``checks.use`` prints a banner ("using the reference solution: your function bt_loss() is not
written yet") and returns the checker's reference while the stub is unwritten, so the notebook
runs top to bottom; once written, the checker runs on its hidden cases and the learner's function
is used.

Rules of the transformation (every notebook in notebooks/ is picked up, new ones included):

- outputs and execution counts are cleared; a note at the top says where the solutions are;
- the lines from ``# BEGIN SOLUTION`` to ``# END SOLUTION`` (inclusive) become
  ``# YOUR CODE HERE`` + ``raise NotImplementedError`` at the marker's indentation; when the marked
  lines are whole top-level ``def``s, each function keeps its signature and docstring and only its
  body becomes the stub, so the check call below still finds the function;
- in a cell with markers, "one possible solution" in the first comment line reads "your solution";
- in a cell with markers, ``assert [checks.]check_xxx(fn, **options)`` on a stubbed function ``fn``
  of that cell is removed and ``fn = checks.use(fn, checks.check_xxx, **options)`` is put right after
  ``fn``'s definition (so the uses of ``fn`` further down the cell get the fallback too); other
  ``assert check_xxx(...)`` lines of the cell become ``_ = ...`` (a report, not a traceback);
- a stub without a checker needs ``fn = checks.use(fn, reference=...)`` after its definition in
  the solution notebook (silent there, the fallback in the student notebook); without it a warning
  names the cell, because the student notebook would stop where ``fn`` is used;
- in markdown cells, the lines between ``<!-- BEGIN SOLUTION -->`` and ``<!-- END SOLUTION -->``
  become *Your answer here.*

A notebook without markers is copied with its outputs cleared. Markers that do not pair up are an
error that names the notebook and the cell. The table of student notebooks in README.md (between
``<!-- exercises-table -->`` and ``<!-- /exercises-table -->``) is rewritten too, and so is the quiz
answer key ``docs/instructor/quiz_key.md`` (from the ``QUIZ`` lists in ``rlhf_tutorial/checks/``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
import textwrap
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXERCISES = ROOT / "exercises"
PATTERN = "[0-9][0-9]_*.ipynb"

BEGIN = re.compile(r"^(\s*)#+\s*BEGIN SOLUTION\s*$")
END = re.compile(r"^\s*#+\s*END SOLUTION\s*$")
MD_BEGIN = re.compile(r"^\s*<!--\s*BEGIN SOLUTION\s*-->\s*$")
MD_END = re.compile(r"^\s*<!--\s*END SOLUTION\s*-->\s*$")
ASSERT_CHECK = re.compile(r"^(\s*)assert\s+((?:[A-Za-z_][\w.]*\.)?check_\w+\(.*\))\s*(#.*)?$")
STUB = ("# YOUR CODE HERE", "raise NotImplementedError")
NOTE_ID = "student-version-note"


class MarkerError(ValueError):
    """Solution markers that do not pair up (names the notebook and the cell)."""


def _stub_defs(region: list[str], indent: str) -> list[str] | None:
    """If ``region`` is only function definitions, keep their headers and docstrings, stub the bodies."""
    src = textwrap.dedent("\n".join(region))
    try:
        tree = ast.parse(src)
    except SyntaxError:
        return None
    if not tree.body or not all(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) for n in tree.body):
        return None
    lines = src.splitlines()
    out: list[str] = []
    for node in tree.body:
        first_body = node.body[0]
        has_doc = (isinstance(first_body, ast.Expr) and isinstance(first_body.value, ast.Constant)
                   and isinstance(first_body.value.value, str))
        start = (node.decorator_list[0].lineno if node.decorator_list else node.lineno) - 1
        header_end = first_body.end_lineno if has_doc else first_body.lineno - 1
        header = lines[start:header_end]
        body_indent = re.match(r"\s*", lines[first_body.lineno - 1]).group(0)
        if not has_doc and first_body.lineno == node.body[0].lineno and \
                lines[first_body.lineno - 1][:first_body.col_offset].strip():  # def f(x): return x
            header = lines[start:first_body.lineno - 1] + [lines[first_body.lineno - 1][:first_body.col_offset].rstrip()]
            body_indent = re.match(r"\s*", lines[node.lineno - 1]).group(0) + "    "
        if out:
            out.append("")
        out += [indent + h if h.strip() else h for h in header]
        out += [indent + body_indent + s for s in STUB]
    return out


def _stub_code(source: str, where: str) -> str:
    lines = source.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        m = BEGIN.match(lines[i])
        if END.match(lines[i]):
            raise MarkerError(f"{where}: '# END SOLUTION' on line {i + 1} without a '# BEGIN SOLUTION' before it")
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent = m.group(1)
        j = i + 1
        while j < len(lines) and not END.match(lines[j]):
            if BEGIN.match(lines[j]):
                raise MarkerError(f"{where}: '# BEGIN SOLUTION' on line {j + 1} inside the solution that "
                                  f"begins on line {i + 1} (markers do not nest)")
            j += 1
        if j == len(lines):
            raise MarkerError(f"{where}: '# BEGIN SOLUTION' on line {i + 1} has no '# END SOLUTION'")
        region = lines[i + 1:j]
        out += _stub_defs(region, indent) or [indent + s for s in STUB]
        i = j + 1
    return "\n".join(out)


def _is_stub_def(node) -> bool:
    body = node.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return (len(body) == 1 and isinstance(body[0], ast.Raise) and isinstance(body[0].exc, ast.Name)
            and body[0].exc.id == "NotImplementedError")


def _checker_call(node, stubs: set[str]):
    """``(function name, checker expression, keyword text)`` when ``node`` is ``assert [checks.]check_x(fn, ...)``."""
    if not (isinstance(node, ast.Assert) and isinstance(node.test, ast.Call)):
        return None
    call = node.test
    func = ast.unparse(call.func)
    if not re.fullmatch(r"(?:[A-Za-z_][\w.]*\.)?check_\w+", func) or not call.args:
        return None
    if not (isinstance(call.args[0], ast.Name) and call.args[0].id in stubs):
        return None
    kws = "".join(f", {ast.unparse(k)}" for k in call.keywords if k.arg not in (None, "verbose"))
    return call.args[0].id, func, kws


IMPORTS_CHECKS = re.compile(r"^\s*(from\s+rlhf_tutorial\s+import\s+.*\bchecks\b|import\s+rlhf_tutorial\.checks\s+as\s+checks\b)",
                            re.M)


def _fallbacks(source: str, checks_imported: bool, where: str) -> str:
    """Route each stubbed function through ``checks.use``: right after its ``def``, its checker runs on it
    (or, while it is a stub, the reference replaces it with a banner); the ``assert`` on it goes away."""
    lines = source.split("\n")
    try:
        tree = ast.parse("\n".join("" if x.lstrip().startswith(("%", "!")) else x for x in lines))
    except SyntaxError:
        return source
    stubs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef) and _is_stub_def(n)}
    if not stubs:
        return source
    checked, drop = {}, set()
    for node in tree.body:
        found = _checker_call(node, set(stubs))
        if found and found[0] not in checked:
            checked[found[0]] = found
            drop.update(range(node.lineno - 1, node.end_lineno))
    inserts: dict[int, list[str]] = {}
    for name, node in stubs.items():
        if name in checked:
            _, func, kws = checked[name]
            use = ["", "", f"{name} = checks.use({name}, {func}{kws})"]
            before = "\n".join(lines[:node.end_lineno])
            if not (checks_imported or IMPORTS_CHECKS.search(before)):
                use.insert(2, "from rlhf_tutorial import checks")
            inserts[node.end_lineno - 1] = use
        elif not re.search(rf"^{name}\s*=\s*(?:[\w.]*\.)?use\(\s*{name}\b", source, re.M):
            print(f"warning: {where}: the stub {name}() has no checker (assert checks.check_...({name})) and no "
                  f"'{name} = checks.use({name}, reference=...)': the student notebook stops where it is used",
                  file=sys.stderr)
    out = []
    for k, line in enumerate(lines):
        if k not in drop:
            out.append(line)
        if k in inserts:
            out += inserts[k]
    return "\n".join(out).rstrip()


def _stub_markdown(source: str, where: str) -> str:
    lines = source.split("\n")
    out: list[str] = []
    inside = False
    for k, line in enumerate(lines):
        if MD_BEGIN.match(line):
            if inside:
                raise MarkerError(f"{where}: nested <!-- BEGIN SOLUTION --> on line {k + 1}")
            inside = True
            out.append("*Your answer here.*")
        elif MD_END.match(line):
            if not inside:
                raise MarkerError(f"{where}: <!-- END SOLUTION --> on line {k + 1} without a BEGIN")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise MarkerError(f"{where}: <!-- BEGIN SOLUTION --> has no <!-- END SOLUTION -->")
    return "\n".join(out)


def has_solution(cell) -> bool:
    """True for a cell with solution markers."""
    pat = BEGIN if cell.cell_type == "code" else MD_BEGIN
    return any(pat.match(line) for line in cell.source.split("\n"))


def student_version(nb: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """The student notebook for solution notebook ``nb`` (file name ``name``)."""
    out = copy.deepcopy(nb)
    checks_imported = False
    for k, cell in enumerate(out.cells):
        where = f"notebooks/{name}, cell {k}"
        if cell.cell_type == "code":
            if has_solution(cell):  # "# Exercise 1: one possible solution, ..." -> "your solution"
                cell.source = re.sub(r"\A(#[^\n]*?)\bone possible solution\b", r"\1your solution", cell.source)
                cell.source = _fallbacks(_stub_code(cell.source, where), checks_imported, where)
                cell.source = "\n".join(
                    ASSERT_CHECK.sub(lambda m: f"{m.group(1)}_ = {m.group(2)}" + (f"  {m.group(3)}" if m.group(3) else ""), x)
                    for x in cell.source.split("\n"))
            else:
                cell.source = _stub_code(cell.source, where)  # only checks for stray END markers
            checks_imported = checks_imported or bool(IMPORTS_CHECKS.search(cell.source))
            cell.outputs = []
            cell.execution_count = None
            cell.metadata.pop("execution", None)
        elif cell.cell_type == "markdown":
            cell.source = _stub_markdown(cell.source, where)
    note = nbformat.v4.new_markdown_cell(
        f"> **Student version** of [`notebooks/{name}`](../notebooks/{name}), generated by "
        "`scripts/make_exercises.py`: exercise solutions are replaced by `# YOUR CODE HERE`. Until you "
        "write one, a banner says the notebook uses the reference solution, so every cell still runs; "
        "once you write it, its check tells you which hidden case your code fails and why. Edit the "
        "solution notebook, not this file, and regenerate.")
    note["id"] = NOTE_ID
    at = 1 if out.cells and out.cells[0].cell_type == "markdown" else 0
    out.cells.insert(at, note)
    out.metadata.pop("widgets", None)  # saved widget state belongs to the executed solution notebook
    return out


def render(nb: nbformat.NotebookNode) -> str:
    nbformat.validate(nb)
    return nbformat.writes(nb) + "\n"


README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- exercises-table -->", "<!-- /exercises-table -->"
COLAB = "https://colab.research.google.com/github/rlhf-tutorial/rlhf-tutorial/blob/main"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"


def exercises_table(names: list[str]) -> str:
    """The README's table of student notebooks (between the exercises-table markers)."""
    rows = ["| # | student notebook | open it | solutions |", "|---|---|---|---|"]
    for name in names:
        rows.append(f"| {name[:2]} | [exercises/{name}](exercises/{name}) | "
                    f"[![Open in Colab]({BADGE})]({COLAB}/exercises/{name}) | [notebooks/{name}](notebooks/{name}) |")
    return "\n".join(rows)


def readme_text(names: list[str]) -> str | None:
    """README.md with its exercises table brought up to date (``None`` when it has no markers)."""
    if not README.exists():
        return None
    text = README.read_text(encoding="utf-8")
    i, j = text.find(TABLE_BEGIN), text.find(TABLE_END)
    if i < 0 or j < i:
        return None
    return text[:i + len(TABLE_BEGIN)] + "\n" + exercises_table(names) + "\n" + text[j:]


def expected_files() -> dict[Path, str]:
    """Every student notebook's path and text, from the solution notebooks as they are now."""
    files = {}
    for path in sorted(NOTEBOOKS.glob(PATTERN)):
        nb = nbformat.read(path, as_version=4)
        files[EXERCISES / path.name] = render(student_version(nb, path.name))
    readme = readme_text([p.name for p in files])
    if readme is not None:
        files[README] = readme
    files[QUIZ_KEY] = quiz_key_text()
    return files


QUIZ_KEY = ROOT / "docs" / "instructor" / "quiz_key.md"


def quiz_key_text() -> str:
    """The instructor's quiz answer key, from the ``QUIZ`` lists of ``rlhf_tutorial/checks/nbNN.py``."""
    sys.path.insert(0, str(ROOT))
    from rlhf_tutorial import checks

    return checks.answer_key_markdown()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only report whether exercises/ is up to date")
    args = ap.parse_args(argv)
    try:
        files = expected_files()
    except MarkerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    stale = sorted(set(EXERCISES.glob(PATTERN)) - set(files))
    n = sum(p.parent == EXERCISES for p in files)
    if args.check:
        bad = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        for p in bad:
            print(f"out of date: {p.relative_to(ROOT)}")
        for p in stale:
            print(f"no solution notebook for: exercises/{p.name}")
        if bad or stale:
            print("run: python scripts/make_exercises.py", file=sys.stderr)
            return 1
        print(f"exercises/ is up to date ({n} notebooks)")
        return 0
    EXERCISES.mkdir(exist_ok=True)
    QUIZ_KEY.parent.mkdir(parents=True, exist_ok=True)
    for p, text in files.items():
        if not p.exists() or p.read_text(encoding="utf-8") != text:
            p.write_text(text, encoding="utf-8")
            print(f"wrote {p.relative_to(ROOT)}")
    for p in stale:
        p.unlink()
        print(f"removed exercises/{p.name} (its solution notebook is gone)")
    print(f"exercises/ is up to date ({n} notebooks)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
