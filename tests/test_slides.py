"""The slides build: every solution notebook becomes a reveal.js deck (scripts/build_slides.py)."""

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import build_slides  # noqa: E402

pytest.importorskip("nbconvert")
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_slides_build(path, tmp_path):
    target = build_slides.build(path, tmp_path)
    html = target.read_text(encoding="utf-8")
    assert "reveal.js" in html and "Reveal.initialize" in html
    nb = nbformat.read(path, as_version=4)
    sections = sum(c.cell_type == "markdown" and c.source.lstrip().startswith(("# ", "## ")) for c in nb.cells)
    assert html.count("<section") >= sections >= 5, f"{path.name}: {html.count('<section')} sections"


def test_slide_types():
    md = nbformat.v4.new_markdown_cell
    code = nbformat.v4.new_code_cell
    assert build_slides.slide_type(md("## 2. GAE"), 5) == "slide"
    assert build_slides.slide_type(md("Some text with $$x^2$$"), 5) == "subslide"
    assert build_slides.slide_type(md("plain text"), 5) == "fragment"
    assert build_slides.slide_type(code("%pip install -q rlhf_tutorial\nimport rlhf_tutorial"), 1) == "skip"
    assert build_slides.slide_type(code("\n".join(["x = 1"] * 40)), 9) == "notes"
    fig = code("plt.plot(x)")
    fig.outputs = [nbformat.v4.new_output("display_data", data={"image/png": "iVBOR"})]
    assert build_slides.slide_type(fig, 9) == "subslide"
    nb = nbformat.v4.new_notebook(cells=[md("intro"), md("## A"), code("x = 1")])
    nb.cells[2].metadata["slideshow"] = {"slide_type": "skip"}  # kept
    out = build_slides.with_slide_types(nb)
    assert [c.metadata["slideshow"]["slide_type"] for c in out.cells] == ["slide", "slide", "skip"]
    assert "slideshow" not in nb.cells[0].metadata  # the notebook itself is not changed
