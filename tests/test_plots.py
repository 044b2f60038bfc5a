"""plots.draw_grid_policy (notebook 01): one arrow per free cell, in the direction of its action."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from rlhf_tutorial import plots  # noqa: E402

MOVES = {0: (-1, 0), 1: (0, 1), 2: (1, 0), 3: (0, -1)}   # up, right, down, left


def test_draw_grid_policy_draws_an_arrow_per_free_cell_pointing_along_its_move():
    fig, ax = plt.subplots()
    policy = np.array([1, 1, 2, 0, 3, 2])   # a 2 x 3 grid
    plots.draw_grid_policy(ax, policy, (2, 3), MOVES, values=np.arange(6.0), blocked={4}, terminal={5},
                           labels={0: "S", 5: "G"}, path=[0, 1, 2, 5], title="t")
    arrows = [p for p in ax.patches if type(p).__name__ == "FancyArrow"]
    assert len(arrows) == 4                       # 6 cells, one blocked, one terminal
    # the arrow of state 0 (row 0, col 0, action "right") starts left of the centre and points right
    xy = arrows[0].get_xy()
    assert xy[:, 0].max() > 0.2 and abs(xy[:, 1]).max() < 0.2
    assert [t.get_text() for t in ax.texts] == ["S", "G"] and ax.get_title() == "t"
    assert len(ax.lines) == 1 and list(ax.lines[0].get_xdata()) == [0, 1, 2, 2]
    plt.close(fig)


@pytest.mark.parametrize("kwargs, match", [
    (dict(policy=np.zeros(5, int)), r"shape \(6,\)"),
    (dict(policy=np.full(6, 7)), r"action\(s\) \[7\]"),
    (dict(values=np.zeros(4)), "one number per state"),
    (dict(shape=(0, 3)), "shape"),
])
def test_draw_grid_policy_rejects_bad_input(kwargs, match):
    fig, ax = plt.subplots()
    args = dict(policy=np.zeros(6, int), shape=(2, 3), moves=MOVES) | kwargs
    with pytest.raises(ValueError, match=match):
        plots.draw_grid_policy(ax, **args)
    plt.close(fig)
