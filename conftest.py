"""Settings of the whole test command (README.md): recorded runs and the order of the work.

The solution notebooks (run by nbval, in kernels that inherit this process's environment) record
their Gymnasium training runs (``$RLHF_TUTORIAL_RUNS=record``, :func:`rlhf_tutorial.cache.reuse_run`);
the student notebooks (tests/test_student_notebooks.py) make the same calls and reuse them instead
of training again. Unit tests run with it off (tests/conftest.py). ``RLHF_TUTORIAL_RUNS=off`` records nothing.
"""

import os

from rlhf_tutorial.cache import RUNS_ENV

os.environ.setdefault(RUNS_ENV, "record")


# Longest first, so that two workers finish together (pytest-xdist hands out scopes in this order
# under --no-loadscope-reorder): the solution notebooks by their measured length in CI (06 ≈ 10 min,
# 07 ≈ 6 min, ... 00 < 1 min), 06 and 07 first because 08-10 load the models 07 trains (a notebook that
# needs one waits for it); then the student notebooks, which reuse what the solution notebooks
# recorded and cached; then the unit tests, many short scopes that fill the end.
LONGEST_FIRST = ("06", "07", "03", "10", "09", "08", "05", "02", "04", "01", "00")


def _order(item) -> tuple:
    path = item.nodeid.split("::")[0]
    name = path.rsplit("/", 1)[-1]
    if path.startswith("notebooks/") and name[:2] in LONGEST_FIRST:
        return 0, LONGEST_FIRST.index(name[:2])
    if path.endswith("test_student_notebooks.py"):
        cls = item.nodeid.split("::")[1] if "::" in item.nodeid else ""
        nb = cls.removeprefix("Test_")[:2]
        return 1, LONGEST_FIRST.index(nb) if nb in LONGEST_FIRST else len(LONGEST_FIRST)
    return 2, 0


def pytest_collection_modifyitems(config, items):
    items.sort(key=_order)  # stable: a notebook's cells stay in order
