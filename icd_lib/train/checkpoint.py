"""Checkpoints: atomic writes, safe loads (``weights_only``), RNG state capture, and clear errors.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so that
``torch.load(weights_only=True)`` can read it without running any pickled code.

A run keeps two files. ``last.pt`` is the whole training state after the latest epoch, and it
also holds the weights of the best epoch so far (``best_model``, ``best_epoch``).
``best.pt`` is derived from it (the best epoch's weights, no optimizer state) and written after
it, so a kill at any moment leaves ``last.pt`` either the old or the new state, never a mix,
and ``sync_best_checkpoint`` rewrites a missing or stale ``best.pt`` from it.

A run whose method has an initialisation stage (``icd_lib.losses.base.InitStage``) has history
entries marked ``"stage": "init"`` before its main epochs; ``epoch`` and ``best_epoch`` count main
epochs only, and there is no ``best.pt`` until the first main epoch.
"""
from __future__ import annotations

import pickle
import random
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from icd_lib.errors import UserError
from icd_lib.train.run_config import upgrade_config
from icd_lib.utils import atomic_write, remove_partial_writes, renamed_keys

CHECKPOINT_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: the trained weights under ``student``/``best_student``, now ``model``/``best_model``
REQUIRED_KEYS = ("config", "epoch", "model", "history")  # what every checkpoint holds


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to a different run."""


def save_checkpoint(state: dict, path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a temporary file in the same folder, then ``os.replace``."""
    return atomic_write(path, lambda tmp: torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp),
                        "the previous checkpoint there is intact, so the run resumes from it")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files killed writes of ``last.pt`` and ``best.pt`` left in ``folder``; return them."""
    return [path for name in ("last.pt", "best.pt") for path in remove_partial_writes(Path(folder) / name)]


def is_main_epoch(entry: dict) -> bool:
    """Whether a history entry is a main epoch (not one of an initialisation stage)."""
    return entry.get("stage", "main") == "main"


def history_through(history: list[dict], main_epoch: int) -> list[dict]:
    """The entries of ``history`` up to and including main epoch ``main_epoch`` (stage epochs kept)."""
    kept, seen = [], 0
    for entry in history:
        if seen == main_epoch:
            break
        kept.append(entry)
        seen += is_main_epoch(entry)
    return kept


def best_state(last: dict) -> dict:
    """The ``best.pt`` that belongs to the ``last.pt`` dict ``last``: the best epoch's weights."""
    keep = ("config", "history", "best_top1", "best_epoch", "run_info", "teacher_fingerprint")
    return {
        **{k: last[k] for k in keep if k in last},
        "epoch": last["best_epoch"],
        "model": last["best_model"],
        "history": history_through(last["history"], last["best_epoch"]),
    }


def sync_best_checkpoint(folder: str | Path) -> Path | None:
    """Make ``best.pt`` in ``folder`` agree with ``last.pt`` (rewrite it when missing or stale).

    Returns the path written, or None when nothing had to change (or there is no ``last.pt``, or it
    predates ``best_model``: then a missing ``best.pt`` is rebuilt only when the last epoch was the best).
    """
    folder = Path(folder)
    last_path, best_path = folder / "last.pt", folder / "best.pt"
    if not last_path.is_file():
        return None
    last = load_checkpoint(last_path)
    if "best_model" not in last:  # written before checkpoints carried the best weights
        if best_path.is_file() or last["best_top1"] != last["history"][-1]["test_top1"]:
            return None
        last = {**last, "best_model": last["model"], "best_epoch": last["epoch"]}
    if last["best_model"] is None:  # only initialisation-stage epochs so far: no best epoch yet
        return None
    if best_path.is_file():
        try:
            if load_checkpoint(best_path)["epoch"] == last["best_epoch"]:
                return None
        except CheckpointError:
            pass  # a corrupt best.pt is rewritten
    return save_checkpoint(best_state(last), best_path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read a checkpoint with ``torch.load(weights_only=True)``; any failure is a ``CheckpointError``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"no checkpoint at {path}; train the model first (python -m icd_lib train-teacher --help) "
            "or give the path of an existing .pt file"
        )
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols of files it then refuses
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # truncated zip, wrong file type, unsafe pickle: all mean "unusable file"
        raise CheckpointError(
            f"cannot read checkpoint {path} ({unreadable_reason(err)}); the file is corrupt or not an "
            "icd_lib checkpoint; delete it and rerun the training (it restarts from scratch)"
        ) from err
    if not isinstance(state, dict) or state.get("format") not in READABLE_FORMATS:
        raise CheckpointError(
            f"{path} is not an icd_lib checkpoint (format {CHECKPOINT_FORMAT}); delete it and rerun the training"
        )
    state = upgrade_checkpoint(state)
    require_keys(state, REQUIRED_KEYS, path)
    return state


def upgrade_checkpoint(state: dict) -> dict:
    """``state`` in the current format's key names (format 1 called the trained weights ``student``)."""
    if state["format"] == CHECKPOINT_FORMAT:
        return state
    state = renamed_keys(state, {"student": "model", "best_student": "best_model"})
    if isinstance(state.get("config"), dict):
        state["config"] = upgrade_config(state["config"])
    return {**state, "format": CHECKPOINT_FORMAT}


def unreadable_reason(err: Exception) -> str:
    """Why ``torch.load`` failed, on one line, without torch's advice to load with ``weights_only=False``."""
    if isinstance(err, pickle.UnpicklingError):
        return "it holds Python objects other than tensors, numbers and strings, which are never loaded"
    first = re.split(r"(?<=\.)\s|\n", str(err).strip(), maxsplit=1)[0]
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def require_keys(state: dict, keys: tuple[str, ...], path: str | Path) -> None:
    """``CheckpointError`` unless ``state`` (from ``path``) holds every key in ``keys``."""
    missing = [key for key in keys if key not in state]
    if missing:
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(missing)}: it is incomplete or damaged; delete it and rerun the training"
        )


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
    load_state(model, state["model"], path, "model")
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
