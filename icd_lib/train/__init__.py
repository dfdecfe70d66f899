"""Training: the one loop (``loop``), checkpoints (``checkpoint``), the fast path (``fast``) and
data parallelism (``distributed``). Runs described as specs are executed by ``icd_lib.experiments``."""
from icd_lib.train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from icd_lib.train.loop import TrainConfig, default_lr, train

__all__ = ["CheckpointError", "TrainConfig", "default_lr", "load_checkpoint", "load_model_weights", "train"]
