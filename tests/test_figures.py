"""Concept figures: each is drawn by code, names its notebook, and has its PNG copy in docs/img/."""

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from rlhf_tutorial import figures

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(figures.FIGURES))
def test_figure_draws_names_its_notebook_and_is_committed(name, tmp_path):
    make = figures.FIGURES[name]
    fig = make()
    assert isinstance(fig, Figure) and fig.axes
    assert "notebook" in make.__doc__.lower()
    assert (ROOT / "docs" / "img" / f"{name}.png").exists(), "run: python -m rlhf_tutorial.figures docs/img"


def test_save_all_writes_every_png(tmp_path):
    paths = figures.save_all(tmp_path)
    assert sorted(p.stem for p in paths) == sorted(figures.FIGURES)
    assert all(p.stat().st_size > 10_000 for p in paths)
