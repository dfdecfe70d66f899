"""Where training stands, saved after every epoch in ``last.pt`` and restored on resumption."""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from icd_lib.train.checkpoint import (
    CheckpointError,
    best_state,
    capture_rng_state,
    check_same_config,
    is_main_epoch,
    load_checkpoint,
    load_state,
    require_keys,
    restore_rng_state,
    save_checkpoint,
)
from icd_lib.train.prepare import Run
from icd_lib.train.run_config import FORMER_OPTION_FIELDS

log = logging.getLogger(__name__)

RESUME_KEYS = ("objective", "optimizer", "scheduler", "rng", "best_top1", "elapsed_s", "teacher_fingerprint")


@dataclass
class Progress:
    """Where training stands: what ``last.pt`` saves and a resumed run restores."""

    history: list[dict] = field(default_factory=list)
    best_top1: float = -1.0
    best_epoch: int = 0
    best_model: dict | None = None
    elapsed_before: float = 0.0  # seconds in earlier segments of a resumed run
    segments: list[dict] = field(default_factory=list)

    @property
    def main_epochs_done(self) -> int:
        return sum(map(is_main_epoch, self.history))


def fingerprint(model: nn.Module | None) -> float | None:
    """A number that changes when any weight or buffer of ``model`` changes (float64 sum of |values|)."""
    if model is None:
        return None
    return float(sum(t.detach().double().abs().sum() for t in model.state_dict().values() if t.is_floating_point()))


def resume(run: Run, last_path: Path) -> Progress:
    """Restore ``run`` from ``last_path`` (same configuration and teacher, else ``CheckpointError``)."""
    state = load_checkpoint(last_path)
    require_keys(state, RESUME_KEYS, last_path)
    check_same_config(state["config"], run.config.to_dict(), last_path, ignore=FORMER_OPTION_FIELDS)
    if state["teacher_fingerprint"] != fingerprint(run.teacher):
        raise CheckpointError(
            f"checkpoint {last_path} was trained with a different teacher (weights differ); resume with "
            "the same teacher checkpoint, or choose another output folder to start a new run"
        )
    modules = [(run.model, "model"), (run.objective, "objective"), (run.optimizer, "optimizer"),
               (run.scheduler, "scheduler")]
    if run.stage_optimizer is not None:
        require_keys(state, ("stage_optimizer",), last_path)
        modules.append((run.stage_optimizer, "stage_optimizer"))
    for module, key in modules:
        load_state(module, state[key], last_path, key)
    restore_rng_state(state["rng"])
    main = [entry for entry in state["history"] if is_main_epoch(entry)]
    best_epoch = state.get("best_epoch") or (max(main, key=lambda e: e["test_top1"])["epoch"] if main else 0)
    log.info("resumed %s from %s after %d epochs", run.config.run_name, last_path, len(state["history"]))
    return Progress(state["history"], state["best_top1"], best_epoch, state.get("best_model"),
                    state["elapsed_s"], state.get("segments", []))


def save_epoch(run: Run, state: Progress, last_path: Path, elapsed: float, run_info: dict) -> None:
    """Write ``last.pt`` (with the best epoch's weights), then ``best.pt`` derived from it."""
    last = {
        "config": run.config.to_dict(),
        "epoch": state.main_epochs_done,
        "model": run.model.state_dict(),
        "objective": run.objective.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "rng": capture_rng_state(),
        "history": state.history,
        "best_top1": state.best_top1,
        "best_epoch": state.best_epoch,
        "best_model": state.best_model,
        "elapsed_s": elapsed,
        "teacher_fingerprint": fingerprint(run.teacher),
        "segments": state.segments,
        "run_info": run_info,
    }
    if run.stage_optimizer is not None:
        last["stage_optimizer"] = run.stage_optimizer.state_dict()
    save_checkpoint(last, last_path)
    if state.best_model is not None:  # none during an initialisation stage
        save_checkpoint(best_state(last), last_path.with_name("best.pt"))
