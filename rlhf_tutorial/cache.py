"""Cached checkpoints that cannot be silently wrong: a SHA-256 manifest, written last (notebooks 07-10).

The helpers that train a model once and cache it (``text.load_or_train_base`` / ``_sft``,
``text_reward.load_or_train_reward_model``) write the checkpoint into a temporary folder, then
:func:`write_manifest` (the SHA-256 of every file) as the *last* file, then rename the folder into
place. Before loading, :func:`verify_checkpoint` checks that every file is there with its hash,
that the weights load, and that they hold no NaN or inf.

**The choice (documented in docs/DESIGN.md):** a bad cache is an *error*, never a silent retrain.
:class:`CheckpointError` (a ``ValueError``) names the folder and says "delete it to retrain";
nothing is deleted for you (a disk that corrupts files should be noticed, and retraining takes
minutes). A folder cached by an older version of the package without a manifest is checked
(weights load, finite) and then given one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None

__all__ = ["MANIFEST", "CheckpointError", "sha256_file", "write_manifest", "verify_checkpoint", "build_lock"]

MANIFEST = "manifest.json"


class CheckpointError(ValueError):
    """A cached checkpoint is incomplete, corrupt, truncated or holds non-finite weights (notebook 07's cache)."""


def sha256_file(path) -> str:
    """The SHA-256 hex digest of a file, read in 1 MiB chunks (notebook 07's checkpoint cache)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder) -> Path:
    """Write ``manifest.json`` (``{"files": {relative path: sha256}}``) into ``folder``, atomically; call it last (notebook 07)."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in _files(folder)}
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".manifest.tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({"format": "rlhf_tutorial.checkpoint", "version": 1, "files": files}, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, folder / MANIFEST)
    return folder / MANIFEST


@contextlib.contextmanager
def build_lock(path):
    """Hold an exclusive lock on ``<path>.lock`` while the checkpoint ``path`` is built (notebook 07's cache).

    Two processes that need the same missing checkpoint (two notebooks open at once, or the test
    command running notebooks in parallel) would otherwise both train it; with the lock the second
    waits, then finds the folder and loads it. Re-check that ``path`` is missing *inside* the lock.
    Locks are always taken outer to inner (reward model → preferences → SFT → base → tokenizer), so
    they cannot deadlock. Where ``fcntl`` is missing (Windows) there is no lock: the atomic rename
    still keeps the cache consistent, a second process just trains a copy that it throws away.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if fcntl is None:  # pragma: no cover - Windows
        yield
        return
    with open(path.parent / (path.name + ".lock"), "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _fail(folder: Path, why: str):
    raise CheckpointError(f"cached checkpoint {str(folder)!r} {why}; delete it to retrain")


def _check_weights(folder: Path) -> None:
    from safetensors import safe_open

    weights = sorted(folder.glob("*.safetensors"))
    for w in weights:
        try:
            with safe_open(str(w), framework="pt") as f:
                for k in f.keys():
                    t = f.get_tensor(k)
                    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                        _fail(folder, f"holds NaN or inf in tensor {k!r} of {w.name}")
        except CheckpointError:
            raise
        except Exception as e:  # safetensors raises its own error types for a damaged header or data
            _fail(folder, f"has an unreadable weights file {w.name} (corrupt or truncated: {type(e).__name__}: {e})")


def verify_checkpoint(folder, check_weights: bool = True) -> Path:
    """Check a cached checkpoint folder against its manifest; raise :class:`CheckpointError` if anything is off (notebook 07).

    Checks: the folder exists, every file of the manifest is present with the same SHA-256, and
    (``check_weights``) every ``*.safetensors`` loads and is finite. Returns the folder.
    A folder without a manifest (cached by an older version) is checked and then given one.
    """
    folder = Path(folder)
    if not folder.is_dir():
        _fail(folder, "does not exist")
    mpath = folder / MANIFEST
    if not mpath.is_file():
        if not _files(folder):
            _fail(folder, "is empty")
        if check_weights:
            _check_weights(folder)
        write_manifest(folder)
        return folder
    try:
        files = json.loads(mpath.read_text())["files"]
        if not isinstance(files, dict):
            raise TypeError("files is not a dict")
    except (OSError, ValueError, KeyError, TypeError) as e:
        _fail(folder, f"has an unreadable {MANIFEST} ({type(e).__name__}: {e})")
    for rel, digest in files.items():
        p = folder / rel
        if not p.is_file():
            _fail(folder, f"is missing {rel}")
        if sha256_file(p) != digest:
            _fail(folder, f"has a changed or damaged file {rel} (SHA-256 differs from {MANIFEST})")
    if check_weights:
        _check_weights(folder)
    return folder
