"""End to end: a teacher and an ICD+KD student on the content/style dataset, through the runs API;
and what the trainer hands the loss terms about the training set."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from icd_lib.config import Profile
from icd_lib.losses.crd import CRD
from icd_lib.results import RunRecord, load_records, save_record
from icd_lib.train import runs
from icd_lib.train.fast import GPUResidentLoader
from icd_lib.train.loop import TrainConfig, train, training_labels
from train_helpers import NoisyBlobs, TinyNet


# Measured on the 2-core CPU with other jobs running: about 45 s in all; teacher 42%, student 40% top-1.
TINY = Profile(
    name="tiny", dataset="content_style", teacher="resnet8", student="resnet8", teacher_epochs=4, student_epochs=3,
    teacher_train_size=1200, student_train_size=1000, test_size=500, batch_size=32, seeds=(0,),
)


@pytest.mark.slow
def test_teacher_and_icd_kd_student_end_to_end(tmp_path):
    record = runs.distill(TINY, "icd+kd", seed=0, out=tmp_path, progress=False)

    teacher = runs.ensure_teacher(TINY, out=tmp_path)  # now loaded, not trained again
    assert teacher.checkpoint == tmp_path / "checkpoints" / "tiny-teacher-resnet8-seed0" / "best.pt"
    # paths in records are relative to --out, so a record reads the same from any working directory
    assert record.teacher_checkpoint == "checkpoints/tiny-teacher-resnet8-seed0/best.pt"
    assert record.checkpoint_dir == "checkpoints/tiny-icd+kd-resnet8-from-resnet8-seed0"
    assert record.teacher_top1 == teacher.top1
    assert record.best_top1 > 25  # 10 classes: chance is 10%
    saved = json.loads((tmp_path / "results" / f"{record.name}.json").read_text())
    assert RunRecord.from_dict(saved) == record
    assert saved["name"] == "tiny-icd+kd-resnet8-from-resnet8-seed0"
    assert (saved["profile"], saved["dataset"], saved["train_size"], saved["test_size"]) == ("tiny", "content_style", 1000, 500)
    assert saved["config"]["weights"] == {"ce": 1.0, "kd": 1.0, "icd": 1.0}
    assert saved["config"]["epochs"] == 3 and len(saved["history"]) == 3
    assert {"ce", "kd", "icd", "icd.contrast", "icd.invariance"} <= set(saved["history"][0]["terms"])
    assert saved["versions"]["icd_lib"] and saved["device"] and saved["wall_time_s"] > 0
    teachers = load_records(tmp_path / "results", role="teacher")
    assert [t.student for t in teachers] == ["resnet8"] and teachers[0].config["weights"] == {"ce": 1.0}
    result = runs.evaluate(tmp_path / record.checkpoint_dir / "best.pt", TINY, teacher_ckpt=teacher.checkpoint)
    assert result["top1"] == pytest.approx(record.best_top1)  # the same model on the same test set
    assert result["logit_difference"] > 0


def test_run_names_say_what_ran():
    assert runs.run_name(TINY, "teacher", "resnet14", None, 0) == "tiny-teacher-resnet14-seed0"
    assert runs.run_name(TINY, "kd", "resnet8", "resnet14", 2) == "tiny-kd-resnet8-from-resnet14-seed2"
    assert runs.run_name(TINY, "student", "resnet8", None, 1) == "tiny-student-resnet8-seed1"
    assert runs.run_name(TINY, "kd", "resnet8", "resnet14", 0, epochs=5) == "tiny-kd-resnet8-from-resnet14-seed0-e5"
    assert runs.run_name(TINY, "kd", "resnet8", "resnet14", 0, epochs=3) == "tiny-kd-resnet8-from-resnet14-seed0"


def test_sweep_skips_recorded_runs(tmp_path):
    recorded = []
    for method, teacher in (("student", None), ("kd", TINY.teacher)):
        name = runs.run_name(TINY, method, "resnet8", teacher, 0)
        record = RunRecord(name=name, role="student", method=method, student="resnet8", teacher=teacher, seed=0,
                           config={}, history=[], best_top1=50.0, best_top5=90.0, best_epoch=1, last_top1=49.0,
                           last_top5=90.0, wall_time_s=1.0, device="cpu")
        save_record(record, tmp_path / "results")
        recorded.append(record)
    # nothing is trained (there is no teacher and no data loading here): both runs are read back
    assert runs.sweep(TINY, ["student", "kd"], [0], out=tmp_path, progress=False) == recorded


def test_a_crd_run_samples_negatives_from_other_classes_of_the_training_set(monkeypatch):
    train_set = NoisyBlobs(n=40)
    drawn = []  # (anchor indices, their negatives) of every training step
    sample = CRD.sample_negatives

    def recording(self, index):
        negatives = sample(self, index)
        drawn.append((index, negatives))
        return negatives

    monkeypatch.setattr(CRD, "sample_negatives", recording)
    torch.manual_seed(100)
    teacher = TinyNet(width=12)
    torch.manual_seed(0)
    config = TrainConfig(method="crd", student="tiny", teacher="tiny12", epochs=1, batch_size=16, device="cpu")
    record = train(config, TinyNet(), train_set, NoisyBlobs(n=16, seed=1), teacher, progress=False)

    assert len(drawn) == 3 and "crd" in record.history[0]["terms"]
    assert "train_labels" not in json.dumps(record.config)
    for index, negatives in drawn:
        assert not (train_set.labels[negatives] == train_set.labels[index].unsqueeze(1)).any()


def test_training_labels_are_read_from_datasets_and_loaders():
    blobs = NoisyBlobs(n=10)
    images = torch.zeros(10, 3, 8, 8, dtype=torch.uint8)
    resident = GPUResidentLoader(images, blobs.labels, 4, (0.5,) * 3, (0.5,) * 3, device="cpu")
    for data in (blobs, DataLoader(blobs, batch_size=4), resident):
        assert torch.equal(training_labels(data), blobs.labels)
    assert training_labels([(torch.zeros(2, 3, 8, 8), torch.zeros(2))]) is None  # a plain list of batches
