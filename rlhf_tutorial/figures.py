"""Concept figures drawn by code: the RLHF pipeline, the online preference loop, a token timeline, actors and learners.

Each function returns a :class:`matplotlib.figure.Figure` (not registered with pyplot, so a notebook
cell that ends with the call shows it once). PNG copies live in ``docs/img/``; regenerate them with::

    python -m rlhf_tutorial.figures docs/img
"""

from __future__ import annotations

import sys
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

BLUE, GREEN, ORANGE, GREY, RED, PURPLE = "#4C72B0", "#55A868", "#DD8452", "#8C8C8C", "#C44E52", "#8172B3"


def _box(ax, x, y, w, h, text, color, fontsize=9, alpha=0.18):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor=color, alpha=alpha, lw=1.5))
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor="none", edgecolor=color, lw=1.5))
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize, wrap=True)


def _arrow(ax, start, end, text="", color="black", rad=0.0, fontsize=8, offset=(0.0, 0.08)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=14, color=color, lw=1.4,
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, text, ha="center", va="bottom", fontsize=fontsize, color=color)


def _inline_png() -> None:
    """In IPython/Jupyter, make a returned Figure display as a PNG even if pyplot was never imported."""
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import select_figure_formats
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        select_figure_formats(shell, {"png"}, bbox_inches="tight")


