"""Evaluation helpers against hand computations and the paper's own numbers."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from icd_lib.data import ContentStyleDataset, make_loader
from icd_lib.eval import (
    accuracy,
    class_mean_logits,
    linear_probe,
    class_mean_difference,
    logit_correlation_difference,
    predict_logits,
    relative_improvement,
    style_sensitivity,
)
from icd_lib.eval.final import teacher_student_distance
from icd_lib.eval.style import restyled_images
from icd_lib.outputs import ModelOutput



class Lookup(nn.Module):
    """Returns row k of a fixed logit table for input k (x is (n, 1) holding k)."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table, dtype=torch.float32), requires_grad=False)

    def forward(self, x):
        return self.table[x[:, 0].long()]


def batches(xs, ys, size=2):
    return [(torch.tensor(xs[i : i + size])[:, None], torch.tensor(ys[i : i + size]), torch.arange(i, i + size)) for i in range(0, len(xs), size)]


def test_accuracy_top1_and_topk_by_hand():
    table = [[3.0, 2.0, 1.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [5.0, 0.0, 1.0], [0.0, 0.1, 0.2]]
    labels = [0, 2, 2, 1, 1]
    # ranks of the true class: 1st, 2nd, 1st, 3rd, 2nd -> top1 2/5, top2 4/5, top3 (and top5) 5/5
    model = Lookup(table).train()
    result = accuracy(model, batches([0, 1, 2, 3, 4], labels), topk=(1, 2, 5))
    assert result == pytest.approx({"top1": 40.0, "top2": 80.0, "top5": 100.0})
    assert model.training  # the mode is restored
    logits, ys = predict_logits(model, batches([0, 1, 2, 3, 4], labels))
    assert torch.equal(logits, torch.tensor(table)) and ys.tolist() == labels
    with pytest.raises(ValueError, match="no batches"):
        accuracy(model, [])


def test_class_mean_logits_by_hand():
    logits = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    assert torch.allclose(class_mean_logits(logits, labels, 2), torch.tensor([[2.0, 3.0], [5.0, 0.0]], dtype=torch.float64))
    # standardised rows: [1, 2] -> [-1, 1]; [3, 4] -> [-1, 1]; [5, 0] -> [1, -1]
    expected = torch.tensor([[-1.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
    assert torch.allclose(class_mean_logits(logits, labels, 2, standardize=True), expected)
    with pytest.raises(ValueError, match=r"classes \[2\] have no examples"):
        class_mean_logits(torch.zeros(3, 3), labels, 3)
    with pytest.raises(ValueError, match="shape"):
        class_mean_logits(logits, labels, 3)
    with pytest.raises(ValueError, match=r"lie in \[0, 2\)"):
        class_mean_logits(logits, torch.tensor([0, 2, 1]), 2)
    with pytest.raises(ValueError, match="integer dtype"):
        class_mean_logits(logits, labels.float(), 2)


def test_logit_correlation_difference_by_hand():
    labels = torch.tensor([0, 1, 2])
    teacher = torch.tensor([[4.0, 1.0, 0.0], [0.0, 4.0, 1.0], [1.0, 0.0, 4.0]])
    student = torch.tensor([[9.0, 2.0, 0.0], [0.0, 4.0, 4.0], [1.0, 0.5, 0.0]])
    result = logit_correlation_difference(student, teacher, labels, 3)
    expected = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.5, 0.0]], dtype=torch.float64)
    assert torch.allclose(result.matrix, expected)
    assert result.mean_offdiag == pytest.approx((1.0 + 3.0 + 0.5) / 6)
    same = logit_correlation_difference(teacher, teacher, labels, 3)
    assert same.mean_offdiag == 0.0


def test_class_mean_difference_of_record_matrices_and_its_row_centred_form():
    teacher = [[4.0, 1.0, 0.0], [0.0, 4.0, 1.0], [1.0, 0.0, 4.0]]
    student = [[5.0, 3.0, 1.0], [0.0, 4.0, 1.0], [1.0, 0.0, 4.0]]  # row 0: +1, +2, +1
    raw = class_mean_difference(student, teacher)
    assert raw.matrix.dtype == torch.float64
    assert raw.mean_offdiag == pytest.approx((2.0 + 1.0) / 6)
    # centred rows: S row 0 is (5, 3, 1) - 3 = (2, 0, -2), T row 0 is (4, 1, 0) - 5/3
    centred = class_mean_difference(student, teacher, centre_rows=True)
    t0 = [4 - 5 / 3, 1 - 5 / 3, 0 - 5 / 3]
    assert centred.mean_offdiag == pytest.approx((abs(0 - t0[1]) + abs(-2 - t0[2])) / 6)
    # a constant added to every logit of a class's images moves the raw difference, not the centred one
    shifted = [[x + 7.0 for x in student[0]]] + student[1:]
    assert class_mean_difference(shifted, teacher).mean_offdiag > raw.mean_offdiag + 1
    assert class_mean_difference(shifted, teacher, centre_rows=True).mean_offdiag == pytest.approx(centred.mean_offdiag)
    with pytest.raises(ValueError, match=r"square \(C, C\) matrices"):
        class_mean_difference([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match=r"^the student matrix must be a \(C, C\) tensor or list of equal-length rows"):
        class_mean_difference([[1.0, 2.0], [1.0]], teacher)
    half = class_mean_difference(torch.tensor(student, dtype=torch.float16), torch.tensor(teacher, dtype=torch.int64))
    assert half.matrix.dtype == torch.float64 and half.mean_offdiag == pytest.approx(raw.mean_offdiag)


def test_relative_improvement_reproduces_the_paper():
    # Tables 1 and 2 of the paper, 13 CIFAR-100 students: vanilla, KD, ICD, ICD+KD.
    vanilla = [73.26, 71.98, 69.06, 69.06, 71.14, 72.50, 70.36, 64.6, 64.6, 70.36, 70.5, 71.82, 70.5]
    kd = [74.92, 73.54, 70.66, 70.67, 73.08, 73.33, 72.98, 67.37, 67.35, 73.81, 74.07, 74.45, 74.83]
    icd = [74.99, 73.69, 71.18, 71.00, 73.12, 74.23, 73.22, 68.35, 67.39, 73.85, 74.26, 75.26, 74.98]
    icd_kd = [76.06, 74.76, 71.81, 72.03, 73.62, 75.09, 73.95, 69.55, 69.91, 74.08, 75.27, 76.58, 76.51]
    assert 100 * relative_improvement(icd, kd, vanilla) == pytest.approx(20.31, abs=0.005)  # the paper's 20.31%
    assert 100 * relative_improvement(icd_kd, kd, vanilla) == pytest.approx(70.24, abs=0.005)  # and 70.24%
    assert relative_improvement(76.0, 75.0, 73.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="undefined"):
        relative_improvement(76.0, 75.0, 75.0)
    with pytest.raises(ValueError, match="one accuracy per student"):
        relative_improvement([1.0, 2.0], [1.0], [0.0])


class PooledIsInput(nn.Module):
    """A 'feature model' whose pooled feature is its (n, d) input."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, with_features=False):
        return ModelOutput(x, (), x) if with_features else x


def test_linear_probe_separable_and_random_labels():
    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(3, 8, generator=g)

    def split(n):
        y = torch.randint(0, 3, (n,), generator=g)
        return centres[y] + torch.randn(n, 8, generator=g), y

    (xtr, ytr), (xte, yte) = split(300), split(300)
    probe = linear_probe(PooledIsInput(), [(xtr, ytr)], [(xte, yte)])
    assert probe["test_top1"] > 97
    shuffled = yte[torch.randperm(300, generator=g)]  # labels unrelated to the features: about chance (33%)
    assert linear_probe(PooledIsInput(), [(xtr, ytr)], [(xte, shuffled)])["test_top1"] < 50


class ConstantModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor([0.1, 0.3, 0.2, 0, 0, 0, 0, 0, 0, 0]))

    def forward(self, x):
        return self.logits.expand(x.shape[0], -1)


class ColourModel(nn.Module):
    """Logits: the image's mean per channel, padded to 10 classes: it reads style, not content."""

    def __init__(self):
        super().__init__()
        self.gain = nn.Parameter(torch.tensor(10.0))

    def forward(self, x):
        return nn.functional.pad(self.gain * x.mean(dim=(2, 3)), (0, 7), value=-100.0)


@pytest.fixture(scope="module")
def content_style():
    return ContentStyleDataset(train=False, size=100, seed=0)


def test_style_sensitivity(content_style):
    invariant = style_sensitivity(ConstantModel(), content_style, n_interventions=2, num_items=50)
    assert invariant["flip_rate"] == 0.0 and invariant["tv_distance"] == pytest.approx(0.0, abs=1e-12)
    colour = style_sensitivity(ColourModel(), content_style, n_interventions=2, num_items=50)
    assert colour["flip_rate"] > 0.2 and 0 < colour["tv_distance"] <= 1
    # accuracy on the items as stored agrees with the plain accuracy helper on the whole set
    everything = style_sensitivity(ColourModel(), content_style, n_interventions=1, num_items=None)
    plain = accuracy(ColourModel(), make_loader(content_style, 32, train=False), topk=(1,))
    assert everything["top1_original"] == pytest.approx(plain["top1"])
    with pytest.raises(TypeError, match="ContentStyleDataset"):
        style_sensitivity(ColourModel(), [1, 2, 3])


def test_restyled_images_are_the_datasets_interventions(content_style):
    """The batched rendering equals ``dataset.render(index, dataset.sample_style(g))`` image by image."""
    batched = restyled_images(content_style, torch.tensor([7]), torch.Generator().manual_seed(3))
    single = content_style.render(7, content_style.sample_style(torch.Generator().manual_seed(3)))
    assert torch.allclose(batched[0], single, atol=1e-6)
    assert not torch.allclose(single, content_style.render(7), atol=1e-3)  # the style did change


def test_new_minus_same_distance_to_the_teacher_is_blind_to_style_sensitivity(content_style):
    """The style measures pass the sanity check (``test_style_sensitivity``); the change in the
    distance to the teacher from the same image to a new style does not: on a test set already in
    random style the stored style is one more random draw, so a student that reads only colour
    flips most predictions yet its new-minus-same distance to a style-blind teacher stays near 0."""
    distance = teacher_student_distance(ConstantModel(), ColourModel(), content_style, num_items=100)
    sensitivity = style_sensitivity(ColourModel(), content_style, n_interventions=4, num_items=100)
    assert sensitivity["flip_rate"] > 0.5 and sensitivity["tv_distance"] > 0.3
    gap = distance["tv_to_teacher_new_style"] - distance["tv_to_teacher_same_style"]
    assert abs(gap) < 0.1 * sensitivity["tv_distance"]
