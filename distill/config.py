"""The trainer's options as small dataclasses (no torch here, so the CLI can show their defaults)."""

from __future__ import annotations

from dataclasses import dataclass

from zhkd.distill.errors import DistillError
from zhkd.distill.losses import SOFT_LOSSES

PRECISIONS = ("auto", "float32", "bf16")


@dataclass
class TrainConfig:
    """Options of one stage; the defaults suit BERT-style fine-tuning of small models."""

    epochs: int = 3
    max_steps: int | None = None  # when set, the stage runs exactly this many steps, whatever the epochs
    batch_size: int = 32  # rows per rank per step
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.1  # fraction of the steps spent warming the learning rate up from zero
    grad_clip: float = 1.0
    max_length: int = 256  # pieces per row fed to the model
    seed: int = 0
    num_workers: int = 0  # DataLoader worker processes collating batches
    save_every: int = 500  # steps between resumable checkpoints
    log_every: int = 10
    group_by_length: bool = False  # steps of similar-length rows: less padding, but see docs/distill.md
    # The forward's precision: "bf16" autocast (weights, gradients, optimiser and losses stay float32), or
    # "float32"; "auto" is bf16 on CUDA, where it is about twice as fast, and float32 on a CPU.
    precision: str = "auto"

    def __post_init__(self):
        # Messages name the command-line options, which carry the fields' names.
        for name in ("epochs", "batch_size", "max_length", "save_every", "log_every"):
            if getattr(self, name) < 1:
                raise DistillError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise DistillError("--max-steps must be at least 1")
        if self.lr <= 0:
            raise DistillError("--lr must be positive")
        if not 0.0 <= self.warmup <= 1.0:
            raise DistillError(f"--warmup is a fraction of the steps, in [0, 1], not {self.warmup}")
        if self.num_workers < 0:
            raise DistillError("--num-workers must not be negative")
        if self.precision not in PRECISIONS:
            raise DistillError(f"--precision {self.precision!r}: one of {', '.join(PRECISIONS)}")

    def autocast_dtype(self, device: str) -> str | None:
        """The autocast dtype on `device`: "bfloat16", or None where the forward runs in float32."""
        bf16 = self.precision == "bf16" or (self.precision == "auto" and device.startswith("cuda"))
        return "bfloat16" if bf16 else None

    def group_rows(self, world_size: int) -> int:
        """The `group_rows` of the stage's source: one step's rows on all ranks, or 0 for plain shuffling."""
        return self.batch_size * world_size if self.group_by_length else 0


@dataclass
class LossConfig:
    """How the student learns from a batch: soft loss at `temperature`, mixed with gold labels by `alpha`."""

    temperature: float = 4.0  # TextBrewer's range is 4..8
    alpha: float = 0.0  # weight of the hard-label loss; 1 - alpha goes to the soft loss
    soft: str = "kl"  # a name in `losses.SOFT_LOSSES`: "kl", "ce" (soft cross-entropy) or "mse" (logit MSE)

    def __post_init__(self):
        if self.soft not in SOFT_LOSSES:
            raise DistillError(f"soft loss {self.soft!r}; one of {', '.join(SOFT_LOSSES)}")
        if self.temperature <= 0:
            raise DistillError(f"temperature must be positive, not {self.temperature}")
        if not 0.0 <= self.alpha <= 1.0:
            raise DistillError(f"alpha must lie in [0, 1], not {self.alpha}")
