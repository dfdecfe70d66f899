"""The training loop and its checkpoints: exact resumption, safe loading, clear errors."""
from __future__ import annotations

import json
import os

import pytest
import torch

import icd_lib.losses.icd  # noqa: F401  (registers "icd")
import icd_lib.losses.kd  # noqa: F401  (registers "ce" and "kd")
from icd_lib.data.seeds import derive_seed
from icd_lib.results import RunRecord, load_record
from icd_lib.results.records import without_machine_fields
from icd_lib.train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from icd_lib.config import default_lr, method_weights
from icd_lib.train.loop import train
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig
from icd_lib.losses import base as loss_registry
from icd_lib.losses.base import Distiller
from train_helpers import NoisyBlobs, RecordingBlobs, TinyNet


class InfiniteTerm(Distiller):
    """A loss term that is +inf with zero gradient: what a diverged run looks like to the loop."""

    name = "test_infinite"
    needs_teacher = False

    def __init__(self, student_shapes, teacher_shapes, num_data=None):
        super().__init__()

    def forward(self, student, teacher, labels, index=None):
        return {"test_infinite": student.logits.mean() * 0 + float("inf")}


class Killed(Exception):
    pass


def make_models(student_seed: int = 0, teacher_seed: int = 100):
    torch.manual_seed(teacher_seed)
    teacher = TinyNet(width=12)
    torch.manual_seed(student_seed)
    return TinyNet(), teacher


def config(**overrides) -> TrainConfig:
    base = {**dict(method="icd+kd", model="tiny", teacher="tiny12", epochs=3, batch_size=32, milestones=(2,)), **overrides}
    base.setdefault("weights", method_weights(base["method"]))
    return TrainConfig(**base)


QUIET = RunOptions(progress=False)  # nothing written


def files(out) -> RunOptions:
    """Checkpoints under ``out/checkpoints/<run name>/``, the record in ``out/results/``."""
    return RunOptions(out=out, progress=False)


def checkpoint(out, name="last.pt", run="run"):
    return out / "checkpoints" / run / name


