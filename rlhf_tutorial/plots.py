"""Plots and episode animations used across the notebooks.

Learning curves (notebooks 01-03), episode frames rendered headless with
``render_mode="rgb_array"``, a filmstrip that GitHub can show, and a JavaScript animation
(matplotlib's ``to_jshtml``; no ffmpeg needed) or a GIF written with Pillow.
"""

from __future__ import annotations

import hashlib
import re
from typing import Callable, Sequence

import numpy as np

from . import _validate as V

__all__ = ["smooth", "plot_learning_curve", "draw_grid_policy", "record_episode", "filmstrip", "animate_frames",
           "save_gif", "to_uint8_frames"]


def to_uint8_frames(frames, name: str = "frames") -> list[np.ndarray]:
    """RGB frames as a list of ``uint8`` arrays ``(height, width, 3)``, all of one shape (notebooks 02-04).

    ``uint8`` frames are kept; other integer frames must lie in [0, 255]; float frames follow
    matplotlib's convention, values in [0, 1] (scaled by 255 and rounded). NaN, inf, out-of-range
    values, an empty list or frames of different shapes raise ``ValueError``.
    """
    if isinstance(frames, np.ndarray) and frames.ndim == 4:
        frames = list(frames)
    if not isinstance(frames, (list, tuple)):
        raise TypeError(f"{name} must be a list of RGB arrays (height, width, 3), got {type(frames).__name__}")
    if len(frames) == 0:
        raise ValueError(f"{name} must be a non-empty list of RGB arrays (height, width, 3), got an empty list")
    out = []
    for i, f in enumerate(frames):
        a = np.asarray(f)
        if a.ndim != 3 or a.shape[2] != 3 or a.shape != np.shape(frames[0]):
            raise ValueError(f"{name} must all be RGB arrays of shape {np.shape(frames[0])} (height, width, 3), "
                             f"frame {i} has shape {a.shape}")
        if a.dtype == np.uint8:
            out.append(a)
            continue
        if a.dtype == bool or not np.issubdtype(a.dtype, np.number):
            raise TypeError(f"{name}[{i}] must hold numbers (uint8 0-255 or float 0-1), got dtype {a.dtype}")
        if np.issubdtype(a.dtype, np.floating):
            if not np.isfinite(a).all():
                raise ValueError(f"{name}[{i}] contains NaN or inf")
            if a.min() < 0 or a.max() > 1:
                raise ValueError(f"float {name} must be in [0, 1] (matplotlib's convention), frame {i} spans "
                                 f"[{a.min():g}, {a.max():g}]; pass uint8 for 0-255 values")
            a = np.rint(a * 255.0)
        elif a.min() < 0 or a.max() > 255:
            raise ValueError(f"integer {name} must be in [0, 255], frame {i} spans [{a.min()}, {a.max()}]")
        out.append(a.astype(np.uint8))
    return out


def smooth(values: Sequence[float], window: int = 10) -> np.ndarray:
    """Trailing moving average (the first points average over what exists so far) (notebook 02)."""
    V.integer("window", window, low=1)
    v = np.asarray(values, dtype=float)
    if v.ndim != 1:
        raise ValueError(f"values must be 1-D, got shape {v.shape}")
    if len(v) == 0:
        return v
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(0, idx - window)
    return (c[idx] - c[lo]) / (idx - lo)


def plot_learning_curve(x, y, ax=None, label=None, window: int = 1, target: float | None = None,
                        xlabel: str = "environment steps", ylabel: str = "return", raw_alpha: float = 0.25):
    """Plot ``y`` against ``x`` (raw, faint) and its moving average; a dashed line at ``target`` (notebook 01)."""
    import matplotlib.pyplot as plt

    x, y = np.asarray(x), np.asarray(y, dtype=float)
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same shape, got {x.shape} and {y.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    if window > 1:
        line = ax.plot(x, y, alpha=raw_alpha)[0]
        ax.plot(x, smooth(y, window), color=line.get_color(), label=label)
    else:
        ax.plot(x, y, label=label)
    if target is not None:
        ax.axhline(target, color="gray", ls="--", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if label:
        ax.legend()
    ax.grid(alpha=0.3)
    return ax


def draw_grid_policy(ax, policy, shape: tuple[int, int], moves: dict, values=None, blocked=(), terminal=(),
                     labels: dict | None = None, path=None, title: str = ""):
    """Arrows of a tabular policy on a grid world, optionally over its values (notebook 01).

    ``policy[s]`` is the action of state ``s = row · n_cols + col``; ``moves`` maps an action to
    its ``(d_row, d_col)``. ``blocked`` cells (cliff, holes) are dark and get no arrow, ``terminal``
    cells (the goal) are gold and get no arrow, ``labels`` maps states to a letter ("S", "G"),
    ``values`` (one per state) colour the cells, and ``path`` (a list of states) is drawn in red.
    """
    from matplotlib.patches import Rectangle

    n_rows, n_cols = (V.integer("shape[0]", shape[0], low=1), V.integer("shape[1]", shape[1], low=1))
    n = n_rows * n_cols
    policy = np.asarray(policy)
    if policy.shape != (n,):
        raise ValueError(f"policy must have one action per state, shape ({n},) for a {n_rows}x{n_cols} grid, "
                         f"got shape {policy.shape}")
    missing = sorted({int(a) for a in policy} - set(moves))
    if missing:
        raise ValueError(f"moves has no (d_row, d_col) for the action(s) {missing} of the policy")
    blocked, terminal = set(blocked), set(terminal)
    if values is not None:
        shown = np.array(values, dtype=float).reshape(-1)
        if shown.shape != (n,):
            raise ValueError(f"values must have one number per state ({n}), got {shown.size}")
        shown[list(blocked | terminal)] = np.nan     # not coloured by value
        ax.imshow(shown.reshape(n_rows, n_cols), cmap="viridis", alpha=0.6)
    for s in range(n):
        r, c = divmod(s, n_cols)
        if s in blocked or s in terminal:
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, color="0.25" if s in blocked else "gold",
                                   alpha=0.9 if s in blocked else 0.5))
        if s in blocked:
            continue
        if labels and s in labels:
            ax.text(c - 0.45, r - 0.45, labels[s], ha="left", va="top", fontsize=9, weight="bold")
        if s in terminal:
            continue
        dr, dc = moves[int(policy[s])]
        ax.arrow(c - 0.25 * dc, r - 0.25 * dr, 0.5 * dc, 0.5 * dr, head_width=0.18, length_includes_head=True,
                 color="k")
    if path is not None:
        rows, cols = np.divmod(np.asarray(path), n_cols)
        ax.plot(cols, rows, color="tab:red", lw=3, alpha=0.6)
    ax.set_xticks(np.arange(-0.5, n_cols), minor=True)
    ax.set_yticks(np.arange(-0.5, n_rows), minor=True)
    ax.grid(which="minor", color="w", lw=1)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_xlim(-0.5, n_cols - 0.5)
    ax.set_ylim(n_rows - 0.5, -0.5)
    ax.set_title(title, fontsize=10)
    return ax


