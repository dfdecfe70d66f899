"""End to end: a teacher and an ICD+KD student on the content/style dataset, executed from specs;
and what the trainer hands the loss terms about the training set."""
from __future__ import annotations

import json

import pytest
import torch
from torch.utils.data import DataLoader

from icd_lib.data import ImageDataset
from icd_lib.experiments import runs
from icd_lib.experiments.spec import make_spec
from icd_lib.losses.crd import CRD
from icd_lib.results import RunRecord, load_records
from icd_lib.train.fast import GPUResidentLoader
from icd_lib.config import method_weights
from icd_lib.train.loaders import training_labels
from icd_lib.train.loop import train
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig
from conftest import copy_outputs
from train_helpers import NoisyBlobs, TinyNet

# The smoke profile on content/style data: 512 training images, 256 test images, sizes that fit both
# contents (Fashion-MNIST, and the digits that stand in for it without the Debian package:
# 1,438 train / 359 test). Teacher 1 epoch, student 3. About 15 s on the 2-core CPU.
STUDENT = make_spec("smoke", "icd+kd", dataset="content_style", epochs=3)


@pytest.fixture
def trained(trained_runs):
    """(output folder, record) of STUDENT and its teacher, trained once per session: read-only."""
    out = trained_runs(STUDENT)
    return out, runs.execute(STUDENT, RunOptions(out, progress=False))


@pytest.mark.slow
def test_teacher_and_icd_kd_student_end_to_end(trained):
    tmp_path, record = trained

    teacher = runs.ensure_teacher(STUDENT, tmp_path)  # now loaded, not trained again
    teacher_name = "smoke-content_style-teacher-resnet8-seed0"
    assert teacher.checkpoint == tmp_path / "checkpoints" / teacher_name / "last.pt"
    # paths in records are relative to --out, so a record reads the same from any working directory
    assert record.teacher_checkpoint == f"checkpoints/{teacher_name}/last.pt"
    assert record.checkpoint_dir == "checkpoints/smoke-content_style-icd+kd-resnet8-from-resnet8-seed0-e3"
    assert record.teacher_top1 == teacher.top1
    assert record.last_top1 > 12  # 10 classes: chance is 10%
    saved = json.loads((tmp_path / "results" / f"{record.name}.json").read_text())
    assert RunRecord.from_dict(saved) == record
    assert saved["spec"] == STUDENT.identity() and saved["format"] == 3
    assert (saved["profile"], saved["dataset"], saved["train_size"], saved["test_size"]) == ("smoke", "content_style", 512, 256)
    assert saved["config"]["weights"] == {"ce": 1.0, "kd": 1.0, "icd": 1.0}
    assert saved["config"]["epochs"] == 3 and len(saved["history"]) == 3
    assert {"ce", "kd", "icd", "icd.contrast", "icd.invariance"} <= set(saved["history"][0]["terms"])
    assert saved["versions"]["icd_lib"] and saved["device"] and saved["wall_time_s"] > 0
    assert len(saved["segments"]) == 1 and saved["segments"][0]["from_epoch"] == 0
    teachers = load_records(tmp_path / "results", role="teacher")
    assert [t.model for t in teachers] == ["resnet8"] and teachers[0].config["weights"] == {"ce": 1.0}
    result = runs.checkpoint_accuracy(tmp_path / record.checkpoint_dir / "last.pt", "smoke", teacher_ckpt=teacher.checkpoint)
    assert result["top1"] == pytest.approx(record.last_top1)  # the same model on the same test set
    assert result["logit_difference"] == pytest.approx(record.evaluation["logit_difference"])


@pytest.mark.slow
def test_the_record_holds_the_final_evaluation(trained):
    """Class-mean logits of student and teacher, the transfer probe and, on content/style data, the style metrics."""
    tmp_path, record = trained
    evaluation = record.evaluation
    student, teacher = (torch.tensor(evaluation[k]) for k in ("class_mean_logits", "teacher_class_mean_logits"))
    assert student.shape == teacher.shape == (10, 10)
    difference = (student - teacher).abs()
    difference.fill_diagonal_(0)
    assert evaluation["logit_difference"] == pytest.approx(float(difference.sum() / 90))
    assert evaluation["probe"]["task"] == "digits" and 10 < evaluation["probe"]["test_top1"] <= 100
    assert evaluation["probe_styled"]["task"] == "digits in random style"
    assert 0 < evaluation["probe_styled"]["test_top1"] <= 100
    style = evaluation["style"]
    assert 0 <= style["flip_rate"] <= 1 and 0 <= style["tv_distance"] <= 1
    assert 0 <= style["tv_to_teacher_same_style"] <= 1 and 0 <= style["tv_to_teacher_new_style"] <= 1
    assert runs.is_complete(STUDENT, tmp_path)


@pytest.mark.slow
def test_a_record_without_evaluation_is_completed_without_training(trained, tmp_path):
    """A kill between the end of training and the evaluation, or a record from before evaluations."""
    copy_outputs(trained[0], tmp_path)
    record = trained[1]
    path = tmp_path / "results" / f"{record.name}.json"
    data = json.loads(path.read_text())
    data["evaluation"] = None
    path.write_text(json.dumps(data))
    last = tmp_path / record.checkpoint_dir / "last.pt"
    before = last.stat().st_mtime_ns
    again = runs.execute(STUDENT, RunOptions(tmp_path, progress=False))
    assert again.evaluation == record.evaluation and again.history == record.history
    assert last.stat().st_mtime_ns == before  # no epoch was trained again


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
    config = TrainConfig(method="crd", weights=method_weights("crd"), model="tiny", teacher="tiny12", epochs=1,
                         batch_size=16)
    record = train(config, TinyNet(), train_set, NoisyBlobs(n=16, seed=1), teacher, RunOptions(progress=False))

    assert len(drawn) == 3 and "crd" in record.history[0]["terms"]
    assert "train_labels" not in json.dumps(record.config)
    for index, negatives in drawn:
        assert not (train_set.labels[negatives] == train_set.labels[index].unsqueeze(1)).any()


def test_training_labels_are_read_from_datasets_and_loaders():
    blobs = NoisyBlobs(n=10)
    images = torch.zeros(10, 3, 8, 8, dtype=torch.uint8)
    resident = GPUResidentLoader(ImageDataset(images, blobs.labels, list("abcd"), (0.5,) * 3, (0.5,) * 3), 4, device="cpu")
    for data in (blobs, DataLoader(blobs, batch_size=4), resident):
        assert torch.equal(training_labels(data), blobs.labels)
    assert training_labels([(torch.zeros(2, 3, 8, 8), torch.zeros(2))]) is None  # a plain list of batches
