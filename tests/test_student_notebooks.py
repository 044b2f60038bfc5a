"""Every student notebook in exercises/ runs top to bottom with its exercises unanswered.

A stub that is not written yet falls back to the package's reference with a banner
("using the reference solution: your function ... is not written yet"), so the notebook still runs
and teaches: no cell may raise, no output may hold a traceback, and a notebook with stubs shows the
banner. The notebooks reuse the checkpoints cached by the solution notebooks (``$RLHF_TUTORIAL_CACHE``);
on an empty cache the first one to need a model trains it. They also reuse the solution notebooks'
recorded Gymnasium runs (``RLHF_TUTORIAL_RUNS=reuse``, :func:`rlhf_tutorial.cache.reuse_run`): the same
``train_ppo``/``train_sac``/``train_reinforce``/``run_preference_loop`` call on the same inputs returns the
recorded network, history and random state instead of training again; a call whose inputs differ
(a learner's own function inside it) trains.

Run one: ``python -m pytest -q tests/test_student_notebooks.py -k 09``. Each notebook's wall time is
printed (``-s``) so the instructor guide's lab lengths can be checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parents[1]
EXERCISES = sorted((ROOT / "exercises").glob("[0-9][0-9]_*.ipynb"))
BANNER = "using the reference solution: your function"
ENV = {"RLHF_TUTORIAL_RUNS": "reuse", "TQDM_DISABLE": "1", "HF_HUB_OFFLINE": "1", "SDL_VIDEODRIVER": "dummy",
       "MPLBACKEND": "module://matplotlib_inline.backend_inline", "PYTHONWARNINGS": "ignore"}


@contextlib.contextmanager
def _answer_files_lock(folder: Path):
    """An exclusive lock (across processes) on the answer files of ``folder``."""
    digest = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:12]
    with open(Path(tempfile.gettempdir()) / f"rlhf_tutorial_answers_{digest}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _texts(nb):
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                yield out.get("text", "")
            elif out.get("output_type") == "error":
                yield "\n".join(out.get("traceback", []))
            for mime, data in out.get("data", {}).items():
                if mime == "text/plain":
                    yield data


def _runs_unanswered(path, monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    # notebooks that read or write a learner's answer files (my_labels*.jsonl) run one at a time, under a
    # lock, and only they restore those files afterwards: two of them at once on the two xdist workers
    # would see (and undo) each other's answers
    touches_answers = any("my_labels" in c.source for c in nb.cells)
    with _answer_files_lock(path.parent) if touches_answers else contextlib.nullcontext():
        labels_before = {f: f.read_bytes() for f in path.parent.glob("my_labels*.jsonl")} if touches_answers else {}
        client = nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3", record_timing=False,
                                         resources={"metadata": {"path": str(path.parent)}})
        start = time.perf_counter()
        try:
            client.execute()
        except nbclient.exceptions.CellExecutionError as err:
            pytest.fail(f"{path.name} stops with its exercises unanswered:\n{str(err)[-1500:]}")
        finally:  # leave the answer files as they were: never lose (or add to) a learner's labels
            if touches_answers:
                for f in path.parent.glob("my_labels*.jsonl"):
                    if f not in labels_before:
                        os.remove(f)
                for f, data in labels_before.items():
                    if not f.exists() or f.read_bytes() != data:
                        f.write_bytes(data)
    seconds = time.perf_counter() - start
    print(f"\n{path.name}: ran unanswered in {seconds:.0f} s")
    text = "\n".join(_texts(nb))
    assert "Traceback" not in text, f"{path.name}: a traceback in the outputs"
    stubs = sum("checks.use(" in c.source for c in nb.cells if c.cell_type == "code")
    if stubs:
        assert text.count(BANNER) >= stubs, f"{path.name}: {stubs} cells use checks.use but the banner shows " \
                                            f"{text.count(BANNER)} times"


# One test class per notebook: pytest-xdist's --dist loadscope sends each class to a worker of its own
# choosing, so the eleven student notebooks share the CI's two workers instead of queueing on one
# (a parametrized function is one scope). Node ids read test_student_notebooks.py::Test_09_…::test_runs_unanswered.
def _make_class(path):
    def test_runs_unanswered(self, monkeypatch):
        _runs_unanswered(path, monkeypatch)
    return type(f"Test_{path.stem}", (), {"test_runs_unanswered": test_runs_unanswered,
                                          "__doc__": f"exercises/{path.name} runs with its exercises unanswered."})


for _path in EXERCISES:
    globals()[f"Test_{_path.stem}"] = _make_class(_path)
