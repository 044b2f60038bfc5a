"""The labeling widget of notebook 04 in a real browser: JupyterLab + headless Chromium (Playwright).

The test starts JupyterLab on 127.0.0.1 (a free port, a random token) in a temporary folder holding
a copy of notebook 04 cut after the cell that shows the learner's dataset, runs it, and then does
what a learner does: clicks "left better" and "equal", sets a score and submits it, types a comment
and submits it, and runs the dataset cell again. The dataset it shows must have grown by exactly
those labels (2 comparisons, 1 score, 1 comment), and the answers file must hold them.

Needs Debian's ``chromium`` (``apt-get install chromium``) and ``pip install playwright`` (no
browser download: Playwright drives the system Chromium through ``executable_path``). Without them
the test is skipped, unless ``RLHF_REQUIRE_BROWSER=1`` (set by ``.ci/run``), where it fails. On a
failure a screenshot is saved and its path printed.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "04_human_feedback.ipynb"
REQUIRED = os.environ.get("RLHF_REQUIRE_BROWSER", "") == "1"
# running notebook 04 up to the widget takes ~10 s alone, much more on a busy CPU
TIMEOUT_MS = int(os.environ.get("RLHF_BROWSER_TIMEOUT_MS", "240000"))
COMMENT = "The pole wobbled but the cart stayed in the middle."
SCORE = 0.8
COUNTS = re.compile(r"comparisons: (\d+), scores: (\d+), comments: (\d+)")


def _unavailable(reason: str):
    if REQUIRED:
        pytest.fail(f"browser test required (RLHF_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _test_notebook(folder: Path) -> tuple[str, int, int]:
    """Notebook 04 up to its dataset cell, outputs cleared, no auto-labels; (name, widget cell, dataset cell)."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [k for k, c in enumerate(nb.cells) if c.cell_type == "code"]
    widget_cell = next(k for k in code if "widgets.LabelingWidget(" in nb.cells[k].source)
    data_cell = next(k for k in code if k > widget_cell and "load_answers(" in nb.cells[k].source)
    nb.cells = nb.cells[:data_cell + 1]
    settings = next(c for c in nb.cells if c.cell_type == "code" and "AUTO_LABEL = True" in c.source)
    settings.source = settings.source.replace("AUTO_LABEL = True", "AUTO_LABEL = False")
    for c in nb.cells:
        if c.cell_type == "code":
            c.outputs, c.execution_count = [], None
    nb.metadata.pop("widgets", None)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, folder / "labels.ipynb")
    return "labels.ipynb", widget_cell, data_cell