def test_config_defaults_are_the_paper_recipe():
    c = TrainConfig(method="icd+kd", weights=method_weights("icd+kd"))
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.weight_decay, c.lr_decay_rate) == (240, 64, 0.05, 0.9, 5e-4, 0.1)
    assert c.milestones == (150, 180, 210)
    assert c.weights == {"ce": 1.0, "kd": 1.0, "icd": 1.0}
    assert TrainConfig(weights={"ce": 1}, epochs=8).milestones == (5, 6, 7)  # 150/240 * 8 = 5, 180/240 * 8 = 6, 210/240 * 8 = 7
    assert default_lr("MobileNetV2") == default_lr("shuffle_v1") == 0.01
    assert default_lr("wrn_16_2") == 0.05
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    # configurations saved before how-to-run fields moved to RunOptions still read back
    assert TrainConfig.from_dict({**c.to_dict(), "device": "cpu", "fast": True, "num_workers": 4}) == c


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"weights": {}}, "needs weights"),
        ({"epochs": 0}, "epochs"),
        ({"milestones": (5,)}, "milestones"),
        ({"method_options": {"crd": {}}}, "not terms"),
    ],
)
def test_config_rejects_bad_input(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(**overrides)


def test_killed_run_resumes_to_exactly_the_uninterrupted_result(tmp_path):
    data, test = NoisyBlobs(96, seed=0), NoisyBlobs(64, seed=1)
    student, teacher = make_models()
    straight = train(config(), student, data, test, teacher, how=files(tmp_path / "a"))

    def kill_after_two(entry):
        if entry["epoch"] == 2:
            raise Killed

    student_b, teacher_b = make_models()
    with pytest.raises(Killed):
        train(config(), student_b, data, test, teacher_b, how=files(tmp_path / "b"), on_epoch_end=kill_after_two)
    assert load_checkpoint(checkpoint(tmp_path / "b", "last.pt"))["epoch"] == 2
    torch.manual_seed(999)  # a different global RNG state in the new "process": the checkpoint must restore it
    student_c, teacher_c = make_models(student_seed=7)  # fresh, different weights: the checkpoint must overwrite them
    resumed = train(config(), student_c, data, test, teacher_c, how=files(tmp_path / "b"))

    assert without_machine_fields(resumed.history) == without_machine_fields(straight.history)
    assert [e["epoch"] for e in resumed.history] == [1, 2, 3]
    assert resumed.history[2]["lr"] == pytest.approx(0.005)  # decayed after milestone 2
    for (name, a), (_, b) in zip(student.state_dict().items(), student_c.state_dict().items()):
        assert torch.equal(a, b), name
    a_state = torch.load(checkpoint(tmp_path / "a", "last.pt"), weights_only=True)
    c_state = torch.load(checkpoint(tmp_path / "b", "last.pt"), weights_only=True)
    for name, value in a_state["objective"].items():  # ICD heads and tau
        assert torch.equal(value, c_state["objective"][name]), name


def test_training_learns_and_keeps_the_teacher_fixed(tmp_path):
    data, test = NoisyBlobs(192, noise=0.5, seed=0), NoisyBlobs(128, noise=0.5, seed=1)
    student, teacher = make_models()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    record = train(config(epochs=4, milestones=(3,)), student, data, test, teacher, how=files(tmp_path))
    assert record.best_top1 > 60  # 4 classes: chance is 25%
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())
    entry = record.history[0]
    assert set(entry["terms"]) >= {"ce", "kd", "icd"}
    # the logged loss is the weighted sum of the logged terms (weights 1, 1, 1)
    assert entry["train_loss"] == pytest.approx(entry["terms"]["ce"] + entry["terms"]["kd"] + entry["terms"]["icd"], rel=1e-5)
    best = torch.load(checkpoint(tmp_path, "best.pt"), weights_only=True)
    assert best["history"][-1]["test_top1"] == record.best_top1 and best["epoch"] == record.best_epoch
    fresh = TinyNet()
    load_model_weights(fresh, checkpoint(tmp_path, "best.pt"))
    assert all(torch.equal(v, best["model"][k]) for k, v in fresh.state_dict().items())


def test_teacher_run_needs_no_teacher_and_student_run_does(tmp_path):
    data, test = NoisyBlobs(64), NoisyBlobs(32, seed=1)
    record = train(config(method="student", epochs=1, milestones=()), TinyNet(), data, test,
                   how=files(tmp_path), run_info={"role": "teacher"})
    assert record.role == "teacher" and set(record.history[0]["terms"]) == {"ce"}
    assert load_record(tmp_path / "results" / "run.json") == record
    with pytest.raises(ValueError, match="teacher"):
        train(config(epochs=1, milestones=()), TinyNet(), data, test, how=QUIET)


def test_record_is_complete(tmp_path):
    data, test = NoisyBlobs(64), NoisyBlobs(32, seed=1)
    student, teacher = make_models()
    record = train(config(epochs=2, milestones=(1,), run_name="r"), student, data, test, teacher,
                   how=files(tmp_path), run_info={"profile": "smoke", "dataset": "blobs", "teacher_checkpoint": "t.pt", "teacher_top1": 50.0},
                   )
    saved = json.loads((tmp_path / "results" / "r.json").read_text())
    for key in ("config", "history", "best_top1", "best_top5", "last_top1", "last_top5", "wall_time_s", "device",
                "versions", "git_commit", "command", "created", "seed", "train_size", "test_size", "teacher_checkpoint"):
        assert key in saved, key
    assert saved["config"]["weights"] == {"ce": 1.0, "kd": 1.0, "icd": 1.0}
    assert (saved["train_size"], saved["test_size"]) == (64, 32)
    assert set(saved["versions"]) >= {"torch", "icd_lib"}
    assert saved["last_top1"] == saved["history"][-1]["test_top1"]
    assert saved["best_top1"] == max(e["test_top1"] for e in saved["history"])
    assert len(saved["history"]) == 2 and saved["wall_time_s"] > 0
    assert saved["host"]["cpus"] == os.cpu_count() >= 1 and saved["host"]["threads"] == torch.get_num_threads() >= 1
    for key in ("load_start", "load_end"):
        value = saved["host"][key]
        assert (value is None) if not hasattr(os, "getloadavg") else (isinstance(value, float) and 0 <= value < 1000)
    assert RunRecord.from_dict(saved) == record


