"""Evaluation helpers: accuracy, the class-mean logit difference (paper Fig. 1), linear probes
(paper Sec. 4.4), the relative-improvement metric (footnote 1) and style sensitivity."""
from icd_lib.eval.metrics import (
    LogitDifference,
    accuracy,
    class_mean_difference,
    class_mean_logits,
    logit_correlation_difference,
    predict_logits,
    relative_improvement,
)
from icd_lib.eval.probe import extract_features, linear_probe
from icd_lib.eval.style import style_sensitivity

__all__ = [
    "LogitDifference",
    "accuracy",
    "class_mean_difference",
    "class_mean_logits",
    "extract_features",
    "linear_probe",
    "logit_correlation_difference",
    "predict_logits",
    "relative_improvement",
    "style_sensitivity",
]
