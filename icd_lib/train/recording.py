"""The record a finished run leaves: ``RunRecord`` assembled from the run and its progress."""
from __future__ import annotations

from dataclasses import asdict

from icd_lib.results.records import RunRecord, host_info, portable_path, provenance
from icd_lib.train.checkpoint import is_main_epoch
from icd_lib.train.loaders import num_examples
from icd_lib.train.prepare import Run
from icd_lib.train.resume import Progress
from icd_lib.utils import device_description

RUN_INFO_KEYS = frozenset(
    {"role", "profile", "dataset", "train_size", "test_size", "teacher_checkpoint", "teacher_top1", "spec"}
)


def check_run_info(run_info: dict | None) -> dict:
    """``run_info`` (record fields the loop cannot know) as a new dict; TypeError for unknown keys."""
    run_info = dict(run_info or {})
    unknown = set(run_info) - RUN_INFO_KEYS
    if unknown:
        raise TypeError(f"unknown run_info keys {sorted(unknown)}; valid keys: {sorted(RUN_INFO_KEYS)}")
    return run_info


def segment_info(run: Run, from_epoch: int, from_stage_epoch: int | None = None) -> dict:
    """Who trains this segment of the run and how: the (main) epoch it starts from, the code's
    commit, the device and fast-path features; with an initialisation stage the stage epoch too."""
    info = provenance()
    stage = {} if from_stage_epoch is None else {"from_stage_epoch": from_stage_epoch}
    fast = {key: value for key, value in asdict(run.fast).items() if key != "notes"}
    return {"from_epoch": from_epoch, **stage, "git_commit": info["git_commit"], "git_dirty": info["git_dirty"],
            "device": run_device_description(run), "fast_path": fast, "created": info["created"]}


def run_device_description(run: Run) -> str:
    description = device_description(run.device)
    return description if run.distributed is None else f"{run.distributed.world_size} x {description}"


def make_record(run: Run, state: Progress, run_info: dict, wall_time: float, data: tuple,
                load_start: float | None = None) -> RunRecord:
    """The run's record; ``data`` is (training data, test data) as given to ``train``."""
    config, how = run.config, run.how
    main = [entry for entry in state.history if is_main_epoch(entry)]
    best, last = main[state.best_epoch - 1], main[-1]
    info = dict(run_info)
    checkpoint_dir = None if how.out is None else portable_path(how.checkpoint_dir(config.run_name), how.results_dir())
    return RunRecord(
        name=config.run_name, role=info.pop("role", "student"), method=config.method, model=config.model,
        teacher=config.teacher, seed=config.seed, config=config.to_dict(), history=state.history,
        best_top1=best["test_top1"], best_top5=best["test_top5"], best_epoch=best["epoch"],
        last_top1=last["test_top1"], last_top5=last["test_top5"], wall_time_s=wall_time,
        device=run_device_description(run),
        train_size=info.pop("train_size", num_examples(data[0])),
        test_size=info.pop("test_size", num_examples(data[1])),
        checkpoint_dir=checkpoint_dir, segments=state.segments, host=host_info(load_start), **info, **provenance(),
    )
