"""``TrainConfig``: what the loop trains, as one value that checkpoints and records store."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from icd_lib.config import decay_milestones
from icd_lib.utils import renamed_keys

# Fields of older configurations that said how a run was carried out; they now live in
# ``icd_lib.train.options.RunOptions`` and are ignored where an old checkpoint or record is read.
FORMER_OPTION_FIELDS = frozenset({"device", "num_workers", "fast", "amp", "channels_last", "compile", "cuda_graphs"})
FORMER_NAMES = {"student": "model"}  # older configurations' names of fields, read as the new ones


@dataclass
class TrainConfig:
    """What one run trains: its objective, the models' names, the optimiser recipe and the seed.

    ``weights`` is the objective: loss terms and their weights (the paper's eq. 13;
    ``icd_lib.config.method_weights`` gives a named recipe's); ``method`` labels it in records.
    ``milestones`` default to the paper's 150/180/210 of 240 scaled to ``epochs``, filled in at
    construction so that the saved configuration says exactly what ran. The other defaults are
    the paper's CIFAR-100 recipe (RepDistiller's).
    """

    method: str = "custom"
    weights: dict[str, float] | None = None
    method_options: dict[str, dict] = field(default_factory=dict)
    model: str = "model"  # the trained network's architecture name, for records and checkpoint checks
    teacher: str | None = None
    epochs: int = 240
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] | None = None
    lr_decay_rate: float = 0.1
    seed: int = 0
    run_name: str = "run"

    def __post_init__(self):
        if not self.weights:
            raise ValueError(
                "TrainConfig needs weights, the loss terms and their weights (e.g. {'ce': 1.0}); "
                "icd_lib.config.method_weights('kd') gives a named recipe's"
            )
        self.weights = {k: float(v) for k, v in self.weights.items()}
        unknown = set(self.method_options) - set(self.weights)
        if unknown:
            raise ValueError(f"method_options for {sorted(unknown)}, which are not terms of weights {self.weights}")
        for name in ("epochs", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.milestones is None:
            self.milestones = decay_milestones(self.epochs)
        self.milestones = tuple(sorted(int(m) for m in self.milestones))
        if any(not 0 < m < self.epochs for m in self.milestones):
            raise ValueError(f"milestones must lie strictly between 0 and epochs={self.epochs}, got {self.milestones}")

    def to_dict(self) -> dict:
        """JSON-ready: as ``json.loads(json.dumps(...))`` gives it back."""
        return {**asdict(self), "milestones": list(self.milestones)}

    @classmethod
    def from_dict(cls, data: dict) -> "TrainConfig":
        """The configuration ``to_dict`` wrote (fields of ``FORMER_OPTION_FIELDS`` are dropped)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - FORMER_OPTION_FIELDS)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}; valid fields: {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})


def upgrade_config(data: dict) -> dict:
    """``data`` (a saved configuration) with the fields of ``FORMER_NAMES`` under their new names;
    ``load_checkpoint`` applies it, so configurations reach ``from_dict`` already upgraded."""
    return renamed_keys(data, FORMER_NAMES)
