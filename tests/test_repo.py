"""Repository-level checks: the README's test command is the one CI runs, dependencies agree."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11; on 3.10 these checks are skipped

ROOT = Path(__file__).resolve().parents[1]


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- test-command -->\s*```bash\n(.+?)\n```\s*<!-- /test-command -->", text, re.S)
    assert m, "README.md must show the test command between <!-- test-command --> markers"
    return m.group(1).strip()


def test_readme_test_command_is_what_ci_runs():
    cmd = _readme_test_command()
    assert "pytest" in cmd and "--nbval" in cmd and "notebooks" in cmd
    ci = (ROOT / ".ci" / "run").read_text()
    assert "test-command" in ci, ".ci/run must read the test command from README.md"
    # run .ci/run's own extraction and compare
    extract = re.search(r"cmd=\$\((.+)\)\n", ci).group(1)
    out = subprocess.run(["bash", "-c", extract], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == cmd


def _names(reqs):
    return {re.split(r"[<>=\[ ;]", r.strip(), maxsplit=1)[0].lower() for r in reqs if r.strip() and not r.startswith("#")}


def test_requirements_pyproject_and_environment_agree():
    py = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = py["project"]["dependencies"]
    req = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line and not line.startswith("#")]
    env = (ROOT / "environment.yml").read_text()
    assert _names(deps) <= _names(req), "every runtime dependency of pyproject.toml must be in requirements.txt"
    for line in req:
        assert line in env, f"environment.yml lacks {line!r} from requirements.txt"
    # lower bounds only, torch never pinned exactly
    for line in req + deps:
        assert "==" not in line, f"no exact pins in requirements: {line!r}"
    assert py["project"]["requires-python"] == ">=3.10"
    assert {"test", "bench"} <= set(py["project"]["optional-dependencies"])


def test_every_syllabus_notebook_that_exists_is_linked_from_readme():
    # the syllabus row itself must link the notebook (other README tables also link notebooks)
    readme = (ROOT / "README.md").read_text()
    rows = {}
    for line in readme.splitlines():  # the syllabus is the first table with numbered rows
        if line.startswith("| ") and line.split("|")[1].strip().isdigit():
            rows.setdefault(line.split("|")[1].strip(), line)
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        number = nb.name[:2]
        assert number in rows, f"README's syllabus has no row for notebook {number}"
        assert f"(notebooks/{nb.name})" in rows[number], f"README's syllabus row {number} does not link {nb.name}"
        assert f"blob/main/notebooks/{nb.name}" in rows[number], f"README's syllabus row {number} has no Colab link to {nb.name}"


def test_committed_notebooks_are_clean():
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "check_notebooks.py")], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_links_between_notebooks_point_to_existing_files():
    """A relative link such as [03 ...](03_actor_critic_ppo.ipynb) in a notebook must resolve."""
    import json

    nb_dir = ROOT / "notebooks"
    for nb in sorted(nb_dir.glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        for cell in cells:
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(r"\]\(([^)\s]+\.ipynb)\)", "".join(cell["source"])):
                if "://" in target:
                    continue
                assert (nb_dir / target).exists(), f"{nb.name} links to missing notebook {target}"


def test_every_public_function_names_its_notebook():
    """The course's rule: each public function or class of the package says which notebook explains it."""
    import ast

    missing = []
    for path in sorted((ROOT / "rlhf_tutorial").glob("*.py")):
        if path.name.startswith("_") and path.name != "__init__.py":
            continue  # private infrastructure (_validate): explained in docs/DESIGN.md, not in a notebook
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                if "notebook" not in (ast.get_docstring(node) or "").lower():
                    missing.append(f"{path.name}:{node.name}")
    assert not missing, f"docstrings without a notebook reference: {missing}"


