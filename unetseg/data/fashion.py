"""The ``fashion-scenes`` sample: scenes of any size generated from 2,000 shipped Fashion-MNIST items."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .classes import ClassTable
from .sample_split import SPLITS, SampleSplit, load_npz

FASHION_CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
_FASHION_COLORS: tuple[tuple[int, int, int], ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
)  # fmt: skip  (Tableau-10)


def fashion_classes() -> ClassTable:
    """The 11 classes of ``fashion-scenes``: background (0) + Fashion-MNIST class ``c`` at ``c+1``."""
    return ClassTable(("background",) + FASHION_CLASS_NAMES, ((0, 0, 0),) + _FASHION_COLORS)


class FashionScenes:
    """Seeded generator of Fashion-MNIST scenes of any size.

    Each scene scatters items (28x28, scaled by a factor drawn uniformly from ``scale_range``,
    mirrored left-right with probability 1/2 when ``flip``) at uniformly random centres over a
    background; items may hang over the edges. An item covers exactly the pixels where its
    (resized) ink is ``> ink_threshold``: there it writes its ink to the image, its class + 1 to the
    labels and its instance id to the instance map. Items are drawn in order, so where items
    overlap the later one wins in all three. Everywhere else the label is 0 (background).

    Args:
        seed: seed (or sequence of ints) of the generator; successive ``scene`` calls continue
            the same stream, so a fresh object with the same seed repeats the same scenes.
        background: ``"noise"`` (default; i.i.d. integers 0..40, below the ink threshold),
            ``"texture"`` (smooth blobs 0..~90 plus fine noise, overlapping dim ink -- harder), or
            ``"black"`` (zeros).
        items: (N, 28, 28) uint8 items; default: all 2,000 shipped items.
        item_labels: (N,) ints 0..9, required with ``items``.
        scale_range: (min, max) item scale factor; default (1.0, 2.0).
        flip: mirror items at random; default True.
        ink_threshold: ink level (0..254) above which an item pixel counts; default 50.
    """

    BACKGROUNDS = ("noise", "texture", "black")

    def __init__(
        self,
        seed: int | Sequence[int] = 0,
        background: str = "noise",
        *,
        items: np.ndarray | None = None,
        item_labels: np.ndarray | None = None,
        scale_range: tuple[float, float] = (1.0, 2.0),
        flip: bool = True,
        ink_threshold: int = 50,
    ) -> None:
        if background not in self.BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; choose one of {', '.join(self.BACKGROUNDS)}")
        if items is None:
            if item_labels is not None:
                raise ValueError("item_labels given without items")
            data = load_npz("fashion_items.npz")
            items, item_labels = data["items"], data["labels"]
        elif item_labels is None or len(item_labels) != len(items):
            raise ValueError("items need item_labels of the same length")
        items = np.asarray(items)
        if items.ndim != 3 or items.dtype != np.uint8 or len(items) == 0:
            raise ValueError(f"items must be a non-empty (N, h, w) uint8 array, got {items.shape} {items.dtype}")
        item_labels = np.asarray(item_labels)
        if item_labels.min() < 0 or item_labels.max() > 9:
            raise ValueError("item_labels must be Fashion-MNIST classes 0..9")
        lo, hi = float(scale_range[0]), float(scale_range[1])
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < min <= max, got {scale_range}")
        if not 0 <= ink_threshold < 255:
            raise ValueError(f"ink_threshold must be in 0..254, got {ink_threshold}")
        self.items = items
        self.item_labels = item_labels.astype(np.uint8)
        self.background = background
        self.scale_range = (lo, hi)
        self.flip = flip
        self.ink_threshold = int(ink_threshold)
        self.classes = fashion_classes()
        self._rng = np.random.default_rng(seed)

    def _background(self, height: int, width: int) -> np.ndarray:
        import cv2

        rng = self._rng
        if self.background == "black":
            return np.zeros((height, width), np.uint8)
        if self.background == "noise":
            return rng.integers(0, 41, size=(height, width), dtype=np.uint8)
        # "texture": 1/32-resolution blobs upsampled bilinearly, plus fine noise; built in row
        # blocks so temporaries stay O(block), not O(image).
        cell = 32
        coarse = rng.integers(0, 81, size=(height // cell + 2, width // cell + 2), dtype=np.uint8)
        out = np.empty((height, width), np.uint8)
        block = 1024
        for r0 in range(0, height, block):
            r1 = min(r0 + block, height)
            # Upsample only the coarse rows these output rows interpolate from (one extra above, so
            # block edges match a whole-image resize; cv2 maps row r to coarse (r + 0.5)/cell - 0.5).
            c0 = max(r0 // cell - 1, 0)
            c1 = min((r1 - 1) // cell + 2, coarse.shape[0])
            patch = cv2.resize(
                coarse[c0:c1], (coarse.shape[1] * cell, (c1 - c0) * cell), interpolation=cv2.INTER_LINEAR
            )
            sub = patch[r0 - c0 * cell : r1 - c0 * cell, :width]
            np.add(sub, rng.integers(0, 11, size=sub.shape, dtype=np.uint8), out=out[r0:r1])
        return out

    def scene(self, height: int, width: int, *, density: float = 0.8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Generate one scene.

        Args:
            height, width: scene size in pixels (any size; memory is O(height*width)).
            density: number of items = round(density * height * width / mean item box area),
                i.e. the expected fraction of the scene covered by item boxes counting overlaps.
                Default 0.8 (about 30% of the pixels end up labelled).

        Returns:
            ``(image, labels, instances)``: (H, W) uint8 image; (H, W) uint8 labels in 0..10
            (0 background, ``c + 1`` for Fashion-MNIST class ``c``); (H, W) int32 instance ids
            (0 none, ``k`` for the k-th drawn item; ids hidden entirely by later items are absent).
        """
        import cv2

        height, width = int(height), int(width)
        if height < 1 or width < 1:
            raise ValueError(f"scene size must be positive, got {height}x{width}")
        if density < 0:
            raise ValueError(f"density must be >= 0, got {density}")
        rng = self._rng
        image = self._background(height, width)
        labels = np.zeros((height, width), np.uint8)
        instances = np.zeros((height, width), np.int32)

        ih, iw = self.items.shape[1:]
        lo, hi = self.scale_range
        mean_area = ih * iw * (lo * lo + lo * hi + hi * hi) / 3.0  # E[s^2] for s ~ U(lo, hi)
        n = int(round(density * height * width / mean_area))
        if n >= 2**31 - 1:
            raise ValueError("too many items for int32 instance ids; lower density")
        # All random draws up front (vectorised); the loop below only pastes.
        which = rng.integers(0, len(self.items), size=n)
        scale = rng.uniform(lo, hi, size=n)
        flips = (rng.random(n) < 0.5) & self.flip
        cy = rng.integers(0, height, size=n)
        cx = rng.integers(0, width, size=n)
        hs = np.maximum(1, np.rint(ih * scale)).astype(np.int64)
        ws = np.maximum(1, np.rint(iw * scale)).astype(np.int64)
        y0s, x0s = cy - hs // 2, cx - ws // 2

        class_ids = (self.item_labels[which] + 1).tolist()
        thr = self.ink_threshold
        items = self.items
        # Python scalars in the loop: numpy scalar arithmetic would dominate the run time.
        for k, (i, h, w, y0, x0, fl) in enumerate(
            zip(which.tolist(), hs.tolist(), ws.tolist(), y0s.tolist(), x0s.tolist(), flips.tolist(), strict=True)
        ):
            ya, yb = max(y0, 0), min(y0 + h, height)
            xa, xb = max(x0, 0), min(x0 + w, width)
            if ya >= yb or xa >= xb:
                continue
            item = items[i]
            if h != ih or w != iw:
                item = cv2.resize(item, (w, h), interpolation=cv2.INTER_LINEAR)
            if fl:
                item = item[:, ::-1]
            sub = item[ya - y0 : yb - y0, xa - x0 : xb - x0]
            ink = sub > thr
            np.copyto(image[ya:yb, xa:xb], sub, where=ink)
            np.copyto(labels[ya:yb, xa:xb], class_ids[k], where=ink)
            np.copyto(instances[ya:yb, xa:xb], k + 1, where=ink)
        return image, labels, instances


