"""Training hyper-parameters (:class:`TrainConfig`), as written in a plan's ``training`` section."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from MedSegAILib.sliding_window import PADDINGS

from .augmentation import AugmentationConfig
from .distributed import DEVICES
from .losses import LOSSES
from .schedule import OPTIMIZERS, SGD_MOMENTUM


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 1000
    batch_size: int = 2  # per process
    patch_size: tuple[int, int, int] = (96, 96, 16)
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_iterations: int = 50
    min_lr_ratio: float = 0.02
    grad_clip: float = 12.0  # maximum gradient norm; 0: no clipping
    foreground_fraction: float = 0.67
    seed: int = 0
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    log_every: int = 10
    threads: int | None = None  # torch CPU threads per process (default: physical cores / local processes)
    augmentation: AugmentationConfig = field(default_factory=AugmentationConfig)
    loss: str = "dice_ce"  # or "dice_focal" (:mod:`.losses`)
    optimizer: str = "adamw"  # or "sgd" (Nesterov momentum 0.99)
    device: str = "auto"  # "auto" (CUDA when available), "cpu" or "cuda"
    amp: bool = True  # mixed precision (float16 autocast + gradient scaling), used on CUDA only
    validate_every: int = 50  # iterations between validations (when there are validation cases)
    early_stopping_patience: int = 0  # validations without a better mean Dice before stopping; 0: off
    tensorboard: bool = True  # TensorBoard scalars when the tensorboard package is installed
    deep_supervision: int = 0  # U-Net decoder stages with a loss of their own besides the output; 0: off
    # how validation pads a volume smaller than the patch, as the card's inference.padding will:
    # validation segments as inference does, so the Dice that picks the best weights is the shipped one
    validation_padding: str = "constant"

    # settings that may change when a run is resumed (the others must match the checkpoint)
    RESUMABLE_CHANGES = ("iterations", "checkpoint_every", "keep_checkpoints", "log_every", "threads", "device", "amp",
                         "tensorboard", "validation_padding")

    def __post_init__(self) -> None:
        for name, value, allowed in (("loss", self.loss, LOSSES), ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("device", self.device, DEVICES),
                                     ("validation_padding", self.validation_padding, PADDINGS)):
            if value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; choose from {', '.join(allowed)}")

    def as_dict(self) -> dict:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d

    def describe(self) -> dict:
        """The settings as recorded in a model card (the device and mixed precision actually used are
        in the :class:`~medsegai_training.trainer.TrainingResult`)."""
        d = self.as_dict()
        for key in ("threads", "keep_checkpoints", "log_every", "device", "amp", "tensorboard"):
            d.pop(key)
        d["augmentation"] = self.augmentation.describe()
        return d

    def describe_optimizer(self) -> str:
        """The optimiser and learning-rate schedule in words (for run records and model cards)."""
        name = "AdamW" if self.optimizer == "adamw" else f"SGD with Nesterov momentum {SGD_MOMENTUM}"
        return (f"{name}, lr {self.learning_rate}, weight decay {self.weight_decay}, {self.warmup_iterations} warm-up "
                f"iterations, cosine decay to {self.min_lr_ratio} x lr, gradient norm clipped at {self.grad_clip}")


def with_overrides(config: TrainConfig, **changes) -> TrainConfig:
    """``config`` with the given fields replaced (``None`` values are ignored)."""
    return replace(config, **{k: v for k, v in changes.items() if v is not None})
