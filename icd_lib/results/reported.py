"""Numbers other people reported, transcribed from their papers, for the chapters to set beside ours.

Each table names its source. Nothing here is measured by this library: chapters label these
values "as reported by ...". ``None`` marks the paper's "n/a".
"""
from __future__ import annotations

PAPER = "Giakoumoglou and Stathaki, arXiv:2407.11802"

# Paper Table 1: CIFAR-100 test top-1 (%), teacher and student of the same family.
TABLE_1_PAIRS = (("wrn_40_2", "wrn_16_2"), ("wrn_40_2", "wrn_40_1"), ("resnet56", "resnet20"),
                 ("resnet110", "resnet20"), ("resnet110", "resnet32"), ("resnet32x4", "resnet8x4"), ("vgg13", "vgg8"))
TABLE_1 = {
    "teacher": (75.61, 75.61, 72.34, 74.31, 74.31, 79.42, 74.64),
    "student": (73.26, 71.98, 69.06, 69.06, 71.14, 72.50, 70.36),
    "kd": (74.92, 73.54, 70.66, 70.67, 73.08, 73.33, 72.98),
    "fitnet": (73.58, 72.24, 69.21, 68.99, 71.06, 73.50, 71.02),
    "at": (74.08, 72.77, 70.55, 70.22, 72.31, 73.44, 71.43),
    "sp": (73.83, 72.43, 69.67, 70.04, 72.69, 72.94, 72.68),
    "cc": (73.56, 72.21, 69.63, 69.48, 71.48, 72.97, 70.81),
    "vid": (74.11, 73.30, 70.38, 70.16, 72.61, 73.09, 71.23),
    "rkd": (73.35, 72.22, 69.61, 69.25, 71.82, 71.90, 71.48),
    "pkt": (74.54, 73.45, 70.34, 70.25, 72.61, 73.64, 72.88),
    "ab": (72.50, 72.38, 69.47, 69.53, 70.98, 73.17, 70.94),
    "ft": (73.25, 71.59, 69.84, 70.22, 72.37, 72.86, 70.58),
    "fsp": (72.91, None, 69.95, 70.11, 71.89, 72.62, 70.33),
    "nst": (73.68, 72.24, 69.60, 69.53, 71.96, 73.30, 71.53),
    "crd": (75.48, 74.14, 71.16, 71.46, 73.48, 75.51, 73.94),
    "crd+kd": (75.64, 74.38, 71.63, 71.56, 73.75, 75.46, 74.29),
    "ofd": (75.24, 74.33, 70.38, None, 73.23, 74.95, 73.95),
    "wsld": (None, 73.74, 71.53, None, 73.36, 74.79, None),
    "ipwd": (None, 74.64, 71.32, None, 73.91, 76.03, None),
    "icd": (74.99, 73.69, 71.18, 71.00, 73.12, 74.23, 73.22),
    "icd+kd": (76.06, 74.76, 71.81, 72.03, 73.62, 75.09, 73.95),
}

# Paper Table 2: CIFAR-100 test top-1 (%), teacher and student of different families.
TABLE_2_PAIRS = (("vgg13", "mobilenetv2"), ("resnet50", "mobilenetv2"), ("resnet50", "vgg8"),
                 ("resnet32x4", "shufflev1"), ("resnet32x4", "shufflev2"), ("wrn_40_2", "shufflev1"))