# Items held out for val: a fixed stratified 20% (seed-independent, so no seed ever leaks them).
_FASHION_SPLIT_SEED = 20240611


def _fashion_item_split(labels: np.ndarray, val_fraction: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(_FASHION_SPLIT_SEED)
    val = []
    for c in range(10):
        (idx,) = np.nonzero(labels == c)
        val.append(rng.permutation(idx)[: int(round(val_fraction * len(idx)))])
    is_val = np.zeros(len(labels), bool)
    is_val[np.concatenate(val)] = True
    return {"train": np.nonzero(~is_val)[0], "val": np.nonzero(is_val)[0]}


def load_fashion_scenes(
    split: str,
    seed: int,
    *,
    size: int | tuple[int, int] = 256,
    n_scenes: int | None = None,
    density: float = 0.8,
    background: str = "noise",
    val_fraction: float = 0.2,
) -> SampleSplit:
    """Train: 8 scenes (default) from 80% of the items, seed stream ``[seed, 0]``;
    val: 4 scenes from the other 20% of the items, seed stream ``[seed, 1]``."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"fashion-scenes: val_fraction must be in (0, 1), got {val_fraction}")
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    if n_scenes is None:
        n_scenes = 8 if split == "train" else 4
    data = load_npz("fashion_items.npz")
    pick = _fashion_item_split(data["labels"], val_fraction)[split]
    gen = FashionScenes(
        seed=[seed, SPLITS.index(split)], background=background,
        items=data["items"][pick], item_labels=data["labels"][pick],
    )
    images, masks, instances = [], [], []
    for _ in range(n_scenes):
        img, lab, inst = gen.scene(height, width, density=density)
        images.append(img)
        masks.append(lab)
        instances.append(inst)
    return SampleSplit(images, masks, instances, gen.classes, info={"item_ids": data["index"][pick]})