def record_episode(act: Callable[[np.ndarray], np.ndarray], env_id: str, seed: int = 0,
                   max_steps: int = 500, every: int = 1, env_kwargs: dict | None = None):
    """Run one episode with ``render_mode="rgb_array"``; return ``(frames, total_reward)``.

    ``act`` takes a batch of observations (shape ``(1, obs_dim)``) like the policies' ``act``
    methods; every ``every``-th frame is kept to keep notebooks small.
    """
    import gymnasium as gym

    V.callable_("act", act)
    V.integer("every", every, low=1)
    V.integer("max_steps", max_steps, low=1)
    env = gym.make(env_id, render_mode="rgb_array", **(env_kwargs or {}))
    obs, _ = env.reset(seed=seed)
    frames, total = [env.render()], 0.0
    for t in range(max_steps):
        action = np.asarray(act(np.asarray(obs)[None]))[0]
        obs, reward, term, trunc, _ = env.step(action)
        total += float(reward)
        if (t + 1) % every == 0:
            frames.append(env.render())
        if term or trunc:
            break
    env.close()
    return frames, total


def filmstrip(frames, n: int = 6, title: str | None = None, crop: tuple | None = None):
    """Show ``n`` evenly spaced frames side by side (a static picture GitHub can display) (notebook 02)."""
    import matplotlib.pyplot as plt

    frames = to_uint8_frames(frames)
    V.integer("n", n, low=1)
    idx = np.linspace(0, len(frames) - 1, min(n, len(frames))).astype(int)
    fig, axes = plt.subplots(1, len(idx), figsize=(2.2 * len(idx), 1.8))
    for ax, i in zip(np.atleast_1d(axes), idx):
        f = frames[i] if crop is None else frames[i][crop[0]:crop[1]]
        ax.imshow(f)
        ax.set_title(f"frame {i}", fontsize=8)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def animate_frames(frames, fps: int = 30, scale: float = 0.5):
    """A JavaScript animation of ``frames`` (``IPython.display.HTML``) via ``to_jshtml``; no ffmpeg (notebook 03)."""
    import matplotlib.pyplot as plt
    from IPython.display import HTML
    from matplotlib import animation

    frames = to_uint8_frames(frames)
    V.positive("fps", fps)
    V.positive("scale", scale)
    h, w = frames[0].shape[:2]
    fig, ax = plt.subplots(figsize=(w / 100 * scale, h / 100 * scale), dpi=100)
    ax.axis("off")
    fig.subplots_adjust(0, 0, 1, 1)
    im = ax.imshow(frames[0])
    anim = animation.FuncAnimation(fig, lambda i: [im.set_data(frames[i])], frames=len(frames),
                                   interval=1000 / fps, blit=False)
    html = anim.to_jshtml(default_mode="loop")
    plt.close(fig)
    # matplotlib names the player with a random uuid; use a hash of the frames instead, so that
    # re-running a notebook leaves its committed output unchanged
    m = re.search(r"_anim_img([0-9a-f]{32})", html)
    if m:
        digest = hashlib.sha1(b"".join(np.ascontiguousarray(f).tobytes() for f in frames)).hexdigest()[:32]
        html = html.replace(m.group(1), digest)
    return HTML(html)


def save_gif(frames, path, fps: int = 30, scale: float = 0.5) -> None:
    """Write ``frames`` to an animated GIF with Pillow (notebook 03)."""
    from PIL import Image

    frames = to_uint8_frames(frames)
    V.positive("fps", fps)
    V.positive("scale", scale)
    imgs = [Image.fromarray(f) for f in frames]
    if scale != 1:
        w, h = imgs[0].size
        imgs = [im.resize((max(1, int(w * scale)), max(1, int(h * scale)))) for im in imgs]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
