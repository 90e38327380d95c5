"""Row-band sinks: where :func:`unetseg.predict_tiled` hands its finished rows when ``out=`` is given.

A sink is anything with ``shape``, ``dtype`` and ``sink[r0:r1] = band`` called with contiguous bands in
increasing row order (:class:`RowSink`): a numpy or zarr array, :class:`unetseg.io.tiff_writer.TiffTileWriter`
or :class:`NpyWriter`. (:class:`unetseg.outputs.OutputSet` takes whole bands of labels and probabilities.)
"""
from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..errors import OutputError
from .atomic import atomic_path, describe_os_error, is_fatal


@runtime_checkable
class RowSink(Protocol):
    """Destination of row bands: ``shape`` (H, W[, K]), ``dtype``, and ``sink[r0:r1] = band``."""

    shape: tuple[int, ...]

    def __setitem__(self, key: slice, band: np.ndarray) -> None: ...


class NpyWriter:
    """Write an ``.npy`` file band by band (``writer[r0:r1] = rows``, contiguous, in order) with plain writes.

    Unlike a memory-mapped ``.npy``, a full disk is an ordinary write error here (never SIGBUS). The file
    appears under ``path`` only when every row was written and it reads back with the declared shape.
    """

    def __init__(self, path: str | os.PathLike, shape: tuple[int, ...], dtype: Any) -> None:
        self.path = Path(path)
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)
        self._rows = 0
        self._stack = ExitStack()
        self._file: Any = None

    def _check(self, tmp: Path) -> None:
        """The header reads back with the declared shape and dtype, and the file holds all the data."""
        with open(tmp, "rb") as f:
            read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                           (2, 0): np.lib.format.read_array_header_2_0}.get(np.lib.format.read_magic(f))
            if read_header is None:
                raise ValueError("the .npy header does not read back")
            shape, fortran, dtype = read_header(f)
            data_start = f.tell()
        if tuple(shape) != self.shape or np.dtype(dtype) != self.dtype or fortran:
            raise ValueError(f"the .npy header reads back as {shape} {dtype}, wrote {self.shape} {self.dtype}")
        expected = data_start + int(np.prod(self.shape)) * self.dtype.itemsize
        if tmp.stat().st_size != expected:
            raise ValueError(f"the file holds {tmp.stat().st_size} bytes, expected {expected}")

    def __enter__(self) -> NpyWriter:
        tmp = self._stack.enter_context(atomic_path(self.path, verify=self._check))
        self._file = self._stack.enter_context(open(tmp, "wb"))
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": self.shape}
        np.lib.format.write_array_header_2_0(self._file, header)
        return self

    def __setitem__(self, key: slice, rows: np.ndarray) -> None:
        if key.start != self._rows:
            raise ValueError(f"NpyWriter takes contiguous row bands in order; expected rows from {self._rows}")
        data = np.ascontiguousarray(rows, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:]:
            raise ValueError(f"band shape {data.shape} does not fit array shape {self.shape}")
        try:
            self._file.write(data.tobytes())
        except OSError as err:
            raise OutputError(self.path, describe_os_error(err), fatal=is_fatal(err)) from err
        self._rows += len(data)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None and self._rows != self.shape[0]:
            exc = OutputError(self.path, f"only {self._rows} of {self.shape[0]} rows were written")
            self._stack.__exit__(type(exc), exc, None)
            raise exc
        self._stack.__exit__(exc_type, exc, tb)
