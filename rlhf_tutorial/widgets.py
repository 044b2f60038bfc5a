"""The labeling widget: the learner becomes the human of RLHF (notebook 04).

:class:`LabelingWidget` shows two segments τ1 (left) and τ2 (right) of the task side by side, as
a looping animation and a filmstrip, and asks for the seed's three kinds of feedback (§2.2,
§3.2.1):

- **comparison**: the buttons "left better" (y = 1), "right better" (y = 0), "equal" (y = 0.5,
  our extension) and "skip" (no label; the pair is not shown again);
- **score**: a slider y ∈ [0, 1] and "submit score", for the segment chosen with the
  "left / right" toggle;
- **language**: a text box and "submit comment", for the same segment.

Every answer lands in the *same* containers the synthetic humans of :mod:`rlhf_tutorial.feedback`
fill (:attr:`~LabelingWidget.comparisons`, :attr:`~LabelingWidget.scores`,
:attr:`~LabelingWidget.comments`), so notebook 05 trains a reward model on the learner's own
labels exactly as on the synthetic ones.

A person's labels are never lost (docs/DESIGN.md, principle 5): each answer is appended to
``answers_path`` as one JSON line the moment it is given, written with a single ``write`` of the
whole line followed by ``fsync``, and a new widget on the same file (after a kernel restart or a
crash) reloads every answer and resumes at the first pair not yet answered. The lines are
self-contained (they carry the segments' arrays), so :func:`load_answers` and
:func:`answers_to_datasets` rebuild the datasets without the widget or the segment pool. A line
that cannot be read raises :class:`AnswerFileError` (a ``ValueError``) naming the file and the
line number; nothing is skipped silently. A line cut short by a crash (a *torn* last line) is
repaired by one call, :func:`repair_answers`, which moves the unreadable text to a side file
``<answers>.jsonl.torn`` (nothing is lost) and keeps every whole answer. The header line is
created atomically (two widgets opening the same new file at once write one header), and a
duplicated header line (from an older version) is tolerated on load.

Rendering is a small cart-pole sketch drawn with Pillow from each observation's ``(x, θ)``
(:func:`render_cartpole_frames`): fast, headless, no simulator. The frames are
plain RGB arrays, so :func:`rlhf_tutorial.plots.filmstrip` and :func:`~rlhf_tutorial.plots.save_gif`
take them too.

Every control has a stable ``description`` and a CSS class (:data:`CSS_CLASSES`) so that a browser
test (Playwright against JupyterLab) can find it, e.g. ``page.locator(".rlhf-left-better")``.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from . import _validate as V
from . import envs
from .feedback import (
    ComparisonDataset,
    FeedbackDataset,
    LanguageDataset,
    ScoreDataset,
    Segment,
)
from .plots import to_uint8_frames

__all__ = [
    "CSS_CLASSES",
    "CHOICES",
    "ANSWER_FORMAT",
    "AnswerFileError",
    "render_cartpole_frame",
    "render_cartpole_frames",
    "filmstrip_image",
    "animation_gif",
    "make_pairs",
    "segment_id",
    "load_answers",
    "repair_answers",
    "answers_to_datasets",
    "LabelingWidget",
]

ANSWER_FORMAT = "rlhf_tutorial.labels"
ANSWER_VERSION = 1
CHOICES = ("left", "right", "equal", "skip")
"""The comparison buttons, in the order they are shown."""
COMPARISON_LABEL = {"left": 1.0, "right": 0.0, "equal": 0.5}
"""y of the seed's L_compare for each answer: 1 when τ1 (left) is better, 0 when τ2 (right) is."""
SIDES = ("left", "right")

CSS_CLASSES = {
    "widget": "rlhf-labeling-widget",
    "left_animation": "rlhf-left-animation",
    "right_animation": "rlhf-right-animation",
    "left_filmstrip": "rlhf-left-filmstrip",
    "right_filmstrip": "rlhf-right-filmstrip",
    "left": "rlhf-left-better",
    "right": "rlhf-right-better",
    "equal": "rlhf-equal",
    "skip": "rlhf-skip",
    "target": "rlhf-target",
    "score": "rlhf-score",
    "submit_score": "rlhf-submit-score",
    "comment": "rlhf-comment",
    "submit_comment": "rlhf-submit-comment",
    "counter": "rlhf-counter",
    "status": "rlhf-status",
}
"""The CSS class of every control of :class:`LabelingWidget` (a browser test finds them by it)."""

DESCRIPTIONS = {"left": "left better", "right": "right better", "equal": "equal", "skip": "skip",
                "submit_score": "submit score", "submit_comment": "submit comment",
                "score": "score", "comment": "comment", "target": "rate"}
