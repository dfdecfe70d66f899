"""Training: the one loop (``loop``), what it trains (``run_config``) and how (``options``), the
run it builds (``prepare``), its loaders (``loaders``), checkpoints and resumption (``checkpoint``,
``resume``), its record (``recording``), the fast path (``fast``) and data parallelism
(``distributed``). Runs described as specs are executed by ``icd_lib.experiments``."""
from icd_lib.train.checkpoint import CheckpointError, load_checkpoint, load_model_weights
from icd_lib.train.loop import train
from icd_lib.train.options import RunOptions
from icd_lib.train.run_config import TrainConfig

__all__ = ["CheckpointError", "RunOptions", "TrainConfig", "load_checkpoint", "load_model_weights", "train"]
