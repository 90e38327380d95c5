"""Index maps as OME-Zarr labels (NGFF 0.4): ``<out>.ome.zarr/{0,1,...}``, a multiscale label image.

The folder is itself a label image (``multiscales`` + ``image-label`` metadata at its root), so it opens on
its own with ``ome-zarr``/napari/``zarr``, and can be moved as it is into an image's ``labels/`` group.

Level 0 is written chunk by chunk by whoever predicts (Dask tasks, or row bands of one process); on a clean
exit the lower levels are made chunk by chunk by nearest downsampling (every 2nd pixel: labels stay labels),
the NGFF metadata (axes, per-level pixel size, class colours and names) is written with ``ome-zarr``'s own
writers, the store is checked, and the folder is renamed onto its final name: a finished name only ever
holds a complete pyramid. Needs ``pip install unetseg[scale]`` (ome-zarr).

A **resumable** writer (``resume=KEY``) writes into ``.<name>.resumable`` beside the final name and keeps it
when the process dies; its :class:`ChunkJournal` records each finished chunk atomically. The next writer with
the same KEY (same input, model and settings) reopens it, so the run redoes only unrecorded chunks; another KEY
starts afresh.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from ..errors import OutputError, UnetsegError
from .atomic import describe_os_error, is_fatal, temp_prefix
from .maps import write_json

LABEL_NAME = "segmentation"
JOURNAL = ".unetseg-journal"  # inside a resumable folder: key.json and one <row>-<col>.json per finished chunk
SMALLEST_LEVEL = 256  # stop the pyramid once a level fits in this many pixels per side


def pyramid_levels(shape: tuple[int, ...], smallest: int = SMALLEST_LEVEL) -> int:
    """Levels (halving in-plane each time) until the larger of the last two sides is at most ``smallest`` px, or
    the smaller is 1 px (a level must be smaller than the one above on both sides: tifffile does not take a 1 x 192
    sub-resolution of a 1 x 384 image as a level); at least 1."""
    levels, (height, width) = 1, shape[-2:]
    while max(height, width) > smallest and min(height, width) > 1:
        height, width = -(-height // 2), -(-width // 2)
        levels += 1
    return levels


def level_factors(ndim: int, levels: int, pixel_size: tuple[float, ...] | None = None) -> list[tuple[int, ...]]:
    """The down-sampling factor per axis from each level to the next (``levels - 1`` of them).

    Images (2 axes) halve both. Volumes (Z, Y, X) halve Y and X at every level, and Z only where the level's
    z spacing is at most twice its in-plane one: anisotropic data (thick slices) is down-sampled in-plane only
    until the in-plane spacing catches up, isotropic data in all three axes (nnU-Net's rule for pooling).
    """
    size = [float(s) for s in (pixel_size or (1.0,) * ndim)]
    factors = []
    for _ in range(levels - 1):
        step = tuple(2 if axis >= ndim - 2 or size[axis] <= 2 * min(size[-2:]) else 1 for axis in range(ndim))
        size = [s * f for s, f in zip(size, step, strict=True)]
        factors.append(step)
    return factors


def downsample_level(src: Any, dst: Any, factors: tuple[int, ...] = (2, 2)) -> None:
    """``dst = src[::f0, ::f1, ...]`` (nearest: labels stay labels), read and written one ``dst`` chunk at a time."""
    import itertools

    starts = [range(0, n, c) for n, c in zip(dst.shape, dst.chunks, strict=True)]
    for corner in itertools.product(*starts):
        box = tuple(slice(a, min(a + c, n)) for a, c, n in zip(corner, dst.chunks, dst.shape, strict=True))
        read = tuple(slice(f * b.start, f * b.stop) for b, f in zip(box, factors, strict=True))
        block = np.asarray(src[read])
        dst[box] = block[tuple(slice(None, None, f) for f in factors)]


class OmeZarrLabelsWriter:
    """``with OmeZarrLabelsWriter(path, shape, dtype, chunks, ...) as w:`` write ``w.level0`` (any chunk order).

    Images (axes yx) and volumes (axes zyx) alike; volumes are written slab by slab (``w[z0:z1] = slab``) and
    their pyramid is down-sampled per :func:`level_factors` (in-plane only while z is more than twice as coarse).

    Args:
        path: the final folder, e.g. ``out/img_index.ome.zarr``; replaced if it exists.
        shape: (H, W) of a label image or (D, H, W) of a label volume. dtype: its integer dtype.
        chunks: every level's chunks, one per axis.
        levels: pyramid levels (default: until the larger in-plane side is <= 256 px).
        class_names: names of the label values 0..K-1 (NGFF ``properties``); colors: their RGB(A) 0-255.
        pixel_size: physical size of a level-0 pixel, (y, x) or (z, y, x); unit: its unit (e.g. "micrometer"),
            if known. Each level's ``scale`` is level 0's times the factors it was down-sampled by.
        resume: a JSON-able key of the run (input, model, settings): write resumably (see the module docstring);
            :attr:`journal` then records finished chunks.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...], *,
                 levels: int | None = None, class_names: list[str] | None = None, colors: Any = None,
                 pixel_size: tuple[float, ...] | None = None, unit: str | None = None,
                 resume: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(int(c) for c in chunks)
        if len(self.shape) not in (2, 3) or len(self.chunks) != len(self.shape):
            raise ValueError(f"OME-Zarr labels are (H, W) or (D, H, W) with chunks per axis, got shape {self.shape} "
                             f"and chunks {self.chunks}")
        if pixel_size is not None and len(pixel_size) != len(self.shape):
            raise ValueError(f"pixel_size {pixel_size} does not have one size per axis of {self.shape}")
        self.levels = levels or pyramid_levels(self.shape)
        self.class_names, self.colors = class_names, colors
        self.pixel_size, self.unit = pixel_size, unit
        self.resume = resume
        self._tmp: Path | None = None
        self.level0: Any = None
        self.journal: ChunkJournal | None = None

    def __enter__(self) -> OmeZarrLabelsWriter:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.resume is not None:
                self._open_resumable()
                return self
            self._tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(self.path), suffix=".part", dir=self.path.parent))
            group = zarr.open_group(str(self._tmp), mode="w", zarr_format=2)
            self.level0 = self._array(group, 0, self.shape)
        except Exception as err:  # noqa: BLE001  nothing half-made is left behind
            self._discard()
            raise OutputError(self.path, describe_os_error(err), fatal=is_fatal(err)) from err
        return self

    def _open_resumable(self) -> None:
        """Reopen the resumable folder of an interrupted run with the same key, else start it afresh."""
        self._tmp = resumable_folder(self.path)
        journal = ChunkJournal(self._tmp / JOURNAL)
        if journal.key() == self.resume and (self._tmp / "0").is_dir():
            self.level0 = zarr.open_group(str(self._tmp), mode="r+", zarr_format=2)["0"]
        else:
            if self._tmp.exists():
                shutil.rmtree(self._tmp)
            group = zarr.open_group(str(self._tmp), mode="w", zarr_format=2)
            self.level0 = self._array(group, 0, self.shape)
            journal.start(self.resume)
        self.journal = journal

    def _array(self, group: Any, level: int, shape: tuple[int, ...]) -> Any:
        return group.create_array(str(level), shape=shape, chunks=self.chunks, dtype=self.dtype, fill_value=0,
                                  chunk_key_encoding={"name": "v2", "separator": "/"})  # NGFF 0.4 keys

    def __setitem__(self, key: Any, band: np.ndarray) -> None:
        """Row-band sink form (``w[r0:r1] = band``) for one-process prediction."""
        self.level0[key] = band

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            if self.resume is None:  # a resumable folder is kept for the next run to go on with
                self._discard()
            return
        try:
            if self.journal is not None:
                shutil.rmtree(self.journal.folder)
            self._finish()
            if self.path.exists():
                shutil.rmtree(self.path)
            os.replace(self._tmp, self.path)
        except Exception as err:  # noqa: BLE001  any failure while finishing is a bad output
            self._discard()
            raise OutputError(self.path, describe_os_error(err), fatal=is_fatal(err)) from err

    def _discard(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)

    def _finish(self) -> None:
        from ome_zarr.format import FormatV04
        from ome_zarr.writer import write_multiscales_metadata

        labels = zarr.open_group(str(self._tmp), mode="r+", zarr_format=2)
        ndim = len(self.shape)
        base = [float(s) for s in (self.pixel_size or (1.0,) * ndim)]
        shapes, scales = [self.shape], [base]
        for level, factors in enumerate(level_factors(ndim, self.levels, self.pixel_size), start=1):
            shapes.append(tuple(-(-s // f) for s, f in zip(shapes[-1], factors, strict=True)))
            scales.append([s * f for s, f in zip(scales[-1], factors, strict=True)])
            downsample_level(labels[str(level - 1)], self._array(labels, level, shapes[-1]), factors)
        datasets = [{"path": str(n), "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                    for n, scale in enumerate(scales)]
        axes = [{"name": a, "type": "space", **({"unit": self.unit} if self.unit else {})} for a in "zyx"[-ndim:]]
        fmt = FormatV04()
        write_multiscales_metadata(labels, datasets, fmt=fmt, axes=axes, name=LABEL_NAME)
        labels.attrs["image-label"] = {**self._label_metadata(), "version": fmt.version}
        self._verify(shapes)

    def _label_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {}
        if self.colors is not None:
            meta["colors"] = [{"label-value": i, "rgba": [int(v) for v in c][:3] + [255]}
                              for i, c in enumerate(self.colors)]
        if self.class_names is not None:
            meta["properties"] = [{"label-value": i, "class": n} for i, n in enumerate(self.class_names)]
        return meta

    def _verify(self, shapes: list[tuple[int, ...]]) -> None:
        labels = zarr.open_group(str(self._tmp), mode="r")
        for n, shape in enumerate(shapes):
            if tuple(labels[str(n)].shape) != shape:
                raise UnetsegError(f"level {n} reads back with shape {labels[str(n)].shape}, expected {shape}")
        if len(labels.attrs["multiscales"][0]["datasets"]) != len(shapes):
            raise UnetsegError("multiscales metadata does not list every level")


def resumable_folder(final: str | os.PathLike) -> Path:
    """Where a resumable writer of ``final`` keeps its work: ``.<name>.resumable`` beside it (not a temporary
    that :func:`unetseg.io.atomic.remove_stale_temporaries` removes)."""
    final = Path(final)
    return final.parent / f".{final.name}.resumable"


def resume_key(final: str | os.PathLike) -> dict[str, Any] | None:
    """The key of the interrupted resumable run of ``final``, if there is one."""
    return ChunkJournal(resumable_folder(final) / JOURNAL).key()


class ChunkJournal:
    """Finished chunks of a resumable run, one small JSON file each (written atomically after the chunk's
    data), beside the run's ``key.json``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def key(self) -> dict[str, Any] | None:
        import json

        try:
            return json.loads((self.folder / "key.json").read_text())
        except (OSError, ValueError):
            return None

    def start(self, key: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json(self.folder / "key.json", key)

    def record(self, row: int, col: int, entry: dict[str, Any]) -> None:
        """Chunk (``row``, ``col``) (its first pixel) is written, with what the run needs of it later."""
        write_json(self.folder / f"{row}-{col}.json", entry)

    def done(self) -> dict[tuple[int, int], dict[str, Any]]:
        """{(row, col): entry} of the recorded chunks."""
        import json

        found = {}
        for path in self.folder.glob("*-*.json"):
            row, col = path.stem.split("-")
            try:
                found[(int(row), int(col))] = json.loads(path.read_text())
            except ValueError:  # cannot be half-written (atomic); anything unreadable is redone
                continue
        return found
