"""Input/output size arithmetic of encoder-decoder networks with ``depth`` poolings, per axis.

Valid padding (the 2015 paper): every level runs two unpadded 3x3 convs (-4 px), each 2x2 max-pool
must see an even size, each up-convolution doubles the size. Same padding: sizes are kept and the
input must be divisible by ``2**depth``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class SizeRule:
    """Size helpers of one axis of an encoder-decoder with ``depth`` poolings.

    ``pools`` (one per level, 1 or 2; default all 2) is how much each pooling shrinks this axis and ``kernels``
    (one per level and the bottleneck, 1 or 3; default all 3) its convolutions' kernel size along it: an
    anisotropic volume keeps its coarse axis unpooled and unconvolved until the others catch up (nnU-Net's rule,
    :func:`unetseg.models.anisotropy.pooling_plan`), so each axis of a 3D model has its own rule.
    ``input_context`` is what the network's first convolution consumes unpadded on each side on top of that (the
    slices above and below of a 2.5D network, whose first convolution spans ``2 * input_context + 1`` slices).
    """

    depth: int
    padding: str  # "valid" | "same"
    convs_per_level: int = 2
    pools: tuple[int, ...] | None = None
    kernels: tuple[int, ...] | None = None
    input_context: int = 0

    def __post_init__(self) -> None:
        if self.pools is not None and (len(self.pools) != self.depth or set(self.pools) - {1, 2}):
            raise ValueError(f"pools={self.pools}: one factor (1 or 2) per level ({self.depth})")
        if self.kernels is not None and (len(self.kernels) != self.depth + 1 or set(self.kernels) - {1, 3}):
            raise ValueError(f"kernels={self.kernels}: one size (1 or 3) per level and the bottleneck "
                             f"({self.depth + 1})")
        if self.input_context < 0 or (self.input_context and self.padding != "valid"):
            raise ValueError(f"input_context={self.input_context}: >= 0, and only on an axis of valid padding")

    @property
    def level_pools(self) -> tuple[int, ...]:
        return self.pools if self.pools is not None else (2,) * self.depth

    @property
    def level_kernels(self) -> tuple[int, ...]:
        return self.kernels if self.kernels is not None else (3,) * (self.depth + 1)

    @property
    def stride(self) -> int:
        """Total downsampling factor; tile origins must be multiples of it to keep the pooling grid."""
        return math.prod(self.level_pools)

    def _shrink(self, level: int) -> int:
        """Pixels (at that level's scale) one level's convolutions remove from this axis: 0 for same padding."""
        return self.convs_per_level * (self.level_kernels[level] - 1) if self.padding == "valid" else 0

    @property
    def margin(self) -> int:
        """Context pixels lost on each side (92 for the paper's network, 0 for "same")."""
        # each encoder level's convs run at its scale and again in the decoder; the bottleneck's once
        total_loss, scale = 0, 1
        for level, pool in enumerate(self.level_pools):
            total_loss += 2 * self._shrink(level) * scale
            scale *= pool
        return (total_loss + self._shrink(self.depth) * scale) // 2 + self.input_context

    def bottom_size(self, n: int) -> int | None:
        """Size entering the bottleneck, or None if some pooling would see an odd size."""
        n -= 2 * self.input_context
        for level, pool in enumerate(self.level_pools):
            n -= self._shrink(level)
            if n <= 0 or n % pool:
                return None
            n //= pool
        return n

    def output_size(self, n: int) -> int:
        """Output side length for input side ``n``; raises ValueError if ``n`` is not accepted."""
        self.check(n)
        return n - 2 * self.margin

    def is_valid(self, n: int) -> bool:
        if self.padding == "same":
            return n > 0 and n % self.stride == 0
        bottom = self.bottom_size(n)
        return bottom is not None and n - 2 * self.margin >= 1 and bottom - self._shrink(self.depth) >= 1

    def nearest_valid(self, n: int) -> tuple[int | None, int]:
        """The largest accepted size <= n (None if there is none) and the smallest accepted size >= n."""
        below = next((m for m in range(n, 0, -1) if self.is_valid(m)), None)
        above = next(m for m in range(max(n, 1), n + 2 * self.stride + 4 * self.margin + 8) if self.is_valid(m))
        return below, above

    def valid_input_size(self, n: int) -> int:
        """The accepted input size nearest to ``n`` (ties go to the larger one)."""
        below, above = self.nearest_valid(n)
        if below is None or above - n <= n - below:
            return above
        return below

    def check(self, n: int, what: str = "input size") -> None:
        if not self.is_valid(n):
            below, above = self.nearest_valid(n)
            options = f"{below} or {above}" if below is not None else f"{above}"
            rule = (
                f"must be divisible by {self.stride}"
                if self.padding == "same"
                else f"must keep every pooling on an even size and leave an output (margin {self.margin})"
            )
            raise ValueError(
                f"{what} {n} is not accepted by this model (padding={self.padding!r}, depth={self.depth}: {rule}); "
                f"nearest valid sizes: {options}"
            )
