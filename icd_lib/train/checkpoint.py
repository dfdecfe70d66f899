"""Checkpoints: atomic writes, safe loads (``weights_only``), RNG state capture, and clear errors.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` can read it without running any pickled code.
"""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

CHECKPOINT_FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to a different run."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a checkpoint is an ordinary file
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; any failure is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train the model first (python -m icd_lib train-teacher --help) "
            "or give the path of an existing .pt file"
        )
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, wrong file type, unsafe pickle: all mean "unusable file"
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(err).__name__}: {err}); the file is corrupt or not an "
            "icd_lib checkpoint; delete it and rerun the training (it restarts from scratch)"
        ) from err
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "student" not in state:
        raise CheckpointError(
            f"{path} is not an icd_lib checkpoint (format {CHECKPOINT_FORMAT}); delete it and rerun the training"
        )
    return state


def load_state(module: nn.Module, state_dict: dict, path: str | Path, what: str) -> None:
    """``module.load_state_dict(state_dict)``, turning a key or shape mismatch into a ``CheckpointError``."""
    try:
        module.load_state_dict(state_dict)
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(
            f"the {what} in {path} does not fit this {what} ({err}); the checkpoint comes from a different "
            "model or method: pass the matching model, or delete the checkpoint to train from scratch"
        ) from err


def load_model_weights(model: nn.Module, path: str | Path) -> dict:
    """Load the trained model stored in checkpoint ``path`` into ``model``; return the checkpoint."""
    state = load_checkpoint(path)
    load_state(model, state["student"], path, "model")
    return state


def check_same_config(saved: dict, current: dict, path: str | Path, ignore: frozenset[str] = frozenset()) -> None:
    """Raise ``CheckpointError`` unless ``saved`` and ``current`` agree on every field not in ``ignore``."""
    differing = sorted(k for k in saved.keys() | current.keys() if k not in ignore and saved.get(k) != current.get(k))
    if differing:
        details = "; ".join(f"{k}: checkpoint {saved.get(k)!r}, now {current.get(k)!r}" for k in differing)
        raise CheckpointError(
            f"checkpoint {path} belongs to a run with a different configuration ({details}); rerun with the "
            "same configuration to resume, or choose another output folder / run name to start a new run"
        )


def capture_rng_state() -> dict:
    """RNG states of Python, NumPy and PyTorch (CPU and every CUDA device), as ``weights_only``-safe types."""
    np_state = np.random.get_state(legacy=False)
    return {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: dict) -> None:
    """Inverse of ``capture_rng_state``."""
    random.setstate(tuple(s if not isinstance(s, list) else tuple(s) for s in state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": np_state["bit_generator"],
            "state": {"key": np_state["key"].numpy().astype(np.uint32), "pos": np_state["pos"]},
            "has_gauss": np_state["has_gauss"],
            "gauss": np_state["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