def _canvas(width, height, xlim, ylim):
    _inline_png()
    fig = Figure(figsize=(width, height), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.axis("off")
    return fig, ax


def rlhf_pipeline() -> Figure:
    r"""The RLHF pipeline of InstructGPT in three stages (notebook 00, section 3).

    Stage 1 fine-tunes a pretrained language model on demonstrations (SFT); stage 2 learns a reward
    model :math:`\hat r_\theta` from people's scores, comparisons and comments; stage 3 optimises the
    policy :math:`\pi_\phi` with PPO on :math:`\hat r_\theta` minus a KL penalty to the SFT model.
    The course's notebooks that teach each piece are named under the boxes.
    """
    fig, ax = _canvas(10, 3.6, (0, 10), (0, 3.6))
    ax.text(5, 3.35, "RLHF in three stages (InstructGPT)", ha="center", fontsize=12, weight="bold")
    _box(ax, 0.2, 1.35, 2.6, 1.2, "1. Supervised fine-tuning\npretrained LM + demonstrations\n→ π_SFT", BLUE)
    _box(ax, 3.7, 1.35, 2.6, 1.2, "2. Reward model\nscores, comparisons, comments\n→ $\\hat{r}_\\theta$(x, y)", ORANGE)
    _box(ax, 7.2, 1.35, 2.6, 1.2, "3. Reinforcement learning\nPPO on $\\hat{r}_\\theta$ − β·KL(π_φ ‖ π_SFT)\n→ π_φ", GREEN)
    _arrow(ax, (2.85, 1.95), (3.65, 1.95), "samples\nto label")
    _arrow(ax, (6.35, 1.95), (7.15, 1.95), "reward")
    _arrow(ax, (1.5, 1.3), (8.5, 1.3), "π_SFT starts the policy and is the KL reference", GREY, rad=0.25,
           offset=(0, -0.75))
    for x, text in ((1.5, "notebook 07"), (5.0, "notebooks 04, 05, 08"), (8.5, "notebooks 06, 09, 10")):
        ax.text(x, 0.2, text, ha="center", fontsize=8, color=GREY, style="italic")
    for x, who in ((1.5, "people write answers"), (5.0, "people judge answers")):
        ax.text(x, 2.75, who, ha="center", fontsize=8, color=PURPLE)
    return fig


def preference_loop() -> Figure:
    r"""The online preference loop of Christiano et al. (2017) as notebook 06 writes it (notebook 06, section 4).

    Six steps around a circle: collect trajectories with :math:`\pi_\phi`, cut them into segments,
    pick the pairs on which the reward ensemble disagrees most, have a (synthetic) human label them,
    refit the ensemble :math:`\hat r_\theta`, and improve :math:`\pi_\phi` with PPO on
    :math:`\hat r_\theta`; then collect again with the improved policy.
    """
    import math

    fig, ax = _canvas(7.5, 6.2, (-4.2, 4.2), (-3.5, 3.7))
    ax.text(0, 3.35, "The online preference loop (Christiano et al. 2017)", ha="center", fontsize=12, weight="bold")
    steps = [("1. collect\ntrajectories with π_φ", GREEN), ("2. cut into\nsegments τ", GREY),
             ("3. query the pairs the\nensemble disagrees on", ORANGE), ("4. a human labels\nτ1 ≻ τ2, =, ≺", PURPLE),
             ("5. refit the ensemble\n$\\hat{r}_\\theta$ (Bradley–Terry)", ORANGE), ("6. improve π_φ with\nPPO on $\\hat{r}_\\theta$", GREEN)]
    r, w, h = 2.45, 2.2, 0.9
    centers = []
    for k, (text, color) in enumerate(steps):
        ang = math.pi / 2 - 2 * math.pi * k / len(steps)
        cx, cy = r * math.cos(ang), r * math.sin(ang) - 0.1
        centers.append((cx, cy))
        _box(ax, cx - w / 2, cy - h / 2, w, h, text, color, fontsize=8.5)
    for k in range(len(steps)):
        (x0, y0), (x1, y1) = centers[k], centers[(k + 1) % len(steps)]
        f0, f1 = 0.36, 0.64
        _arrow(ax, (x0 + f0 * (x1 - x0), y0 + f0 * (y1 - y0)), (x0 + f1 * (x1 - x0), y0 + f1 * (y1 - y0)), rad=-0.15)
    ax.text(0, -0.05, "labels go where\n$\\hat{r}_\\theta$ is uncertain\nand where π_φ goes", ha="center", va="center", fontsize=9,
            color=GREY, style="italic")
    return fig


def token_timeline() -> Figure:
    r"""One response on a token timeline: padding, prompt, response, EOS, masks, and where reward and KL land (notebook 09).

    The prompt is left-padded (so every row's response starts in the same column) and the response is
    right-padded after its EOS. The attention mask is 1 on prompt and response tokens; the response
    mask is 1 on the response up to and including EOS. Every response token gets the KL penalty
    :math:`-\beta k_t`, :math:`k_t = \log\pi_\phi(y_t|\cdot) - \log\pi_{ref}(y_t|\cdot)`; the reward
    model's score :math:`\hat r_\theta(x, y)` is added at the last real token only; padding gets nothing.
    """
    tokens = ["pad", "pad", "Review", ":", "the", "film", "great", "fun", "!", "EOS", "pad", "pad"]
    kinds = ["pad", "pad", "prompt", "prompt", "prompt", "prompt", "resp", "resp", "resp", "eos", "pad", "pad"]
    colors = {"pad": "#DDDDDD", "prompt": BLUE, "resp": GREEN, "eos": RED}
    n = len(tokens)
    fig, ax = _canvas(11.5, 4.6, (-3.3, n + 0.2), (-3.9, 1.9))
    ax.text(n / 2 - 1, 1.55, "One sample on the token timeline", ha="center", fontsize=12, weight="bold")
    attn = [0 if k == "pad" else 1 for k in kinds]
    resp = [1 if k in ("resp", "eos") else 0 for k in kinds]
    for t, (tok, kind) in enumerate(zip(tokens, kinds)):
        ax.add_patch(FancyBboxPatch((t + 0.05, 0.25), 0.9, 0.8, boxstyle="round,pad=0.01,rounding_size=0.08",
                                    facecolor=colors[kind], alpha=0.35 if kind != "pad" else 1.0, edgecolor="none"))
        ax.text(t + 0.5, 0.65, tok, ha="center", va="center", fontsize=9)
        ax.text(t + 0.5, -0.25, str(attn[t]), ha="center", va="center", fontsize=9)
        ax.text(t + 0.5, -0.85, str(resp[t]), ha="center", va="center", fontsize=9, color=GREEN if resp[t] else GREY)
        if resp[t]:
            ax.text(t + 0.5, -1.55, "−β·k_t", ha="center", va="center", fontsize=9, color=PURPLE)
            score = kind == "eos"
            ax.text(t + 0.5, -2.25, "+ $\\hat{r}_\\theta$(x, y)" if score else "0", ha="center", va="center", fontsize=9,
                    color=ORANGE if score else GREY, weight="bold" if score else "normal")
        else:
            for y in (-1.55, -2.25):
                ax.text(t + 0.5, y, "·", ha="center", va="center", fontsize=9, color=GREY)
    for y, label in ((0.65, "tokens"), (-0.25, "attention_mask"), (-0.85, "response_mask"),
                     (-1.55, "KL penalty"), (-2.25, "score")):
        ax.text(-0.15, y, label, ha="right", va="center", fontsize=9)
    ax.text(-0.15, -2.95, "reward r_t = KL penalty + score", ha="right", va="center", fontsize=9, weight="bold")
    ax.text(8.5, -2.95, "Σ_t r_t = $\\hat{r}_\\theta$(x, y) − β·Σ_t k_t", ha="center", va="center", fontsize=9, weight="bold")
    for x0, x1, text, color in ((0, 2, "left padding", GREY), (2, 6, "prompt x (P columns)", BLUE),
                                (6, 10, "response y (up to EOS)", GREEN), (10, 12, "right padding", GREY)):
        ax.annotate("", xy=(x0 + 0.05, 1.2), xytext=(x1 - 0.05, 1.2),
                    arrowprops=dict(arrowstyle="<->", color=color, lw=1.2))
        ax.text((x0 + x1) / 2, 1.27, text, ha="center", va="bottom", fontsize=8, color=color)
    ax.text(n / 2 - 1, -3.6, "position ids count real tokens only (the first prompt token is position 0); "
            "the value head and GAE run over the response columns, 0 after EOS", ha="center", fontsize=8,
            color=GREY, style="italic")
    return fig


def actors_and_learners() -> Figure:
    r"""Actors and learners at scale: how large RLHF systems split generation from training (notebook 10, section 7).

    Several actors (generation servers holding a copy of :math:`\pi_\phi`) sample responses to
    prompts; a reward model scores them; a learner (the PPO/GRPO update on many GPUs) trains on the
    scored rollouts and sends new weights back to the actors, as A3C's asynchronous actors did. The
    frozen reference model gives the KL term.
    """
    fig, ax = _canvas(10, 4.8, (0, 10), (0, 4.8))
    ax.text(5, 4.5, "Actors and learners: RLHF at scale", ha="center", fontsize=12, weight="bold")
    _box(ax, 0.2, 1.9, 1.5, 1.0, "prompts\n(a data set)", GREY)
    for k, y in enumerate((3.2, 2.05, 0.9)):
        _box(ax, 2.4, y, 2.0, 0.8, f"actor {k + 1}: generate\nwith a copy of π_φ", GREEN, fontsize=8.5)
        _arrow(ax, (1.75, 2.4), (2.35, y + 0.4))
        _arrow(ax, (4.45, y + 0.4), (5.15, 2.4))
    _box(ax, 5.2, 1.7, 1.7, 1.4, "score: $\\hat{r}_\\theta$(x, y)\nKL: log π_ref\n(frozen models)", ORANGE, fontsize=8.5)
    _box(ax, 7.6, 1.7, 2.2, 1.4, "learner: PPO / GRPO\nupdate of φ\n(many GPUs, data parallel)", BLUE, fontsize=8.5)
    _arrow(ax, (6.95, 2.4), (7.55, 2.4), "rollouts")
    _arrow(ax, (8.7, 3.15), (3.4, 4.05), "new weights φ (sync every step or asynchronously)", PURPLE, rad=0.12,
           offset=(0.6, 0.3))
    ax.text(5, 0.25, "generation is most of the time, so it gets its own servers (vLLM-style); the learner "
            "only trains", ha="center", fontsize=8, color=GREY, style="italic")
    return fig


FIGURES = {"rlhf_pipeline": rlhf_pipeline, "preference_loop": preference_loop, "token_timeline": token_timeline,
           "actors_and_learners": actors_and_learners}


def save_all(folder: str | Path = "docs/img") -> list[Path]:
    """Write every concept figure as ``folder/<name>.png`` (the copies in ``docs/img/``; notebooks 00, 06, 09, 10)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, make in FIGURES.items():
        path = folder / f"{name}.png"
        make().savefig(path, dpi=110, metadata={"Software": None})
        paths.append(path)
    return paths


if __name__ == "__main__":
    for p in save_all(sys.argv[1] if len(sys.argv) > 1 else "docs/img"):
        print(f"wrote {p}")