def test_the_record_takes_the_load_at_the_start_after_every_epoch_and_at_the_end(tmp_path, monkeypatch):
    import icd_lib.results.records as records
    import icd_lib.train.loop as loop

    seen = []  # calls in order: the start load before the first epoch, one per epoch, the end after the last
    loads = iter([1.5, 2.5, 3.5])
    monkeypatch.setattr(loop, "load_average", lambda: seen.append("loop") or next(loads))
    monkeypatch.setattr(records, "load_average", lambda: seen.append("end") or 7.25)
    record = train(config(method="student", epochs=2, milestones=(), run_name="h"),
                   TinyNet(), NoisyBlobs(32), NoisyBlobs(16, seed=1), how=files(tmp_path),
                   on_epoch_end=lambda entry: seen.append("epoch"))
    assert seen == ["loop", "loop", "epoch", "loop", "epoch", "end"]
    assert [entry["load"] for entry in record.history] == [2.5, 3.5]
    assert record.host == {"cpus": os.cpu_count(), "threads": torch.get_num_threads(), "load_start": 1.5, "load_end": 7.25}
    assert load_record(tmp_path / "results" / "h.json").host == record.host
    assert all("load" not in entry and "epoch_time_s" not in entry for entry in without_machine_fields(record.history))


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    data, test = NoisyBlobs(64), NoisyBlobs(32, seed=1)
    student, teacher = make_models()
    train(config(epochs=2, milestones=(1,)), student, data, test, teacher, how=files(tmp_path))
    with pytest.raises(CheckpointError, match="lr: checkpoint 0.05, now 0.1"):
        train(config(epochs=2, milestones=(1,), lr=0.1), TinyNet(), data, test, teacher, how=files(tmp_path))
    with pytest.raises(CheckpointError, match="different teacher"):
        train(config(epochs=2, milestones=(1,)), TinyNet(), data, test, make_models(teacher_seed=5)[1], how=files(tmp_path))
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model_weights(TinyNet(width=4), checkpoint(tmp_path, "last.pt"))


def test_corrupt_and_missing_checkpoints_are_clear_errors(tmp_path):
    data, test = NoisyBlobs(64), NoisyBlobs(32, seed=1)
    student, teacher = make_models()
    train(config(epochs=1, milestones=()), student, data, test, teacher, how=files(tmp_path))
    path = checkpoint(tmp_path, "last.pt")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=str(path)):
        train(config(epochs=1, milestones=()), TinyNet(), data, test, teacher, how=files(tmp_path))
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model_weights(TinyNet(), tmp_path / "missing.pt")
    assert issubclass(CheckpointError, RuntimeError)


def test_non_finite_loss_stops_with_advice(monkeypatch):
    monkeypatch.setitem(loss_registry._REGISTRY, "test_infinite", InfiniteTerm)  # registered for this test only
    data, test = NoisyBlobs(64), NoisyBlobs(32, seed=1)
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train(config(weights={"test_infinite": 1.0}, epochs=1, milestones=()), TinyNet(), data, test, how=QUIET)


