"""Linear probe on frozen features: how transferable is a distilled student's representation (paper Sec. 4.4)."""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from icd_lib.eval.metrics import evaluation_mode, model_device


@torch.no_grad()
def extract_features(model: nn.Module, loader: Iterable) -> tuple[Tensor, Tensor]:
    """Pooled penultimate features (N, d) from ``model(x, with_features=True).pooled`` and labels (N,), on the CPU."""
    device = model_device(model)
    features, labels = [], []
    with evaluation_mode(model):
        for batch in loader:
            out = model(batch[0].to(device, non_blocking=True), with_features=True)
            features.append(out.pooled.float().cpu())
            labels.append(batch[1].cpu())
    if not features:
        raise ValueError("the loader yielded no batches; is the data set empty?")
    return torch.cat(features), torch.cat(labels)


def linear_probe(
    feature_model: nn.Module, train_loader: Iterable, test_loader: Iterable, C: float = 1.0, max_iter: int = 1000
) -> dict[str, float]:
    """Train a multinomial logistic regression on frozen pooled features; return accuracies in percent.

    The features are standardised with the training set's mean and std, then scikit-learn's
    ``LogisticRegression`` (L-BFGS, L2 penalty with inverse strength ``C``) is fitted on them.
    Returns ``{"train_top1": ..., "test_top1": ...}``.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    train_x, train_y = (t.numpy() for t in extract_features(feature_model, train_loader))
    test_x, test_y = (t.numpy() for t in extract_features(feature_model, test_loader))
    scaler = StandardScaler().fit(train_x)
    classifier = LogisticRegression(C=C, max_iter=max_iter).fit(scaler.transform(train_x), train_y)
    return {
        "train_top1": 100.0 * float(np.mean(classifier.predict(scaler.transform(train_x)) == train_y)),
        "test_top1": 100.0 * float(np.mean(classifier.predict(scaler.transform(test_x)) == test_y)),
    }
