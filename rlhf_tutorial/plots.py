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

__all__ = ["smooth", "plot_learning_curve", "record_episode", "filmstrip", "animate_frames", "save_gif"]


def smooth(values: Sequence[float], window: int = 10) -> np.ndarray:
    """Trailing moving average (the first points average over what exists so far) (notebook 02)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
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


def record_episode(act: Callable[[np.ndarray], np.ndarray], env_id: str, seed: int = 0,
                   max_steps: int = 500, every: int = 1, env_kwargs: dict | None = None):
    """Run one episode with ``render_mode="rgb_array"``; return ``(frames, total_reward)``.

    ``act`` takes a batch of observations (shape ``(1, obs_dim)``) like the policies' ``act``
    methods; every ``every``-th frame is kept to keep notebooks small.
    """
    import gymnasium as gym

    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
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

    if len(frames) == 0:
        raise ValueError("frames is empty")
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

    if len(frames) == 0:
        raise ValueError("frames is empty")
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

    if len(frames) == 0:
        raise ValueError("frames is empty")
    imgs = [Image.fromarray(np.asarray(f)) for f in frames]
    if scale != 1:
        w, h = imgs[0].size
        imgs = [im.resize((max(1, int(w * scale)), max(1, int(h * scale)))) for im in imgs]
    imgs[0].save(path, save_all=True, append_images=imgs[1:], duration=int(1000 / fps), loop=0)