def test_every_notebook_follows_the_checklist():
    """CONTRIBUTING.md: Colab cell first, 'What you will learn', a Checks cell, Summary and Exercises."""
    import json

    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(nb.read_text())["cells"]
        first_code = next("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert "import rlhf_tutorial" in first_code and "%pip install" in first_code, f"{nb.name}: no Colab cell first"
        text = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown").lower()
        for heading in ("what you will learn", "summary", "exercises"):
            assert heading in text, f"{nb.name} lacks a '{heading}' section"
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        assert code.count("assert ") >= 3, f"{nb.name} asserts too little about its results"


# --------------------------------------------------------------------------- the thin package (docs/DESIGN.md)
PACKAGE = ROOT / "rlhf_tutorial"

# Private modules whose underscore names the modules next to them may use: ``checks/_kit.py`` is
# the checkers' shared kit (``_Checker``, ``_compare``, ...), which every ``checks/nbXX.py`` builds
# on as every module builds on ``_validate``. ``_validate`` itself may be imported (``from . import
# _validate as V``); its own private helpers may not.
PRIVATE_KITS = {"rlhf_tutorial.checks._kit": "rlhf_tutorial.checks"}
IMPORTABLE_PRIVATE_MODULES = {"rlhf_tutorial._validate"}


def _module_of(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(ROOT).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.is_dir() or path.with_suffix(".py").is_file()


def _private_uses(source: str, module: str, is_package: bool = False) -> list[str]:
    """Each use in ``source`` (module ``module``) of another module's ``_name``: imported or read as ``alias._name``."""
    import ast

    package = module.split(".") if is_package else module.split(".")[:-1]

    def allowed(owner: str, name: str) -> bool:
        if owner == module or f"{owner}.{name}" in IMPORTABLE_PRIVATE_MODULES:
            return True
        users = PRIVATE_KITS.get(owner) or PRIVATE_KITS.get(f"{owner}.{name}")  # a kit's names, or the kit itself
        return users is not None and (module == users or module.startswith(users + "."))

    tree = ast.parse(source)
    found, aliases = [], {}  # alias -> the module it names (or the module its object was imported from)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            owner = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:
                aliases[a.asname or a.name] = f"{owner}.{a.name}" if _is_module(f"{owner}.{a.name}") else owner
                if _is_private(a.name) and not allowed(owner, a.name):
                    found.append((node.lineno, f"from {'.' * node.level}{node.module or ''} import {a.name}"))
        elif isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                and _is_private(node.attr) and not allowed(aliases[node.value.id], node.attr)):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return [f"{module}:{line}: {what}" for line, what in sorted(found)]


def test_private_name_detector_finds_each_kind_of_use():
    src = ("from . import _validate as V\nfrom . import text as T\nfrom .reward_model import _check_segment_list\n"
           "from .feedback import Segment\nimport rlhf_tutorial.text as TT\n"
           "V.integer('n', 1)\nV._tname(1)\nT._check_texts('x', [])\nSegment._private\nTT._cache_root(None)\n"
           "T.__name__\n")
    found = _private_uses(src, "rlhf_tutorial.rlhf")
    assert [f.split(": ", 1)[1] for f in found] == [
        "from .reward_model import _check_segment_list", "V._tname", "T._check_texts", "Segment._private",
        "TT._cache_root"], found
    kit = "from ._kit import _Checker\nfrom . import _kit\n_kit._compare\n"
    assert _private_uses(kit, "rlhf_tutorial.checks.nb01") == []
    assert _private_uses(kit, "rlhf_tutorial.widgets")  # the checkers' kit is theirs alone


def test_no_module_uses_another_modules_private_names():
    """docs/DESIGN.md: no module imports or calls a private name (``_x``) of another; shared checks live in ``_validate``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        found += _private_uses(path.read_text(), *_module_of(path))
    assert not found, "private names used across modules (move the helper into _validate or make it public):\n" + "\n".join(found)


MAX_FUNCTION_LINES = 80
# Known debt: functions over MAX_FUNCTION_LINES when this test was written, at their length then
# (def line to last line). They may shrink, not grow; take one out of the list once it is short.
KNOWN_LONG_FUNCTIONS: dict[str, int] = {}  # none left


def _function_lengths():
    import ast

    def walk(node, path, prefix):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path}:{prefix}{child.name}", child.end_lineno - child.lineno + 1
                yield from walk(child, path, f"{prefix}{child.name}.")
            elif isinstance(child, ast.ClassDef):
                yield from walk(child, path, f"{prefix}{child.name}.")
            else:
                yield from walk(child, path, prefix)

    for file in sorted(PACKAGE.rglob("*.py")):
        yield from walk(ast.parse(file.read_text()), file.relative_to(PACKAGE).as_posix(), "")


def test_no_function_is_longer_than_80_lines():
    """docs/DESIGN.md, "The thin package": no function or method over 80 lines (except the known debt above)."""
    lengths = dict(_function_lengths())
    too_long = {name: n for name, n in lengths.items() if n > KNOWN_LONG_FUNCTIONS.get(name, MAX_FUNCTION_LINES)}
    assert not too_long, f"functions longer than {MAX_FUNCTION_LINES} lines (split them into named steps): {too_long}"
    stale = {name for name in KNOWN_LONG_FUNCTIONS if lengths.get(name, 0) <= MAX_FUNCTION_LINES}
    assert not stale, f"no longer over {MAX_FUNCTION_LINES} lines (or gone): remove from KNOWN_LONG_FUNCTIONS: {stale}"
