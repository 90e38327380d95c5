"""Input/output size arithmetic of encoder-decoder networks with ``depth`` 2x2 poolings.

Valid padding (the 2015 paper): every level runs two unpadded 3x3 convs (-4 px), each 2x2 max-pool
must see an even size, each up-convolution doubles the size. Same padding: sizes are kept and the
input must be divisible by ``2**depth``.
"""
from __future__ import annotations

from dataclasses import dataclass

PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class SizeRule:
    """Size helpers shared by every model whose geometry is ``depth`` poolings of factor 2."""

    depth: int
    padding: str  # "valid" | "same"
    convs_per_level: int = 2

    @property
    def stride(self) -> int:
        """Total downsampling factor; tile origins must be multiples of it to keep the pooling grid."""
        return 2**self.depth

    @property
    def _shrink(self) -> int:
        return 2 * self.convs_per_level if self.padding == "valid" else 0

    @property
    def margin(self) -> int:
        """Context pixels lost on each side (92 for the paper's network, 0 for "same")."""
        # encoder levels at scales 1..2**(depth-1), bottleneck at 2**depth, decoder mirrors the encoder
        total_loss = self._shrink * (3 * 2**self.depth - 2)
        return total_loss // 2

    def bottom_size(self, n: int) -> int | None:
        """Size entering the bottleneck, or None if some pooling would see an odd size."""
        for _ in range(self.depth):
            n -= self._shrink
            if n <= 0 or n % 2:
                return None
            n //= 2
        return n

    def output_size(self, n: int) -> int:
        """Output side length for input side ``n``; raises ValueError if ``n`` is not accepted."""
        self.check(n)
        return n - 2 * self.margin

    def is_valid(self, n: int) -> bool:
        if self.padding == "same":
            return n > 0 and n % self.stride == 0
        bottom = self.bottom_size(n)
        return bottom is not None and n - 2 * self.margin >= 1 and bottom - self._shrink >= 1

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
                else f"must keep every 2x2 pooling on an even size and leave an output (margin {self.margin})"
            )
            raise ValueError(
                f"{what} {n} is not accepted by this model (padding={self.padding!r}, depth={self.depth}: {rule}); "
                f"nearest valid sizes: {options}"
            )