def test_epoch_e_reads_the_images_in_epoch_e_order_once():
    data = RecordingBlobs(64)
    train(config(method="student", epochs=2, milestones=(1,), batch_size=16), TinyNet(), data, NoisyBlobs(32, seed=1), how=QUIET)
    # the documented order of make_loader: randperm under derive_seed(seed, epoch), seed 0
    orders = [torch.randperm(64, generator=torch.Generator().manual_seed(derive_seed(0, epoch))).tolist() for epoch in (0, 1)]
    assert data.visited == orders[0] + orders[1]


def test_loop_accepts_a_device_resident_loader(tmp_path):
    """The fast path's loader (batches already on the device, grey images expanded to 3 channels) drops in."""
    from icd_lib.data import ImageDataset
    from icd_lib.train.loaders import resident_loader

    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (96,), generator=g)
    images = (labels[:, None, None, None] * 60 + torch.randint(0, 20, (96, 1, 8, 8), generator=g)).to(torch.uint8)
    dataset = ImageDataset(images, labels, ["a", "b", "c", "d"], (0.5,) * 3, (0.25,) * 3, augment=True)
    test_set = ImageDataset(images[:40], labels[:40], ["a", "b", "c", "d"], (0.5,) * 3, (0.25,) * 3)
    cfg = config(method="student", epochs=2, milestones=(1,))
    train_loader = resident_loader(dataset, True, cfg, torch.device("cpu"), False, None)
    x, y, index = next(iter(train_loader))
    assert x.shape == (32, 3, 8, 8) and torch.equal(dataset.labels[index], y)
    assert train_loader.images.shape[1] == 1  # grey images stay one channel in memory, served as three
    test_loader = resident_loader(test_set, False, cfg, torch.device("cpu"), False, None)
    assert torch.equal(torch.cat([y for _, y, _ in test_loader]), labels[:40])  # in order, nothing dropped
    record = train(cfg, TinyNet(), train_loader, test_loader, how=RunOptions(fast=True, progress=False))
    assert record.train_size == 96 and record.test_size == 40 and len(record.history) == 2


# --- the checkpoint pair after a kill, a full disk, leftovers and incomplete files -----------------


def test_a_kill_between_the_two_checkpoint_writes_leaves_a_consistent_pair(tmp_path, monkeypatch):
    """last.pt is written first and holds the best weights, so best.pt is rebuilt from it."""
    import icd_lib.train.resume as resume

    write = resume.save_checkpoint
    best_writes = []

    def killed_before_best(state, path):
        if path.name == "best.pt":
            best_writes.append(state["epoch"])
            if len(best_writes) == 2:  # epoch 2: last.pt is written, best.pt not
                raise Killed("killed between last.pt and best.pt")
        return write(state, path)

    monkeypatch.setattr(resume, "save_checkpoint", killed_before_best)
    student, teacher = make_models()
    with pytest.raises(Killed):
        train(config(), student, NoisyBlobs(), NoisyBlobs(n=32, seed=1), teacher, how=files(tmp_path))
    monkeypatch.setattr(resume, "save_checkpoint", write)
    student, teacher = make_models()
    record = train(config(), student, NoisyBlobs(), NoisyBlobs(n=32, seed=1), teacher, how=files(tmp_path))
    best, last = load_checkpoint(checkpoint(tmp_path, "best.pt")), load_checkpoint(checkpoint(tmp_path, "last.pt"))
    assert best["epoch"] == record.best_epoch == last["best_epoch"]
    for key, value in last["best_model"].items():
        assert torch.equal(best["model"][key], value)