"""The visible ``description`` of every control (stable: browser tests may find them by text)."""


class AnswerFileError(ValueError):
    """The answers file cannot be read: names the file and the line (a ``ValueError``) (notebook 04)."""


# --------------------------------------------------------------------------- rendering
_BG, _TRACK, _CART, _POLE, _AXLE = (255, 255, 255), (150, 150, 150), (40, 40, 40), (202, 152, 101), (129, 132, 203)


def _check_size(size) -> tuple[int, int]:
    if (not isinstance(size, (tuple, list)) or len(size) != 2
            or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
            or min(size) < 16):
        raise ValueError(f"size must be (width, height) in pixels, both ints >= 16, got {size!r}")
    return int(size[0]), int(size[1])


def render_cartpole_frame(x: float, theta: float, size: tuple[int, int] = (200, 110)) -> np.ndarray:
    """Draw one cart-pole state as an RGB array of shape ``(height, width, 3)`` (notebook 04).

    Only the cart position ``x`` (m, the track ends at ±2.4) and the pole angle ``theta`` (rad, 0
    upright, positive leaning right, ±π hanging down) are drawn: a grey track with its two
    bumpers and centre mark, a dark cart and the 1 m pole, at the task's scale.
    """
    from PIL import Image, ImageDraw

    w, h = _check_size(size)
    x, theta = float(x), float(theta)
    if not (math.isfinite(x) and math.isfinite(theta)):
        raise ValueError(f"x and theta must be finite, got x={x}, theta={theta}")
    scale = w / (2 * (envs.X_LIMIT + 0.3))  # pixels per metre
    img = Image.new("RGB", (w, h), _BG)
    d = ImageDraw.Draw(img)
    cy = h // 2
    d.line([(0, cy + 0.15 * scale), (w, cy + 0.15 * scale)], fill=_TRACK, width=1)
    for edge in (-envs.X_LIMIT, envs.X_LIMIT):
        ex = w / 2 + edge * scale
        d.line([(ex, cy - 0.2 * scale), (ex, cy + 0.15 * scale)], fill=_TRACK, width=3)
    d.line([(w / 2, cy + 0.15 * scale), (w / 2, cy + 0.3 * scale)], fill=_TRACK, width=1)
    cx = w / 2 + max(-envs.X_LIMIT, min(envs.X_LIMIT, x)) * scale
    cw, ch = 0.4 * scale, 0.24 * scale
    d.rectangle([cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2], fill=_CART)
    tip = (cx + scale * math.sin(theta), cy - scale * math.cos(theta))
    d.line([(cx, cy), tip], fill=_POLE, width=max(2, int(0.1 * scale)))
    r = max(1.5, 0.05 * scale)
    d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=_AXLE)
    return np.asarray(img)


def _check_cartpole_segment(segment) -> Segment:
    if not isinstance(segment, Segment):
        raise TypeError(f"segment must be a Segment, got {type(segment).__name__}")
    if segment.obs.shape[1] != 4:
        raise ValueError(f"the cart-pole sketch needs observations [x, x_dot, theta, theta_dot] "
                         f"(obs_dim 4), got obs_dim {segment.obs.shape[1]}; pass render= for other envs")
    return segment


def render_cartpole_frames(segment: Segment, every: int = 1, size: tuple[int, int] = (200, 110)) -> list[np.ndarray]:
    """Frames of a cart-pole segment, one per ``every`` steps, drawn from its ``(x, θ)`` (notebook 04).

    Fast and headless (Pillow, no simulator): the widget's default renderer. The list works with
    :func:`rlhf_tutorial.plots.filmstrip`, :func:`~rlhf_tutorial.plots.animate_frames` and
    :func:`~rlhf_tutorial.plots.save_gif`.
    """
    seg = _check_cartpole_segment(segment)
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"every must be a positive int, got {every!r}")
    return [render_cartpole_frame(x, th, size) for x, th in zip(seg.x[::every], seg.theta[::every])]


def _check_frames(frames) -> list[np.ndarray]:
    return to_uint8_frames(frames)  # float frames in [0, 1] are scaled to 0-255 (they used to come out black)


def filmstrip_image(frames, n: int = 5, gap: int = 3) -> bytes:
    """``n`` evenly spaced frames side by side as one PNG (the static view of a segment; notebook 04)."""
    from PIL import Image

    frames = _check_frames(frames)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive int, got {n!r}")
    idx = np.linspace(0, len(frames) - 1, min(int(n), len(frames))).round().astype(int)
    h, w = frames[0].shape[:2]
    strip = np.full((h, len(idx) * (w + gap) - gap, 3), 220, np.uint8)
    for k, i in enumerate(idx):
        strip[:, k * (w + gap):k * (w + gap) + w] = frames[i]
    buf = io.BytesIO()
    Image.fromarray(strip).save(buf, format="PNG")
    return buf.getvalue()


