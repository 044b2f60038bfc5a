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

**Recorded runs** (:func:`reuse_run`, opt-in through ``$RLHF_TUTORIAL_RUNS``): the Gymnasium
trainers (``train_reinforce``, ``train_ppo``, ``train_sac``) can save what a run returns (the
trained network, its history and the global random state after it) under
``<cache>/runs/<trainer>-<key>``, the key being a SHA-256 of the config, of every input that
shapes the run (a learned reward's weights included) and of the package's own source. ``record``
trains and saves; ``reuse`` loads a run with the same key instead of training it again (and trains
and saves it when there is none). The test command records the solution notebooks' runs and the
student notebooks (which make the very same calls) reuse them; unset (the default), nothing is
saved or read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no fcntl
    fcntl = None

__all__ = ["MANIFEST", "CheckpointError", "sha256_file", "write_manifest", "verify_checkpoint", "build_lock",
           "RUNS_ENV", "runs_mode", "fingerprint", "reuse_run"]

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


# ----------------------------------------------------------------------------------------------
# Recorded runs: a trainer's result saved under a key of everything that shapes it
# ----------------------------------------------------------------------------------------------
RUNS_ENV = "RLHF_TUTORIAL_RUNS"
_RUN_MODES = ("", "off", "record", "reuse")


def runs_mode() -> str:
    """``$RLHF_TUTORIAL_RUNS``: ``""`` (off, the default), ``"record"`` or ``"reuse"`` (:func:`reuse_run`; notebooks 02-06)."""
    mode = os.environ.get(RUNS_ENV, "").strip().lower()
    if mode not in _RUN_MODES:
        raise ValueError(f"${RUNS_ENV} must be one of 'off', 'record', 'reuse' (or unset), got {mode!r}")
    return "" if mode == "off" else mode


@functools.lru_cache(maxsize=1)
def _package_digest() -> str:
    """SHA-256 of the package's source: a change to any trainer invalidates every recorded run."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def _feed(h, obj, depth: int = 0) -> None:
    """Hash ``obj`` into ``h``; raise TypeError for what has no stable content (a function, a lambda)."""
    if depth > 12:
        raise TypeError("object nested too deeply to fingerprint")
    if obj is None or isinstance(obj, (bool, int, float, str)):
        h.update(repr((type(obj).__name__, obj)).encode())
    elif isinstance(obj, (list, tuple)):
        h.update(f"{type(obj).__name__}[{len(obj)}]".encode())
        for x in obj:
            _feed(h, x, depth + 1)
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}]".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, depth + 1)
            _feed(h, obj[k], depth + 1)
    elif isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().reshape(-1).contiguous()
        h.update(f"tensor{tuple(obj.shape)}{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    elif isinstance(obj, (np.ndarray, np.generic)):
        a = np.ascontiguousarray(obj)
        h.update(f"ndarray{a.shape}{a.dtype}".encode())
        h.update(a.tobytes())
    elif isinstance(obj, torch.nn.Module):
        h.update(f"module:{type(obj).__qualname__}:{obj.training}".encode())
        _feed(h, dict(obj.state_dict()), depth + 1)
        _feed(h, {k: v for k, v in vars(obj).items() if not k.startswith("_")}, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        h.update(f"dataclass:{type(obj).__qualname__}".encode())
        _feed(h, {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}, depth + 1)
    elif type(obj).__module__.startswith("rlhf_tutorial") and hasattr(obj, "__dict__"):
        # a package object (a reward ensemble, a normalizer): its class is in the package digest,
        # its state in its attributes
        h.update(f"object:{type(obj).__qualname__}".encode())
        _feed(h, vars(obj), depth + 1)
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def fingerprint(*parts) -> str | None:
    """SHA-256 of ``parts`` and of the package source, or None if a part has no stable content (a lambda; notebooks 02-06)."""
    h = hashlib.sha256(_package_digest().encode())
    try:
        _feed(h, parts)
    except TypeError:
        return None
    return h.hexdigest()


def _to_json(x):
    """A history as JSON values; tuples are tagged (a config's ``hidden=(64, 64)`` comes back a tuple)."""
    if isinstance(x, dict):
        return {k: _to_json(v) for k, v in x.items()}
    if isinstance(x, tuple):
        return {"__tuple__": [_to_json(v) for v in x]}
    if isinstance(x, list):
        return [_to_json(v) for v in x]
    if isinstance(x, (np.generic, np.ndarray)):
        return x.tolist()
    if x is None or isinstance(x, (bool, int, float, str)):
        return x
    raise TypeError(f"a run's history holds a {type(x).__name__}, which is not JSON")


def _from_json(d: dict):
    return tuple(d["__tuple__"]) if set(d) == {"__tuple__"} else d


def _module_classes() -> dict:
    from .reward_model import FeedbackLinks, RewardNet
    from .rl import ActorCritic, CategoricalPolicy
    from .sac import SquashedGaussianActor

    return {c.__name__: c for c in (ActorCritic, CategoricalPolicy, SquashedGaussianActor, RewardNet, FeedbackLinks)}


def _pack(obj, tensors: dict, prefix: str) -> dict:
    """What a trainer returned, as a JSON spec + named tensors; TypeError for what cannot be rebuilt."""
    from .rlhf import PreferenceModel, RewardEnsemble

    if isinstance(obj, torch.nn.Module) and type(obj).__name__ in _module_classes():
        for k, v in obj.state_dict().items():
            tensors[f"{prefix}.{k}"] = v.detach().cpu().contiguous()
        return {"module": type(obj).__name__, "init_args": obj.init_args, "training": obj.training, "prefix": prefix}
    if isinstance(obj, PreferenceModel):
        return {"preference_model": [_pack(obj.policy, tensors, prefix + ".policy"),
                                     _pack(obj.reward, tensors, prefix + ".reward")]}
    if isinstance(obj, RewardEnsemble):
        links = None if obj.links is None else [_pack(x, tensors, f"{prefix}.l{i}") for i, x in enumerate(obj.links)]
        return {"ensemble": [_pack(m, tensors, f"{prefix}.m{i}") for i, m in enumerate(obj.members)], "links": links,
                "reduce": obj.reduce, "means": obj.means.tolist(), "stds": obj.stds.tolist(),
                "dtypes": [str(obj.means.dtype), str(obj.stds.dtype)]}
    raise TypeError(f"cannot record a {type(obj).__name__}")


def _unpack(spec: dict, tensors: dict):
    from .rlhf import PreferenceModel, RewardEnsemble

    if "module" in spec:
        model = _module_classes()[spec["module"]](**spec["init_args"])
        n = len(spec["prefix"]) + 1
        model.load_state_dict({k[n:]: v for k, v in tensors.items() if k.startswith(spec["prefix"] + ".")}, strict=True)
        return model.train(spec["training"])
    if "preference_model" in spec:
        return PreferenceModel(*(_unpack(s, tensors) for s in spec["preference_model"]))
    ens = RewardEnsemble([_unpack(s, tensors) for s in spec["ensemble"]], spec["reduce"])
    for m, s in zip(ens.members, spec["ensemble"]):
        m.train(s["training"])
    ens.means, ens.stds = (np.asarray(spec[k], dtype=d) for k, d in zip(("means", "stds"), spec["dtypes"]))
    ens.links = None if spec["links"] is None else [_unpack(s, tensors) for s in spec["links"]]
    return ens


def _save_run(folder: Path, model, history: dict) -> None:
    from safetensors.torch import save_file

    tensors: dict = {}
    try:
        spec = _pack(model, tensors, "model")
        history = _to_json(history)
    except TypeError:  # nothing we can rebuild safely: the run is simply not recorded
        return
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    try:
        save_file(tensors, str(tmp / "model.safetensors"))
        save_file({"torch_rng": torch.get_rng_state()}, str(tmp / "rng.safetensors"))
        np_state, py_state = np.random.get_state(), random.getstate()
        meta = {"model": spec, "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]],
                "python_rng": [py_state[0], list(py_state[1]), py_state[2]]}
        (tmp / "run.json").write_text(json.dumps({"meta": meta, "history": history}))
        write_manifest(tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _load_run(folder: Path, seeded: tuple[str, ...]):
    from safetensors.torch import load_file

    verify_checkpoint(folder)
    try:
        run = json.loads((folder / "run.json").read_text(), object_hook=_from_json)
        meta, history = run["meta"], run["history"]
        model = _unpack(meta["model"], load_file(str(folder / "model.safetensors")))
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as e:
        _fail(folder, f"does not hold a recorded run ({type(e).__name__}: {e})")
    # the generators the trainer seeds are left as the run left them; the others it never touched
    if "torch" in seeded:
        torch.set_rng_state(load_file(str(folder / "rng.safetensors"))["torch_rng"])
    if "numpy" in seeded:
        name, keys, *rest = meta["numpy_rng"]
        np.random.set_state((name, np.array(keys, dtype=np.uint32), *rest))
    if "python" in seeded:
        version, state, gauss = meta["python_rng"]
        random.setstate((version, tuple(state), gauss))
    return model, history


def reuse_run(name: str, key_parts, train, seeded: tuple[str, ...] = ("torch", "numpy", "python")):
    """Return ``train()`` — a ``(model, history)`` pair — recorded or reused as ``$RLHF_TUTORIAL_RUNS`` says (notebooks 02-06).

    Off (the default): just ``train()``. ``record``: train, then save the model (safetensors;
    a network of the package is rebuilt from its ``init_args``, a reward ensemble or
    ``PreferenceModel`` from its networks), the history (JSON), and the global random state after
    the run, under ``<cache>/runs/<name>-<key>`` with a SHA-256 manifest. ``reuse``: load that run
    instead when it is there, leaving the global generators the trainer seeds (``seeded``, of
    torch, numpy and ``random``) in the state the run left them, so the cells after it see what
    they would have seen. A run whose inputs cannot be fingerprinted
    (:func:`fingerprint` returns None: a lambda env, a callback) is always trained. Both modes hold
    :func:`build_lock`, so a notebook reusing a run another process is recording waits for it.
    """
    mode = runs_mode()
    key = fingerprint(name, key_parts) if mode else None
    if key is None:
        return train()
    from .text import default_cache_dir

    folder = default_cache_dir() / "runs" / f"{name}-{key[:24]}"
    with build_lock(folder):
        if mode == "reuse" and (folder / MANIFEST).is_file():
            return _load_run(folder, seeded)
        model, history = train()
        _save_run(folder, model, history)
        return model, history
