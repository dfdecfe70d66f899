"""What every run measures once, at its end, and stores in its record (``RunRecord.evaluation``).

Chapters read these numbers instead of loading student checkpoints:

- ``class_mean_logits`` (K, K) of the trained model on the test set, and the teacher's
  (``teacher_class_mean_logits``) for a student (a plain student is measured against the
  profile's teacher): the correlation figure (paper Fig. 1) and its summary
  ``logit_difference`` (mean off-diagonal |S - T|);
- ``probe`` and ``probe_styled``: linear probes of the frozen pooled features on the offline
  transfer tasks, grey digits and the same digits in random style (``icd_lib.data.transfer``;
  paper Sec. 4.4 / Table 4);
- ``style`` on content/style data: style sensitivity of the model (flip rate, TV distance,
  accuracy before and after a random restyle) and, for a student, the distance between the
  teacher's prediction on an image and the student's on the same content in a new style
  (the prediction-invariance criterion of eq. 3). On a random-style test set the difference
  between that distance and the same-image one is no style measure: the stored style is one more
  random draw, so it is about 0 for any student (``tests/test_eval.py``); the style measures are
  ``flip_rate`` and ``tv_distance``.

All are measured on the model of the last epoch, the book's primary number.
"""
from __future__ import annotations

import torch
from torch import nn

from icd_lib.data.content_style import ContentStyleDataset
from icd_lib.data.images import ImageDataset
from icd_lib.data.loaders import make_loader
from icd_lib.data.transfer import STYLED_TRANSFER_TASK, TRANSFER_TASK, styled_transfer_digits, transfer_digits
from icd_lib.eval.metrics import class_mean_logits, evaluation_mode, logit_correlation_difference, model_device, predict_logits
from icd_lib.eval.probe import linear_probe
from icd_lib.eval.style import restyled_images, style_sensitivity

STYLE_ITEMS = 1000  # content/style test items restyled (4 new styles each)
STYLE_INTERVENTIONS = 4


def final_evaluation(model: nn.Module, teacher: nn.Module | None, test_set: ImageDataset, dataset: str) -> dict:
    """The record's ``evaluation`` for ``model`` (and its ``teacher``, None for a teacher run)."""
    loader = make_loader(test_set, batch_size=256, train=False)
    logits, labels = predict_logits(model, loader)
    k = logits.shape[1]
    result = {"class_mean_logits": class_mean_logits(logits, labels, k).tolist()}
    if teacher is not None:
        teacher_logits, _ = predict_logits(teacher, loader)
        result["teacher_class_mean_logits"] = class_mean_logits(teacher_logits, labels, k).tolist()
        result["logit_difference"] = logit_correlation_difference(logits, teacher_logits, labels, k).mean_offdiag
    for key, task, make in (("probe", TRANSFER_TASK, transfer_digits),
                            ("probe_styled", STYLED_TRANSFER_TASK, styled_transfer_digits)):
        loaders = [make_loader(make(train, dataset), batch_size=256, train=False) for train in (True, False)]
        result[key] = {"task": task, **linear_probe(model, *loaders)}
    if isinstance(test_set, ContentStyleDataset):
        result["style"] = style_sensitivity(model, test_set, STYLE_INTERVENTIONS, STYLE_ITEMS, seed=0)
        if teacher is not None:
            result["style"].update(teacher_student_distance(teacher, model, test_set))
    return result


@torch.no_grad()
def teacher_student_distance(teacher: nn.Module, student: nn.Module, dataset: ContentStyleDataset,
                             num_items: int = STYLE_ITEMS, seed: int = 0) -> dict[str, float]:
    """Mean TV distance between the teacher's softmax on an image and the student's on the same
    image (``tv_to_teacher_same_style``) and on its content in a fresh random style
    (``tv_to_teacher_new_style``: eq. 3 asks this to be small)."""
    generator = torch.Generator().manual_seed(seed)
    index = torch.randperm(len(dataset), generator=generator)[: min(num_items, len(dataset))]
    if dataset.augment:
        raise ValueError("teacher_student_distance reads a test split: pass a dataset with augment=False")
    stored = dataset.transform(dataset.images[index])
    restyled = restyled_images(dataset, index, generator)
    device = model_device(student)
    with evaluation_mode(teacher), evaluation_mode(student):
        p_teacher = teacher(stored.to(device)).double().softmax(1)
        same = student(stored.to(device)).double().softmax(1)
        other = student(restyled.to(device)).double().softmax(1)
    tv = lambda p, q: float(0.5 * (p - q).abs().sum(1).mean())  # noqa: E731
    return {"tv_to_teacher_same_style": tv(p_teacher, same), "tv_to_teacher_new_style": tv(p_teacher, other)}
