"""Class tables: the names and display colours of a segmentation's classes (index = class id)."""
from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# Distinct, colour-blind-aware colours (Okabe-Ito, then Tableau-10 extras) for classes 1..N.
_BASE_COLORS: tuple[tuple[int, int, int], ...] = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
    (148, 103, 189),
    (140, 86, 75),
    (188, 189, 34),
    (23, 190, 207),
    (127, 127, 127),
)


@dataclass(frozen=True)
class ClassTable:
    """Names and RGB colours of the classes; class id ``i`` is ``names[i]`` drawn as ``colors[i]``.

    Lists are accepted and stored as tuples. Raises ``ValueError`` (one line) when the lengths
    differ, a name is empty or repeated, or a colour is not three integers in 0..255.
    """

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    transparent: tuple[int, ...] = ()  # class ids that overlays leave untinted

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if not names:
            raise ValueError("ClassTable needs at least one class")
        for n in names:
            if not isinstance(n, str) or not n:
                raise ValueError(f"ClassTable names must be non-empty strings, got {n!r}")
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ClassTable names must be unique, repeated: {', '.join(dup)}")
        colors = []
        for i, c in enumerate(self.colors):
            try:
                rgb = tuple(c)
            except TypeError:
                rgb = ()
            ok = len(rgb) == 3 and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb
            )
            if not ok:
                raise ValueError(f"ClassTable colour {i} must be three integers in 0..255 (RGB), got {c!r}")
            colors.append(tuple(int(v) for v in rgb))
        if len(colors) != len(names):
            raise ValueError(f"ClassTable has {len(names)} names but {len(colors)} colours")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "colors", tuple(colors))
        clear = tuple(sorted({int(i) for i in self.transparent}))
        if any(not 0 <= i < len(names) for i in clear):
            raise ValueError(f"ClassTable transparent ids {list(clear)} must be class ids 0..{len(names) - 1}")
        object.__setattr__(self, "transparent", clear)

    @property
    def num_classes(self) -> int:
        """Number of classes (background included)."""
        return len(self.names)

    def palette(self) -> np.ndarray:
        """The colours as an (num_classes, 3) uint8 RGB array, indexable by a label map."""
        return np.array(self.colors, dtype=np.uint8).reshape(-1, 3)

    def to_dict(self) -> dict[str, list[Any]]:
        """``{"names": [...], "colors": [[r, g, b], ...]}`` -- JSON/YAML friendly."""
        out: dict[str, list[Any]] = {"names": list(self.names), "colors": [list(c) for c in self.colors]}
        if self.transparent:
            out["transparent"] = list(self.transparent)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassTable:
        """Inverse of :meth:`to_dict`; ``colors`` may be omitted (then :meth:`default` colours)."""
        if not isinstance(data, Mapping) or "names" not in data:
            raise ValueError("ClassTable.from_dict needs a mapping with a 'names' list (and optionally 'colors')")
        names = list(data["names"])
        colors = data.get("colors")
        if colors is None:
            colors = cls.default(len(names)).colors
        return cls(tuple(names), tuple(tuple(c) for c in colors), tuple(data.get("transparent", ())))

    @classmethod
    def default(cls, num_classes: int, names: Sequence[str] | None = None) -> ClassTable:
        """``num_classes`` classes named ``background, class1, ...`` (or ``names``) with distinct
        colours: background black, then a fixed colour-blind-aware list, then golden-ratio hues."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if names is None:
            names = ["background"] + [f"class{i}" for i in range(1, num_classes)]
        colors: list[tuple[int, int, int]] = [(0, 0, 0)]
        used = {(0, 0, 0)}
        k = 0
        while len(colors) < num_classes:
            if k < len(_BASE_COLORS):
                c = _BASE_COLORS[k]
            else:
                # Golden-ratio hue steps with cycling saturation/value stay distinct for hundreds.
                j = k - len(_BASE_COLORS)
                h = (j * 0.618033988749895) % 1.0
                s = (0.55, 0.8, 1.0)[j % 3]
                v = (1.0, 0.75, 0.9)[(j // 3) % 3]
                c = tuple(int(round(x * 255)) for x in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[assignment]
            k += 1
            if c not in used:
                used.add(c)
                colors.append(c)
        return cls(tuple(names), tuple(colors))