TABLE_2 = {
    "teacher": (74.64, 79.34, 79.34, 79.42, 79.42, 75.61),
    "student": (64.6, 64.6, 70.36, 70.5, 71.82, 70.5),
    "kd": (67.37, 67.35, 73.81, 74.07, 74.45, 74.83),
    "fitnet": (64.14, 63.16, 70.69, 73.59, 73.54, 73.73),
    "at": (59.40, 58.58, 71.84, 71.73, 72.73, 73.32),
    "sp": (66.30, 68.08, 73.34, 73.48, 74.56, 74.52),
    "cc": (64.86, 65.43, 70.25, 71.14, 71.29, 71.38),
    "vid": (65.56, 67.57, 70.30, 73.38, 73.40, 73.61),
    "rkd": (64.52, 64.43, 71.50, 72.28, 73.21, 72.21),
    "pkt": (67.13, 66.52, 73.01, 74.10, 74.69, 73.89),
    "ab": (66.06, 67.20, 70.65, 73.55, 74.31, 73.34),
    "ft": (61.78, 60.99, 70.29, 71.75, 72.50, 72.03),
    "nst": (58.16, 64.96, 71.28, 74.12, 74.68, 76.09),
    "crd": (69.73, 69.11, 74.30, 75.11, 75.65, 76.05),
    "crd+kd": (69.94, 69.54, 74.58, 75.12, 76.05, 76.27),
    "ofd": (69.48, 69.04, None, 75.98, 76.82, 75.85),
    "wsld": (None, 68.79, 73.80, 75.09, None, 75.23),
    "ipwd": (None, 70.25, 74.97, 76.03, None, 76.44),
    "icd": (68.35, 67.39, 73.85, 74.26, 75.26, 74.98),
    "icd+kd": (69.55, 69.91, 74.08, 75.27, 76.58, 76.51),
}

# Paper Table 4: linear probe on frozen WRN-16-2 features (distilled from WRN-40-2 on CIFAR-100).
TABLE_4 = {
    "STL-10": {"teacher": 68.6, "student": 69.7, "kd": 70.9, "at": 70.7, "fitnet": 70.3, "crd": 71.6,
               "crd+kd": 72.2, "icd": 71.2, "icd+kd": 72.5},
    "TIN-200": {"teacher": 31.5, "student": 33.7, "kd": 33.9, "at": 34.2, "fitnet": 33.5, "crd": 35.6,
                "crd+kd": 35.5, "icd": 35.0, "icd+kd": 36.2},
}

# The paper's headline (its contribution 2, computed with footnote 1): average relative improvement over KD.
PAPER_RELATIVE_IMPROVEMENT = {"icd": 0.2031, "icd+kd": 0.7024}

# Later results on the two headline pairs (CIFAR-100 top-1 %, 240 epochs, the standard recipe),
# each as reported by its own paper or official repository: (WRN-40-2 -> WRN-16-2, resnet32x4 -> resnet8x4, source).
LATER_RESULTS = {
    "KD": (74.92, 73.33, "Tian et al., CRD, ICLR 2020"),
    "CRD": (75.48, 75.51, "Tian et al., CRD, ICLR 2020"),
    "ReviewKD": (76.12, 75.63, "Chen et al., Distilling Knowledge via Knowledge Review, CVPR 2021"),
    "DKD": (76.24, 76.32, "Zhao et al., Decoupled Knowledge Distillation, CVPR 2022"),
    "DIST": (75.51, 76.31, "Huang et al., Knowledge Distillation from A Stronger Teacher, NeurIPS 2022"),
    "MLKD": (76.63, 77.08, "Jin et al., Multi-Level Logit Distillation, CVPR 2023"),
    "WTTM": (76.37, 76.06, "Zheng and Yang, Knowledge Distillation Based on Transformed Teacher Matching, ICLR 2024"),
    "WTTM+ITRD": (76.65, 77.36, "Zheng and Yang, ICLR 2024"),
    "KD+LS": (76.11, 76.62, "Sun et al., Logit Standardization in Knowledge Distillation, CVPR 2024"),
    "DKD+LS": (76.39, 77.01, "Sun et al., CVPR 2024"),
    "MLKD+LS": (76.95, 78.28, "Sun et al., CVPR 2024"),
    "ICD": (74.99, 74.23, PAPER + ", Table 1"),
    "ICD+KD": (76.06, 75.09, PAPER + ", Table 1"),
}
