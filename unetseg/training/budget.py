"""The wall-clock budget of a training command: ``--minutes`` (``train.time_budget_minutes``) covers planning,
training, the final validation, the halo measurement, the sample figure and the run files.

Training stops when what is left of the budget is what the steps after it will take (:class:`AfterTraining`):
estimated from the training step's speed until a validation has been timed, then measured. The halo measurement
gets a bounded share (:func:`halo_seconds`), and the plan (:mod:`.plan`) reports the same split before training.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ..models.geometry import Geometry
from ..tiling import input_pixels

VOLUME_VAL_HALO = 32  # voxels of context of a volume's validations during training (Trainer._val_halo)
HALO_SHARE = 0.05  # of the budget the halo measurement may take ...
HALO_FLOOR_S = 20.0  # ... or this many seconds, whichever is larger ...
HALO_CEILING_SHARE = 0.2  # ... but never more than this share of a short budget
# Seconds of an inference forward per input pixel (the tiles with their context) over the training step's seconds
# per patch pixel: no backward, no optimiser step (brain slices, depth-5 U-Net, bf16, AMD EPYC: 0.3-0.4).
FORWARD_SHARE = 0.4
WRITE_S = 2.0  # reading best.pt back, curves.png, summary.json: about constant
PLOT_S = 1.0  # drawing samples.png, beyond predicting its images


def halo_seconds(budget_s: float) -> float:
    """The most the halo measurement may take in a run of ``budget_s`` seconds."""
    return min(max(HALO_SHARE * budget_s, HALO_FLOOR_S), HALO_CEILING_SHARE * budget_s)


# a network is affordable when its minimum number of steps fits in this share of the training time left (the rest:
# validations, data loading, a slower spell of a shared machine)
TRAINING_SHARE = 0.75


def affordability(steps: int, budget: float, started: float, clock: Callable[[], float],
                  after: AfterTraining) -> Callable[[float], bool]:
    """The rule both plans choose networks by: a step of ``seconds`` is affordable when ``steps`` of them fit in
    :data:`TRAINING_SHARE` of what is left of ``budget`` (seconds) now, ``clock()`` seconds after ``started``,
    less what follows training (``after``)."""
    def affordable(seconds: float) -> bool:
        return seconds * steps <= TRAINING_SHARE * (budget - (clock() - started) - after.total())

    return affordable


def widest_affordable(widths: Sequence[int], time_step: Callable[[int], float],
                      affordable: Callable[[float], bool]) -> int:
    """The widest of ``widths`` (base channels, widest first) whose measured ``time_step(width)`` (seconds per
    training step) is ``affordable``, else the narrowest. The narrowest is timed first: at a fixed batch of pixels a
    network ``w`` times wider moves ``w`` times the activations and computes ~``w**2`` times the FLOPs, so its step
    takes at least ``w`` times as long, and wider ones that cannot be affordable are never timed (a wide step
    can take many seconds on a CPU)."""
    per_width = time_step(widths[-1]) / widths[-1]
    for width in widths[:-1]:
        if affordable(per_width * width) and affordable(time_step(width)):
            return width
    return widths[-1]


def forward_seconds(pixels: float, step_seconds: float, step_pixels: float) -> float:
    """Estimated seconds to run the model over ``pixels`` input pixels when a training step on ``step_pixels`` patch
    pixels (batch x patch area) takes ``step_seconds``."""
    return FORWARD_SHARE * step_seconds * pixels / max(step_pixels, 1.0)


def tiled_pixels(shapes: Iterable[tuple[int, int]], geometry: Geometry, tile: int | str) -> int:
    """Input pixels overlap-tile prediction computes over images of ``shapes`` (tiles with their context) at
    ``tile`` px tiles ("auto": 512) and the model's halo."""
    side = 512 if isinstance(tile, str) else int(tile)
    return sum(input_pixels(tuple(shape), side, geometry) for shape in shapes)


def seconds_text(seconds: float) -> str:
    """``seconds`` for a status line: one decimal under 10 s."""
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


# tuning objects: predictions of the validation images without TTA and with flips (4 views), labelling per seed level
OBJECTS_PER_VALIDATION = 6.0
# ... at least: labelling and scoring every seed level and size takes ~1 s per TTA candidate on small validation
# sets whose prediction takes ~0.1 s (the nuclei sample's 4 blocks of 128^2, 2-core AMD EPYC)
OBJECTS_MIN_SECONDS = 4.0


@dataclass
class AfterTraining:
    """Seconds the steps after the last training step take: the final validation, the halo measurement (its
    bound), predicting and drawing the sample figure, and writing the run files."""

    validation: float = 0.0
    halo: float = 0.0
    samples: float = 0.0
    writing: float = WRITE_S
    objects: float = 0.0  # choosing the object post-processing on the validation images (instance masks)

    def total(self) -> float:
        return self.validation + self.halo + self.samples + self.writing + self.objects

    def describe(self) -> str:
        parts = [f"~{seconds_text(self.validation)} final validation" if self.validation else "",
                 f"<= {seconds_text(self.halo)} halo" if self.halo else "",
                 f"~{seconds_text(self.samples)} samples.png" if self.samples else "",
                 f"~{seconds_text(self.objects)} object post-processing" if self.objects else "",
                 f"~{seconds_text(self.writing)} files"]
        return ", ".join(p for p in parts if p)

    def with_validation(self, seconds: float, sample_share: float) -> AfterTraining:
        """Updated from a validation pass of ``seconds``; the sample figure predicts ``sample_share`` of its pixels."""
        return AfterTraining(seconds, self.halo, seconds * sample_share + PLOT_S if sample_share else 0.0,
                             self.writing, self.objects and max(OBJECTS_MIN_SECONDS, OBJECTS_PER_VALIDATION * seconds))
