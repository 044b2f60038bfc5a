"""Build reveal.js slides from the solution notebooks into build/slides/ (git-ignored).

    python scripts/build_slides.py                       # every notebook in notebooks/
    python scripts/build_slides.py notebooks/05_*.ipynb  # some of them
    python scripts/build_slides.py --out /tmp/slides     # elsewhere

This is ``jupyter nbconvert --to slides`` (nbconvert's SlidesExporter, reveal.js) run on a copy of
each notebook whose cells get slide types chosen here, so the notebooks need no slide metadata of
their own (a cell that already has ``metadata.slideshow.slide_type`` keeps it):

- a markdown title or section heading (``#``, ``##``) starts a new **slide**; a ``###`` heading, a
  markdown cell with a displayed equation (``$$``, a derivation) and a code cell whose output is a
  figure start a **subslide** (down the column of their section);
- other markdown and short code cells (≤ 25 lines) appear as **fragments** of the current slide;
- the Colab set-up cell is **skipped**; long code cells go to the speaker **notes** (press ``s``).

Building needs no network: reveal.js is loaded from a CDN when the slides are *viewed*
(``--reveal-prefix`` changes where from, e.g. a local copy for an offline classroom). Open
``build/slides/NN_name.slides.html`` in a browser; with ``jupyter nbconvert --to slides --post serve``
nbconvert serves one itself.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "slides"
LONG_CODE = 25


def slide_type(cell, index: int) -> str:
    """The reveal.js slide type this script gives a cell (unless the cell already has one)."""
    src = cell.source.strip()
    if cell.cell_type == "markdown":
        if re.match(r"#{1,2}\s", src):
            return "slide"
        if re.match(r"###\s", src) or "$$" in src:
            return "subslide"
        return "fragment"
    if cell.cell_type != "code" or not src:
        return "skip"
    if "%pip install" in src or (index <= 2 and "import rlhf_tutorial" in src and "pip" in src):
        return "skip"
    if any("image/png" in out.get("data", {}) or "image/svg+xml" in out.get("data", {})
           for out in cell.get("outputs", [])):
        return "subslide"
    return "notes" if src.count("\n") + 1 > LONG_CODE else "fragment"


def with_slide_types(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` in which every cell has ``metadata.slideshow.slide_type``."""
    out = copy.deepcopy(nb)
    for k, cell in enumerate(out.cells):
        show = cell.metadata.setdefault("slideshow", {})
        show.setdefault("slide_type", slide_type(cell, k))
    if out.cells:
        out.cells[0].metadata["slideshow"]["slide_type"] = "slide"
    return out


def build(path: Path, out_dir: Path, reveal_prefix: str | None = None) -> Path:
    """Write ``out_dir/<name>.slides.html`` for notebook ``path``; return its path."""
    from nbconvert import SlidesExporter

    nb = with_slide_types(nbformat.read(path, as_version=4))
    exporter = SlidesExporter()
    if reveal_prefix:
        exporter.reveal_url_prefix = reveal_prefix
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{path.stem}.slides.html"
    target.write_text(body, encoding="utf-8")
    return target


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    ap.add_argument("--out", type=Path, default=OUT, help="output folder (default: build/slides)")
    ap.add_argument("--reveal-prefix", default=None, help="where reveal.js is loaded from when viewing")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    for p in paths:
        target = build(p, args.out, args.reveal_prefix)
        n = target.read_text(encoding="utf-8").count("<section")
        print(f"wrote {target.relative_to(ROOT) if target.is_relative_to(ROOT) else target} ({n} sections)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
