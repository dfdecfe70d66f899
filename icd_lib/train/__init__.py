"""Training: the one loop (``loop``), checkpoints (``checkpoint``), the fast path (``fast``), and the
runs the CLI and the chapters call (``runs``: ``train_teacher``, ``distill``, ``ensure_teacher``,
``evaluate``, ``sweep``)."""
from icd_lib.train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from icd_lib.train.loop import TrainConfig, default_lr, train
from icd_lib.train.runs import Teacher, distill, ensure_teacher, evaluate, load_teacher, sweep, train_teacher

__all__ = [
    "CheckpointError",
    "Teacher",
    "TrainConfig",
    "default_lr",
    "distill",
    "ensure_teacher",
    "evaluate",
    "load_checkpoint",
    "load_model_weights",
    "load_teacher",
    "sweep",
    "train",
    "train_teacher",
]
