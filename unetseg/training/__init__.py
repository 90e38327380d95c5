"""Training: the loop, checkpoints with exact resume, DDP under torchrun, run folders and plots."""
from .trainer import RunResult, train

__all__ = ["RunResult", "train"]