def test_a_missing_or_stale_best_checkpoint_is_rebuilt(tmp_path):
    from icd_lib.train.checkpoint import save_checkpoint, sync_best_checkpoint

    student, teacher = make_models()
    record = train(config(), student, NoisyBlobs(), NoisyBlobs(n=32, seed=1), teacher, how=files(tmp_path))
    (checkpoint(tmp_path, "best.pt")).unlink()
    folder = checkpoint(tmp_path).parent
    assert sync_best_checkpoint(folder) == checkpoint(tmp_path, "best.pt")
    assert load_checkpoint(checkpoint(tmp_path, "best.pt"))["epoch"] == record.best_epoch
    stale = load_checkpoint(checkpoint(tmp_path, "best.pt"))
    save_checkpoint({**stale, "epoch": 99}, checkpoint(tmp_path, "best.pt"))
    assert sync_best_checkpoint(folder) is not None and load_checkpoint(checkpoint(tmp_path, "best.pt"))["epoch"] == record.best_epoch
    assert sync_best_checkpoint(folder) is None  # consistent: nothing to do


def test_temporary_files_of_a_killed_write_are_removed_on_the_next_run(tmp_path):
    folder = checkpoint(tmp_path).parent
    folder.mkdir(parents=True)
    leftovers = [folder / ".last.pt.abc123.tmp", folder / ".best.pt.x.tmp"]
    for path in leftovers:
        path.write_bytes(b"partial")
    keep = folder / "notes.txt"
    keep.write_text("mine")
    student, teacher = make_models()
    train(config(epochs=1, milestones=()), student, NoisyBlobs(), NoisyBlobs(n=32, seed=1), teacher, how=files(tmp_path))
    assert not any(path.exists() for path in leftovers) and keep.read_text() == "mine"


def test_a_full_disk_is_named_and_the_previous_checkpoint_survives(tmp_path, monkeypatch):
    from icd_lib.train import checkpoint

    checkpoint.save_checkpoint({"config": {}, "epoch": 1, "model": {}, "history": []}, tmp_path / "last.pt")

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed: No space left on device")

    monkeypatch.setattr(checkpoint.torch, "save", full)
    with pytest.raises(OSError, match="no space left on the device to write .*last.pt; free some space"):
        checkpoint.save_checkpoint({"config": {}, "epoch": 2, "model": {}, "history": []}, tmp_path / "last.pt")
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "last.pt")["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_a_checkpoint_missing_keys_is_a_clear_error(tmp_path):
    checkpoint(tmp_path).parent.mkdir(parents=True)
    torch.save({"format": 1, "student": {}, "config": {}}, checkpoint(tmp_path, "last.pt"))
    with pytest.raises(CheckpointError, match="lacks epoch, history: it is incomplete or damaged; delete it"):
        load_checkpoint(checkpoint(tmp_path, "last.pt"))
    torch.save({"format": 1, "student": {}, "config": config().to_dict(), "epoch": 1, "history": [{}]},
               checkpoint(tmp_path, "last.pt"))
    student, teacher = make_models()
    with pytest.raises(CheckpointError, match="lacks objective, optimizer"):
        train(config(), student, NoisyBlobs(), NoisyBlobs(n=32, seed=1), teacher, how=files(tmp_path))


def test_a_format_1_checkpoint_reads_with_the_trained_weights_as_model(tmp_path):
    """Format 1 stored the trained weights as ``student``/``best_student`` and the architecture
    as ``config["student"]``; they load under today's names, and the weights are the same tensors."""
    net = TinyNet()
    weights = {k: v.clone() for k, v in net.state_dict().items()}
    old_config = {("student" if k == "model" else k): v for k, v in config().to_dict().items()}
    old = {"format": 1, "config": old_config, "epoch": 1, "history": [{}], "student": weights, "best_student": weights}
    path = tmp_path / "last.pt"
    torch.save(old, path)

    state = load_checkpoint(path)
    assert {"model", "best_model"} <= set(state) and not {"student", "best_student"} & set(state)
    assert state["config"]["model"] == "tiny" and "student" not in state["config"]
    loaded = TinyNet()
    torch.nn.init.zeros_(next(loaded.parameters()))
    load_model_weights(loaded, path)
    assert all(torch.equal(v, weights[k]) for k, v in loaded.state_dict().items())
    assert TrainConfig.from_dict(state["config"]).model == "tiny"