def _start_lab(folder: Path, port: int, token: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TQDM_DISABLE="1", SDL_VIDEODRIVER="dummy",
               MPLBACKEND="module://matplotlib_inline.backend_inline", PYTHONWARNINGS="ignore",
               JUPYTER_RUNTIME_DIR=str(folder / ".runtime"), JUPYTER_CONFIG_DIR=str(folder / ".config"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
           "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
           f"--LabApp.workspaces_dir={folder / '.workspaces'}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(folder / "jupyterlab.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("JupyterLab exited: " + (folder / "jupyterlab.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise RuntimeError("JupyterLab did not answer within 90 s: " + (folder / "jupyterlab.log").read_text()[-2000:])


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()  # the server shuts its kernels down on SIGTERM
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _counts(page, cell: int):
    text = page.locator(".jp-Notebook .jp-Cell").nth(cell).locator(".jp-OutputArea").inner_text()
    m = COUNTS.search(text)
    return tuple(int(x) for x in m.groups()) if m else None


def _run_cell(page, cell: int) -> None:
    page.evaluate("""(k) => {
        const panel = window.jupyterapp.shell.currentWidget;
        panel.content.activeCellIndex = k;
        window.jupyterapp.commands.execute('notebook:run-cell');
    }""", cell)


def test_labeling_widget_in_jupyterlab(tmp_path):
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install playwright)")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        _unavailable("no `chromium` on PATH (Debian/Ubuntu: apt-get install chromium)")

    name, widget_cell, data_cell = _test_notebook(tmp_path)
    port, token = _free_port(), secrets.token_hex(16)
    proc = _start_lab(tmp_path, port, token)
    shot = tmp_path / "browser_failure.png"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, headless=True)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(TIMEOUT_MS)
            try:
                page.goto(f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}")
                page.wait_for_function("""() => {
                    const app = window.jupyterapp, w = app && app.shell.currentWidget;
                    const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
                    return k && k.status === 'idle' && w.content && w.content.widgets.length > 0;
                }""")
                page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")

                # the widget appears, and the dataset cell below it shows what is on disk (nothing yet)
                page.locator("button.rlhf-left-better").wait_for(state="visible")
                page.wait_for_function(
                    """(k) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[k];
                                return c && /comparisons: \\d+/.test(c.innerText); }""", arg=data_cell)
                before = _counts(page, data_cell)
                assert before is not None
                status = page.locator(".rlhf-status")

                # the learner's answers: two comparisons, a score and a comment
                page.locator("button.rlhf-left-better").click()
                page.wait_for_function("() => document.querySelector('.rlhf-status').innerText.includes('left better')")
                page.locator("button.rlhf-equal").click()
                page.wait_for_function("() => document.querySelector('.rlhf-status').innerText.includes('saved: equal')")
                readout = page.locator(".rlhf-score .widget-readout")
                readout.click()
                page.keyboard.press("Control+A")
                page.keyboard.type(f"{SCORE}")
                page.keyboard.press("Enter")
                page.wait_for_function("(v) => document.querySelector('.rlhf-score .widget-readout').innerText.trim() "
                                       "=== v", arg=f"{SCORE:.2f}")
                page.locator("button.rlhf-submit-score").click()
                page.wait_for_function("(v) => document.querySelector('.rlhf-status').innerText.includes(v)",
                                       arg=f"saved: score {SCORE:.2f}")
                page.locator(".rlhf-comment input").fill(COMMENT)
                page.locator("button.rlhf-submit-comment").click()
                page.wait_for_function("() => document.querySelector('.rlhf-status').innerText.includes('saved: comment')")
                assert "not saved" not in status.inner_text()

                # the next cell, run again, shows the dataset grown by exactly those labels
                _run_cell(page, data_cell)
                want = (before[0] + 2, before[1] + 1, before[2] + 1)
                page.wait_for_function(
                    """([k, want]) => { const c = document.querySelectorAll('.jp-Notebook .jp-Cell')[k];
                                        return c && c.innerText.includes(want); }""",
                    arg=[data_cell, "comparisons: %d, scores: %d, comments: %d" % want])
                assert _counts(page, data_cell) == want
                text = page.locator(".jp-Notebook .jp-Cell").nth(data_cell).inner_text()
                assert f"'comparison': {want[0]}, 'score': {want[1]}, 'language': {want[2]}" in text, text
                assert "Error" not in text and "Traceback" not in text, text
            except (AssertionError, PlaywrightError, TimeoutError) as exc:
                page.screenshot(path=str(shot), full_page=True)
                print(f"\nbrowser test failed; screenshot: {shot}\nJupyterLab log: {tmp_path / 'jupyterlab.log'}")
                raise AssertionError(f"{exc}\n(screenshot: {shot})") from exc
            finally:
                browser.close()
    finally:
        _stop(proc)

    # ... and the answers file holds exactly what was clicked and typed, in order
    from rlhf_tutorial.widgets import load_answers

    records = load_answers(tmp_path / "my_labels.jsonl")
    assert [(r["kind"], r.get("answer")) for r in records] == [
        ("comparison", "left"), ("comparison", "equal"), ("score", None), ("language", None)]
    assert records[0]["label"] == 1.0 and records[1]["label"] == 0.5
    assert records[2]["score"] == pytest.approx(SCORE) and records[3]["comment"] == COMMENT