def animation_gif(frames, frame_ms: int = 40) -> bytes:
    """A looping animated GIF of ``frames`` (plays in the browser with no kernel round trip; notebook 04)."""
    from PIL import Image

    frames = _check_frames(frames)
    if isinstance(frame_ms, bool) or not isinstance(frame_ms, (int, np.integer)) or frame_ms < 10:
        raise ValueError(f"frame_ms must be an int >= 10 (milliseconds per frame), got {frame_ms!r}")
    imgs = [Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    imgs[0].save(buf, format="GIF", save_all=True, append_images=imgs[1:], duration=int(frame_ms), loop=0)
    return buf.getvalue()


# --------------------------------------------------------------------------- pairs
def make_pairs(segments: Sequence[Segment], n_pairs: int | None = None, seed: int = 0) -> list[tuple[Segment, Segment]]:
    """``n_pairs`` random pairs of distinct segments (default: as many pairs as segments; notebook 04).

    Drawn like :func:`rlhf_tutorial.feedback.make_comparison_dataset` (uniformly, blind to the true
    reward); every segment must have the same length and env, as a comparison requires.
    """
    if isinstance(segments, Segment) or not isinstance(segments, Sequence):
        raise TypeError(f"segments must be a list of Segment, got {type(segments).__name__}")
    for i, s in enumerate(segments):
        if not isinstance(s, Segment):
            raise TypeError(f"segments[{i}] must be a Segment, got {type(s).__name__}")
    if len(segments) < 2:
        raise ValueError(f"need at least 2 segments to make pairs, got {len(segments)}")
    for s in segments[1:]:
        V.segment_pair(segments[0], s, Segment)
    n = len(segments) if n_pairs is None else n_pairs
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n_pairs must be None or a positive int, got {n_pairs!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(f"seed must be an int >= 0, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    i = rng.integers(0, len(segments), int(n))
    j = (i + rng.integers(1, len(segments), int(n))) % len(segments)  # j != i
    return [(segments[a], segments[b]) for a, b in zip(i, j)]


def _as_pairs(segments_or_pairs) -> list[tuple[Segment, Segment]]:
    if isinstance(segments_or_pairs, ComparisonDataset):
        return list(zip(segments_or_pairs.segments_a, segments_or_pairs.segments_b))
    if isinstance(segments_or_pairs, (str, bytes, Segment)) or not isinstance(segments_or_pairs, Sequence):
        raise TypeError("segments_or_pairs must be a list of Segment, a list of (Segment, Segment) pairs or "
                        f"a ComparisonDataset, got {type(segments_or_pairs).__name__}")
    items = list(segments_or_pairs)
    if not items:
        raise ValueError("segments_or_pairs is empty: give at least one pair (or two segments) to label")
    if all(isinstance(s, Segment) for s in items):
        return make_pairs(items)
    pairs = []
    for k, p in enumerate(items):
        if not (isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(s, Segment) for s in p)):
            raise TypeError(f"segments_or_pairs[{k}] must be a pair (Segment, Segment), got {type(p).__name__}")
        V.segment_pair(p[0], p[1], Segment)
        pairs.append((p[0], p[1]))
    return pairs


# --------------------------------------------------------------------------- the answers file
def segment_id(segment: Segment) -> str:
    """A short fingerprint of a segment's arrays (SHA-256 of obs, actions, true rewards and env id) (notebook 04)."""
    if not isinstance(segment, Segment):
        raise TypeError(f"segment must be a Segment, got {type(segment).__name__}")
    h = hashlib.sha256()
    for a in (segment.obs.astype(np.float32), segment.actions.astype(np.int64), segment.true_rewards.astype(np.float32)):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(segment.env_id.encode())
    return h.hexdigest()[:16]


def _f32_list(a: np.ndarray):
    """float32 values as the shortest decimals that give the same float32 back (a compact file)."""
    flat = [float(str(v)) for v in np.asarray(a, np.float32).ravel()]
    if a.ndim == 2:
        c = a.shape[1]
        return [flat[k:k + c] for k in range(0, len(flat), c)]
    return flat


def _segment_to_json(seg: Segment) -> dict:
    return {"id": segment_id(seg), "obs": _f32_list(seg.obs), "actions": seg.actions.tolist(),
            "true_rewards": _f32_list(seg.true_rewards), "env_id": seg.env_id, "source": seg.source,
            "start": seg.start}


def _segment_from_json(d) -> Segment:
    if not isinstance(d, dict):
        raise ValueError(f"a segment must be a JSON object, got {type(d).__name__}")
    missing = {"id", "obs", "actions", "true_rewards", "env_id"} - set(d)
    if missing:
        raise ValueError(f"segment lacks {sorted(missing)}")
    seg = Segment(np.asarray(d["obs"], np.float32), np.asarray(d["actions"]), np.asarray(d["true_rewards"], np.float32),
                  env_id=d["env_id"], source=d.get("source", ""), start=d.get("start", 0))
    if segment_id(seg) != d["id"]:
        raise ValueError(f"segment arrays do not match their fingerprint {d['id']!r} (edited or damaged)")
    return seg


def _check_record(rec) -> dict:
    """Validate one answer record read back from the file; return it with Segments in place of JSON."""
    if not isinstance(rec, dict):
        raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
    kind = rec.get("kind")
    out = dict(rec)
    if kind == "comparison":
        if rec.get("answer") not in COMPARISON_LABEL:
            raise ValueError(f"answer must be one of {tuple(COMPARISON_LABEL)}, got {rec.get('answer')!r}")
        if rec.get("label") != COMPARISON_LABEL[rec["answer"]]:
            raise ValueError(f"label {rec.get('label')!r} does not match answer {rec['answer']!r}")
        out["segment_a"], out["segment_b"] = _segment_from_json(rec.get("segment_a")), _segment_from_json(rec.get("segment_b"))
        V.segment_pair(out["segment_a"], out["segment_b"], Segment)
        out["segment_a_id"], out["segment_b_id"] = rec["segment_a"]["id"], rec["segment_b"]["id"]
    elif kind == "skip":
        if not (isinstance(rec.get("segment_a_id"), str) and isinstance(rec.get("segment_b_id"), str)):
            raise ValueError("a skip needs segment_a_id and segment_b_id")
    elif kind == "score":
        y = rec.get("score")
        if isinstance(y, bool) or not isinstance(y, (int, float)) or not 0.0 <= y <= 1.0:
            raise ValueError(f"score must be a number in [0, 1], got {y!r}")
        out["segment"] = _segment_from_json(rec.get("segment"))
    elif kind == "language":
        c = rec.get("comment")
        if not isinstance(c, str) or not c.strip():
            raise ValueError(f"comment must be a non-empty string, got {c!r}")
        out["segment"] = _segment_from_json(rec.get("segment"))
    else:
        raise ValueError(f"unknown kind {kind!r}, expected one of 'comparison', 'skip', 'score', 'language'")
    return out


def load_answers(path, missing_ok: bool = False) -> list[dict]:
    """Read every answer of an answers file written by :class:`LabelingWidget` (notebooks 04-05).

    Returns one dict per answer, in the order given, with ``kind`` ("comparison", "skip",
    "score" or "language") and :class:`~rlhf_tutorial.feedback.Segment` objects in ``segment_a``
    / ``segment_b`` / ``segment``. A missing file raises ``FileNotFoundError`` naming it (or gives
    ``[]`` with ``missing_ok=True``). Blank lines and a repeated header line are allowed; any other
    line that is not a valid answer raises :class:`AnswerFileError` naming the file and the line
    number; :func:`repair_answers` moves such lines to a side file.
    """
    p = V.path("path", path)
    if not p.exists() and not missing_ok:
        raise FileNotFoundError(f"no answers file at {str(p)!r}: a LabelingWidget creates it when it starts "
                                "(pass missing_ok=True to get [] instead)")
    return _read_answers(p)[1]


def repair_answers(path) -> dict:
    """Make an answers file loadable again, losing nothing: unreadable lines go to a side file (notebook 04).

    The usual damage is a *torn* last line, cut short when the kernel or the machine died in the
    middle of a write. Every line that :func:`load_answers` cannot read is appended to
    ``<path>.torn`` (with its line number), the readable lines (header first) are written back
    atomically, and ``{"kept": n_answers, "moved": n_lines, "side_file": path or None}`` is returned.
    Close any widget that writes to the file first.
    """
    p = V.path("path", path, must_exist=True)
    good: list[bytes] = []
    bad: list[tuple[int, bytes]] = []
    header = None
    with open(p, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if _is_header(rec):
                    header = header or raw.rstrip(b"\n") + b"\n"
                    continue
                _check_record(rec)
                good.append(raw.rstrip(b"\n") + b"\n")
            except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError):
                bad.append((lineno, raw))
    side = p.with_name(p.name + ".torn")
    if not bad and header is not None:
        return {"kept": len(good), "moved": 0, "side_file": None}
    if bad:
        with open(side, "ab") as f:
            for lineno, raw in bad:
                f.write(f"# {p.name} line {lineno}, moved by repair_answers {_now()}\n".encode() + raw.rstrip(b"\n") + b"\n")
            f.flush()
            os.fsync(f.fileno())
    if header is None:
        header = (json.dumps(_header_record(), separators=(",", ":")) + "\n").encode()
    tmp = p.with_name(p.name + ".repair.tmp")
    with open(tmp, "wb") as f:
        f.write(header + b"".join(good))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return {"kept": len(good), "moved": len(bad), "side_file": side if bad else None}


def _is_header(rec) -> bool:
    return isinstance(rec, dict) and rec.get("format") == ANSWER_FORMAT and "kind" not in rec


def _header_record() -> dict:
    return {"format": ANSWER_FORMAT, "version": ANSWER_VERSION, "created": _now(),
            "writer": "rlhf_tutorial.widgets.LabelingWidget"}


def _create_with_header(path: Path) -> None:
    """Create ``path`` holding only the header line, atomically: of two widgets racing, exactly one header lands.

    The header is written to a temporary file, which is then hard-linked to ``path``; ``os.link``
    fails if ``path`` exists, so a widget that loses the race just uses the winner's file.
    """
    data = (json.dumps(_header_record(), separators=(",", ":")) + "\n").encode()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        pass
    except OSError:  # pragma: no cover - a filesystem without hard links: exclusive create instead
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
    finally:
        tmp.unlink(missing_ok=True)


def _read_answers(path: Path) -> tuple[bool, list[dict]]:
    """``(has_header, records)`` of an answers file; see :func:`load_answers`."""
    if not path.exists():
        return False, []
    if not path.is_file():
        raise AnswerFileError(f"{str(path)!r} is not a file (expected a JSON-lines answers file)")
    records: list[dict] = []
    header_seen = False
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                if header_seen and _is_header(rec):  # a repeated header (two writers raced): harmless
                    continue
                if not header_seen:
                    if not (isinstance(rec, dict) and rec.get("format") == ANSWER_FORMAT):
                        raise ValueError(f"the first line must be the header {{'format': {ANSWER_FORMAT!r}, ...}}: "
                                         "this is not an answers file of the labeling widget")
                    if rec.get("version") != ANSWER_VERSION:
                        raise ValueError(f"unsupported answers-file version {rec.get('version')!r} "
                                         f"(this package reads version {ANSWER_VERSION})")
                    header_seen = True
                    continue
                records.append(_check_record(rec))
            except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as e:
                raise AnswerFileError(f"{str(path)!r}, line {lineno}: corrupt answer ({type(e).__name__}: {e}); "
                                      "the other lines are intact: widgets.repair_answers(path) moves the bad "
                                      "line(s) to a side file") from e
    return header_seen, records


def _append_line(path: Path, record: dict) -> None:
    """Append one JSON line atomically: one ``os.write`` of the whole line, then ``fsync``.

    With ``O_APPEND`` the line lands after whatever is in the file, whole; if the file does not
    end with a newline (a line cut by a crash), a newline is written first so the new answer
    stays on a line of its own.
    """
    data = (json.dumps(record, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n").encode("utf-8")
    new = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        if size > 0:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    data = b"\n" + data
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)
    if new and hasattr(os, "O_DIRECTORY"):  # make the new file's directory entry durable too
        try:
            dfd = os.open(path.parent, os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:  # pragma: no cover - some filesystems refuse fsync on directories
            pass


def answers_to_datasets(records: Sequence[dict], meta: dict | None = None) -> dict[str, FeedbackDataset]:
    """Turn answers (from :func:`load_answers` or :attr:`LabelingWidget.records`) into datasets.

    Notebook 05 calls it on the learner's file. Returns ``{"comparison": ComparisonDataset,
    "score": ScoreDataset, "language": LanguageDataset}`` with only the kinds that have data; a
    comparison dataset needs at least one answer that is not "equal" (a dataset of ties only
    carries no preference). Skips are not labels and are left out.
    """
    if isinstance(records, dict) or not isinstance(records, Sequence):
        raise TypeError(f"records must be a list of answer dicts, got {type(records).__name__}")
    for i, r in enumerate(records):
        keys = {"comparison": ("segment_a", "segment_b"), "score": ("segment",), "language": ("segment",)}
        if not isinstance(r, dict) or not all(isinstance(r.get(k), Segment) for k in keys.get(r.get("kind"), ())):
            raise TypeError(f"records[{i}] is not an answer as load_answers returns it (a dict with Segment objects)")
    meta = {"labeler": "LabelingWidget (a person)", **(meta or {})}
    cmp = [r for r in records if r.get("kind") == "comparison"]
    sc = [r for r in records if r.get("kind") == "score"]
    lang = [r for r in records if r.get("kind") == "language"]
    out: dict[str, FeedbackDataset] = {}
    if any(r["label"] != 0.5 for r in cmp):
        out["comparison"] = ComparisonDataset([r["segment_a"] for r in cmp], [r["segment_b"] for r in cmp],
                                              [r["label"] for r in cmp], meta)
    if sc:
        out["score"] = ScoreDataset([r["segment"] for r in sc], [r["score"] for r in sc], meta)
    if lang:
        out["language"] = LanguageDataset([r["segment"] for r in lang], [r["comment"] for r in lang], meta)
    return out


# --------------------------------------------------------------------------- the widget
class LabelingWidget:
    """Label pairs of segments yourself: comparisons, scores and comments (notebook 04).

    ``segments_or_pairs`` is a list of ``(τ1, τ2)`` pairs, a list of segments (paired at random
    by :func:`make_pairs`) or a :class:`~rlhf_tutorial.feedback.ComparisonDataset` (to label the
    synthetic human's pairs and compare). ``answers_path`` is the JSON-lines file the answers go
    to (created if missing; reloaded if present: the widget resumes at the first pair without a
    comparison or skip). ``render(segment) -> list of RGB frames`` draws a segment (default: the
    cart-pole sketch of :func:`render_cartpole_frames`); ``every`` keeps one frame in ``every``
    for the animation, shown at ``frame_ms`` per frame (0.02 s of simulated time per step).

    Display it as the last expression of a cell. Programmatic use (and tests): :meth:`click`,
    :meth:`set_score`, :meth:`submit_comment`, :meth:`datasets`; the controls are attributes
    (``buttons``, ``target``, ``score_slider``, ``score_button``, ``comment_text``,
    ``comment_button``, ``counter``, ``status``) with the CSS classes of :data:`CSS_CLASSES`.
    Clicking a button in the page runs the same code as these methods; an error there (an empty
    comment, a full disk) is shown in the status line and nothing is recorded.
    """

    def __init__(self, segments_or_pairs, answers_path, render: Callable[[Segment], list] | None = None,
                 every: int = 2, frame_ms: int | None = None, filmstrip_frames: int = 5,
                 score_step: float = 0.05):
        self.pairs = _as_pairs(segments_or_pairs)
        self.path = V.path("answers_path", answers_path)
        if self.path.suffix not in (".jsonl", ".ndjson"):
            raise ValueError(f"answers_path must end in .jsonl (a JSON-lines file), got {str(self.path)!r}")
        if not self.path.parent.is_dir():
            raise ValueError(f"the folder of answers_path does not exist: {str(self.path.parent)!r}")
        V.callable_("render", render, allow_none=True)
        if render is None:
            for a, b in self.pairs:
                _check_cartpole_segment(a)
                _check_cartpole_segment(b)
        self.every = V.integer("every", every, low=1)
        self.filmstrip_frames = V.integer("filmstrip_frames", filmstrip_frames, low=1)
        self.frame_ms = (max(10, 20 * self.every) if frame_ms is None
                         else V.integer("frame_ms (milliseconds per frame)", frame_ms, low=10))
        score_step = V.number("score_step", score_step, 0, 1, low_open=True)
        self.render = render or (lambda seg: render_cartpole_frames(seg, every=1))
        self._media: dict[int, tuple] = {}

        # ---- reload what is already in the file (raises AnswerFileError on a corrupt line)
        if not self.path.exists():
            _create_with_header(self.path)
        has_header, self._records = _read_answers(self.path)
        if not has_header:  # an empty file (e.g. created by hand)
            _append_line(self.path, _header_record())
        self._ids = [(segment_id(a), segment_id(b)) for a, b in self.pairs]
        self.index = self._next_unanswered(0)
        self._build_controls(score_step)
        self._show()
        n = len(self._records)
        self.status.value = (f"reloaded {n} answers from {self.path.name}" if n else
                             f"answers are saved to {self.path.name} as you give them")

    # ---- controls
    def _build_controls(self, score_step: float) -> None:
        """The ipywidgets controls (attributes named in the class docstring), wired to the answer methods."""
        import ipywidgets as W

        def cls(widget, key):
            widget.add_class(CSS_CLASSES[key])
            return widget

        img_layout = {"border": "1px solid #ddd"}
        self.animations = {s: cls(W.Image(format="gif", layout=img_layout), f"{s}_animation") for s in SIDES}
        self.filmstrips = {s: cls(W.Image(format="png"), f"{s}_filmstrip") for s in SIDES}
        self.buttons = {}
        styles = {"left": "info", "right": "info", "equal": "", "skip": "warning"}
        tips = {"left": "τ1 (left) is better: y = 1", "right": "τ2 (right) is better: y = 0",
                "equal": "about the same: y = 0.5", "skip": "cannot tell: no label, show the next pair"}
        for c in CHOICES:
            b = cls(W.Button(description=DESCRIPTIONS[c], tooltip=tips[c], button_style=styles[c]), c)
            b.on_click(lambda _b, c=c: self._ui(self._compare, c))
            self.buttons[c] = b
        self.target = cls(W.ToggleButtons(options=list(SIDES), value="left", description=DESCRIPTIONS["target"],
                                          tooltips=["score / comment the left segment", "score / comment the right segment"]),
                          "target")
        self.score_slider = cls(W.FloatSlider(value=0.5, min=0.0, max=1.0, step=score_step,
                                              description=DESCRIPTIONS["score"], readout_format=".2f",
                                              continuous_update=False), "score")
        self.score_button = cls(W.Button(description=DESCRIPTIONS["submit_score"],
                                         tooltip="record the slider's score y ∈ [0, 1] for the chosen segment"),
                                "submit_score")
        self.score_button.on_click(lambda _b: self._ui(self._score, self.score_slider.value))
        self.comment_text = cls(W.Text(value="", placeholder="e.g. the pole fell halfway and the cart drifted right",
                                       description=DESCRIPTIONS["comment"], layout={"width": "420px"}), "comment")
        self.comment_button = cls(W.Button(description=DESCRIPTIONS["submit_comment"],
                                           tooltip="record the comment for the chosen segment"), "submit_comment")
        self.comment_button.on_click(lambda _b: self._ui(self._comment, self.comment_text.value))
        self.counter = cls(W.Label(value=""), "counter")
        self.status = cls(W.Label(value=""), "status")
        self.titles = {s: W.HTML() for s in SIDES}
        views = [W.VBox([self.titles[s], self.animations[s], self.filmstrips[s]], layout={"margin": "0 16px 0 0"})
                 for s in SIDES]
        self.ui = cls(W.VBox([
            W.HBox(views),
            W.HBox([self.buttons[c] for c in CHOICES]),
            W.HBox([self.target, self.score_slider, self.score_button]),
            W.HBox([self.comment_text, self.comment_button]),
            self.counter, self.status,
        ]), "widget")

    # ---- display
    def _repr_mimebundle_(self, **kwargs):
        return self.ui._repr_mimebundle_(**kwargs)

    # ---- state
    @property
    def records(self) -> list[dict]:
        """Every answer so far (reloaded ones first), as :func:`load_answers` returns them."""
        return list(self._records)

    @property
    def n_pairs(self) -> int:
        return len(self.pairs)

    @property
    def done(self) -> bool:
        """True when every pair has a comparison or a skip."""
        return self.index is None

    @property
    def current_pair(self) -> tuple[Segment, Segment] | None:
        """The pair ``(left, right)`` on screen, or ``None`` when all are answered."""
        return None if self.index is None else self.pairs[self.index]

    def _answered(self) -> set:
        return {(r["segment_a_id"], r["segment_b_id"]) for r in self._records if r["kind"] in ("comparison", "skip")}

    def _next_unanswered(self, start: int) -> int | None:
        answered = self._answered()
        for k in list(range(start, len(self.pairs))) + list(range(0, start)):
            if self._ids[k] not in answered:
                return k
        return None

    def _count(self, kind: str) -> int:
        return sum(r["kind"] == kind for r in self._records)

    # ---- datasets
    def datasets(self) -> dict[str, FeedbackDataset]:
        """The learner's labels as ``{"comparison": ..., "score": ..., "language": ...}`` (kinds with data only)."""
        return answers_to_datasets(self._records, {"answers_file": self.path.name})

    @property
    def comparisons(self) -> ComparisonDataset | None:
        """D_compare from the buttons (y = 1 left better, 0 right better, 0.5 equal); ``None`` until
        there is at least one answer that is not "equal"."""
        return self.datasets().get("comparison")

    @property
    def scores(self) -> ScoreDataset | None:
        """D_score from the slider; ``None`` until the first score."""
        return self.datasets().get("score")

    @property
    def comments(self) -> LanguageDataset | None:
        """D_language from the comment box; ``None`` until the first comment."""
        return self.datasets().get("language")

    # ---- programmatic use
    def click(self, choice: str) -> dict:
        """Answer the pair on screen as the button ``choice`` would: "left", "right", "equal" or "skip".

        Returns the record written to the file and moves on to the next unanswered pair.
        """
        return self._compare(choice)

    def set_score(self, score: float, side: str | None = None) -> dict:
        """Set the slider to ``score`` ∈ [0, 1] and submit it for ``side`` (default: the toggle's side)."""
        if side is not None:
            self.target.value = _check_side(side)
        y = _check_score(score)
        self.score_slider.value = y
        return self._score(y)

    def submit_comment(self, text: str, side: str | None = None) -> dict:
        """Type ``text`` in the comment box and submit it for ``side`` (default: the toggle's side)."""
        if side is not None:
            self.target.value = _check_side(side)
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        self.comment_text.value = text
        return self._comment(text)

    # ---- the answers
    def _require_pair(self) -> tuple[Segment, Segment]:
        if self.index is None:
            raise ValueError(f"all {len(self.pairs)} pairs are answered; make a new widget with more pairs "
                             f"(the answers in {self.path.name} are kept)")
        return self.pairs[self.index]

    def _save(self, record: dict) -> dict:
        _append_line(self.path, record)  # raises before anything is recorded in memory
        rec = _check_record(json.loads(json.dumps(record)))
        self._records.append(rec)
        return rec

    def _compare(self, choice: str) -> dict:
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
        a, b = self._require_pair()
        base = {"pair": self.index, "time": _now()}
        if choice == "skip":
            rec = self._save({"kind": "skip", "segment_a_id": segment_id(a), "segment_b_id": segment_id(b), **base})
        else:
            rec = self._save({"kind": "comparison", "answer": choice, "label": COMPARISON_LABEL[choice],
                              "segment_a": _segment_to_json(a), "segment_b": _segment_to_json(b), **base})
        done = self.index
        self.index = self._next_unanswered(self.index)
        self._show(f"saved: {DESCRIPTIONS[choice]} (pair {done + 1})")
        return rec

    def _score(self, score) -> dict:
        y = _check_score(score)
        a, b = self._require_pair()
        side = self.target.value
        rec = self._save({"kind": "score", "score": y, "side": side, "segment": _segment_to_json(a if side == "left" else b),
                          "pair": self.index, "time": _now()})
        self._show(f"saved: score {y:.2f} for the {side} segment (pair {self.index + 1})", media=False)
        return rec

    def _comment(self, text) -> dict:
        if not isinstance(text, str):
            raise TypeError(f"comment must be a string, got {type(text).__name__}")
        if not text.strip():
            raise ValueError("the comment is empty: type what you saw before submitting")
        a, b = self._require_pair()
        side = self.target.value
        rec = self._save({"kind": "language", "comment": text.strip(), "side": side,
                          "segment": _segment_to_json(a if side == "left" else b), "pair": self.index, "time": _now()})
        self.comment_text.value = ""
        self._show(f"saved: comment on the {side} segment (pair {self.index + 1})", media=False)
        return rec

    def _ui(self, fn, arg) -> None:
        """Run an answer from a button click; show errors in the status line instead of raising."""
        try:
            fn(arg)
        except (ValueError, TypeError, OSError) as e:
            self.status.value = f"not saved: {e}"

    # ---- view
    def _pair_media(self, k: int) -> tuple:
        if k not in self._media:
            if len(self._media) > 8:  # keep memory small: only recent pairs
                self._media.clear()
            out = []
            for seg in self.pairs[k]:
                frames = _check_frames(self.render(seg))
                out.append((animation_gif(frames[::self.every], self.frame_ms),
                            filmstrip_image(frames, self.filmstrip_frames)))
            self._media[k] = tuple(out)
        return self._media[k]

    def _show(self, message: str | None = None, media: bool = True) -> None:
        n_cmp, n_skip = self._count("comparison"), self._count("skip")
        counts = (f"{n_cmp} comparisons, {n_skip} skipped, {self._count('score')} scores, "
                  f"{self._count('language')} comments")
        if self.index is None:
            self.counter.value = f"all {len(self.pairs)} pairs answered · {counts}"
        else:
            self.counter.value = f"pair {self.index + 1} of {len(self.pairs)} · {counts}"
        if message is not None:
            self.status.value = message
        if media:
            if self.index is None:
                for s in SIDES:
                    self.titles[s].value = f"<b>{s}</b>: done"
                for b in (*self.buttons.values(), self.score_button, self.comment_button):
                    b.disabled = True
                return
            for s, (gif, strip), seg in zip(SIDES, self._pair_media(self.index), self.pairs[self.index]):
                self.animations[s].value, self.filmstrips[s].value = gif, strip
                name = "τ1" if s == "left" else "τ2"
                self.titles[s].value = f"<b>{s}</b> ({name}, {len(seg)} steps)"


def _check_side(side) -> str:
    if side not in SIDES:
        raise ValueError(f"side must be 'left' or 'right', got {side!r}")
    return side


def _check_score(score) -> float:
    if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)):
        raise TypeError(f"score must be a number in [0, 1], got {type(score).__name__} ({score!r})")
    y = float(score)
    if not (math.isfinite(y) and 0.0 <= y <= 1.0):
        raise ValueError(f"score must be in [0, 1] (the seed's y), got {score!r}")
    return y


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
